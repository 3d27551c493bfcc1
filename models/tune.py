"""Stage `tune`: an Optuna study per predictor over its LightGBM parameters, then an honest verdict.

Each trial fits one Booster on the predictor's `tuning_problem` (training side only, validated on rows
carved out of it), with LightGBM's pruning callback reporting the validation metric every round to a
median or successive-halving pruner. Studies live in an RDB (SQLite file by default), so they resume
and can be shared. Trials are tracked by a study callback (`models/registry.py`), never inside the
objective. Finally the predictor is fitted with default and with tuned parameters and both are scored
on the untouched test side: the report says whether tuning helped, and by how much.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import lightgbm as lgb
import optuna
from optuna_integration import LightGBMPruningCallback

from core.cluster import ClusterParams
from core.config import Count, NonNegative, NonNegativeInt, load_params
from core.errors import BeastError
from core.files import write_atomic
from features.build import FeatureParams
from features.model_cards import load_cards
from models import cache, cost, quality
from models.common import Evaluation, TuningProblem, train_booster
from models.train import TrainParams, progress_line
from traces.load import load_traces
from traces.prices import load_prices

DEFAULT_SPACE: dict[str, dict[str, object]] = {
    "num_leaves": {"low": 7, "high": 127, "log": True, "int": True},
    "learning_rate": {"low": 0.01, "high": 0.2, "log": True},
    "min_data_in_leaf": {"low": 5, "high": 200, "log": True, "int": True},
    "feature_fraction": {"low": 0.4, "high": 1.0},
    "lambda_l2": {"low": 0.001, "high": 10.0, "log": True},
}
PRUNERS: dict[str, Callable[[], optuna.pruners.BasePruner]] = {
    "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=30),
    "successive_halving": lambda: optuna.pruners.SuccessiveHalvingPruner(min_resource=30),
}
# Held-out metric that decides whether tuning helped, and whether higher is better.
PRIMARY: dict[str, tuple[str, bool]] = {
    "quality": ("logloss", False),
    "cost": ("azure.mdape", False),
    "cache": ("auc", True),
}


@dataclass(frozen=True)
class TuneParams:
    """Mirrors params.yaml -> tune."""

    storage: str = "sqlite:///data/optuna.db"
    trials: Count = 30
    timeout_s: NonNegative = 0.0  # 0 = no limit
    pruner: str = "median"
    early_stopping_rounds: NonNegativeInt = 50
    seed: NonNegativeInt = 0
    report: Path = Path("data/metrics")  # tune_<predictor>.json
    workers: Count = (
        1  # > 1: trials on this many Dask workers sharing the study (needs a server storage, e.g. PostgreSQL)
    )
    space: Mapping[str, Mapping[str, object]] = field(default_factory=lambda: DEFAULT_SPACE)


@dataclass(frozen=True)
class TuneReport:
    predictor: str
    study: str
    trials: int
    complete: int
    pruned: int
    best_value: float
    best_params: Mapping[str, object]
    metric: str
    default_test: float
    tuned_test: float
    improvement: float  # positive = tuned is better on the test side, in the metric's own units

    def line(self, seconds: float) -> str:
        verdict = "better" if self.improvement > 0 else "not better"
        return (
            f"{self.predictor}: {self.complete} complete / {self.pruned} pruned of {self.trials} trials; test {self.metric} "
            f"default {self.default_test:.4f} -> tuned {self.tuned_test:.4f} ({verdict} by {abs(self.improvement):.4f}) in {seconds:.0f} s"
        )


def suggest(trial: optuna.Trial, space: Mapping[str, Mapping[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for name, dim in space.items():
        low, high, log = dim["low"], dim["high"], bool(dim.get("log", False))
        out[name] = (
            trial.suggest_int(name, int(low), int(high), log=log)
            if dim.get("int")
            else trial.suggest_float(name, float(low), float(high), log=log)
        )
    return out


def objective(
    problem: TuningProblem, space: Mapping[str, Mapping[str, object]], early_stopping_rounds: int
) -> Callable[[optuna.Trial], float]:
    """Best validation metric of one Booster; pruned by the study's pruner through LightGBM's callback."""

    def run(trial: optuna.Trial) -> float:
        params = dict(problem.lgb_params) | suggest(trial, space) | {"metric": problem.metric}
        booster = train_booster(
            problem.X_train,
            problem.y_train,
            params,
            problem.num_boost_round,
            categorical=problem.categorical,
            valid=(problem.X_valid, problem.y_valid),
            callbacks=[
                LightGBMPruningCallback(trial, problem.metric),
                lgb.early_stopping(early_stopping_rounds, verbose=False),
            ],
        )
        trial.set_user_attr("best_iteration", int(booster.best_iteration or problem.num_boost_round))
        return float(booster.best_score["valid_0"][problem.metric])

    return run


def check_space(space: Mapping[str, Mapping[str, object]], params_type: type, where: str) -> None:
    """Only parameters the predictor has, each with low < high."""
    known = {f.name for f in fields(params_type)}
    for name, dim in space.items():
        if name not in known:
            raise BeastError(
                f"{where}: `{name}` is not a parameter of {params_type.__name__}; known: {', '.join(sorted(known))}"
            )
        if not isinstance(dim, Mapping) or not {"low", "high"} <= set(dim) or not dim["low"] < dim["high"]:
            raise BeastError(f"{where}.{name}: expected {{low, high[, log, int]}} with low < high, got {dim!r}")


@dataclass(frozen=True)
class Problem:
    """One predictor, as the tuner sees it."""

    params: object  # the predictor's params dataclass (defaults from params.yaml)
    problem: Callable[[object], TuningProblem]
    evaluate: Callable[[object], Evaluation]


def problems(traces, train: TrainParams, features: FeatureParams) -> dict[str, Problem]:
    prices, cards = load_prices(train.prices), load_cards(train.cards)
    return {
        "quality": Problem(
            train.quality,
            lambda p: quality.tuning_problem(traces, p, features, cards, prices),
            lambda p: quality.fit_and_evaluate(traces, replace(p, heads="shared"), features, cards, prices)[1],
        ),
        "cost": Problem(
            train.cost, lambda p: cost.tuning_problem(traces, p), lambda p: cost.fit_and_evaluate(traces, prices, p)[1]
        ),
        "cache": Problem(
            train.cache, lambda p: cache.tuning_problem(traces, p), lambda p: cache.fit_and_evaluate(traces, p)[1]
        ),
    }


def shared_study(name: str, params: TuneParams, maximize: bool, sampler_seed: int, parallel: bool) -> optuna.Study:
    """The shared study `beast-<name>` (created once, loaded by every worker). In parallel, TPE's constant liar
    keeps workers from proposing the same point while each other's trials run."""
    return optuna.create_study(
        study_name=f"beast-{name}",
        storage=params.storage,
        load_if_exists=True,
        direction="maximize" if maximize else "minimize",
        sampler=optuna.samplers.TPESampler(seed=sampler_seed, constant_liar=parallel),
        pruner=PRUNERS[params.pruner](),
    )


def worker_trials(name: str, problem: TuningProblem, params: TuneParams, worker: int, n_trials: int) -> int:
    """One Dask worker's share of the trials, run against the shared study; returns the trials it finished."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = shared_study(name, params, problem.maximize, params.seed + worker, parallel=True)
    mine: list[int] = []  # the other workers' trials land in the same study meanwhile
    study.optimize(
        objective(problem, params.space, params.early_stopping_rounds),
        n_trials=n_trials,
        timeout=params.timeout_s or None,
        callbacks=[lambda _, t: mine.append(t.number)],
    )
    return len(mine)


def shares(trials: int, workers: int) -> list[int]:
    """Trials per worker: as even as possible, the first ones take the remainder."""
    return [trials // workers + (i < trials % workers) for i in range(workers)]


def _parallel(
    name: str, problem: TuningProblem, params: TuneParams, cluster: ClusterParams, callbacks: Sequence[Callable]
) -> optuna.Study:
    """`params.trials` split over `params.workers` Dask workers (one task each); callbacks see every new trial
    once they are all done (a worker process has no MLflow client of ours). Returns the study, reloaded."""
    from core.cluster import client

    with client(replace(cluster, n_workers=params.workers)) as dask_client:
        known = {t.number for t in shared_study(name, params, problem.maximize, params.seed, parallel=True).trials}
        data = dask_client.scatter(problem, broadcast=True)
        futures = [
            dask_client.submit(worker_trials, name, data, params, i, n, pure=False)
            for i, n in enumerate(shares(params.trials, params.workers))
            if n
        ]
        done = sum(dask_client.gather(futures))
    study = shared_study(name, params, problem.maximize, params.seed, parallel=True)
    print(f"  {name}: {done} trials on {len(futures)} workers sharing {study.study_name}", flush=True)
    for trial in study.trials:
        if trial.number not in known and trial.state.is_finished():
            for callback in callbacks:
                callback(study, trial)
    return study


class TrialProgress:
    """On a terminal, one stderr line rewritten after every trial this process finishes ("cache: trial 7/30
    (pruned), best auc 0.6143, 12 s"; trials on Dask workers are not followed); nothing when stderr is piped or a
    file, so logs hold only the verdicts. A study callback."""

    def __init__(self, name: str, trials: int, metric: str) -> None:
        self.show = progress_line(sys.stderr)  # `message` over the current line; an empty one clears it
        self.on = sys.stderr.isatty()
        self.name, self.trials, self.metric = name, trials, metric
        self.done, self.started = 0, time.perf_counter()

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if not self.on:
            return
        self.done += 1
        try:
            best = f"{study.best_value:.4f}"
        except ValueError:  # no complete trial yet (all pruned so far)
            best = "-"
        self.show(
            f"{self.name}: trial {self.done}/{self.trials} ({trial.state.name.lower()}), best {self.metric} {best}, "
            f"{time.perf_counter() - self.started:.0f} s"
        )


def check_parallel(params: TuneParams) -> None:
    """Workers share the study through its storage: a SQLite file is one machine's single writer."""
    if params.workers < 1:
        raise BeastError(f"params.yaml:tune.workers: expected >= 1, got {params.workers}")
    if params.workers > 1 and params.storage.startswith("sqlite"):
        raise BeastError(
            f"params.yaml:tune.workers: {params.workers} workers need a server storage, not {params.storage}: "
            "start PostgreSQL with `make stack` and set tune.storage to postgresql+psycopg2://beast@127.0.0.1:5433/optuna"
        )


def tune_one(
    name: str,
    job: Problem,
    params: TuneParams,
    callbacks: Sequence[Callable] = (),
    cluster: ClusterParams | None = None,
) -> TuneReport:
    check_space(params.space, type(job.params), "params.yaml:tune.space")
    check_parallel(params)
    problem = job.problem(job.params)
    progress = TrialProgress(name, params.trials, problem.metric)
    try:
        if params.workers > 1:
            study = _parallel(name, problem, params, cluster or ClusterParams(), callbacks)
        else:
            study = shared_study(name, params, problem.maximize, params.seed, parallel=False)
            study.optimize(
                objective(problem, params.space, params.early_stopping_rounds),
                n_trials=params.trials,
                timeout=params.timeout_s or None,
                callbacks=[*callbacks, progress],
            )
        best = study.best_trial
        tuned = replace(job.params, **best.params, num_boost_round=int(best.user_attrs["best_iteration"]))
        metric, higher = PRIMARY[name]
        progress.show(f"{name}: default vs tuned on the test side ...")
        default_test, tuned_test = job.evaluate(job.params).metrics[metric], job.evaluate(tuned).metrics[metric]
    finally:
        progress.show("")
    states = [t.state for t in study.trials]
    return TuneReport(
        name,
        study.study_name,
        len(states),
        states.count(optuna.trial.TrialState.COMPLETE),
        states.count(optuna.trial.TrialState.PRUNED),
        float(best.value),
        dict(best.params) | {"num_boost_round": tuned.num_boost_round},
        metric,
        float(default_test),
        float(tuned_test),
        float(tuned_test - default_test if higher else default_test - tuned_test),
    )


def _storage_ready(storage: str) -> None:
    """Create the folder of a SQLite study file (Optuna creates the file, not its folder)."""
    if storage.startswith("sqlite:///"):
        Path(storage.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


def main(
    which: Sequence[str],
    params_file: Path | None = None,
    trials: int | None = None,
    track: bool = True,
    workers: int | None = None,
    storage: str | None = None,
) -> list[TuneReport]:
    """`beast tune`: one study per predictor; writes data/metrics/tune_<predictor>.json and prints a verdict."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    train = load_params(params_file, "train", TrainParams)
    params = load_params(params_file, "tune", TuneParams)
    if trials is not None:
        params = replace(params, trials=trials)
    if workers is not None:
        params = replace(params, workers=workers)
    if storage is not None:
        params = replace(params, storage=storage)
    check_parallel(params)
    cluster = load_params(params_file, "dask", ClusterParams)
    if params.pruner not in PRUNERS:
        raise BeastError(f"params.yaml:tune.pruner: expected one of {', '.join(PRUNERS)}, got {params.pruner!r}")
    _storage_ready(params.storage)
    jobs = problems(
        load_traces([train.traces], train.prices), train, load_params(params_file, "features", FeatureParams)
    )
    reports = []
    for name in which:
        callbacks = []
        if track:
            from models import registry

            callbacks.append(registry.optuna_callback(name))
        started = time.perf_counter()
        report = tune_one(name, jobs[name], params, callbacks, cluster)
        write_atomic(params.report / f"tune_{name}.json", (json.dumps(asdict(report), indent=2) + "\n").encode())
        print(report.line(time.perf_counter() - started))
        print(f"  best params: {json.dumps(report.best_params)}")
        reports.append(report)
    return reports
