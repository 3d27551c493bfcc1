"""Routing metrics: known answers on tiny hand-computed curves (hull, AIQ, PGR/APGR/CPT, savings, regret)."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.metrics import (
    aiq,
    apgr,
    cpt,
    hull,
    pair_bootstrap,
    pgr,
    random_pair,
    savings,
    savings_bootstrap,
    selection_regret,
)

# Pareto front of these: (0, 0), (1, .5), (2, .6), (3, .9); (2, .6) lies under the chord (1, .5)-(3, .9)
POINTS = [(0, 0), (1, 0.5), (2, 0.6), (3, 0.9), (1.5, 0.3), (4, 0.8)]


def test_hull_is_the_non_decreasing_concave_upper_hull() -> None:
    assert hull(np.array(POINTS)).tolist() == [[0, 0], [1, 0.5], [3, 0.9]]


@pytest.mark.parametrize(
    ("points", "expected"),
    [
        ([(1, 0.5)], [[1, 0.5]]),
        ([(2, 0.4), (1, 0.7)], [[1, 0.7]]),  # dearer and worse: never on the hull
        ([(1, 0.2), (1, 0.6), (2, 0.6)], [[1, 0.6]]),  # same cost: the better one; same quality, dearer: dropped
        ([(0, 0), (1, 0.5), (2, 1.0)], [[0, 0], [2, 1.0]]),  # collinear middle point is not a vertex
    ],
)
def test_hull_small_cases(points, expected) -> None:
    assert hull(np.array(points, dtype=float)).tolist() == expected


def test_aiq_is_the_mean_height_of_the_hull_extended_flat() -> None:
    # area: 0..1 -> 0.25, 1..3 -> 1.4, 3..4 flat at 0.9 -> 0.9; total 2.55 over a width of 4
    assert aiq(np.array(POINTS), 0.0, 4.0) == pytest.approx(2.55 / 4)


@pytest.mark.parametrize(
    ("points", "anchor", "lo", "hi", "expected"),
    [
        ([(2, 0.8)], (1, 0.4), 1, 3, (0.6 + 0.8) / 2),  # chord from the anchor, then flat
        ([(0.5, 0.5), (3, 1.0)], (1, 0.2), 1, 3, (0.6 + 1.0) / 2),  # cheaper than the anchor: anchor dominated
        ([(2, 0.1)], (1, 0.4), 1, 3, 0.4),  # a router worse than the cheapest model gets the cheapest model
        ([(1, 0.4), (3, 0.8)], None, 2, 2, 0.6),  # an empty range: the hull's height at that cost
    ],
)
def test_aiq_with_the_cheapest_model_anchor(points, anchor, lo, hi, expected) -> None:
    assert aiq(np.array(points, dtype=float), lo, hi, anchor) == pytest.approx(expected)


def test_pgr_is_zero_at_weak_and_one_at_strong() -> None:
    assert pgr(np.array([0.2, 0.6, 0.4]), q_weak=0.2, q_strong=0.6).tolist() == pytest.approx([0.0, 1.0, 0.5])


def test_apgr_known_answers() -> None:
    # 0..0.5: (0 + 0.8) / 2 x 0.5 = 0.2; 0.5..1: (0.8 + 1) / 2 x 0.5 = 0.45
    assert apgr(np.array([0, 0.5, 1]), np.array([0, 0.8, 1])) == pytest.approx(0.65)
    assert apgr(np.linspace(0, 1, 11), np.linspace(0, 1, 11)) == pytest.approx(0.5)  # random: the diagonal
    assert apgr(np.array([1, 0, 0.5, 0.5]), np.array([1, 0, 0.6, 1.0])) == pytest.approx(
        0.65
    )  # unsorted, duplicate share -> mean


@pytest.mark.parametrize(
    ("share", "values", "p", "expected"),
    [
        ([0, 0.5, 1], [0, 0.8, 1], 0.5, 0.3125),  # on the first segment: 0.5 x 0.5 / 0.8
        ([0, 0.5, 1], [0, 0.8, 1], 0.8, 0.5),
        ([0, 0.5, 1], [0, 0.8, 1], 0.9, 0.75),
        ([0, 0.25, 0.5, 0.75, 1], [0, 0.6, 0.4, 0.9, 1], 0.5, 0.25 * 0.5 / 0.6),
        ([0, 0.25, 0.5, 0.75, 1], [0, 0.6, 0.4, 0.9, 1], 0.8, 0.5 + 0.25 * 0.4 / 0.5),  # first crossing after the dip
        ([0, 1], [0.7, 1], 0.5, 0.0),  # already there with no strong calls
        ([0, 0.5], [0, 0.3], 0.5, None),  # never
    ],
)
def test_cpt_known_answers(share, values, p, expected) -> None:
    got = cpt(np.array(share, dtype=float), np.array(values, dtype=float), p)
    assert got == (None if expected is None else pytest.approx(expected))


def test_savings_is_the_cheapest_point_at_or_above_the_reference_quality() -> None:
    pts = np.array([(1, 0.5), (2, 0.7), (3, 0.9)], dtype=float)
    assert savings(pts, ref_cost=4.0, ref_quality=0.7) == pytest.approx(0.5)
    assert savings(pts, ref_cost=2.0, ref_quality=0.9) == pytest.approx(-0.5)  # matching it costs more
    assert savings(pts, ref_cost=4.0, ref_quality=0.95) is None
    assert savings(pts, ref_cost=2.0, ref_quality=0.7 + 1e-15) == pytest.approx(0.0)  # a tie up to rounding is reached


def test_bootstrap_of_identical_prompts_has_no_spread() -> None:
    # 2 points x 5 identical prompts; reference cost 4, quality 0.7 -> point 2 (cost 2) saves exactly 0.5
    cost = np.array([[1.0] * 5, [2.0] * 5])
    qual = np.array([[0.5] * 5, [0.8] * 5])
    ci = savings_bootstrap(cost, qual, np.full(5, 4.0), np.full(5, 0.7), samples=200, seed=0)
    assert (ci.low, ci.high, ci.reached) == (pytest.approx(0.5), pytest.approx(0.5), 1.0)
    never = savings_bootstrap(cost, qual, np.full(5, 4.0), np.full(5, 0.9), samples=50, seed=0)
    assert (never.low, never.high, never.reached) == (None, None, 0.0)


def test_bootstrap_ci_covers_the_point_estimate_and_is_seeded() -> None:
    rng = np.random.default_rng(1)
    cost, qual = rng.uniform(0.5, 1.5, (3, 400)), rng.uniform(0.6, 1.0, (3, 400))
    ref_c, ref_q = np.full(400, 2.0), np.full(400, 0.7)
    a = savings_bootstrap(cost, qual, ref_c, ref_q, samples=300, seed=3)
    b = savings_bootstrap(cost, qual, ref_c, ref_q, samples=300, seed=3)
    point = savings(np.column_stack([cost.mean(1), qual.mean(1)]), 2.0, 0.7)
    assert a == b and a.low <= point <= a.high and a.high - a.low < 0.1


def test_bootstrap_counts_the_reference_itself_as_reaching_it() -> None:
    rng = np.random.default_rng(2)
    ref_c, ref_q = rng.uniform(1, 2, 300), rng.uniform(0, 1, 300)
    cost, qual = np.vstack([ref_c, ref_c / 2]), np.vstack([ref_q, ref_q / 2])  # always-reference, and a cheap bad point
    ci = savings_bootstrap(cost, qual, ref_c, ref_q, samples=500, seed=0)
    assert (ci.low, ci.high, ci.reached) == (pytest.approx(0.0, abs=1e-12), pytest.approx(0.0, abs=1e-12), 1.0)


def test_selection_regret_known_answer() -> None:
    quality = np.array([[0.2, 0.5, 0.9], [0.6, 0.3, 0.8], [np.nan, 0.1, 0.4]])
    cost = np.array([[1, 2, 3], [1, 2, 3], [1, 2, 3]], dtype=float)
    # chosen: model 1 each time. p1: affordable {0, 1}, best 0.5 -> 0; p2: best 0.6 -> 0.3;
    # p3: model 0 did not answer, affordable {1} -> 0
    assert selection_regret(quality[:, 1], cost[:, 1], quality, cost) == pytest.approx(0.1)
    # choosing the dearest model is never regretted against cheaper ones only if it is the best
    assert selection_regret(quality[:, 2], cost[:, 2], quality, cost) == pytest.approx(0.0)


# ------------------------------------------------------------------------------------------ pair CIs and random


def test_random_pair_apgr_is_centred_on_one_half_with_a_known_spread() -> None:
    rng = np.random.default_rng(1)
    qs, qw = (rng.random(400) < 0.8).astype(float), (rng.random(400) < 0.6).astype(float)
    r = random_pair(qs, qw, np.linspace(0, 1, 41), 400, 0)
    assert r.apgr_mean == pytest.approx(0.5, abs=0.01)
    assert 0.52 < r.apgr_p95 < 0.65 and r.cpt50_mean == pytest.approx(0.5, abs=0.03)
    assert random_pair(qs, qw, np.linspace(0, 1, 41), 50, 3) == random_pair(
        qs, qw, np.linspace(0, 1, 41), 50, 3
    )  # seeded


def test_pair_bootstrap_of_a_perfect_router_is_tight_and_covers_its_apgr() -> None:
    # strong right on the first half only, weak never: sending those first recovers the whole gap at share 0.5
    qs = np.r_[np.ones(100), np.zeros(100)]
    qw = np.zeros(200)
    S = np.array([np.arange(200) < k for k in range(0, 201, 10)])
    ci = pair_bootstrap(S, qs, qw, 300, 0)
    point = apgr(S.mean(axis=1), np.minimum(S.mean(axis=1) * 2, 1.0))
    assert point == pytest.approx(0.75, abs=1e-9)
    assert ci.apgr[0] <= point <= ci.apgr[1] and ci.apgr[1] - ci.apgr[0] < 0.08
    assert ci.cpt50[0] <= 0.25 <= ci.cpt50[1]
