"""JavaScript router (serving/js): node replays the Python reference's conformance vectors exactly (shared and
per_model quality heads, hostile prompts, every policy and the circuit breaker), evaluates LightGBM dumps as
LightGBM does on edge values, and refuses a tampered bundle naming the file."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest
from conftest import ROOT

from features.prompt import (
    CHARS_CAP,
    CHARS_PER_TOKEN,
    CODE_TOKENS_FOR_CODE,
    PATTERNS,
    PROMPT_FEATURES,
    WINDOW_HEAD,
    WINDOW_JOIN,
    WINDOW_TAIL,
    prompt_window,
)
from models.export import build_bundle
from serving.conformance import _floats, record
from serving.router import Router, RouteRequest
from traces.prices import load_prices

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(
    NODE is None, reason="node (Node.js >= 20) is not on PATH: the JavaScript router cannot be run"
)
JS = ROOT / "serving" / "js"
CONFORMANCE = JS / "conformance.mjs"


def node(*args: str | Path, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [NODE, *map(str, args)], input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )


def node_module(script: str, stdin: str) -> object:
    """Run an ES-module snippet (imports relative to serving/js) with `stdin`; its stdout parsed as JSON."""
    prelude = 'import {readFileSync as readStdin} from "node:fs"; const require_stdin = () => readStdin(0, "utf8");\n'
    done = node("--input-type=module", "-e", prelude + script.replace('"./', '"' + JS.as_uri() + "/"), stdin=stdin)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def bundles(routed, routed_per_model) -> dict[str, Path]:
    """Two real bundles from the committed sample: quality heads shared and per_model (cost and cache shared)."""
    return {"shared": routed[0] / "bundle", "per_model": routed_per_model.bundle.root}


def conformance(bundle: Path, vectors: Path | None = None) -> subprocess.CompletedProcess:
    return node(CONFORMANCE, bundle, *(["--vectors", vectors] if vectors else []))


def write_vectors(path: Path, vectors: list[dict]) -> Path:
    # ensure_ascii keeps lone surrogates as \ud800 escapes (the bundle writer's UTF-8 cannot hold them)
    path.write_text("".join(json.dumps(v, allow_nan=False, sort_keys=True) + "\n" for v in vectors))
    return path


@pytest.mark.parametrize("heads", ["shared", "per_model"])
def test_node_reproduces_every_conformance_vector(bundles, heads: str) -> None:
    manifest = json.loads((bundles[heads] / "manifest.json").read_text())
    assert manifest["predictors"]["quality"]["heads"] == heads
    if heads == "per_model":
        assert set(manifest["predictors"]["quality"]["keys"]) == set(manifest["candidates"])  # one booster per model
    n = manifest["conformance"]["vectors"]
    assert n >= 200
    done = conformance(bundles[heads])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    assert done.stdout.splitlines() == [f"{n} vectors, 0 mismatches"]


def test_node_reports_each_disagreement(bundles, tmp_path: Path) -> None:
    vectors = [json.loads(line) for line in (bundles["shared"] / "conformance.jsonl").read_text().splitlines()]
    vectors[0]["decision"]["model"] = "nobody"
    vectors[1]["quality"][3] *= 1.00001  # 1e-5 relative: outside the 1e-6 tolerance
    vectors[2]["features"]["prompt"][0] += 1
    vectors[3]["features"]["text"] = None
    done = conformance(bundles["shared"], write_vectors(tmp_path / "wrong.jsonl", vectors))
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[-1] == f"{len(vectors)} vectors, 4 mismatches"
    assert lines[0].startswith("vector 1: decision {model: ") and "expected {model: nobody" in lines[0]
    assert lines[1].startswith("vector 2: quality differ at 1 position(s), first [3]")
    assert lines[2].startswith("vector 3: features.prompt differ at 1 position(s), first [0]")
    assert lines[3] == "vector 4: features.text: expected null, got numbers"


def _flip_a_digit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    i = data.index(b'"leaf_value":') + len(b'"leaf_value":') + 3  # inside the first leaf value: still valid JSON
    while not chr(data[i]).isdigit():
        i += 1
    data[i] = ord("1") if data[i] != ord("1") else ord("2")
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("change", "rel", "reason"),
    [
        ("flip", "models/quality/shared.json", "tampered: sha256 mismatch"),
        ("append", "models/cost/p50.json", "tampered: size mismatch ("),
        ("delete", "models/cost/p50.txt", "missing"),
        ("extra", "models/quality/extra.json", "unexpected file (not listed in manifest.json)"),
    ],
)
def test_node_refuses_a_tampered_bundle(bundles, tmp_path: Path, change: str, rel: str, reason: str) -> None:
    copy = tmp_path / "bundle"
    shutil.copytree(bundles["shared"], copy)
    path = copy / rel
    if change == "flip":
        _flip_a_digit(path)
    elif change == "append":
        path.write_bytes(path.read_bytes() + b" ")
    elif change == "delete":
        path.unlink()
    else:
        path.write_text("{}")
    done = conformance(copy)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith(f"error: {copy}: {rel}: {reason}") and done.stderr.count("\n") == 1


def test_js_patterns_and_constants_are_the_python_ones() -> None:
    """The JS port hard-codes features/prompt.py's regex sources; any drift fails here, not in production."""
    js = node_module(
        'import * as f from "./features.mjs"; process.stdout.write(JSON.stringify({patterns: f.PATTERNS, features: f.PROMPT_FEATURES, chars: f.CHARS_PER_TOKEN, code: f.CODE_TOKENS_FOR_CODE, window: [f.WINDOW_HEAD, f.WINDOW_TAIL, f.WINDOW_JOIN], cap: f.CHARS_CAP}));',
        "",
    )
    assert js == {
        "patterns": {k: list(v) for k, v in PATTERNS.items()},
        "features": list(PROMPT_FEATURES),
        "chars": CHARS_PER_TOKEN,
        "code": CODE_TOKENS_FOR_CODE,
        "window": [WINDOW_HEAD, WINDOW_TAIL, WINDOW_JOIN],
        "cap": CHARS_CAP,
    }


HOSTILE_PROMPTS = [
    "😀🎉 why is the sky blue? 🤔",
    "👩‍👩‍👧‍👦 family emoji (ZWJ sequence) and flags 🇫🇷🇯🇵",
    "cafe\u0301 re\u0301sume\u0301 n\u0303 — combining marks, what do they mean?",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝐛𝐨𝐥𝐝 𝟙𝟚𝟛 ﬁne ＡＢＣ１２３ ①②③ ㍻",  # astral math letters, ligature, fullwidth: NFKC turns them into ASCII
    "𠀀𠀁𪜀 astral CJK ideographs: 什么是 𠀀?",
    "İstanbul ΣΟΦΟΣ ΟΔΟΣ K Å ß ẞ ǅ",  # special lowercasing (dotted I, final sigma, Kelvin sign, titlecase)
    "\ud800 lone high surrogate and lone low \udc00 in the middle",
    "\u202eRTL override\u202c مرحبا بالعالم كيف حالك؟",
    "tabs\tvertical\x0btab form\x0cfeed\r\nCRLF\u2028line sep\u2029para sep\u0085next line\u00a0nbsp",
    "\x00NUL\x01 control \x1f chars",
    "```python\nimport os\nclass A:\n    def f(self):\n        return {'a': [1, 2]}\n```\nFix this; please explain == and != and -> and ::",
    "```unclosed fence\nconst x = () => { return x++; };",
    "Solve 3x + 4 = 19 and \\frac{1}{2} \\times \\sqrt{x}; compute the integral.",
    "1. first\n2) second\n- third\n• fourth\n   * fifth",
    "User: hi\nASSISTANT: hello\n  human : what's up?\nassistant:",
    "   \n\t  ",
    " ",
    "?",
    "？",
    "WHO ARE YOU",
    "Please, write a poem",
    "x" * 100_000,  # one 100,000-character identifier: code_token's identifier is bounded, so linear time
    "f(" + "y" * 50_000,  # an unclosed call over a long word
    ("Explain quantum entanglement to me like I am five. " * 4000) + "😀" * 1000 + "𝟙" * 1000,  # 206,000 code points
    "".join(chr(c) for c in range(0x20, 0x3000, 7)),
    "",
    # the window's edges (features/prompt.py prompt_window): exactly head + tail code points, one more, astral
    # characters (two UTF-16 units each) and lone surrogates right at either cut, and a 1 MB prompt
    "😀" * (WINDOW_HEAD + WINDOW_TAIL),
    "😀" * (WINDOW_HEAD + WINDOW_TAIL + 1),
    "a" * (WINDOW_HEAD - 1) + "😀\ud800" + "```code " * 300 + "\udc00😀" + "b? " * (WINDOW_TAIL // 3),
    "Why? " + "x" * (WINDOW_HEAD - 5) + "\ud83d" + "y" * 1000 + "😀" + "z" * (WINDOW_TAIL - 1),
    "What is this code?\n```py\n" + "def f(x):\n    return x == 1 -> 2;\n" * 30_000 + "```\nUser: fix it please",
    # `chars` around its cap (CHARS_CAP code points): astral characters make UTF-16 units and code points differ
    "😀" * (CHARS_CAP - 1),  # 2 x CHARS_CAP - 2 units: counted, under the cap
    "😀" * 50_000 + "a" * 20_000,  # 120,000 units, 70,000 code points: counted, capped; the token estimate is not
]
HOSTILE_REQUESTS = [
    *(
        {
            "prompt": p,
            "timestamp": f"2025-03-0{1 + i % 9}T{i % 24:02d}:30:00Z",
            "task": ["koala", "vicuna", None, "not-a-task"][i % 4],
        }
        for i, p in enumerate(HOSTILE_PROMPTS)
    ),
    {"prompt": None, "timestamp": "2025-01-01T00:00:00Z"},
    {"prompt": None, "input_tokens": 0, "timestamp": "2025-01-01T10:00:00+05:30", "task": "oasst"},
    {
        "prompt": "offset across midnight",
        "timestamp": "2025-01-01T23:30:00-08:00",
        "input_tokens": 2_000_000,
    },  # the cap
    {"prompt": "fraction and lowercase t", "timestamp": "2024-02-29t13:59:59.999999999Z", "input_tokens": 1},
    {"prompt": "no offset means UTC", "timestamp": "2025-06-30T07:15:00", "request_id": "r-1"},
    {"prompt": "space separator", "timestamp": "2025-06-30 18:45:00+01:00", "task": "selfinstruct"},
    {"prompt": "lowercase z", "timestamp": "2025-06-30T18:45:00z"},
]


@pytest.mark.parametrize("heads", ["shared", "per_model"])
def test_node_reproduces_hostile_prompts(bundles, tmp_path: Path, heads: str) -> None:
    router = Router.load(bundles[heads])
    lines = (bundles[heads] / "conformance.jsonl").read_text().splitlines()
    extra = [record(router, r) for r in HOSTILE_REQUESTS]
    assert any(v["features"]["text"] and any(v["features"]["text"]) for v in extra[3:4])  # NFKC made words of it
    vectors = [json.loads(line) for line in lines] + extra
    done = conformance(bundles[heads], write_vectors(tmp_path / "hostile.jsonl", vectors))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    assert done.stdout.splitlines() == [f"{len(vectors)} vectors, 0 mismatches"]


@pytest.mark.parametrize(
    "request_",
    [
        {"prompt": 3},
        {"task": ["x"]},
        {"input_tokens": -1},
        {"input_tokens": 2_000_001},  # above serving/router.py MAX_INPUT_TOKENS
        {"input_tokens": 10**12},
        {"input_tokens": 2**63 - 1},
        {"input_tokens": 2.5},
        {"input_tokens": True},
        {"input_tokens": "12"},
        {"timestamp": "yesterday"},
        {"timestamp": "2025-02-30T00:00:00Z"},
        {"timestamp": "2025-01-01T24:00:00Z"},
        {"timestamp": "2025-01-01T23:59:60Z"},
        {"timestamp": 1700000000},
        {"timestamp": 0},  # not "now": only null or absent means now
        {"timestamp": False},
        {"timestamp": "2025-06-30"},  # date only: ISO 8601, not RFC 3339
        {"timestamp": "2025-06-30 18:45+01:00"},  # no seconds
        {"timestamp": "20250101T050000"},
        {"timestamp": "0001-01-01T00:30:00+01:00"},  # before year 1 in UTC
    ],
)
def test_node_rejects_what_python_rejects_naming_the_field(request_: dict) -> None:
    with pytest.raises(ValueError) as py:
        RouteRequest.from_dict(request_)
    field = str(py.value).split(":")[0]
    js = node_module(
        'import {RouteRequest} from "./beast-router.mjs"; const r = JSON.parse(require_stdin());'
        " try { RouteRequest.fromDict(r); process.stdout.write(JSON.stringify(null)); }"
        " catch (e) { process.stdout.write(JSON.stringify(e.message)); }",
        json.dumps(request_),
    )
    assert isinstance(js, str) and js.split(":")[0] == field, js


POLICIES = {
    "threshold": {"name": "threshold", "args": {"target_quality": 0.45}},
    "tradeoff": {"name": "tradeoff", "args": {"lam": 0.05}},
    "budget": {"name": "budget", "args": {"usd_per_hour": 0.5, "lam": 0.02, "gain": 0.5, "window_s": 60}},
}


def _record_at(router: Router, request: dict, now: float, observe: list) -> dict:
    """serving.conformance.record with an explicit clock and breaker outcomes (Python's record routes at
    time.monotonic(), so a stateful policy's vectors could not be replayed)."""
    for model, ok, t in observe:
        router.observe(model, ok, t)
    req = RouteRequest.from_dict(request)
    tokens, prompt, text = router.request_features(req)
    quality, cost = router.predict(req)
    decision = router.route(req, now=now)
    return {
        "request": request,
        "features": {"input_tokens": tokens, "prompt": _floats(prompt), "text": _floats(text)},
        "candidates": list(router.models),
        "quality": _floats(quality),
        "cost_usd": _floats(cost),
        "decision": {"model": decision.model, "code": decision.code.value},
        "now": now,
        "observe": observe,
    }


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_node_reproduces_policies_and_the_circuit_breaker(bundles, tmp_path: Path, policy: str) -> None:
    src = bundles["shared"].parent / "models"
    prices = load_prices(ROOT / "data/prices.yaml")
    config = POLICIES[policy] | {"breaker": {"window": 6, "min_requests": 3, "max_error_rate": 0.5, "cooldown_s": 20.0}}
    bundle = build_bundle(src, prices, tmp_path / policy, None, config, requests=[]).path
    router = Router.load(bundle)
    requests = [
        json.loads(line)["request"] for line in (bundles["shared"] / "conformance.jsonl").read_text().splitlines()
    ][:90]
    vectors, now = [], 1000.0
    for i, request in enumerate(requests):
        now += 0.5 if i < 40 else 9.0  # a burst (budget: spend above the rate), then a trickle
        observe = []
        if 20 <= i < 30:  # the chosen model keeps failing: its breaker opens, others take over
            observe = [[vectors[-1]["decision"]["model"], False, now - 0.1]]
        if i == 45:  # every model fails three times: all breakers open -> fallback order
            observe = [[m, False, now - 0.2] for m in router.models for _ in range(3)]
        if i == 60:  # after the cooldown the half-open trial succeeds for two models
            observe = [[m, True, now - 0.1] for m in router.models[:2]]
        vectors.append(_record_at(router, request, now, observe))
    codes = [v["decision"]["code"] for v in vectors]
    assert "fallback" in codes and len({v["decision"]["model"] for v in vectors}) >= 3
    if policy == "budget":
        assert router.policy.lam != POLICIES["budget"]["args"]["lam"]
    done = conformance(bundle, write_vectors(tmp_path / "policy.jsonl", vectors))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    assert done.stdout.splitlines() == [f"{len(vectors)} vectors, 0 mismatches"]


EDGE_VALUES = [
    math.nan,
    0.0,
    -0.0,
    1e-36,
    -1e-36,
    float(np.float32(1e-35)),
    2e-35,
    -2e-35,
    1e-300,
    -0.5,
    -1.0,
    -1.5,
    0.9999,
    2.9,
    1e10,
    2.0**31,
    1e300,
    -1e300,
    math.inf,
    -math.inf,
]


JS_NUMBER = ' const num = (v) => typeof v === "number" ? v : ({nan: NaN, inf: Infinity, "-inf": -Infinity})[v];'


def _encoded(X: np.ndarray) -> list[list[float | str]]:
    """Rows as JSON: NaN and infinities as "nan", "inf", "-inf" (JS_NUMBER reads them back)."""
    return [[v if math.isfinite(v) else str(v) for v in row] for row in X.tolist()]


@pytest.mark.parametrize(("predictor", "key"), [("cost", "p50"), ("quality", "shared"), ("cache", "model")])
def test_js_trees_match_lightgbm_on_edge_values(bundles, predictor: str, key: str) -> None:
    """NaN / zero / |x| <= 1e-35 / +-1e300 / +-inf / negative and fractional categories: JS = LightGBM itself."""
    bundle = bundles["shared"]
    booster = lgb.Booster(model_file=str(bundle / "models" / predictor / f"{key}.txt"))
    n = booster.num_feature()
    rng = np.random.default_rng(7)
    base = rng.normal(size=(40, n)) * rng.choice([0.1, 1, 10, 1000], size=(40, n))
    rows = [base[i % len(base)].copy() for i in range(400)]
    for i, row in enumerate(rows):  # each row: a few columns set to edge values
        cols = rng.choice(n, size=min(n, 1 + i % 6), replace=False)
        row[cols] = rng.choice(EDGE_VALUES, size=len(cols))
    rows += [np.full(n, v) for v in EDGE_VALUES]
    X = np.vstack(rows)
    want = booster.predict(X, raw_score=True, num_threads=1)
    encode = _encoded(X)
    got = node_module(
        'import {readFileSync} from "node:fs"; import {TreeModel} from "./trees.mjs";'
        " const {dump, rows} = JSON.parse(require_stdin());"
        ' const m = new TreeModel(JSON.parse(readFileSync(dump, "utf8")));'
        + JS_NUMBER
        + " process.stdout.write(JSON.stringify(rows.map((r) => m.raw(r.map(num)))));",
        json.dumps({"dump": str(bundle / "models" / predictor / f"{key}.json"), "rows": encode}),
    )
    np.testing.assert_allclose(np.array(got, dtype=float), want, rtol=1e-12, atol=1e-12)


def test_node_checks_the_bundle_signature_like_python(bundles, tmp_path: Path) -> None:
    """The same key in BEAST_BUNDLE_KEY: node accepts what Python signed, refuses unsigned and foreign-signed."""
    import os

    from serving.bundle import KEY_ENV, sign

    copy = tmp_path / "bundle"
    shutil.copytree(bundles["shared"], copy)
    script = 'import {loadBundle} from "./bundle.mjs"; try { loadBundle(process.argv[1]); console.log("ok"); } catch (e) { console.log(e.message); }'
    script = script.replace('"./', '"' + JS.as_uri() + "/")

    def run(key: str | None) -> str:
        env = {k: v for k, v in os.environ.items() if k != KEY_ENV} | ({KEY_ENV: key} if key is not None else {})
        done = subprocess.run(
            [NODE, "--input-type=module", "-e", script, str(copy)],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            check=True,
        )
        return done.stdout.strip()

    assert (
        run("js-side-key-0123456789")
        == f"{copy}: signature.json: missing: this router only loads signed bundles ({KEY_ENV} is set)"
    )
    sign(copy, b"js-side-key-0123456789")
    assert run("js-side-key-0123456789") == "ok" and run(None) == "ok"
    assert (
        run("another-key-0123456789")
        == f"{copy}: signature.json: signature mismatch: signed with another key, or manifest.json changed after signing"
    )
    assert run("short") == f"{KEY_ENV}: key too short (5 bytes); use at least 16 random bytes"


# ------------------------------------------------------------------------- embedding family (emb_*)


def _js_features(bundle: Path, prompts: list[str | None]) -> list[dict]:
    """Node's request features (input tokens, text, embed) for each prompt, from the bundle's own files."""
    return node_module(
        'import {Router} from "./beast-router.mjs"; const {bundle, prompts} = JSON.parse(require_stdin());'
        " const r = Router.load(bundle);"
        " const nums = (a) => a === null ? null : Array.from(a, (v) => Number.isNaN(v) ? null : v);"
        " process.stdout.write(JSON.stringify(prompts.map((p) => { const f = r.requestFeatures({prompt: p}); return {tokens: f.inputTokens, text: nums(f.text), embed: nums(f.embed)}; })));",
        json.dumps({"bundle": str(bundle), "prompts": prompts}),
    )


@pytest.mark.parametrize("heads", ["shared", "per_model"])
def test_bundles_carry_the_embedding_family(bundles, heads: str) -> None:
    """The sample bundles have emb_* quality features, both embedding files, and vectors that record them."""
    bundle = bundles[heads]
    manifest = json.loads((bundle / "manifest.json").read_text())
    spec = json.loads((bundle / "feature_spec.json").read_text())["embed"]
    k = spec["params"]["k"]
    names = json.loads((bundle / "quality.json").read_text())["feature_names"]
    assert [n for n in names if n.startswith("emb_")] == [f"emb_{i}" for i in range(k)]
    assert not any(n.startswith("emb_") for n in json.loads((bundle / "cost.json").read_text())["feature_names"])
    for rel, sha in ((spec["table"], spec["table_sha256"]), (spec["tokenizer"], spec["tokenizer_sha256"])):
        assert manifest["files"][rel]["sha256"] == sha
    assert manifest["files"][spec["table"]]["bytes"] == 4 * spec["vocab_size"] * k
    vectors = [json.loads(line) for line in (bundle / "conformance.jsonl").read_text().splitlines()]
    recorded = [v["features"]["embed"] for v in vectors if v["request"]["prompt"] is not None]
    assert recorded and all(isinstance(e, list) and len(e) == k and all(x is not None for x in e) for e in recorded)
    assert all(v["features"]["embed"] == [None] * k for v in vectors if v["request"]["prompt"] is None)


def test_node_embedding_equals_python_on_every_alpaca_prompt(bundles) -> None:
    """JS tokenizer + table mean = the Python router's Encoder (the Rust tokenizer) on 805 real prompts and the
    hostile ones (lone surrogates, 206,000 code points cut to the prompt window, astral text, empty)."""
    import pandas as pd

    bundle = bundles["shared"]
    router = Router.load(bundle)
    prompts = sorted(
        set(pd.read_parquet(ROOT / "data/sample/alpaca_eval.parquet", columns=["prompt"])["prompt"].dropna())
    )
    m = json.loads((bundle / "feature_spec.json").read_text())["embed"]["params"]["max_chars"]
    at_the_cut = [
        "😀" * (m + 5),
        "x" * (m - 1) + "😀" + "tail",
        "x" * (m - 1) + "\ud800" + "tail",
        "\udc00" * (m + 3),
        "x" * (m - 2) + "😀\ud83d" + "😀" * 3,
    ]
    prompts += [*HOSTILE_PROMPTS, *at_the_cut, "\ud83d" + "\ude00 split pair", "<s>[INST] hi [/INST]</s>", None]
    want = np.array([router.embed.vector(None if p is None else prompt_window(p)) for p in prompts], dtype=np.float64)
    got = np.array([f["embed"] for f in _js_features(bundle, prompts)], dtype=np.float64)
    assert want.shape == got.shape == (len(prompts), router.embed.k)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9, equal_nan=True)
    assert np.isnan(got[-1]).all() and not np.isnan(got[:-1]).any()
    exact = (got == want) | (np.isnan(got) & np.isnan(want))
    assert exact.mean() > 0.999  # in fact all equal (1.0 when written); a rare last-bit float32 difference is allowed


def test_node_reports_an_embedding_disagreement(bundles, tmp_path: Path) -> None:
    vectors = [json.loads(line) for line in (bundles["shared"] / "conformance.jsonl").read_text().splitlines()][:4]
    vectors[0]["features"]["embed"][5] += 1e-3
    vectors[1]["features"]["embed"] = None
    del vectors[2]["features"]["embed"]  # a vector from before the family: not compared, the predictions still are
    done = conformance(bundles["shared"], write_vectors(tmp_path / "wrong.jsonl", vectors))
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[0].startswith("vector 1: features.embed differ at 1 position(s), first [5]")
    assert lines[1] == "vector 2: features.embed: expected null, got numbers"
    assert lines[-1] == "4 vectors, 2 mismatches"


def _rewrite(bundle: Path, rel: str, data: bytes) -> None:
    """Replace one file and fix its manifest entry (so only the embedding checks can object)."""
    import hashlib

    (bundle / rel).write_bytes(data)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"][rel] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2))


def _with_spec(bundle: Path, change) -> None:
    spec = json.loads((bundle / "feature_spec.json").read_text())
    change(spec["embed"])
    _rewrite(bundle, "feature_spec.json", json.dumps(spec, sort_keys=True).encode())


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("table sha", "embedding/table.f32: sha256 differs from feature_spec.json embed.table_sha256"),
        ("tokenizer sha", "embedding/tokenizer.json: sha256 differs from feature_spec.json embed.tokenizer_sha256"),
        ("unlisted", 'feature_spec.json: embed.table "embedding/other.f32" is not a file of the bundle'),
        ("short table", "embedding/table.f32: embed: 4 bytes, vocab 32000 x k "),
        ("nan in table", "embedding/table.f32: embed: table holds a value that is not finite"),
        ("added tokens", "embedding/tokenizer.json: tokenizer: added_tokens must be empty"),
        ("params", "feature_spec.json: embed: params must be the integers k, max_chars"),
        ("offset", "feature_spec.json: embed: offset must be a list of "),
    ],
)
def test_node_refuses_a_bad_embedding(bundles, tmp_path: Path, case: str, reason: str) -> None:
    """Listed files are hashed like every file; beyond that the spec must name them with the same sha256, and the
    spec, table and tokenizer must be readable: each failure names the file."""
    import hashlib

    copy = tmp_path / "bundle"
    shutil.copytree(bundles["shared"], copy)
    table, tok = copy / "embedding" / "table.f32", copy / "embedding" / "tokenizer.json"

    def new_file(path: Path, data: bytes) -> None:  # a consistent replacement: manifest and spec agree on it
        _rewrite(copy, str(path.relative_to(copy)), data)
        key = "table_sha256" if path == table else "tokenizer_sha256"
        _with_spec(copy, lambda e: e.__setitem__(key, hashlib.sha256(data).hexdigest()))

    if case == "table sha":
        _with_spec(copy, lambda e: e.__setitem__("table_sha256", "0" * 64))
    elif case == "tokenizer sha":
        _rewrite(copy, "embedding/tokenizer.json", tok.read_bytes() + b" ")
    elif case == "unlisted":
        _with_spec(copy, lambda e: e.__setitem__("table", "embedding/other.f32"))
    elif case == "short table":
        new_file(table, table.read_bytes()[:4])
    elif case == "nan in table":
        data = bytearray(table.read_bytes())
        data[400:404] = np.array([np.nan], dtype="<f4").tobytes()
        new_file(table, bytes(data))
    elif case == "added tokens":
        config = json.loads(tok.read_text(encoding="utf-8")) | {
            "added_tokens": [{"id": 1, "content": "<s>", "special": True}]
        }
        new_file(tok, json.dumps(config).encode())
    elif case == "params":
        _with_spec(copy, lambda e: e["params"].__setitem__("extra", 1))
    else:
        _with_spec(copy, lambda e: e.__setitem__("offset", e["offset"][:-1]))
    done = conformance(copy)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith(f"error: {copy}: {reason}"), done.stderr


@pytest.fixture(scope="module")
def bundle_without_embed(routed, sample_dataset: Path) -> Path:
    """The `routed` bundle's cost and cache predictors with a quality predictor trained with use_embed false."""
    import yaml

    from models.export import DEFAULT_TARGET_QUALITY
    from models.train import main as train_main

    tmp, _, _ = routed
    out = tmp / "no_embed"
    if not (out / "bundle").exists():
        shutil.copytree(
            tmp / "models",
            out / "models",
            ignore=lambda folder, names: names if folder.endswith("quality") else [],
            dirs_exist_ok=True,
        )
        params = yaml.safe_load((tmp / "params.yaml").read_text())
        params["train"] |= {"out": str(out / "models"), "metrics": str(out / "metrics"), "plots": str(out / "plots")}
        params["train"]["quality"] |= {"num_boost_round": 40}
        params["features"]["use_embed"] = False
        (out / "params.yaml").write_text(yaml.safe_dump(params))
        train_main(["quality"], params_file=out / "params.yaml", traces=[sample_dataset])
        build_bundle(
            out / "models",
            load_prices(ROOT / "data/prices.yaml"),
            out / "bundle",
            None,
            {"name": "threshold", "args": {"target_quality": DEFAULT_TARGET_QUALITY}},
        )
    return out / "bundle"


def test_a_bundle_without_the_embedding_family_routes_as_before(bundle_without_embed: Path, tmp_path: Path) -> None:
    bundle = bundle_without_embed
    assert json.loads((bundle / "feature_spec.json").read_text()).get("embed") is None
    assert not (bundle / "embedding").exists()
    router = Router.load(bundle)
    vectors = [json.loads(line) for line in (bundle / "conformance.jsonl").read_text().splitlines()] + [
        record(router, r) for r in HOSTILE_REQUESTS
    ]
    assert all(v["features"].get("embed") is None for v in vectors)
    done = conformance(bundle, write_vectors(tmp_path / "all.jsonl", vectors))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    assert done.stdout.splitlines() == [f"{len(vectors)} vectors, 0 mismatches"]
    assert all(f["embed"] is None for f in _js_features(bundle, ["hello", None]))


def test_node_text_buckets_memoised_per_word_equal_the_python_ones(bundles) -> None:
    """The JS text family hashes each word's keys once per process (as features/text.py request_buckets does):
    per prompt the same multiset of buckets as hashing every key of `textKeys`, and as Python's, on every AlpacaEval
    prompt and the hostile ones, each routed twice (the second time from the memo)."""
    import pandas as pd

    from features.text import request_buckets

    bundle = bundles["shared"]
    router = Router.load(bundle)
    prompts = sorted(
        set(pd.read_parquet(ROOT / "data/sample/alpaca_eval.parquet", columns=["prompt"])["prompt"].dropna())
    )
    windows = [prompt_window(p) for p in [*prompts, *HOSTILE_PROMPTS]]
    got = node_module(
        'import {Router} from "./beast-router.mjs"; import {textKeys} from "./features.mjs";'
        " const {bundle, windows} = JSON.parse(require_stdin()); const t = Router.load(bundle).text;"
        " const sorted = (a) => Int32Array.from(a).sort();"
        " const out = [...windows, ...windows].map((w) => [Array.from(sorted(t.buckets(w))), Array.from(sorted(textKeys(w).map((k) => t.bucket(k))))]);"
        " process.stdout.write(JSON.stringify(out));",
        json.dumps({"bundle": str(bundle), "windows": windows}),
    )
    n = router.text.params.n_features
    for window, (memoised, hashed) in zip([*windows, *windows], got, strict=True):
        assert memoised == hashed == sorted(request_buckets(window, n)), window[:80]


def test_node_code_points_equal_python_len_across_chunks() -> None:
    """codePoints (utf16.mjs: WebAssembly over 16,384-unit chunks) is Python's len on text with astral characters,
    lone surrogates of both kinds and one-byte text, at and across the chunk edges (a pair split by an edge is one
    code point), and on 1 MB of emoji (which the regex count it replaced took ~29 ms over)."""
    rng = np.random.default_rng(7)
    alphabet = ["a", "é", "日", "😀", "\U0010ffff", "\ud800", "\udbff", "\udc00", "\udfff", "\ud7ff", "\ue000"]
    texts = [
        "",
        "😀",
        "\ud83d",
        "a" * 16383 + "😀",
        "a" * 16384 + "😀",
        "😀" * 8192,
        "😀" * 8191 + "a😀",
        "😀" * 500_000,
    ]
    texts += ["".join(rng.choice(alphabet, int(n))) for n in rng.integers(0, 40_000, 60)]
    # as JSON carries them: a lone high escape right before a lone low one arrives as a pair, in both languages
    texts = [json.loads(json.dumps(t)) for t in texts]
    got = node_module(
        'import {codePoints} from "./features.mjs";'
        " process.stdout.write(JSON.stringify(JSON.parse(require_stdin()).map(codePoints)));",
        json.dumps(texts),
    )
    assert got == [len(t) for t in texts]
    assert got[3:8] == [16384, 16385, 8192, 8193, 500_000]


def test_js_pruned_heads_equal_the_model_with_their_values_fixed(bundles) -> None:
    """The cost booster pruned per candidate (`TreeModel.pruned`, what the router walks): each head's raw score is
    the bits of `raw` on the row with that head's value in the fixed column, for every category, a category outside
    the set, negative, fractional, NaN and |x| <= 1e-35 values, and edge values in the request columns; a prune
    that took the other child of a fixed node would fail."""
    dump = bundles["shared"] / "models" / "cost" / "p50.json"
    n = lgb.Booster(model_file=str(dump.with_suffix(".txt"))).num_feature()
    rng = np.random.default_rng(3)
    rows = rng.normal(size=(60, n)) * rng.choice([0.1, 1, 10, 1000], size=(60, n))
    for i, row in enumerate(rows):
        cols = rng.choice(n, size=1 + i % 5, replace=False)
        row[cols] = rng.choice(EDGE_VALUES, size=len(cols))
    fixed = [float(c) for c in range(16)] + [-1.0, 2.5, 1e-36, 100.0, math.nan]
    encode = _encoded(rows)
    got = node_module(
        'import {readFileSync} from "node:fs"; import {TreeModel} from "./trees.mjs";'
        " const {dump, rows, fixed} = JSON.parse(require_stdin());"
        ' const m = new TreeModel(JSON.parse(readFileSync(dump, "utf8")));'
        + JS_NUMBER
        + " const col = m.featureNames.indexOf('model');"
        " const heads = m.pruned(fixed.map((v) => new Map([[col, num(v)]])));"
        " const out = new Float64Array(fixed.length); let bad = 0, trees = heads.nTrees;"
        " for (const r of rows) { const row = r.map(num); heads.raw(row, out);"
        "   fixed.forEach((v, h) => { row[col] = num(v); if (!Object.is(out[h], m.raw(row))) bad++; }); }"
        " process.stdout.write(JSON.stringify({bad, trees, col, total: m.nTrees}));",
        json.dumps({"dump": str(dump), "rows": encode, "fixed": [v if math.isfinite(v) else "nan" for v in fixed]}),
    )
    assert got["col"] >= 0 and got["bad"] == 0
    assert got["trees"] < len(fixed) * got["total"]  # identical pruned trees are shared
