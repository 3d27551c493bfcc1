"""abtest/gate.py: known verdicts on seeded synthetic experiments, the false-promotion rate at the margin
(seeded simulation), the CLI in dry-run JSON mode, and an end-to-end champion alias move in a tmp MLflow store."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, good_row, write_jsonl

from abtest.gate import GateCode, GateParams, decide, report
from beast.cli import main as cli_main
from core.errors import BeastError
from models.export import export as _real_export
from pipelines.promote import main, rollback


def experiment(
    n: int = 20_000,
    seed: int = 0,
    dq: float = 0.0,
    derr: float = 0.0,
    cost_factor: float = 0.9,
    split: float = 0.5,
    labels: bool = True,
    sd: float = 0.15,
) -> pd.DataFrame:
    """n rows per arm on average: quality ~ N(0.7, sd) clipped to [0, 1], 1% errors, lognormal cost;
    the challenger shifts quality by dq, errors by derr and multiplies cost by cost_factor."""
    rng = np.random.default_rng(seed)
    m = 2 * n
    ch = rng.random(m) < split
    quality = np.clip(rng.normal(0.7, sd, m) + np.where(ch, dq, 0.0), 0, 1) if labels else np.full(m, np.nan)
    err = rng.random(m) < 0.01 + np.where(ch, derr, 0.0)
    return pd.DataFrame({
        "variant": np.where(ch, "challenger", "champion"),
        "status": np.where(err, "error", "ok"),
        "quality": quality,
        "cost_usd": rng.lognormal(np.log(0.002), 0.5, m) * np.where(ch, cost_factor, 1.0),
        "latency_ms": rng.gamma(2.0, 300.0, m),
    })  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "codes"),
    [
        ({}, (GateCode.PROMOTE,)),
        ({"dq": -0.1}, (GateCode.QUALITY_WORSE,)),
        ({"split": 0.7}, (GateCode.SRM,)),
        ({"n": 5}, (GateCode.TOO_FEW,)),
        ({"labels": False}, (GateCode.NO_LABELS,)),
        ({"derr": 0.03}, (GateCode.ERRORS_WORSE,)),
        ({"cost_factor": 1.3}, (GateCode.COST_WORSE,)),
    ],
    ids=[
        "equal-quality-cheaper",
        "quality-minus-0.1",
        "split-70-30",
        "5-rows-per-arm",
        "no-labels",
        "more-errors",
        "costlier",
    ],
)
def test_known_verdicts(kwargs: dict, codes: tuple[GateCode, ...]) -> None:
    d = decide(experiment(**kwargs), GateParams())
    assert d.reasons == codes
    assert d.promote is (codes == (GateCode.PROMOTE,))


def test_numbers_of_a_promoting_and_a_blocked_experiment() -> None:
    d = decide(experiment(), GateParams())
    arms = d.arms
    assert arms["champion"]["rows"] + arms["challenger"]["rows"] == 40_000
    assert arms["challenger"]["cost_mean"] / arms["champion"]["cost_mean"] == pytest.approx(0.9, abs=0.02)
    assert abs(d.stats["quality"]["estimate"]) < 0.005 and d.stats["quality"]["ci_low"] > -0.02
    assert d.stats["holm"]["tests"] == ["errors", "quality", "cost"] and all(d.stats["holm"]["reject"])
    bad = decide(experiment(dq=-0.1), GateParams())
    assert bad.stats["quality"]["estimate"] == pytest.approx(-0.1, abs=0.01)
    assert bad.stats["quality"]["ci_low"] < -0.02 and bad.stats["quality"]["p_value"] == pytest.approx(1.0, abs=1e-6)
    srm = decide(experiment(split=0.7), GateParams()).stats["srm"]
    assert srm["mismatch"] and srm["p_value"] < 1e-100


def test_equal_cost_needs_a_cost_margin() -> None:
    """cost_margin 0 means the challenger must be shown cheaper; with a 10% allowance equal cost passes."""
    same = experiment(cost_factor=1.0)
    assert decide(same, GateParams(cost_margin=0.0)).reasons == (GateCode.COST_WORSE,)
    assert decide(same, GateParams(cost_margin=0.1)).reasons == (GateCode.PROMOTE,)
    assert decide(same, GateParams()).reasons == (GateCode.PROMOTE,)  # default: not worse by more than 5%


def test_bad_data_gives_codes_not_crashes() -> None:
    frame = experiment(n=1000)
    only_champion = frame[frame["variant"] == "champion"]
    d = decide(only_champion, GateParams())
    assert not d.promote and GateCode.EMPTY_ARM in d.reasons and GateCode.SRM in d.reasons
    assert decide(frame.iloc[:0], GateParams()).reasons == (GateCode.EMPTY_ARM,)
    assert decide(frame.drop(columns="variant"), GateParams()).reasons == (GateCode.EMPTY_ARM,)
    constant = frame.assign(quality=1.0, status="ok")  # zero variance in quality
    d = decide(constant, GateParams(error_rate_margin=0.05, cost_margin=0.5))
    assert d.reasons == (GateCode.QUALITY_WORSE,) and d.stats["quality"]["code"] == "zero_variance"
    one_label = frame.assign(quality=np.nan)
    for arm in ("champion", "challenger"):  # a single label per arm: no variance to test with
        one_label.loc[one_label.index[one_label["variant"] == arm][0], "quality"] = 0.5
    d = decide(one_label, GateParams(error_rate_margin=0.05, cost_margin=0.5))
    assert d.reasons == (GateCode.TOO_FEW,) and d.stats["quality"]["code"] == "too_few_samples"
    assert d.arms["champion"]["quality_labels"] == 1 and d.arms["challenger"]["quality_mean"] == 0.5
    text = decide(frame.iloc[:0], GateParams()).to_json()
    assert "NaN" not in text and json.loads(text)["promote"] is False


def _promotion_rate(params: GateParams, dq: float, runs: int = 200, n: int = 2000) -> float:
    return float(np.mean([decide(experiment(n=n, seed=1000 + s, dq=dq, sd=0.2), params).promote for s in range(runs)]))


def test_false_promotion_rate_at_the_margin_is_about_alpha() -> None:
    """200 seeded experiments whose challenger is worse by exactly the quality margin (A/A for margin 0):
    the gate may promote in at most ~alpha of them. Errors and cost are given generous margins so that the
    quality test decides (Holm then leaves quality, the largest p, at the plain alpha)."""
    loose = {"error_rate_margin": 0.5, "cost_margin": 1.0}
    aa = _promotion_rate(GateParams(quality_margin=0.0, **loose), dq=0.0)
    at_margin = _promotion_rate(GateParams(quality_margin=0.02, **loose), dq=-0.02)
    seq = _promotion_rate(GateParams(quality_margin=0.0, sequential=True, **loose), dq=0.0)
    power = _promotion_rate(GateParams(quality_margin=0.02, **loose), dq=0.0, runs=50)
    print(
        f"\npromotion rate at the margin: A/A margin 0 {aa:.3f}, worse by 0.02 at margin 0.02 {at_margin:.3f}, "
        f"A/A mSPRT {seq:.3f}; equal quality at margin 0.02 {power:.3f}"
    )
    sd = math.sqrt(0.05 * 0.95 / 200)
    assert aa <= 0.05 + 2 * sd and at_margin <= 0.05 + 2 * sd  # <= about alpha (0.081)
    assert aa >= 0.01 and at_margin >= 0.01  # and not trivially 0: the test is not over-conservative
    assert seq <= aa  # the always-valid p-value is more conservative at a single look
    assert power >= 0.9  # and an equal challenger does get through with 2,000 rows per arm


def _write_experiment(path: Path, per_arm: int, dq: float, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(2 * per_arm):
        arm = "challenger" if i % 2 else "champion"
        q = float(np.clip(rng.normal(0.7 + (dq if arm == "challenger" else 0.0), 0.1), 0, 1))
        cost = float(rng.lognormal(np.log(0.002), 0.3) * (0.8 if arm == "challenger" else 1.0))
        rows.append(
            good_row(i, variant=arm, quality=round(q, 4), cost_usd=round(cost, 8), latency_ms=float(rng.gamma(2, 300)))
        )
    return write_jsonl(path, rows)


def _params_file(tmp: Path) -> Path:
    p = tmp / "params.yaml"
    p.write_text(
        f"train:\n  prices: {ROOT / 'data/prices.yaml'}\n"
        "gate:\n  error_rate_margin: 0.05\n  quality_margin: 0.05\n  min_rows_per_arm: 100\n"
    )
    return p


def test_cli_dry_run_json_prints_json_and_moves_nothing(tmp_path: Path, capsys, monkeypatch) -> None:
    from models import registry

    moved = []
    monkeypatch.setattr(registry, "set_alias", lambda *a, **k: moved.append(a))
    monkeypatch.setattr(registry, "version_by_alias", lambda *a, **k: moved.append(a))
    exp = _write_experiment(tmp_path / "ab.jsonl", per_arm=300, dq=0.0)
    out = tmp_path / "gate-out"
    code = cli_main(
        [
            "gate",
            "--experiment",
            str(exp),
            "--params",
            str(_params_file(tmp_path)),
            "--dry-run",
            "--json",
            "--out",
            str(out),
        ]
    )
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and {"promote", "reasons", "stats", "arms"} <= set(data)
    assert data["promote"] is True and data["reasons"] == ["promote"]
    assert data["arms"]["champion"]["rows"] == 300 and data["arms"]["challenger"]["rows"] == 300
    assert data["stats"]["quality"]["name"] == "non_inferiority" and data["stats"]["quality"]["p_value"] < 0.05
    assert moved == [] and not out.exists()


def _two_versions(tmp_path: Path, monkeypatch) -> tuple[str, Path]:
    """A throwaway registry with versions 1 (champion) and 2 (challenger) of all three predictors."""
    from conftest import SIDES, fake_boosters, register_fake

    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    register_fake(tmp_path, fake_boosters(), SIDES)
    register_fake(tmp_path, fake_boosters(), SIDES)
    prices = tmp_path / "prices.yaml"
    prices.write_text("models:\n  big: {input: 10.0, output: 30.0}\n  small: {input: 0.1, output: 0.2}\n")
    return uri, prices


def _aliases(uri: str) -> dict[str, tuple[str | None, str | None]]:
    from models import registry

    def v(p: str, alias: str) -> str | None:
        found = registry.version_by_alias(p, alias, uri)
        return found.version if found else None

    return {p: (v(p, "champion"), v(p, "previous")) for p in registry.REGISTERED}


def test_promotion_moves_aliases_exports_and_logs_and_rollback_undoes_it(tmp_path: Path, monkeypatch, capsys) -> None:
    from core.config import read_yaml
    from models import export as export_mod
    from serving.bundle import verify

    uri, prices = _two_versions(tmp_path, monkeypatch)
    monkeypatch.setattr(export_mod, "export", lambda *a, **k: _real_export(*a, **k, prices_file=prices, requests=()))
    assert _aliases(uri) == dict.fromkeys(("quality", "cost", "cache"), ("1", None))
    params, bundle = _params_file(tmp_path), tmp_path / "bundle"

    blocked = main(
        _write_experiment(tmp_path / "bad.jsonl", 300, dq=-0.2), params, out_dir=tmp_path / "r1", uri=uri, bundle=bundle
    )
    assert blocked.reasons == (GateCode.QUALITY_WORSE,) and not bundle.exists()
    assert _aliases(uri) == dict.fromkeys(("quality", "cost", "cache"), ("1", None))

    good = main(
        _write_experiment(tmp_path / "good.jsonl", 300, dq=0.0), params, out_dir=tmp_path / "r2", uri=uri, bundle=bundle
    )
    assert good.promote and _aliases(uri) == dict.fromkeys(("quality", "cost", "cache"), ("2", "1"))
    assert {e["version"] for e in verify(bundle).predictors.values()} == {"2"}
    out = capsys.readouterr().out
    assert "quality: champion 1 -> 2, previous None -> 1" in out
    md = (tmp_path / "r2" / "gate.md").read_text()
    assert "# A/B gate: PROMOTE" in md and "| quality | non_inferiority | ok |" in md
    assert (tmp_path / "r2" / "gate.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "r2" / "decision.json").read_text())["reasons"] == ["promote"]

    moves = rollback(uri=uri, bundle=bundle, out_dir=tmp_path / "r3")
    assert len(moves) == 3 and _aliases(uri) == dict.fromkeys(("quality", "cost", "cache"), ("1", "2"))
    assert {e["version"] for e in verify(bundle).predictors.values()} == {"1"}
    rollback(uri=uri, bundle=bundle, out_dir=tmp_path / "r4")  # a second rollback redoes the promotion
    assert _aliases(uri) == dict.fromkeys(("quality", "cost", "cache"), ("2", "1"))

    from models import registry

    runs = registry.gate_runs(uri)
    assert [r.action for r in runs] == ["blocked", "promote", "rollback", "rollback"]
    promote_run = runs[1]
    assert promote_run.tags["beast.alias.quality"] == "quality: champion 1 -> 2, previous None -> 1"
    assert promote_run.metrics["quality.p_value"] < 0.05 and promote_run.params["quality_margin"] == "0.05"
    assert {"gate.md", "gate.png", "decision.json", "bundle"} <= set(promote_run.artifacts)
    assert {"rollback.md", "bundle"} <= set(runs[2].artifacts) and "beast.alias.cost" in runs[2].tags
    again = main(tmp_path / "bad.jsonl", params, out_dir=tmp_path / "r5", uri=uri, bundle=bundle)  # a second look
    assert again.stats["quality"]["name"] == "msprt_non_inferiority" and not again.promote
    assert (
        registry.gate_runs(uri)[-1].params["looks_before"] == "1"
        and "was gated 1 time(s) before" in capsys.readouterr().out
    )
    assert read_yaml(params)["gate"]["quality_margin"] == 0.05


def test_a_failed_export_puts_the_aliases_back(tmp_path: Path, monkeypatch) -> None:
    from models import export as export_mod

    uri, _ = _two_versions(tmp_path, monkeypatch)
    no_prices = tmp_path / "no-prices.yaml"
    no_prices.write_text("models:\n  small: {input: 0.1, output: 0.2}\n")  # 'big' has no price: export refuses
    monkeypatch.setattr(export_mod, "export", lambda *a, **k: _real_export(*a, **k, prices_file=no_prices, requests=()))
    with pytest.raises(BeastError, match="candidate model 'big' has no price"):
        main(
            _write_experiment(tmp_path / "good.jsonl", 300, dq=0.0),
            _params_file(tmp_path),
            out_dir=tmp_path / "r",
            uri=uri,
            bundle=tmp_path / "bundle",
        )
    assert (
        _aliases(uri) == dict.fromkeys(("quality", "cost", "cache"), ("1", None)) and not (tmp_path / "bundle").exists()
    )
    with pytest.raises(BeastError, match="nothing to roll back"):
        rollback(uri=uri, bundle=tmp_path / "bundle", out_dir=tmp_path / "r")


def test_alias_lock_makes_a_second_mover_wait(tmp_path: Path) -> None:
    import subprocess
    import sys

    from models import registry

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import time; from models import registry\nwith registry.alias_lock({uri!r}):\n    print('held', flush=True); time.sleep(5)",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with (
            pytest.raises(
                BeastError, match="another gate or rollback .MLflow alias move. holds the lock .*mlflow.db.lock"
            ),
            registry.alias_lock(uri, timeout_s=0.5),
        ):
            pass
    finally:
        holder.kill()
        holder.wait()
    with registry.alias_lock(uri, timeout_s=5):  # released when its holder died
        pass


def test_report_handles_a_blocked_empty_experiment(tmp_path: Path) -> None:
    d = decide(experiment(n=10).iloc[:0], GateParams())
    md, png = report(d, tmp_path)
    assert "BLOCKED" in md.read_text() and "`empty_arm`" in md.read_text() and png.stat().st_size > 1000
    assert dataclasses.is_dataclass(d)


def test_sequential_quality_uses_msprt() -> None:
    good = decide(experiment(), GateParams(sequential=True))
    assert good.reasons == (GateCode.PROMOTE,) and good.stats["quality"]["name"] == "msprt_non_inferiority"
    bad = decide(experiment(dq=-0.1), GateParams(sequential=True))
    assert bad.reasons == (GateCode.QUALITY_WORSE,) and bad.stats["quality"]["p_value"] == 1.0
