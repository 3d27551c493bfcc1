"""Stage `train`: read traces, fit and evaluate one predictor, write its files and metrics, register it.

The predictors (`models/quality.py`, `cost.py`, `cache.py`) are pure; this module is their I/O edge:
params.yaml `train` (+ `features`) read once, traces read through `traces.store`, outputs under
`data/models/<predictor>/` (LightGBM text boosters, JSON side data, plots), held-out metrics in
`data/metrics/<predictor>.json` (DVC reads them), and an MLflow run + registered version (alias
`challenger`; `champion` too for the first version) through `models/registry.py`.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from core.cluster import ClusterParams, use_dask
from core.cluster import client as cluster_client
from core.config import load_params
from core.errors import BeastError
from core.files import write_atomic
from models.common import Evaluation, TooLittleData
from models.params import CacheParams, CostParams, QualityParams

if TYPE_CHECKING:  # the rest is imported where used: `beast metrics` (TrainParams, metrics_summary) stays light
    import lightgbm as lgb
    import pandas as pd

    from features.build import FeatureParams
    from traces.prices import PriceTable

PREDICTORS = ("quality", "cost", "cache")


@dataclass(frozen=True)
class TrainParams:
    """Mirrors params.yaml -> train."""

    traces: Path = Path("data/traces")
    prices: Path = Path("data/prices.yaml")
    cards: Path = Path("data/models.yaml")
    out: Path = Path("data/models")
    metrics: Path = Path("data/metrics")
    plots: Path = Path("data/plots")  # <predictor>/*.png
    register: bool = True
    quality: QualityParams = field(default_factory=QualityParams)
    cost: CostParams = field(default_factory=CostParams)
    cache: CacheParams = field(default_factory=CacheParams)


@dataclass(frozen=True)
class Trained:
    """One fitted predictor, ready to write and register."""

    evaluation: Evaluation
    boosters: Mapping[str, lgb.Booster]  # the first is the registered model; the rest ride along as text
    example: pd.DataFrame  # a few feature rows: the MLflow signature
    side: Mapping[str, object]  # JSON side data a router needs besides the boosters
    params: Mapping[str, object]


@dataclass(frozen=True)
class Inputs:
    paths: tuple[Path, ...]  # dataset folders or trace files
    prices: PriceTable
    params: TrainParams
    features: FeatureParams
    cards_path: Path
    cluster: ClusterParams = field(default_factory=ClusterParams)

    @cached_property
    def traces(self) -> pd.DataFrame:
        """Read on first use: a predictor trained on Dask never holds the whole dataset in this process."""
        from traces.load import load_traces

        return load_traces(list(self.paths), self.params.prices)

    @cached_property
    def on_dask(self) -> bool:
        """A single dataset folder with at least `dask.auto_rows` rows (or `dask.engine: dask`) trains on Dask."""
        from features.distributed import stored_rows

        folder = len(self.paths) == 1 and self.paths[0].is_dir()
        if self.cluster.engine == "dask" and not folder:
            raise BeastError(
                f"dask.engine: dask reads one stored dataset folder, got {', '.join(map(str, self.paths))}: run `beast ingest` first"
            )
        return folder and use_dask(self.cluster, stored_rows(self.paths[0]))


def _quality(inp: Inputs) -> Trained:
    from features.build import build_features
    from features.model_cards import load_cards
    from models import quality

    predictor, evaluation = quality.fit_and_evaluate(
        inp.traces, inp.params.quality, inp.features, load_cards(inp.cards_path), inp.prices
    )
    rows = quality.quality_rows(inp.traces).head(5)
    example = build_features(rows, predictor.spec)[list(predictor.feature_names)]
    side = {
        "heads": predictor.heads,
        "fallback": predictor.fallback,
        "valid_loss": dict(predictor.valid_loss),
        "policy": asdict(predictor.policy) if predictor.policy else None,
        "feature_names": list(predictor.feature_names),
        "feature_spec": json.loads(predictor.spec.to_json()),
    }
    return Trained(
        evaluation, predictor.boosters, example, side, asdict(inp.params.quality) | {"features": asdict(inp.features)}
    )


def _cost(inp: Inputs) -> Trained:
    from models import cost

    if inp.on_dask:
        from distributed import KilledWorker

        from features.distributed import read_dataset
        from models import cost_dask

        try:
            with cluster_client(inp.cluster) as client:
                traces = read_dataset(inp.paths[0], cost_dask.COLUMNS, inp.cluster.partition_rows)
                predictor, evaluation = cost_dask.fit_and_evaluate(client, traces, inp.prices, inp.params.cost)
                head = traces.head(5)
        except KilledWorker as exc:
            raise BeastError(
                f"train cost on dask: a worker died running {exc.task} (out of memory? raise dask.memory_limit or add workers); nothing was written"
            ) from None
    else:
        predictor, evaluation = cost.fit_and_evaluate(inp.traces, inp.prices, inp.params.cost)
        head = inp.traces.head(5)
    example = predictor.features(head)
    side = {
        "feature_names": list(predictor.feature_names),
        "categories": {k: list(v) for k, v in predictor.categories.items()},
        "p90_shift": dict(predictor.p90_shift),
    }
    return Trained(evaluation, predictor.boosters, example, side, asdict(inp.params.cost))


def _cache(inp: Inputs) -> Trained:
    from models import cache

    predictor, evaluation = cache.fit_and_evaluate(inp.traces, inp.params.cache)
    example = cache.cache_features(cache.select_rows(inp.traces).head(5))[list(predictor.feature_names)]
    side = {"feature_names": list(predictor.feature_names), "horizon_s": inp.params.cache.horizon_s}
    return Trained(evaluation, {"model": predictor.booster}, example, side, asdict(inp.params.cache))


TRAINERS: dict[str, Callable[[Inputs], Trained]] = {"quality": _quality, "cost": _cost, "cache": _cache}


def _plots(name: str, trained: Trained, folder: Path) -> dict[str, Path]:
    import pandas as pd

    from core import plots

    first = next(iter(trained.boosters.values()))
    out = {
        "plots/importance.png": plots.importance_plot(first, folder / "importance.png", f"{name}: feature importance")
    }
    if "reliability" in trained.evaluation.tables:
        table = pd.DataFrame(list(trained.evaluation.tables["reliability"]))
        out["plots/reliability.png"] = plots.reliability_plot(
            table, folder / "reliability.png", f"{name}: calibration on test prompts"
        )
    if "error_by_model" in trained.evaluation.tables:
        table = pd.DataFrame(list(trained.evaluation.tables["error_by_model"])).set_index("group")["value"]
        out["plots/error_by_model.png"] = plots.error_by_group_plot(
            table, folder / "error_by_model.png", f"{name}: test error by model", "mean absolute error"
        )
    return out


def write_outputs(name: str, trained: Trained, params: TrainParams) -> dict[str, Path]:
    """Boosters as LightGBM text, side JSON, plots, metrics JSON; returns artifact name -> file."""
    folder = params.out / name
    files = {
        f"boosters/{key}.txt": write_atomic(folder / f"{key}.txt", b.model_to_string().encode())
        for key, b in trained.boosters.items()
    }
    files[f"{name}.json"] = write_atomic(
        folder / f"{name}.json", json.dumps(trained.side, indent=1, sort_keys=True).encode()
    )
    files |= _plots(name, trained, params.plots / name)
    files["metrics.json"] = write_atomic(
        params.metrics / f"{name}.json", (trained.evaluation.to_json() + "\n").encode()
    )
    return files


def flat_metrics(evaluation: Evaluation) -> dict[str, float]:
    """Predictor metrics as they are, each baseline's as `baseline.<name>.<metric>` (MLflow keys)."""
    out = dict(evaluation.metrics)
    for base, metrics in evaluation.baselines.items():
        out |= {f"baseline.{base}.{k}": v for k, v in metrics.items()}
    return out


def metrics_summary(folder: Path) -> str:
    """The held-out tables of every predictor with a metrics file in `folder` (what `beast metrics` prints)."""
    parts = []
    for name in PREDICTORS:
        path = folder / f"{name}.json"
        if path.exists():
            data = json.loads(path.read_text())
            data["notes"], data["tables"] = tuple(data.get("notes", ())), {}
            parts.append(f"== {name} ({path}) ==\n{Evaluation(**data).table()}")
    return "\n\n".join(parts) if parts else f"no predictor metrics in {folder}: run `beast train` (or `make run`)"


def progress_line(stream: TextIO) -> Callable[[str], None]:
    """Progress on one rewritten line of a terminal (an empty message clears it); nothing when `stream` is piped
    or a file, so logs hold only the results."""
    if not stream.isatty():
        return lambda _: None

    def show(message: str) -> None:
        stream.write("\r\x1b[K" + message)
        stream.flush()

    return show


@dataclass(frozen=True)
class TrainResult:
    name: str
    trained: Trained
    files: Mapping[str, Path]
    version: object | None  # registry.RegisteredVersion when registered


def main(
    which: Sequence[str],
    params_file: Path | None = None,
    traces: Sequence[Path] = (),
    register: bool | None = None,
    engine: str | None = None,
) -> list[TrainResult]:
    """`beast train`: each named predictor in turn; prints its metrics table, files and registered version.
    The cost predictor trains on Dask when `engine` (or params.yaml `dask.engine`) says so; quality and cache
    always train in this process (their rows: judge-labelled prompts and prefix-block traces, not all traffic)."""
    from features.build import FeatureParams
    from traces.prices import load_prices

    params = load_params(params_file, "train", TrainParams)
    cluster = load_params(params_file, "dask", ClusterParams)
    if engine is not None:
        cluster = replace(cluster, engine=engine)
    paths = tuple(traces) or (params.traces,)
    inputs = Inputs(
        paths,
        load_prices(params.prices),
        params,
        load_params(params_file, "features", FeatureParams),
        params.cards,
        cluster,
    )
    results = []
    progress = progress_line(sys.stderr)
    for k, name in enumerate(which, 1):
        started = time.perf_counter()
        progress(f"train {name} ({k}/{len(which)}): fit and evaluate ...")
        try:
            trained = TRAINERS[name](inputs)
        except TooLittleData as exc:
            raise BeastError(f"train {name}: {exc}; nothing was written") from None
        finally:
            progress("")
        files = write_outputs(name, trained, params)
        print(f"\n== {name}: {time.perf_counter() - started:.1f} s ==\n{trained.evaluation.table()}")
        for note in trained.evaluation.notes:
            print(f"  note: {note}")
        print(f"  files: {params.out / name}/, metrics: {files['metrics.json']}")
        version = None
        if params.register if register is None else register:
            from models import registry

            keys = list(trained.boosters)
            version = registry.log_predictor(
                name,
                trained.boosters[keys[0]],
                trained.example,
                params=trained.params,
                metrics=flat_metrics(trained.evaluation),
                extra_boosters={k: trained.boosters[k] for k in keys[1:]},
                artifacts={k: v for k, v in files.items() if not k.startswith("boosters/")},
                tags={registry.REGISTERED_BOOSTER_TAG: keys[0]},
            )
            print(
                f"  registered {version.name} version {version.version} ({', '.join(version.aliases)}), run {version.run_id}"
            )
        results.append(TrainResult(name, trained, files, version))
    return results
