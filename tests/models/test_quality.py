"""Quality predictor: metric known answers, leak-free split, and a real fit on the AlpacaEval sample."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT

from features.build import FeatureParams
from features.model_cards import load_cards
from features.text import TextParams
from models.common import group_split
from models.quality import QualityParams, ece, fit_and_evaluate, quality_metrics, quality_rows


@pytest.mark.parametrize(
    ("pred", "actual", "expected"),
    [
        ([0.1, 0.1, 0.9, 0.9], [0.0, 0.2, 1.0, 0.8], 0.0),
        ([0.2, 0.2], [1.0, 1.0], 0.8),
        ([0.05, 0.95], [0.55, 0.45], 0.5),
    ],
)
def test_ece_known_answers(pred, actual, expected) -> None:
    assert ece(np.array(pred), np.array(actual), bins=10) == pytest.approx(expected)


def test_auc_against_the_strongest_model_on_the_same_prompt() -> None:
    rows = pd.DataFrame(
        {
            "prompt_id": ["p1", "p1", "p1", "p2", "p2", "p2"],
            "model": ["best", "a", "b", "best", "a", "b"],
            "quality": [0.5, 0.9, 0.1, 0.5, 0.2, 0.6],
        }
    )
    # labels (a, b): p1 (1, 0), p2 (0, 1); a perfect ranking of pred(m) - pred(best) gives AUC 1
    perfect = quality_metrics(rows, np.array([0.5, 0.8, 0.2, 0.5, 0.3, 0.7]), "best", 10)
    inverted = quality_metrics(rows, np.array([0.5, 0.2, 0.8, 0.5, 0.7, 0.3]), "best", 10)
    assert (perfect["auc_vs_strongest"], inverted["auc_vs_strongest"]) == (1.0, 0.0)
    assert perfect["spearman"] == pytest.approx(
        pd.Series([0.5, 0.8, 0.2, 0.5, 0.3, 0.7]).corr(rows["quality"], method="spearman")
    )


def test_split_by_prompt_never_leaks(sample_traces) -> None:
    rows = quality_rows(sample_traces)
    split = group_split(rows["prompt_id"], 0.2, salt="quality-test-0")
    train, test = set(rows.loc[split.train, "prompt_id"]), set(rows.loc[split.test, "prompt_id"])
    assert not train & test and len(train) + len(test) == 805
    assert 0.15 < len(test) / 805 < 0.25


def test_fit_on_alpaca_beats_the_per_model_mean(sample_traces, prices) -> None:
    params = QualityParams(
        heads="shared", num_boost_round=300, prior_fallback=False
    )  # the shared head itself (the fallback has its own test)
    predictor, evaluation = fit_and_evaluate(
        sample_traces, params, FeatureParams(text=TextParams(k=16)), load_cards(ROOT / "data" / "models.yaml"), prices
    )
    m, base = evaluation.metrics, evaluation.baselines["per_model_mean"]
    assert (evaluation.n_train + evaluation.n_test) == 14 * 805
    assert m["auc_vs_strongest"] > base["auc_vs_strongest"] and m["auc_vs_strongest"] > 0.79
    assert m["spearman"] > 0.6 and m["ece"] < 0.05
    assert predictor.heads == "shared" and set(predictor.boosters) == {"shared"}


def _labelled(prompts: int, signal: bool, seed: int = 0) -> pd.DataFrame:
    """3 models x `prompts` prompts; with `signal` the prompt's kind decides which model answers well,
    without it every label is a coin flip at the model's own rate."""
    rng = np.random.default_rng(seed)
    words = ["river", "winter", "lantern", "harbour", "meadow", "comet", "violin", "orchard", "glacier", "sparrow"]
    rows = []
    for i in range(prompts):
        poem = i % 2 == 0
        text = (
            f"Write a poem about a {words[i % 10]} and a {words[(3 * i + 1) % 10]}."
            if poem
            else f"Compute {rng.integers(100, 999)} + {rng.integers(100, 999)} step by step."
        )
        for model, rate in (("gemma-2b-it", 0.3), ("gemma-7b-it", 0.5), ("claude-2.1", 0.7)):
            p = (0.9 if poem else 0.1) if signal and model == "gemma-2b-it" else rate
            rows.append(
                {
                    "prompt_id": f"p{i}",
                    "prompt": text,
                    "model": model,
                    "quality": float(rng.random() < p),
                    "input_tokens": len(text) // 4,
                }
            )
    return pd.DataFrame(rows)


@pytest.mark.parametrize(("signal", "fallback"), [(False, "prior"), (True, None)])
def test_heads_fall_back_to_the_prior_only_when_validation_says_they_add_nothing(signal, fallback, prices) -> None:
    from models.quality import fit

    rows = _labelled(400, signal)
    params = QualityParams(
        heads="per_model",
        num_leaves=4,
        min_data_in_leaf=10,
        num_boost_round=200,
        early_stopping_rounds=20,
        learning_rate=0.1,
    )
    features = FeatureParams(text=TextParams(n_features=256, k=4, min_df=1), use_context=False)
    predictor = fit(rows, params, features, load_cards(ROOT / "data" / "models.yaml"), prices)
    assert predictor.fallback == fallback and set(predictor.valid_loss) == {"per_model", "prior"}
    from features.build import build_features

    pred = predictor.predict(build_features(rows, predictor.spec), rows["model"])
    means = rows.groupby("model")["quality"].mean()
    if fallback == "prior":  # constant heads: exactly each model's training mean, for every prompt
        np.testing.assert_allclose(pred, rows["model"].map(means).to_numpy(), atol=1e-9)
    else:  # the poem/sum split is learned for the model whose quality depends on it
        gemma = (rows["model"] == "gemma-2b-it").to_numpy()
        poem = rows["prompt"].str.startswith("Write").to_numpy()
        assert pred[gemma & poem].mean() > 0.75 and pred[gemma & ~poem].mean() < 0.25
