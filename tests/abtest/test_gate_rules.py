"""abtest/gate.py rules added for issue 20: every reason code triggered by a scenario built for it, failed
requests and missing costs never promote, and A/B/n experiments (k-arm SRM, Holm across arms x tests, at most
one winner, only the registered challenger promotable)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from test_gate import experiment

from abtest.gate import GateCode, GateParams, decide
from core.errors import BeastError

LOOSE = GateParams(error_rate_margin=0.05, cost_margin=0.5)  # errors and cost pass easily: one rule decides


def three_arms(n: int = 3000, seed: int = 0, dq: dict[str, float] | None = None, shares=(1, 1, 1)) -> pd.DataFrame:
    """champion, challenger, challenger_2 with n rows on average each (split by `shares`); quality
    N(0.7, 0.15) shifted by dq[arm]; 1% errors; the challengers cost 10% less."""
    rng = np.random.default_rng(seed)
    names = np.array(["champion", "challenger", "challenger_2"])
    w = np.asarray(shares, dtype=float) / sum(shares)
    arm = names[rng.choice(3, size=3 * n, p=w)]
    shift = pd.Series(arm).map(dq or {}).fillna(0.0).to_numpy()
    return pd.DataFrame({
        "variant": arm,
        "status": np.where(rng.random(3 * n) < 0.01, "error", "ok"),
        "quality": np.clip(rng.normal(0.7, 0.15, 3 * n) + shift, 0, 1),
        "cost_usd": rng.lognormal(np.log(0.002), 0.5, 3 * n) * np.where(arm == "champion", 1.0, 0.9),
    })  # fmt: skip


ABN = GateParams(more_challengers=("challenger_2",), error_rate_margin=0.05, cost_margin=0.5)


def paired_replay(same: bool) -> pd.DataFrame:
    """An offline replay: both arms answer the same 150 prompts once each."""
    rng = np.random.default_rng(3)
    q = rng.random(150).round(3)
    c = rng.lognormal(np.log(0.002), 0.5, 150)
    b_q = q if same else np.clip(q + rng.normal(0, 0.05, 150), 0, 1)
    ids = [f"p{i}" for i in range(150)]
    a = pd.DataFrame({"variant": "champion", "prompt_id": ids, "status": "ok", "quality": q, "cost_usd": c})
    b = pd.DataFrame({"variant": "challenger", "prompt_id": ids, "status": "ok", "quality": b_q, "cost_usd": c})
    return pd.concat([a, b], ignore_index=True)


def _all_errors() -> pd.DataFrame:
    return experiment(n=1000).assign(status="error")


def _no_cost() -> pd.DataFrame:
    frame = experiment(n=1000)
    frame.loc[frame["variant"] == "challenger", "cost_usd"] = np.nan
    return frame


SCENARIOS = {  # reason code -> (experiment, params) that raises it
    GateCode.PROMOTE: (lambda: experiment(n=3000), LOOSE),
    GateCode.SRM: (lambda: experiment(n=3000, split=0.7), LOOSE),
    GateCode.TOO_FEW: (lambda: experiment(n=50), LOOSE),
    GateCode.QUALITY_WORSE: (lambda: experiment(n=3000, dq=-0.1), LOOSE),
    GateCode.ERRORS_WORSE: (lambda: experiment(n=3000, derr=0.1), GateParams(cost_margin=0.5)),
    GateCode.COST_WORSE: (lambda: experiment(n=3000, cost_factor=2.0), GateParams(error_rate_margin=0.05)),
    GateCode.NO_LABELS: (lambda: experiment(n=3000, labels=False), LOOSE),
    GateCode.NO_COST: (_no_cost, LOOSE),
    GateCode.NO_SUCCESS: (_all_errors, LOOSE),
    GateCode.EMPTY_ARM: (lambda: experiment(n=3000).query("variant == 'champion'"), LOOSE),
    GateCode.NO_DIFFERENCE: (lambda: paired_replay(same=True), LOOSE),
    GateCode.NOT_PROMOTABLE: (lambda: three_arms(dq={"challenger": -0.1}), ABN),
}


def test_every_reason_code_has_a_scenario() -> None:
    assert set(SCENARIOS) == set(GateCode)


@pytest.mark.parametrize("code", list(SCENARIOS), ids=[str(c) for c in SCENARIOS])
def test_each_reason_code_is_triggered(code: GateCode) -> None:
    make, params = SCENARIOS[code]
    d = decide(make(), params)
    assert code in d.reasons
    assert d.promote is (code == GateCode.PROMOTE)


def test_all_failed_requests_never_promote_even_with_quality_labels() -> None:
    """Before: both arms 100% status=error, labels present -> promote True. A failed request's label is not used."""
    d = decide(_all_errors(), LOOSE)
    assert d.reasons == (GateCode.NO_SUCCESS,) and not d.promote
    assert d.arms["challenger"]["successes"] == 0 and d.arms["challenger"]["quality_labels"] == 0
    one_arm = experiment(n=1000)
    one_arm.loc[one_arm["variant"] == "challenger", "status"] = "error"
    assert decide(one_arm, LOOSE).reasons == (GateCode.NO_SUCCESS,)


def test_quality_is_judged_on_successful_answers_only() -> None:
    """Failed rows carrying a perfect label must not lift an arm's quality."""
    frame = experiment(n=3000, dq=-0.1)
    ch = frame.index[frame["variant"] == "challenger"]
    padded = frame.copy()
    padded.loc[ch[:300], ["status", "quality"]] = ["error", 1.0]
    d = decide(padded, GateParams(error_rate_margin=0.5, cost_margin=0.5))
    assert GateCode.QUALITY_WORSE in d.reasons
    ok = padded[(padded["variant"] == "challenger") & (padded["status"] == "ok")]["quality"]
    assert d.arms["challenger"]["quality_mean"] == pytest.approx(ok.mean(), abs=1e-12)


def test_missing_costs_say_cost_missing_with_a_matching_stat_code() -> None:
    """Before: the reason said cost_worse while stats.cost.code said empty_arm."""
    d = decide(_no_cost(), LOOSE)
    assert d.reasons == (GateCode.NO_COST,)
    assert d.stats["cost"]["code"] == "empty_arm" and d.arms["challenger"]["cost_rows"] == 0


def test_abn_winner_is_the_registered_challenger_when_it_is_best() -> None:
    d = decide(three_arms(dq={"challenger_2": -0.1}), ABN)
    assert d.promote and d.reasons == (GateCode.PROMOTE,)
    assert d.stats["winner"]["arm"] == "challenger"
    assert d.stats["challengers"]["challenger_2"]["reasons"] == ["non_inferiority_failed"]
    assert d.stats["srm"]["counts"] and len(d.stats["srm"]["counts"]) == 3
    # Holm runs over every (arm, test): 2 challengers x 3 tests
    assert d.stats["holm"]["tests"] == [
        f"{c}.{t}" for c in ("challenger", "challenger_2") for t in ("errors", "quality", "cost")
    ]


def test_abn_another_winner_blocks_with_not_promotable() -> None:
    d = decide(three_arms(dq={"challenger": -0.1}), ABN)
    assert not d.promote
    assert d.reasons == (GateCode.QUALITY_WORSE, GateCode.NOT_PROMOTABLE)
    assert d.stats["winner"]["arm"] == "challenger_2"


def test_abn_picks_one_winner_by_quality_when_both_pass() -> None:
    d = decide(three_arms(dq={"challenger_2": 0.05}), ABN)
    assert d.stats["winner"]["arm"] == "challenger_2" and d.reasons == (GateCode.NOT_PROMOTABLE,)
    d = decide(three_arms(dq={"challenger": 0.05}), ABN)
    assert d.stats["winner"]["arm"] == "challenger" and d.promote


def test_k_arm_srm_uses_the_planned_shares() -> None:
    even = three_arms(n=3000)
    assert decide(even, ABN).stats["srm"]["mismatch"] is False
    planned = GateParams(more_challengers=("challenger_2",), planned_shares=(0.5, 0.25, 0.25))
    d = decide(even, planned)
    assert GateCode.SRM in d.reasons and d.stats["srm"]["expected"] == pytest.approx([4500.0, 2250.0, 2250.0], rel=0.01)
    assert decide(three_arms(n=3000, shares=(2, 1, 1)), planned).stats["srm"]["mismatch"] is False


def test_abn_arms_are_found_in_the_data_when_not_configured() -> None:
    """A three-arm file gated with two-arm params is judged as A/B/n, not as A/B with a third arm ignored."""
    d = decide(three_arms(dq={"challenger": -0.1}), LOOSE)
    assert d.reasons == (GateCode.QUALITY_WORSE, GateCode.NOT_PROMOTABLE)
    assert set(d.arms) == {"champion", "challenger", "challenger_2"} and d.stats["winner"]["arm"] == "challenger_2"
    assert d.stats["srm"]["expected"] == pytest.approx([3000.0] * 3)


def test_arm_params_are_checked() -> None:
    with pytest.raises(BeastError, match="distinct"):
        GateParams(more_challengers=("champion",))
    with pytest.raises(BeastError, match="planned_shares has 2 values for 3 arms"):
        GateParams(more_challengers=("c2",), planned_shares=(0.5, 0.5))


def test_aaa_experiments_promote_at_most_alpha() -> None:
    """A/A/A with quality margin 0: the registered challenger must pass every test (Holm over 2 arms x 3 tests)
    and beat the other passing arm, so it promotes in at most ~alpha of runs. Measured with these seeds: 3.0%
    of 200 runs."""
    params = GateParams(more_challengers=("challenger_2",), quality_margin=0.0, error_rate_margin=0.05, cost_margin=0.5)
    rate = float(np.mean([decide(three_arms(n=1500, seed=500 + s), params).promote for s in range(200)]))
    se = math.sqrt(0.05 * 0.95 / 200)
    assert rate <= 0.05 + 2 * se
    assert rate == pytest.approx(0.030, abs=1e-9)
