"""Known answers for the prompt features and the JSON text spec (hashed TF-IDF + SVD)."""

from __future__ import annotations

import base64
import json
import math
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import ROOT
from sklearn.feature_extraction.text import TfidfTransformer
from sklearn.utils import murmurhash3_32

from core.errors import BeastError
from features.prompt import (
    PATTERNS,
    PROMPT_FEATURE_DOCS,
    PROMPT_FEATURES,
    prompt_features,
)
from features.text import (
    _VOCABS,
    _WORD_BUCKETS,
    TextParams,
    TextSpec,
    _counts,
    _tfidf,
    bucket,
    fit_text,
    request_buckets,
    smooth_idf,
    text_keys,
    text_matrix,
    text_vector,
    transform_text,
    warm_words,
)

# AlpacaEval 805 prompts, default TextParams: sum of TruncatedSVD explained_variance_ratio_ (measured).
ALPACA_EVR_SUM = 0.1726


@pytest.fixture(scope="module")
def alpaca() -> pd.DataFrame:
    return pd.read_parquet(ROOT / "data" / "sample" / "alpaca_eval.parquet", columns=["prompt_id", "prompt"])


@pytest.fixture(scope="module")
def alpaca_prompts(alpaca: pd.DataFrame) -> pd.Series:
    return alpaca.drop_duplicates("prompt_id")["prompt"].reset_index(drop=True)


@pytest.fixture(scope="module")
def alpaca_spec(alpaca_prompts: pd.Series) -> TextSpec:
    return fit_text(alpaca_prompts, TextParams())


# ------------------------------------------------------------------------------------------ prompt features

CODE = "Fix this:\n```python\ndef f(x):\n    return x+1\n```"
MATH = "Solve 2x + 3 = 7 for x."
CHINESE = "什么是机器学习？"
TURNS = "User: hi\nAssistant: hello! How can I help?\nUser: what is 2+2?"
RUSSIAN = "Привет, как дела?"
LIST = "Write a list:\n- apples\n- pears\n1. one"


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        (
            CODE,
            {
                "chars": 48,
                "words": 8,
                "tokens_est": 12,
                "lines": 5,
                "has_code": 1,
                "code_tokens": 3,
                "code_ratio": 38 / 48,
                "code_symbol_ratio": 6 / 48,
                "digit_ratio": 1 / 48,
                "math": 1,
                "question": 0,
                "q_other": 1,
                "imperative": 1,
                "latin_ratio": 25 / 48,
                "upper_ratio": 1 / 25,
                "turns": 1,
            },
        ),
        (
            MATH,
            {
                "chars": 23,
                "words": 8,
                "tokens_est": 6,
                "has_code": 0,
                "code_symbol_ratio": 1 / 23,
                "digit_ratio": 3 / 23,
                "math": 1,
                "question": 0,
                "imperative": 1,
                "latin_ratio": 10 / 23,
                "upper_ratio": 1 / 10,
                "q_other": 1,
            },
        ),
        (
            CHINESE,
            {
                "chars": 8,
                "words": 1,
                "tokens_est": 2,
                "question": 1,
                "q_other": 1,
                "imperative": 0,
                "non_ascii_ratio": 1,
                "cjk_ratio": 7 / 8,
                "latin_ratio": 0,
                "upper_ratio": 0,
                "math": 0,
            },
        ),
        (
            TURNS,
            {
                "chars": 61,
                "lines": 3,
                "turns": 4,
                "question": 1,
                "q_how": 1,
                "q_what": 0,
                "q_other": 0,
                "math": 1,
                "imperative": 0,
            },
        ),
        (
            RUSSIAN,
            {
                "chars": 17,
                "words": 3,
                "cyrillic_ratio": 13 / 17,
                "non_ascii_ratio": 13 / 17,
                "question": 1,
                "latin_ratio": 0,
            },
        ),
        (LIST, {"lines": 4, "list_items": 3, "imperative": 1, "question": 0, "q_other": 1}),
        ("how do magnets work", {"question": 1, "q_how": 1, "q_other": 0, "imperative": 0}),
        ("Explain why the sky is blue", {"question": 0, "q_why": 1, "imperative": 1}),
        ("Show me a cat", {"q_other": 1, "imperative": 1, "question": 0}),  # "how" inside "show" is not a word
        ("Please, summarise this", {"imperative": 1}),
        (
            "",
            {
                "chars": 0,
                "words": 0,
                "tokens_est": 0,
                "lines": 1,
                "turns": 1,
                "q_other": 1,
                "latin_ratio": 0,
                "code_ratio": 0,
            },
        ),
    ],
)
def test_prompt_features_known_answers(prompt: str, expected: dict[str, float]) -> None:
    row = prompt_features(pd.Series([prompt])).iloc[0]
    for name, value in expected.items():
        assert row[name] == pytest.approx(value, rel=1e-6), name


def test_prompt_features_shape_nulls_and_docs() -> None:
    frame = prompt_features(pd.Series([MATH, None, MATH, CODE], index=[10, 11, 12, 13], dtype=object))
    assert tuple(frame.columns) == PROMPT_FEATURES
    assert set(PROMPT_FEATURE_DOCS) == set(PROMPT_FEATURES)
    assert all(doc.strip() for doc in PROMPT_FEATURE_DOCS.values())
    assert (frame.dtypes == np.float32).all()
    assert list(frame.index) == [10, 11, 12, 13]
    assert frame.loc[11].isna().all() and not frame.drop(index=11).isna().any().any()
    assert frame.loc[10].equals(frame.loc[12])
    assert prompt_features(pd.Series([], dtype=object)).shape == (0, len(PROMPT_FEATURES))
    # one-hot question word: exactly one of q_* per non-null row
    q = frame[[c for c in PROMPT_FEATURES if c.startswith("q_")]].drop(index=11)
    assert (q.sum(axis=1) == 1).all()


def test_prompt_features_same_for_any_string_dtype(alpaca_prompts: pd.Series) -> None:
    a = prompt_features(alpaca_prompts.astype(object))
    for dtype in ("string[python]", "string[pyarrow]", "str"):
        pd.testing.assert_frame_equal(a, prompt_features(alpaca_prompts.astype(dtype)))


JS_COUNTS = """
const {corpus, patterns} = JSON.parse(require("fs").readFileSync(0, "utf8"));
const out = {lengths: corpus.map((s) => [...s].length), lower: corpus.map((s) => s.toLowerCase()), counts: {}};
for (const [name, [source, lower]] of Object.entries(patterns)) {
  const re = new RegExp(source, "gu");
  out.counts[name] = corpus.map((s) => ((lower ? s.toLowerCase() : s).match(re) || []).length);
}
const fenced = new RegExp(patterns.fenced_block[0], "gu");
out.outside = corpus.map((s) => [...s.replace(fenced, "")].length);
const wh = new RegExp(patterns.wh_any[0], "u");
out.wh = corpus.map((s) => (s.toLowerCase().match(wh) || [null, ""])[1]);
process.stdout.write(JSON.stringify(out));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_patterns_count_the_same_in_javascript(alpaca_prompts: pd.Series) -> None:
    """Every documented regex source, run by node with the `gu` flags, counts what Python `re` counts."""
    corpus = [*alpaca_prompts, CODE, MATH, CHINESE, TURNS, RUSSIAN, LIST, "x\n", "```\nopen fence\n", "why?\n", "😀 a"]
    for name, (source, _) in PATTERNS.items():
        bare = source.replace(r"[\s\S]", "")  # the idiom "any character" means the same everywhere
        assert not any(esc in bare for esc in (r"\s", r"\w", r"\b", r"\d")), name
    payload = json.dumps({"corpus": corpus, "patterns": PATTERNS})
    done = subprocess.run(
        ["node", "-e", JS_COUNTS], input=payload, capture_output=True, text=True, check=True, timeout=60
    )
    js = json.loads(done.stdout)
    assert js["lengths"] == [len(p) for p in corpus]
    assert js["lower"] == [p.lower() for p in corpus]
    assert js["outside"] == [len(re.sub(PATTERNS["fenced_block"][0], "", p)) for p in corpus]
    wh = re.compile(PATTERNS["wh_any"][0])
    assert js["wh"] == [m.group(1) if (m := wh.search(p.lower())) else "" for p in corpus]
    for name, (source, lower) in PATTERNS.items():
        regex = re.compile(source)
        assert js["counts"][name] == [len(regex.findall(p.lower() if lower else p)) for p in corpus], name


# ------------------------------------------------------------------------------------------ tokens, hashing


def murmur3_32(data: bytes, seed: int = 0) -> int:
    """Reference MurmurHash3 x86 32 in plain integer arithmetic: the recipe a JS port follows."""
    m = 0xFFFFFFFF

    def rotl(x: int, r: int) -> int:
        return ((x << r) | (x >> (32 - r))) & m

    def mix(k: int) -> int:
        return (rotl((k * 0xCC9E2D51) & m, 15) * 0x1B873593) & m

    h = seed
    n4 = len(data) // 4 * 4
    for i in range(0, n4, 4):
        h = (rotl(h ^ mix(int.from_bytes(data[i : i + 4], "little")), 13) * 5 + 0xE6546B64) & m
    if len(data) > n4:
        h ^= mix(int.from_bytes(data[n4:], "little"))
    h ^= len(data)
    h = ((h ^ (h >> 16)) * 0x85EBCA6B) & m
    h = ((h ^ (h >> 13)) * 0xC2B2AE35) & m
    return h ^ (h >> 16)


def test_text_keys_known_answer() -> None:
    assert text_keys("The cat!") == [
        "w:the", "w:cat", "b:the cat", "c: th", "c:the", "c:he ", "c: ca", "c:cat", "c:at ",
    ]  # fmt: skip
    assert text_keys("Ｈｅｌｌｏ ① 世界 x") == [  # NFKC: fullwidth -> ASCII, circled 1 -> 1; CJK separates
        "w:hello", "w:1", "w:x", "b:hello 1", "b:1 x",
        "c: he", "c:hel", "c:ell", "c:llo", "c:lo ", "c: 1 ", "c: x ",
    ]  # fmt: skip
    assert text_keys("") == [] and text_keys("¿¡…") == []


@pytest.mark.parametrize(
    ("key", "expected"),
    [("", 0), ("hello", 613153351), ("The quick brown fox jumps over the lazy dog", 0x2E4FF723)],
)
def test_murmur3_known_vectors(key: str, expected: int) -> None:
    assert murmurhash3_32(key, seed=0, positive=True) == expected
    assert murmur3_32(key.encode()) == expected
    assert bucket(key, 4096) == expected % 4096


def test_reference_murmur3_matches_sklearn_on_real_keys(alpaca_prompts: pd.Series) -> None:
    keys = sorted({k for p in alpaca_prompts[:200] for k in text_keys(p)})
    assert len(keys) > 3000
    assert [murmur3_32(k.encode()) for k in keys] == [murmurhash3_32(k, seed=0, positive=True) for k in keys]


# ------------------------------------------------------------------------------------------ idf, tf-idf

TINY = pd.Series(["the cat", "the dog", "the cat sat", "the cat", None])  # 3 distinct non-null prompts


def test_warmed_words_give_the_same_buckets_and_features(alpaca_spec: TextSpec) -> None:
    """`warm_words` (a router's load) memoises the buckets of words' [a-z0-9]+ parts for both paths; a prompt
    made of them gets exactly its keys' buckets and the same features either way (n = 1,031: a fresh memo)."""
    prompt = "Hello, world's 2nd prices: Zebra-crossing"
    warm_words(["Hello", "world's", "2nd", "prices:", "Zebra-crossing"], 1031)
    memoised = set(_WORD_BUCKETS[1031]) & set(_VOCABS[1031].index)
    assert {"hello", "world", "s", "2nd", "prices", "zebra", "crossing"} <= memoised
    assert sorted(request_buckets(prompt, 1031)) == sorted(bucket(k, 1031) for k in text_keys(prompt))
    warm_words(["Hello", "world's", "Zebra"], alpaca_spec.params.n_features)
    np.testing.assert_array_equal(text_matrix(alpaca_spec, [prompt] * 20)[0], text_vector(alpaca_spec, prompt))


def test_idf_by_hand() -> None:
    params = TextParams(n_features=4096, k=2, min_df=2)
    keys = {k for p in TINY.dropna() for k in text_keys(p)}
    assert len({bucket(k, 4096) for k in keys}) == len(keys)  # no collision: each bucket is one key
    spec = fit_text(TINY, params)
    idf = {k: spec.idf[bucket(k, 4096)] for k in ("w:the", "w:cat", "c: th", "w:dog", "b:cat sat")}
    assert spec.n_docs == 3
    assert idf["w:the"] == 1.0 and idf["c: th"] == 1.0  # df 3: ln(4/4) + 1
    assert idf["w:cat"] == pytest.approx(math.log(4 / 3) + 1)  # df 2
    assert idf["w:dog"] == 0.0 and idf["b:cat sat"] == 0.0  # df 1 < min_df
    assert np.count_nonzero(spec.idf) == sum(
        1 for k in keys if sum(k in text_keys(p) for p in ("the cat", "the dog", "the cat sat")) >= 2
    )


def test_smooth_idf_formula() -> None:
    got = smooth_idf(np.array([0.0, 1, 2, 10]), 10, min_df=1)
    assert got.tolist() == pytest.approx([0.0, math.log(11 / 2) + 1, math.log(11 / 3) + 1, 1.0])
    assert got[0] == 0.0  # df 0 < min_df 1


@pytest.mark.parametrize("sublinear", [False, True])
def test_tfidf_matches_sklearn(alpaca_prompts: pd.Series, sublinear: bool) -> None:
    counts = _counts(list(alpaca_prompts), 4096)
    df = np.bincount(counts.indices, minlength=4096).astype(float)
    ours = _tfidf(counts, smooth_idf(df, counts.shape[0], min_df=1), sublinear)
    theirs = TfidfTransformer(sublinear_tf=sublinear).fit_transform(counts)
    theirs = theirs[:, df > 0]  # sklearn's idf for unseen buckets is irrelevant: their columns are empty
    assert abs(ours[:, df > 0] - sp.csr_matrix(theirs)).max() < 1e-12


# ------------------------------------------------------------------------------------------ spec, transform


def test_alpaca_svd(alpaca_spec: TextSpec, alpaca_prompts: pd.Series, alpaca: pd.DataFrame) -> None:
    out = transform_text(alpaca_spec, alpaca_prompts)
    assert out.shape == (805, 32) and out.dtype == np.float32 and not np.isnan(out).any()
    assert sum(alpaca_spec.explained_variance_ratio) == pytest.approx(ALPACA_EVR_SUM, abs=0.005)
    assert alpaca_spec.components.shape == (32, 4096) and alpaca_spec.components.dtype == np.float32
    # every trace row (805 prompts x 14 models) gets its prompt's vector
    full = transform_text(alpaca_spec, alpaca["prompt"])
    first = alpaca_prompts.set_axis(alpaca_prompts).index.get_indexer(alpaca["prompt"])
    assert np.array_equal(full, out[first])


def test_json_round_trip_is_exact_and_small(alpaca_spec: TextSpec, alpaca_prompts: pd.Series) -> None:
    text = alpaca_spec.to_json()
    assert len(text.encode()) < 2_000_000
    back = TextSpec.from_json(text)
    assert back.params == alpaca_spec.params and back.n_docs == 805
    assert np.array_equal(back.idf, alpaca_spec.idf) and np.array_equal(back.components, alpaca_spec.components)
    assert np.array_equal(transform_text(back, alpaca_prompts), transform_text(alpaca_spec, alpaca_prompts))
    assert back.to_json() == text


def test_fit_is_deterministic(alpaca_prompts: pd.Series, alpaca_spec: TextSpec) -> None:
    again = fit_text(alpaca_prompts, TextParams())
    assert again.to_json() == alpaca_spec.to_json()
    assert np.array_equal(transform_text(again, alpaca_prompts), transform_text(alpaca_spec, alpaca_prompts))


def test_transform_nulls_empty_and_order(alpaca_spec: TextSpec) -> None:
    out = transform_text(alpaca_spec, pd.Series([None, "", "你好", "Write a poem", "Write a poem"], dtype=object))
    assert np.isnan(out[0]).all()
    assert (out[1] == 0).all() and (out[2] == 0).all()  # no [a-z0-9] word: zero vector
    assert np.array_equal(out[3], out[4]) and np.abs(out[3]).sum() > 0
    assert transform_text(alpaca_spec, pd.Series([], dtype=object)).shape == (0, 32)


def test_transform_uses_only_the_spec(alpaca_spec: TextSpec) -> None:
    """components @ L2-normalised (tf * idf), recomputed here with numpy from the JSON fields alone."""
    raw = json.loads(alpaca_spec.to_json())
    n, k = raw["params"]["n_features"], raw["params"]["k"]
    comps = np.frombuffer(base64.b64decode(raw["components"]["base64"]), dtype="<f4").reshape(k, n)
    prompt = "Explain how a transformer model works, step by step."
    tf = np.zeros(n)
    for key in text_keys(prompt):
        tf[murmur3_32(key.encode()) % n] += 1
    x = np.where(tf > 0, 1 + np.log(np.where(tf > 0, tf, 1)), 0) * np.array(raw["idf"])
    expected = comps.astype(float) @ (x / np.linalg.norm(x))
    assert np.allclose(transform_text(alpaca_spec, pd.Series([prompt]))[0], expected, atol=1e-6)


def _mutated(spec: TextSpec, **changes: object) -> str:
    raw = json.loads(spec.to_json())
    for dotted, value in changes.items():
        *path, last = dotted.split("__")
        node = raw
        for part in path:
            node = node[part]
        node[last] = value
    return json.dumps(raw)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"version": "2"}, "version '2' is not supported"),
        ({"kind": "other"}, "not a beast.features.text object"),
        ({"params__k": 33}, r"components.shape is \[32, 4096\], params say \[33, 4096\]"),
        ({"params__k": "32"}, "params.k must be int"),
        ({"params__k": 0}, "1 <= k < n_features"),
        ({"params__extra": 1}, "params must have exactly the fields"),
        ({"idf": [1.0, 2.0]}, "idf must be a list of 4096 numbers"),
        ({"components__base64": "AAAA"}, "components hold 3 bytes, shape"),
        ({"components__base64": "not base64!"}, "is not base64"),
        ({"components__dtype": "float64"}, "components must be"),
        ({"n_docs": 0}, "n_docs must be a positive integer"),
    ],
)
def test_from_json_rejects_bad_specs(alpaca_spec: TextSpec, changes: dict, message: str) -> None:
    with pytest.raises(BeastError, match=message):
        TextSpec.from_json(_mutated(alpaca_spec, **changes))


@pytest.mark.parametrize("text", ["", "{", "[1, 2]", "null"])
def test_from_json_rejects_non_specs(text: str) -> None:
    with pytest.raises(BeastError, match="text spec: "):
        TextSpec.from_json(text)


def test_fit_rejects_too_few_prompts_and_bad_params() -> None:
    with pytest.raises(BeastError, match="3 distinct prompts, need at least k = 32"):
        fit_text(TINY, TextParams())
    with pytest.raises(BeastError, match="1 <= k < n_features"):
        fit_text(TINY, TextParams(n_features=4, k=4))
