"""The guarded prefix-cache policy and the online-learned expert (`guarded` and `online` in `caching.sim`).

Guard (`guard_leaders` + `guard_cache`), exact:

1. Experts (`GuardParams.experts`: ARC, the online-learned scorer, S3-FIFO and LRU by default) each run as
   a metadata-only shadow cache of the full capacity on the same stream of lookups (`caching.sim` runs
   them: our ARC / S3-FIFO / LRU, equal to libCacheSim's hit for hit, and our learned simulators), and
   record when each lookup's block left their cache. Expert e's hit at lookup i means its block was in
   the shadow set S_e just before lookup i.
2. Score: each expert's exponentially discounted hit ratio over the lookups before now, half-life
   max(`half_life_min`, `half_life_factor` x capacity) lookups (an expert whose model was fitted on this
   trace's first part, `learned`, is scored only after its training lookups). Every `interval` lookups the
   leader is re-chosen from the scores of the lookups before that point (never a later one): the best
   expert takes over only if it beats the current leader by more than `margin`, `rel_margin` x the
   leader's score and `z` standard errors of the discounted difference, with the effective sample size
   counted in requests (a request's blocks hit or miss together) (hysteresis: a switch costs the blocks the
   two shadows do not share). The first leader is `experts[0]`.
3. The real cache R (`guard_cache`) holds at most `capacity` blocks. After lookup i of block b: if the
   leader's shadow holds b, so does R; if it does not but R does (a hit on a block the leader dropped), R
   keeps it. R makes room only when it must insert: it evicts a block the leader no longer holds (one
   exists, since the leader holds b and at most `capacity` blocks), the one the leader dropped first. So
   R always contains R' = the cache that is kept a subset of the leader's shadow (R' := (R' ∩ S_leader) ∪
   {b if the leader holds it}; at a switch R' := R' ∩ S_new), hence hits wherever R' hits and, while one
   expert leads, at least where it hits once the blocks from before the switch have passed through; the
   blocks a switch would throw away keep hitting until room is needed (tested against an explicitly stepped
   reference and against R').

Online expert (`online_predictions`, no future leak, tested by altering the trace after a time t):
the survival model of `caching.sim` refitted on the stream it serves. Refits happen at lookups
T_1 = `first_refit`, T_k+1 = min(`growth` x T_k, T_k + `max_every`). At a refit T the training rows are
`caching.sim.survival_rows` of the lookups i in [lo, T - 1), lo = max(0, T - `window`): horizons
h <= T - 1 - i, so every label ("looked up again within h lookups") is known at T. Validated refit
(`validate` > 0): a candidate is first fitted on [lo, T - v), v = `validate` x (T - lo), and scored by
log-loss on the survival rows of [T - v, T) (labels known at T) against the model in use; only if its mean
gain per row exceeds `validate_z` standard errors (rows clustered by request: a request's blocks share
their fate) is the model refitted on all of [lo, T) and adopted, else the model in use stays (a small
early window does not throw away a better prior). Lookups in [T_k, T_k+1) get their survival curves from the
model in use after T_k (a refit whose rows are too few or of one class keeps it too). Before T_1 the
`prior` model is used if one is given (fitted on another trace: `caching.prior`, transfer then adapt),
else F(h) = min(h / first_refit, 1) for every block (reuse uniform in time: eviction by age, LRU-like),
which is also the incumbent the first candidate must beat.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd

from core.config import Between, Count, NonNegative, Positive


@dataclass(frozen=True)
class GuardParams:
    """Mirrors params.yaml -> cache_sim.guard."""

    experts: tuple[str, ...] = ("arc", "online", "s3fifo", "lru")  # shadow caches; the first leads at the start
    half_life_factor: Positive = 8.0  # score half-life = this x capacity lookups ...
    half_life_min: Count = 8192  # ... and at least this many lookups
    interval: Count = 256  # lookups between leader decisions
    margin: NonNegative = 0.002  # a challenger must beat the leader's discounted hit ratio by this much ...
    rel_margin: NonNegative = 0.0  # ... and by this share of it (a switch costs the blocks the two do not share)
    z: NonNegative = 2.0  # ... and by this many standard errors of the discounted difference


@dataclass(frozen=True)
class OnlineParams:
    """Mirrors params.yaml -> cache_sim.online."""

    first_refit: Count = 4096  # lookups before the first refit
    growth: Positive = 2.0  # refit points grow geometrically ...
    max_every: Count = 65536  # ... and are at most this many lookups apart
    window: Count = 131072  # training rows per refit (the most recent ones whose horizon has passed)
    num_boost_round: Count = 150
    # a `caching.prior` folder: the model in use before the first adopted refit (None: the LRU-like curve)
    prior: Path | None = Path("data/cache_prior")
    # share of each refit window held out: a refit is adopted only if it beats the model in use there (0: always)
    validate: Annotated[float, Between(0, 1, high_open=True)] = 0.25
    validate_z: NonNegative = 1.0  # ... and only if its log-loss gain there exceeds this many standard errors


def guard_leaders(
    expert_hits: Sequence[np.ndarray],
    capacity: int,
    params: GuardParams,
    score_from: Sequence[int] | None = None,
    request: np.ndarray | None = None,
) -> np.ndarray:
    """Index of the leading expert at each lookup (rule 2): re-chosen every `interval` lookups from the
    discounted hit ratios of the lookups before that point; the best expert takes over only if it beats
    the leader by more than `margin`, `rel_margin` x the leader's score and `z` standard errors of the
    discounted difference (from the discounted rate at which the two disagree; effective sample size
    min(age, (1 + lam) / (1 - lam)), divided by the mean lookups per request so far when `request` (the
    request number of each lookup) is given: a request's blocks hit or miss together). `experts[0]` leads first. `score_from[e]`: expert e is scored only on
    lookups from there on (a model is not scored on the lookups it was trained on; bias-corrected
    discounting) and cannot lead before."""
    from scipy.signal import lfilter

    k, n = len(expert_hits), len(expert_hits[0]) if len(expert_hits) else 0
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    H = np.stack([np.asarray(h, dtype=float) for h in expert_hits])
    half = max(float(params.half_life_min), params.half_life_factor * capacity)
    lam = 0.5 ** (1.0 / half)
    start = np.zeros(k, dtype=np.int64) if score_from is None else np.asarray(score_from, dtype=np.int64)
    t = np.arange(n)
    H[t[None, :] < start[:, None]] = 0.0
    points = np.arange(params.interval, n, params.interval)  # decision points; each sees lookups < it
    if len(points) == 0:
        return np.zeros(n, dtype=np.int64)

    def discounted(x: np.ndarray) -> np.ndarray:
        return lfilter([1.0 - lam], [1.0, -lam], x, axis=-1)[..., points - 1]

    age = points[None, :] - start[:, None]  # lookups scored, per expert and point
    norm = np.where(age > 0, 1.0 - lam ** np.maximum(age, 1), np.nan)
    score = np.where(age > 0, discounted(H) / norm, -np.inf)  # k x points
    both = {(e, c): discounted(H[e] * H[c]) for e in range(k) for c in range(e + 1, k)}
    n_eff = np.minimum(np.maximum(age, 1), (1.0 + lam) / (1.0 - lam))
    if request is not None:
        per_request = points / (np.asarray(request)[points - 1] - request[0] + 1)
        n_eff = n_eff / np.maximum(per_request, 1.0)[None, :]
    leaders = np.zeros(len(points) + 1, dtype=np.int64)
    current = 0
    S, N = score.T.tolist(), n_eff.T.tolist()
    for m in range(len(points)):
        s = S[m]
        best = max(range(k), key=s.__getitem__)
        if best != current and s[best] > -np.inf:
            if s[current] == -np.inf:
                current = best
            else:
                e, c = min(best, current), max(best, current)
                agree = both[(e, c)][m] / max(norm[e, m], norm[c, m])
                disagree = max(s[best] + s[current] - 2.0 * agree, 0.0)  # discounted rate of (h_b - h_c)^2
                se = (disagree / min(N[m][best], N[m][current])) ** 0.5
                if s[best] - s[current] > max(params.margin, params.rel_margin * s[current], params.z * se):
                    current = best
        leaders[m + 1] = current
    return np.repeat(leaders, params.interval)[:n]


def _drop_events(until: np.ndarray) -> tuple[list[int], dict[int, list[int]]]:
    """When an expert dropped which lookup's block: one[t] = the lookup j whose block it evicted during
    lookup t (-1: none; -2: several, listed in index order in several[t]: a miss may evict more than one)."""
    n = len(until)
    j = np.flatnonzero((until > np.arange(n)) & (until < n))
    j = j[np.argsort(until[j], kind="stable")]
    t = until[j]
    one = np.full(n, -1, dtype=np.int64)
    one[t] = j
    same = t[1:] == t[:-1]
    shared = np.r_[same, False] | np.r_[False, same] if len(t) else np.zeros(0, dtype=bool)  # times with several
    several: dict[int, list[int]] = {}
    for tt, jj in zip(t[shared].tolist(), j[shared].tolist()):
        several.setdefault(tt, []).append(jj)
    one[t[shared]] = -2
    return one.tolist(), several


def guard_cache(block: np.ndarray, leader: np.ndarray, untils: Sequence[np.ndarray], capacity: int) -> np.ndarray:
    """The real cache's hits (rule 3), stepped: `untils[e][j]` = the lookup during which expert e's shadow
    dropped the block looked up at j (j: not held after it; >= the block's next lookup: held until then).
    A block is in the leader's shadow just after lookup i iff untils[leader][its last lookup] > i. The real
    cache holds the blocks the leader holds once looked up under it and keeps the others (stale) until it
    needs room: then the one the leader dropped first goes (ties: the earlier last lookup). The stale ones
    wait in a queue in the order the leader dropped them (its drop events appended as they happen; rebuilt
    at a switch, outdated entries skipped)."""
    from collections import deque

    n = len(block)
    hit = bytearray(n)
    blocks = block.tolist()
    per_leader: dict[int, tuple] = {}  # only the experts that lead: their eviction times as lists, drop events
    real: dict[int, int] = {}  # cached block -> its last lookup
    get = real.get
    bounds = [0, *(np.flatnonzero(leader[1:] != leader[:-1]) + 1).tolist(), n]
    for s, e in zip(bounds[:-1], bounds[1:]):  # one leader from lookup s to e
        lead = int(leader[s])
        if lead not in per_leader:
            per_leader[lead] = (untils[lead].tolist(), *_drop_events(untils[lead]))
        U, one, several = per_leader[lead]
        # (block, its last lookup) the leader no longer holds, in the order it dropped them
        stale = deque((x, j) for _, j, x in sorted((U[j], j, x) for x, j in real.items() if U[j] < s))
        for i in range(s, e):
            b = blocks[i]
            jd = one[i]  # the leader dropped lookup jd's block during lookup i
            if jd >= 0:
                x = blocks[jd]
                if get(x) == jd:
                    stale.append((x, jd))
            elif jd == -2:
                for jd in several[i]:
                    x = blocks[jd]
                    if get(x) == jd:
                        stale.append((x, jd))
            j = get(b)
            if j is not None:
                hit[i] = 1
            u = U[i]
            if u > i or j is not None:  # the leader holds it now, or the real cache already does
                if j is None and len(real) >= capacity:
                    while True:  # a stale block exists: the leader holds b and at most `capacity` blocks
                        x, jx = stale.popleft()
                        if get(x) == jx:
                            del real[x]
                            break
                real[b] = i
                if u <= i:  # a hit on a block the leader does not keep: stale from now
                    stale.append((b, i))
    return np.frombuffer(bytes(hit), dtype=bool).copy()


# --- the online expert --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refit:
    """One refit point of the online expert: adopted or not, and the held-out log-losses that decided it
    (None when there was no validation: `validate` 0, or no candidate because its rows were too few or
    of one class)."""

    at: int
    adopted: bool
    incumbent_loss: float | None = None
    candidate_loss: float | None = None
    gain_se: float | None = None  # standard error of the mean per-row gain (incumbent - candidate loss)


@dataclass(frozen=True)
class OnlinePrediction:
    """Per lookup: its survival curve, P(its block is looked up again within h lookups) at each h of
    `caching.sim.horizon_grid`, from the model in use at it (n x grid); and what each refit did."""

    curve: np.ndarray
    refits: tuple[Refit, ...]


def refit_points(n: int, params: OnlineParams) -> list[int]:
    """T_1 = first_refit, T_k+1 = min(growth x T_k, T_k + max_every), all < n."""
    out, t = [], int(params.first_refit)
    while t < n:
        out.append(t)
        t = max(t + 1, min(int(params.growth * t), t + int(params.max_every)))
    return out


def row_log_loss(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Binary log-loss per row of probabilities `p` (clipped to [1e-6, 1 - 1e-6]) for labels `y`."""
    p = np.clip(np.asarray(p, dtype=float), 1e-6, 1.0 - 1e-6)
    return -np.where(y, np.log(p), np.log1p(-p))


def paired_gain(gain: np.ndarray, cluster: np.ndarray) -> tuple[float, float]:
    """Mean of per-row `gain` and its cluster-robust standard error: rows of one cluster (a request) move
    together, so the residuals are summed per cluster before squaring."""
    _, which = np.unique(cluster, return_inverse=True)
    mean = float(np.mean(gain))
    residual = np.bincount(which, gain) - mean * np.bincount(which)
    return mean, float(np.sqrt(np.sum(residual**2)) / len(gain))


def _row_probabilities(model, X: pd.DataFrame, idx: np.ndarray, h: np.ndarray, first_refit: int) -> np.ndarray:
    """P(looked up again within h) for survival rows (lookup idx, horizon h): from the model's booster at
    log2(h), or the flat no-model curve min(h / first_refit, 1) when `model` is None."""
    if model is None:
        return np.minimum(h / max(first_refit, 1), 1.0)
    A = np.column_stack([X[list(model.features)].to_numpy(dtype=float)[idx], np.log2(h)])
    return model.booster.predict(A)


def _candidate_wins(X: pd.DataFrame, trace, lo: int, t: int, v: int, cols, learned, online: OnlineParams, model):
    """Validated refit at t (module docstring): fit a candidate on [lo, t - v), compare it with `model`
    (None: the flat curve) by log-loss on the survival rows of [t - v, t). Returns (adopt, (incumbent
    loss, candidate loss, standard error of the gain)); no losses when the candidate could not be fitted."""
    from caching.sim import LearnedModel, fit_survival_window, survival_rows

    candidate = fit_survival_window(X, trace.next_use, lo, t - v, cols, learned, online.num_boost_round)
    if candidate is None:
        return False, ()
    idx, h, y = survival_rows(trace.next_use, t - v, t, learned.horizons_per_row, learned.seed + 7 * t)
    trial = LearnedModel(candidate, "survival", t - v, t - v, (), tuple(cols))
    old, new = (row_log_loss(_row_probabilities(m, X, idx, h, online.first_refit), y) for m in (model, trial))
    gain, se = paired_gain(old - new, trace.request[idx])
    return gain > online.validate_z * se, (float(old.mean()), float(new.mean()), se)


def online_predictions(X: pd.DataFrame, trace, learned, online: OnlineParams, prior=None) -> OnlinePrediction:
    """The online expert's survival curves (module docstring): each lookup scored by the model in use at
    the latest refit point at or before it, fitted and validated on lookups whose labels were known there."""
    from caching.sim import LearnedModel, feature_columns, fit_survival_window, horizon_grid

    n = len(trace)
    grid = horizon_grid(n)
    points = refit_points(n, online)
    cols = feature_columns(X.columns, learned.features)
    if prior is not None and (missing := sorted(set(prior.features) - set(X.columns))):
        raise ValueError(f"the online expert's prior reads features this trace lacks: {', '.join(missing)}")
    flat = np.minimum(grid / max(int(online.first_refit), 1), 1.0)  # no model: reuse uniform in time (LRU-like)
    curve = np.empty((n, len(grid)))
    model = prior
    refits = []
    for k, (t, end) in enumerate(zip([0, *points], [*points, n])):
        if k > 0:
            lo = max(0, t - int(online.window))
            v = int(online.validate * (t - lo))
            adopt, losses = _candidate_wins(X, trace, lo, t, v, cols, learned, online, model) if v > 0 else (True, ())
            booster = (
                fit_survival_window(X, trace.next_use, lo, t, cols, learned, online.num_boost_round) if adopt else None
            )
            if booster is not None:
                model = LearnedModel(booster, "survival", t, t, (), tuple(cols))
            refits.append(Refit(t, booster is not None, *losses))
        curve[t:end] = flat if model is None else model.curve(X.iloc[t:end], grid)
    return OnlinePrediction(curve, tuple(refits))
