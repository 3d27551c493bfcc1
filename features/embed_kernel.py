"""The embedding family of windows in C (`embed_kernel.c`): Llama-2 BPE ids and pooled table rows.

`features.embed.Encoder` uses it when it builds (`core.native`) and its tokenizer passed the piece proof, else
its memos and the `tokenizers` library; the ids and vectors are the same (tested), so features, models and
decisions do not depend on which ran. What the C does not restate it is given here at load (`EmbedSetup`, made
by `features.embed` from the tokenizer JSON): the one-character tokens, the byte tokens, the merges in rank
order, the projected table and the offset. Texts reach it as UTF-32 code points, already well formed.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.native import configured_or_warn

SOURCE = Path(__file__).with_name("embed_kernel.c")
_P = ctypes.c_void_p
_I64 = ctypes.c_int64


@dataclass(frozen=True, eq=False)
class EmbedSetup:
    """What the kernel is told: the vocabulary's one-character tokens (code points, ids), the 256 byte tokens'
    ids, the merges (left id, right id, merged id; rank = row), the table (vocab x k float32), the offset (k)."""

    chars: np.ndarray
    char_ids: np.ndarray
    byte_ids: np.ndarray
    merges: np.ndarray
    table: np.ndarray
    offset: np.ndarray


class EmbedKernel:
    """Calls `beast_embed_vector` (one text), `beast_embed_vectors` (a batch) and `beast_embed_ids` with its
    own configuration (a copy of the table and merges, and a fixed-size memo of short pieces: the C keeps no
    global state and no Python memory; calls from several threads are safe)."""

    def __init__(self, library: ctypes.CDLL, setup: EmbedSetup):
        table = np.ascontiguousarray(setup.table, dtype=np.float32)
        chars = np.ascontiguousarray(setup.chars, dtype=np.uint32)
        char_ids = np.ascontiguousarray(setup.char_ids, dtype=np.int32)
        byte_ids = np.ascontiguousarray(setup.byte_ids, dtype=np.int32)
        merges = np.ascontiguousarray(setup.merges, dtype=np.int32).reshape(-1, 3)
        offset = np.ascontiguousarray(setup.offset, dtype=np.float64)
        if (
            table.ndim != 2
            or offset.shape != (table.shape[1],)
            or byte_ids.shape != (256,)
            or chars.shape != char_ids.shape
        ):
            raise ValueError("embed_kernel.c needs a vocab x k table, k offsets, 256 byte tokens, an id per character")
        make = library.beast_embed_config
        make.argtypes = [_P, _P, _I64, _P, _P, _I64, _P, ctypes.c_int32, ctypes.c_int32, _P]
        make.restype = _P
        self._config = make(
            chars.ctypes.data, char_ids.ctypes.data, len(chars), byte_ids.ctypes.data, merges.ctypes.data,
            len(merges), table.ctypes.data, table.shape[0], table.shape[1], offset.ctypes.data,
        )  # fmt: skip
        if not self._config:
            raise ValueError("embed_kernel.c refused the tokenizer (an id outside the table) or had no memory")
        self._free = library.beast_embed_free
        self._free.argtypes = [_P]
        self._vector, self._vectors, self._ids = (
            library.beast_embed_vector,
            library.beast_embed_vectors,
            library.beast_embed_ids,
        )
        self._vector.argtypes, self._vector.restype = [_P, ctypes.c_char_p, _I64, _P], ctypes.c_int
        self._vectors.argtypes, self._vectors.restype = [_P, ctypes.c_char_p, _P, _I64, _P], ctypes.c_int
        self._ids.argtypes, self._ids.restype = [_P, ctypes.c_char_p, _I64, _P], _I64
        self.k = table.shape[1]

    def __del__(self) -> None:
        config, self._config = getattr(self, "_config", None), None
        if config:
            self._free(config)

    def vector(self, text: str) -> np.ndarray:
        """The k float32 features of one well-formed text."""
        out = np.empty(self.k, dtype=np.float32)
        if self._vector(self._config, text.encode("utf-32-le"), len(text), out.ctypes.data) != 0:
            raise MemoryError("embed_kernel.c: no memory")
        return out

    def vectors(self, texts: Sequence[str]) -> np.ndarray:
        """len(texts) x k float32: `vector` of each well-formed text."""
        out = np.empty((len(texts), self.k), dtype=np.float32)
        ends = np.cumsum(np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)))
        joined = "".join(texts).encode("utf-32-le")
        if self._vectors(self._config, joined, ends.ctypes.data, len(texts), out.ctypes.data) != 0:
            raise MemoryError("embed_kernel.c: no memory")
        return out

    def ids(self, text: str) -> list[int]:
        """The tokenizer ids of one well-formed text (what `vector` pools; for tests and ports)."""
        out = np.empty(4 * len(text) + 4, dtype=np.int32)
        n = self._ids(self._config, text.encode("utf-32-le"), len(text), out.ctypes.data)
        if n < 0:
            raise MemoryError("embed_kernel.c: no memory")
        return out[:n].tolist()


def load_kernel(setup: EmbedSetup) -> EmbedKernel | None:
    """The kernel configured by `setup` (built once per process, `core.native`); None with a warning without a
    compiler (none when BEAST_NATIVE=0) or when it refuses `setup`. The caller keeps the one it gets."""
    return configured_or_warn(
        SOURCE,
        "features.embed: tokenising with memos and the tokenizers library",
        lambda library: EmbedKernel(library, setup),
    )
