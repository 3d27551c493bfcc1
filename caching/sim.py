"""Prefix-cache simulation: replay a trace's prompt-prefix blocks through cache policies (`beast cache sim`).

Model of the cache (exact):

1. Rows with `prefix_blocks` are ordered by `timestamp`, ties by row order (a stable sort, as in
   `models/cache.py`). Each request looks up its block hashes in list order; one lookup = one block.
2. The cache holds `capacity` blocks (every block has size 1). A lookup that finds its block is a hit and
   saves that block's prompt tokens: `min(block_tokens, input_tokens - block_tokens * position)`, i.e.
   512 tokens for every block but a request's last, partial one (Mooncake: one hash per 512-token block,
   `data/README.md`). A miss inserts the block (unless the policy declines to admit it).
   Each block is looked up independently: a hit after a miss in the same request still counts (an upper
   bound on what a strict longest-prefix KV cache would reuse).
3. The whole trace is replayed so caches are warm; only lookups with timestamp >= t_min + eval_from *
   (t_max - t_min) are counted (`eval_from` 0.5: the later half by time). Every policy is scored on the same
   lookups.

Policies (`POLICIES`): `lru`, `lfu`, `fifo`, `s3fifo` and `arc` are libCacheSim's own C implementations
(`libcachesim` on PyPI), fed one request per lookup. `belady` is the offline optimum, Belady's MIN
(`simulate_belady`: evict the block whose next use is farthest, from numpy next-use indices) with bypass
(a block used again later than every cached block is not admitted), so it bounds every policy here,
`learned` included; without bypass it equals libCacheSim's Belady (demand paging, which must admit every
miss) hit count for hit count (tested), and that one is not an upper bound for a policy that may decline.
`learned` is our own simulator; `LearnedParams.objective` picks its model (`LEARNED_OBJECTIVES`).
`online` is the same survival policy driven by a model refitted on the stream it serves (from the
shipped prior `caching.prior` until a refit beats it on held-out lookups), and
`guarded` (the shipped policy) runs shadow experts (`GuardParams.experts`: ARC, online, S3-FIFO, LRU) and
a real cache that follows the current leader's shadow; both are specified in `caching/guard.py`. The
guard's classic shadows are our own simulators (`OWN_SHADOWS`: `simulate_lru`, `simulate_arc`,
`simulate_s3fifo`), equal to libCacheSim's hit for hit (tested) and 2-4x faster; like the learned
simulators they record when each lookup's block left the cache (`until`), which the real cache steps on.

Features (`lookup_features`), per lookup, known at that moment (from earlier lookups only; tested by
altering later requests): the request's cache-hit-predictor features (`models.cache.cache_features`) plus
the block's position, whether it is the request's last (partial) block, its prior lookups and the gap
since its last one (in lookups and seconds), the gap relative to the mean gap so far, the same for its
prefix parent (the block before it in the request) and its position relative to where the request
extended the prefix. `LearnedParams.features = "transfer"` keeps only the scale-free ones
(`TRANSFER_FEATURES`).

`survival` (default; `fit_survival` + `survival_table` + `simulate_scored`):
1. Training rows (`survival_rows`): each lookup i before the evaluation cut (`n_train` lookups) with
   `horizons_per_row` horizons h drawn log-uniformly in [1, n_train - 1 - i], label "the block is looked up
   again within h lookups" -- known before the cut for every row, so nothing at or after it is read and no
   lookup is dropped for an unresolved horizon. A LightGBM classifier (small trees: 7 leaves, >= 500 rows
   per leaf, since a request's blocks share features and labels) reads the lookup features plus log2(h),
   constrained monotone increasing in it: one model of F(h) = P(reused within h) for every horizon.
2. Per lookup, F is evaluated at h = 1, 2, 4, ... (`horizon_grid`) and read between grid points linearly
   in log2 h (`survival_table`).
3. Eviction: a cached block last looked up l lookups ago, at age a = i - l, scores the chance that it is
   used within the next W = window_factor x capacity lookups given it was not used in the first a:
   (F(a + W) - F(a)) / (1 - F(a)), a rounded down to its half-octave bucket (`age_bucket`, `bucket_ages`),
   precomputed per lookup and bucket (`survival_table`). On a miss with a full cache, `samples` random
   cached blocks are compared and the lowest score goes; with `admit_bypass` a missed block whose own
   score (a = 0: F(W)) is lower than that victim's is not admitted instead (`simulate_scored`).

`hit_probability` (the one-horizon model before it; `fit_hit_probability` + `simulate_hit_probability`):
training rows are the lookups before the cut whose horizon H = int(horizon_fraction x n_train) lookups
ends before it (`_training_window`; all of them if fewer than 100); a classifier predicts p = P(reused
within H); the timing comes from G_g, the empirical distribution of the training positives' reuse
distances per curve group (`curve_group`: a prompt's first block, or any other), flat beyond H, so
F(h) = p G_g(h) and the score is p (G(a + W) - G(a)) / (1 - p G(a)) (`age_curve`, `hit_probability_table`),
evicted by the same `simulate_scored`.

`distance` (the first model; `fit_distance` + `simulate_learned`): a LightGBM regressor predicts the
log distance (in lookups) to the block's next use, capped at H (same rows as `hit_probability`); eviction is a learned relaxed
Belady (as in LRB): on a miss, `samples` random cached blocks are compared and the one with the farthest
expected next use goes (an overdue block, not reused by its predicted time, counts with `overdue_factor` x
its idle time); a missed block predicted farther than that victim is not admitted.

Our simulators rather than libCacheSim's Python plugin hooks: they are faster (`plugin_lru_hits` vs
`simulate_lru`, measured in the tests) and can decline admission; `simulate_learned` with zero predictions
and a full scan is exactly LRU, and then it and `simulate_lru` equal libCacheSim's LRU hit for hit (tested).
"""

from __future__ import annotations

import array
import functools
import heapq
import json
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from caching.guard import (
    GuardParams,
    OnlineParams,
    OnlinePrediction,
    guard_cache,
    guard_leaders,
    online_predictions,
)
from core.config import AtLeastTwo, Count, Fraction, NonNegative, NonNegativeInt, Positive, Share

BLOCK_TOKENS = 512  # Mooncake: one hash per 512-token prompt block (data/README.md)
NEVER = 2**62  # next_access_vtime of a lookup whose block never comes back


@dataclass(frozen=True)
class LearnedParams:
    """Mirrors params.yaml -> cache_sim.learned."""

    objective: str = "survival"  # LEARNED_OBJECTIVES: survival, hit_probability (one horizon), distance (regressor)
    horizon_fraction: Fraction = 0.25  # horizon = this share of the training lookups (label: reused within it)
    num_leaves: AtLeastTwo = 7  # small trees, many rows per leaf: a request's blocks share features and labels,
    learning_rate: Positive = 0.1  # so deep trees memorise requests (31 leaves / 50 rows: train AUC 0.99, test 0.68)
    num_boost_round: Count = 150
    min_data_in_leaf: Count = 500
    samples: Count = 8  # cached blocks compared per eviction (16: hit ratios within 0.002, half the speed)
    window_factor: Positive = (
        4.0  # hit_probability: eviction scores count reuses within window_factor x capacity lookups
    )
    overdue_factor: NonNegative = 1.0  # distance only: an overdue block counts with this x its idle time
    admit_bypass: bool = True
    seed: NonNegativeInt = 0
    horizons_per_row: Count = 4  # survival: horizons drawn per training lookup
    features: str = "all"  # FEATURE_SETS: "all" (every lookup feature) or "transfer" (scale-free reuse structure)


@dataclass(frozen=True)
class CacheSimParams:
    """Mirrors params.yaml -> cache_sim."""

    capacities: tuple[Count, ...] = (250, 500, 1000, 2000, 4000, 8000, 16000)
    eval_from: Share = 0.5
    policies: tuple[str, ...] = ("lru", "lfu", "fifo", "s3fifo", "arc", "learned", "online", "guarded", "belady")
    block_tokens: Count = BLOCK_TOKENS
    out: Path = Path("data/cache_sim")
    learned: LearnedParams = field(default_factory=LearnedParams)
    guard: GuardParams = field(default_factory=GuardParams)
    online: OnlineParams = field(default_factory=OnlineParams)


# --- the block-level trace ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BlockTrace:
    """One entry per block lookup, in replay order."""

    block: np.ndarray  # int64 block hash
    request: np.ndarray  # request number (time order)
    pos: np.ndarray  # position of the block in its request's list
    n_blocks: np.ndarray  # length of the request's list
    tokens: np.ndarray  # prompt tokens in the block (the last block is partial)
    t_ms: np.ndarray  # request timestamp, epoch ms
    counted: np.ndarray  # bool: in the evaluation window
    next_use: np.ndarray  # index of the block's next lookup, -1 if none

    def __len__(self) -> int:
        return len(self.block)

    @property
    def eval_start(self) -> int:
        """First counted lookup (timestamps never decrease, so the counted lookups are a suffix)."""
        idx = np.flatnonzero(self.counted)
        return int(idx[0]) if len(idx) else len(self)


def next_use(block: np.ndarray) -> np.ndarray:
    """For each position, the index of the next equal value (-1 if none); vectorised."""
    n = len(block)
    out = np.full(n, -1, dtype=np.int64)
    order = np.lexsort((np.arange(n), block))
    same = block[order][1:] == block[order][:-1]
    out[order[:-1][same]] = order[1:][same]
    return out


def prev_use(block: np.ndarray) -> np.ndarray:
    """For each position, the index of the previous equal value (-1 if none)."""
    n = len(block)
    out = np.full(n, -1, dtype=np.int64)
    order = np.lexsort((np.arange(n), block))
    same = block[order][1:] == block[order][:-1]
    out[order[1:][same]] = order[:-1][same]
    return out


def select_rows(traces: pd.DataFrame) -> pd.DataFrame:
    """Rows with non-null `prefix_blocks`, stably sorted by timestamp (same order as `models/cache.py`)."""
    from models.cache import select_rows as cache_rows

    return cache_rows(traces).reset_index(drop=True)


def block_trace(frame: pd.DataFrame, eval_from: float = 0.5, block_tokens: int = BLOCK_TOKENS) -> BlockTrace:
    """Explode `select_rows(traces)`-ordered rows into block lookups; mark the evaluation window by time."""
    if not 0.0 <= eval_from < 1.0:
        raise ValueError(f"eval_from must be in [0, 1), got {eval_from}")
    t = pd.DatetimeIndex(pd.to_datetime(frame["timestamp"], utc=True)).as_unit("ms").asi8.astype(np.int64)
    lists = pa.array(frame["prefix_blocks"], type=pa.list_(pa.int64()))
    n_blocks = pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    block = pc.list_flatten(lists).to_numpy(zero_copy_only=False).astype(np.int64)
    request = np.repeat(np.arange(len(frame)), n_blocks)
    starts = np.concatenate([[0], np.cumsum(n_blocks)[:-1]]).astype(np.int64)
    pos = np.arange(len(block)) - np.repeat(starts, n_blocks)
    input_tokens = pd.to_numeric(frame["input_tokens"]).to_numpy(dtype=np.int64)[request]
    tokens = np.clip(input_tokens - block_tokens * pos, 0, block_tokens)
    t_req = t[request]
    cut = t.min() + eval_from * (t.max() - t.min()) if len(t) else 0
    return BlockTrace(block, request, pos, n_blocks[request], tokens, t_req, t_req >= cut, next_use(block))


# --- simulators ---------------------------------------------------------------------------------------


MIN_CAPACITY = {"s3fifo": 10}  # its small FIFO is 10 % of the cache and must hold one object


def _libcachesim_cache(policy: str, capacity: int):
    import libcachesim as lcs

    classes = {
        "lru": lcs.LRU,
        "lfu": lcs.LFU,
        "fifo": lcs.FIFO,
        "s3fifo": lcs.S3FIFO,
        "arc": lcs.ARC,
        "belady": lcs.Belady,
    }
    return classes[policy](capacity)


def libcachesim_hits(block: np.ndarray, policy: str, capacity: int, next_index: np.ndarray | None = None) -> np.ndarray:
    """Hit (True) per lookup under libCacheSim's `policy` with `capacity` unit-size objects."""
    import libcachesim as lcs

    if capacity < MIN_CAPACITY.get(policy, 1):  # below it libCacheSim aborts the process
        raise ValueError(f"policy {policy} needs a capacity of at least {MIN_CAPACITY[policy]} blocks, got {capacity}")

    cache = _libcachesim_cache(policy, capacity)
    nxt = (next_use(block) if next_index is None else next_index).tolist()
    req = lcs.Request()
    req.obj_size = 1
    get = cache.get
    hits = np.zeros(len(block), dtype=bool)
    for i, (b, x) in enumerate(zip(block.tolist(), nxt)):
        req.obj_id = b
        req.clock_time = i
        req.next_access_vtime = x if x >= 0 else NEVER
        if get(req):
            hits[i] = True
    return hits


def simulate_belady(
    block: np.ndarray, capacity: int, next_index: np.ndarray | None = None, admit_bypass: bool = True
) -> np.ndarray:
    """Offline optimum (Belady's MIN): evict the cached block whose next use is farthest (max-heap on
    next-use indices from `next_use`). With `admit_bypass` a missed block used again later than every
    cached block (or never) is not admitted: the optimum for a cache that may decline admission, and so
    an upper bound for every policy here, `learned` included. Without it, it is the demand-paging optimum
    (libCacheSim's Belady; equal hit counts, tested)."""
    nxt = next_use(block) if next_index is None else next_index
    far = np.where(nxt >= 0, nxt, NEVER + np.arange(len(block)))  # distinct "never" keys: ties broken by index
    cache: dict[int, int] = {}  # block -> its next use
    heap: list[tuple[int, int]] = []  # (-next use, block), stale entries skipped
    hits = np.zeros(len(block), dtype=bool)
    push, pop = heapq.heappush, heapq.heappop
    for i, (b, x) in enumerate(zip(block.tolist(), far.tolist())):
        if b in cache:
            hits[i] = True
        elif len(cache) >= capacity:
            while cache.get(heap[0][1]) != -heap[0][0]:
                pop(heap)
            if admit_bypass and x > -heap[0][0]:
                continue
            del cache[pop(heap)[1]]
        cache[b] = x
        push(heap, (-x, b))
    return hits


def plugin_lru_hits(block: np.ndarray, capacity: int) -> np.ndarray:
    """LRU through libCacheSim's Python plugin hooks (the alternative to our own simulator; for timing)."""
    import libcachesim as lcs

    def evict(data: OrderedDict, _req) -> int:
        return data.popitem(last=False)[0]

    cache = lcs.PluginCache(
        capacity,
        cache_free_hook=lambda d: d.clear(),
        cache_init_hook=lambda _p: OrderedDict(),
        cache_hit_hook=lambda d, r: d.move_to_end(r.obj_id),
        cache_miss_hook=lambda d, r: d.__setitem__(r.obj_id, None),
        cache_eviction_hook=evict,
        cache_remove_hook=lambda d, obj_id: d.pop(obj_id, None),
        cache_name="plugin_lru",
    )
    req = lcs.Request()
    req.obj_size = 1
    hits = np.zeros(len(block), dtype=bool)
    for i, b in enumerate(block.tolist()):
        req.obj_id = b
        req.clock_time = i
        if cache.get(req):
            hits[i] = True
    return hits


def _leave_times(until: np.ndarray | None, n: int) -> list[int]:
    """The simulators' record of when each lookup's block left the cache (filled into `until` at the end)."""
    return [n] * n if until is not None else _NO_RECORD


class _NoRecord(list):
    """A sink for eviction times nobody asked for: item assignment does nothing."""

    def __setitem__(self, _k, _v) -> None:
        pass


_NO_RECORD = _NoRecord()


def _fill(until: np.ndarray | None, left: list[int]) -> None:
    if until is not None:
        until[:] = left


def simulate_lru(block: np.ndarray, capacity: int, until: np.ndarray | None = None) -> np.ndarray:
    """Our own LRU (an ordered dict of block -> its last lookup), the reference that the learned simulators'
    machinery is checked against. `until` (the guard's shadows): filled with the lookup during which each
    lookup's block left the cache (`n`: it was still cached at its next lookup or the end)."""
    cache: OrderedDict[int, int] = OrderedDict()
    hits = np.zeros(len(block), dtype=bool)
    left = _leave_times(until, len(block))
    move, pop = cache.move_to_end, cache.popitem
    for i, b in enumerate(block.tolist()):
        if b in cache:
            hits[i] = True
            move(b)
        elif len(cache) >= capacity:
            left[pop(last=False)[1]] = i
        cache[b] = i
    _fill(until, left)
    return hits


def simulate_s3fifo(block: np.ndarray, capacity: int, until: np.ndarray | None = None) -> np.ndarray:
    """Our S3-FIFO, libCacheSim's rules (S3FIFO.c: small FIFO 10 %, main FIFO with a 2-bit clock, ghost FIFO
    90 %, move to main at 2 hits, insert into main while the small FIFO is full before the first eviction,
    no insert at all when the small FIFO holds < 2 objects), equal to it hit for hit (tested), ~4x faster.
    `until`: as in `simulate_lru`."""
    small_size = int(capacity * 0.10)
    main_size = capacity - small_size
    ghost_size = int(capacity * 0.90)
    small, main, ghost = OrderedDict(), OrderedDict(), OrderedDict()  # small, main: block -> its last lookup
    freq = {}
    has_evicted = False
    hits = np.zeros(len(block), dtype=bool)
    left = _leave_times(until, len(block))
    gpop, spop, mpop = ghost.pop, small.popitem, main.popitem
    mmove = main.move_to_end
    for i, b in enumerate(block.tolist()):
        if b in small or b in main:
            (small if b in small else main)[b] = i
            freq[b] += 1
            hits[i] = True
            continue
        on_ghost = gpop(b, 0) is None
        while len(small) + len(main) >= capacity:
            has_evicted = True
            if len(main) > main_size or not small:
                while main:
                    o = next(iter(main))
                    f = freq[o]
                    if f >= 1:
                        mmove(o)
                        freq[o] = min(f, 3) - 1
                    else:
                        left[mpop(last=False)[1]] = i
                        del freq[o]
                        break
            else:
                while small:
                    o, j = spop(last=False)
                    if freq[o] >= 2:
                        main[o] = j
                        freq[o] = 0
                    else:
                        left[j] = i
                        if ghost_size > 0 and o not in ghost:
                            if len(ghost) >= ghost_size:
                                ghost.popitem(last=False)
                            ghost[o] = None
                        del freq[o]
                        break
        if on_ghost:
            main[b] = i
        elif small_size <= 1:
            left[i] = i
            continue
        elif not has_evicted and len(small) >= small_size:
            main[b] = i
        else:
            small[b] = i
        freq[b] = 0
    _fill(until, left)
    return hits


def simulate_arc(block: np.ndarray, capacity: int, until: np.ndarray | None = None) -> np.ndarray:
    """Our ARC, libCacheSim's rules (ARC.c: real-valued p, a ghost hit adapts p and replaces on insert, REPLACE
    takes from T1 when T2 is empty), equal to it hit for hit (tested), ~2x faster. `until`: as in
    `simulate_lru`."""
    T1, T2, B1, B2 = OrderedDict(), OrderedDict(), OrderedDict(), OrderedDict()  # T1, T2: block -> last lookup
    p = 0.0
    C = capacity
    hits = np.zeros(len(block), dtype=bool)
    left = _leave_times(until, len(block))

    def replace(in_b2, i):
        n1 = len(T1)
        if (n1 > 0 and (n1 > p or (n1 == p and in_b2))) or not T2:
            x, j = T1.popitem(last=False)
            B1[x] = None
        else:
            x, j = T2.popitem(last=False)
            B2[x] = None
        left[j] = i

    for i, b in enumerate(block.tolist()):
        if b in T2:
            T2.move_to_end(b)
            T2[b] = i
            hits[i] = True
            continue
        if b in T1:
            del T1[b]
            T2[b] = i
            hits[i] = True
            continue
        ghost = False
        in_b2 = False
        if b in B1:
            p = min(p + max(len(B2) / len(B1), 1.0), C)
            del B1[b]
            ghost = True
        elif b in B2:
            p = max(p - max(len(B1) / len(B2), 1.0), 0.0)
            del B2[b]
            ghost = in_b2 = True
        while len(T1) + len(T2) + 1 > C:
            if ghost:
                replace(in_b2, i)
            elif len(T1) + len(B1) + 1 > C:
                if B1:
                    B1.popitem(last=False)
                    replace(False, i)
                else:
                    left[T1.popitem(last=False)[1]] = i
            else:
                if len(T1) + len(B1) + len(T2) + len(B2) >= 2 * C and B2:
                    B2.popitem(last=False)
                replace(False, i)
        if ghost:
            T2[b] = i
        else:
            T1[b] = i
    _fill(until, left)
    return hits


def simulate_learned(
    block: np.ndarray,
    predicted: np.ndarray,
    capacity: int,
    samples: int | None = 8,
    overdue_factor: float = 1.0,
    admit_bypass: bool = True,
    seed: int = 0,
) -> np.ndarray:
    """Learned relaxed Belady: `predicted[i]` = predicted lookups from lookup i to its block's next use.

    On a miss with a full cache, `samples` cached blocks are drawn at random (None: all of them) and the
    one with the farthest expected next use is evicted: its predicted next use minus now, or, when that
    moment has passed without a reuse (overdue), `overdue_factor` x its idle time. With `admit_bypass`,
    a missed block whose own predicted distance is farther than the victim's is not admitted instead.
    With `predicted` all 0 and `samples=None`, this is exactly LRU (the idle time decides).
    """
    uniform = random.Random(seed).random
    keys: list[int] = []  # cached blocks, for O(1) random sampling (swap-remove)
    where: dict[int, int] = {}  # block -> index in keys
    due: dict[int, float] = {}  # block -> predicted next-use lookup index
    last: dict[int, int] = {}  # block -> index of its last lookup
    hits = np.zeros(len(block), dtype=bool)
    for i, (b, d) in enumerate(zip(block.tolist(), predicted.tolist())):
        if b in where:
            hits[i] = True
        else:
            if len(keys) >= capacity:
                n = len(keys)
                candidates = (
                    keys if samples is None or samples >= n else [keys[int(uniform() * n)] for _ in range(samples)]
                )
                best, victim = -1.0, keys[0]
                for k in candidates:
                    r = due[k] - i
                    if r <= 0:
                        r = (i - last[k]) * overdue_factor
                    if r > best:
                        best, victim = r, k
                if admit_bypass and d > best:
                    continue
                j = where.pop(victim)
                tail = keys.pop()
                if tail != victim:
                    keys[j] = tail
                    where[tail] = j
                del due[victim], last[victim]
            where[b] = len(keys)
            keys.append(b)
        due[b] = i + d
        last[b] = i
    return hits


AGE_BUCKETS = 128  # half octaves of int64 lookup counts (`age_bucket`)


def age_bucket(age: int) -> int:
    """Half-octave bucket of an age in lookups: 0 -> 0, 1 -> 1, then 2 bit_length + (second-highest bit)."""
    bits = age.bit_length()
    return 2 * bits + ((age >> (bits - 2)) & 1) if bits > 1 else bits


def bucket_ages(nb: int = AGE_BUCKETS) -> np.ndarray:
    """The youngest age of each age bucket (2^(b-1) or 1.5 x 2^(b-1) for bit length b; 0 and 1 themselves;
    the unused bucket numbers 2 and 3 get age 1): rounding down never calls a block reused-or-gone sooner."""
    ages = np.ones(max(nb, AGE_BUCKETS))
    ages[0] = 0.0
    bits = np.arange(2, len(ages) // 2)
    ages[2 * bits] = 2.0 ** (bits - 1)
    ages[2 * bits + 1] = 1.5 * 2.0 ** (bits - 1)
    return ages[:nb]


def n_buckets(n: int) -> int:
    """Age buckets that ages below `n` lookups use."""
    return age_bucket(max(int(n), 1)) + 1


def age_curve(reuse_distances: np.ndarray, horizon: int, window: float) -> tuple[list[float], list[float]]:
    """The reuse-distance curve at the age buckets of `simulate_hit_probability`.

    G(x) = share of `reuse_distances` (training lookups reused within `horizon`) that are <= min(x, horizon),
    at each bucket's youngest age a (`bucket_ages`). Returns (seen, ahead) per bucket: seen = G(a),
    ahead = G(a + window) - G(a).
    """
    d = np.sort(np.asarray(reuse_distances, dtype=float))
    ages = bucket_ages()
    seen = reuse_cdf(d, horizon, ages)
    return seen.tolist(), (reuse_cdf(d, horizon, ages + window) - seen).tolist()


def reuse_cdf(distances: np.ndarray, horizon: int, x: np.ndarray) -> np.ndarray:
    """G(x): share of the sorted reuse `distances` that are <= min(x, horizon) (flat beyond the horizon)."""
    return np.searchsorted(distances, np.minimum(x, horizon), side="right") / max(len(distances), 1)


Curve = tuple[Sequence[float], Sequence[float]]  # (seen, ahead) per age bucket, from `age_curve`


def hit_probability_table(reuse: np.ndarray, curves: Sequence[Curve], group: np.ndarray, nb: int) -> np.ndarray:
    """Eviction scores (`simulate_scored`) of the hit-probability model: lookup l's block at age bucket j scores
    p ahead[j] / (1 - p seen[j]) with p = `reuse[l]` and (seen, ahead) = `curves[group[l]]`; 0 where
    1 - p seen[j] <= 1e-12."""
    seen = np.array([list(c[0])[:nb] for c in curves])[group]
    ahead = np.array([list(c[1])[:nb] for c in curves])[group]
    q = np.asarray(reuse, dtype=float)[:, None]
    den = 1.0 - q * seen
    ok = den > 1e-12
    return np.where(ok, q * ahead / np.where(ok, den, 1.0), 0.0)


def simulate_hit_probability(
    block: np.ndarray,
    reuse: np.ndarray,
    capacity: int,
    curves: Sequence[Curve],
    group: np.ndarray | None = None,
    samples: int | None = 8,
    admit_bypass: bool = True,
    seed: int = 0,
    until: np.ndarray | None = None,
) -> np.ndarray:
    """Learned eviction by conditional hit probability: `reuse[i]` = predicted P(lookup i's block is used
    again within the horizon); `curves[group[i]]` = the reuse-distance curve of lookup i's group (`age_curve`;
    `group` None: all 0). The scores are `hit_probability_table`'s, evicted by `simulate_scored`: a cached
    block last looked up at l, at age a = i - l, scores P(reused within the window | not reused in its first
    a lookups) = p ahead[j] / (1 - p seen[j])."""
    groups = np.zeros(len(block), dtype=np.int64) if group is None else np.asarray(group)
    nb = n_buckets(len(block))
    table = hit_probability_table(reuse, curves, groups, nb)
    return simulate_scored(block, table, capacity, samples, admit_bypass, seed, until)


@functools.cache
def _buckets_below(limit: int) -> list[int]:
    """`age_bucket` of every age below `limit` (a power of two), for the simulator's inner loop: a list index
    beats the bit operations."""
    return [age_bucket(a) for a in range(limit)]


def simulate_scored(
    block: np.ndarray,
    table: np.ndarray,
    capacity: int,
    samples: int | None = 8,
    admit_bypass: bool = True,
    seed: int = 0,
    until: np.ndarray | None = None,
) -> np.ndarray:
    """Learned eviction by a score table: `table[l, j]` = the worth of keeping lookup l's block at age bucket
    j (`age_bucket(i - l)`, i the lookup now; the score of every learned objective is a chance of reuse
    within a window, given no reuse so far; held as float32, which halves the memory the loop reads and
    is ~15 % faster). On a miss with a full cache, `samples` cache slots are drawn
    at random (None: all of them) and the lowest score goes (the first drawn wins ties); with
    `admit_bypass`, a missed block whose own score (`table[i, 0]`) is lower than that victim's is not
    admitted instead. Slots and random draws are those of a list with swap-remove eviction and
    `random.Random(seed)`, so the decisions equal the straightforward implementation's (tested). `until`: as
    in `simulate_lru` (a block not admitted leaves at its own lookup)."""
    nb = table.shape[1]
    score = array.array("f")
    score.frombytes(np.ascontiguousarray(table, dtype=np.float32).tobytes())
    bucket = _buckets_below(1 << max(len(block), 1).bit_length())  # every age here is below len(block)
    rng = np.random.RandomState([seed])  # the same stream as random.Random(seed)
    keys: list[int] = []  # the cached blocks, one per slot
    lastpos: list[int] = []  # per slot: the block's last lookup
    where: dict[int, int] = {}  # cached block -> its slot
    get = where.get
    hit = bytearray(len(block))
    full_scan = samples is None or samples >= capacity
    draws: list[int] = list(range(capacity)) if full_scan else []
    step = capacity if full_scan else int(samples)
    p = 0
    left = _leave_times(until, len(block))
    for i, b in enumerate(block.tolist()):
        j = get(b)
        if j is not None:
            hit[i] = 1
            lastpos[j] = i
            continue
        if len(keys) < capacity:
            where[b] = len(keys)
            keys.append(b)
            lastpos.append(i)
            continue
        if full_scan:
            p = 0
        elif p >= len(draws):  # Python's random stream (random.Random(seed).random() x capacity), drawn in bulk
            draws, p = (rng.random_sample(65536 * step) * capacity).astype(np.int64).tolist(), 0
        best, slot = float("inf"), 0
        for j in draws[p : p + step]:
            lk = lastpos[j]
            s = score[lk * nb + bucket[i - lk]]
            if s < best:
                best, slot = s, j
        p += step
        if admit_bypass and score[i * nb] < best:
            left[i] = i
            continue
        left[lastpos[slot]] = i
        del where[keys[slot]]
        last = capacity - 1  # swap-remove the victim, append the new block: slot order as a list would keep it
        if slot != last:
            tail = keys[last]
            keys[slot], lastpos[slot], where[tail] = tail, lastpos[last], slot
        keys[last], lastpos[last], where[b] = b, i, last
    _fill(until, left)
    return np.frombuffer(bytes(hit), dtype=bool).copy()


def horizon_grid(n: int) -> np.ndarray:
    """Horizons (lookups) at which survival curves are evaluated: 1, 2, 4, ... up to 2 x `n`."""
    return 2.0 ** np.arange(0, int(np.ceil(np.log2(max(n, 2)))) + 2)


def survival_table(F: np.ndarray, window: float) -> np.ndarray:
    """Eviction scores (`simulate_scored`) from survival curves: `F[l, k]` = P(lookup l's block is looked up
    again within `horizon_grid` 2^k lookups), read between grid points linearly in log2 of the horizon
    (F(0) = 0, flat past the grid). At each bucket's youngest age a (`bucket_ages`): P(reused within the
    next `window` lookups | not reused in the first a) = (F(a + window) - F(a)) / (1 - F(a)); 0 where
    1 - F(a) <= 1e-12."""
    n, g = F.shape
    ages = bucket_ages(n_buckets(n))

    def at(x: np.ndarray) -> np.ndarray:
        pos = np.clip(np.log2(np.maximum(x, 1.0)), 0.0, g - 1.0)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, g - 1)
        w = pos - lo
        out = F[:, lo] * (1.0 - w) + F[:, hi] * w
        return np.where(x >= 1.0, out, 0.0)

    seen, later = at(ages), at(ages + window)
    den = 1.0 - seen
    ok = den > 1e-12
    return np.where(ok, np.maximum(later - seen, 0.0) / np.where(ok, den, 1.0), 0.0)


# --- the learned policy's predictor -------------------------------------------------------------------

BLOCK_FEATURES: tuple[str, ...] = (
    "pos",
    "n_blocks",
    "is_last",
    "rel_pos",
    "block_tokens",
    "prior_lookups",
    "gap_lookups",
    "gap_s",
    "gap_rel",
    "parent_prior_lookups",
    "parent_gap_rel",
    "new_from",
)
# Scale-free reuse structure only (no seconds, no absolute load or trace-length counts of the request):
# what a model trained on one trace may carry to another.
TRANSFER_FEATURES: tuple[str, ...] = (
    "pos",
    "n_blocks",
    "is_last",
    "rel_pos",
    "prior_lookups",
    "gap_rel",
    "parent_prior_lookups",
    "parent_gap_rel",
    "new_from",
    "req_frac_blocks_seen",
    "req_n_blocks_new",
    "req_conv_turn",
)


def feature_columns(columns: Sequence[str], features: str) -> list[str]:
    """The columns of `lookup_features` a model uses: all of them, or `TRANSFER_FEATURES`."""
    if features == "all":
        return list(columns)
    if features == "transfer":
        return list(TRANSFER_FEATURES)
    raise ValueError(f"unknown feature set {features!r}; known: all, transfer")


def lookup_features(frame: pd.DataFrame, trace: BlockTrace) -> pd.DataFrame:
    """Per lookup, from earlier lookups only: the block's features plus its request's `cache_features`.

    Reuse structure (scale-free): `gap_rel` = the gap in lookups since the block's last lookup over the mean
    of all such gaps before this lookup; `parent_*` = the same for the block before it in its request
    (its prefix parent; NaN at position 0); `new_from` = position minus the request's first never-seen
    position (< 0: inside the reused prefix; >= 0: where the prefix was extended; NaN if all were seen)."""
    from models.cache import FEATURES, cache_features

    prev = prev_use(trace.block)
    n = len(trace)
    order = np.lexsort((np.arange(n), trace.block))
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = trace.block[order][1:] != trace.block[order][:-1]
    start = np.maximum.accumulate(np.where(new_group, np.arange(n), 0))
    prior = np.empty(n)
    prior[order] = np.arange(n) - start
    seen = prev >= 0
    gap = np.where(seen, np.arange(n) - prev, np.nan)
    gsum = np.concatenate([[0.0], np.cumsum(np.where(seen, gap, 0.0))[:-1]])  # gaps before this lookup
    gcnt = np.concatenate([[0.0], np.cumsum(seen)[:-1]])
    gap_rel = gap / np.where(gcnt > 0, gsum / np.maximum(gcnt, 1), np.nan)
    has_parent = trace.pos > 0
    parent = np.maximum(np.arange(n) - 1, 0)
    unseen = np.where(~seen, trace.pos, np.iinfo(np.int64).max)
    first_new = np.full(int(trace.request.max()) + 1 if n else 0, np.iinfo(np.int64).max)
    np.minimum.at(first_new, trace.request, unseen)
    first_new = first_new[trace.request]
    blocks = pd.DataFrame(
        {
            "pos": trace.pos.astype(float),
            "n_blocks": trace.n_blocks.astype(float),
            "is_last": (trace.pos == trace.n_blocks - 1).astype(float),
            "rel_pos": trace.pos / np.maximum(trace.n_blocks, 1),
            "block_tokens": trace.tokens.astype(float),
            "prior_lookups": prior,
            "gap_lookups": gap,
            "gap_s": np.where(seen, (trace.t_ms - trace.t_ms[np.maximum(prev, 0)]) / 1e3, np.nan),
            "gap_rel": gap_rel,
            "parent_prior_lookups": np.where(has_parent, prior[parent], np.nan),
            "parent_gap_rel": np.where(has_parent, gap_rel[parent], np.nan),
            "new_from": np.where(first_new < np.iinfo(np.int64).max, trace.pos - first_new, np.nan),
        }
    )
    per_request = cache_features(frame).reset_index(drop=True).to_numpy()[trace.request]
    return pd.concat([blocks, pd.DataFrame(per_request, columns=[f"req_{c}" for c in FEATURES])], axis=1)


HORIZON_FEATURE = "log2_horizon"  # the survival model's extra input: log2 of the horizon asked about


@dataclass(frozen=True)
class LearnedModel:
    booster: object
    objective: str
    horizon: int
    train_lookups: int
    reuse_distances: tuple[np.ndarray, ...]  # hit_probability, per `curve_group`: distances of the positives
    features: tuple[str, ...] = ()  # the columns of `lookup_features` it reads (empty: all)
    source: str = ""  # what it was fitted on, when that is not the trace it scores (a prior file, another trace)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """hit_probability: P(reused within the horizon); survival: the same from its curve; distance:
        lookups to the next use (>= 1)."""
        if self.objective == "survival":
            return self.curve(X, np.array([float(self.horizon)]))[:, 0]
        raw = self.booster.predict(X[list(self.features)] if self.features else X)
        return raw if self.objective == "hit_probability" else np.maximum(np.expm1(raw), 1.0)

    def curve(self, X: pd.DataFrame, grid: np.ndarray) -> np.ndarray:
        """P(the lookup's block is looked up again within h lookups) at each h of `grid`: n x len(grid).
        survival: read from the booster at log2(h); hit_probability: p x its `curve_group`'s reuse-distance
        curve; distance has none."""
        if self.objective == "survival":
            return survival_curve(self.booster, X[list(self.features)].to_numpy(dtype=float), grid)
        if self.objective != "hit_probability":
            raise ValueError(f"the {self.objective} objective has no survival curve; use survival or hit_probability")
        cdf = np.stack([reuse_cdf(d, self.horizon, grid) for d in self.reuse_distances])
        return self.predict(X)[:, None] * cdf[(X["pos"].to_numpy() == 0).astype(np.int64)]


def survival_curve(booster, A: np.ndarray, grid: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """The survival booster's P(reused within h) for every row of `A` at every h of `grid` (chunked: the
    rows are repeated once per horizon), made non-decreasing in h."""
    g = len(grid)
    out = np.empty((len(A), g))
    log_h = np.log2(grid)
    for lo in range(0, len(A), chunk):
        part = A[lo : lo + chunk]
        rows = np.column_stack([np.repeat(part, g, axis=0), np.tile(log_h, len(part))])
        out[lo : lo + len(part)] = booster.predict(rows).reshape(len(part), g)
    return np.maximum.accumulate(out, axis=1)


def _booster_params(params: LearnedParams, objective: str) -> dict[str, object]:
    return {
        "objective": objective,
        "num_leaves": params.num_leaves,
        "learning_rate": params.learning_rate,
        "min_data_in_leaf": params.min_data_in_leaf,
        "seed": params.seed,
        "num_threads": 1,
    }


def _training_window(trace: BlockTrace, params: LearnedParams) -> tuple[int, int, np.ndarray, np.ndarray]:
    """(n_train, horizon, next-use distance seen before the cut (-1: none), kept rows): only lookups before
    the evaluation cut, and only those whose whole horizon lies before it (all of them if fewer than 100)."""
    n_train = trace.eval_start
    horizon = max(int(params.horizon_fraction * n_train), 1)
    idx = np.arange(n_train)
    nxt = trace.next_use[:n_train]
    dist = np.where((nxt >= 0) & (nxt < n_train), nxt - idx, -1)
    keep = idx + horizon <= n_train
    if keep.sum() < 100:
        keep = np.ones(n_train, dtype=bool)
    return n_train, horizon, dist, keep


def fit_distance(X: pd.DataFrame, trace: BlockTrace, params: LearnedParams) -> LearnedModel:
    """Regress log1p(distance to next use), capped at the horizon (a next use not seen before the cut, or
    beyond the horizon, gets the cap), on the kept lookups before the evaluation cut (`_training_window`)."""
    from models.common import train_booster

    n_train, horizon, dist, keep = _training_window(trace, params)
    cols = feature_columns(X.columns, params.features)
    y = np.log1p(np.where(dist >= 0, np.minimum(dist, horizon), horizon)[keep].astype(float))
    booster = train_booster(
        X[cols].iloc[:n_train][keep], y, _booster_params(params, "regression"), params.num_boost_round
    )
    return LearnedModel(booster, "distance", horizon, int(keep.sum()), (), tuple(cols))


CURVE_GROUPS = 2


def curve_group(trace: BlockTrace) -> np.ndarray:
    """Reuse-distance curve of each lookup: 1 for a prompt's first block (on Mooncake the system prompt
    shared by every request, reused within ~30 lookups, 11 % of the reuses), 0 for every other block."""
    return (trace.pos == 0).astype(np.int64)


def fit_hit_probability(X: pd.DataFrame, trace: BlockTrace, params: LearnedParams) -> LearnedModel:
    """Classify "the block is looked up again within the horizon, before the cut" on the kept lookups
    before the evaluation cut (`_training_window`); keep the reuse distances of the positives, per
    `curve_group`, for the reuse-distance curves (`age_curve`)."""
    from models.common import train_booster

    n_train, horizon, dist, keep = _training_window(trace, params)
    reused = (dist >= 0) & (dist <= horizon)
    cols = feature_columns(X.columns, params.features)
    booster = train_booster(
        X[cols].iloc[:n_train][keep],
        reused[keep].astype(float),
        _booster_params(params, "binary"),
        params.num_boost_round,
    )
    group = curve_group(trace)[:n_train]
    distances = tuple(np.sort(dist[keep & reused & (group == g)]) for g in range(CURVE_GROUPS))
    return LearnedModel(booster, "hit_probability", horizon, int(keep.sum()), distances, tuple(cols))


def survival_rows(next_use: np.ndarray, lo: int, hi: int, per_row: int, seed: int) -> tuple[np.ndarray, ...]:
    """Training rows of the survival model from lookups lo .. hi - 2, every label known before lookup `hi`:
    `per_row` horizons per lookup i, drawn log-uniformly in [1, hi - 1 - i]; label = the block is looked up
    again within h lookups. Returns (lookup index, horizon, label) per row."""
    idx = np.repeat(np.arange(lo, max(hi - 1, lo)), per_row)
    h_max = (hi - 1 - idx).astype(float)
    h = np.clip(np.floor((h_max + 1.0) ** np.random.default_rng(seed).random(len(idx))), 1.0, h_max)
    nxt = next_use[idx]
    return idx, h, (nxt >= 0) & (nxt - idx <= h)


def fit_survival_window(
    X: pd.DataFrame, next_use: np.ndarray, lo: int, hi: int, cols: Sequence[str], params: LearnedParams, rounds: int
) -> object | None:
    """A LightGBM classifier of "looked up again within h lookups" on `survival_rows(lo, hi)`, with log2(h)
    as an extra feature constrained monotone increasing (a longer horizon never lowers the chance); None
    when the rows are too few or all of one class."""
    from models.common import train_booster

    idx, h, y = survival_rows(next_use, lo, hi, params.horizons_per_row, params.seed + hi)
    if len(idx) < 2 * params.min_data_in_leaf or y.all() or not y.any():
        return None
    rows = pd.DataFrame(X[list(cols)].to_numpy(dtype=float)[idx], columns=list(cols))
    rows[HORIZON_FEATURE] = np.log2(h)
    booster_params = _booster_params(params, "binary") | {"monotone_constraints": [0] * len(cols) + [1]}
    return train_booster(rows, y.astype(float), booster_params, rounds)


def fit_survival(X: pd.DataFrame, trace: BlockTrace, params: LearnedParams) -> LearnedModel:
    """The survival model (`fit_survival_window`) on the lookups before the evaluation cut: one model of
    P(reused within h) for every horizon h, so eviction can ask about any window at any age."""
    n_train = trace.eval_start
    cols = feature_columns(X.columns, params.features)
    booster = fit_survival_window(X, trace.next_use, 0, n_train, cols, params, params.num_boost_round)
    if booster is None:
        raise ValueError(f"too few lookups before the cut ({n_train:,}) to fit the survival model")
    return LearnedModel(booster, "survival", n_train, n_train, (), tuple(cols))


LEARNED_OBJECTIVES: dict[str, Callable[[pd.DataFrame, BlockTrace, LearnedParams], LearnedModel]] = {
    "survival": fit_survival,
    "hit_probability": fit_hit_probability,
    "distance": fit_distance,
}


def fit_learned(X: pd.DataFrame, trace: BlockTrace, params: LearnedParams) -> LearnedModel:
    """The learned policy's predictor for `params.objective` (`LEARNED_OBJECTIVES`); lookups before the cut only."""
    if params.objective not in LEARNED_OBJECTIVES:
        raise ValueError(f"unknown learned objective {params.objective!r}; known: {', '.join(LEARNED_OBJECTIVES)}")
    return LEARNED_OBJECTIVES[params.objective](X, trace, params)


# --- the experiment -----------------------------------------------------------------------------------

LIBCACHESIM_POLICIES = ("lru", "lfu", "fifo", "s3fifo", "arc", "belady")  # libCacheSim's "belady": demand paging
POLICIES: tuple[str, ...] = (
    "lru",
    "lfu",
    "fifo",
    "s3fifo",
    "arc",
    "learned",
    "online",
    "guarded",
    "belady",
)  # "belady": ours, with bypass; "guarded", "online": `caching.guard`
SHIPPED_POLICY = "guarded"  # the policy the project ships: never measurably below the best classic one
CLASSIC_POLICIES = ("lru", "arc", "s3fifo")  # issue 19's bar at each capacity: the best of these
TARGET_BELOW_CLASSIC = 0.005  # the shipped policy's hit ratio >= the best classic's - 0.5 points ...
TARGET_GAP_CLOSED = 0.5  # ... and >= half the LRU -> Belady gap closed at one capacity or more
TARGET_LOOKUPS_PER_S = 200_000  # ... at this speed or more, its shadows and leader rule included


# the guard's shadows of the classic policies: our simulators, equal to libCacheSim's hit for hit (tested)
OWN_SHADOWS: dict[str, Callable[..., np.ndarray]] = {
    "lru_own": simulate_lru,
    "arc_own": simulate_arc,
    "s3fifo_own": simulate_s3fifo,
}
SHADOWS = (*OWN_SHADOWS, "online", "learned")  # the policies whose simulators record eviction times


@dataclass(frozen=True)
class PolicyRun:
    policy: str
    capacity: int
    hit_ratio: float  # counted hits / counted lookups
    token_hit_ratio: float  # tokens saved / counted prompt tokens
    tokens_saved: int
    hits: int
    lookups_per_s: float  # whole replay (warm-up included)


@dataclass(frozen=True)
class CacheSimReport:
    trace: str
    requests: int
    lookups: int
    distinct_blocks: int
    counted_lookups: int
    counted_tokens: int
    block_tokens: int
    eval_from: float
    capacities: tuple[int, ...]
    runs: tuple[PolicyRun, ...]
    learned_info: Mapping[str, object]

    def policies(self) -> dict[str, list[float]]:
        """name -> hit ratio per capacity (the `cache_report` shape of issue 8)."""
        out: dict[str, list[float]] = {}
        for r in self.runs:
            out.setdefault(r.policy, []).append(r.hit_ratio)
        return out

    def hit_ratios(self) -> dict[tuple[str, int], float]:
        """(policy, capacity) -> hit ratio of every run."""
        return {(r.policy, r.capacity): r.hit_ratio for r in self.runs}

    def gap_closed(self, policy: str = "learned") -> list[float | None]:
        """Per capacity: (policy - lru) / (belady - lru) hit ratio; None when the gap is 0 or a run is absent."""
        by = self.hit_ratios()
        out: list[float | None] = []
        for c in self.capacities:
            lru, bel, lea = by.get(("lru", c)), by.get(("belady", c)), by.get((policy, c))
            out.append(None if None in (lru, bel, lea) or bel - lru <= 0 else (lea - lru) / (bel - lru))
        return out

    def minus_best_classic(self, policy: str = SHIPPED_POLICY) -> list[float | None]:
        """Per capacity: the policy's hit ratio - the best of the `CLASSIC_POLICIES` that ran; None when the
        policy or every classic policy is absent."""
        by = self.hit_ratios()
        out: list[float | None] = []
        for c in self.capacities:
            classic = [by[(p, c)] for p in CLASSIC_POLICIES if (p, c) in by]
            out.append(None if (policy, c) not in by or not classic else by[(policy, c)] - max(classic))
        return out

    def shipped(self) -> dict[str, object]:
        """The shipped policy against issue 19's two targets, per capacity (None: a run it needs is absent)."""
        return {
            "policy": SHIPPED_POLICY,
            "classics": [p for p in CLASSIC_POLICIES if p in self.policies()],
            "minus_best_classic": self.minus_best_classic(),
            "gap_closed": self.gap_closed(SHIPPED_POLICY),
        }

    def lookups_per_s(self) -> dict[str, float]:
        """Median block lookups per second of each policy over the capacities."""
        out: dict[str, list[float]] = {}
        for r in self.runs:
            out.setdefault(r.policy, []).append(r.lookups_per_s)
        return {k: float(np.median(v)) for k, v in out.items()}

    def overall_lookups_per_s(self) -> float:
        """All simulated lookups / all simulation time (model fitting excluded)."""
        seconds = sum(self.lookups / r.lookups_per_s for r in self.runs)
        return self.lookups * len(self.runs) / seconds if seconds > 0 else float("nan")

    def to_json(self) -> dict[str, object]:
        return {
            "trace": self.trace,
            "requests": self.requests,
            "lookups": self.lookups,
            "distinct_blocks": self.distinct_blocks,
            "counted_lookups": self.counted_lookups,
            "counted_tokens": self.counted_tokens,
            "block_tokens": self.block_tokens,
            "eval_from": self.eval_from,
            "capacity_unit": f"blocks of {self.block_tokens} tokens",
            "capacities": list(self.capacities),
            "policies": self.policies(),
            "tokens_saved": {p: [r.tokens_saved for r in self.runs if r.policy == p] for p in self.policies()},
            "token_hit_ratio": {p: [r.token_hit_ratio for r in self.runs if r.policy == p] for p in self.policies()},
            "learned_gap_closed": self.gap_closed(),
            "gap_closed": {p: self.gap_closed(p) for p in self.policies() if p not in ("lru", "belady")},
            "shipped": self.shipped(),
            "lookups_per_s": self.lookups_per_s(),
            "overall_lookups_per_s": self.overall_lookups_per_s(),
            "learned": dict(self.learned_info),
            "runs": [asdict(r) for r in self.runs],
        }


def _score(trace: BlockTrace, policy: str, capacity: int, hits: np.ndarray, seconds: float) -> PolicyRun:
    """Count the evaluation window only."""
    counted = hits & trace.counted
    n_counted = int(trace.counted.sum())
    tokens_counted = int(trace.tokens[trace.counted].sum())
    saved = int(trace.tokens[counted].sum())
    return PolicyRun(
        policy,
        capacity,
        float(counted.sum() / n_counted) if n_counted else float("nan"),
        saved / tokens_counted if tokens_counted else float("nan"),
        saved,
        int(counted.sum()),
        len(trace) / seconds if seconds > 0 else float("inf"),
    )


@dataclass
class Replay:
    """One trace's lookups, the models its learned policies need (fitted lazily, once) and every policy's
    hits per capacity (memoised: `guarded` reuses its experts' shadow runs and is charged their time).

    `model`: a learned model fitted elsewhere (another trace: the transfer study); None fits one on this
    trace's lookups before the evaluation cut. The `online` expert starts from `prior` (a model fitted on
    another trace: `caching.prior`, or the transfer study's `model`) when one is given, else from no model
    (LRU-like) -- it never reads this trace's future either way."""

    frame: pd.DataFrame
    trace: BlockTrace
    params: CacheSimParams
    model: LearnedModel | None = None
    prior: LearnedModel | None = None
    X: pd.DataFrame | None = None
    online: OnlinePrediction | None = None
    info: dict[str, object] = field(default_factory=dict)
    memo: dict[tuple[str, int], tuple[np.ndarray, float]] = field(default_factory=dict)
    tables: dict[str, tuple[int, np.ndarray]] = field(default_factory=dict)  # policy -> (capacity, score table)
    untils: dict[tuple[str, int], np.ndarray] = field(default_factory=dict)  # the shadows' eviction times

    def features(self) -> pd.DataFrame:
        if self.X is None:
            self.X = lookup_features(self.frame, self.trace)
        return self.X

    def learned_model(self) -> LearnedModel:
        if self.model is None:
            started = time.perf_counter()
            self.model = fit_learned(self.features(), self.trace, self.params.learned)
            self.info.update(
                objective=self.model.objective,
                train_lookups=self.model.train_lookups,
                horizon_lookups=self.model.horizon,
                fit_seconds=round(time.perf_counter() - started, 2),
                features=list(self.model.features or self.features().columns),
                params=asdict(self.params.learned),
            )
        return self.model

    def online_prediction(self) -> OnlinePrediction:
        if self.online is None:
            started = time.perf_counter()
            self.online = online_predictions(
                self.features(), self.trace, self.params.learned, self.params.online, self.prior
            )
            path = self.params.online.prior
            self.info["online"] = {
                "refits": [asdict(r) for r in self.online.refits],
                "prior": None if self.prior is None else (self.prior.source or "given"),
                "fit_seconds": round(time.perf_counter() - started, 2),
                "params": asdict(self.params.online) | {"prior": None if path is None else str(path)},
            }
        return self.online

    def hits(self, policy: str, capacity: int) -> tuple[np.ndarray, float]:
        """(hit per lookup, simulation seconds) of `policy` at `capacity`; fitting a model, predicting and
        turning predictions into eviction scores are not timed (a deployed cache scores a block as it is
        looked up)."""
        key = (policy, capacity)
        if key not in self.memo:
            if policy == "guarded":
                self.memo[key] = self._guarded(capacity)
            else:
                if policy == "online" or (policy == "learned" and self.learned_model().objective != "distance"):
                    self.scores(policy, capacity)
                elif policy == "learned":
                    self.predicted(self.learned_model())
                started = time.perf_counter()
                hits = self._simulate(policy, capacity)
                self.memo[key] = (hits, time.perf_counter() - started)
        return self.memo[key]

    def _simulate(self, policy: str, capacity: int) -> np.ndarray:
        """Hits of `policy`; the guard's possible experts (`SHADOWS`) also record when each lookup's block
        left their cache (`until`, kept for the guard)."""
        trace, learned = self.trace, self.params.learned
        if policy == "learned" and self.learned_model().objective == "distance":
            return simulate_learned(
                trace.block,
                self.predicted(self.learned_model()),
                capacity,
                learned.samples,
                learned.overdue_factor,
                learned.admit_bypass,
                learned.seed,
            )
        if policy in SHADOWS:
            until = np.empty(len(trace), dtype=np.int64)
            if policy in OWN_SHADOWS:  # ours, equal to libCacheSim's hit for hit (tested), faster
                hits = OWN_SHADOWS[policy](trace.block, capacity, until)
            else:
                table = self.scores(policy, capacity)
                hits = simulate_scored(
                    trace.block, table, capacity, learned.samples, learned.admit_bypass, learned.seed, until
                )
            self.untils[(policy, capacity)] = until
            return hits
        if policy == "belady":
            return simulate_belady(trace.block, capacity, trace.next_use)
        if policy in LIBCACHESIM_POLICIES:
            return libcachesim_hits(trace.block, policy, capacity, trace.next_use)
        raise ValueError(f"unknown policy {policy!r}; known: {', '.join(POLICIES)}")

    def scores(self, policy: str, capacity: int) -> np.ndarray:
        """The eviction score table (`simulate_scored`) of `learned` or `online` at `capacity`: survival curves
        through `survival_table`, or the hit-probability model's `hit_probability_table` (the last capacity
        per policy is kept: a table is lookups x age buckets)."""
        kept = self.tables.get(policy)
        if kept is None or kept[0] != capacity:
            window = self.params.learned.window_factor * capacity
            if policy == "online":
                table = survival_table(self.online_prediction().curve, window)
            elif (model := self.learned_model()).objective == "survival":
                if ("curve", 0) not in self.memo:
                    self.memo[("curve", 0)] = (model.curve(self.features(), horizon_grid(len(self.trace))), 0.0)
                table = survival_table(self.memo[("curve", 0)][0], window)
            else:
                curves = [age_curve(d, model.horizon, window) for d in model.reuse_distances]
                table = hit_probability_table(
                    self.predicted(model), curves, curve_group(self.trace), n_buckets(len(self.trace))
                )
            self.tables[policy] = kept = (capacity, table)
        return kept[1]

    def predicted(self, model: LearnedModel) -> np.ndarray:
        if ("predicted", 0) not in self.memo:
            self.memo[("predicted", 0)] = (model.predict(self.features()), 0.0)
        return self.memo[("predicted", 0)][0]

    def _guarded(self, capacity: int) -> tuple[np.ndarray, float]:
        """The guard (`caching.guard`): its experts' shadow runs (memoised, charged to it), the leader
        sequence and the real cache stepped on the shadows' eviction times."""
        names = [(f"{e}_own" if f"{e}_own" in OWN_SHADOWS else e) for e in self.params.guard.experts]
        for e in names:
            if e not in SHADOWS:
                known = ", ".join(x.removesuffix("_own") for x in SHADOWS)
                raise ValueError(f"the guard's experts are shadow caches of {known}; got {e.removesuffix('_own')!r}")
            if e == "learned" and self.learned_model().objective == "distance":
                raise ValueError("the guard cannot shadow the distance objective; use survival or hit_probability")
        runs = [self.hits(e, capacity) for e in names]
        import scipy.signal  # noqa: F401  (the leader rule's filter: importing it is not per-lookup work)

        started = time.perf_counter()
        own = self.info.get("trained_elsewhere") is not True  # learned was fitted on this trace's first part
        score_from = [self.trace.eval_start if (e == "learned" and own) else 0 for e in names]
        leader = guard_leaders([h for h, _ in runs], capacity, self.params.guard, score_from, self.trace.request)
        hits = guard_cache(self.trace.block, leader, [self.untils[(e, capacity)] for e in names], capacity)
        charged = time.perf_counter() - started + sum(sec for _, sec in runs)
        self.info.setdefault("guard_switches", {})[str(capacity)] = int((leader[1:] != leader[:-1]).sum())
        differ = np.flatnonzero(np.any([h != runs[0][0] for h, _ in runs[1:]], axis=0)) if len(runs) > 1 else []
        self.info.setdefault("guard_first_difference", {})[str(capacity)] = int(differ[0]) if len(differ) else None
        return hits, charged

    def run(self, policy: str, capacity: int) -> PolicyRun:
        hits, seconds = self.hits(policy, capacity)
        return _score(self.trace, policy, capacity, hits, seconds)


def run_policy(trace: BlockTrace, policy: str, capacity: int) -> PolicyRun:
    """Replay the whole trace through one classic policy or Belady at one capacity; count the evaluation
    window only. (`Replay` runs every policy, the learned ones too.)"""
    started = time.perf_counter()
    if policy == "belady":
        hits = simulate_belady(trace.block, capacity, trace.next_use)
    elif policy in LIBCACHESIM_POLICIES:
        hits = libcachesim_hits(trace.block, policy, capacity, trace.next_use)
    else:
        raise ValueError(f"unknown policy {policy!r} for run_policy; known: {', '.join(LIBCACHESIM_POLICIES)}")
    return _score(trace, policy, capacity, hits, time.perf_counter() - started)


def simulate(
    frame: pd.DataFrame,
    params: CacheSimParams,
    name: str = "trace",
    log: Callable[[str], None] = lambda _s: None,
    model: LearnedModel | None = None,
    prior: LearnedModel | None = None,
) -> CacheSimReport:
    """Pure: every policy of `params` at every capacity on `frame`'s block lookups. `model`: a learned
    model fitted on another trace, used as `learned` (else one is fitted on this trace before its cut);
    `prior`: the online expert's model before its first adopted refit (default: `model`)."""
    unknown = sorted(set(params.policies) - set(POLICIES))
    if unknown:
        raise ValueError(f"unknown policy {', '.join(unknown)}; known: {', '.join(POLICIES)}")
    frame = select_rows(frame)
    if frame.empty:
        raise ValueError("cache-sim: no rows with prefix_blocks in the trace")
    trace = block_trace(frame, params.eval_from, params.block_tokens)
    replay = Replay(frame, trace, params, model=model, prior=model if prior is None else prior)
    if model is not None:
        replay.info.update(objective=model.objective, horizon_lookups=model.horizon, trained_elsewhere=True)
    runs = []
    for policy in params.policies:
        for capacity in params.capacities:
            run = replay.run(policy, capacity)
            log(
                f"  {policy:8s} capacity {capacity:>7,}: hit ratio {run.hit_ratio:.4f}, tokens saved {run.tokens_saved:,} ({run.lookups_per_s:,.0f} lookups/s)"
            )
            runs.append(run)
    return CacheSimReport(
        name,
        int(frame.shape[0]),
        len(trace),
        int(len(np.unique(trace.block))),
        int(trace.counted.sum()),
        int(trace.tokens[trace.counted].sum()),
        params.block_tokens,
        params.eval_from,
        tuple(params.capacities),
        tuple(runs),
        replay.info,
    )


COLORS = {
    "lru": "tab:blue",
    "lfu": "tab:orange",
    "fifo": "tab:green",
    "s3fifo": "tab:purple",
    "arc": "tab:brown",
    "learned": "tab:red",
    "online": "tab:pink",
    "guarded": "tab:olive",
    "belady": "black",
}


def plot(report: CacheSimReport, path: Path) -> Path:
    """Hit ratio vs capacity, one line per policy, in one PNG."""
    from core.plots import plt, save_figure  # Agg backend: no display needed

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for policy, ratios in report.policies().items():
        style = {"belady": {"linestyle": "--"}, "guarded": {"linewidth": 2.5}}.get(policy, {})
        ax.plot(report.capacities, ratios, marker="o", label=policy, color=COLORS.get(policy), **style)
    ax.set_xscale("log")
    ax.set_xlabel(f"capacity (blocks of {report.block_tokens} tokens)")
    ax.set_ylabel("block hit ratio (evaluation window)")
    ax.set_title(
        f"{report.trace}\nprefix-block cache, lookups counted from {report.eval_from:g} of the time range", fontsize=10
    )
    ax.grid(True, alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


def summary(report: CacheSimReport) -> str:
    """Markdown table: hit ratio per policy and capacity, the learned policy's gap closed, speed."""
    caps = report.capacities
    lines = ["| policy | " + " | ".join(f"{c:,}" for c in caps) + " | lookups/s |", "|---" * (len(caps) + 2) + "|"]
    speed = report.lookups_per_s()
    for policy, ratios in report.policies().items():
        lines.append(f"| {policy} | " + " | ".join(f"{r:.4f}" for r in ratios) + f" | {speed[policy]:,.0f} |")
    for policy in ("learned", "online", "guarded"):
        gaps = report.gap_closed(policy)
        if any(g is not None for g in gaps):
            lines.append(
                f"| {policy}: share of LRU-to-Belady gap closed | "
                + " | ".join("-" if g is None else f"{g:.0%}" for g in gaps)
                + " | |"
            )
    shipped = report.shipped()
    if any(d is not None for d in shipped["minus_best_classic"]):
        lines.append(
            f"| {SHIPPED_POLICY} - best of {', '.join(shipped['classics'])} | "
            + " | ".join("-" if d is None else f"{d:+.4f}" for d in shipped["minus_best_classic"])
            + " | |"
        )
    return "\n".join(lines)


def cold_start(report: CacheSimReport, guard: GuardParams) -> str | None:
    """One line naming the capacities where the guard's experts first hit differently less than one leader decision
    (`guard.interval` lookups) before the counting starts, or never: there the counted lookups begin under its
    first expert whatever the others do, as no evidence could move it (None: no such capacity, or no guard run)."""
    first = report.learned_info.get("guard_first_difference") or {}
    start = report.lookups - report.counted_lookups  # the counted lookups are a suffix
    cold = [(int(c), at) for c, at in first.items() if at is None or at > start - guard.interval]
    if not cold:
        return None
    where = [f"at {c:,} blocks {'never' if at is None else f'from lookup {at:,}'}" for c, at in cold]
    where_text = where[0] if len(where) == 1 else ", ".join(where[:-1]) + " and " + where[-1]
    return (
        f"note: the guard's experts hit differently {where_text}: too late for any evidence before the counting "
        f"starts (lookup {start:,}), so there the counted lookups begin under its first expert, "
        f"{guard.experts[0]}, whatever the others do (a trace this short leaves the guard nothing to go on)"
    )


def verdict(report: CacheSimReport) -> str | None:
    """One line: the shipped policy against issue 19's targets on this trace (None when it did not run)."""
    shipped = report.shipped()
    scored = [(c, d) for c, d in zip(report.capacities, shipped["minus_best_classic"], strict=True) if d is not None]
    if not scored:
        return None
    worst_c, worst = min(scored, key=lambda x: x[1])
    held = sum(d >= -TARGET_BELOW_CLASSIC for _, d in scored)
    known = [g for g in shipped["gap_closed"] if g is not None]
    if known:
        gap = (
            f"best share of the LRU-to-Belady gap closed {max(known):.0%} (goal >= {TARGET_GAP_CLOSED:.0%} at one "
            f"capacity: {'met' if max(known) >= TARGET_GAP_CLOSED else 'MISSED'})"
        )
    elif {"lru", "belady"} <= report.policies().keys():
        gap = "no LRU-to-Belady gap at any capacity (LRU is already optimal here: nothing to close)"
    else:
        gap = "gap closed unknown (run lru and belady too)"
    speed = report.lookups_per_s()[SHIPPED_POLICY]
    return (
        f"shipped policy {SHIPPED_POLICY}: within {TARGET_BELOW_CLASSIC * 100:.1f} points of the best classic policy at "
        f"{held} of {len(scored)} capacities (worst {worst * 100:+.2f} points at {worst_c:,} blocks: "
        f"{'met' if held == len(scored) else 'MISSED'}); {gap}; median {speed:,.0f} lookups/s (goal >= "
        f"{TARGET_LOOKUPS_PER_S:,}: {'met' if speed >= TARGET_LOOKUPS_PER_S else 'MISSED'})"
    )


def read_block_trace(
    traces: Sequence[Path],
    params_file: Path | None,
    limit_rows: int | None,
    log: Callable[[str], None] | None = None,
) -> tuple[pd.DataFrame, str]:
    """The rows of trace files or dataset folders (trace files costed with the ingest price table, read from the
    project folder when the working directory has none: `traces.prices.load_prices`), the first `limit_rows`
    requests by time when given, and a display name; `log` hears of each published Mooncake file converted."""
    from core.config import load_params
    from traces.ingest import IngestParams
    from traces.load import load_traces

    frame = load_traces(list(traces), load_params(params_file, "ingest", IngestParams).prices, log=log)
    if limit_rows:
        frame = select_rows(frame).iloc[:limit_rows]
    return frame, ", ".join(p.name for p in traces)


def online_prior(online: OnlineParams) -> LearnedModel | None:
    """The online expert's prior named by params.yaml cache_sim.online.prior (`caching.prior`), or None; a
    relative path not found in the working directory is read from the project folder (so `beast cache sim`
    runs from anywhere in a checkout); a missing or altered prior is the CLI's one-line error."""
    from caching.prior import load_prior
    from core.errors import BeastError
    from core.files import in_project

    if online.prior is None:
        return None
    try:
        return load_prior(in_project(online.prior))
    except ValueError as exc:
        raise BeastError(str(exc)) from None


def run_study(simulate_fn: Callable, frame: pd.DataFrame, params: Any, name: str) -> Any:
    """Run a cache study; its input errors (ValueError) become the CLI's one-line error."""
    from core.errors import BeastError

    try:
        return simulate_fn(frame, params, name, log=print)
    except ValueError as exc:
        raise BeastError(str(exc)) from None


def save_study(
    report: Any, out: Path, json_name: str, plot_fn: Callable, png_name: str, summary_fn: Callable, eval_from: float
) -> tuple[Path, Path]:
    """Write a study's report JSON (atomically) and plot into `out`, print what was counted and the summary."""
    from core.files import write_atomic

    out.mkdir(parents=True, exist_ok=True)
    json_path = out / json_name
    write_atomic(json_path, (json.dumps(report.to_json(), indent=2) + "\n").encode())
    png = plot_fn(report, out / png_name)
    print(
        f"\n{report.counted_lookups:,} of {report.lookups:,} lookups counted ({report.requests:,} requests, "
        f"eval from {eval_from:g} of the time range)\n"
    )
    print(summary_fn(report))
    return json_path, png


def main(
    traces: Sequence[Path],
    params_file: Path | None = None,
    capacities: Sequence[int] | None = None,
    policies: Sequence[str] | None = None,
    eval_from: float | None = None,
    out: Path | None = None,
    limit_rows: int | None = None,
) -> CacheSimReport:
    """`beast cache sim`: read the traces, simulate, write cache_report.json and cache_sim.png to `out`."""
    from core.config import load_params, with_overrides

    params = load_params(params_file, "cache_sim", CacheSimParams)
    overrides = {
        "capacities": tuple(capacities) if capacities else None,
        "policies": tuple(policies) if policies else None,
        "eval_from": eval_from,
        "out": out,
    }
    params = with_overrides(params, **overrides)
    frame, name = read_block_trace(traces, params_file, limit_rows, log=print)
    prior = online_prior(params.online)
    print(
        f"cache-sim on {name}: policies {', '.join(params.policies)}, capacities {', '.join(map(str, params.capacities))} blocks of {params.block_tokens} tokens"
    )
    report = run_study(functools.partial(simulate, prior=prior), frame, params, name)
    json_path, png = save_study(
        report, params.out, "cache_report.json", plot, "cache_sim.png", summary, params.eval_from
    )
    if line := cold_start(report, params.guard):
        print("\n" + line)
    if line := verdict(report):
        print("\n" + line)
    if online := report.learned_info.get("online"):
        adopted = sum(r["adopted"] for r in online["refits"])
        print(
            f"\nonline expert: started from {online['prior'] or 'the LRU-like curve (no prior)'}; "
            f"{adopted} of {len(online['refits'])} refits adopted (learned.online.refits in {json_path.name})"
        )
    speed = ", ".join(f"{k} {v:,.0f}" for k, v in report.lookups_per_s().items())
    print(
        f"\nspeed, block lookups/s: {report.overall_lookups_per_s():,.0f} over all {len(report.runs)} runs; per policy (median): {speed}"
    )
    print(f"wrote {json_path} and {png}")
    return report
