"""Prompt embedding family (features/embed.py): the recipe by hand, bounded cost, strict spec, offline source."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT

from core.errors import BeastError
from features.embed import (
    EmbedParams,
    EmbedSpec,
    Encoder,
    fit_embed,
    load_source,
    project,
    transform_embed,
    well_formed,
)

PROMPTS = (
    pd.read_parquet(ROOT / "data" / "sample" / "alpaca_eval.parquet", columns=["prompt"])["prompt"]
    .drop_duplicates()
    .head(200)
)


@pytest.fixture(scope="module")
def spec() -> EmbedSpec:
    return fit_embed(PROMPTS, EmbedParams(k=8, max_chars=64))


def test_source_is_the_packaged_table_and_tokenizer_without_special_tokens() -> None:
    src = load_source()
    assert src.table.shape == (32000, 256) and src.table.dtype == np.float32
    assert json.loads(src.tokenizer_json)["added_tokens"] == []
    assert len(src.table_sha256) == 64 and src.version


def test_vector_is_the_mean_of_projected_token_rows_minus_the_offset(spec: EmbedSpec) -> None:
    enc = spec.encoder
    prompt = "Explain why the sky is blue."
    ids = enc.ids(prompt)
    assert len(ids) > 3
    table = project(load_source().table, spec.components)
    by_hand = table[ids].astype(np.float64).mean(axis=0) - spec.offset
    np.testing.assert_allclose(enc.vector(prompt), by_hand.astype(np.float32), rtol=0, atol=1e-7)
    # projecting the 256-d mean equals averaging the projected rows (the reason the bundle ships k columns)
    mean256 = load_source().table[ids].astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(mean256 @ spec.components.astype(np.float64).T - spec.offset, by_hand, atol=1e-5)


def test_batch_equals_single_and_nulls_are_nan(spec: EmbedSpec) -> None:
    series = pd.Series([*PROMPTS.head(20), None, "", PROMPTS.iloc[0]], dtype=object)
    batch = transform_embed(spec, series)
    single = np.stack([spec.encoder.vector(p) for p in series])
    np.testing.assert_array_equal(batch, single)
    assert np.isnan(batch[20]).all() and np.isfinite(batch[21]).all()
    np.testing.assert_array_equal(batch[21], (-spec.offset).astype(np.float32))  # no tokens: -offset


def test_only_the_first_max_chars_code_points_count(spec: EmbedSpec) -> None:
    head = "Summarise this report about river ecology and salmon. " * 2
    assert spec.params.max_chars == 64
    np.testing.assert_array_equal(spec.encoder.vector(head + "x" * 1_000_000), spec.encoder.vector(head[:64]))


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("abc", 2, "ab"),
        ("a\ud800b", 10, "a\ufffdb"),  # lone surrogate -> U+FFFD (as JS toWellFormed)
        ("\ud83d\ude00x", 1, "\U0001f600"),  # a surrogate pair is one code point, joined before the cut
        ("é" * 5, 3, "ééé"),
    ],
)
def test_well_formed_window(text: str, limit: int, expected: str) -> None:
    assert well_formed(text, limit) == expected


def test_spec_round_trips_and_rejects_damage(spec: EmbedSpec) -> None:
    again = EmbedSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again.to_dict() == spec.to_dict()
    for key, value, message in [
        ("kind", "other", "not a beast.features.embed"),
        ("version", "9", "version '9' is not supported"),
        ("offset", [0.0], "offset must be a list of 8"),
        ("table_sha256", "abc", "table_sha256 must be a sha256"),
        ("params", {"k": 8}, "params must be integers"),
    ]:
        bad = spec.to_dict() | {key: value}
        with pytest.raises(BeastError, match=message):
            EmbedSpec.from_dict(bad)


def test_bundle_files_are_checked_against_the_spec_hashes(spec: EmbedSpec) -> None:
    files = spec.bundle_files()
    assert len(files["embedding/table.f32"]) == 32000 * 8 * 4
    other = EmbedSpec.from_dict(spec.to_dict() | {"table_sha256": "0" * 64})
    with pytest.raises(BeastError, match="does not match the spec's sha256"):
        other.bundle_files()


def test_k_is_capped_by_the_prompts_and_one_prompt_is_refused() -> None:
    assert fit_embed(pd.Series(["a b", "c d", "e f"]), EmbedParams(k=32)).params.k == 2
    with pytest.raises(BeastError, match="need at least 2"):
        fit_embed(pd.Series(["only one"]), EmbedParams())


def test_a_bad_tokenizer_is_one_clear_error() -> None:
    with pytest.raises(BeastError, match="not a tokenizer JSON"):
        Encoder('{"model": 1}', np.zeros((2, 2), np.float32), np.zeros(2), 10)
