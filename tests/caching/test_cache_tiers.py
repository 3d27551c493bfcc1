"""Two-tier prefix-block cache: hand-computed traces, equality with one LRU of fast + slow blocks, speed, main()."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT

from caching.sim import block_trace, select_rows, simulate_lru
from caching.tiers import FAST, MISS, SLOW, TiersParams, main, simulate_tiers, simulate_two_tier, tier_run

MOONCAKE = ROOT / "data/sample/mooncake_conversation.jsonl.gz"
M, F, S = MISS, FAST, SLOW


def one_block_requests(blocks: list[int]) -> pd.DataFrame:
    """One request per block, one second apart, 512 tokens each."""
    t0 = pd.Timestamp("2024-01-01", tz="UTC")
    return pd.DataFrame(
        {
            "timestamp": [t0 + pd.Timedelta(seconds=i) for i in range(len(blocks))],
            "input_tokens": 512,
            "prefix_blocks": [[b] for b in blocks],
        }
    )


# Hand-traced (fast 1, slow 2):          fast  slow      outcome
# 1 miss                                  [1]   []        M
# 1 fast hit                              [1]   []        F
# 2 miss, 1 demoted                       [2]   [1]       M
# 1 slow hit, promoted; 2 demoted         [1]   [2]       S
# 3 miss, 1 demoted (slow has room)       [3]   [2 1]     M
# 2 slow hit, promoted; 3 demoted         [2]   [1 3]     S
# 4 miss, 1 dropped, 2 demoted            [4]   [3 2]     M
# 1 miss, 3 dropped, 4 demoted            [1]   [2 4]     M
HAND = [1, 1, 2, 1, 3, 2, 4, 1]


@pytest.mark.parametrize(
    ("fast", "slow", "outcome"),
    [
        (1, 2, [M, F, M, S, M, S, M, M]),
        (1, 1, [M, F, M, S, M, M, M, M]),  # 3: drops 2 from slow; 2 then misses
        (0, 3, [M, S, M, S, M, S, M, M]),  # one LRU of 3 whose hits are all slow
        (3, 0, [M, F, M, F, M, F, M, M]),  # one LRU of 3 whose hits are all fast
        (2, 0, [M, F, M, F, M, M, M, M]),
        (0, 0, [M] * 8),
    ],
)
def test_hand_traced_outcomes(fast: int, slow: int, outcome: list[int]) -> None:
    assert simulate_two_tier(np.array(HAND), fast, slow).tolist() == outcome


def test_latency_known_answer() -> None:
    # fast 1 / slow 2 on HAND: 1 fast hit, 2 slow hits, 5 misses over 8 counted lookups
    trace = block_trace(select_rows(one_block_requests(HAND)), eval_from=0.0)
    params = TiersParams(fast_ms=3.0, slow_ms=15.0, miss_ms_per_block=50.0)
    run = tier_run(trace, 1, 2, params)
    assert (run.fast_hit_ratio, run.slow_hit_ratio, run.hit_ratio) == (1 / 8, 2 / 8, 3 / 8)
    assert run.expected_ms == pytest.approx((3 + 2 * 15 + 5 * 50) / 8)  # 35.375
    assert run.saved_ms == pytest.approx(50 - 35.375) and run.saved_share == pytest.approx(14.625 / 50)
    # eval_from 0.5: only the lookups at t >= 3.5 s count (the last four: 3 M, 2 S, 4 M, 1 M)
    late = tier_run(block_trace(select_rows(one_block_requests(HAND)), eval_from=0.5), 1, 2, params)
    assert (late.fast_hit_ratio, late.slow_hit_ratio) == (0.0, 0.25) and late.expected_ms == pytest.approx(
        (15 + 3 * 50) / 4
    )


def lru_hits(block: np.ndarray, capacity: int) -> np.ndarray:
    """`simulate_lru`, which needs a capacity of at least 1; no cache hits nothing."""
    return simulate_lru(block, capacity) if capacity else np.zeros(len(block), dtype=bool)


@pytest.mark.parametrize("seed", range(4))
def test_two_tier_total_hits_equal_one_lru_of_both_capacities(seed: int) -> None:
    rng = np.random.default_rng(seed)
    block = rng.integers(0, 40, 600) if seed % 2 else rng.zipf(1.3, 600) % 200  # uniform and skewed traces
    for fast, slow in itertools.product([0, 1, 3, 8], [0, 1, 5, 20]):
        outcome = simulate_two_tier(block, fast, slow)
        assert np.array_equal(outcome != MISS, lru_hits(block, fast + slow)), (fast, slow)  # lookup for lookup
        # the fast tier is the top of the LRU stack: its hits are those of an LRU of `fast` blocks
        assert np.array_equal(outcome == FAST, lru_hits(block, fast)), (fast, slow)


def test_negative_capacity_is_refused() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        simulate_two_tier(np.array(HAND), -1, 2)


@pytest.fixture(scope="module")
def mooncake() -> pd.DataFrame:
    frame = pd.read_json(MOONCAKE, lines=True, dtype={"request_id": str})
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], unit="ms", utc=True)
    return select_rows(frame).iloc[:3000].reset_index(drop=True)


def test_mooncake_slice_matches_lru_and_is_fast(mooncake: pd.DataFrame) -> None:
    params = TiersParams(fast_capacities=(0, 200), slow_capacities=(0, 800))
    report = simulate_tiers(mooncake, params)
    trace = block_trace(mooncake, params.eval_from)
    by = {(r.fast_capacity, r.slow_capacity): r for r in report.runs}
    assert set(by) == {(0, 0), (0, 800), (200, 0), (200, 800)} and report.counted_lookups == int(trace.counted.sum())
    for (fast, slow), run in by.items():
        lru = lru_hits(trace.block, fast + slow)[trace.counted].mean()
        assert run.hit_ratio == pytest.approx(lru)
    assert by[(0, 0)].expected_ms == params.miss_ms_per_block and by[(0, 0)].lookups_per_s is None
    # a fast tier in front of the same slow one: same slow-or-better hits, lower latency
    assert by[(200, 800)].hit_ratio > by[(0, 800)].hit_ratio and by[(200, 800)].expected_ms < by[(0, 800)].expected_ms
    started = time.perf_counter()
    simulate_two_tier(trace.block, 200, 800)
    speed = len(trace) / (time.perf_counter() - started)
    assert speed > 500_000, speed  # measured ~2.5M lookups/s on the full sample; room for a busy machine
    assert json.loads(json.dumps(report.to_json()))["runs"][0]["fast_capacity"] == 0


def test_main_writes_report_and_plot(tmp_path: Path) -> None:
    out = tmp_path / "tiers"
    report = main(
        [MOONCAKE],
        params_file=ROOT / "params.yaml",
        out=out,
        fast_capacities=[0, 100],
        slow_capacities=[0, 400],
        limit_rows=1200,
    )
    saved = json.loads((out / "tiers_report.json").read_text())
    assert saved["requests"] == report.requests == 1200 and len(saved["runs"]) == 4
    assert [(r["fast_capacity"], r["slow_capacity"]) for r in saved["runs"]] == [(0, 0), (0, 400), (100, 0), (100, 400)]
    assert all(0 <= r["hit_ratio"] <= 1 and r["saved_ms"] >= 0 for r in saved["runs"])
    assert (out / "cache_tiers.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_defaults_are_the_documented_ones() -> None:
    p = TiersParams()
    assert (p.fast_ms, p.slow_ms, p.miss_ms_per_block, p.eval_from, p.block_tokens) == (3.0, 15.0, 50.0, 0.5, 512)
    assert p.fast_capacities == (0, 250, 1000, 4000) and p.slow_capacities == (0, 1000, 4000, 16000, 64000)


def test_main_names_a_trace_without_prefix_blocks(tmp_path: Path) -> None:
    from conftest import good_row

    from core.errors import BeastError

    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(good_row(i)) + "\n" for i in range(3)))
    with pytest.raises(BeastError, match="no rows with prefix_blocks"):
        main([path], out=tmp_path / "out")
