"""The run's report: report.md and a self-contained report.html (inline CSS, plots embedded), failures first."""

from __future__ import annotations

import base64
import html
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eval.judges.offline import CROSS_LINGUAL_COSINE, LEXICAL_SUPPORTED
from eval.metrics.aggregate import is_failure
from eval.metrics.ranking import MIN_EVIDENCE_COVERAGE
from eval.metrics.registry import fmt
from eval.metrics.scoring import CORRECT_COVERAGE
from eval.report.plots import make_plots
from eval.report.tables import (
    gold_sets,
    group_table,
    html_table,
    judge_mistakes,
    judge_table,
    md_table,
    retrieval_table,
    sets_answer_table,
    sets_retrieval_table,
    summary_table,
)

log = logging.getLogger(__name__)


# --- failures ----------------------------------------------------------------------------------
def failure_reasons(row: dict[str, Any], gold: dict[str, Any]) -> list[str]:
    reasons = []
    if row["error"]:
        reasons.append(f"error: {row['error']}")
    if gold["answerable"] and row["refused"]:
        reasons.append("refused an answerable question")
    if not gold["answerable"] and not row["refused"] and not row["error"]:
        reasons.append("answered an unanswerable question")
    unsupported = [c for c in row["claims"] if not c["offline"]["supported"]]
    if unsupported and gold["answerable"]:
        reasons.append(f"{len(unsupported)} of {len(row['claims'])} claims unsupported")
    if gold["answerable"] and not row["refused"] and not row["correctness"]["offline"]:
        reasons.append(f"gold key terms missing (coverage {fmt(row['correctness']['coverage'])})")
    if row["citation_precision"] is not None and row["citation_precision"] < 1:
        reasons.append(f"citation precision {fmt(row['citation_precision'])}")
    return reasons


def failures(results: dict[str, Any]) -> dict[str, list[tuple[dict[str, Any], dict[str, Any]]]]:
    out: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for q in results.get("questions", []):
        gold = {k: v for k, v in q.items() if k != "configs"}
        for config, row in q["configs"].items():
            if is_failure({**row, "gold": gold}):
                out.setdefault(config, []).append((gold, row))
    return out


def _md_failure(gold: dict[str, Any], row: dict[str, Any]) -> str:
    lines = [f"#### {gold['id']} · {gold['type']} · {gold['lang']} · {gold['split']}",
             f"**Question:** {gold['question']}  ",
             f"**Why:** {'; '.join(failure_reasons(row, gold))}  ",
             f"**Gold answer:** {gold['answer']}", "", "**Answer:**", ""]
    lines += [f"> {line}" for line in (row["text"] or "(empty)").splitlines()]
    if row["citations"]:
        lines += ["", "**Citations:** " + "; ".join(
            f"[{c['n']}] {c['section'] or c['doc']} ({c['start']}-{c['end']}) "
            f"{'✓ evidence' if c['has_evidence'] else '✗ no gold evidence'}" for c in row["citations"])]
    bad = [c for c in row["claims"] if not c["offline"]["supported"]]
    if bad:
        lines += ["", "**Unsupported claims:**"]
        lines += [f"- ❌ **{c['text']}** — {c['offline']['reason']}" for c in bad]
    return "\n".join(lines)


def _html_failure(gold: dict[str, Any], row: dict[str, Any]) -> str:
    e = html.escape
    answer = e(row["text"] or "(empty)")
    for c in row["claims"]:
        if not c["offline"]["supported"] and e(c["text"]) in answer:
            answer = answer.replace(e(c["text"]), f"<mark title=\"{e(c['offline']['reason'])}\">{e(c['text'])}</mark>", 1)
    citations = "".join(
        f"<li>[{c['n']}] {e(c['section'] or c['doc'])} ({c['start']}–{c['end']}) "
        f"<span class=\"{'ok' if c['has_evidence'] else 'bad'}\">"
        f"{'holds gold evidence' if c['has_evidence'] else 'no gold evidence'}</span></li>" for c in row["citations"])
    claims = "".join(f"<li><mark>{e(c['text'])}</mark> — {e(c['offline']['reason'])}</li>"
                     for c in row["claims"] if not c["offline"]["supported"])
    return (
        f"<details open><summary><b>{e(gold['id'])}</b> · {e(gold['type'])} · {e(gold['lang'])} · "
        f"{e(gold['question'])} — <span class=\"bad\">{e('; '.join(failure_reasons(row, gold)))}</span></summary>"
        f"<p><b>Gold answer:</b> {e(gold['answer'])}</p><div class=\"answer\">{answer}</div>"
        + (f"<p><b>Citations</b></p><ul>{citations}</ul>" if citations else "")
        + (f"<p><b>Unsupported claims</b></p><ul>{claims}</ul>" if claims else "")
        + "</details>"
    )


# --- the documents -------------------------------------------------------------------------------
def methods_text() -> list[str]:
    return [
        f"- A retrieved passage is **relevant** when its span of the document covers at least "
        f"{MIN_EVIDENCE_COVERAGE:.0%} of a gold evidence string's span (the whole string when it lies inside the "
        "passage; most of it when a chunk boundary cuts through it).",
        "- **Faithfulness** = supported claims / all claims of an answer (RAGAS), averaged over answers with claims; "
        "a claim is judged only against the passages its sentence cites; uncited sentences are unsupported. "
        "Refusals have no claims and are scored as refusals.",
        f"- **Offline judge**: lexical support ≥ {LEXICAL_SUPPORTED} (same language) or e5 cosine ≥ "
        f"{CROSS_LINGUAL_COSINE} (across languages), then checks for numbers, negation, swapped terms, new terms "
        "and table rows/columns (eval/judges.py).",
        "- **Citation precision**: share of cited passages that hold gold evidence; **recall**: share of gold evidence "
        "strings held by a cited passage (answerable questions the system answered).",
        f"- **Correct (offline)**: at least {CORRECT_COVERAGE:.0%} of the gold answer's key terms appear in the answer "
        "(the gold evidence's terms when the answer is in the other language).",
        "- The naive baseline writes no citations: its sentences are judged against all chunks it was given.",
        "- **ev@N** (evidence within the first N characters): the returned passages are read in rank order as one "
        "text; the question counts when a gold evidence span is covered within its first N characters. Unlike hit@k "
        "it does not reward bigger chunks. **Evidence cited**: share of answerable questions whose answer has a "
        "citation whose quote covers a gold evidence span; **quotes not in docs** counts citations whose quote is not "
        "the document's text at its offsets (must be 0).",
    ]


def build_markdown(results: dict[str, Any], plots: Sequence[Path]) -> str:
    meta = results["meta"]
    configs = results.get("configs") or {}
    limit = f", first {meta['limit']}" if meta["limit"] else ""
    parts = [
        "# Evaluation report", "",
        f"Run started {meta['started']}, took {meta['seconds']} s. Configurations: {', '.join(meta['configs']) or 'none'}. "
        f"Split: {meta['split']}{limit}. "
        f"Judges: offline{', LLM ' + meta['judge_model'] if meta['llm_judge'] else ''}.", "",
        f"Gold set: {meta['gold']['questions']} questions; **{meta['gold']['skipped']} line(s) skipped**"
        + (": " + "; ".join(meta["gold"]["problems"]) if meta["gold"]["problems"] else "") + ".",
    ]
    parts += [f"- Note: {n}" for n in meta["notes"]]
    stats = results.get("llm_judge_stats")
    if stats:
        parts += ["", f"LLM judge: {stats['calls']} calls, {stats['retries']} retries, "
                      f"**{stats['unparseable']} unparseable judgements** (not scored), {stats['errors']} failed calls."]
    if len(gold_sets(results)) > 1 or results.get("sets") is not None:
        parts += ["", "## Gold sets side by side", ""]
        for name, section in gold_sets(results).items():
            g = section.get("gold") or meta["gold"]
            parts.append(f"- {name}: {g['questions']} questions from {g.get('file', '')}, {g.get('skipped', 0)} skipped")
        if any(s.get("configs") for s in gold_sets(results).values()):
            parts += ["", "### Extractive answers", "", md_table(sets_answer_table(results))]
        parts += ["", "### Retrieval", "", md_table(sets_retrieval_table(results))]
    if configs:
        parts += ["", "## Summary (all questions in this run)", "", md_table(summary_table(configs, "all"))]
        if any("split:test" in s for s in configs.values()):
            parts += ["", "### Test split", "", md_table(summary_table(configs, "split:test"))]
    fails = failures(results)
    if configs:
        parts += ["", "## Failures", ""]
        if not fails:
            parts.append("None.")
        for config, items in fails.items():
            parts += [f"### {config}: {len(items)} question(s)", ""]
            parts += [_md_failure(g, r) + "\n" for g, r in items]
        parts += ["## By question type", "", md_table(group_table(configs, "type:")), "",
                  "## By language", "", md_table(group_table(configs, "lang:"))]
    if results.get("retrieval"):
        parts += ["", "## Retrieval (hybrid vs BM25 vs dense vs naive llama-index)"]
        for split in ("tune", "test"):
            if split in results["retrieval"]["summary"]:
                parts += ["", f"### {split} split", "", md_table(retrieval_table(results["retrieval"]["summary"], split))]
    if results.get("judges"):
        parts += ["", "## Judging the judges (labelled claims in eval/datasets/)", "",
                  "The offline judge's rules were tuned on claims.jsonl; claims_holdout.jsonl was written afterwards.",
                  "", md_table(judge_table(results["judges"])), "", "Mistakes:", *judge_mistakes(results["judges"])]
    if plots:
        parts += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    parts += ["", "## How it is measured", "", *methods_text(), ""]
    return "\n".join(parts)


CSS = """body{font-family:system-ui,"WenQuanYi Micro Hei",sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;
color:#1a202c}table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border:1px solid #cbd5e0;
padding:3px 7px;text-align:right}td:first-child,th:first-child{text-align:left}th{background:#edf2f7}
mark{background:#fed7d7}.bad{color:#c53030}.ok{color:#2f855a}.answer{white-space:pre-wrap;background:#f7fafc;
border-left:3px solid #a0aec0;padding:.5em 1em}details{margin:.6em 0}img{max-width:100%}"""


def build_html(results: dict[str, Any], plots: Sequence[Path]) -> str:
    e = html.escape
    meta = results["meta"]
    configs = results.get("configs") or {}
    body = [f"<h1>Evaluation report</h1><p>Run started {e(meta['started'])}, took {meta['seconds']} s. "
            f"Configurations: {e(', '.join(meta['configs']) or 'none')}. Split: {e(meta['split'])}. "
            f"Gold set: {meta['gold']['questions']} questions, <b>{meta['gold']['skipped']} line(s) skipped</b>"
            f"{': ' + e('; '.join(meta['gold']['problems'])) if meta['gold']['problems'] else ''}.</p>"]
    body += [f"<p class=\"bad\">Note: {e(n)}</p>" for n in meta["notes"]]
    stats = results.get("llm_judge_stats")
    if stats:
        body.append(f"<p>LLM judge: {stats['calls']} calls, {stats['retries']} retries, "
                    f"<b>{stats['unparseable']} unparseable judgements</b> (not scored), {stats['errors']} failed calls.</p>")
    body += ["<h2>Gold sets side by side</h2>", html_table(sets_answer_table(results)),
             html_table(sets_retrieval_table(results))]
    if configs:
        body += ["<h2>Summary</h2>", html_table(summary_table(configs, "all"))]
        fails = failures(results)
        body.append("<h2>Failures</h2>" + ("<p>None.</p>" if not fails else ""))
        for config, items in fails.items():
            body.append(f"<h3>{e(config)}: {len(items)} question(s)</h3>")
            body += [_html_failure(g, r) for g, r in items]
        body += ["<h2>By question type</h2>", html_table(group_table(configs, "type:")),
                 "<h2>By language</h2>", html_table(group_table(configs, "lang:"))]
    if results.get("retrieval"):
        body.append("<h2>Retrieval</h2>")
        for split in ("tune", "test"):
            if split in results["retrieval"]["summary"]:
                body += [f"<h3>{split} split</h3>", html_table(retrieval_table(results["retrieval"]["summary"], split))]
    if results.get("judges"):
        body += ["<h2>Judging the judges</h2>", html_table(judge_table(results["judges"]))]
    for path in plots:
        data = base64.b64encode(path.read_bytes()).decode()
        body.append(f"<h3>{e(path.stem)}</h3><img alt=\"{e(path.stem)}\" src=\"data:image/png;base64,{data}\">")
    body.append("<h2>How it is measured</h2><ul>" +
                "".join(f"<li>{e(line.removeprefix('- ').replace('**', ''))}</li>" for line in methods_text()) + "</ul>")
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Evaluation report</title>"
            f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>")


def write_report(out: Path, results: dict[str, Any]) -> list[Path]:
    plots = make_plots(out, results)
    md = out / "report.md"
    md.write_text(build_markdown(results, plots), encoding="utf-8")
    page = out / "report.html"
    page.write_text(build_html(results, plots), encoding="utf-8")
    log.info("Report: %s and %s (%d plots)", md, page, len(plots))
    return [md, page, *plots]
