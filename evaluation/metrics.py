"""Routing metrics (pure numpy, no I/O): how good is a router's cost-quality trade-off.

A router swept over its knob (a target quality, a lambda, a share of strong calls) gives operating points
(mean cost, mean quality) on the same test prompts. Two families of numbers summarise them:

- RouterBench (Hu et al. 2024): the *non-decreasing convex hull* of the points is what the router can
  attain (any two operating points can be mixed at random, and spending more never has to lose quality);
  AIQ is the area under that hull over a common cost range divided by the range width. Convention used
  here, the same for every router so the numbers compare: the range is [mean cost of the cheapest single
  model, mean cost of the most expensive single model]; every router may also be mixed with the cheapest
  model (its point joins the router's set), and the hull stays flat at its best quality to the right.
- RouteLLM (Ong et al. 2024), for a strong/weak pair: PGR(x) = (q - q_weak) / (q_strong - q_weak) as a
  function of the share x of calls sent to the strong model; APGR = area under PGR over x in [0, 1];
  CPT(p) = the smallest share of strong calls that reaches PGR >= p.

Plus cost saved against always calling the strongest model at equal or better mean quality (with a
bootstrap CI over test prompts), and selection regret (quality left on the table among choices that cost
no more than the one made).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TIE = 1e-12  # "equal or better" quality allows this much float rounding (the same mean summed in another order)


def hull(points: np.ndarray) -> np.ndarray:
    """Vertices (cost ascending) of the non-decreasing concave upper hull of (cost, quality) points.

    Pareto front first (a point counts only if it beats the quality of every cheaper point), then the upper
    hull of that front (Andrew's monotone chain): what mixing the operating points at random can attain."""
    pts = np.asarray(points, dtype=float).reshape(-1, 2)
    pts = pts[np.isfinite(pts).all(axis=1)]
    if len(pts) == 0:
        return pts
    pts = pts[np.lexsort((-pts[:, 1], pts[:, 0]))]  # cost ascending, best quality first within a cost
    front = [pts[0]]
    for p in pts[1:]:
        if p[1] > front[-1][1]:
            front.append(p)
    out: list[np.ndarray] = []
    for p in front:
        # pop the last vertex while it lies on or below the chord from its predecessor to p
        while (
            len(out) >= 2
            and (out[-1][0] - out[-2][0]) * (p[1] - out[-2][1]) - (out[-1][1] - out[-2][1]) * (p[0] - out[-2][0]) >= 0
        ):
            out.pop()
        out.append(p)
    return np.array(out)


def hull_value(vertices: np.ndarray, cost: np.ndarray | float) -> np.ndarray:
    """Quality of the hull at `cost`: linear between vertices, flat beyond the last one (and the first)."""
    return np.interp(cost, vertices[:, 0], vertices[:, 1])


def aiq(points: np.ndarray, lo: float, hi: float, anchor: tuple[float, float] | None = None) -> float:
    """Average quality of the hull of `points` (+ `anchor`, the cheapest model's point) over costs [lo, hi].

    The hull is piecewise linear, so the trapezoid rule on its vertices inside [lo, hi] is exact."""
    pts = np.asarray(points, dtype=float).reshape(-1, 2)
    if anchor is not None:
        pts = np.vstack([pts, np.asarray(anchor, dtype=float)])
    v = hull(pts)
    if len(v) == 0:
        return float("nan")
    if hi <= lo:
        return float(hull_value(v, lo))
    xs = np.unique(np.concatenate([[lo, hi], v[:, 0][(v[:, 0] > lo) & (v[:, 0] < hi)]]))
    ys = hull_value(v, xs)
    return float(np.trapezoid(ys, xs) / (hi - lo))


def pgr(quality: np.ndarray, q_weak: float, q_strong: float) -> np.ndarray:
    """Performance gap recovered: 0 at the weak model's mean quality, 1 at the strong model's."""
    return (np.asarray(quality, dtype=float) - q_weak) / (q_strong - q_weak)


def _curve(share: np.ndarray, value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted by share; a share seen twice keeps the mean of its values (np.interp needs increasing x)."""
    share, value = np.asarray(share, dtype=float), np.asarray(value, dtype=float)
    xs, inverse = np.unique(share, return_inverse=True)
    ys = np.bincount(inverse, weights=value) / np.bincount(inverse)
    return xs, ys


def curve_at(share: np.ndarray, pgr_values: np.ndarray, at: np.ndarray) -> np.ndarray:
    """The PGR curve (linear between realised shares, flat beyond them) at the shares `at`."""
    xs, ys = _curve(share, pgr_values)
    return np.interp(np.asarray(at, dtype=float), xs, ys)


def apgr(share: np.ndarray, pgr_values: np.ndarray, grid: int = 1001) -> float:
    """Area under PGR over the share of strong calls in [0, 1]: the curve linearly interpolated and
    integrated with the trapezoid rule on `grid` evenly spaced shares (flat beyond the given shares)."""
    g = np.linspace(0.0, 1.0, grid)
    return float(np.trapezoid(curve_at(share, pgr_values, g), g))


def cpt(share: np.ndarray, pgr_values: np.ndarray, p: float) -> float | None:
    """Call-performance threshold: the smallest share of strong calls with PGR >= p, linearly interpolated
    on the segment where the curve first crosses p; None when it never does."""
    xs, ys = _curve(share, pgr_values)
    hit = np.flatnonzero(ys >= p)
    if len(hit) == 0:
        return None
    i = int(hit[0])
    if i == 0:
        return float(xs[0])
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    return float(x0 + (p - y0) * (x1 - x0) / (y1 - y0))


def cheapest_reaching(points: np.ndarray, quality: float) -> float | None:
    """Lowest mean cost among operating points whose mean quality is >= `quality`; None if none is."""
    pts = np.asarray(points, dtype=float).reshape(-1, 2)
    ok = pts[:, 1] >= quality - TIE
    return float(pts[ok, 0].min()) if ok.any() else None


def savings(points: np.ndarray, ref_cost: float, ref_quality: float) -> float | None:
    """Share of the reference's mean cost saved by the cheapest operating point at equal or better mean
    quality (realised points only, no mixing); None when no point reaches `ref_quality`."""
    c = cheapest_reaching(points, ref_quality)
    return None if c is None else float(1.0 - c / ref_cost)


@dataclass(frozen=True)
class Interval:
    low: float | None
    high: float | None
    reached: float  # share of resamples in which some operating point reached the reference quality


def savings_bootstrap(
    cost: np.ndarray,
    quality: np.ndarray,
    ref_cost: np.ndarray,
    ref_quality: np.ndarray,
    samples: int,
    seed: int,
    level: float = 0.95,
) -> Interval:
    """Percentile CI of `savings` over test prompts resampled with replacement.

    cost, quality: (operating points x prompts) actual values of each point's choice per prompt;
    ref_cost, ref_quality: (prompts,) the reference model's. Each resample recomputes every point's mean
    and the reference's on the same prompts; the CI is taken over the resamples where savings is defined."""
    cost, quality = np.atleast_2d(np.asarray(cost, dtype=float)), np.atleast_2d(np.asarray(quality, dtype=float))
    n = cost.shape[1]
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=samples).T.astype(float) / n  # prompts x samples
    mean_c, mean_q = cost @ weights, quality @ weights  # points x samples
    ref_c, ref_q = np.asarray(ref_cost, dtype=float) @ weights, np.asarray(ref_quality, dtype=float) @ weights
    reach = mean_q >= ref_q[None, :] - TIE
    best = np.where(reach, mean_c, np.inf).min(axis=0)
    ok = np.isfinite(best)
    if not ok.any():
        return Interval(None, None, 0.0)
    s = 1.0 - best[ok] / ref_c[ok]
    tail = (1.0 - level) / 2 * 100
    return Interval(float(np.percentile(s, tail)), float(np.percentile(s, 100 - tail)), float(ok.mean()))


def selection_regret(
    chosen_quality: np.ndarray, chosen_cost: np.ndarray, quality: np.ndarray, cost: np.ndarray
) -> float:
    """Mean over prompts of (best actual quality among the models that cost no more than the chosen one on
    that prompt) - (the chosen model's quality). quality, cost: prompts x models, NaN = not answered."""
    q, c = np.asarray(quality, dtype=float), np.asarray(cost, dtype=float)
    cq, cc = np.asarray(chosen_quality, dtype=float), np.asarray(chosen_cost, dtype=float)
    affordable = np.isfinite(q) & (c <= cc[:, None])
    best = np.where(affordable, q, -np.inf).max(axis=1)
    return float(np.mean(np.maximum(best, cq) - cq))


# ------------------------------------------------------------------------------------------ pair curves


@dataclass(frozen=True)
class PairStats:
    apgr: float
    cpt50: float | None
    cpt80: float | None


def pair_stats(shares: np.ndarray, pgr_values: np.ndarray) -> PairStats:
    return PairStats(apgr(shares, pgr_values), cpt(shares, pgr_values, 0.5), cpt(shares, pgr_values, 0.8))


def _percentiles(values: list[float | None], level: float) -> tuple[float | None, float | None]:
    v = np.array([x for x in values if x is not None], dtype=float)
    if len(v) == 0:
        return None, None
    tail = (1.0 - level) / 2 * 100
    return float(np.percentile(v, tail)), float(np.percentile(v, 100 - tail))


@dataclass(frozen=True)
class PairIntervals:
    apgr: tuple[float | None, float | None]
    cpt50: tuple[float | None, float | None]
    cpt80: tuple[float | None, float | None]


def pair_bootstrap(
    to_strong: np.ndarray, q_strong: np.ndarray, q_weak: np.ndarray, samples: int, seed: int, level: float = 0.95
) -> PairIntervals:
    """Percentile CIs of APGR, CPT(50%), CPT(80%) over prompts resampled with replacement, the decisions fixed.

    to_strong: (operating points x prompts) bool, which prompts each point sends to the strong model;
    q_strong, q_weak: (prompts,) the two models' actual qualities. Each resample recomputes every point's
    realised share and mean quality, the two models' means, and so the PGR curve."""
    S = np.atleast_2d(np.asarray(to_strong, dtype=float))
    qs, qw = np.asarray(q_strong, dtype=float), np.asarray(q_weak, dtype=float)
    n = S.shape[1]
    rng = np.random.default_rng(seed)
    W = rng.multinomial(n, np.full(n, 1.0 / n), size=samples).T.astype(float) / n  # prompts x samples
    share = S @ W
    chosen = (S * qs + (1 - S) * qw) @ W
    ms, mw = qs @ W, qw @ W
    stats = []
    for b in range(samples):
        gap = ms[b] - mw[b]
        if gap != 0:
            stats.append(pair_stats(share[:, b], (chosen[:, b] - mw[b]) / gap))
    return PairIntervals(
        _percentiles([s.apgr for s in stats], level),
        _percentiles([s.cpt50 for s in stats], level),
        _percentiles([s.cpt80 for s in stats], level),
    )


@dataclass(frozen=True)
class RandomPair:
    """The random strong/weak router over many seeds: what "better than random" has to beat."""

    seeds: int
    apgr_mean: float
    apgr_p95: float
    cpt50_mean: float | None
    cpt80_mean: float | None


def random_pair(q_strong: np.ndarray, q_weak: np.ndarray, shares: np.ndarray, seeds: int, seed: int) -> RandomPair:
    """APGR / CPT of `seeds` random routers (a seeded permutation per seed; the first round(x n) prompts go to
    strong at share x): mean and 95th percentile of APGR, mean CPTs."""
    qs, qw = np.asarray(q_strong, dtype=float), np.asarray(q_weak, dtype=float)
    n, gap = len(qs), float(qs.mean() - qw.mean())
    k = np.round(np.asarray(shares, dtype=float) * n).astype(int)
    rng = np.random.default_rng(seed)
    stats = []
    for _ in range(seeds):
        cs = np.concatenate([[0.0], np.cumsum((qs - qw)[rng.permutation(n)])])
        stats.append(pair_stats(k / n, cs[k] / n / gap))
    apgrs = np.array([s.apgr for s in stats])
    c50 = [s.cpt50 for s in stats if s.cpt50 is not None]
    c80 = [s.cpt80 for s in stats if s.cpt80 is not None]
    return RandomPair(
        seeds,
        float(apgrs.mean()),
        float(np.percentile(apgrs, 95)),
        float(np.mean(c50)) if c50 else None,
        float(np.mean(c80)) if c80 else None,
    )
