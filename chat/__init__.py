"""Questions into answers. The public API is ``Assistant`` (see README)."""

from chat.answer import Answer, Citation, SentenceCheck, Timings
from chat.assistant import Assistant, Status
from chat.passages import Passage
from chat.questions import QuestionError

__all__ = ["Answer", "Assistant", "Citation", "Passage", "QuestionError", "SentenceCheck", "Status", "Timings"]
