"""The batch feature paths (`prompt_matrix`, `text_matrix`, `Encoder.vectors`, `Router.request_vectors`) give
exactly the per-request numbers on every sample prompt and every hostile one."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT

from features.embed import SPACE, EmbedParams, Encoder, fit_embed, piece_tokenizer_json, safe_cuts
from features.prompt import (
    _COMPILED,
    _COUNTED,
    _FLAGS,
    _count,
    prompt_features,
    prompt_matrix,
    prompt_vector,
    prompt_window,
)
from features.text import TextParams, bucket, fit_text, murmur_buckets, text_keys, text_matrix, text_vector
from serving.router import BATCH_MIN, RouteRequest


def _hostile_prompts() -> list[str]:
    """The JS router's hostile prompts (tests/serving/test_js_router.py), read from that file."""
    path = ROOT / "tests" / "serving" / "test_js_router.py"
    spec = importlib.util.spec_from_file_location("_js_router_prompts", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.HOSTILE_PROMPTS)


# where RE2 and Python `re` part ways (match counting at `^`, `$` before a final newline, lowercasing), and
# the numpy classes' edges (empty rows, a text ending in a word, astral-only class patterns)
EDGES = [
    None,
    "",
    "\n",
    "a\n",
    "?\n",
    "what\n",
    "\nwhat",
    "def(x==1)",
    "class (x) == y",
    "\ndef f():\n  return 1",
    "solve\nsolve",
    "x solve\nsolve",
    "User: a\nuser: b",
    "- a\n- b\n1. c",
    "```a``` b ```c",
    "```",
    "\U0001d518\U0001d52b \U00020000",
    "ΣΟΦΟΣ İ K",
    "ﬁ ＡＢＣ①",
    " leading and trailing  spaces ",
    # the shortcuts of `features.prompt._count`: calls, identifiers near and over 64 characters, runs that start
    # with digits, the guarded alternatives at the text's start, math words inside words and next to digits
    "f(x) g (y) h(\n) i(j(k)) 9abc(x) _z(1)",
    "a" * 64 + "(x) " + "b" * 65 + "(y) " + "9" * 70 + "c(z)",
    "def (x)",
    "import os",
    "  return(x)",
    "f(a==b) c==d",
    "</div> #include x -> y :: z || w && v",
    "a = b",
    "x*y",
    "2 \u00d7 3",
    "\\frac{1}{2}",
    "resolve dissolve solves solve2 2solve x_solve mathematics!",
    "Solve it",
    "math",
    "İntegral probability",
    "user:",
    "no colon user",
    "\n  human :",
    "assistant\t:",
    # the embedding's cut points (`features.embed.safe_cuts`): punctuation next to words, newlines, tabs
    "prices:\nB. (A) x.y e.g. U.S.A.!",
    "a\n\n  b\n",
    "\ttab\r\nline",
    '..."quoted"... (1,000)',
    "\u2581:x",
    "\u2581marker\u2581 and   runs",
]


@pytest.fixture(scope="module")
def prompts() -> list[str | None]:
    alpaca = pd.read_parquet(ROOT / "data" / "sample" / "alpaca_eval.parquet", columns=["prompt"])["prompt"]
    mmlu = pd.read_parquet(ROOT / "data" / "sample" / "routellm_mmlu.parquet", columns=["prompt"])["prompt"]
    return [*alpaca.drop_duplicates(), *mmlu.drop_duplicates().head(2000), *_hostile_prompts(), *EDGES]


def _bitwise_equal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per cell: same bits, or both NaN."""
    width = np.uint64 if a.dtype == np.float64 else np.uint32
    return (a.view(width) == b.view(width)) | (np.isnan(a) & np.isnan(b))


def test_every_count_shortcut_is_its_plain_pattern(prompts) -> None:
    """`_count` (bytes.split for words, math searched in parts, code_token guarded and possessive, turn's
    colon check) gives exactly what the pattern itself gives, window by window, ASCII or not."""
    for prompt in prompts:
        if prompt is None:
            continue
        text = prompt_window(prompt)
        raw = text.encode("ascii") if text.isascii() else None
        for name, rx, lower in _COUNTED:
            subject = text.lower() if lower else text
            plain = float(bool(rx.search(subject))) if name in _FLAGS else float(len(rx.findall(subject)))
            assert _count(name, rx, subject, raw) == plain, (name, text)
            assert _count(name, _COMPILED[name][0], subject, None) == plain, (name, text)


def test_prompt_matrix_is_prompt_vector_bit_for_bit(prompts) -> None:
    batch = prompt_matrix(prompts)
    single = np.vstack([prompt_vector(p) for p in prompts])
    assert batch.dtype == np.float64 and batch.shape == single.shape
    bad = np.argwhere(~_bitwise_equal(batch, single))
    assert len(bad) == 0, [(prompts[i][:40], j, batch[i, j], single[i, j]) for i, j in bad[:5]]
    assert prompt_matrix([]).shape == (0, single.shape[1])


def test_training_prompt_features_are_the_router_numbers(prompts) -> None:
    series = pd.Series([*prompts, prompts[0], None], dtype=object)  # repeats and nulls, as traces have them
    frame = prompt_features(series)
    single = np.vstack([prompt_vector(p) for p in series]).astype(np.float32)
    assert _bitwise_equal(frame.to_numpy(), single).all()


@pytest.mark.parametrize("hashing", ["c", "python"])
@pytest.mark.parametrize("params", [TextParams(k=8, n_features=1024), TextParams(sublinear_tf=False, min_df=1)])
def test_text_matrix_is_text_vector(prompts, params: TextParams, hashing: str, monkeypatch) -> None:
    """Either hashing path (the C kernel, or Python: no compiler) gives the same features both ways."""
    if hashing == "python":
        monkeypatch.setattr("features.text.kernel", lambda n: None)
    spec = fit_text(pd.Series(prompts[:300]), params)
    batch = text_matrix(spec, prompts)
    single = np.vstack([text_vector(spec, p) for p in prompts])
    assert batch.dtype == np.float32
    # the two paths sum in another order (text_matrix's docstring); on these prompts no float32 differs
    assert _bitwise_equal(batch, single).all(), np.nanmax(np.abs(batch.astype(np.float64) - single))
    assert text_matrix(spec, [None]).shape == (1, params.k) and np.isnan(text_matrix(spec, [None])).all()


def test_numpy_murmur_hash_is_bucket(prompts) -> None:
    keys = sorted({k for p in prompts[:400] if p is not None for k in text_keys(p)} | {"", "a", "ab", "abc", "abcd"})
    keys.append("w:" + "x" * 1001)
    raw = [k.encode() for k in keys]
    lens = np.array([len(r) for r in raw])
    data = np.frombuffer(b"".join(raw), dtype=np.uint8)
    for n in (1024, 4096, 2**31 - 1):
        want = [bucket(k, n) for k in keys]
        np.testing.assert_array_equal(murmur_buckets(data, np.cumsum(lens) - lens, lens, n), want)


@pytest.fixture(scope="module")
def encoder(prompts) -> Encoder:
    return fit_embed(pd.Series(prompts[:200]), EmbedParams(k=8)).encoder


def test_encoder_vectors_are_vector_bit_for_bit(encoder: Encoder, prompts) -> None:
    assert encoder._pieces is not None  # the Llama-2 tokenizer passes the piece proof
    for _ in range(2):  # cold memos, then warm ones
        batch = encoder.vectors(prompts)
        single = np.vstack([encoder.vector(p) for p in prompts])
        assert _bitwise_equal(batch, single).all()


def test_encoder_vector_reads_the_tokenizer_ids_through_its_memos(encoder: Encoder, prompts) -> None:
    """Without its C kernel `vector` takes its ids from the piece memos; the definition is the tokenizer's `ids`
    (cold and warm)."""
    some = [p for p in prompts if p is not None][:300] + [e for e in EDGES if e is not None]
    fresh = Encoder(encoder.tokenizer.to_str(), encoder.table, encoder.offset, encoder.max_chars, native=False)
    for _ in range(2):
        for p in some:
            assert _bitwise_equal(fresh.vector(p), fresh._pooled(fresh.ids(p))).all(), p[:80]
    assert len(fresh._pieces.bare) + len(fresh._pieces.whole) > 1000  # the memos were used and filled


def test_warmed_memos_and_cut_pieces_give_the_tokenizer_ids(encoder: Encoder, prompts) -> None:
    """A router without the C kernel warms its memos with the tokenizer's whole-word tokens, and a new piece is
    tokenised by the parts `safe_cuts` allows: the ids stay the tokenizer's own, and a punctuated word reuses the
    memoised word."""
    fresh = Encoder(encoder.tokenizer.to_str(), encoder.table, encoder.offset, encoder.max_chars, native=False)
    words = fresh.vocabulary_words()
    assert len(words) > 10_000 and "the" in words and all(SPACE not in w for w in words)
    fresh.warm(words)
    assert fresh._pieces.bare["prices"] == fresh._pieces.whole[SPACE + "prices"]
    asked: list[str] = []
    tokenizer = fresh._pieces.tokenizer

    class Spy:
        def encode(self, texts, **kwargs):
            asked.extend(texts)
            return tokenizer.encode(texts, **kwargs)

    fresh._pieces.tokenizer = Spy()
    fresh.vector("prices: prices.\nprices")  # pieces "prices:" and "prices.\nprices" (a line break is no space)
    assert sorted(asked) == sorted([":", ".", "\n", "prices"])  # "\u2581prices" came from the warm memo
    some = [p for p in prompts if p is not None][:300] + [e for e in EDGES if e is not None]
    for p in some:
        assert _bitwise_equal(fresh.vector(p), fresh._pooled(fresh.ids(p))).all(), p[:80]


def test_cut_points_are_only_where_no_merge_joins(encoder: Encoder) -> None:
    config = json.loads(encoder.tokenizer.to_str())
    cuts = safe_cuts(json.dumps(config))
    assert [p for p in cuts.split("prices:\nB.(x)") if p] == ["prices", ":", "\n", "B", ".(", "x", ")"]
    merges = config["model"]["merges"]
    joins = ["s :", "\n a"] if isinstance(merges[0], str) else [["s", ":"], ["\n", "a"]]
    model = {**config["model"], "merges": merges + joins}
    stricter = safe_cuts(json.dumps({**config, "model": model}))
    assert [p for p in stricter.split("prices:\nB.(x)") if p] == ["prices:\nB", ".(", "x", ")"]


def test_a_tokenizer_that_fails_the_piece_proof_takes_the_whole_text_path(encoder: Encoder, prompts) -> None:
    config = json.loads(encoder.tokenizer.to_str())
    assert piece_tokenizer_json(json.dumps(config)) is not None
    merges = config["model"]["merges"]
    cross = ["a \u2581b"] if isinstance(merges[0], str) else [["a", "\u2581b"]]
    for broken in (
        {**config, "pre_tokenizer": {"type": "Whitespace"}},
        {**config, "model": {**config["model"], "merges": merges + cross}},
        {**config, "normalizer": None},
    ):
        assert piece_tokenizer_json(json.dumps(broken)) is None
    plain = Encoder(json.dumps({**config, "pre_tokenizer": {"type": "Whitespace"}}), encoder.table, encoder.offset, 64)
    assert plain._pieces is None
    some = prompts[:50] + EDGES
    np.testing.assert_array_equal(plain.vectors(some), np.vstack([plain.vector(p) for p in some]))


def test_router_request_vectors_are_the_stacked_request_vectors(routed, prompts) -> None:
    router = routed[2]
    assert router.text is not None and router.embed is not None
    now = dt.datetime(2025, 1, 1, 5, tzinfo=dt.UTC)
    requests = [
        RouteRequest(
            prompt=p,
            task=["koala", None, "not-a-task"][i % 3],
            input_tokens=None if i % 4 else 10 * i,
            timestamp=None if i % 5 else dt.datetime(2025, 3, 1, i % 24, 30, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        )
        for i, p in enumerate(prompts)
    ]
    pairs = [router.request_vector(r, now) for r in requests]
    assert len(requests) >= max(BATCH_MIN.values())
    for size in (len(requests), 20, 5):  # every family's batch path; prompt stacked, the others batched; all stacked
        tokens, matrix = router.request_vectors(requests[:size], now)
        assert matrix.shape == (size, len(router._slots))
        np.testing.assert_array_equal(tokens, [t for t, _ in pairs[:size]])
        assert _bitwise_equal(matrix, np.vstack([v for _, v in pairs[:size]])).all()
    assert BATCH_MIN["text"] <= 20 < BATCH_MIN["prompt"] and BATCH_MIN["embed"] > 5
    empty_tokens, empty = router.request_vectors([], now)
    assert empty.shape == (0, len(router._slots)) and len(empty_tokens) == 0
