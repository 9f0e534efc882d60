"""The run's report: report.md and a self-contained report.html (inline CSS, plots embedded), failures first."""

from __future__ import annotations

import base64
import html
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eval.aggregate import is_failure
from eval.judges import CROSS_LINGUAL_COSINE, LEXICAL_SUPPORTED
from eval.metrics import MIN_EVIDENCE_COVERAGE
from eval.plots import make_plots
from eval.scoring import CORRECT_COVERAGE

log = logging.getLogger(__name__)

Table = tuple[list[str], list[list[str]]]

SUMMARY_ROWS = (
    ("n", "questions", "int"), ("answered", "answered (not refused)", "int"), ("errors", "errors", "int"),
    ("faithfulness", "faithfulness (offline judge)", "pct"), ("faithfulness_llm", "faithfulness (LLM judge)", "pct"),
    ("llm_unparseable", "LLM judgements unparseable", "int"),
    ("claims", "claims judged", "int"), ("unsupported_claims", "unsupported claims", "int"),
    ("citation_precision", "citation precision", "pct"), ("citation_recall", "citation recall", "pct"),
    ("evidence_cited", "evidence cited (answerable)", "pct"), ("quotes_not_in_documents", "quotes not in documents", "int"),
    ("correct_refusal_rate", "correct refusals (unanswerable)", "pct"),
    ("wrong_refusal_rate", "wrong refusals (answerable)", "pct"), ("refusal_accuracy", "refusal accuracy", "pct"),
    ("correct_rate", "correct (offline, key terms)", "pct"), ("correct_rate_llm", "correct (LLM judge)", "pct"),
    ("hit@1", "hit@1 (answer's passages)", "pct"), ("hit@5", "hit@5", "pct"), ("mrr@10", "MRR", "num"),
    ("retrieval_ms_p50", "retrieval ms p50", "ms"), ("first_token_ms_p50", "first token ms p50", "ms"),
    ("total_ms_p50", "total ms p50", "ms"), ("total_ms_p95", "total ms p95", "ms"),
)
GROUP_METRICS = (("faithfulness", "faithful"), ("citation_precision", "cite prec"), ("citation_recall", "cite rec"),
                 ("refusal_accuracy", "refusal acc"), ("correct_rate", "correct"), ("hit@5", "hit@5"))
RETRIEVAL_METRICS = ("hit@1", "hit@3", "hit@5", "mrr@10", "ndcg@10", "ev@500", "ev@1000", "ev@2000")
SIDE_BY_SIDE_METRICS = ("hit@1", "hit@5", "mrr@10", "ev@500", "ev@1000", "ev@2000")


def fmt(value: Any, kind: str = "num") -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    if kind == "int":
        return str(int(value))
    if kind == "ms":
        return f"{value:,.0f}"
    if kind == "pct":
        return f"{value:.3f}"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


# --- tables ------------------------------------------------------------------------------------
def summary_table(configs: dict[str, dict[str, dict[str, Any]]], group: str) -> Table:
    names = list(configs)
    rows = [[label, *(fmt(configs[c].get(group, {}).get(key), kind) for c in names)]
            for key, label, kind in SUMMARY_ROWS]
    return ["metric", *names], rows


def group_table(configs: dict[str, dict[str, dict[str, Any]]], prefix: str) -> Table:
    header = ["group", "n"] + [f"{c} {label}" for c in configs for _, label in GROUP_METRICS]
    groups = sorted({g for s in configs.values() for g in s if g.startswith(prefix)})
    rows = []
    for g in groups:
        n = next((s[g]["n"] for s in configs.values() if g in s), 0)
        rows.append([g.removeprefix(prefix), str(n)] +
                    [fmt(configs[c].get(g, {}).get(m), "pct") for c in configs for m, _ in GROUP_METRICS])
    return header, rows


def retrieval_table(summary: dict[str, Any], split: str) -> Table:
    systems = summary.get(split, {})
    groups = sorted({g for by in systems.values() for g in by}, key=lambda g: (g != "all", g))
    rows = []
    for g in groups:
        for system, by in systems.items():
            if g in by:
                m = by[g]
                rows.append([g, system, str(int(m["n"])), *(fmt(m[k]) for k in RETRIEVAL_METRICS)])
    return ["group", "system", "n", *RETRIEVAL_METRICS], rows


def gold_sets(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """name -> section of every gold set of a run: the primary one (the top level) first, then ``sets``."""
    primary = results.get("meta", {}).get("gold", {}).get("name", "seed")
    return {primary: results, **(results.get("sets") or {})}


def _splits(present: Any) -> list[str]:
    named = [s for s in ("tune", "test") if s in present]
    return named or ["all"]


def sets_retrieval_table(results: dict[str, Any]) -> Table:
    """Every gold set, split and retrieval system of a run in one table (answerable questions)."""
    rows = []
    for name, section in gold_sets(results).items():
        summary = (section.get("retrieval") or {}).get("summary", {})
        for split in _splits(summary):
            for system, by in summary.get(split, {}).items():
                m = by["all"]
                rows.append([name, split, system, str(int(m["n"])), *(fmt(m.get(k)) for k in SIDE_BY_SIDE_METRICS),
                             fmt(m.get("ms_p95"), "ms")])
    return ["set", "split", "system", "n", *SIDE_BY_SIDE_METRICS, "ms p95"], rows


def sets_answer_table(results: dict[str, Any], config: str = "extractive") -> Table:
    """One configuration's answers on every gold set and split: the figures issue 10 asks for."""
    rows = []
    for name, section in gold_sets(results).items():
        groups = (section.get("configs") or {}).get(config)
        if not groups:
            continue
        for split in _splits([g.removeprefix("split:") for g in groups if g.startswith("split:")]):
            g = groups.get(f"split:{split}" if split != "all" else "all", {})
            if not g:
                continue
            rows.append([name, split, str(g["answerable"]), fmt(g.get("evidence_cited")),
                         str(g.get("quotes_not_in_documents", "–")),
                         f"{g.get('correct_refusals', 0)} of {g['unanswerable']}",
                         f"{g.get('wrong_refusals', 0)} of {g['answerable']}", fmt(g.get("faithfulness")),
                         fmt(g.get("hit@1")), fmt(g.get("mrr@10"))])
    return ["set", "split", "answerable", "evidence cited", "quotes not in docs", "correct refusals",
            "wrong refusals", "faithfulness", "hit@1", "MRR@10"], rows


def judge_table(judges: dict[str, Any]) -> Table:
    """judges: {claim file: {"offline": score, "llm": score}} (see eval.runner.judges_section)."""
    rows = []
    for file, section in judges.items():
        for key in ("offline", "llm"):
            j = section.get(key)
            if not j or "accuracy" not in j:
                continue
            rows.append([file, j["judge"], "all", str(j["total"]), fmt(j["accuracy"]), str(j["unparseable"])])
            for part in ("by_kind", "by_lang"):
                for name, g in j[part].items():
                    rows.append(["", "", name, str(g["n"]), fmt(g["accuracy"]), str(g["unparseable"])])
    return ["claims file", "judge", "group", "n", "accuracy", "unparseable"], rows


def judge_mistakes(judges: dict[str, Any]) -> list[str]:
    lines = []
    for file, section in judges.items():
        for key in ("offline", "llm"):
            j = section.get(key) or {}
            if j.get("available") is False:
                lines.append(f"- {file}: LLM judge unavailable: {j['message']}")
            for m in j.get("mistakes", []):
                verdict = "unparseable" if m["supported"] is None else f"judged {'supported' if m['supported'] else 'unsupported'}"
                lines.append(f"- {file} {m['id']} ({j['judge']}; {m['kind']}, {m['lang']}; gold "
                             f"{'supported' if m['gold'] else 'unsupported'}; {verdict}): {m['claim']}"
                             + (f" — {m['reason']}" if m["reason"] else ""))
    return lines


def md_table(table: Table) -> str:
    header, rows = table
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def html_table(table: Table) -> str:
    header, rows = table
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


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
