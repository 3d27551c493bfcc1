"""One source per default: params.yaml lists every key of every stage's dataclass with the same value, so a
stage behaves the same with or without ./params.yaml; loading checks sections, keys, types and ranges."""

from __future__ import annotations

import dataclasses
import importlib
import typing
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

from core.config import SECTIONS, Count, from_mapping, load_params, load_section
from core.errors import BeastError

OWNERS = {
    "ingest": "traces.ingest:IngestParams",
    "synth": "traces.synth:SynthParams",
    "features": "features.build:FeatureParams",
    "train": "models.train:TrainParams",
    "dask": "core.cluster:ClusterParams",
    "tune": "models.tune:TuneParams",
    "gate": "abtest.gate:GateParams",
    "evaluate": "evaluation.routing:EvalParams",
    "monitor": "monitoring.drift:MonitorParams",
    "retrain": "pipelines.flows:RetrainParams",
    "report": "monitoring.report:ReportParams",
    "recommend": "monitoring.recommend:RecommendParams",
    "budget": "monitoring.budget:BudgetParams",
    "cache_sim": "caching.sim:CacheSimParams",
    "cache_tiers": "caching.tiers:TiersParams",
    "semantic_cache": "caching.semantic:SemanticParams",
    "stack": "pipelines.stack:StackParams",
}
PARAMS = ROOT / "params.yaml"


def owner(section: str) -> type:
    module, name = OWNERS[section].split(":")
    return getattr(importlib.import_module(module), name)


def unlisted(node: object, cls: type, where: str) -> list[str]:
    """Keys of `cls` (recursively) that the params file does not spell out."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if not isinstance(node, dict) or f.name not in node:
            out.append(f"{where}.{f.name}")
        elif dataclasses.is_dataclass(hints[f.name]):
            out += unlisted(node[f.name], hints[f.name], f"{where}.{f.name}")
    return out


def test_every_section_has_one_owner() -> None:
    assert set(yaml.safe_load(PARAMS.read_text())) == set(SECTIONS) == set(OWNERS)


@pytest.mark.parametrize("section", SECTIONS)
def test_params_yaml_equals_the_dataclass_defaults(section: str) -> None:
    cls = owner(section)
    assert load_section(PARAMS, section, cls) == cls()
    assert unlisted(yaml.safe_load(PARAMS.read_text())[section], cls, section) == []


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "section", "message"),
    [
        ("gate:\n  alpha: 1.5\n", "gate", "params.yaml:gate.alpha: expected a number in (0, 1), got 1.5"),
        ("gate:\n  alpha: 0\n", "gate", "params.yaml:gate.alpha: expected a number in (0, 1), got 0.0"),
        ("evaluate:\n  folds: 1\n", "evaluate", "params.yaml:evaluate.folds: expected a number >= 2, got 1"),
        ("tune:\n  trials: 0\n", "tune", "params.yaml:tune.trials: expected a number >= 1, got 0"),
        (
            "train:\n  quality:\n    test_fraction: 1.0\n",
            "train",
            "params.yaml:train.quality.test_fraction: expected a number in (0, 1), got 1.0",
        ),
        (
            "train:\n  cost:\n    learning_rate: -0.1\n",
            "train",
            "params.yaml:train.cost.learning_rate: expected a number > 0, got -0.1",
        ),
        (
            "cache_sim:\n  eval_from: 1.2\n",
            "cache_sim",
            "params.yaml:cache_sim.eval_from: expected a number in [0, 1], got 1.2",
        ),
        (
            "stack:\n  mlflow_port: 70000\n",
            "stack",
            "params.yaml:stack.mlflow_port: expected a number in [0, 65535], got 70000",
        ),
        (
            "gate:\n  alpha: 0.05\ngates:\n  alpha: 0.1\n",
            "gate",
            "params.yaml: unknown section(s) gates; known: ingest, synth",
        ),
    ],
)
def test_bad_values_fail_in_one_line_naming_file_section_and_key(
    tmp_path: Path, text: str, section: str, message: str
) -> None:
    with pytest.raises(BeastError) as info:
        load_params(_write(tmp_path, text), section, owner(section))
    assert "\n" not in str(info.value) and str(info.value).startswith(f"{tmp_path}/{message}")


def test_range_bounds_themselves_load(tmp_path: Path) -> None:
    """Closed ends are allowed: eval_from 0 (count every lookup), seed 0, fraction-of-one for LightGBM."""
    path = _write(tmp_path, "cache_sim:\n  eval_from: 0\ntrain:\n  cost:\n    feature_fraction: 1\n    seed: 0\n")
    assert load_params(path, "cache_sim", owner("cache_sim")).eval_from == 0.0
    assert load_params(path, "train", owner("train")).cost.feature_fraction == 1.0


def test_tuple_items_are_range_checked(tmp_path: Path) -> None:
    @dataclasses.dataclass(frozen=True)
    class Caps:
        sizes: tuple[Count, ...] = (1,)

    assert from_mapping(Caps, {"sizes": [3, 4]}, "x").sizes == (3, 4)
    with pytest.raises(BeastError, match=r"^x\.sizes: expected a number >= 1, got 0$"):
        from_mapping(Caps, {"sizes": [3, 0]}, "x")


def test_command_line_overrides_are_range_checked_and_name_the_flag() -> None:
    from caching.sim import CacheSimParams
    from core.config import with_overrides

    params = with_overrides(CacheSimParams(), eval_from=0.25, capacities=None)
    assert params.eval_from == 0.25 and params.capacities == CacheSimParams().capacities
    with pytest.raises(BeastError, match=r"^--eval-from: expected a number in \[0, 1\], got 1.5$"):
        with_overrides(CacheSimParams(), eval_from=1.5)
    with pytest.raises(BeastError, match=r"^--capacities: expected a number >= 1, got 0$"):
        with_overrides(CacheSimParams(), capacities=(100, 0))
