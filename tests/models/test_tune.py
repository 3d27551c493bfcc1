"""Tuning: a resumable study in SQLite, pruning wired in, and a verdict measured on the test side."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import ROOT

from core.errors import BeastError
from models.cache import CacheParams
from models.tune import DEFAULT_SPACE, check_space, main


def _params(tmp: Path, dataset: Path) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"] |= {
        "traces": str(dataset),
        "prices": str(ROOT / "data/prices.yaml"),
        "cards": str(ROOT / "data/models.yaml"),
    }
    params["tune"] |= {"storage": f"sqlite:///{tmp}/optuna.db", "report": str(tmp / "metrics"), "trials": 3}
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_study_resumes_and_reports_default_vs_tuned(sample_dataset: Path, tmp_path: Path) -> None:
    params = _params(tmp_path, sample_dataset)
    (first,) = main(["cache"], params_file=params, track=False)
    (second,) = main(["cache"], params_file=params, trials=2, track=False)
    assert (first.trials, second.trials) == (3, 5)  # the second run added to the stored study
    study = optuna.load_study(study_name="beast-cache", storage=f"sqlite:///{tmp_path}/optuna.db")
    assert len(study.trials) == 5 and study.direction == optuna.study.StudyDirection.MAXIMIZE
    report = json.loads((tmp_path / "metrics" / "tune_cache.json").read_text())
    assert report["metric"] == "auc" and report["default_test"] == pytest.approx(0.6874, abs=0.02)
    assert report["improvement"] == pytest.approx(report["tuned_test"] - report["default_test"])
    assert set(report["best_params"]) == set(DEFAULT_SPACE) | {"num_boost_round"}


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"max_depth": {"low": 1, "high": 5}}, "`max_depth` is not a parameter of CacheParams"),
        ({"num_leaves": {"low": 9, "high": 3}}, "expected {low, high"),
    ],
)
def test_bad_search_spaces_are_named(space: dict, message: str) -> None:
    with pytest.raises(BeastError, match=message):
        check_space(space, CacheParams, "params.yaml:tune.space")
