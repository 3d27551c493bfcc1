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


def text_keys(prompt: str) -> list[str]:
    """The hashed keys of one prompt (steps 1-3 of the module docstring)."""
    words = WORD_RE.findall(unicodedata.normalize("NFKC", prompt).lower())
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
    words = WORD_RE.findall(unicodedata.normalize("NFKC", prompt).lower())
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


def text_vector(spec: TextSpec, prompt: str | None) -> np.ndarray:
    """The k text features of one prompt (float32, NaN if None): `transform_text` for a single request,
    without pandas or scipy.sparse (the router's per-request path; tested equal to the batch path)."""
    if prompt is None:
        return np.full(spec.params.k, np.nan, dtype=np.float32)
    keys = request_buckets(prompt, spec.params.n_features)
    buckets = np.fromiter(keys, dtype=np.int64, count=len(keys))
    if len(buckets) == 0:
        return np.zeros(spec.params.k, dtype=np.float32)
    counts = np.bincount(buckets, minlength=spec.params.n_features)
    cols = np.flatnonzero(counts)
    tf = counts[cols]
    w = (1.0 + np.log(tf)) if spec.params.sublinear_tf else tf.astype(np.float64)
    w = w * spec.idf[cols]
    norm = np.sqrt(np.dot(w, w))
    if norm == 0:
        return np.zeros(spec.params.k, dtype=np.float32)
    return np.asarray((w / norm) @ spec.components_t64[cols], dtype=np.float32)


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
