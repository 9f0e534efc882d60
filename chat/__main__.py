"""python -m chat [ask QUESTION|- [--json] [--doc NAME]... | pull | status | ui] — with no command, the web UI and the API."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from chat.answer import Answer, incomplete_line
from chat.assistant import Assistant
from kb.errors import KbqaError
from kb.logging_setup import configure_logging

log = logging.getLogger("chat")


def format_sources(answer: Answer) -> str:
    """Everything below the answer text: where it stopped early, sources with quotes, flagged
    sentences, notices, mode."""
    cut = incomplete_line(answer)
    lines = [cut] if cut else []
    if answer.citations:
        lines.append("Sources / 来源:")
        for c in answer.citations:
            lines.append(f"  [{c.n}] {c.doc} › {c.section} (chars {c.start}-{c.end})")
            lines.append(f"      “{c.quote}”")
    flagged = answer.unsupported
    if flagged:
        lines.append("Not clearly supported by the cited passages / 未被引用段落明确支持:")
        lines.extend(f"  - {s.text} ({s.reason})" for s in flagged)
    lines.extend(f"Note: {notice}" for notice in answer.notices)
    t = answer.timings
    lines.append(f"[{answer.mode}{' · ' + answer.model if answer.model else ''} · retrieval {t.retrieval_ms:.0f} ms"
                 f" · total {t.total_ms:.0f} ms]")
    return "\n".join(lines)


def read_question(arg: str) -> str:
    """The question as typed, or standard input for ``-`` (a long question does not fit in argv).

    Bytes that are not UTF-8 become lone surrogates, which the Assistant drops with a notice.
    """
    if arg != "-":
        return arg
    return sys.stdin.buffer.read().decode("utf-8", errors="surrogateescape")


def cmd_ask(args: argparse.Namespace) -> int:
    bot = Assistant(llm="none" if args.extractive else None, model=args.model)
    question = read_question(args.question)
    if args.json:
        sys.stdout.write(json.dumps(bot.ask(question, docs=args.docs).to_dict(), ensure_ascii=False, indent=2) + "\n")
        return 0
    answer = None
    for item in bot.stream(question, docs=args.docs):
        if isinstance(item, Answer):
            answer = item
        else:
            sys.stdout.write(item)
            sys.stdout.flush()
    assert answer is not None
    sys.stdout.write("\n\n" + format_sources(answer) + "\n")
    return 0 if answer.complete else 3


def cmd_pull(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    bot = Assistant(model=args.model)
    if bot.backend is None:
        log.error("KBQA_LLM is 'none'; there is no model to pull.")
        return 2
    bars: dict[str, tqdm] = {}

    def progress(status: str, completed: int | None, total: int | None) -> None:
        if total:
            bar = bars.setdefault(status, tqdm(total=total, desc=status[:40], unit="B", unit_scale=True))
            bar.update((completed or 0) - bar.n)
        else:
            log.info("%s", status)

    try:
        bot.backend.pull(progress)
    except Exception as exc:
        log.error("Pulling %s from %s failed: %s", bot.backend.model, bot.backend.host, exc)
        return 2
    finally:
        for bar in bars.values():
            bar.close()
    log.info("%s is ready at %s", bot.backend.model, bot.backend.host)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    status = Assistant(model=args.model).status(refresh=True)
    sys.stdout.write(json.dumps(status.to_dict(), ensure_ascii=False, indent=2) + "\n")
    return 0 if status.index_ok else 2


def cmd_ui(args: argparse.Namespace) -> int:
    from chat.http import serve

    return serve(host=args.host, port=args.port, allow_unauthenticated=args.allow_unauthenticated)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chat", description="Ask the knowledge base.")
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("--model", help="Ollama model (default: KBQA_OLLAMA_MODEL)")
    parser.add_argument("--host", help="UI and API bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="UI and API port (default 7860)")
    parser.add_argument("--allow-unauthenticated", action="store_true",
                        help="allow binding to a non-loopback address without a UI login or API keys")
    sub = parser.add_subparsers(dest="command")
    ask = sub.add_parser("ask", help="answer one question and print its sources")
    ask.add_argument("question", help="the question, or - to read it from standard input")
    ask.add_argument("--json", action="store_true", help="print the whole Answer as JSON")
    ask.add_argument("--extractive", action="store_true", help="do not use the LLM")
    ask.add_argument("--doc", action="append", dest="docs", metavar="NAME",
                     help="search only this document (its name as `python -m ingest --status` lists it); repeatable")
    sub.add_parser("pull", help="pull the configured model into Ollama, with progress")
    sub.add_parser("status", help="show mode and index status as JSON")
    sub.add_parser("ui", help="start the web UI and the OpenAI-compatible API on /v1 (the default)")
    args = parser.parse_args(argv)
    configure_logging(logging.DEBUG if args.verbose else logging.INFO)
    handlers = {"ask": cmd_ask, "pull": cmd_pull, "status": cmd_status}
    try:
        return handlers.get(args.command or "ui", cmd_ui)(args)
    except KbqaError as exc:
        log.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
