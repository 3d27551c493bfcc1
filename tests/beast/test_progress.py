"""Long steps show progress on a terminal (stderr, one rewritten line) and say nothing extra when piped."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT

from core.errors import BeastError
from models import train
from models.cache import CacheParams
from models.common import Evaluation, TooLittleData, TuningProblem
from models.train import progress_line
from models.tune import Problem, TuneParams, tune_one


class Terminal(io.StringIO):
    """stderr as a terminal sees it."""

    def isatty(self) -> bool:
        return True


def tiny_job() -> Problem:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(300, 3)), columns=["a", "b", "c"])
    y = (X["a"] + rng.normal(scale=0.5, size=300) > 0).astype(float).to_numpy()
    problem = TuningProblem(
        X[:200], y[:200], X[200:], y[200:], {"objective": "binary"}, "auc", True, num_boost_round=10
    )
    evaluation = Evaluation("cache", {"auc": 0.5}, {}, n_train=200, n_test=100)
    return Problem(CacheParams(), lambda _: problem, lambda _: evaluation)


def tune(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stderr: io.StringIO) -> str:
    monkeypatch.setattr(sys, "stderr", stderr)
    params = TuneParams(storage=f"sqlite:///{tmp_path / 'optuna.db'}", trials=3, early_stopping_rounds=5)
    report = tune_one("cache", tiny_job(), params)
    assert report.trials == 3
    return stderr.getvalue()


def test_tune_shows_each_trial_on_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    err = tune(tmp_path, monkeypatch, Terminal())
    lines = err.split("\r\x1b[K")
    assert [line.split(" (")[0] for line in lines if "trial" in line] == [f"cache: trial {k}/3" for k in (1, 2, 3)]
    assert any("best auc 0." in line for line in lines)
    assert err.endswith("\r\x1b[K")  # the line is cleared before the verdict is printed


def test_tune_is_quiet_when_piped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert tune(tmp_path, monkeypatch, io.StringIO()) == ""


def test_progress_line_rewrites_one_line_on_a_terminal_only() -> None:
    terminal, piped = Terminal(), io.StringIO()
    for stream in (terminal, piped):
        show = progress_line(stream)
        show("train quality (1/3): fit and evaluate ...")
        show("")
    assert terminal.getvalue() == "\r\x1b[Ktrain quality (1/3): fit and evaluate ...\r\x1b[K"
    assert piped.getvalue() == ""


def test_train_shows_the_predictor_being_fitted_on_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def too_little(_: object) -> object:
        raise TooLittleData("no quality labels")

    monkeypatch.setitem(train.TRAINERS, "quality", too_little)
    params = tmp_path / "params.yaml"
    params.write_text(f"train:\n  prices: {ROOT / 'data' / 'prices.yaml'}\n  out: {tmp_path / 'models'}\n")
    for stderr, expected in (
        (Terminal(), "\r\x1b[Ktrain quality (1/1): fit and evaluate ...\r\x1b[K"),
        (io.StringIO(), ""),
    ):
        monkeypatch.setattr(sys, "stderr", stderr)
        with pytest.raises(BeastError, match="train quality: no quality labels; nothing was written"):
            train.main(["quality"], params_file=params, register=False)
        assert stderr.getvalue() == expected
