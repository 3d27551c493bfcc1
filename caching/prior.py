"""The online cache expert's shipped prior (`beast cache prior`): the survival model of `caching.sim`
fitted on a seeded synthetic prefix trace that no scored trace uses, so a new trace starts from reuse
structure learned elsewhere instead of from nothing, and keeps it until a refit on its own stream beats
it on held-out lookups (`caching.guard`, validated refit).

Default: `traces.synth` regime `mixture` (system prompts, multi-turn sessions, tool loops and one-off
prompts interleaved), 3,000 requests, seed 100 (the regimes the README scores use seeds 0-3), 2 requests/s;
fitted on all its lookups with params.yaml `cache_sim.learned`. Saved as LightGBM text (`model.txt`)
plus `prior.json` (features, parameters, provenance, the model file's sha256), read back without pickle;
the same command re-creates the committed `data/cache_prior` byte for byte (tested).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from caching.sim import LearnedModel, LearnedParams

MODEL_FILE = "model.txt"
MANIFEST_FILE = "prior.json"


@dataclass(frozen=True)
class PriorSource:
    """The synthetic trace a prior is fitted on (`traces.synth.prefix_regime_frame` arguments)."""

    regime: str = "mixture"
    rows: int = 3000
    seed: int = 100
    mean_rps: float = 2.0


def fit_prior(source: PriorSource, learned: LearnedParams, block_tokens: int) -> LearnedModel:
    """Pure: the survival model fitted on every lookup of the synthetic trace `source` describes."""
    from caching.sim import block_trace, feature_columns, fit_survival_window, lookup_features, select_rows
    from traces.synth import prefix_regime_frame

    if learned.objective != "survival":
        raise ValueError(f"the online prior is a survival model; cache_sim.learned.objective is {learned.objective!r}")
    frame = select_rows(prefix_regime_frame(source.regime, source.rows, source.seed, mean_rps=source.mean_rps))
    trace = block_trace(frame, 0.5, block_tokens)  # the cut marks what a report counts; all lookups are fitted
    X = lookup_features(frame, trace)
    cols = feature_columns(X.columns, learned.features)
    booster = fit_survival_window(X, trace.next_use, 0, len(trace), cols, learned, learned.num_boost_round)
    if booster is None:
        raise ValueError(f"too few lookups in {source} to fit a prior")
    return LearnedModel(booster, "survival", len(trace), len(trace), (), tuple(cols), describe(source))


def describe(source: PriorSource) -> str:
    return f"synthetic {source.regime}, {source.rows:,} requests, seed {source.seed}, {source.mean_rps:g} requests/s"


def save_prior(model: LearnedModel, source: PriorSource, learned: LearnedParams, out: Path) -> Path:
    """Write `model.txt` (LightGBM text) and `prior.json` (features, params, provenance, sha256) to `out`."""
    from core.files import write_atomic

    out.mkdir(parents=True, exist_ok=True)
    text = model.booster.model_to_string().encode()
    write_atomic(out / MODEL_FILE, text)
    manifest = {
        "kind": "caching.prior survival model",
        "features": list(model.features),
        "horizon_feature": "log2_horizon (last input column)",
        "train_lookups": model.train_lookups,
        "source": asdict(source) | {"generator": "traces.synth.prefix_regime_frame"},
        "learned_params": asdict(learned),
        "model_sha256": hashlib.sha256(text).hexdigest(),
        "recreate": f"beast cache prior --regime {source.regime} --rows {source.rows} --seed {source.seed} "
        f"--mean-rps {source.mean_rps:g} --out {out}",
    }
    write_atomic(out / MANIFEST_FILE, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    return out


def load_prior(folder: Path) -> LearnedModel:
    """The prior saved by `save_prior`; a clear ValueError when a file is missing, the checksum differs
    or the manifest is not a survival prior."""
    import lightgbm as lgb

    manifest_path, model_path = folder / MANIFEST_FILE, folder / MODEL_FILE
    for path in (manifest_path, model_path):
        if not path.is_file():
            raise ValueError(f"cache prior: {path} not found (re-create it with `beast cache prior --out {folder}`)")
    try:
        manifest = json.loads(manifest_path.read_text())
        features = tuple(manifest["features"])
        source = PriorSource(**{k: manifest["source"][k] for k in ("regime", "rows", "seed", "mean_rps")})
        expected, lookups = manifest["model_sha256"], int(manifest["train_lookups"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"cache prior: {manifest_path} is not a prior manifest ({exc})") from None
    text = model_path.read_bytes()
    if hashlib.sha256(text).hexdigest() != expected:
        raise ValueError(f"cache prior: {model_path} does not match the sha256 in {manifest_path}")
    booster = lgb.Booster(model_str=text.decode())
    if booster.num_feature() != len(features) + 1:
        raise ValueError(
            f"cache prior: {model_path} reads {booster.num_feature()} inputs, the manifest lists {len(features)} + 1"
        )
    return LearnedModel(booster, "survival", lookups, lookups, (), features, describe(source))


def main(
    regime: str = "mixture",
    rows: int = 3000,
    seed: int = 100,
    mean_rps: float = 2.0,
    params_file: Path | None = None,
    out: Path = Path("data/cache_prior"),
) -> Path:
    """`beast cache prior`: fit the prior on the synthetic trace and write it to `out`."""
    import time

    from caching.sim import CacheSimParams
    from core.config import load_params

    params = load_params(params_file, "cache_sim", CacheSimParams)
    source = PriorSource(regime, rows, seed, mean_rps)
    print(f"fitting the online cache prior on {describe(source)} ...")
    started = time.perf_counter()
    model = fit_prior(source, params.learned, params.block_tokens)
    save_prior(model, source, params.learned, out)
    print(
        f"fitted on {model.train_lookups:,} lookups in {time.perf_counter() - started:.1f} s; "
        f"wrote {out / MODEL_FILE} and {out / MANIFEST_FILE}"
    )
    return out
