"""Extractive answers: the document's own sentences that best answer the question, cited.

Used when no LLM is configured or reachable. Sentences are ranked by how much of the
question's (IDF-weighted) vocabulary they, their heading path and the sub-heading they stand
under contain, with a prior for the passage's retrieval rank and a bonus for the sentences the
dense search found closest to the question. When the question shares no words with the text (an
English question over Chinese text), the best-ranked passage, which the dense retriever found
across languages, answers from its sentence closest to the question. The same scorer reorders
the first fused passages when no reranker model is configured (``by_best_sentence``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import takewhile

from chat.glossary import english_word_groups
from chat.passages import Passage
from chat.retrieval import CROSS, DENSE
from kb.bm25 import BM25Index
from kb.chunk import HEADING_SEPARATOR, PAGE_BREAK
from kb.markup import (
    FENCE_RE,
    FOOTNOTE_MARK_RE,
    GRID_BORDER_RE,
    GRID_HEADER_BORDER_RE,
    HTML_ROW_RE,
    HTML_TABLE_OPEN_RE,
    LAYOUT_TAG_RE,
    LIST_ITEM_RE,
    clean_markup,
    html_cells,
    markup_lines,
    opens_rst_code,
    table_separator,
    without_admonition_marker,
)
from kb.sentences import Span, split_sentences, wraps_into
from kb.text import (
    CJK_CHAR,
    detect_language,
    full_versions,
    identifiers,
    is_version_number,
    normalize,
    query_tokens,
    strip_noise,
    tokenize,
)

MAX_UNITS = 3
MAX_ANSWER_CHARS = 420
MIN_ANSWER_CHARS = 120  # the best sentence is continued until the answer is this long (dev tune: 80 -> 120 +2)
# ... and past that by a sentence that matches the question's words this well next to the best one
# (the answer's third sentence, after two that only set it up; dev tune 0.5-1.0 alike: +1, nothing lost).
RUN_ON_COVERAGE = 0.8
PASSAGES_CONSIDERED = 3
RANK_PRIOR = 0.15  # weight of 1/rank next to lexical coverage (0..1)
MIN_COVERAGE = 0.2  # below this the lexical ranking is not trusted
UNSEEN_WORD_WEIGHT = 0.1  # a question word in no chunk, next to IDF weights of about 1-6 (group_coverage)
# The dense search's own sentence cosines (no extra embedding): a sentence within DENSE_SPREAD of the
# closest one gets up to DENSE_SENTENCE_WEIGHT, next to lexical coverage (0..1). Chosen on the dev tune split.
DENSE_SENTENCE_WEIGHT = 0.2
DENSE_SPREAD = 0.02

# Refusal. A question naming a technical term the documents never mention (GPTQ, BLEU, PPO…)
# is about something else, however close its other words are. Otherwise: a Chinese question
# whose (IDF-weighted) words the top passages barely contain is off-topic; e5 cosines are
# too compressed to tell on their own (an off-topic Chinese question still scores 0.86).
# English questions share few words with Chinese text, so they also need a low dense score.
# Measured on the gold set (README, "Refusals").
REFUSE_BELOW_COVERAGE = 0.25
REFUSE_BELOW_DENSE_EN = 0.78
# A version's dot is inside the term: "Qwen2.5-7B-Instruct" is one, as the index tokenizes it ("qwen2.5").
_TERM = re.compile(r"[A-Za-z](?:[A-Za-z0-9\-]|\.(?=\d))*[A-Za-z0-9]|[A-Za-z]")
_META_WORDS = {"faq", "doc", "document", "section", "table", "text", "article", "paper"}

_WORDISH = re.compile(r"[\w\u4e00-\u9fff]")
_HTML_TAG = re.compile(r"</?[A-Za-z][^>]*>")
# Bold marks, list and quote markers go from what an answer shows; inline code keeps its backticks: it
# reads as code, and the dot of ``pip install -e .`` is then no sentence end when the answer is checked.
_LINE_MARKERS = re.compile(r"^\s*(?:[-*+]|\d+\.)\s+|^\s*>\s*")
_MARKUP = re.compile(rf"\*\*|{_LINE_MARKERS.pattern}")


@dataclass(frozen=True)
class Extract:
    n: int  # 1-based passage number
    span: Span  # offsets into the passage text
    display: str  # what the answer shows (markup removed, table rows spelled out)


def group_coverage(groups: Sequence[Sequence[str]], text: str, bm25: BM25Index) -> float:
    """IDF-weighted share of the question's words found in ``text``, each word a group of alternative
    tokens (a Chinese word's English senses, chat/glossary.py): any one found is the word found."""
    # A word the index has never seen weighs little: a technical term nobody wrote already refuses the
    # question (unknown_terms), and a plain one is more often the question's own phrasing (a jieba cut, an
    # inflection) than another topic. At full weight (the IDF of a term in no chunk) it refused 9 of 81
    # answerable seed tune questions; for Latin-script words only, no refusal gained (2026-12-04). A sense
    # the index has never seen is only a sense nobody wrote, so a group weighs as its known tokens.
    weights = []
    for group in groups:
        known = [bm25.idf(t) for t in group if t in bm25.vocab]
        if known:
            weights.append(max(known) or UNSEEN_WORD_WEIGHT)
        else:
            weights.append(UNSEEN_WORD_WEIGHT if len(group) == 1 else 0.0)
    total = sum(weights)
    if not total:
        return 0.0
    # A Chinese token is found inside the text (jieba may cut the text otherwise); an English one among the
    # text's own tokens, as a word or a stem ("memori"), or at the start of one (the stemmer cuts "embed" to
    # "emb" but "embedding" to "embed"), never inside a longer word ("port" in "export", "kb" in "kbtool").
    haystack = normalize(text)
    words = set(tokenize(text))
    return sum(w for group, w in zip(groups, weights, strict=True)
               if any(_found(t, words, haystack) for t in group)) / total


def _found(token: str, words: set[str], haystack: str) -> bool:
    if token in words:
        return True
    if CJK_CHAR.search(token):
        return token in haystack
    return len(token) >= _MIN_PREFIX and token.isalpha() and any(word.startswith(token) for word in words)


_MIN_PREFIX = 3  # shorter tokens match only as whole words ("kb" starts "kbtool"), and so do numbers ("808")


# Questions addressed to the assistant itself ("ignore previous instructions", "print your system
# prompt"): no document answers them, whatever words they share with one. Phrased generally, in both
# languages; nothing here comes from a document.
_OVERRIDE = re.compile(
    r"\b(?:ignore|disregard|forget|override|bypass)\b[^.!?。！？]{0,40}?"
    r"\b(?:instructions?|prompts?|rules|directions|guidelines|context|messages?)\b"
    r"|(?:忽略|无视|忘记|忘掉|不要理会|跳过)[^。！？]{0,12}?(?:指令|指示|提示|规则|要求|设定|约束)",
    re.IGNORECASE,
)
_ABOUT_ASSISTANT = re.compile(
    r"\b(?:your|you\s+were\s+given)\b[^.!?。！？]{0,24}?"
    r"\b(?:system\s+(?:prompt|message)|instructions|initial\s+prompt|prompt|rules|guidelines)\b"
    r"|(?:你|您)(?:的)?[^。！？]{0,6}?(?:系统提示|提示词|系统指令|指令|设定|规则)",
    re.IGNORECASE,
)
# A clause ends at a full stop, not at a version's or a number's dot ("Qwen2.5", "3.10").
_CLAUSE = re.compile(r"(?:[^.!?;。！？；\n]|(?<=\w)\.(?=\d))+")


def content_question(question: str) -> str:
    """What of ``question`` asks about the documents: noise dropped, and every clause that is an
    instruction to the assistant (to drop its instructions or reveal them) removed."""
    clauses = _CLAUSE.findall(strip_noise(question))
    kept = [c for c in clauses if not (_OVERRIDE.search(c) or _ABOUT_ASSISTANT.search(c))]
    return " ".join(c.strip() for c in kept if c.strip())


class QuestionWords:
    """A question's words as coverage groups (see ``group_coverage``), for the passage they are looked for
    in: a Chinese question reads an English passage through its words' dictionary senses."""

    def __init__(self, asked: str) -> None:
        self.asked = asked
        self.plain = [[t] for t in dict.fromkeys(query_tokens(asked))]
        self._chinese = detect_language(asked) == "zh"
        self._english: list[list[str]] | None = None  # looked up once, and only for an English passage

    def for_passage(self, passage: Passage) -> list[list[str]]:
        if self._chinese and detect_language(passage.text) == "en":
            if self._english is None:
                self._english = english_word_groups(self.asked)
            return self._english
        return self.plain


def unknown_terms(question: str, bm25: BM25Index, language: str) -> list[str]:
    """Technical terms of the question that never occur in the indexed text.

    In a Chinese question every Latin-script word is a term; in an English one only
    acronyms and CamelCase words are (ordinary English words are expected to be absent
    from Chinese text). A compound name ("Qwen1.5-32B-Chat") is known only when all its pieces are. In both
    languages a version of three or more parts ("v2.3.1"), a snake_case name ("theme_variant") and a
    number called a code ("错误码 40404") are terms, known only as a whole: their pieces ("2.3", "theme")
    are everywhere. Noise (escapes, ticket numbers, version tags) is not a term.
    """
    found = []
    asked = strip_noise(question)
    for word in _TERM.findall(asked):
        if full_versions(word):
            continue  # judged whole, below
        is_term = language == "zh" or sum(c.isupper() for c in word) >= 2
        tokens = tokenize(word)
        if not is_term or not tokens or word.lower() in _META_WORDS:
            continue
        known = [t in bm25.vocab for t in tokens]
        # A compound name is known only whole: "Qwen1.5-32B-Chat" is not "Qwen1.5-72B-Chat".
        if not any(known) or ("-" in word and not all(known)):
            found.append(word)
    found += [v for v in full_versions(asked) if is_version_number(v) and v not in bm25.vocab]
    found += [name for name in identifiers(asked) if name not in bm25.vocab]
    found += [code for code in _CODE_NUMBER.findall(asked) if code not in bm25.vocab]
    return found


# A number the question calls a code ("错误码 40404", "status code 418") is as specific as a name.
_CODE_NUMBER = re.compile(r"(?:错误码|状态码|返回码|错误代码|代码|码|\bcode)\s*[:：]?\s*(\d{3,})(?![\w.])", re.IGNORECASE)


def is_relevant(question: str, passages: Sequence[Passage], bm25: BM25Index, language: str = "zh") -> bool:
    """Whether retrieval found anything worth answering from (the extractive refusal rule)."""
    question = content_question(question)
    if not passages or unknown_terms(question, bm25, language):
        return False
    words = QuestionWords(question)
    if not words.plain:
        return False  # nothing but punctuation, emoji or question words
    # The cosine of the dense search, or of its search over the other language's documents.
    dense = max((max(p.scores.get(DENSE, 0.0), p.scores.get(CROSS, 0.0)) for p in passages[:PASSAGES_CONSIDERED]),
                default=0.0)
    # Over an English passage a Chinese question counts as covered by its words as written (its Latin
    # terms) or by their senses, whichever covers more.
    read = [(p, f"{p.section}\n{p.context}\n{_without_unanswered_questions(p)}") for p in passages[:PASSAGES_CONSIDERED]]
    lexical = max(
        (group_coverage(groups, text, bm25) for p, text in read for groups in (words.plain, words.for_passage(p))),
        default=0.0,
    )
    if lexical >= REFUSE_BELOW_COVERAGE:
        return True
    return language != "zh" and dense >= REFUSE_BELOW_DENSE_EN


def _without_unanswered_questions(passage: Passage) -> str:
    """``passage``'s text without the questions it asks and does not answer (an interview page's follow-up
    questions, a README's list of its FAQ): such a line holds every word of the same question asked, and
    says nothing about it. A question followed by its answer stays (an FAQ's "Q: …?" line)."""
    headings = local_headings(passage)
    spans = candidates(passage)
    answered = {headings[s.start].start for s in spans if not _asks(s) and s.start in headings}
    unanswered = [s for s in spans if _asks(s) and not s.in_code and s.start not in answered]
    if not unanswered:
        return passage.text
    text, end = [], 0
    for span in unanswered:
        text.append(passage.text[end : span.start])
        end = span.end
    return "".join([*text, passage.text[end:]])


# Answer type. A question that asks for an amount (多少, 几个, how many, how long...) is answered by a
# sentence that states one; when the sentences chosen state none, the documents most likely do not say
# (the default value, limit or version asked for is not written down). General question words only; a
# digit inside a name (base64, q4_K_M, Qwen2) states no amount.
_ASKS_AMOUNT = re.compile(
    r"多少|几\s*(?:[个张种次天年月项台块位条步层倍秒分]|小时|分钟|[A-Za-z])|多大|多久|多长|多高|多快"
    r"|\bhow\s+(?:many|much|long|large|big|fast|often)\b|\bnumber\s+of\b",
    re.IGNORECASE,
)
_STATES_AMOUNT = re.compile(
    r"(?<![A-Za-z_\d])\d|所有|全部|无限|不限|任意|几[十百千万]?(?:[个张种次天年月项台块位条步层倍秒分]|小时|分钟|周)"
    r"|\b(?:all|every|any|unlimited|none|no\s+limit|zero|one|two|three|four|five|six|"
    r"seven|eight|nine|ten|dozens?|hundreds?|thousands?|millions?|billions?|few|several|couple)\b"
    # "an hour", "a minute": an amount of one
    r"|\ban?\s+(?:minute|hour|day|week|month|year|gigabyte|megabyte)\b",  # not "a second", an ordinal too
    re.IGNORECASE,
)


# An amount of a kind (memory or size, time, money) is stated in that kind's units, or relative to another
# ("4-8 倍", "half"): "how many gigabytes" is not answered by a version number, nor "多少显存" by a port.
_RELATIVE = r"|倍|[%％]|一半|分之|\d\s*/\s*\d|(?<![A-Za-z])(?:times|percent|half|third|quarter)(?![A-Za-z])"
_DIMENSIONS = (
    (re.compile(  # memory, disk, download size
        r"\bhow\s+(?:much|many)\s+(?:\w+\s+){0,2}?(?:memory|vram|ram|disk|space|storage|gigabytes|megabytes|bytes)\b"
        r"|(?:多少|多大)(?:的)?\s*(?:显存|内存|存储|空间|磁盘|硬盘)|(?:显存|内存|磁盘|硬盘)[^。？?]{0,8}(?:多少|多大)"
        r"|多少\s*(?:GB|MB|G)\b", re.IGNORECASE),
     re.compile(r"(?<![A-Za-z])(?:[KMGT]i?B|bytes?|kilobytes?|megabytes?|gigabytes?|terabytes?)(?![A-Za-z])|字节"
                r"|\d\s*[KMGT](?![A-Za-z])" + _RELATIVE, re.IGNORECASE)),
    (re.compile(  # time
        r"多久|多长时间|几\s*(?:秒|分钟|小时|天|周|个月|年)|多少\s*(?:毫秒|秒|分钟|小时|天|时间)"
        r"|\bhow\s+many\s+(?:milli|micro|nano)?(?:seconds|minutes|hours|days|weeks|months|years)\b"
        r"|\bhow\s+long\b(?![^?.]*\b(?:context|text|prompt|input|string|sequence|window|name|list)s?\b)",
        re.IGNORECASE),
     re.compile(r"(?<![A-Za-z])(?:ms|(?:milli|micro|nano)?seconds?|secs?|minutes?|mins?|hours?|hrs?|days?|weeks?|"
                r"months?|years?)(?![A-Za-z])|\d\s*[smh](?![A-Za-z])|毫秒|秒|分钟|小时|天|周|个月|年" + _RELATIVE,
                re.IGNORECASE)),
    (re.compile(  # money
        r"\bhow\s+much\s+(?:money|(?:\w+\s+){0,3}?cost)\b|多少钱|(?:花费|成本|费用|价格|售价)[^。？?]{0,6}多少"
        r"|多少(?:费用|成本)", re.IGNORECASE),
     re.compile(r"[$¥€£]|(?<![A-Za-z])(?:USD|CNY|RMB|dollars?|cents?|yuan|euros?)(?![A-Za-z])|美元|美金|人民币|元"
                + _RELATIVE, re.IGNORECASE)),
)


def states_what_is_asked(question: str, extracts: Sequence[Extract]) -> bool:
    """False when ``question`` asks for an amount and none of ``extracts`` states one (of the kind asked:
    memory in bytes, time in time units, money in a currency)."""
    asked = content_question(question)
    if not _ASKS_AMOUNT.search(asked):
        return True
    # A number in a URL (a port, a path) or in a link target or an inlined blob states no amount.
    said = [clean_markup(e.display) for e in extracts]
    if not any(_STATES_AMOUNT.search(text) for text in said):
        return False
    return all(any(unit.search(text) for text in said) for asks, unit in _DIMENSIONS if asks.search(asked))


@dataclass(frozen=True)
class Scored:
    score: float  # lexical coverage + rank prior + dense closeness
    lexical: float
    rank: int  # 1-based passage number
    span: Span


def score_sentences(question: str, passages: Sequence[Passage], bm25: BM25Index) -> list[Scored]:
    """Every candidate sentence of ``passages``, scored for how well it answers ``question``."""
    asked = content_question(question)
    words = QuestionWords(asked)
    wants_misconceptions = _asks_about_misconceptions(asked)
    quotable = [(rank, passage, candidates(passage), local_headings(passage)) for rank, passage in enumerate(passages, 1)]
    closest = max((sim for p in passages for sim in p.sentence_scores.values()), default=0.0)
    scored: list[Scored] = []
    for rank, passage, spans, headings in quotable:
        groups = words.for_passage(passage)
        for span in spans:
            heading = headings.get(span.start)
            if not _may_answer(passage, span, heading, wants_misconceptions):
                continue
            # A table row is read with its header: the column names carry half its meaning.
            header = (f"{inherited_key(passage, span)}\n{filled_columns(table_header(passage, span) or '', span.text)}"
                      if span.is_table_row else "")
            # So is a sentence with the sub-heading it stands under inside the passage: in an FAQ
            # the question is the heading and the answer's own words may share none of it; the
            # sentence is as close to the question as its sub-heading is, if that is closer.
            heading_text = heading.text.lstrip("#").strip() if heading else ""
            lead = _item_lead(passage, span)
            lexical = group_coverage(groups, f"{passage.section}\n{heading_text}\n{header}\n{lead}\n{span.text}", bm25)
            found = [passage.sentence_scores[s.start] for s in (span, heading)
                     if s is not None and s.start in passage.sentence_scores]
            dense = _closeness(max(found) if found else None, closest)
            scored.append(Scored(lexical + RANK_PRIOR / rank + DENSE_SENTENCE_WEIGHT * dense, lexical, rank, span))
    return scored


# A (sub-)heading that is only the title of a list of wrong beliefs: "### 常见误区", "## Common misconceptions",
# "Myths". Its sentences state what is not so; they answer only a question about the misconceptions. Narrow
# on purpose: "避免误解：术语约定", "Myths and facts", "常见错误" or "Pitfalls" sections state what is so.
_MISCONCEPTION_TITLE = re.compile(
    r"(?:常见|典型|一些|几个)?(?:的)?(?:误区|误解|错误(?:观点|认识|理解|说法|看法))"
    r"|(?:common\s+|typical\s+)?(?:myths?|misconceptions?|misunderstandings?)", re.IGNORECASE)
_MISCONCEPTION_WORD = re.compile(r"误区|误解|错误(?:观点|认识|理解|说法|看法)|\b(?:myths?|misconceptions?)\b",
                                 re.IGNORECASE)
_TITLE_DECORATION = re.compile(r"^[#\s*_]*(?:\d+[.、)]\s*|[一二三四五六七八九十]+、)?|[\s*_:：]*$")


# A sub-heading over text about an answer rather than the answer: an interview page's "考察点" (what the
# question tests) and "延伸追问" (follow-ups), and "See also" / "延伸阅读" / "参考资料" lists.
_META_TITLE = re.compile(
    r"(?:考察点|考点|考查点|延伸追问|追问|课程关联|相关课程|延伸阅读|参考资料|参考文献|相关链接|相关阅读)"
    r"|(?:see\s+also|further\s+reading|references|related\s+(?:links|reading|topics)|follow-up\s+questions)",
    re.IGNORECASE)


def _sub_heading_title(passage: Passage, heading: Span | None) -> str:
    """The title a sentence stands under: its local sub-heading's, else the section's last heading's ("" under
    a question in the text, which the sentence answers), without its marks, numbering or colon."""
    if heading is not None:
        title = heading.text if heading.is_heading else ""
    else:
        title = passage.section.rsplit(HEADING_SEPARATOR, 1)[-1]
    return _TITLE_DECORATION.sub("", title)


def _may_answer(passage: Passage, span: Span, heading: Span | None, wants_misconceptions: bool) -> bool:
    """Whether ``span`` (under ``heading``) may be an answer's best sentence. A question in the text is quotable
    as the lead-in of its answer, never the answer itself; a listed wrong belief, quoted, would be stated as
    true; what a question tests, its follow-ups and further reading are about the answer, not it."""
    title = _sub_heading_title(passage, heading)
    if _asks(span) or _META_TITLE.fullmatch(title):
        return False
    return wants_misconceptions or not _MISCONCEPTION_TITLE.fullmatch(title)


def _asks_about_misconceptions(question: str) -> bool:
    return bool(_MISCONCEPTION_WORD.search(question))


def _item_lead(passage: Passage, span: Span) -> str:
    """The text of ``span``'s list item before it ("" when it starts the item, or is no list item's).

    A parameter list's item names its subject once ("`tools`: tools for the model to use. Requires
    `stream` to be set to `false`"); its later sentences are read with that subject, and quoted from it.
    """
    start = _item_lead_start(passage, span)
    return "" if start is None else passage.text[start : span.start]


def _item_lead_start(passage: Passage, span: Span) -> int | None:
    """Where ``span``'s list item starts, when some of the item's text stands before ``span``; else None."""
    if span.in_code or span.is_table_row:
        return None
    start = _item_start(passage.text, span.start)
    return start if start is not None and passage.text[start : span.start].strip() else None


def _item_start(text: str, position: int) -> int | None:
    """Where the list item that ``position`` stands in starts: its marker's line, found up through the
    item's wrapped lines (kb.sentences.wraps_into); None outside a list item."""
    line_start = text.rfind("\n", 0, position) + 1
    for _ in range(_MAX_ITEM_LINES):
        line_end = text.find("\n", line_start)
        line = text[line_start : line_end if line_end >= 0 else len(text)]
        if LIST_ITEM_RE.match(line):
            return line_start
        above = text.rfind("\n", 0, line_start - 1) + 1 if line_start else 0
        if not line_start or not wraps_into(text[above : line_start - 1], line):
            return None  # not a wrapped line: the body under an item's title is no part of its first sentence
        line_start = above
    return None


_MAX_ITEM_LINES = 12


def _item_before(passage: Passage, best: Span, quotable: Sequence[Span]) -> list[Span]:
    """The quotable sentences of ``best``'s list item before it, when they fit in an answer with it."""
    start = _item_lead_start(passage, best)
    if start is None:
        return []
    before = [s for s in quotable if start <= s.start < best.start]
    spans = [*before, best]
    if sum(len(s.text) for s in spans) > MAX_ANSWER_CHARS or _units(passage, spans) > MAX_UNITS:
        return []
    return before


SENTENCE_RERANK = "sentence"  # found_by / scores key of the reorder below


def by_best_sentence(question: str, passages: Sequence[Passage], bm25: BM25Index, depth: int) -> list[Passage]:
    """The first ``depth`` passages reordered by their best sentence's score, the rest after them.

    As with a reranker model, each reordered passage records its new position and its sentence score,
    and keeps the fused score of the position it now holds, so scores still fall with rank.
    """
    head = list(passages[:depth])
    best = [0.0] * len(head)
    for item in score_sentences(question, head, bm25):
        best[item.rank - 1] = max(best[item.rank - 1], item.score)
    order = sorted(range(len(head)), key=lambda i: -best[i])
    position_scores = [p.score for p in head]
    reordered = []
    for position, i in enumerate(order):
        passage = head[i]
        passage.score = position_scores[position]
        passage.found_by[SENTENCE_RERANK] = position + 1
        passage.scores[SENTENCE_RERANK] = best[i]
        reordered.append(passage)
    return reordered + list(passages[depth:])


def select(question: str, passages: Sequence[Passage], bm25: BM25Index) -> list[Extract]:
    scored = score_sentences(question, passages[:PASSAGES_CONSIDERED], bm25)
    if not scored:
        return []
    top_scored = max(scored, key=lambda item: item.score)
    best_rank, best = top_scored.rank, top_scored.span
    if max(item.lexical for item in scored) < MIN_COVERAGE:
        # No lexical signal (a question in another language): trust the retrieval order and read the
        # top passage from the sentence the dense search found closest in it, else from its start.
        # As a lexical answer: never a question in the text or a listed wrong belief, within one sub-section.
        headings = local_headings(passages[0])
        wants_misconceptions = _asks_about_misconceptions(content_question(question))
        top = [s for s in candidates(passages[0]) if _may_answer(passages[0], s, headings.get(s.start), wants_misconceptions)]
        near = passages[0].sentence_scores
        first = max(range(len(top)), key=lambda i: near.get(top[i].start, -1.0)) if top and near else 0
        chosen = list(takewhile(lambda u: headings.get(u.start) == headings.get(top[first].start),
                                top[first : first + MAX_UNITS]))
        return _extracts(passages, [(1, u) for u in chosen])

    passage = passages[best_rank - 1]
    quotable = candidates(passage)
    # A sentence read with its list item's subject is quoted from it (its score came partly from there).
    chosen = [(best_rank, span) for span in _item_before(passage, best, quotable)] + [(best_rank, best)]
    # Continue the best sentence with the ones after it in the same passage while short,
    # since definitions and their consequences sit next to each other.
    following = [s for s in quotable if s.start > best.start]
    headings = local_headings(passage)
    coverage = {item.span.start: item.lexical for item in scored if item.rank == best_rank}
    for span in following:
        spans = [s for _, s in chosen]
        if _units(passage, spans) >= MAX_UNITS or sum(len(s.text) for s in spans) + len(span.text) > MAX_ANSWER_CHARS:
            break
        if headings.get(span.start) != headings.get(best.start):
            break  # the next sub-section: another topic (on dev tune as many evidence spans, none run on)
        # Long enough: stop, unless the sentence answers too, or continues a command sequence (quoted to its
        # end within MAX_ANSWER_CHARS: cut, it is a broken one).
        answers_too = coverage.get(span.start, 0.0) >= max(MIN_COVERAGE, RUN_ON_COVERAGE * top_scored.lexical)
        if (_said(spans) >= MIN_ANSWER_CHARS and not best.is_table_row and not answers_too
                and not _same_code_block(passage, spans[-1], span)):
            break
        chosen.append((best_rank, span))
    if not best.is_table_row:  # a table row is continued by the rows under it, never led into
        chosen = _with_lead_in(passage, best, chosen, quotable, headings)
    return _extracts(passages, chosen)


def _with_lead_in(passage: Passage, best: Span, chosen: list[tuple[int, Span]], quotable: Sequence[Span],
                  headings: dict[int, Span]) -> list[tuple[int, Span]]:
    """``chosen`` after the sentences just before it (before the best one, or its list item), while short.

    When the best sentence ends its sub-section it cannot be continued; what leads into it is then the
    nearest context (an endpoint's ``GET /api/ps`` above its one-line description, the sentence a
    paragraph's last remark qualifies). Only within the best sentence's sub-section and page, nearest first.
    ``quotable`` and ``headings``: the passage's ``candidates`` and ``local_headings``, as ``select`` has them.
    """
    starts = {s.start for s in quotable}
    first = chosen[0][1]  # the best sentence, or the start of its list item
    lead: list[Span] = []
    length = _said(s for _, s in chosen)
    for span in reversed([s for s in split_sentences(passage.text) if s.end <= first.start]):
        # A command continued over lines ("python -m server \") is quoted from its first line, however long.
        continued = span.text.rstrip().endswith("\\") and _same_code_block(passage, span, lead[-1] if lead else first)
        if ((length >= MIN_ANSWER_CHARS and not continued)
                or _units(passage, [*(s for _, s in chosen), *lead]) >= MAX_UNITS):
            break
        if span.is_heading or span.is_table_row or headings.get(span.start) != headings.get(best.start):
            break  # a table above a prose sentence is its own statement, not what leads into it
        if PAGE_BREAK in passage.text[span.end : (lead[-1] if lead else first).start]:
            break  # the previous page: a citation names the page its quote starts on
        if span.start not in starts:
            continue
        if length + len(span.text) > MAX_ANSWER_CHARS * (_CONTINUED_COMMAND_CAP if continued else 1):
            break
        lead.append(span)
        length += _said([span])
    return [(chosen[0][0], s) for s in reversed(lead)] + chosen


_CONTINUED_COMMAND_CAP = 2  # a command continued over lines may take twice an answer's length to be whole


def candidates(passage: Passage) -> list[Span]:
    """Sentences and table rows that state something: not headings, not a table's header row."""
    spans = split_sentences(passage.text)
    markup = markup_lines(passage.text)
    out = []
    for i, span in enumerate(spans):
        # A line ending in a colon is quotable too: "For reproducible outputs, set seed to a number:" can be
        # the answer, and a label that wins is continued with what it introduces (labels count as no
        # statement against the answer's bounds; dev tune evidence +2, seed tune +2).
        if span.is_heading or _says_nothing(span.text):
            continue
        # A line of markup only: "code-block:: bash" of ".. code-block:: bash", "TIP]" of "> [!TIP]", a
        # directive's ":header-rows: 1" (kb.markup.markup_lines). Code is code, never markup.
        if not (span.in_code or span.is_table_row) and passage.text.rfind("\n", 0, span.start) + 1 in markup:
            continue
        if span.is_table_row and (i == 0 or not spans[i - 1].is_table_row) and not _starts_after_context(passage, span):
            continue  # the header row: column names, no facts
        out.append(span)
    return out


def _closeness(sim: float | None, closest: float) -> float:
    """1 for the sentence closest to the question, falling to 0 at DENSE_SPREAD below it."""
    if sim is None:
        return 0.0
    return max(0.0, 1.0 - (closest - sim) / DENSE_SPREAD)


def local_headings(passage: Passage) -> dict[int, Span]:
    """Per sentence start, the last heading line above it inside the passage (none before the first).

    A chunk that merged small sibling sections keeps their sub-headings in its text while its
    section path is their common parent's; each sentence belongs under its own sub-heading. A question
    in the text heads what follows it the same way (an FAQ's "Q: …?" line, its "A: …" under it) and
    stands under itself, so that it leads into its answer and the next question ends that answer.
    """
    out: dict[int, Span] = {}
    heading: Span | None = None
    for span in split_sentences(passage.text):
        if span.is_heading:
            heading = span
        elif _asks(span) and not span.in_code:
            heading = out[span.start] = span
        elif heading is not None:
            out[span.start] = heading
    return out


def _says_nothing(text: str) -> bool:
    """A code fence ("```bash"), a lone bracket of JSON or a bare HTML tag: no statement to quote."""
    stripped = text.strip()
    if stripped.startswith(("```", "~~~")):
        return True
    return len(_WORDISH.findall(_HTML_TAG.sub(" ", stripped))) < 2


def _asks(span: Span) -> bool:
    """A question ("问题1：为什么没有做词表扩充？"): it repeats what is asked and answers nothing. A table row is
    no question, whatever its last cell says."""
    if span.is_table_row:
        return False
    return _MARKUP.sub("", span.text).strip().rstrip("*_`'\"”’)）").endswith(("?", "？"))


def _is_label(text: str) -> bool:
    """'- **对比选型：**' or '以下是…对比表格：' introduces what follows."""
    return _MARKUP.sub("", text).strip().endswith(("：", ":"))


def _units(passage: Passage, spans: Iterable[Span]) -> int:
    """How many statements ``spans`` of ``passage`` make: a label only introduces one, so it does not count;
    the lines of one code block are one (a command sequence), however many."""
    count, previous = 0, None
    for span in sorted(spans, key=lambda s: s.start):  # in text order: a lead-in is listed after what it leads into
        if not _is_label(span.text) and not (previous is not None and _same_code_block(passage, previous, span)):
            count += 1
        previous = span
    return count


def _same_code_block(passage: Passage, before: Span, span: Span) -> bool:
    """Whether ``span`` continues the code block that ``before`` is a line of (no fence, nor the line that
    opens a reStructuredText block, between them)."""
    if not (before.in_code and span.in_code):
        return False
    between = passage.text[before.end : span.start]
    return not any(FENCE_RE.match(line) or opens_rst_code(line) for line in between.splitlines())


def _said(spans: Iterable[Span]) -> int:
    """Characters of ``spans`` that state something (labels left out), against the answer length bounds."""
    return sum(len(s.text) for s in spans if not _is_label(s.text))


def _starts_after_context(passage: Passage, span: Span) -> bool:
    """A continued table (header in the context) starts with a data row, not a header."""
    return bool(passage.context) and not passage.text[: span.start].strip()


def quoted_spans(extracts: Sequence[Extract]) -> dict[int, tuple[int, int]]:
    """Per passage number, the stretch of its text the extracts copy (from the first to the last)."""
    spans: dict[int, tuple[int, int]] = {}
    for e in extracts:
        start, end = spans.get(e.n, (e.span.start, e.span.end))
        spans[e.n] = (min(start, e.span.start), max(end, e.span.end))
    return spans


def _extracts(passages: Sequence[Passage], chosen: list[tuple[int, Span]]) -> list[Extract]:
    return [Extract(n, span, display_text(passages[n - 1], span)) for n, span in chosen]


def display_text(passage: Passage, span: Span) -> str:
    if span.is_table_row:
        header = table_header(passage, span)
        if header or _is_html_row(span.text):  # an HTML row without its header is still shown as its cells
            return spell_out_row(header or "", span.text, key=inherited_key(passage, span))
    if span.in_code:  # code as written: "2 ** n", YAML's "- name: web"
        return _LINE_BREAK.sub(_unwrapped, span.text.strip())
    text = _LITERAL_MARKER.sub(":", without_admonition_marker(span.text))
    text = _SHOWN_MARKUP.sub(_kept_code, _LINE_MARKERS.sub("", text))
    return _LINE_BREAK.sub(_unwrapped, text.strip())


# Outside inline code, bold marks, layout tags and footnote marks go from what a prose sentence shows
# ("<a href=…>申请</a>" shows as "申请"); inside it they are code: "``base_delay * 2 ** (n - 1)``" keeps its "**".
_SHOWN_MARKUP = re.compile(rf"(``[^`\n]*``|`[^`\n]*`)|\*\*|(<br\s*/?>)|{LAYOUT_TAG_RE.pattern}|{FOOTNOTE_MARK_RE.pattern}",
                           re.IGNORECASE | re.MULTILINE)


def _kept_code(match: re.Match[str]) -> str:
    return match.group(1) or (" " if match.group(2) else "")


# reStructuredText shows "Run this::" (which opens a literal block) as "Run this:".
_LITERAL_MARKER = re.compile(r"(?<=[^\s:])::\s*$")


# A sentence wrapped over lines (kb.sentences joins them) is shown as one line: the break and the next
# line's indentation or quote marks become a space, or nothing between two CJK characters.
_LINE_BREAK = re.compile(r"[ \t]*\r?\n[ \t>]*")


def _unwrapped(match: re.Match[str]) -> str:
    text, start, end = match.string, match.start(), match.end()
    cjk = start > 0 and end < len(text) and CJK_CHAR.match(text[start - 1]) and CJK_CHAR.match(text[end])
    return "" if cjk else " "


def table_header(passage: Passage, row: Span) -> str | None:
    """The header row of the table that ``row`` belongs to.

    A chunk that starts inside a table carries the table's header in its context; its
    first row is data, not a header.
    """
    if _is_html_row(row.text):
        return _html_table_header(passage, row)
    lines = passage.text[: row.start].splitlines()
    if lines and not lines[-1].strip():
        lines.pop()  # the indentation in front of the row itself
    top, reaches_chunk_start = None, True
    grid, under_header_border = False, False
    for line in reversed(lines):
        if GRID_BORDER_RE.match(line):
            grid = True  # a grid table's border between its rows; "+===+" stands under its header
            under_header_border = bool(GRID_HEADER_BORDER_RE.match(line))
            continue
        if not line.strip().startswith("|"):
            reaches_chunk_start = False
            break
        if under_header_border:
            return line.strip()
        top = line.strip()
    if grid:
        return None  # a grid table whose header is not in this passage: its first row here is data
    if reaches_chunk_start and passage.context:
        context_rows = [ln.strip() for ln in passage.context.splitlines() if ln.strip().startswith("|")]
        top = context_rows[0] if context_rows else top
    return top if top and top != row.text else None


def _is_html_row(row: str) -> bool:
    return row.lstrip()[:3].lower() == "<tr"


def _html_table_header(passage: Passage, row: Span) -> str | None:
    """The first row of the HTML table that ``row`` is in: after the last ``<table>`` before it, or when the
    chunk starts inside the table, the header row its context carries."""
    table = max((m.start() for m in HTML_TABLE_OPEN_RE.finditer(passage.text, 0, row.start)), default=-1)
    if table < 0:
        carried = HTML_ROW_RE.search(passage.context)
        return carried.group(0) if carried else None
    first = HTML_ROW_RE.search(passage.text, table)
    return first.group(0) if first is not None and first.start() < row.start else None


def _cells(row: str) -> list[str]:
    # Only bold marks go: a cell is no list item, and a lone "*" (a mark in a "Recommended" column) is its value.
    if _is_html_row(row):
        return [cell.replace("**", "") for cell in html_cells(row)]
    return [cell.replace("**", "").strip() for cell in row.strip().strip("|").split("|")]


def inherited_key(passage: Passage, row: Span) -> str:
    """The first cell of the nearest row above ``row`` in its Markdown table that has one, when ``row``'s own
    is empty: tables leave the model name blank in the rows of its other settings ("same as above")."""
    if _is_html_row(row.text) or _cells(row.text)[:1] != [""]:
        return ""
    for line in reversed(passage.text[: row.start].splitlines()):
        stripped = line.strip()
        if not stripped.startswith("|") or _TABLE_SEPARATOR.match(stripped):
            return ""  # out of the table, or past its first data row
        if first := _cells(stripped)[0]:
            return first
    return ""


_TABLE_SEPARATOR = table_separator()


def filled_columns(header: str, row: str) -> str:
    """The header's column names over the cells of ``row`` that hold something.

    An empty cell states nothing: a row whose 'Recommended' cell is blank does not answer
    'which are recommended?'. A header that does not line up with the row is kept whole.
    """
    names, values = _cells(header), _cells(row)
    if len(names) != len(values):
        return header
    return " | ".join(name for name, value in zip(names, values, strict=True) if value)


def spell_out_row(header: str, row: str, key: str = "") -> str:
    """'| **显存需求** | 极大 | 极小 |' under '| 维度 | 全量 | LoRA |' -> '显存需求：全量：极大；LoRA：极小'.

    Empty cells are left out (they would read 'Recommended：' with nothing after it). ``key`` stands in
    for an empty first cell: the row above's, which it repeats ("same as above").
    """
    names, values = _cells(header), _cells(row)
    if values and not values[0] and key:
        values[0] = key
    if len(values) < 2 or len(names) != len(values):
        return " | ".join(values)
    # A cell's own "。" would end the spelled-out sentence before its citation mark.
    pairs = "，".join(
        f"{name}：{value.replace('<br>', '，').replace('。', '，').rstrip('，')}"
        for name, value in zip(names[1:], values[1:], strict=True) if value
    )
    return f"{values[0]} — {pairs}" if pairs else values[0]


def compose(extracts: Sequence[Extract]) -> str:
    """Answer text: each extract followed by its citation mark."""
    return "\n".join(f"{e.display} [{e.n}]" for e in extracts)
