"""Checks that catch claims which share most words with a passage and still misstate it.

Each check compares a claim with the passage segment it aligns to (or the whole passage) and
returns why the claim is not supported, or None:

- numbers: a number the passage never states (chat.grounding.numbers_missing), or a number stated
  with another unit ("2 months" where the passage says "2 周");
- negation: a negation cue (不/没有/无/非/未/难以/无法/not/never…) on one side and not on the other,
  within ``NEGATION_WINDOW`` characters of content both sides share;
- contrast terms: a term from ``CONTRAST_GROUPS`` (RLHF/DPO, TTFT/TPOT, Encoder/Decoder, K/V, LoRA/全量,
  高/低, 线性/平方…) that the aligned segment lacks while it has a sibling; or, with both siblings
  present, one standing where the passage puts the other ("从专能性转变为全能性" vs "从全能性…");
- new technical terms: a term the claim introduces (Latin words in a Chinese claim, acronyms and
  CamelCase in English) that no cited passage mentions ("束搜索（Beam Search）"), or that replaces a
  different technical term in an otherwise matching clause ("Canvas" where the passage says "NanoBanana").
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from chat.grounding import content_units, numbers_missing
from eval.judges.claims import protect
from kb.text import LATIN_TERM, is_chinese, normalize

NEGATION_WINDOW = 8  # characters on each side of a cue that it governs (within its clause)
MIN_SHARED_FOR_NEGATION = 2  # shared units that say both sides talk about the same thing
REPLACED_TERM_MIN_OVERLAP = 0.6  # share of the claim's other content the clause must hold for a replacement

CONTRAST_GROUPS: tuple[tuple[str, ...], ...] = (
    ("encoder", "decoder"),
    ("rlhf", "dpo"),
    ("ttft", "tpot"),
    ("k", "v"),
    ("key", "value", "query"),
    ("lora", "全量"),
    ("one-hot", "embedding"),
    ("稀疏", "稠密"),
    ("广度", "深度"),
    ("多头", "多层"),
    ("专能", "全能"),
    ("前馈", "注意力"),
    ("线性", "平方", "指数"),
    ("越高", "越低"),
    ("变好", "变差"),
    ("增大", "减小"),
    ("保留", "取消"),
    ("串行", "并行"),
    ("higher", "lower"),
    ("increase", "decrease"),
)

_UNITS = {
    "年": ("年", "years", "year"),
    "月": ("个月", "月", "months", "month"),
    "周": ("周", "weeks", "week"),
    "天": ("天", "days", "day"),
    "层": ("层", "layers", "layer"),
    "倍": ("倍", "times", "fold"),
    "小时": ("小时", "hours", "hour"),
    "分钟": ("分钟", "minutes", "minute"),
    "毫秒": ("毫秒", "ms", "milliseconds"),
    "秒": ("秒", "seconds", "second"),
    "亿": ("亿",),
    "万": ("万",),
    "个": ("个",),
}
_UNIT_PATTERN = "|".join(sorted({re.escape(a) for aliases in _UNITS.values() for a in aliases}, key=len, reverse=True))
_NUMBER_UNIT = re.compile(rf"(\d+(?:\.\d+)?)\s*(?:个\s*)?({_UNIT_PATTERN})(?![a-z])")
_CANONICAL = {alias: unit for unit, aliases in _UNITS.items() for alias in aliases}

_NEGATION = re.compile(r"无法|不能|不会|不再|没有|难以|并非|毫无|无需|不|没|无|非|未|\b(?:not|never|no|cannot|without|unable)\b|n't")
_NOT_NEGATION = ("非常", "无论", "不仅", "不断", "无损", "不少", "非线性", "不可接受")
_WORD = LATIN_TERM
_CJK = re.compile(r"[\u3400-\u9fff]")
_CLAUSE = re.compile(r"[，,。；;：:！？!?\n]")




# --- numbers -------------------------------------------------------------------------------
def _number_units(text: str) -> list[tuple[str, str]]:
    return [(m.group(1), _CANONICAL[m.group(2)]) for m in _NUMBER_UNIT.finditer(normalize(text))]


def number_problem(claim: str, passage: str) -> str | None:
    missing = numbers_missing(protect(claim), passage)
    if missing:
        return f"number not in the passage: {', '.join(dict.fromkeys(missing))}"
    stated = _number_units(passage)
    for number, unit in _number_units(claim):
        units = {u for n, u in stated if n == number}
        if units and unit not in units:
            return f"number with another unit: {number} {unit}, the passage says {number} {'/'.join(sorted(units))}"
    return None


# --- negation ------------------------------------------------------------------------------
def _clauses(text: str) -> list[str]:
    return [c for c in _CLAUSE.split(normalize(protect(text))) if c.strip()]


def _cues(clause: str) -> list[tuple[int, int]]:
    ignored = [(m.start(), m.end()) for word in _NOT_NEGATION for m in re.finditer(re.escape(word), clause)]
    return [(m.start(), m.end()) for m in _NEGATION.finditer(clause)
            if not any(start <= m.start() < end for start, end in ignored)]


def _scope(clause: str, start: int, end: int) -> set[str]:
    """Content units within NEGATION_WINDOW characters either side of a cue, inside its clause."""
    return content_units(_left(clause, start)) | content_units(_right(clause, end))


def _left(clause: str, start: int) -> str:
    cut = max(0, start - NEGATION_WINDOW)
    while cut > 0 and clause[cut - 1].isascii() and clause[cut - 1].isalnum():  # never cut a word in two
        cut -= 1
    return clause[cut:start]


def _right(clause: str, end: int) -> str:
    cut = min(len(clause), end + NEGATION_WINDOW)
    while cut < len(clause) and clause[cut].isascii() and clause[cut].isalnum():
        cut += 1
    return clause[end:cut]


def _negated(text: str, right_only: bool = False) -> list[set[str]]:
    if right_only:
        return [content_units(_right(clause, e)) for clause in _clauses(text) for _, e in _cues(clause)]
    return [_scope(clause, s, e) for clause in _clauses(text) for s, e in _cues(clause)]


def _negated_near(text: str, shared: set[str]) -> bool:
    """Whether a clause of ``text`` holding any of ``shared`` also holds a negation cue."""
    return any(_cues(clause) for clause in _clauses(text) if any(u in clause for u in shared))


def negation_problem(claim: str, best: str, segments: Iterable[str]) -> str | None:
    """A negation on one side only, around content both sides share.

    A negated claim is checked against every segment that shares its negated content (the segment it
    aligns to best may be another one); a negation in the passage, against the aligned segment only,
    and only for what follows the cue ("小模型完全不具备的能力" negates 具备, not 模型).
    """
    segments = list(segments)
    for scope in _negated(claim):
        relevant = [(s, {u for u in scope if u in normalize(s)}) for s in segments]
        relevant = [(s, shared) for s, shared in relevant if len(shared) >= MIN_SHARED_FOR_NEGATION]
        if relevant and not any(_negated_near(s, shared) for s, shared in relevant):
            return "negation: the claim negates what the passage states"
    claim_n = normalize(protect(claim))
    for scope in _negated(best, right_only=True):
        shared = {u for u in scope if u in claim_n}
        if shared and len(shared) >= min(MIN_SHARED_FOR_NEGATION, len(scope)) and not _negated_near(claim, shared):
            return "negation: the passage negates what the claim states"
    return None


# --- contrast terms ------------------------------------------------------------------------
def has_term(text: str, term: str) -> bool:
    if re.fullmatch(r"[a-z0-9\-]+", term):  # a whole word, or its plural
        return re.search(rf"(?<![a-z0-9\-]){re.escape(term)}s?(?![a-z0-9\-])", text) is not None
    return term in text


def _context_before(text: str, term: str) -> set[str]:
    """The two content characters before each occurrence of ``term`` (quotes and spaces ignored)."""
    compact = re.sub(r"[\s“”\"'‘’「」*`]", "", text)
    found = set()
    for m in re.finditer(re.escape(term), compact):
        before = compact[max(0, m.start() - 2) : m.start()]
        if len(before) == 2 and _CJK.search(before):
            found.add(before)
    return found


def _term_windows(text: str, term: str) -> list[set[str]]:
    windows = []
    for clause in _clauses(text):
        for m in re.finditer(re.escape(term), clause):
            windows.append(_scope(clause, m.start(), m.end()))
    return windows


def contrast_in_context(claim: str, passage: str) -> str | None:
    """A contrast term the passage never uses, where the passage has its sibling amid the same words."""
    c, p = normalize(protect(claim)), normalize(passage)
    for group in CONTRAST_GROUPS:
        for term in (t for t in group if has_term(c, t) and not has_term(p, t)):
            for sibling in (t for t in group if t != term and has_term(p, t)):
                for mine in _term_windows(c, term):
                    if any(len(mine & theirs) >= MIN_SHARED_FOR_NEGATION for theirs in _term_windows(p, sibling)):
                        return f"swapped term: the claim says {term}, the passage says {sibling}"
    return None


def contrast_problem(claim: str, segment: str) -> str | None:
    c, s = normalize(protect(claim)), normalize(segment)
    for group in CONTRAST_GROUPS:
        in_claim = [t for t in group if has_term(c, t)]
        in_segment = [t for t in group if has_term(s, t)]
        for term in in_claim:
            siblings = [t for t in in_segment if t != term and t not in in_claim]
            if term not in in_segment and siblings:
                return f"swapped term: the claim says {term}, the passage says {siblings[0]}"
        if len(in_claim) >= 2 and set(in_claim) <= set(in_segment):
            for term in in_claim:
                for before in _context_before(c, term) - _context_before(s, term):
                    if any(before in _context_before(s, other) for other in in_claim if other != term):
                        return f"swapped terms: “{before}{term}” — the passage puts another term there"
    return None


# --- technical terms -----------------------------------------------------------------------
def technical_terms(text: str, acronyms_only: bool = False) -> set[str]:
    """Names a claim can get wrong: capitalised Latin words in Chinese text; acronyms, CamelCase and
    digits in English. ``acronyms_only``: just acronyms, CamelCase and names with digits (RLHF, LoRA, GPT-4)."""
    chinese = is_chinese(text)
    terms = set()
    for m in _WORD.finditer(text):
        word = m.group(0)
        sentence_start = m.start() == 0 or text[: m.start()].rstrip().endswith((".", "!", "?", ":"))
        acronym = sum(ch.isupper() for ch in word) >= 2 or any(ch.isdigit() for ch in word)
        technical = acronym or (
            not acronyms_only and word[0].isupper() and (chinese or not sentence_start) and len(word) > 1
        )
        if technical:
            plural = re.fullmatch(r"[A-Z]{2,}s", word)  # RNNs -> rnn, but RPS stays rps
            terms.add(word[:-1].lower() if plural else word.lower())
    return terms


def new_term_problem(claim: str, passages: Iterable[str]) -> str | None:
    haystack = normalize(" ".join(passages))
    missing = sorted(t for t in technical_terms(claim) if not has_term(haystack, t))
    if missing:
        return f"term not in the cited passages: {', '.join(missing)}"
    return None


def replaced_term_problem(claim: str, clause: str, acronyms_only: bool = False) -> str | None:
    """In a clause that says the same thing otherwise, the claim has a technical term where the clause has another.

    Against a whole segment (``acronyms_only``), only acronym-like names count: a segment is often read
    with its heading ("Decoder-only 架构" over "取消独立 Encoder"), which plain capitalised words come from.
    """
    claim_terms, clause_terms = technical_terms(claim, acronyms_only), technical_terms(clause, acronyms_only)
    clause_n, claim_n = normalize(clause), normalize(protect(claim))
    ours = {t for t in claim_terms if not has_term(clause_n, t)}
    theirs = {t for t in clause_terms if not has_term(claim_n, t)}
    if not ours or not theirs:
        return None
    rest = content_units(protect(claim)) - {t for t in claim_terms}
    if rest and sum(1 for u in rest if u in clause_n) / len(rest) >= REPLACED_TERM_MIN_OVERLAP:
        return f"swapped term: the claim says {sorted(ours)[0]}, the passage says {sorted(theirs)[0]}"
    return None
