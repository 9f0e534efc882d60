"""The LLM judge: claim extraction, claim verification and answer correctness through Ollama.

Every call asks for strict JSON (Ollama's JSON mode, and the prompt says so), and the reply is parsed
robustly (``eval.judges.llm_json``). A reply that still cannot be read is retried ``retries`` times with
another seed; after that the judgement counts as *unparseable*: it is reported, never scored.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import ollama

from chat.generation import OllamaBackend
from eval.judges.llm_json import as_bool, parse_json
from eval.judges.offline import Verdict
from kb.errors import KbqaError
from kb.settings import Settings

log = logging.getLogger(__name__)

EXTRACT_PROMPT = """Split the answer below into atomic claims: short, self-contained factual statements that can each be
checked on their own. Keep the answer's language and wording. Keep the citation marks such as [1] or [2] that the
sentence a claim comes from carries. Leave out greetings, headings and statements that the document lacks the answer.

Question: {question}
Answer:
{answer}

Reply with JSON only, in exactly this form: {{"claims": ["first claim [1]", "second claim [2]"]}}"""

VERIFY_PROMPT = """You check claims against passages from a document. A claim is supported only if the passages state it
or it follows directly from them. Numbers, names, negations, and which row and column of a table a value belongs
to must all match. Outside knowledge does not count.

Passages:
{passages}

Claims:
{claims}

Reply with JSON only, one verdict per claim, in order, in exactly this form:
{{"verdicts": [{{"claim": 1, "supported": true, "reason": "a few words"}}]}}"""

CORRECT_PROMPT = """Does the answer give the reference answer to the question? It is correct if it states the reference's
key facts (extra, correct detail is fine). It is wrong if it contradicts the reference, misses its key facts,
or declines to answer.

Question: {question}
Reference answer: {reference}
Answer: {answer}

Reply with JSON only, in exactly this form: {{"correct": true, "reason": "a few words"}}"""


class JudgeUnavailable(KbqaError):
    """The judge model cannot be used (Ollama unreachable, model missing)."""


@dataclass
class JudgeStats:
    calls: int = 0
    retries: int = 0
    unparseable: int = 0  # judgements without a usable answer after all retries: claim lists, verdicts, correctness
    unparseable_replies: int = 0  # replies (after retries) that could not be read at all
    errors: int = 0  # calls that failed (timeouts, server errors)
    messages: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"calls": self.calls, "retries": self.retries, "unparseable": self.unparseable,
                "unparseable_replies": self.unparseable_replies, "errors": self.errors,
                "messages": self.messages[:20]}


class LLMJudge:
    """Judge through an Ollama model. ``check()`` first: it raises JudgeUnavailable with a clear message."""

    def __init__(self, settings: Settings, model: str, *, retries: int = 2, max_tokens: int = 512) -> None:
        self.backend = OllamaBackend(settings, model)
        self.model = model
        self.name = f"llm:{model}"
        self.retries = retries
        self.max_tokens = max_tokens
        self.settings = settings
        self.stats = JudgeStats()

    def check(self) -> None:
        health = self.backend.health(refresh=True)
        if not health.ok:
            raise JudgeUnavailable(f"LLM judge unavailable: {health.message}")

    # --- one call, parsed, with retries ------------------------------------------------------
    def _ask(self, prompt: str, valid: Any) -> Any | None:
        """The parsed reply that ``valid`` accepts (returns a value, or None to retry); None after all retries."""
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.retries += 1
            self.stats.calls += 1
            try:
                response = self.backend.client.chat(
                    model=self.model,
                    messages=[{"role": "user", "content": prompt}],
                    format="json",
                    options={"temperature": 0.0, "seed": self.settings.seed + attempt,
                             "num_predict": self.max_tokens, "num_ctx": self.settings.num_ctx},
                    keep_alive=self.settings.keep_alive,
                )
            except ollama.ResponseError as exc:
                if exc.status_code == 404:
                    raise JudgeUnavailable(
                        f"LLM judge unavailable: Ollama at {self.backend.host} does not have the model "
                        f"{self.model!r} (ollama pull {self.model})") from exc
                self._error(f"Ollama error {exc.status_code}: {exc.error}")
                continue
            except (httpx.ConnectError, ConnectionError) as exc:
                raise JudgeUnavailable(f"LLM judge unavailable: Ollama is not reachable at {self.backend.host}") from exc
            except (httpx.HTTPError, OSError) as exc:
                self._error(f"{type(exc).__name__}: {exc}")
                continue
            result = valid(parse_json(response.message.content or ""))
            if result is not None:
                return result
            log.debug("Unparseable judge reply (attempt %d): %.200r", attempt + 1, response.message.content)
        self.stats.unparseable_replies += 1
        return None

    def _error(self, message: str) -> None:
        self.stats.errors += 1
        if len(self.stats.messages) < 20:
            self.stats.messages.append(message)
        log.warning("LLM judge call failed: %s", message)

    # --- the three judgements ----------------------------------------------------------------
    def extract_claims(self, question: str, answer: str) -> list[str] | None:
        def valid(data: Any) -> list[str] | None:
            claims = data.get("claims") if isinstance(data, dict) else data
            if isinstance(claims, list) and all(isinstance(c, str) for c in claims):
                return [c.strip() for c in claims if c.strip()]
            return None

        claims = self._ask(EXTRACT_PROMPT.format(question=question, answer=answer), valid)
        if claims is None:
            self.stats.unparseable += 1
        return claims

    def verify(self, claims: Sequence[str], passages: Sequence[str]) -> list[Verdict]:
        """One verdict per claim; supported=None for claims the reply did not judge readably."""
        if not passages:
            return [Verdict(False, 0.0, "cites no passage") for _ in claims]
        numbered_passages = "\n\n".join(f"<passage n=\"{i}\">\n{p}\n</passage>" for i, p in enumerate(passages, 1))
        numbered_claims = "\n".join(f"{i}. {c}" for i, c in enumerate(claims, 1))

        def valid(data: Any) -> list[Verdict] | None:
            items = data.get("verdicts") if isinstance(data, dict) else data
            if isinstance(data, dict) and items is None and len(claims) == 1 and "supported" in data:
                items = [data]
            if not isinstance(items, list) or not items:
                return None
            verdicts = [_verdict(item) for item in items[: len(claims)]]
            verdicts += [Verdict(None, 0.0, "no verdict for this claim")] * (len(claims) - len(verdicts))
            return verdicts if any(v.supported is not None for v in verdicts) else None

        verdicts = self._ask(VERIFY_PROMPT.format(passages=numbered_passages, claims=numbered_claims), valid)
        if verdicts is None:
            verdicts = [Verdict(None, 0.0, "unparseable judge reply") for _ in claims]
        self.stats.unparseable += sum(1 for v in verdicts if v.supported is None)
        return verdicts

    def judge(self, claim: str, passages: Sequence[str]) -> Verdict:
        return self.verify([claim], passages)[0]

    def correctness(self, question: str, reference: str, answer: str) -> bool | None:
        def valid(data: Any) -> bool | None:
            return as_bool(data.get("correct")) if isinstance(data, dict) else None

        verdict = self._ask(CORRECT_PROMPT.format(question=question, reference=reference, answer=answer), valid)
        if verdict is None:
            self.stats.unparseable += 1
        return verdict


def _verdict(item: Any) -> Verdict:
    if not isinstance(item, dict):
        return Verdict(as_bool(item), 0.0, "" if as_bool(item) is not None else "unreadable verdict")
    supported = as_bool(item.get("supported"))
    reason = str(item.get("reason", ""))[:200]
    return Verdict(supported, 1.0 if supported else 0.0, reason if supported is not None else "unreadable verdict")
