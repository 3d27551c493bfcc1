"""The guarded cache policy, the online expert and the prefix regimes: known answers, a brute-force
reference of the guard's real cache, no future leak, seeded regime properties, the guarantee on regimes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT

from beast.cli import main as beast_main
from caching.guard import OnlineParams, guard_cache, guard_leaders, online_predictions, refit_points
from caching.sim import (
    TRANSFER_FEATURES,
    CacheSimParams,
    CacheSimReport,
    GuardParams,
    LearnedParams,
    Replay,
    block_trace,
    cold_start,
    fit_learned,
    libcachesim_hits,
    lookup_features,
    select_rows,
    simulate,
    simulate_arc,
    simulate_lru,
    simulate_s3fifo,
)
from traces.synth import PREFIX_REGIMES, prefix_regime_frame

# --- prefix regimes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("regime", PREFIX_REGIMES)
def test_regimes_are_seeded_and_sized(regime: str) -> None:
    a, b, c = (prefix_regime_frame(regime, 400, seed) for seed in (3, 3, 4))
    assert len(a) == 400 and a["prefix_blocks"].map(len).min() >= 1
    pd.testing.assert_frame_equal(a, b)
    assert not a["prefix_blocks"].equals(c["prefix_blocks"])
    assert pd.to_datetime(a["timestamp"]).is_monotonic_increasing
    n = a["prefix_blocks"].map(len).to_numpy()
    assert ((a["input_tokens"] > 512 * (n - 1)) & (a["input_tokens"] <= 512 * n)).all()


def _seen_before(frame: pd.DataFrame) -> list[np.ndarray]:
    seen: set[int] = set()
    out = []
    for blocks in frame["prefix_blocks"]:
        out.append(np.array([b in seen for b in blocks]))
        seen.update(blocks)
    return out


def test_regime_known_properties() -> None:
    system = prefix_regime_frame("system", 3000, 0)
    # every request = one of 200 prompts (4-16 blocks, all seen once the prompt recurs) + 1-12 new blocks
    firsts = {b[0] for b in system["prefix_blocks"]}
    assert len(firsts) <= 200
    new_tail = [int((~s).sum()) for s in _seen_before(system)]
    assert min(new_tail) >= 1 and np.mean(new_tail) == pytest.approx(6.5 + 0.6, abs=0.8)

    oneoff = _seen_before(prefix_regime_frame("oneoff", 3000, 0))
    unique = np.mean([not s.any() and len(s) >= 8 for s in oneoff])
    assert unique == pytest.approx(0.7, abs=0.03)  # 70 % one-off prompts (a new template's first use adds a little)

    multiturn = prefix_regime_frame("multiturn", 3000, 0)
    assert len({tuple(b[:2]) for b in multiturn["prefix_blocks"]}) == 1  # one shared 2-block system prompt
    seen = _seen_before(multiturn)
    # a later turn re-sends the whole conversation: its unseen blocks are a suffix of 1-3 blocks
    suffix = [s for s in seen if s[2:].any()]
    assert len(suffix) > 1500
    assert all(not s[int(np.argmin(s[2:])) + 2 :].any() or s[2:].all() for s in suffix[:500])

    toolloop = _seen_before(prefix_regime_frame("toolloop", 3000, 0))
    extended = np.mean([s[:-1].all() and not s[-1] for s in toolloop])
    assert extended > 0.8  # most calls re-send the loop's prefix and append one new tool-result block


# --- the guard ----------------------------------------------------------------------------------------


def libcachesim_members(policy: str):
    """A libCacheSim cache and its membership test (find without updating the cache)."""
    import libcachesim as lcs

    from caching.sim import _libcachesim_cache

    req = lcs.Request()
    req.obj_size = 1
    cache = _libcachesim_cache(policy, CAPACITY)

    def member(b: int) -> bool:
        req.obj_id = b
        return cache.find(req, False) is not None

    return cache, req, member


CAPACITY = 16


def libcachesim_until(block: np.ndarray, policy: str) -> np.ndarray:
    """When each lookup's block left libCacheSim's cache, found by asking after every lookup whether each
    block it held is still there (n: still held at its next lookup or the end)."""
    cache, req, member = libcachesim_members(policy)
    n = len(block)
    until = np.full(n, n, dtype=np.int64)
    held: dict[int, int] = {}  # block -> its last lookup, while cached
    for i, b in enumerate(block.tolist()):
        req.obj_id = b
        cache.get(req)
        held[b] = i
        for x, j in list(held.items()):
            if not member(x):
                until[j] = i
                del held[x]
    return until


def reference_real_cache(block: np.ndarray, untils: list[np.ndarray], leader: np.ndarray, capacity: int) -> np.ndarray:
    """Rule 3 of the guard stepped with explicit sets: the leader holds x after lookup i iff
    untils[leader][x's last lookup] > i; the real cache keeps what the leader holds, keeps a hit block the
    leader dropped, and makes room by evicting the block the leader dropped first (ties: the earlier last lookup)."""
    real: dict[int, int] = {}
    hits = np.zeros(len(block), dtype=bool)
    for i, b in enumerate(block.tolist()):
        u = untils[leader[i]]
        hits[i] = b in real
        if u[i] > i or b in real:
            if b not in real and len(real) >= capacity:
                stale = [x for x in real if u[real[x]] <= i]
                assert stale, "the leader holds b and at most `capacity` blocks: one cached block must be stale"
                del real[min(stale, key=lambda x: (u[real[x]], real[x]))]
            real[b] = i
        assert len(real) <= capacity
    return hits


def reference_subset_cache(block: np.ndarray, policies: list[str], leader: np.ndarray) -> np.ndarray:
    """R' (rule 3): the real cache kept a subset of the leader's shadow (libCacheSim's caches, membership by
    find): at a switch R' := R' ∩ S_new; after each lookup R' := (R' ∩ S_leader) ∪ {b if b in S_leader}."""
    caches = [libcachesim_members(p) for p in policies]
    real: set[int] = set()
    hits = np.zeros(len(block), dtype=bool)
    for i, b in enumerate(block.tolist()):
        member = caches[leader[i]][2]
        if i and leader[i] != leader[i - 1]:
            real = {x for x in real if member(x)}
        hits[i] = b in real
        for cache, req, _ in caches:
            req.obj_id = b
            cache.get(req)
        real = {x for x in real if member(x)}
        if member(b):
            real.add(b)
    return hits


@pytest.mark.parametrize("policy", ["lru", "arc", "s3fifo"])
def test_own_shadows_record_when_libcachesim_drops_a_block(policy: str) -> None:
    rng = np.random.default_rng(3)
    block = np.where(rng.random(3000) < 0.6, rng.integers(0, 40, 3000), rng.integers(40, 400, 3000))
    until = np.empty(len(block), dtype=np.int64)
    hits = OWN[policy](block, CAPACITY, until)
    assert np.array_equal(until, libcachesim_until(block, policy))
    assert np.array_equal(hits, libcachesim_hits(block, policy, CAPACITY))


OWN = {"lru": simulate_lru, "arc": simulate_arc, "s3fifo": simulate_s3fifo}


@pytest.mark.parametrize("seed", range(4))
def test_guard_cache_equals_its_reference_and_contains_the_subset_cache(seed: int) -> None:
    rng = np.random.default_rng(seed)
    block = np.where(rng.random(1500) < 0.6, rng.integers(0, 40, 1500), rng.integers(40, 400, 1500))
    policies = ["lru", "arc", "s3fifo"]
    leader = np.repeat(rng.integers(0, 3, 30), 50)  # arbitrary switches every 50 lookups
    untils = []
    for p in policies:
        untils.append(np.empty(len(block), dtype=np.int64))
        OWN[p](block, CAPACITY, untils[-1])
    hits = guard_cache(block, leader, untils, CAPACITY)
    assert np.array_equal(hits, reference_real_cache(block, untils, leader, CAPACITY))
    # it holds every block the subset-of-the-leader cache holds, so it hits wherever that one does ...
    subset = reference_subset_cache(block, policies, leader)
    assert not (subset & ~hits).any()
    # ... and more: the blocks a switch would drop keep hitting (measured: 1.6-2.9x the hits, a switch every 50)
    assert hits.sum() > 1.5 * subset.sum()


def test_guard_cache_known_answers() -> None:
    # blocks 1 2 1 2, capacity 1; expert 0 never admits anything; expert 1 holds block 1 only
    block = np.array([1, 2, 1, 2])
    never = np.array([0, 1, 2, 3])
    ones = np.array([4, 1, 4, 3])  # block 1 held until its next lookup / the end; block 2 not admitted
    assert guard_cache(block, np.array([1, 1, 1, 1]), [never, ones], 1).tolist() == [False, False, True, False]
    # leader 0 until lookup 2: block 1 was never cached, so the new leader's hit is a miss here
    assert guard_cache(block, np.array([0, 0, 1, 1]), [never, ones], 1).tolist() == [False] * 4
    # leader 1 then 0: block 1 stays cached (nothing needed its room) and hits, though the new leader dropped it
    assert guard_cache(block, np.array([1, 1, 0, 0]), [never, ones], 1).tolist() == [False, False, True, False]
    # room: blocks 1 2 3 1, capacity 1, one expert holding the latest block: 1 goes for 2, 2 for 3: no hit
    lru1 = np.array([1, 2, 3, 4])
    lead = np.zeros(4, dtype=np.int64)
    assert guard_cache(np.array([1, 2, 3, 1]), lead, [lru1], 1).tolist() == [False] * 4
    assert reference_real_cache(np.array([1, 2, 3, 1]), [lru1], lead, 1).tolist() == [False] * 4


def test_guard_leader_uses_only_the_past_and_hysteresis() -> None:
    rng = np.random.default_rng(0)
    a = rng.random(20_000) < 0.30
    b = rng.random(20_000) < 0.31
    c = np.concatenate([rng.random(10_000) < 0.1, rng.random(10_000) < 0.6])
    params = GuardParams(interval=100, margin=0.05, half_life_min=500, half_life_factor=1.0)
    lead = guard_leaders([a, b, c], 100, params)
    assert lead[0] == 0 and set(lead[:10_000].tolist()) == {0}  # b's 1-point edge is within the margin
    assert lead[-1] == 2 and np.flatnonzero(lead == 2)[0] > 10_000
    # altering lookups from t on leaves the decisions before t unchanged
    c2 = c.copy()
    c2[15_000:] = False
    lead2 = guard_leaders([a, b, c2], 100, params)
    assert np.array_equal(lead[:15_001], lead2[:15_001])


# --- the online expert: no future leak ----------------------------------------------------------------


@pytest.mark.parametrize("validate", [0.0, 0.25])
def test_online_expert_uses_only_the_past(validate: float) -> None:
    frame = select_rows(prefix_regime_frame("mixture", 1500, 1)).reset_index(drop=True)
    trace = block_trace(frame, 0.5)
    params = CacheSimParams(
        learned=LearnedParams(num_boost_round=20, min_data_in_leaf=50),
        online=OnlineParams(first_refit=2000, num_boost_round=20, validate=validate),
    )
    points = refit_points(len(trace), params.online)
    assert points[:3] == [2000, 4000, 8000] and len(points) >= 3
    t = points[2] + 1234  # alter every request from the one holding lookup t on
    row = int(trace.request[t])
    altered = frame.copy()
    later = altered.index >= row
    altered["prefix_blocks"] = [
        [x + 10**12 for x in b] if late else b for b, late in zip(frame["prefix_blocks"], later)
    ]
    start = int(np.flatnonzero(trace.request == row)[0])
    trace2 = block_trace(altered, 0.5)
    X, X2 = lookup_features(frame, trace), lookup_features(altered, trace2)
    p1 = online_predictions(X, trace, params.learned, params.online)
    p2 = online_predictions(X2, trace2, params.learned, params.online)
    assert [r.at for r in p1.refits] == [r.at for r in p2.refits] == points
    assert [r for r in p1.refits if r.at <= start] == [r for r in p2.refits if r.at <= start]  # decided alike
    assert sum(r.adopted for r in p1.refits) >= 2
    assert np.array_equal(p1.curve[:start], p2.curve[:start])
    assert not np.array_equal(p1.curve[start:], p2.curve[start:])  # the alteration did reach later refits
    # a survival curve never falls as the horizon grows
    assert (np.diff(p1.curve, axis=1) >= 0).all() and p1.curve.min() >= 0 and p1.curve.max() <= 1
    # the cache decisions before t are the same: hits before t equal
    r1, r2 = Replay(frame, trace, params), Replay(altered, trace2, params)
    r1.X, r2.X = X, X2
    for capacity in (100, 800):
        h1, h2 = r1.hits("online", capacity)[0], r2.hits("online", capacity)[0]
        assert np.array_equal(h1[:start], h2[:start])


# --- the guarantee on seeded regimes ------------------------------------------------------------------


@pytest.mark.parametrize("regime", ["system", "oneoff", "mixture"])
def test_guard_keeps_the_best_classic_on_seeded_regimes(regime: str) -> None:
    params = CacheSimParams(
        capacities=(250, 1000, 4000),
        policies=("lru", "arc", "s3fifo", "guarded", "belady"),
    )
    ratios = simulate(prefix_regime_frame(regime, 3000, 0), params).policies()
    for i in range(3):
        best = max(ratios[p][i] for p in ("lru", "arc", "s3fifo"))
        assert ratios["guarded"][i] >= best - 0.005, (regime, params.capacities[i], ratios)
        assert ratios["guarded"][i] <= ratios["belady"][i] + 1e-12


@pytest.mark.parametrize("capacity", [20, 64, 250])
def test_own_arc_and_s3fifo_equal_libcachesim_hit_for_hit(capacity: int) -> None:
    rng = np.random.default_rng(capacity)
    hot = rng.integers(0, 3 * capacity, 20_000)
    block = np.where(rng.random(20_000) < 0.7, hot, rng.integers(10**6, 10**6 + 50 * capacity, 20_000))
    regime = block_trace(select_rows(prefix_regime_frame("mixture", 800, 2))).block
    for seq in (block, regime):
        for policy, own in (("arc", simulate_arc), ("s3fifo", simulate_s3fifo)):
            assert np.array_equal(own(seq, capacity), libcachesim_hits(seq, policy, capacity)), (policy, capacity)


def test_transfer_feature_set_is_scale_free() -> None:
    frame = select_rows(prefix_regime_frame("system", 600, 0))
    trace = block_trace(frame)
    X = lookup_features(frame, trace)
    model = fit_learned(X, trace, LearnedParams(features="transfer", num_boost_round=5, min_data_in_leaf=20))
    assert model.features == TRANSFER_FEATURES
    # no seconds, no load, no counts that grow with the trace's length or its identities
    assert not [f for f in model.features if f.endswith("_s") or "secs" in f or "rate" in f or "count" in f]
    assert np.array_equal(model.predict(X), model.predict(X[list(TRANSFER_FEATURES)]))
    with pytest.raises(ValueError, match="unknown feature set"):
        fit_learned(X, trace, LearnedParams(features="magic"))


def test_transfer_cli_smoke(tmp_path: Path) -> None:
    out = tmp_path / "transfer"
    code = beast_main(
        [
            "cache",
            "transfer",
            "--regime",
            "oneoff",
            "system",
            "--rows",
            "400",
            "--capacity",
            "100",
            "400",
            "--out",
            str(out),
            "--params",
            str(ROOT / "params.yaml"),
        ]
    )
    assert code == 0
    report = json.loads((out / "transfer_report.json").read_text())
    pairs = {(p["train"], p["test"]) for p in report["pairs"]}
    assert pairs == {(a, b) for a in ("oneoff", "system") for b in ("oneoff", "system")}
    for p in report["pairs"]:
        assert set(p["policies"]) == {"lru", "arc", "s3fifo", "learned", "online", "guarded", "belady"}
        assert all(len(v) == 2 for v in p["policies"].values())
    assert (out / "transfer.md").read_text().startswith("\n**train")
    assert (out / "transfer.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cache_predictor_transfer_auc_pairs() -> None:
    from models.cache import FEATURES, TRANSFER_FEATURES, transfer_auc
    from models.params import CacheParams

    frames = {r: prefix_regime_frame(r, 3000, 0, mean_rps=1.0) for r in ("system", "oneoff")}
    params = CacheParams(num_boost_round=20)
    for features in (FEATURES, TRANSFER_FEATURES):
        rows = transfer_auc(frames, params, features)
        assert [(r["train"], r["test"]) for r in rows] == [(a, b) for a in frames for b in frames]
        assert all(r["auc"] is None or 0.0 <= r["auc"] <= 1.0 for r in rows)
        own = {r["train"]: r["auc"] for r in rows if r["train"] == r["test"]}
        assert own["system"] > 0.7 and own["oneoff"] > 0.7  # measured: 0.85-0.97 on 3,000 rows


def test_guard_records_when_its_experts_first_differ_and_the_cold_start_note() -> None:
    """`guard_first_difference`: the first lookup where any two experts hit differently (None when they never do:
    a cache larger than the trace's distinct blocks); `cold_start` names the capacities where that comes less than
    one leader decision before the counting starts, or never."""
    frame = select_rows(prefix_regime_frame("oneoff", 300, 0))
    trace = block_trace(frame)
    params = CacheSimParams(capacities=(40, 10**6), policies=("guarded",))
    replay = Replay(frame, trace, params)
    for capacity in params.capacities:
        replay.hits("guarded", capacity)
    names = ("arc_own", "online", "s3fifo_own", "lru_own")
    hits = np.stack([replay.hits(e, 40)[0] for e in names])
    first = int(np.flatnonzero((hits != hits[0]).any(axis=0))[0])
    assert 0 < first < len(trace) and replay.info["guard_first_difference"] == {"40": first, "1000000": None}
    start = trace.eval_start
    assert first < start - params.guard.interval  # this trace gives the guard evidence at 40 blocks

    def report(first_difference: dict) -> CacheSimReport:
        info = {"guard_first_difference": first_difference}
        return CacheSimReport("t", 1, 1000, 1, 400, 1, 512, 0.5, (100, 200, 400), (), info)

    guard = params.guard  # interval 256: the counting starts at lookup 600, so evidence must come before 344
    assert cold_start(report({"100": 344, "200": 0}), guard) is None
    line = cold_start(report({"100": 344, "200": 345, "400": None}), guard)
    assert line is not None and "at 200 blocks from lookup 345 and at 400 blocks never:" in line
    assert "100 blocks" not in line
    assert "(lookup 600)" in line and "first expert, arc," in line
    assert "differently at 400 blocks never:" in cold_start(report({"100": 0, "400": None}), guard)
    assert cold_start(report({}), guard) is None  # the guard did not run
