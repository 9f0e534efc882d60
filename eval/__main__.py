"""python -m eval [retrieval | judges | compare RUN_A RUN_B] [options]

  python -m eval                      full run: every configuration, judges, retrieval, report
  python -m eval retrieval            retrieval only: hybrid, bm25, dense, naive, plain-bm25 side by side
  python -m eval judges               each judge's accuracy on eval/datasets/claims.jsonl
  python -m eval compare RUN_A RUN_B  per question better/worse and metric deltas of two runs
  python -m eval --gold FILE --docs DIR   the same on your own folder and questions (temporary knowledge base)

The seed gold set (eval/datasets/qa.jsonl, on the configured knowledge base) and the dev gold set
(eval/datasets/dev_qa.jsonl, on the dev corpus's own knowledge base, built once and reused) are reported
side by side, per split; --no-dev runs the seed set alone.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from eval.runner import RunOptions
from kb.errors import KbqaError

log = logging.getLogger("eval")


def _options(args: argparse.Namespace) -> RunOptions:
    configs = [c.strip() for c in args.config.split(",") if c.strip()] if args.config else None
    options = RunOptions(configs=configs, judge_model=args.judge_model, split=args.split, limit=args.limit,
                         out=Path(args.out) if args.out else None, label=args.label, progress=not args.no_progress,
                         judge_claims=not args.skip_judge_accuracy, judge_max_tokens=args.judge_max_tokens,
                         docs=Path(args.docs) if args.docs else None, dev=not (args.no_dev or args.gold))
    if args.gold:
        options.gold_path = Path(args.gold)
    if args.systems:
        options.retrieval_systems = tuple(s.strip() for s in args.systems.split(",") if s.strip())
    return options


def cmd_run(args: argparse.Namespace) -> int:
    from eval.report.tables import sets_answer_table, sets_retrieval_table
    from eval.runner import run_eval
    from kb.settings import get_settings

    options = _options(args)
    out, results = run_eval(get_settings(), options)
    if results["configs"]:
        sys.stdout.write("\nExtractive answers\n" + _text_table(sets_answer_table(results)) + "\n")
    if results["retrieval"]:
        sys.stdout.write("\nRetrieval (answerable questions)\n" + _text_table(sets_retrieval_table(results)) + "\n")
    _skipped(results)
    sys.stdout.write(f"\nReport: {out / 'report.html'}\n")
    missing = [c for c in options.configs or () if c not in results["meta"]["configs"]]
    if missing:
        log.error("Requested but not run: %s (see the notes above and in the report)", ", ".join(missing))
        return 3
    return 0


def cmd_retrieval(args: argparse.Namespace) -> int:
    from eval.report.tables import sets_retrieval_table
    from eval.runner import run_retrieval
    from kb.settings import get_settings

    out, results = run_retrieval(get_settings(), _options(args))
    sys.stdout.write("\nRetrieval (answerable questions)\n" + _text_table(sets_retrieval_table(results)) + "\n")
    _skipped(results)
    sys.stdout.write(f"Results: {out / 'results.json'}\n")
    return 0


def _skipped(results: dict) -> None:
    from eval.report.tables import gold_sets

    for name, section in gold_sets(results).items():
        gold = section.get("gold") or results["meta"]["gold"]
        sys.stdout.write(f"{name}: {gold['questions']} questions, {gold['skipped']} gold line(s) skipped"
                         + (f" ({'; '.join(gold['problems'][:3])})" if gold["problems"] else "") + "\n")


def cmd_judges(args: argparse.Namespace) -> int:
    from chat import Assistant
    from eval.judges.llm import JudgeUnavailable, LLMJudge
    from eval.judges.offline import OfflineJudge
    from eval.report.tables import judge_table
    from eval.runner import judges_section, run_dir, write_results
    from kb.settings import get_settings

    settings = get_settings()
    options = _options(args)
    judges: list[object] = [OfflineJudge(Assistant(settings, llm="none").embedding_model())]
    llm = None
    if options.judge_model:
        llm = LLMJudge(settings, options.judge_model, retries=options.judge_retries)
        try:
            llm.check()
            judges.append(llm)
        except JudgeUnavailable as exc:
            log.error("%s The offline judge still runs.", exc)
            llm = None
    results: dict[str, object] = {"judges": judges_section(judges, options.claims_paths, options.progress),
                                  "llm_judge_stats": llm.stats.to_dict() if llm else None}
    sys.stdout.write(_text_table(judge_table(results["judges"])) + "\n")  # type: ignore[arg-type]
    path = write_results(run_dir(options, "judges"), results)
    sys.stdout.write(f"Results: {path}\n")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from eval.report.compare import compare, format_compare, load_run

    if len(args.runs) != 2:
        log.error("compare needs two runs: python -m eval compare RUN_A RUN_B")
        return 2
    diff = compare(load_run(args.runs[0]), load_run(args.runs[1]))
    if args.json:
        sys.stdout.write(json.dumps(diff, ensure_ascii=False, indent=1) + "\n")
    else:
        sys.stdout.write(format_compare(diff, Path(args.runs[0]).name, Path(args.runs[1]).name) + "\n")
    return 0


def _text_table(table: tuple[list[str], list[list[str]]]) -> str:
    header, rows = table
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    body = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join([line, "-" * len(line), *body])


COMMANDS = {"run": cmd_run, "retrieval": cmd_retrieval, "judges": cmd_judges, "compare": cmd_compare}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="?", default="run", choices=list(COMMANDS))
    parser.add_argument("runs", nargs="*", help="compare: two run folders (or their results.json)")
    parser.add_argument("--config", help="comma-separated: extractive,generative,naive "
                                         "(default: extractive, generative when Ollama is healthy, naive)")
    parser.add_argument("--judge-model", help="an Ollama model for the LLM judge (default: offline judge only)")
    parser.add_argument("--judge-max-tokens", type=int, default=512, help="token cap of each LLM judge reply")
    parser.add_argument("--skip-judge-accuracy", action="store_true",
                        help="full run: do not score the judges on the labelled claims (saves LLM judge time)")
    parser.add_argument("--split", choices=("tune", "test", "all"), default="all")
    parser.add_argument("--limit", type=int, help="only the first N questions of the split")
    parser.add_argument("--out", help="run folder (default: eval/runs/<timestamp>-<label>/)")
    parser.add_argument("--label", help="the folder name's label")
    parser.add_argument("--gold", help="a gold JSONL file (id, question, answerable, evidence; answer, lang, type, "
                                       "doc, split optional) instead of eval/datasets/qa.jsonl")
    parser.add_argument("--docs", help="with --gold: a folder of documents; its knowledge base is built in a "
                                       "temporary data folder")
    parser.add_argument("--no-dev", action="store_true", help="do not run the dev gold set on the dev corpus")
    parser.add_argument("--systems", help="retrieval systems, comma-separated (default: hybrid,bm25,dense,naive,"
                                          "plain-bm25)")
    parser.add_argument("--json", action="store_true", help="compare: print JSON")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)

    from kb.logging_setup import configure_logging

    configure_logging(logging.DEBUG if args.verbose else logging.INFO)
    if args.command != "compare" and args.runs:
        parser.error(f"unexpected arguments: {' '.join(args.runs)}")
    if args.docs and not args.gold:
        parser.error("--docs needs --gold: the questions about your documents")
    try:
        return COMMANDS[args.command](args)
    except (KbqaError, FileNotFoundError, ValueError) as exc:  # a missing gold file is a user's error too
        log.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
