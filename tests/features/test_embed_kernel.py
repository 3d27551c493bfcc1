"""The embedding family's C kernel (`features/embed_kernel.c`) gives the `tokenizers` library's Llama-2 ids and
the memo path's vectors bit for bit: on every sample, hostile and edge prompt and its window, on random texts of
the characters BPE treats apart (spaces and markers, byte fallback, astral code points, long runs with no space)
and in batches; a tokenizer outside the piece proof, or no kernel, takes the memo path (said once)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, assert_a_missing_kernel_is_said_once, needs_cc
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_feature_batches import EDGES, prompts  # noqa: F401 - `prompts` is a fixture

import features.embed_kernel as ek
from features.embed import SPACE, EmbedParams, Encoder, fit_embed, kernel_setup, well_formed
from features.prompt import prompt_window

# what BPE treats apart: spaces (runs, at the ends) and the marker itself, words the vocabulary has whole and
# pieces it has not, punctuation and line breaks, digits, characters with no token (byte fallback: CJK, emoji,
# control characters, a private-use code point), combining marks, astral code points, NUL
PIECES = [
    *[" ", "  ", "\t", "\n", "\r\n", SPACE, SPACE * 2, "\u00a0", "\u3000"],
    *["the", "The", "prices", "unbelievably", "xqzv", "Llama", "https://x.org/a?b=1", "naïve", "café"],
    *list(".,:;!?()[]{}<>\"'`~@#$%^&*-_=+/\\|"),
    *["0", "12", "3.14", "1e-9", "2025-01-01"],
    *["中文", "日本語", "한국어", "Привет", "مرحبا", "ΣΟΦΟΣ", "\u0301", "e\u0301", "\ue000"],
    *["\x00", "\x7f", "\x1b"],
    *["\U0001f600", "\U0001f469\u200d\U0001f4bb", "\U00020000", "\U0010fffd"],
]


@pytest.fixture(scope="module")
def encoders() -> tuple[Encoder, Encoder]:
    """(C kernel, memo path) encoders of one fitted spec: the same tokenizer, table and offset."""
    some = pd.read_parquet(ROOT / "data" / "sample" / "alpaca_eval.parquet", columns=["prompt"])["prompt"]
    fast = fit_embed(some.drop_duplicates().head(200), EmbedParams(k=8)).encoder
    slow = Encoder(fast.tokenizer_json, fast.table, fast.offset, fast.max_chars, native=False)
    return fast, slow


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit-for-bit equality of float32 arrays (NaN rows included)."""
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def _tokenizer_ids(encoder: Encoder, text: str) -> list[int]:
    return encoder.tokenizer.encode(text, add_special_tokens=False).ids


@needs_cc
def test_the_kernel_is_built_for_the_llama_tokenizer(encoders) -> None:
    fast, slow = encoders
    assert fast.in_c() and not slow.in_c()
    assert fast._kernel.ids("Hello world") == _tokenizer_ids(fast, "Hello world") == [15043, 3186]


@needs_cc
def test_every_sample_hostile_and_edge_prompt_gives_the_tokenizer_ids_and_memo_vectors(encoders, prompts) -> None:  # noqa: F811
    fast, slow = encoders
    texts = [p for p in prompts if p is not None]
    windows = [prompt_window(p) for p in texts]
    for text in texts + windows:
        well = well_formed(text, fast.max_chars)
        assert fast._kernel.ids(well) == _tokenizer_ids(fast, well), text[:80]
    for batch in (prompts, [prompt_window(p) if p is not None else None for p in prompts]):
        want = np.vstack([slow.vector(p) for p in batch])
        assert _same(np.vstack([fast.vector(p) for p in batch]), want)
        assert _same(fast.vectors(batch), want)


@needs_cc
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(PIECES), max_size=60))
@example([])
@example(["中文"] * 300)  # one piece of 600 characters that have no token: 1,800 byte symbols to merge
@example([" "] * 40)
@example([SPACE, "the", " ", " ", SPACE, SPACE])
def test_random_texts_of_what_bpe_treats_apart_give_the_tokenizer_ids(encoders, pieces: list[str]) -> None:
    fast, _ = encoders
    text = "".join(pieces)
    assert fast._kernel.ids(text) == _tokenizer_ids(fast, text)
    assert _same(fast.vector(text), fast._pooled(_tokenizer_ids(fast, well_formed(text, fast.max_chars))))


@needs_cc
def test_long_windows_without_spaces_are_merged_like_the_tokenizer(encoders) -> None:
    """A piece is all the text between markers: a 1,024-character piece of letters, digits or another script is
    one heap of merges (the C's O(n log n) path), and a lone surrogate is made U+FFFD first."""
    fast, slow = encoders
    for text in ("ab" * 600, "1234567890" * 120, "Привет" * 200, "a\ud800b" * 300, "x" + " " * 1100):
        well = well_formed(text, fast.max_chars)
        assert fast._kernel.ids(well) == _tokenizer_ids(fast, well)
        assert _same(fast.vector(text), slow.vector(text))


def test_a_tokenizer_outside_the_piece_proof_keeps_the_memo_path(encoders) -> None:
    fast, _ = encoders
    config = json.loads(fast.tokenizer_json)
    other = json.dumps({**config, "pre_tokenizer": {"type": "Whitespace"}})
    assert kernel_setup(other, fast.table, fast.offset) is None
    plain = Encoder(other, fast.table, fast.offset, 64)
    assert not plain.in_c()
    np.testing.assert_array_equal(plain.vector("a b"), plain._pooled(plain.ids("a b")))


@needs_cc
def test_a_setup_with_an_id_outside_the_table_is_refused_with_a_warning(encoders) -> None:
    fast, _ = encoders
    setup = kernel_setup(fast.tokenizer_json, fast.table[:100], fast.offset)
    with pytest.warns(UserWarning, match=r"tokenizers library: embed_kernel.c refused the tokenizer"):
        assert ek.load_kernel(setup) is None


def test_a_missing_kernel_is_said_once_unless_disabled(encoders, monkeypatch) -> None:
    fast, _ = encoders
    setup = kernel_setup(fast.tokenizer_json, fast.table, fast.offset)
    said = "tokenising with memos and the tokenizers library"
    assert_a_missing_kernel_is_said_once(monkeypatch, lambda: ek.load_kernel(setup), said)


@needs_cc
def test_memoised_pieces_and_concurrent_calls_give_the_same_ids(encoders, prompts) -> None:  # noqa: F811
    """The C memo of short pieces (a direct-mapped table, one call at a time; a call that finds it busy runs BPE
    for every piece): a second sight, pieces colliding in a slot or too long for it, and four threads at once
    give what the tokenizer gives."""
    fast, _ = encoders
    kernel = fast._kernel
    texts = [well_formed(p, fast.max_chars) for p in prompts if p is not None][:600]
    long_pieces = ["x" * 17 + " " + "y" * 40, "ab" * 8 + " " + "ab" * 8 + "a"]  # 16 code points and beyond
    want = [_tokenizer_ids(fast, t) for t in texts + long_pieces]
    for _ in range(2):  # first sight fills the memo, the second reads it
        assert [kernel.ids(t) for t in texts + long_pieces] == want
    vectors = np.vstack([kernel.vector(t) for t in texts])
    with ThreadPoolExecutor(4) as pool:  # ctypes releases the GIL: the calls overlap
        for got in pool.map(lambda _: np.vstack([kernel.vector(t) for t in texts]), range(8)):
            assert _same(got, vectors)
