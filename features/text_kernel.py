"""The text family in C (`text_kernel.c`): each text's distinct buckets and key counts, and its k features.

`features.text` uses it when it builds (`core.native`) and otherwise hashes and sums in Python; the counts
are the same integers and the features the same float32 bits as the training path's (tested), so features,
models and decisions do not depend on which ran. Measured: see the README's "Text features in C".
"""

from __future__ import annotations

import ctypes
import functools
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.native import library_or_warn

SOURCE = Path(__file__).with_name("text_kernel.c")
_P = ctypes.c_void_p
MAX_BUCKETS = 1 << 20
LOG_TABLE = 4096  # 1 + ln(tf) for tf below this is looked up; a text with a larger count takes numpy


@dataclass(frozen=True, eq=False)
class VectorArgs:
    """A text spec's arrays as `beast_text_vectors` reads them (contiguous float64; kept alive here)."""

    n: int
    k: int
    idf: np.ndarray  # n
    components_t: np.ndarray  # n x k
    one_plus_log: np.ndarray  # 1 + np.log(t), t = 0, 1, ... (index 0 unused); its length bounds the counts
    sublinear: bool

    @functools.cached_property
    def arguments(self) -> tuple[int, ...]:
        """`beast_text_vectors`' arguments from n to sublinear (`.ctypes` builds an object per access: ~1 us)."""
        arrays = (self.idf, self.components_t, self.one_plus_log)
        return (self.n, self.k, *(a.ctypes.data for a in arrays), len(self.one_plus_log), self.sublinear)


def _checked(status: int) -> int:
    """A kernel's return value: -1 (an allocation failed) raises; anything else is the caller's to read."""
    if status == -1:
        raise MemoryError("features.text_kernel: out of memory")
    return status


def _joined(texts: list[bytes]) -> tuple[bytes, np.ndarray]:
    """A batch as the kernels read it: the texts back to back and each text's end offset."""
    return b"".join(texts), np.cumsum(np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)))


class TextKernel:
    """Calls `beast_text_counts` (buckets and key counts) and `beast_text_vectors` (the k features); the input
    bytes are an ASCII prompt as it is, or a prompt's words joined by spaces (`features.text.kernel_bytes`)."""

    def __init__(self, library: ctypes.CDLL):
        fn = library.beast_text_counts
        fn.argtypes = [ctypes.c_char_p, _P, ctypes.c_int64, ctypes.c_uint32, _P, _P, _P]
        fn.restype = ctypes.c_int64
        self._fn = fn
        vec = library.beast_text_vectors
        vec.argtypes = [ctypes.c_char_p, _P, ctypes.c_int64, ctypes.c_uint32, ctypes.c_int32, _P, _P, _P]
        vec.argtypes += [ctypes.c_int64, ctypes.c_int32, _P]
        vec.restype = ctypes.c_int64
        self._vec = vec
        self._local = threading.local()  # per thread: one text's end offset and output buffers of n entries

    def _buffers(self, n: int) -> tuple:
        cached = getattr(self._local, "buffers", None)
        if cached is None or cached[0] != n:
            cols, tf = np.empty(n, np.int32), np.empty(n, np.int32)
            ends, nnz = np.empty(1, np.int64), np.empty(1, np.int64)
            pointers = [a.ctypes.data for a in (cols, tf, ends, nnz)]
            cached = self._local.buffers = (n, cols, tf, ends, nnz, *pointers)
        return cached

    def one(self, text: bytes, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(distinct buckets ascending, key count of each), both int64."""
        _, cols, tf, ends, _, p_cols, p_tf, p_ends, p_nnz = self._buffers(n)
        ends[0] = len(text)
        m = _checked(self._fn(text, p_ends, 1, n, p_cols, p_tf, p_nnz))
        return cols[:m].astype(np.int64), tf[:m].astype(np.int64)

    def many(self, texts: list[bytes], n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(distinct buckets per text, then every text's buckets ascending and their key counts, concatenated)."""
        joined, ends = _joined(texts)
        room = int(np.minimum(n, 2 * np.diff(ends, prepend=0) + 1).sum())
        cols, tf, nnz = np.empty(room, np.int32), np.empty(room, np.int32), np.empty(len(texts), np.int64)
        pointers = (cols.ctypes.data, tf.ctypes.data, nnz.ctypes.data)
        m = _checked(self._fn(joined, ends.ctypes.data, len(texts), n, *pointers))
        return nnz, cols[:m].astype(np.int64), tf[:m].astype(np.int64)

    def vector(self, text: bytes, args: VectorArgs) -> np.ndarray | None:
        """`vectors` of one text (k float32), without the batch's array building."""
        _, _, _, ends, _, _, _, p_ends, _ = self._buffers(args.n)
        ends[0] = len(text)
        out = np.empty(args.k, np.float32)
        status = _checked(self._vec(text, p_ends, 1, *args.arguments, out.ctypes.data))
        return None if status == -2 else out

    def vectors(self, texts: list[bytes], args: VectorArgs) -> np.ndarray | None:
        """The float32 text features of `texts` (len(texts) x k; steps 5-7 in text_matrix's order), None when a
        count is beyond the log table (the caller computes those with numpy)."""
        joined, ends = _joined(texts)
        out = np.empty((len(texts), args.k), np.float32)
        status = _checked(self._vec(joined, ends.ctypes.data, len(texts), *args.arguments, out.ctypes.data))
        return None if status == -2 else out


@functools.cache
def _loaded() -> TextKernel | None:
    library = library_or_warn(SOURCE, "features.text: hashing in Python")
    return None if library is None else TextKernel(library)


def kernel(n: int) -> TextKernel | None:
    """The kernel for n buckets, built or loaded once per process; None (with one warning unless BEAST_NATIVE=0)
    without it, and for more than MAX_BUCKETS buckets (its per-call counters would cost more than they save)."""
    return _loaded() if n <= MAX_BUCKETS else None
