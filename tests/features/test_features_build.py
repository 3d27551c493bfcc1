"""The feature spec: versioned, JSON round trip exact, fitted on training rows only; and build throughput."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import ROOT

from core.errors import BeastError
from features.build import FeatureParams, FeatureSpec, build_features, fit_features
from features.model_cards import load_cards
from features.text import TextParams


@pytest.fixture(scope="module")
def alpaca(sample_traces):
    return sample_traces[sample_traces["quality"].notna()].reset_index(drop=True)


@pytest.fixture(scope="module")
def spec(alpaca, prices) -> FeatureSpec:
    return fit_features(
        alpaca, FeatureParams(text=TextParams(n_features=1024, k=8)), load_cards(ROOT / "data" / "models.yaml"), prices
    )


def test_spec_round_trip_and_version(spec: FeatureSpec, alpaca) -> None:
    again = FeatureSpec.from_json(spec.to_json())
    assert again.version == spec.version and len(spec.version) == 16
    np.testing.assert_array_equal(
        build_features(alpaca.head(300), again).to_numpy(), build_features(alpaca.head(300), spec).to_numpy()
    )
    tampered = json.loads(spec.to_json())
    tampered["columns"] = tampered["columns"][:-1]
    with pytest.raises(BeastError, match="does not match its content"):
        FeatureSpec.from_json(json.dumps(tampered))
    with pytest.raises(BeastError, match="not a feature spec"):
        FeatureSpec.from_json('{"kind": "other"}')


def test_frame_shape_order_and_broadcast(spec: FeatureSpec, alpaca, sample_traces) -> None:
    X = build_features(alpaca, spec)
    assert tuple(X.columns) == spec.columns and X.dtypes.eq(np.float32).all()
    assert len(spec.columns) == 6 + 2 + 28 + 8 + 32 + 8  # model, tokens, prompt, text, embedding, context
    # the same prompt sent to 14 models has the same prompt and text features, different model features
    one = X[alpaca["prompt_id"] == alpaca["prompt_id"].iloc[0]]
    assert len(one) == 14 and one.filter(like="text_").nunique().max() == 1 and one["model_code"].nunique() == 14
    assert one.filter(like="emb_").nunique().max() == 1 and one.filter(like="emb_").notna().all().all()
    # rows without a prompt (Mooncake, Azure): prompt and text features are NaN, not zeros
    no_prompt = build_features(sample_traces[sample_traces["prompt"].isna()].head(100), spec)
    assert no_prompt["text_0"].isna().all() and no_prompt["emb_0"].isna().all() and no_prompt["chars"].isna().all()


def test_text_fitted_on_given_rows_only(alpaca, prices) -> None:
    cards = load_cards(ROOT / "data" / "models.yaml")
    params = FeatureParams(text=TextParams(n_features=1024, k=8))
    half = alpaca[alpaca["prompt_id"] < "8"]  # prompt ids are hex: about half of them
    a, b = fit_features(half, params, cards, prices), fit_features(alpaca, params, cards, prices)
    assert a.text.n_docs == half["prompt_id"].nunique() and b.text.n_docs == 805
    assert a.version != b.version
