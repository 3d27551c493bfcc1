"""End to end on the committed samples: train every predictor, register it, reload it from MLflow and
check the reloaded boosters predict exactly what the in-memory ones do."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import ROOT

from models import registry
from models.train import PREDICTORS, main


@pytest.fixture(scope="module")
def trained(sample_dataset: Path, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("train")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"] |= {
        "out": str(tmp / "models"),
        "metrics": str(tmp / "metrics"),
        "plots": str(tmp / "plots"),
        "prices": str(ROOT / "data/prices.yaml"),
        "cards": str(ROOT / "data/models.yaml"),
    }
    params["train"]["quality"] |= {
        "heads": "shared",
        "num_boost_round": 200,
        "prior_fallback": False,
    }  # quick; the heads themselves (the fallback has its own test)
    (tmp / "params.yaml").write_text(yaml.safe_dump(params))
    uri = f"sqlite:///{tmp}/mlflow.db"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        results = main(PREDICTORS, params_file=tmp / "params.yaml", traces=[sample_dataset])
    return tmp, uri, {r.name: r for r in results}


def test_every_predictor_is_registered_as_champion_and_challenger(trained) -> None:
    _, uri, results = trained
    for name in PREDICTORS:
        version = results[name].version
        assert (version.name, version.version, version.aliases) == (
            registry.REGISTERED[name],
            "1",
            ("challenger", "champion"),
        )
        assert registry.version_by_alias(name, "champion", uri=uri) == version


def test_reloaded_boosters_predict_like_the_in_memory_ones(trained) -> None:
    _, uri, results = trained
    for name in PREDICTORS:
        boosters = results[name].trained.boosters
        example = results[name].trained.example
        keys = list(boosters)
        reloaded = [registry.load_booster(name, "champion", uri=uri)] + [
            registry.load_booster(name, "champion", key=k, uri=uri) for k in keys[1:]
        ]
        for key, booster in zip(keys, reloaded, strict=True):
            np.testing.assert_array_equal(
                booster.predict(example), boosters[key].predict(example), err_msg=f"{name}/{key}"
            )


def test_metrics_files_hold_the_predictor_and_its_baselines(trained) -> None:
    tmp, _, results = trained
    for name, baseline in (("quality", "per_model_mean"), ("cost", "per_model"), ("cache", "recency_frequency")):
        data = json.loads((tmp / "metrics" / f"{name}.json").read_text())
        assert data["predictor"] == name and baseline in data["baselines"] and data["n_test"] > 0
        assert (tmp / "plots" / name / "importance.png").stat().st_size > 1000
    quality = json.loads((tmp / "metrics" / "quality.json").read_text())
    assert quality["metrics"]["auc_vs_strongest"] > quality["baselines"]["per_model_mean"]["auc_vs_strongest"]
    assert len(quality["tables"]["reliability"]) >= 5 and len(quality["tables"]["error_by_model"]) == 14
    assert (tmp / "plots" / "quality" / "error_by_model.png").stat().st_size > 1000


def test_metrics_summary_prints_predictor_beside_baselines(trained) -> None:
    from models.train import metrics_summary

    tmp, _, _ = trained
    text = metrics_summary(tmp / "metrics")
    assert text.count("== ") == 3 and "recency_frequency" in text and "auc_vs_strongest" in text
    assert "no predictor metrics" in metrics_summary(tmp / "nowhere")


def test_traces_that_cannot_train_a_predictor_fail_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """No quality labels (Azure rows) or no prefix blocks: exit 2 naming the predictor and why, no traceback,
    nothing written."""
    from beast.cli import main as cli_main

    params = tmp_path / "params.yaml"
    params.write_text(
        f"train:\n  out: {tmp_path / 'models'}\n  metrics: {tmp_path / 'metrics'}\n  plots: {tmp_path / 'plots'}\n  prices: {ROOT / 'data/prices.yaml'}\n"
    )
    azure = str(ROOT / "data" / "sample" / "azure_code.csv.gz")
    for predictor, why in (
        ("quality", "no rows with quality, prompt and prompt_id"),
        ("cache", "cache predictor: no rows with prefix_blocks"),
    ):
        code = cli_main(["train", predictor, "--params", str(params), "--traces", azure, "--no-register"])
        err = capsys.readouterr().err
        assert code == 2 and f"beast train: error: train {predictor}: {why}" in err and "Traceback" not in err
    assert not (tmp_path / "models").exists() and not (tmp_path / "metrics").exists()
