"""One evaluation run: the gold set through every configuration, scored, aggregated and written out."""

from __future__ import annotations

import json
import logging
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from chat import Assistant
from eval.data.gold import (
    CLAIMS_PATH,
    DEV_QA_PATH,
    HOLDOUT_CLAIMS_PATH,
    QA_PATH,
    GoldQuestion,
    load_claims,
    load_gold,
)
from eval.judges.llm import JudgeUnavailable, LLMJudge
from eval.judges.offline import OfflineJudge, score_judge
from eval.metrics.aggregate import summarize_config
from eval.metrics.scoring import score_answer
from eval.systems import rankers
from eval.systems.baselines import NaiveBaseline
from eval.systems.configs import CONFIGS, AssistantConfig, Config, NaiveConfig
from kb.errors import KbqaError
from kb.settings import Settings

log = logging.getLogger(__name__)

RUNS_DIR = Path(__file__).resolve().parent / "runs"


class EvalSetupError(KbqaError):
    """The run cannot start (e.g. nothing ingested); the message says what to do."""


@dataclass
class RunOptions:
    configs: Sequence[str] | None = None  # None: extractive, generative when Ollama is healthy, naive
    judge_model: str | None = None
    split: str = "all"  # tune | test | all
    limit: int | None = None
    out: Path | None = None
    label: str | None = None
    progress: bool = True
    retrieval_systems: Sequence[str] = rankers.SYSTEMS  # the side-by-side retrieval comparison; () to skip
    judge_claims: bool = True  # each judge's accuracy on claims.jsonl
    gold_path: Path = QA_PATH
    docs: Path | None = None  # a user's folder for gold_path: its KB is built in a temporary data folder
    dev: bool = False  # also run the dev gold set on the dev corpus's own KB (side by side with the primary set)
    dev_gold_path: Path = DEV_QA_PATH
    claims_paths: Sequence[Path] = (CLAIMS_PATH, HOLDOUT_CLAIMS_PATH)
    judge_retries: int = 2
    judge_max_tokens: int = 512
    write_report: bool = True


@dataclass
class Context:
    """What a run sets up once and shares across configurations."""

    settings: Settings
    bot: Assistant
    documents: dict[str, str]
    questions: list[GoldQuestion]
    gold_problems: list[str]
    judge: OfflineJudge
    notes: list[str] = field(default_factory=list)
    baseline: NaiveBaseline | None = None
    name: str = "seed"
    gold_path: Path = QA_PATH


def select(questions: Sequence[GoldQuestion], split: str, limit: int | None) -> list[GoldQuestion]:
    chosen = [q for q in questions if split == "all" or q.split == split]
    return chosen[:limit] if limit else chosen


def prepare(settings: Settings, options: RunOptions, bot: Assistant | None = None, *, name: str = "seed",
            gold_path: Path | None = None, documents: dict[str, str] | None = None) -> Context:
    """One gold set against one knowledge base (``settings``' data folder)."""
    gold_path = Path(gold_path or options.gold_path)
    documents = documents if documents is not None else rankers.load_documents(settings.docs_dir)
    loaded = load_gold(gold_path, documents, options.split)
    if loaded.skipped:
        log.warning("%d gold line(s) of %s skipped; the run goes on with the other %d",
                    loaded.skipped, gold_path.name, len(loaded.rows))
    bot = bot or Assistant(settings, llm="none")
    status = bot.status()  # also loads the embedding model
    if not status.index_ok:
        raise EvalSetupError(f"The knowledge base is not ready: {status.index_detail}")
    return Context(settings, bot, documents, select(loaded.rows, options.split, options.limit), loaded.problems,
                   OfflineJudge(bot.embedding_model()), name=name, gold_path=gold_path)


def prepare_dev(settings: Settings, options: RunOptions) -> Context:
    """The dev gold set on the dev corpus's own knowledge base (built once per corpus/settings/code)."""
    from eval.data.kbs import DEV, documents, ensure_dev_kb

    dev_settings = ensure_dev_kb(settings)
    return prepare(dev_settings, options, name="dev", gold_path=options.dev_gold_path,
                   documents=documents(list(DEV.roots)))


def prepare_folder(settings: Settings, options: RunOptions, data_dir: Path) -> Context:
    """A user's gold file on a user's folder, its knowledge base built in ``data_dir``."""
    from eval.data.kbs import build_folder_kb, documents

    assert options.docs is not None
    user_settings = build_folder_kb(settings, options.docs, data_dir)
    return prepare(user_settings, options, name="user", documents=documents([options.docs]))


def run_dir(options: RunOptions, label: str) -> Path:
    if options.out:
        path = Path(options.out)
    else:
        path = RUNS_DIR / f"{time.strftime('%Y%m%d-%H%M%S')}-{options.label or label}"
    path.mkdir(parents=True, exist_ok=True)
    return path


# --- configurations ---------------------------------------------------------------------------
def build_configs(ctx: Context, requested: Sequence[str] | None) -> list[Config]:
    explicit = requested is not None
    wanted = list(requested) if explicit else list(CONFIGS)
    unknown = [c for c in wanted if c not in CONFIGS]
    if unknown:
        raise ValueError(f"unknown configuration(s) {', '.join(unknown)}; choose from {', '.join(CONFIGS)}")
    configs: list[Config] = []
    generative: Assistant | None = None
    health_message = ""
    if "generative" in wanted or "naive" in wanted:
        generative = Assistant(ctx.settings, llm="ollama")
        assert generative.backend is not None
        health = generative.backend.health(refresh=True)
        health_message = health.message
        if not health.ok:
            generative = None
    if "extractive" in wanted:
        configs.append(AssistantConfig("extractive", ctx.bot))
    if "generative" in wanted:
        if generative is not None:
            configs.append(AssistantConfig("generative", generative))
        else:
            note = f"generative skipped: {health_message}"
            (log.error if explicit else log.info)("%s", note)
            ctx.notes.append(note)
    if "naive" in wanted:
        ctx.baseline = ctx.baseline or rankers.naive_baseline(ctx.bot, ctx.documents)
        if generative is not None:
            ctx.baseline.use_ollama(ctx.settings)
            configs.append(NaiveConfig(ctx.baseline, ctx.settings.ollama_model))
        else:
            ctx.notes.append("naive: retrieval only (its query engine needs Ollama: "
                             f"{health_message or 'not configured'})")
    return configs


def llm_judge(ctx: Context, options: RunOptions) -> LLMJudge | None:
    if not options.judge_model:
        return None
    judge = LLMJudge(ctx.settings, options.judge_model, retries=options.judge_retries,
                     max_tokens=options.judge_max_tokens)
    try:
        judge.check()
    except JudgeUnavailable as exc:
        message = f"{exc} The offline judge still runs."
        log.error("%s", message)
        ctx.notes.append(message)
        return None
    return judge


# --- the run ----------------------------------------------------------------------------------
def answer_all(ctx: Context, configs: Sequence[Config], llm: LLMJudge | None,
               progress: bool) -> tuple[dict[str, list[dict[str, Any]]], LLMJudge | None]:
    scored: dict[str, list[dict[str, Any]]] = {}
    for config in configs:
        rows = []
        for q in tqdm(ctx.questions, desc=config.name, disable=not progress, unit="q"):
            record = config.answer(q.question)
            try:
                row = score_answer(record, q, ctx.documents, ctx.judge, llm)
            except JudgeUnavailable as exc:
                message = f"{exc} — the LLM judge stopped at {config.name} {q.id}; the offline judge still runs."
                log.error("%s", message)
                ctx.notes.append(message)
                llm = None
                row = score_answer(record, q, ctx.documents, ctx.judge, None)
            rows.append({**row, "gold": q.model_dump(mode="json")})
        scored[config.name] = rows
    return scored, llm


def retrieval_section(ctx: Context, systems: Sequence[str], progress: bool) -> dict[str, Any] | None:
    if not systems:
        return None
    if "naive" in systems and ctx.baseline is None:
        ctx.baseline = rankers.naive_baseline(ctx.bot, ctx.documents)
    results = rankers.run(ctx.questions, ctx.documents,
                          rankers.rankers(ctx.bot, ctx.documents, systems, ctx.baseline), progress)
    return {
        "summary": rankers.summarize(results),
        "questions": [{"id": r.question.id, "system": r.system, "metrics": r.metrics,
                       "ms": round(r.seconds * 1000, 2)} for r in results],
    }


def judges_section(judges: Sequence[Any], paths: Sequence[Path], progress: bool) -> dict[str, Any]:
    """Each judge's accuracy on each labelled claim file: {file name: {"skipped": [...], judge key: score}}."""
    out: dict[str, Any] = {}
    for path in paths:
        if not Path(path).is_file():
            continue
        loaded = load_claims(Path(path))
        section: dict[str, Any] = {"skipped": loaded.problems}
        for judge in judges:
            key = "offline" if judge.name == "offline" else "llm"
            try:
                section[key] = score_judge(judge, loaded.rows, progress).to_dict()
            except JudgeUnavailable as exc:
                log.error("%s The offline judge's figures stand alone.", exc)
                section[key] = {"available": False, "message": str(exc)}
        out[Path(path).name] = section
    return out


def settings_digest(settings: Settings) -> dict[str, Any]:
    """The whole settings record (secrets masked by pydantic), so two runs can be told apart by any setting."""
    return settings.model_dump(mode="json")


def evaluate(ctx: Context, options: RunOptions, llm: LLMJudge | None) -> tuple[dict[str, Any], LLMJudge | None]:
    """One gold set through the configurations and the retrieval comparison: the results of that set."""
    configs = build_configs(ctx, options.configs)
    scored, llm = answer_all(ctx, configs, llm, options.progress)
    section: dict[str, Any] = {
        "gold": {"name": ctx.name, "file": str(ctx.gold_path), "questions": len(ctx.questions),
                 "skipped": len(ctx.gold_problems), "problems": ctx.gold_problems,
                 "documents": len(ctx.documents), "data_dir": str(ctx.settings.data_dir)},
        "config_names": [c.name for c in configs],
        "configs": {name: summarize_config(rows) for name, rows in scored.items()},
        "retrieval": retrieval_section(ctx, options.retrieval_systems, options.progress),
        "questions": [],
    }
    by_id = {name: {r["gold"]["id"]: r for r in rows} for name, rows in scored.items()}
    for q in ctx.questions:
        section["questions"].append({
            **q.model_dump(mode="json"),
            "configs": {name: {k: v for k, v in rows[q.id].items() if k != "gold"} for name, rows in by_id.items()},
        })
    return section, llm


def run_eval(settings: Settings, options: RunOptions, bot: Assistant | None = None) -> tuple[Path, dict[str, Any]]:
    """The full evaluation; returns the run folder and the results written to its results.json.

    The primary gold set (the seed set on the configured KB, or ``--gold/--docs``) is at the top level of
    the results, as it always was; the dev set, when asked for, is under ``sets["dev"]`` with the same keys.
    """
    import tempfile

    started = time.time()
    with tempfile.TemporaryDirectory(prefix="kbqa-eval-") as scratch:
        if options.docs is not None:
            ctx = prepare_folder(settings, options, Path(scratch))
        else:
            ctx = prepare(settings, options, bot)
        llm = llm_judge(ctx, options)
        notes = ctx.notes
        primary, llm = evaluate(ctx, options, llm)
        sets: dict[str, Any] = {}
        if options.dev and options.docs is None:
            dev_ctx = prepare_dev(settings, options)
            dev_ctx.notes = notes
            sets["dev"], llm = evaluate(dev_ctx, options, llm)
    results: dict[str, Any] = {
        "meta": {
            "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
            "seconds": None, "configs": primary["config_names"], "split": options.split, "limit": options.limit,
            "judge_model": options.judge_model, "llm_judge": llm is not None, "notes": notes,
            "settings": settings_digest(ctx.settings), "machine": platform.platform(),
            "gold": primary["gold"],
        },
        "configs": primary["configs"],
        "retrieval": primary["retrieval"],
        "judges": judges_section([ctx.judge, *([llm] if llm else [])], options.claims_paths, options.progress)
        if options.judge_claims else None,
        "llm_judge_stats": llm.stats.to_dict() if llm is not None else None,
        "questions": primary["questions"],
        "sets": sets,
    }
    results["meta"]["seconds"] = round(time.time() - started, 1)
    out = run_dir(options, "+".join(primary["config_names"]) or "run")
    write_results(out, results)
    if options.write_report:
        from eval.report.pages import write_report

        write_report(out, results)
    return out, results


def run_retrieval(settings: Settings, options: RunOptions, bot: Assistant | None = None) -> tuple[Path, dict[str, Any]]:
    """Retrieval only, every system side by side, on the primary gold set and (``options.dev``) the dev set."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="kbqa-eval-") as scratch:
        if options.docs is not None:
            ctx = prepare_folder(settings, options, Path(scratch))
        else:
            ctx = prepare(settings, options, bot)
        contexts = [ctx]
        if options.dev and options.docs is None:
            contexts.append(prepare_dev(settings, options))
        sections = {}
        for c in contexts:
            sections[c.name] = {
                "gold": {"name": c.name, "file": str(c.gold_path), "questions": len(c.questions),
                         "skipped": len(c.gold_problems), "problems": c.gold_problems, "documents": len(c.documents)},
                "retrieval": retrieval_section(c, options.retrieval_systems, options.progress),
            }
    first, *rest = sections.values()
    results = {"meta": {"gold": first["gold"], "split": options.split, "settings": settings_digest(ctx.settings)},
               "retrieval": first["retrieval"], "sets": {s["gold"]["name"]: s for s in rest}}
    out = run_dir(options, "retrieval")
    write_results(out, results)
    return out, results


def write_results(out: Path, results: dict[str, Any]) -> Path:
    path = out / "results.json"
    path.write_text(json.dumps(results, ensure_ascii=False, indent=1, default=_json_default), encoding="utf-8")
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
