"""The online cache expert's shipped prior and its validated refit: the committed prior is re-created byte
for byte, read back without pickle and refused when altered; a refit is adopted only when it beats the
model in use on held-out lookups whose labels were known at the refit (known answers, seeded)."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT

from beast.cli import main as beast_main
from caching.guard import OnlineParams, online_predictions, paired_gain, row_log_loss
from caching.prior import MANIFEST_FILE, MODEL_FILE, PriorSource, fit_prior, load_prior, save_prior
from caching.sim import CacheSimParams, LearnedParams, block_trace, horizon_grid, lookup_features, select_rows
from core.config import load_params
from traces.synth import prefix_regime_frame

COMMITTED = ROOT / "data" / "cache_prior"


def test_log_loss_and_clustered_gain_known_answers() -> None:
    assert row_log_loss(np.array([0.5, 0.9, 0.2]), np.array([True, True, False])) == pytest.approx(
        [np.log(2), -np.log(0.9), -np.log(0.8)]
    )
    assert row_log_loss(np.array([0.0]), np.array([True]))[0] == pytest.approx(-np.log(1e-6))  # clipped, finite
    # gains 1 1 3 3 in two requests: mean 2; request sums 2 and 6 differ from 2 x 2 by -2 and +2: SE sqrt(8) / 4
    assert paired_gain(np.array([1.0, 1.0, 3.0, 3.0]), np.array([7, 7, 9, 9])) == pytest.approx((2.0, 8**0.5 / 4))
    # the same gains as four independent requests: the residuals cancel less, SE sqrt(4) / 4
    assert paired_gain(np.array([1.0, 1.0, 3.0, 3.0]), np.arange(4)) == pytest.approx((2.0, 0.5))


def test_committed_prior_is_recreated_byte_for_byte(tmp_path: Path) -> None:
    manifest = json.loads((COMMITTED / MANIFEST_FILE).read_text())
    source = PriorSource(**{k: manifest["source"][k] for k in ("regime", "rows", "seed", "mean_rps")})
    assert source == PriorSource("mixture", 3000, 100, 2.0)  # a seed none of the scored regimes use (0-3)
    params = load_params(ROOT / "params.yaml", "cache_sim", CacheSimParams)
    assert params.online.prior == Path("data/cache_prior") and manifest["learned_params"] == {
        k: list(v) if isinstance(v, tuple) else v for k, v in vars(params.learned).items()
    }
    model = fit_prior(source, params.learned, params.block_tokens)
    save_prior(model, source, params.learned, tmp_path)
    for name in (MODEL_FILE, MANIFEST_FILE):
        assert (tmp_path / name).read_text() == (COMMITTED / name).read_text().replace(
            "--out data/cache_prior", f"--out {tmp_path}"
        ), name
    assert hashlib.sha256((COMMITTED / MODEL_FILE).read_bytes()).hexdigest() == manifest["model_sha256"]
    # read back from LightGBM text: the same predictions as the fitted booster
    loaded = load_prior(COMMITTED)
    frame = select_rows(prefix_regime_frame("system", 300, 0))
    trace = block_trace(frame)
    X = lookup_features(frame, trace)
    grid = horizon_grid(len(trace))
    assert loaded.features == model.features and np.array_equal(loaded.curve(X, grid), model.curve(X, grid))
    assert "seed 100" in loaded.source


def test_an_altered_or_missing_prior_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "prior"
    shutil.copytree(COMMITTED, folder)
    text = (folder / MODEL_FILE).read_text()
    (folder / MODEL_FILE).write_text(text.replace("learning_rate", "learning_rate ", 1))
    with pytest.raises(ValueError, match="does not match the sha256"):
        load_prior(folder)
    (folder / MANIFEST_FILE).write_text("[]")
    with pytest.raises(ValueError, match="is not a prior manifest"):
        load_prior(folder)
    with pytest.raises(ValueError, match="not found"):
        load_prior(tmp_path / "nowhere")
    # the CLI: one line naming the file, no traceback
    params = tmp_path / "params.yaml"
    params.write_text(
        (ROOT / "params.yaml").read_text().replace("prior: data/cache_prior", f"prior: {tmp_path / 'nowhere'}")
    )
    trace = ROOT / "data" / "sample" / "mooncake_conversation.jsonl.gz"
    args = ["cache", "sim", str(trace), "--limit-rows", "50", "--out", str(tmp_path), "--params", str(params)]
    assert beast_main(args) != 0


@pytest.fixture(scope="module")
def mixture():
    frame = select_rows(prefix_regime_frame("mixture", 1500, 1)).reset_index(drop=True)
    trace = block_trace(frame, 0.5)
    return trace, lookup_features(frame, trace)


def test_a_refit_that_loses_on_held_out_lookups_keeps_the_prior(mixture) -> None:
    trace, X = mixture
    learned = LearnedParams(min_data_in_leaf=50)
    prior = load_prior(COMMITTED)
    online = OnlineParams(first_refit=1200, growth=100.0, validate=0.25)  # one refit, on 1,200 lookups
    validated = online_predictions(X, trace, learned, online, prior)
    always = online_predictions(X, trace, learned, replace(online, validate=0.0), prior)
    (refit,) = validated.refits
    # the prior, fitted on 63k lookups of another seed, predicts the held-out 300 lookups better than a
    # candidate fitted on 900: kept
    assert refit.at == 1200 and not refit.adopted and refit.incumbent_loss < refit.candidate_loss
    assert np.array_equal(validated.curve, prior.curve(X, horizon_grid(len(trace))))
    (forced,) = always.refits
    assert forced.adopted and forced.incumbent_loss is None and not np.array_equal(always.curve, validated.curve)
    assert np.array_equal(always.curve[:1200], validated.curve[:1200])


def test_without_a_prior_the_first_refit_must_beat_the_lru_like_curve() -> None:
    frame = select_rows(prefix_regime_frame("system", 1500, 1)).reset_index(drop=True)
    trace = block_trace(frame, 0.5)
    X = lookup_features(frame, trace)
    online = OnlineParams(first_refit=4000, growth=100.0, validate=0.25)
    (refit,) = online_predictions(X, trace, LearnedParams(), online).refits
    # shared system prompts: reuse structure beats age alone by far (measured 0.140 vs 0.329, 3.3 SE)
    assert refit.adopted and refit.candidate_loss < 0.5 * refit.incumbent_loss
    assert refit.incumbent_loss - refit.candidate_loss > 3 * refit.gain_se
    # a prior that reads a feature this trace lacks is refused, not silently mis-read
    with pytest.raises(ValueError, match="lacks: pos"):
        online_predictions(X.drop(columns="pos"), trace, LearnedParams(), online, load_prior(COMMITTED))
