"""The report's tables, each a header and rows of strings, for the command line, report.md and report.html.

Which metrics a table shows, under which label and in which format, is decided in
``eval.metrics.registry``; the tables here only lay them out.
"""

from __future__ import annotations

import html
from typing import Any

from eval.metrics.registry import fmt, shown_in

Table = tuple[list[str], list[list[str]]]


def summary_table(configs: dict[str, dict[str, dict[str, Any]]], group: str) -> Table:
    names = list(configs)
    rows = [[m.label, *(fmt(configs[c].get(group, {}).get(m.key), m.format) for c in names)]
            for m in shown_in("summary")]
    return ["metric", *names], rows


def group_table(configs: dict[str, dict[str, dict[str, Any]]], prefix: str) -> Table:
    metrics = shown_in("groups")
    header = ["group", "n"] + [f"{c} {m.column('groups')}" for c in configs for m in metrics]
    groups = sorted({g for s in configs.values() for g in s if g.startswith(prefix)})
    rows = []
    for g in groups:
        n = next((s[g]["n"] for s in configs.values() if g in s), 0)
        rows.append([g.removeprefix(prefix), str(n)] +
                    [fmt(configs[c].get(g, {}).get(m.key), m.format) for c in configs for m in metrics])
    return header, rows


def retrieval_table(summary: dict[str, Any], split: str) -> Table:
    metrics = shown_in("retrieval")
    systems = summary.get(split, {})
    groups = sorted({g for by in systems.values() for g in by}, key=lambda g: (g != "all", g))
    rows = []
    for g in groups:
        for system, by in systems.items():
            if g in by:
                figures = by[g]
                rows.append([g, system, str(int(figures["n"])), *(fmt(figures[m.key], m.format) for m in metrics)])
    return ["group", "system", "n", *(m.column("retrieval") for m in metrics)], rows


def gold_sets(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """name -> section of every gold set of a run: the primary one (the top level) first, then ``sets``."""
    primary = results.get("meta", {}).get("gold", {}).get("name", "seed")
    return {primary: results, **(results.get("sets") or {})}


def _splits(present: Any) -> list[str]:
    named = [s for s in ("tune", "test") if s in present]
    return named or ["all"]


def sets_retrieval_table(results: dict[str, Any]) -> Table:
    """Every gold set, split and retrieval system of a run in one table (answerable questions)."""
    metrics = shown_in("side_by_side")
    rows = []
    for name, section in gold_sets(results).items():
        summary = (section.get("retrieval") or {}).get("summary", {})
        for split in _splits(summary):
            for system, by in summary.get(split, {}).items():
                figures = by["all"]
                rows.append([name, split, system, str(int(figures["n"])),
                             *(fmt(figures.get(m.key), m.format) for m in metrics)])
    return ["set", "split", "system", "n", *(m.column("side_by_side") for m in metrics)], rows


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
