"""Compiled evaluation of the router's LightGBM boosters: model text -> native code, built at load time.

LightGBM text stays the bundle's exchange format. At load time each booster's text is compiled by lleaves
(LightGBM text -> LLVM IR -> machine code through llvmlite's wheels: no C compiler needed) and the object code
is cached on disk, keyed by the sha256 of the model text, the lleaves / llvmlite versions, the compile options
and the host CPU (the code is compiled for it). Why lleaves, measured on data/bundle (14 quality heads + the
cost booster, x86_64, one thread):

- lleaves 1.3 + llvmlite 0.44: compile 15 boosters 4-6 s cold, load them from the cache in ~0.05 s warm;
  bit-equal to `Booster.predict` (below); the entry point takes a whole row block per call, so one request is
  15 calls of ~1 us: ~25 us of trees per request (LightGBM's single-row C API: ~100 us), and ~100k requests/s
  batched (`Booster.predict`: ~24k/s). Installs from wheels on CPython 3.11 Linux x86_64 and aarch64
  (llvmlite ships both; lleaves is pure Python).
- treelite 4 + tl2cgen 1.0 (gcc): compile ~6 s cold; its public `Predictor.predict(DMatrix)` costs ~220 us
  per request (15 calls) and ~66k requests/s batched, and the cost booster (categorical splits) predicted up
  to 2.8 off `Booster.predict` (tl2cgen 1.0 bundles treelite 4.1 while PyPI's treelite is 4.8). Rejected.

The router calls lleaves' compiled entry point `forest_root(double *rows, double *out, int32 start, int32
end)` directly through ctypes rather than `lleaves.Model.predict`: the public predict re-validates and
re-allocates per call (~6 us of Python), which at 15 calls per request is most of the budget. That entry point
and `Model._execution_engine` are lleaves internals, hence the pin lleaves>=1.3,<1.4; llvmlite is pinned
<0.45 because lleaves 1.3 uses the legacy pass-manager builder that llvmlite 0.45 removed.

Equality: bit for bit with `Booster.predict` (measured on every booster of data/bundle, 94,299 probe and
conformance rows: max difference 0; tests/serving/test_compiled.py asserts equality). Two things make it so:
- trees are compiled as one block (`fblocksize` above any tree count), so the raw score is summed tree after
  tree as LightGBM does; lleaves' default cache blocking (34 trees) sums per block and differed by up to
  1e-14 relative, for no measurable speed gain on these boosters (<5%);
- LightGBM's C API drops |x| <= kZeroThreshold (1e-35f) from a dense row, lleaves does not: numerical
  thresholds within [-1e-35, 1e-35) (LightGBM bins put some at exactly -1e-35) are moved so unsnapped rows
  split as snapped ones do (`compilable_text`), and a booster with a missing-type Zero split gets such values
  set to 0.0 before each call (`needs_snap`).
Every compiled booster is checked against the LightGBM booster on a few rows when the router loads
(`verify_trees`, within RTOL / ATOL so that a platform whose libm rounds exp differently still compiles).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Protocol

import numpy as np

from core.files import user_cache
from core.native import library_or_warn
from serving.bundle import BundleError
from serving.forest import Forest, specialized_forest, tree_model
from serving.trees import K_ZERO_THRESHOLD

KERNEL = Path(__file__).with_name("compiled_kernel.c")
RTOL = 1e-12  # the load-time check's tolerance against Booster.predict; measured difference: 0 (bit-equal)
ATOL = 1e-12
_ENTRY_NAME = "forest_root"
_ENTRY = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int32, ctypes.c_int32)
_COMPILE_OPTIONS = {"fblocksize": 1 << 30, "fcodemodel": "large", "finline": True, "use_fp64": True}
_MAGIC = b"beast-lleaves-object-v1\n"
_RECIPE = "1"  # bump when `compilable_text` or the entry point's use changes: old cache entries then miss
_MAX_ROWS = 2**30  # rows per entry call: its start / end are int32
_MEMO_SIZE = 256


@dataclass(frozen=True, eq=False)
class CompiledBooster:
    """One booster as native code; `entry(rows_address, out_address, start, end)` writes predictions (with the
    objective's output transform) of rows start..end-1 of a C-contiguous float64 block into out[start:end]."""

    key: str  # cache key (sha256 of model text + toolchain + options)
    n_features: int
    snap_zero: bool  # values with |x| <= kZeroThreshold must be set to 0.0 first (as LightGBM's C API does)
    seconds: float  # time this process spent compiling or loading it
    cached: bool  # True: loaded from the disk cache (warm); False: compiled (cold)
    entry: Callable[[int, int, int, int], None] = field(repr=False)
    engine: object = field(repr=False)  # the lleaves model: keeps the code's memory alive

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predictions for the rows of X (n_rows x n_features), as `Booster.predict` returns them."""
        X = self.rows(X)
        out = np.empty(len(X))
        base, out_base = X.ctypes.data, out.ctypes.data
        for start in range(0, len(X), _MAX_ROWS):
            self.entry(base, out_base, start, min(start + _MAX_ROWS, len(X)))
        return out

    def rows(self, X: np.ndarray) -> np.ndarray:
        """X as the entry point reads it: 2-d float64, C order, tiny values snapped when this booster needs it."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise BundleError(f"compiled booster: X has shape {X.shape}; the model needs (n_rows, {self.n_features})")
        return snap_zero(X) if self.snap_zero else X


def snap_zero(X: np.ndarray) -> np.ndarray:
    """X with |x| <= kZeroThreshold replaced by 0.0 (a copy only when some value changes)."""
    tiny = (np.abs(X) <= K_ZERO_THRESHOLD) & (X != 0.0)
    return np.where(tiny, 0.0, X) if tiny.any() else X


def _numerical_nodes(model_text: str) -> Iterator[tuple[int, int, int, float]]:
    """(line index of the tree's threshold line, node, decision_type, threshold) of every numerical split."""
    lines = model_text.split("\n")
    at, thresholds = -1, []
    for n, line in enumerate(lines):
        if line.startswith("threshold="):
            at, thresholds = n, [float(v) for v in line[len("threshold=") :].split()]
        elif line.startswith("decision_type="):
            kinds = [int(v) for v in line[len("decision_type=") :].split()]
            yield from ((at, node, kind, t) for node, (kind, t) in enumerate(zip(kinds, thresholds)) if not kind & 1)


def _missing_zero(kind: int) -> bool:
    return (kind >> 2) & 3 == 1


def needs_snap(model_text: str) -> bool:
    """Whether |x| <= kZeroThreshold must be set to 0.0 before evaluation: a numerical split with missing type
    Zero (LightGBM treats such x as zero, hence missing; lleaves tests x == 0 exactly)."""
    return any(_missing_zero(kind) for _, _, kind, _ in _numerical_nodes(model_text))


def _snapped_threshold(t: float) -> float:
    """A threshold that splits unsnapped rows as `t` splits snapped ones (x with 0 < |x| <= kZ read as 0.0):
    t in [0, kZ) -> kZ (those x go left, as 0 <= t does); t in [-kZ, 0) -> just below -kZ (they go right)."""
    if 0.0 <= t < K_ZERO_THRESHOLD:
        return K_ZERO_THRESHOLD
    if -K_ZERO_THRESHOLD <= t < 0.0:
        return float(np.nextafter(-K_ZERO_THRESHOLD, -np.inf))
    return t


def compilable_text(model_text: str) -> str:
    """The model text with every numerical threshold within [-kZ, kZ) moved by `_snapped_threshold`, so rows
    need no snapping (LightGBM bins put thresholds at exactly -kZeroThreshold); Zero-missing splits keep
    theirs (their rows are snapped: `needs_snap`). Other lines are kept byte for byte."""
    lines = model_text.split("\n")
    for at, node, kind, t in _numerical_nodes(model_text):
        moved = _snapped_threshold(t)
        if moved != t and not _missing_zero(kind):
            values = lines[at][len("threshold=") :].split(" ")
            values[node] = repr(moved)
            lines[at] = "threshold=" + " ".join(values)
    return "\n".join(lines)


def n_features(model_text: str) -> int:
    """max_feature_idx + 1 from the model text's header."""
    for line in model_text.splitlines():
        if line.startswith("max_feature_idx="):
            return int(line.split("=", 1)[1]) + 1
        if line.startswith("Tree="):
            break
    raise BundleError("compiled booster: the model text has no max_feature_idx line")


def cache_dir() -> Path:
    """`$XDG_CACHE_HOME/beast/compiled`, else `~/.cache/beast/compiled`."""
    return user_cache("compiled")


def toolchain() -> str:
    """What the object code depends on besides the model: library versions, options and the host CPU.
    Raises BundleError when lleaves cannot be imported."""
    try:
        import lleaves  # noqa: F401 - its import is the availability check
        import llvmlite
        import llvmlite.binding as llvm
    except ImportError as exc:
        raise BundleError(f"lleaves is not importable ({exc})") from None
    from importlib.metadata import version

    try:
        features = llvm.get_host_cpu_features().flatten()
    except RuntimeError:
        features = ""
    options = ",".join(f"{k}={v}" for k, v in sorted(_COMPILE_OPTIONS.items()))
    return (
        f"recipe={_RECIPE} lleaves={version('lleaves')} llvmlite={llvmlite.__version__} {options} "
        f"triple={llvm.get_process_triple()} cpu={llvm.get_host_cpu_name()} features={features}"
    )


def cache_key(model_text: str, chain: str) -> str:
    return hashlib.sha256(hashlib.sha256(model_text.encode()).digest() + chain.encode()).hexdigest()


def _pack(key: str, payload: bytes) -> bytes:
    return _MAGIC + key.encode() + hashlib.sha256(payload).digest() + payload


def _unpack(key: str, data: bytes) -> bytes | None:
    """The object code of a cache file, None unless its header names `key` and its checksum matches."""
    head = len(_MAGIC) + len(key)
    if data[:head] != _MAGIC + key.encode():
        return None
    digest, payload = data[head : head + 32], data[head + 32 :]
    return payload if payload and hashlib.sha256(payload).digest() == digest else None


def _read_cached(path: Path, key: str) -> bytes | None:
    try:
        return _unpack(key, path.read_bytes())
    except OSError:
        return None


def _write_atomic(path: Path, data: bytes) -> bool:
    """Write via a temporary file in the same folder + rename: a concurrent reader sees all or nothing.
    False (nothing cached) when the folder is not writable; the compiled code is still used."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError:
        return False
    return True


def _lleaves_model(model_text: str, work: Path, obj: Path):
    """An lleaves model compiled from `model_text`, or loaded from the object file `obj` when it exists
    (otherwise lleaves writes the object code it compiled there)."""
    import lleaves

    text_file = work / "model.txt"
    text_file.write_text(compilable_text(model_text))
    model = lleaves.Model(model_file=str(text_file))
    model.compile(cache=str(obj), **_COMPILE_OPTIONS)
    return model


def compile_booster(model_text: str, directory: Path | None = None) -> CompiledBooster:
    """The booster of `model_text` as native code: loaded from the disk cache when a valid entry exists,
    otherwise compiled and cached (a missing, corrupt or unloadable entry is rebuilt). BundleError if lleaves
    is unavailable or cannot compile the model."""
    start = time.perf_counter()
    key = cache_key(model_text, toolchain())
    path = (directory or cache_dir()) / f"{key}.o"
    payload = _read_cached(path, key)
    with tempfile.TemporaryDirectory(prefix="beast-compile-") as tmp:
        work, obj = Path(tmp), Path(tmp) / "model.o"
        model = None
        if payload is not None:
            obj.write_bytes(payload)
            try:
                model = _lleaves_model(model_text, work, obj)
            except Exception:  # noqa: BLE001 - an entry that LLVM refuses is rebuilt, like a corrupt one
                obj.unlink(missing_ok=True)
                payload = None
        if model is None:
            try:
                model = _lleaves_model(model_text, work, obj)
            except Exception as exc:  # noqa: BLE001 - any compiler failure: the router falls back to LightGBM
                raise BundleError(f"lleaves could not compile the model: {type(exc).__name__}: {exc}") from None
            _write_atomic(path, _pack(key, obj.read_bytes()))
    address = model._execution_engine.get_function_address(_ENTRY_NAME)
    if not address:
        raise BundleError(f"lleaves: compiled code has no {_ENTRY_NAME} entry point")
    return CompiledBooster(
        key=key,
        n_features=n_features(model_text),
        snap_zero=needs_snap(model_text),
        seconds=time.perf_counter() - start,
        cached=payload is not None,
        entry=_ENTRY(address),
        engine=model,
    )


_memo: dict[str, CompiledBooster] = {}
_memo_lock = threading.Lock()


def load_booster(model_text: str) -> CompiledBooster:
    """`compile_booster` through a per-process memo: routers built again from the same bundle (tests, a reload)
    share the loaded code instead of loading it again."""
    text_key = hashlib.sha256(model_text.encode()).hexdigest()
    with _memo_lock:
        if text_key not in _memo:
            if len(_memo) >= _MEMO_SIZE:
                del _memo[next(iter(_memo))]
            _memo[text_key] = compile_booster(model_text)
        return _memo[text_key]


def load_trees(
    head_texts: Sequence[str | None], shared: bool, cost_text: str, cost_rows: tuple[np.ndarray, np.ndarray]
) -> CompiledTrees:
    """The router's boosters compiled (memoised per process): one head per candidate (None: no head), and for
    batches the kernel's forests (`serving.forest`; cost_rows: the cost layout's template and which of its
    columns a request fills). Any failure is a BundleError naming it, so the router can fall back to LightGBM
    with that reason."""
    try:
        heads = [None if t is None else load_booster(t) for t in head_texts]
        texts = [t for t in head_texts if t is not None][: 1 if shared else None]
        forest = Forest.from_models([tree_model(t) for t in texts])
        cost_forest = specialized_forest(cost_text, *cost_rows)
        return CompiledTrees(heads, shared, load_booster(cost_text), forest, cost_forest)
    except BundleError:
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. no writable temporary folder, an LLVM error: LightGBM instead
        raise BundleError(f"compiling the trees failed: {type(exc).__name__}: {exc}") from None


class Evaluator(Protocol):
    def many(self, Xq: np.ndarray, Xc: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


def verify_trees(trees: CompiledTrees, reference: Evaluator, Xq: np.ndarray, Xc: np.ndarray) -> None:
    """BundleError unless the compiled trees predict what `reference` (the LightGBM boosters) does on these
    candidate-major rows, within RTOL / ATOL: a miscompiled or stale object is never used."""
    for what, got, want in zip(("quality", "cost"), trees.many(Xq, Xc), reference.many(Xq, Xc)):
        bad = ~np.isclose(got, want, rtol=RTOL, atol=ATOL, equal_nan=True)
        if bad.any():
            r, i = (int(v[0]) for v in np.nonzero(bad))
            raise BundleError(
                f"compiled {what} booster disagrees with LightGBM: row {r}, candidate {i}: {got[r, i]!r} != {want[r, i]!r}"
            )


def per_request(values: np.ndarray, n: int) -> np.ndarray:
    """n_requests x n of candidate-major predictions (blocks x n_requests): the transposed view when there is a
    block per candidate, else the single block's predictions (read by every candidate) repeated for each."""
    return values.T if len(values) == n else np.broadcast_to(values, (n, values.shape[1])).T.copy()


def _one_call(calls: Sequence[tuple[int, Callable]], cost: Callable) -> Callable | None:
    """`compiled_kernel.c`'s `beast_forests_one` bound to these (row, entry) head calls and the cost entry:
    (X, row stride, quality out, Xc, cost rows, cost out) -> a request's boosters in one ctypes call instead of
    one each. None without a C kernel (`core.native`)."""
    library = library_or_warn(KERNEL, "serving.compiled: one ctypes call per booster")
    if library is None or not calls:
        return None
    fused = library.beast_forests_one
    P = ctypes.c_void_p
    fused.argtypes = [P, P, ctypes.c_int64, P, P, ctypes.c_int64, P, P, ctypes.c_int32, P]
    fused.restype = None
    heads = (P * len(calls))(*(ctypes.cast(entry, P).value for _, entry in calls))
    rows = (ctypes.c_int64 * len(calls))(*(i for i, _ in calls))
    return partial(fused, heads, rows, len(calls), ctypes.cast(cost, P).value)  # it holds the two arrays


class CompiledTrees:
    """The router's boosters, compiled: one quality head per candidate (None: no head, NaN quality; the
    shared head is the same booster on every row) and the cost booster. `one` evaluates one request's
    n_candidates rows with one native call (`compiled_kernel.c`; without it one entry call per head);
    `many` evaluates a batch with one call per booster, through the kernel's forests when there are (`serving.forest`:
    the same bits in about half the time of the lleaves code on a batch): `forest` for the quality heads when they
    read one block, `cost_forest` (the cost booster pruned per candidate) for the cost rows."""

    def __init__(
        self,
        heads: Sequence[CompiledBooster | None],
        shared: bool,
        cost: CompiledBooster,
        forest: Forest | None = None,
        cost_forest: Forest | None = None,
    ):
        self.heads, self.shared, self.cost = tuple(heads), shared, cost
        self.forest, self.cost_forest = forest, cost_forest
        self.cost_blocks = None if cost_forest is None else 1  # the pruned trees read any one candidate's block
        self.n = len(self.heads)
        self._calls = tuple((i, h.entry) for i, h in enumerate(self.heads) if h is not None)
        self._snap = any(h.snap_zero for h in self.heads if h is not None)
        self._fused = None if shared else _one_call(self._calls, cost.entry)

    def one(self, Xq: np.ndarray, Xc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(quality, cost output) of one request: Xq, Xc are n_candidates x n_features, float64, C order."""
        quality, cost = np.full(self.n, np.nan), np.empty(self.n)
        if self._snap:
            Xq = snap_zero(Xq)
        Xc = snap_zero(Xc) if self.cost.snap_zero else Xc
        if self._fused is not None:
            self._fused(Xq.ctypes.data, Xq.strides[0], quality.ctypes.data, Xc.ctypes.data, self.n, cost.ctypes.data)
            return quality, cost
        if self.shared:
            self.heads[0].entry(Xq.ctypes.data, quality.ctypes.data, 0, self.n)
        else:
            base, stride, out = Xq.ctypes.data, Xq.strides[0], quality.ctypes.data
            for i, entry in self._calls:
                entry(base + i * stride, out + 8 * i, 0, 1)
        self.cost.entry(Xc.ctypes.data, cost.ctypes.data, 0, self.n)
        return quality, cost

    def many(self, Xq: np.ndarray, Xc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(quality, cost output), each n_requests x n_candidates, of candidate-major rows (n_candidates x
        n_requests x n_features: candidate i's rows are the block Xq[i], read in place; a single block is
        read by every candidate). The rows are the layouts' (`FeatureLayout.fill_many`): with `cost_forest` only
        Xc[0]'s request columns are read, each candidate's own columns being decided in its pruned trees (so
        `cost_blocks` is 1: a batch fills that block alone)."""
        n, (blocks, n_requests) = self.n, Xq.shape[:2]
        forest, cost_forest = (self.forest, self.cost_forest) if n_requests else (None, None)
        if cost_forest is not None:  # every candidate's pruned trees on the request's row (any candidate's block)
            cost = cost_forest.predict(Xc[0]).T
        else:
            cost = per_request(self.cost.predict(Xc.reshape(-1, Xc.shape[2])).reshape(len(Xc), n_requests), n)
        if self.shared:
            X = Xq.reshape(-1, Xq.shape[2])
            quality = (self.heads[0].predict(X) if forest is None else forest.predict(X)[0]).reshape(blocks, n_requests)
            return per_request(quality, n), cost
        quality = np.full((n, n_requests), np.nan)
        if forest is not None and blocks == 1:  # the heads in `_calls` order, all on the one block
            quality[[i for i, _ in self._calls]] = forest.predict(Xq[0])
        elif n_requests and self._calls:  # one check of the whole block, then each head's entry on its rows in place
            X = self.heads[self._calls[0][0]].rows(Xq.reshape(blocks * n_requests, Xq.shape[2]))
            X = snap_zero(X) if self._snap else X
            step = n_requests * X.strides[0] if blocks > 1 else 0
            base, out = X.ctypes.data, quality.ctypes.data
            for i, entry in self._calls:
                entry(base + i * step, out + 8 * n_requests * i, 0, n_requests)
        return quality.T, cost
