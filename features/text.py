"""Prompt text as k dense numbers (hashed TF-IDF + truncated SVD) whose fitted state is plain JSON data.

The router (Python now, JavaScript later) recomputes the vector from a `TextSpec` alone; this module's
`transform_text` uses only the spec, numpy, scipy.sparse and murmurhash3_32, never a fitted sklearn object.
The exact recipe, for a port:

1. Normalise: `text = NFKC(prompt).lower()` (Python `unicodedata.normalize("NFKC", p).lower()`,
   JS `p.normalize("NFKC").toLowerCase()`).
2. Words: the matches of `[a-z0-9]+` in `text`, in order (everything else, CJK included, separates words).
3. Keys, in this order: `"w:" + word` for every word; `"b:" + w[i] + " " + w[i+1]` for every adjacent
   pair; and for every word, with `p = " " + word + " "`, `"c:" + p[j:j+3]` for j = 0 .. len(word) - 1
   (sklearn's char_wb 3-grams: a word of length L gives L grams). All keys are ASCII.
4. Bucket of a key: `murmurhash3_32(utf8(key), seed=0, positive=True) % n_features`, i.e. MurmurHash3
   x86 32-bit of the key's bytes with seed 0, read as an unsigned 32-bit integer, modulo n_features.
5. tf[bucket] = number of keys in that bucket; if `sublinear_tf`, tf = 1 + ln(tf) where tf > 0.
6. x = tf * idf (idf from the spec; a bucket seen in fewer than `min_df` fitted prompts has idf 0);
   x = x / ||x||_2 (a zero row stays zero, e.g. a prompt with no [a-z0-9] character).
7. out = components @ x (components: k x n_features from the spec), stored as float32.
   A null prompt gives a row of NaN.

Fitting: the corpus is the set of distinct non-null prompts (a prompt sent to 14 models counts once),
n = its size, df = prompts whose keys hit the bucket, idf = ln((1 + n) / (1 + df)) + 1 (sklearn's smooth
idf), then `sklearn.decomposition.TruncatedSVD(k, random_state=seed)` on the TF-IDF matrix.

JSON layout (`TextSpec.to_json`): `{"kind", "version", "params", "n_docs", "idf": [float x n_features],
"components": {"dtype": "float32", "byteorder": "little", "shape": [k, n_features], "base64": ...},
"explained_variance_ratio": [float x k]}`; `components` is row-major. idf stays float64 (exact in JSON).
"""

from __future__ import annotations

import base64
import binascii
import functools
import itertools
import json
import math
import re
import threading
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.decomposition import TruncatedSVD
from sklearn.utils import murmurhash3_32

from core.config import Count, NonNegativeInt
from core.errors import BeastError
from features.text_kernel import LOG_TABLE, TextKernel, VectorArgs, kernel

SPEC_KIND = "beast.features.text"
SPEC_VERSION = "1"
WORD_RE = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class TextParams:
    """Mirrors params.yaml -> features.text."""

    n_features: Count = 4096  # hash buckets
    k: Count = 32  # SVD dimensions
    min_df: Count = 2  # a bucket in fewer distinct fitted prompts gets idf 0
    seed: NonNegativeInt = 0  # TruncatedSVD random_state
    sublinear_tf: bool = True  # tf -> 1 + ln(tf)


@dataclass(frozen=True, eq=False)
class TextSpec:
    """Everything `transform_text` needs; plain data (arrays are read-only; compare specs by `to_json()`)."""

    params: TextParams
    n_docs: int
    idf: np.ndarray  # float64, (n_features,)
    components: np.ndarray  # float32, (k, n_features)
    explained_variance_ratio: tuple[float, ...]
    version: str = field(default=SPEC_VERSION)

    @functools.cached_property
    def components_t64(self) -> np.ndarray:
        """`components` transposed to n_features x k float64, made once per spec: the per-request path
        gathers the rows of a prompt's buckets, each k contiguous numbers."""
        return np.ascontiguousarray(self.components.T, dtype=np.float64)

    @functools.cached_property
    def kernel_args(self) -> VectorArgs:
        """What the C kernel reads to compute this spec's features (`features.text_kernel`)."""
        with np.errstate(divide="ignore"):  # ln 0: the table's unused first entry
            one_plus_log = 1.0 + np.log(np.arange(LOG_TABLE, dtype=np.int64))  # as text_matrix computes it
        p = self.params
        idf = np.ascontiguousarray(self.idf, dtype=np.float64)
        return VectorArgs(p.n_features, p.k, idf, self.components_t64, one_plus_log, p.sublinear_tf)

    def to_json(self) -> str:
        return json.dumps(
            {
                "kind": SPEC_KIND,
                "version": self.version,
                "params": asdict(self.params),
                "n_docs": self.n_docs,
                "idf": [float(v) for v in self.idf],
                "components": matrix_json(self.components),
                "explained_variance_ratio": list(self.explained_variance_ratio),
            },
            separators=(",", ":"),
        )

    @staticmethod
    def from_json(text: str) -> TextSpec:
        return _spec_from_json(text)


# ---------------------------------------------------------------------------------------- tokens, hashing


# An ASCII text is its own NFKC form, and its words are the runs left after mapping A-Z to a-z and every
# other byte that is not [a-z0-9] to a space (C-speed bytes.translate + split instead of a regex).
_ASCII_WORDS = bytes(
    c + 32 if 0x41 <= c <= 0x5A else c if 0x30 <= c <= 0x39 or 0x61 <= c <= 0x7A else 0x20 for c in range(256)
)


def text_words(prompt: str) -> list[str]:
    """Steps 1-2 of the module docstring: the `[a-z0-9]+` words of NFKC(prompt).lower(), in order."""
    if prompt.isascii():
        return prompt.encode("ascii").translate(_ASCII_WORDS).decode("ascii").split()
    return WORD_RE.findall(unicodedata.normalize("NFKC", prompt).lower())


def text_keys(prompt: str) -> list[str]:
    """The hashed keys of one prompt (steps 1-3 of the module docstring)."""
    words = text_words(prompt)
    keys = [f"w:{w}" for w in words]
    keys += [f"b:{a} {b}" for a, b in itertools.pairwise(words)]
    for w in words:
        padded = f" {w} "
        keys += [f"c:{padded[j : j + 3]}" for j in range(len(w))]
    return keys


def bucket(key: str, n_features: int) -> int:
    """Step 4: unsigned MurmurHash3 x86 32 (seed 0) of the key's UTF-8 bytes, modulo n_features."""
    return murmurhash3_32(key, seed=0, positive=True) % n_features


def _counts(prompts: list[str], n_features: int) -> sp.csr_matrix:
    """Key counts per bucket (n_prompts x n_features, float64); each key hashed once per call."""
    cache: dict[str, int] = {}
    rows: list[int] = []
    cols: list[int] = []
    for i, prompt in enumerate(prompts):
        keys = text_keys(prompt)
        for key in keys:
            b = cache.get(key)
            if b is None:
                b = cache[key] = bucket(key, n_features)
            cols.append(b)
        rows.extend([i] * len(keys))
    data = np.ones(len(cols), dtype=np.float64)
    m = sp.csr_matrix((data, (rows, cols)), shape=(len(prompts), n_features))
    m.sum_duplicates()
    return m


def _tfidf(counts: sp.csr_matrix, idf: np.ndarray, sublinear: bool) -> sp.csr_matrix:
    """Steps 5-6: (sublinear) tf times idf, rows scaled to unit L2 norm (zero rows stay zero)."""
    x = counts.copy()
    if sublinear:
        x.data = 1.0 + np.log(x.data)
    x = x.multiply(idf[np.newaxis, :]).tocsr()
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return sp.csr_matrix(sp.diags(scale) @ x)


def smooth_idf(df: np.ndarray, n_docs: int, min_df: int) -> np.ndarray:
    """ln((1 + n) / (1 + df)) + 1, and 0 where df < min_df."""
    idf = np.log((1.0 + n_docs) / (1.0 + df)) + 1.0
    return np.where(df >= min_df, idf, 0.0)


# ---------------------------------------------------------------------------------------- fit / transform


def fit_text(prompts: pd.Series, params: TextParams) -> TextSpec:
    """Fit idf and the SVD on the distinct non-null prompts; pure (no I/O)."""
    _check_params(params)
    corpus = list(pd.unique(prompts.dropna().astype(str)))
    if len(corpus) < params.k:
        raise BeastError(f"features.text: {len(corpus)} distinct prompts, need at least k = {params.k} to fit")
    counts = _counts(corpus, params.n_features)
    df = np.bincount(counts.indices, minlength=params.n_features).astype(np.float64)
    idf = smooth_idf(df, len(corpus), params.min_df)
    svd = TruncatedSVD(n_components=params.k, random_state=params.seed)
    svd.fit(_tfidf(counts, idf, params.sublinear_tf))
    return _frozen_spec(
        params,
        len(corpus),
        idf,
        svd.components_.astype(np.float32),
        tuple(float(v) for v in svd.explained_variance_ratio_),
    )


def tfidf_matrix(spec: TextSpec, prompts: Sequence[str]) -> sp.csr_matrix:
    """The spec before its SVD: unit-length hashed TF-IDF rows (also the semantic cache's similarity space)."""
    return _tfidf(_counts(list(prompts), spec.params.n_features), spec.idf, spec.params.sublinear_tf)


def transform_text(spec: TextSpec, prompts: pd.Series) -> np.ndarray:
    """n x k float32 text features from the spec alone; each distinct prompt computed once; null -> NaN row."""
    codes, uniques = pd.factorize(prompts, use_na_sentinel=True)
    x = tfidf_matrix(spec, [str(u) for u in uniques])
    distinct = np.asarray(x @ spec.components.astype(np.float64).T, dtype=np.float32).reshape(-1, spec.params.k)
    out = np.full((len(prompts), spec.params.k), np.nan, dtype=np.float32)
    known = codes >= 0
    out[known] = distinct[codes[known]]
    return out


_MEMO_MAX = 1_000_000  # entries per memo below; cleared when full (bounded memory under hostile input)
_WORD_BUCKETS: dict[int, dict[str, tuple[int, ...]]] = {}  # n -> word -> buckets of its "w:" and "c:" keys
_PAIR_BUCKETS: dict[int, dict[str, int]] = {}  # n -> "a b" -> bucket of the "b:a b" key


def _word_buckets(word: str, n: int) -> tuple[int, ...]:
    padded = f" {word} "
    return (bucket(f"w:{word}", n), *(bucket(f"c:{padded[j : j + 3]}", n) for j in range(len(word))))


def request_buckets(prompt: str, n: int) -> list[int]:
    """The buckets of `text_keys(prompt)` (same multiset, other order), memoised per word and per word pair:
    the per-request path hashes each distinct word once per process, not once per request."""
    words = text_words(prompt)
    singles, pairs = _WORD_BUCKETS.setdefault(n, {}), _PAIR_BUCKETS.setdefault(n, {})
    if len(singles) >= _MEMO_MAX or len(pairs) >= _MEMO_MAX:
        singles.clear()
        pairs.clear()
    out: list[int] = []
    for w in words:
        got = singles.get(w)
        if got is None:
            got = singles[w] = _word_buckets(w, n)
        out += got
    for key in map(" ".join, itertools.pairwise(words)):
        b = pairs.get(key)
        if b is None:
            b = pairs[key] = bucket(f"b:{key}", n)
        out.append(b)
    return out


def warm_words(words: Sequence[str], n: int) -> None:
    """Memoise the buckets of the [a-z0-9]+ words of `words` for both paths, as their first sight in a prompt
    would: hashing moves from requests to load. The words are hashed once, in numpy, into the batch path's
    vocabulary; `request_buckets`' memo takes each word's buckets (same order) from there."""
    found = list(dict.fromkeys(itertools.chain.from_iterable(map(text_words, words))))
    vocab = _VOCABS.setdefault(n, _Vocab())
    with _VOCAB_LOCK:
        vocab.add([w for w in found if w not in vocab.index], n)
    singles = _WORD_BUCKETS.setdefault(n, {})
    if len(singles) + len(found) < _MEMO_MAX:
        for w in found:
            i = vocab.index[w]
            at = int(vocab.buckets_at[i])
            singles.setdefault(w, tuple(vocab.buckets[at : at + int(vocab.text_len[i]) + 1].tolist()))


def kernel_bytes(prompt: str) -> bytes:
    """What the C kernel reads for a prompt: an ASCII prompt as it is (the kernel maps A-Z to a-z and splits at
    every other byte, as `text_words` does), any other prompt as its `text_words` joined by spaces."""
    return prompt.encode("ascii") if prompt.isascii() else " ".join(text_words(prompt)).encode("ascii")


def _kernel(n: int, native: bool) -> TextKernel | None:
    return kernel(n) if native else None


def bucket_counts(prompt: str, n: int, native: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The distinct buckets of `text_keys(prompt)` in increasing order and how many keys fall in each (int64),
    from the C kernel (`features.text_kernel`) when it is built and `native`, else from `request_buckets`."""
    fast = _kernel(n, native)
    if fast is not None:
        return fast.one(kernel_bytes(prompt), n)
    cols, tf = np.unique(np.array(request_buckets(prompt, n), dtype=np.int64), return_counts=True)
    return cols, tf.astype(np.int64)


def text_vector(spec: TextSpec, prompt: str | None, native: bool = True) -> np.ndarray:
    """The k text features of one prompt (float32, NaN if None): `transform_text` for a single request,
    without pandas or scipy.sparse (the router's per-request path; tested equal to the batch path). One C call
    when the kernel is built (`text_matrix`'s operations and order), else (or not `native`: the benchmark's
    Python reference) the buckets' counts and numpy."""
    if prompt is None:
        return np.full(spec.params.k, np.nan, dtype=np.float32)
    fast = _kernel(spec.params.n_features, native)
    if fast is not None and (done := fast.vector(kernel_bytes(prompt), spec.kernel_args)) is not None:
        return done
    cols, tf = bucket_counts(prompt, spec.params.n_features, native)
    if len(cols) == 0:
        return np.zeros(spec.params.k, dtype=np.float32)
    w = (1.0 + np.log(tf)) if spec.params.sublinear_tf else tf.astype(np.float64)
    w = w * spec.idf[cols]
    norm = np.sqrt(np.dot(w, w))
    if norm == 0:
        return np.zeros(spec.params.k, dtype=np.float32)
    return np.asarray((w / norm) @ spec.components_t64[cols], dtype=np.float32)


# ---------------------------------------------------------------------------------------- the batch path
#
# `bucket` of many keys at once: MurmurHash3 x86 32 (seed 0) in numpy uint32 arithmetic, the keys being
# byte ranges of one buffer (tested equal to `bucket` on every key of the samples). Keys are processed by
# block index: key i's j-th 4-byte block is mixed into its hash at step j, for all keys at once.

_M1, _M2 = np.uint32(0xCC9E2D51), np.uint32(0x1B873593)


def _rotl(x: np.ndarray, r: int) -> np.ndarray:
    return (x << np.uint32(r)) | (x >> np.uint32(32 - r))


def _scramble(k: np.ndarray) -> np.ndarray:
    return _rotl(k * _M1, 15) * _M2


def _ranges(starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """The concatenated ranges starts[i] .. starts[i] + lens[i] - 1 (one cumulative sum, no repeats)."""
    keep = lens > 0
    starts, lens = starts[keep], lens[keep]
    steps = np.ones(int(lens.sum()), dtype=np.int32)  # every buffer here holds fewer than 2**31 items
    if len(steps):
        steps[0] = starts[0]
        steps[(np.cumsum(lens) - lens)[1:]] = starts[1:] - (starts[:-1] + lens[:-1] - 1)
    return np.cumsum(steps, dtype=np.int32)


def _ragged_copy(out: np.ndarray, dst: np.ndarray, src: np.ndarray, starts: np.ndarray, lens: np.ndarray) -> None:
    """out[dst[i] : dst[i] + lens[i]] = src[starts[i] : starts[i] + lens[i]] for every i."""
    out[_ranges(dst, lens)] = src[_ranges(starts, lens)]


_LONG_KEY = 64  # bytes: a longer key (a rare long word) is hashed by murmurhash3_32 itself, not block by block


def murmur_buckets(data: np.ndarray, starts: np.ndarray, lens: np.ndarray, n: int) -> np.ndarray:
    """`bucket(key, n)` of every key data[starts[i] : starts[i] + lens[i]] (UTF-8 bytes in a uint8 array)."""
    lens = np.asarray(lens, dtype=np.int64)
    padded = (lens + 3) // 4 * 4
    buf = np.zeros(int(padded.sum()), dtype=np.uint8)
    at = np.cumsum(padded) - padded
    _ragged_copy(buf, at, data, np.asarray(starts, dtype=np.int64), lens)
    return _murmur_aligned(buf, at, lens, n)


def _murmur_aligned(buf: np.ndarray, starts: np.ndarray, lens: np.ndarray, n: int) -> np.ndarray:
    """`murmur_buckets` of keys that start at multiples of 4 in `buf`, each followed by zeros up to the next."""
    blocks, first, full = buf.view("<u4"), starts // 4, lens // 4
    long = np.flatnonzero(lens > _LONG_KEY)
    full[long] = 0  # hashed apart below
    h = np.zeros(len(lens), dtype=np.uint32)
    todo, j = np.flatnonzero(full > 0), 0
    while len(todo):  # block j of every key that has one
        x = _rotl(h[todo] ^ _scramble(blocks[first[todo] + j]), 13)
        h[todo] = x * np.uint32(5) + np.uint32(0xE6546B64)
        j += 1
        todo = todo[full[todo] > j]
    tail = np.flatnonzero(lens % 4)
    h[tail] ^= _scramble(blocks[first[tail] + full[tail]])  # the last 1-3 bytes, zero padded (little endian)
    h ^= lens.astype(np.uint32)
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> np.uint32(16)
    out = (h % np.uint32(n)).astype(np.int64)
    out[long] = [
        murmurhash3_32(buf[a : a + size].tobytes(), seed=0, positive=True) % n
        for a, size in zip(starts[long].tolist(), lens[long].tolist(), strict=True)
    ]
    return out


def _keyed(prefix: bytes, parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, ...]:
    """Keys prefix + part_1 + " " + part_2 ... (each part: source bytes, starts, lengths; one key per row) as
    `_murmur_aligned` takes them: one zero-padded buffer, the keys' starts (multiples of 4) and lengths."""
    lens = len(prefix) + sum(p[2] for p in parts) + len(parts) - 1
    padded = (lens + 3) // 4 * 4
    starts = np.cumsum(padded) - padded
    out = np.zeros(int(padded.sum()), dtype=np.uint8)
    for i, byte in enumerate(prefix):
        out[starts + i] = byte
    at = starts + len(prefix)
    for k, (src, first, size) in enumerate(parts):
        if k:
            out[at] = ord(" ")
            at = at + 1
        _ragged_copy(out, at, src, first, size)
        at = at + size
    return out, starts, lens


class _Vocab:
    """The words the batch path has seen (for one n_features): id, UTF-8 bytes, and the buckets of its
    "w:" and "c:" keys (`_word_buckets`' multiset), in growing numpy buffers."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.text, self.text_at, self.text_len = np.empty(0, np.uint8), np.empty(0, np.int64), np.empty(0, np.int64)
        self.buckets, self.buckets_at = np.empty(0, np.int64), np.empty(0, np.int64)

    def add(self, words: list[str], n: int) -> None:
        if not words:
            return
        raw = [w.encode("ascii") for w in words]  # words are [a-z0-9]+
        sizes = np.fromiter(map(len, raw), dtype=np.int64, count=len(raw))
        text = np.frombuffer(b"".join(raw), dtype=np.uint8)
        at = np.cumsum(sizes) - sizes
        w_keys = _keyed(b"w:", [(text, at, sizes)])
        spaced = np.frombuffer(b"".join(b" " + r + b" " for r in raw), dtype=np.uint8)  # " word " of each word
        gram_word = np.repeat(np.arange(len(raw)), sizes)
        gram_at = (at + 2 * np.arange(len(raw)))[gram_word] + (np.arange(len(gram_word)) - np.repeat(at, sizes))
        c_keys = _keyed(b"c:", [(spaced, gram_at, np.full(len(gram_word), 3))])
        w_b, c_b = _murmur_aligned(*w_keys, n), _murmur_aligned(*c_keys, n)
        order = np.argsort(np.concatenate([np.arange(len(raw)), gram_word]), kind="stable")  # by word: w:, c:...
        grouped = np.concatenate([w_b, c_b])[order]
        base = len(self.text_len)
        self.text = np.concatenate([self.text, text])  # the buffers first, the index last: a concurrent
        self.text_at = np.concatenate([self.text_at, at + len(self.text) - len(text)])  # reader never meets an
        self.text_len = np.concatenate([self.text_len, sizes])  # id whose data is not there yet
        self.buckets = np.concatenate([self.buckets, grouped])
        self.buckets_at = np.concatenate(
            [self.buckets_at, np.cumsum(sizes + 1) - (sizes + 1) + len(self.buckets) - len(grouped)]
        )
        self.index.update(zip(words, range(base, base + len(words)), strict=True))


_VOCABS: dict[int, _Vocab] = {}  # n -> the batch path's words
_VOCAB_LOCK = threading.Lock()


def _batch_buckets(words_of: list[list[str]], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Every prompt's key buckets (the multisets of `request_buckets`) as (prompt index, bucket) arrays:
    words looked up once each (new words hashed together), pairs hashed in numpy every time."""
    vocab = _VOCABS.get(n)
    if vocab is None or len(vocab.index) >= _MEMO_MAX:
        vocab = _VOCABS[n] = _Vocab()
    words = list(itertools.chain.from_iterable(words_of))
    counts = np.fromiter(map(len, words_of), dtype=np.int64, count=len(words_of))
    ids = np.fromiter(map(vocab.index.get, words, itertools.repeat(-1)), dtype=np.int64, count=len(words))
    if (ids < 0).any():
        with _VOCAB_LOCK:  # one writer at a time (routers may batch in several threads)
            vocab.add([w for w in dict.fromkeys(words[i] for i in np.flatnonzero(ids < 0)) if w not in vocab.index], n)
        missing = np.flatnonzero(ids < 0)
        ids[missing] = [vocab.index[words[i]] for i in missing]
    row = np.repeat(np.arange(len(words_of)), counts)
    sizes = vocab.text_len[ids] + 1  # buckets per word: its "w:" key and one "c:" gram per character
    word_buckets = np.empty(int(sizes.sum()), dtype=np.int64)
    _ragged_copy(word_buckets, np.cumsum(sizes) - sizes, vocab.buckets, vocab.buckets_at[ids], sizes)
    same = np.flatnonzero(row[1:] == row[:-1])  # adjacent words of one prompt
    a, b = ids[same], ids[same + 1]
    pair_keys = _keyed(
        b"b:", [(vocab.text, vocab.text_at[a], vocab.text_len[a]), (vocab.text, vocab.text_at[b], vocab.text_len[b])]
    )
    rows = np.concatenate([np.repeat(row, sizes), row[same]])
    return rows, np.concatenate([word_buckets, _murmur_aligned(*pair_keys, n)])


def _batch_counts(texts: list[str], n: int, native: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`bucket_counts` of every text as (text index, bucket, count) arrays, by text then bucket: from the C
    kernel when it is built and `native`, else words looked up once each (`_batch_buckets`) and one sort."""
    fast = _kernel(n, native)
    if fast is not None:
        nnz, cols, tf = fast.many([kernel_bytes(t) for t in texts], n)
        return np.repeat(np.arange(len(texts)), nnz), cols, tf
    row_of, buckets = _batch_buckets([text_words(t) for t in texts], n)
    keys = row_of * n + buckets
    keys, tf = np.unique(keys.astype(np.int32) if len(texts) * n < 2**31 else keys, return_counts=True)
    row, cols = np.divmod(keys, n)
    return row, cols, tf


def text_matrix(spec: TextSpec, prompts: Sequence[str | None], native: bool = True) -> np.ndarray:
    """`text_vector` of every prompt (n x k float32, NaN rows for None) over the whole batch at once: in one C
    call when the kernel is built and `native` (the operations below in their order, bit for bit; tested),
    else words hashed once per process, word pairs hashed in numpy, one sort for every prompt's bucket counts,
    one sparse product for all rows. `text_vector`'s numpy path runs two sums in another order (the squared
    norm, sequential here, and the product with the components, sequential per row here and BLAS there), so
    a number could differ from it in the last bit of its float64 before the rounding to float32 (on the
    ~40,000 sample and hostile prompts not one float32 differs; tested)."""
    k, nf = spec.params.k, spec.params.n_features
    out = np.full((len(prompts), k), np.nan, dtype=np.float32)
    rows = [i for i, p in enumerate(prompts) if p is not None]
    if not rows:
        return out
    fast = _kernel(nf, native)
    if (
        fast is not None
        and (done := fast.vectors([kernel_bytes(prompts[i]) for i in rows], spec.kernel_args)) is not None
    ):
        out[rows] = done
        return out
    row, cols, tf = _batch_counts([prompts[i] for i in rows], nf, native)
    w = (1.0 + np.log(tf)) if spec.params.sublinear_tf else tf.astype(np.float64)
    w = w * spec.idf[cols]
    norm = np.sqrt(np.bincount(row, weights=w * w, minlength=len(rows)))
    indptr = np.concatenate([[0], np.cumsum(np.bincount(row, minlength=len(rows)))])
    safe = np.where(norm > 0, norm, 1.0)
    x = sp.csr_matrix((w / safe[row], cols, indptr), shape=(len(rows), nf))
    dense = np.asarray(x @ spec.components_t64)
    dense[norm == 0] = 0.0
    out[rows] = dense.astype(np.float32)
    return out


# ---------------------------------------------------------------------------------------- validation


def _check_params(p: TextParams) -> None:
    if p.n_features < 2 or not 1 <= p.k < p.n_features or p.min_df < 1:
        raise BeastError(f"features.text: need n_features >= 2, 1 <= k < n_features, min_df >= 1; got {p}")


def _frozen_spec(
    params: TextParams, n_docs: int, idf: np.ndarray, comps: np.ndarray, evr: tuple[float, ...]
) -> TextSpec:
    idf = np.array(idf, dtype=np.float64)
    comps = np.array(comps, dtype=np.float32)
    idf.setflags(write=False)
    comps.setflags(write=False)
    return TextSpec(params=params, n_docs=n_docs, idf=idf, components=comps, explained_variance_ratio=evr)


def _bad(reason: str) -> BeastError:
    return BeastError(f"text spec: {reason}")


def _spec_from_json(text: str) -> TextSpec:
    try:
        raw = json.loads(text)
    except (json.JSONDecodeError, TypeError) as exc:
        raise _bad(f"not valid JSON ({exc})") from None
    if not isinstance(raw, dict) or raw.get("kind") != SPEC_KIND:
        raise _bad(f"not a {SPEC_KIND} object")
    if raw.get("version") != SPEC_VERSION:
        raise _bad(f"version {raw.get('version')!r} is not supported (this code reads version {SPEC_VERSION!r})")
    missing = {"params", "n_docs", "idf", "components", "explained_variance_ratio"} - raw.keys()
    if missing:
        raise _bad(f"missing field(s) {sorted(missing)}")
    params = _params_from(raw["params"])
    idf = floats_from_json(raw["idf"], "idf", params.n_features, _bad)
    comps = matrix_from_json(raw["components"], [params.k, params.n_features], _bad)
    evr = floats_from_json(raw["explained_variance_ratio"], "explained_variance_ratio", params.k, _bad)
    if type(raw["n_docs"]) is not int or raw["n_docs"] < 1:
        raise _bad(f"n_docs must be a positive integer, got {raw['n_docs']!r}")
    return _frozen_spec(params, raw["n_docs"], idf, comps, tuple(float(v) for v in evr))


def _params_from(raw: object) -> TextParams:
    names = {f.name: f.type for f in fields(TextParams)}
    if not isinstance(raw, dict) or set(raw) != set(names):
        raise _bad(f"params must have exactly the fields {sorted(names)}, got {raw!r}")
    for name, value in raw.items():
        want = bool if names[name] in (bool, "bool") else int
        if type(value) is not want:
            raise _bad(f"params.{name} must be {want.__name__}, got {value!r}")
    params = TextParams(**raw)
    try:
        _check_params(params)
    except BeastError as exc:
        raise _bad(str(exc)) from None
    return params


def floats_from_json(raw: object, name: str, length: int, bad: Callable[[str], BeastError]) -> np.ndarray:
    """A JSON list of `length` finite numbers as float64; anything else -> bad(reason) naming `name`."""
    if not isinstance(raw, list) or len(raw) != length:
        raise bad(f"{name} must be a list of {length} numbers")
    if not all(type(v) in (int, float) and math.isfinite(v) for v in raw):
        raise bad(f"{name} holds a value that is not a finite number")
    return np.array(raw, dtype=np.float64)


def matrix_json(a: np.ndarray) -> dict:
    """A float32 matrix as JSON: {dtype, byteorder, shape, base64 of its row-major little-endian bytes}."""
    blob = np.ascontiguousarray(a, dtype="<f4").tobytes()
    return {
        "dtype": "float32",
        "byteorder": "little",
        "shape": list(a.shape),
        "base64": base64.b64encode(blob).decode("ascii"),
    }


def matrix_from_json(
    raw: object, shape: list[int], bad: Callable[[str], BeastError], name: str = "components"
) -> np.ndarray:
    """The inverse of `matrix_json`, checked: the shape must be `shape`, the values finite."""
    if not isinstance(raw, dict) or raw.get("dtype") != "float32" or raw.get("byteorder") != "little":
        raise bad(f"{name} must be {{dtype: float32, byteorder: little, shape, base64}}")
    if raw.get("shape") != shape:
        raise bad(f"{name}.shape is {raw.get('shape')!r}, params say {shape}")
    try:
        blob = base64.b64decode(raw.get("base64", ""), validate=True)
    except (binascii.Error, TypeError, ValueError) as exc:
        raise bad(f"{name}.base64 is not base64 ({exc})") from None
    if len(blob) != 4 * shape[0] * shape[1]:
        raise bad(f"{name} hold {len(blob)} bytes, shape {shape} needs {4 * shape[0] * shape[1]}")
    out = np.frombuffer(blob, dtype="<f4").reshape(shape)
    if not np.isfinite(out).all():
        raise bad(f"{name} hold a value that is not finite")
    return out
