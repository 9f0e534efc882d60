"""One answer scored against its gold question: faithfulness, citations, refusal, correctness, retrieval.

- Faithfulness (RAGAS): the answer's atomic claims (eval.judges.claims), each supported or not by the passages
  the claim's sentence cites; an uncited sentence's claims are not supported. Faithfulness =
  supported / all claims. A refusal has no claims and no faithfulness; it is scored as a refusal.
- Citation precision: share of cited passages that hold gold evidence; recall: share of gold evidence
  strings that some cited passage holds. "Holds" is ``eval.metrics.ranking.covers`` on document spans: the
  passage covers at least MIN_EVIDENCE_COVERAGE of the evidence string's span.
- Evidence cited: an answerable question's answer has a citation whose quote (its span of the document)
  covers a gold evidence string (``covers``). Quotes not in the documents: citations whose quote is not
  exactly the document text at the quote's offsets (must be 0: a quote a user cannot find is a defect).
- Correctness, offline: coverage of the gold answer's key terms (chat.grounding.content_units) in the
  answer text, correct at ``CORRECT_COVERAGE``. When the answer is in another language than the gold
  answer (a Chinese extract for an English question), the gold answer's words cannot appear in it, so
  the key terms are those of the gold evidence (document text, the answer's language) instead.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from chat.grounding import content_units
from eval.data.gold import GoldQuestion
from eval.judges.checks import is_chinese
from eval.judges.claims import cited_sentences, claims_of, protect, strip_marks
from eval.judges.llm import LLMJudge
from eval.judges.offline import OfflineJudge, Verdict
from eval.metrics.ranking import SpanRef, covers, locate_evidence, question_metrics
from eval.systems.configs import AnswerRecord
from kb.text import normalize

log = logging.getLogger(__name__)

CORRECT_COVERAGE = 0.5


def key_term_coverage(reference: str, text: str) -> float:
    units = content_units(protect(reference))
    if not units:
        return 0.0
    haystack = normalize(text)
    return sum(1 for u in units if u in haystack) / len(units)


def offline_correctness(gold: GoldQuestion, record: AnswerRecord) -> float:
    if record.refused or not record.text:
        return 0.0
    if is_chinese(record.text) == is_chinese(gold.answer):
        return key_term_coverage(gold.answer, record.text)
    return key_term_coverage(" ".join(gold.evidence), record.text)


def _judge_claims(judge: OfflineJudge, claims: Sequence[tuple[str, list[int]]], record: AnswerRecord) -> list[Verdict]:
    verdicts = []
    for claim, cites in claims:
        if not cites:
            verdicts.append(Verdict(False, 0.0, "no citation"))
            continue
        verdicts.append(judge.judge(claim, [record.passages[n - 1].text for n in cites]))
    return verdicts


def _llm_claims(llm: LLMJudge, question: str, record: AnswerRecord,
                sentences: Sequence[Any]) -> list[tuple[str, list[int]]] | None:
    """Claims the LLM extracts, each with the citations of its marks or, without marks, of its sentence."""
    extracted = llm.extract_claims(question, record.text)
    if extracted is None:
        return None
    out = []
    for claim in extracted:
        plain, cites = strip_marks(claim, len(record.passages))
        if record.cites_all:
            cites = list(range(1, len(record.passages) + 1))
        elif not cites and sentences:
            units = content_units(protect(plain))
            source = max(sentences, key=lambda s: sum(1 for u in units if u in normalize(s.text)))
            cites = list(source.cites)
        out.append((plain, cites))
    return out


def _llm_verdicts(llm: LLMJudge, claims: Sequence[tuple[str, list[int]]], record: AnswerRecord) -> list[Verdict]:
    verdicts: list[Verdict | None] = [None] * len(claims)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, (_, cites) in enumerate(claims):
        if cites:
            groups.setdefault(tuple(cites), []).append(i)
        else:
            verdicts[i] = Verdict(False, 0.0, "no citation")
    for cites, members in groups.items():
        judged = llm.verify([claims[i][0] for i in members], [record.passages[n - 1].text for n in cites])
        for i, verdict in zip(members, judged, strict=True):
            verdicts[i] = verdict
    return [v for v in verdicts if v is not None]


def score_answer(record: AnswerRecord, gold: GoldQuestion, documents: dict[str, str], judge: OfflineJudge,
                 llm: LLMJudge | None = None) -> dict[str, Any]:
    """Everything measured about one answer, as plain data for results.json."""
    located = locate_evidence(gold.evidence, documents, gold.doc)
    evidence = [e.span for e in located]
    spans = [SpanRef(p.doc, p.start, p.end, p.text) for p in record.passages]
    out: dict[str, Any] = record.to_dict()
    out["retrieval"] = question_metrics(spans, located) if gold.answerable and record.passages else None
    out["quotes_not_in_documents"] = sum(documents.get(q.doc, "")[q.start:q.end] != q.text for q in record.quotes)
    quote_spans = [SpanRef(q.doc, q.start, q.end) for q in record.quotes]
    out["evidence_cited"] = (any(covers(q, e) for q in quote_spans for e in evidence)
                             if gold.answerable and not record.cites_all else None)
    out["refusal_correct"] = record.refused != gold.answerable

    answered = not record.refused and not record.error and bool(record.text)
    sentences = cited_sentences(record.text, len(record.passages)) if answered else []
    if record.cites_all:
        for s in sentences:
            s.cites = list(range(1, len(record.passages) + 1))
    claims = claims_of(sentences)
    verdicts = _judge_claims(judge, claims, record)
    out["claims"] = [{"text": c, "cites": cites, "offline": v.to_dict(), "llm": None}
                     for (c, cites), v in zip(claims, verdicts, strict=True)]
    out["faithfulness"] = {"offline": sum(bool(v.supported) for v in verdicts) / len(verdicts) if verdicts else None,
                           "llm": None}

    cited = sorted({n for s in sentences for n in s.cites})
    out["citations"] = []
    for n in cited:
        p = record.passages[n - 1]
        holds = any(covers(SpanRef(p.doc, p.start, p.end), e) for e in evidence)
        out["citations"].append({"n": n, "doc": p.doc, "section": p.section, "start": p.start, "end": p.end,
                                 "has_evidence": holds})
    out["citation_precision"] = (sum(c["has_evidence"] for c in out["citations"]) / len(cited)
                                 if cited and gold.answerable and answered else None)
    cited_spans = [SpanRef(record.passages[n - 1].doc, record.passages[n - 1].start, record.passages[n - 1].end)
                   for n in cited]
    out["citation_recall"] = (sum(any(covers(c, e) for c in cited_spans) for e in evidence) / len(evidence)
                              if evidence and gold.answerable and answered else None)

    coverage = offline_correctness(gold, record) if gold.answerable else None
    out["correctness"] = {
        "coverage": coverage,
        "offline": (coverage or 0.0) >= CORRECT_COVERAGE if gold.answerable else record.refused,
        "llm": None,
    }
    if llm is not None:
        _add_llm(out, llm, gold, record, sentences)
    return out


def _add_llm(out: dict[str, Any], llm: LLMJudge, gold: GoldQuestion, record: AnswerRecord,
             sentences: Sequence[Any]) -> None:
    answered = not record.refused and not record.error and bool(record.text)
    if not answered:
        out["correctness"]["llm"] = False if gold.answerable else record.refused
        out["llm"] = {"claims": [], "unparseable": 0}
        return
    unparseable = 0
    claims = _llm_claims(llm, gold.question, record, sentences)
    verdicts: list[Verdict] = []
    if claims is None:
        unparseable += 1
    else:
        verdicts = _llm_verdicts(llm, claims, record)
        unparseable += sum(1 for v in verdicts if v.supported is None)
    judged = [v for v in verdicts if v.supported is not None]
    out["faithfulness"]["llm"] = sum(bool(v.supported) for v in judged) / len(judged) if judged else None
    if gold.answerable:
        correct = llm.correctness(gold.question, gold.answer, record.text)
        unparseable += correct is None
        out["correctness"]["llm"] = correct
    else:
        out["correctness"]["llm"] = False  # an answer to an unanswerable question is wrong
    out["llm"] = {"claims": [{"text": c, "cites": cites, **v.to_dict()}
                             for (c, cites), v in zip(claims or [], verdicts, strict=False)],
                  "extraction_failed": claims is None, "unparseable": unparseable}
