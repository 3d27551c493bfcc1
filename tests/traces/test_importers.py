"""Importers: known answers on the committed samples in data/sample, and the pure rules on tiny inputs.

The sample tests need only the repository; the re-run tests need ../shared/data and skip without it.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import ROOT

from core.errors import BeastError
from core.files import gzip_bytes, write_atomic
from traces.contract import FIELD_BY_NAME, FIELDS
from traces.importers import (
    DEFAULT_SRC,
    PRICE_ALIASES,
    SOURCES,
    ImportResult,
    alpaca_eval_frame,
    azure_frame,
    csv_bytes,
    estimate_tokens,
    jsonl_bytes,
    mmlu_frame,
    mooncake_frame,
    mt_bench_frame,
    mt_bench_turn,
    price_aliases_text,
    prompt_ids,
    rfc3339_ms,
    run_import,
)
from traces.prices import load_prices, parse_prices

SAMPLE = ROOT / "data" / "sample"
SHARED = ROOT / "../shared/data"
CONTRACT_ORDER = [f.name for f in FIELDS]

# Mean quality (= mean preference - 1 = AlpacaEval 2.0 raw win rate vs gpt4_1106_preview), computed once.
MEAN_QUALITY = {
    "FuseChat-Gemma-2-9B-Instruct": 0.7050,
    "FuseChat-Llama-3.1-8B-Instruct": 0.6333,
    "FuseChat-Llama-3.2-1B-Instruct": 0.2992,
    "FuseChat-Llama-3.2-3B-Instruct": 0.5130,
    "FuseChat-Qwen-2.5-7B-Instruct": 0.6464,
    "Mixtral-8x7B-Instruct-v0.1_concise": 0.1374,
    "OpenHermes-2.5-Mistral-7B": 0.1034,
    "Qwen-14B-Chat": 0.0750,
    "claude-2.1": 0.1573,
    "claude-instant-1.2": 0.1613,
    "gemma-2b-it": 0.0340,
    "gemma-7b-it": 0.0694,
    "gpt-3.5-turbo-1106": 0.0918,
    "gpt4_1106_preview": 0.5000,
}
OUTPUT_TOKENS = {
    "FuseChat-Gemma-2-9B-Instruct": 434040,
    "FuseChat-Llama-3.1-8B-Instruct": 409606,
    "FuseChat-Llama-3.2-1B-Instruct": 454943,
    "FuseChat-Llama-3.2-3B-Instruct": 398042,
    "FuseChat-Qwen-2.5-7B-Instruct": 437792,
    "Mixtral-8x7B-Instruct-v0.1_concise": 183444,
    "OpenHermes-2.5-Mistral-7B": 223098,
    "Qwen-14B-Chat": 204303,
    "claude-2.1": 221058,
    "claude-instant-1.2": 224159,
    "gemma-2b-it": 209918,
    "gemma-7b-it": 224897,
    "gpt-3.5-turbo-1106": 160632,
    "gpt4_1106_preview": 412745,
}


# ---------------------------------------------------------------------------------------------- samples


@pytest.fixture(scope="module")
def alpaca() -> pd.DataFrame:
    return pd.read_parquet(SAMPLE / "alpaca_eval.parquet")


@pytest.fixture(scope="module")
def mooncake() -> pd.DataFrame:
    return pd.read_json(SAMPLE / "mooncake_conversation.jsonl.gz", lines=True, dtype=False)


@pytest.fixture(scope="module")
def azure() -> dict[str, pd.DataFrame]:
    return {s: pd.read_csv(SAMPLE / f"azure_{s}.csv.gz", dtype=str) for s in ("conv", "code")}


def test_alpaca_shape(alpaca: pd.DataFrame) -> None:
    assert len(alpaca) == 14 * 805
    assert list(alpaca.columns) == [c for c in CONTRACT_ORDER if c in alpaca.columns]
    assert set(alpaca.columns) == {"request_id", "timestamp", "model", "input_tokens", "output_tokens", "status",
                                   "prompt", "prompt_id", "quality", "task"}  # fmt: skip
    assert alpaca["model"].nunique() == 14
    assert alpaca["model"].value_counts().to_dict() == dict.fromkeys(MEAN_QUALITY, 805)
    assert alpaca["prompt_id"].nunique() == 805
    assert alpaca.groupby("prompt_id")["prompt"].nunique().eq(1).all()
    assert alpaca.groupby("prompt")["prompt_id"].nunique().eq(1).all()
    assert alpaca["request_id"].is_unique
    assert (alpaca["status"] == "ok").all()
    assert set(alpaca["model"]) <= set(load_prices(ROOT / "data" / "prices.yaml").models)


def test_alpaca_parquet_schema_is_the_contract() -> None:
    schema = pq.read_schema(SAMPLE / "alpaca_eval.parquet")
    for field in schema:
        assert field.type == FIELD_BY_NAME[field.name].arrow_type, field.name
    assert schema.metadata == {b"beast.trace_contract": b"1"}


def test_alpaca_quality_known_answers(alpaca: pd.DataFrame) -> None:
    assert alpaca["quality"].notna().all()
    assert alpaca["quality"].between(0, 1).all()
    ref = alpaca.loc[alpaca["model"] == "gpt4_1106_preview", "quality"]
    assert (ref == 0.5).all() and ref.mean() == 0.5  # the judge vs itself: exactly 1.5 - 1
    means = alpaca.groupby("model")["quality"].mean()
    for model, expected in MEAN_QUALITY.items():
        assert means[model] == pytest.approx(expected, abs=5e-5), model


def test_alpaca_tasks(alpaca: pd.DataFrame) -> None:
    assert alpaca.groupby("prompt_id")["task"].nunique().eq(1).all()
    per_task = alpaca.drop_duplicates("prompt_id")["task"].value_counts().to_dict()
    assert per_task == {"selfinstruct": 252, "oasst": 188, "koala": 156, "helpful_base": 129, "vicuna": 80}


def test_alpaca_tokens(alpaca: pd.DataFrame) -> None:
    expected_in = alpaca["prompt"].map(lambda s: math.ceil(len(s) / 4))
    assert (alpaca["input_tokens"] == expected_in).all()
    assert int(alpaca["input_tokens"].sum()) == 468762
    assert alpaca.groupby("model")["output_tokens"].sum().to_dict() == OUTPUT_TOKENS
    empty = alpaca[alpaca["output_tokens"] == 0]
    assert len(empty) == 22 and set(empty["model"]) == {"gemma-2b-it"}


def test_alpaca_ids_and_times(alpaca: pd.DataFrame) -> None:
    assert (alpaca["prompt_id"] == alpaca["prompt"].map(lambda s: hashlib.sha256(s.encode()).hexdigest()[:16])).all()
    assert (alpaca["request_id"] == "alpaca-" + alpaca["prompt_id"] + "-" + alpaca["model"]).all()
    ts = alpaca["timestamp"]
    assert str(ts.dt.tz) == "UTC"
    assert ts.is_monotonic_increasing and ts.is_unique
    assert ts.iloc[0] == pd.Timestamp("2024-01-01T00:00:00Z")
    assert ts.iloc[-1] == pd.Timestamp("2024-01-01T00:00:00Z") + pd.Timedelta(minutes=804, seconds=13)
    # model j of the sorted names at +j seconds in every prompt's minute
    j = alpaca["model"].map({m: k for k, m in enumerate(sorted(MEAN_QUALITY))})
    assert (ts.dt.second == j).all()
    # the first prompt of the reference file at minute 0
    assert (
        alpaca["prompt"].iloc[0] == "What are the names of some famous actors that started their careers on Broadway?"
    )


def test_mooncake_known_answers(mooncake: pd.DataFrame) -> None:
    assert len(mooncake) == 12031
    assert list(mooncake.columns) == ["request_id", "timestamp", "model", "input_tokens", "output_tokens",
                                      "status", "task", "prefix_blocks"]  # fmt: skip
    assert mooncake["prefix_blocks"].iloc[0] == list(range(14))
    assert mooncake["request_id"].iloc[0] == "mooncake-conv-000000"
    assert mooncake["request_id"].iloc[-1] == "mooncake-conv-012030"
    assert mooncake["request_id"].is_unique
    assert (mooncake["model"] == "mooncake/conversation").all()
    assert (mooncake["task"] == "conversation").all() and (mooncake["status"] == "ok").all()
    ts = mooncake["timestamp"]
    assert ts.dtype == np.int64 and ts.is_monotonic_increasing
    assert ts.iloc[0] == 1717200000000  # 2024-06-01T00:00:00Z in epoch ms
    assert ts.iloc[-1] == 1717200000000 + 3536999
    assert int(mooncake["input_tokens"].sum()) == 144793823
    assert int(mooncake["output_tokens"].sum()) == 4122048
    # one hash per 512-token block of the prompt: holds on every line of this trace
    assert (mooncake["prefix_blocks"].map(len) == np.ceil(mooncake["input_tokens"] / 512)).all()


def test_mooncake_raw_lines() -> None:
    with gzip.open(SAMPLE / "mooncake_conversation.jsonl.gz", "rt", encoding="utf-8") as fh:
        first = fh.readline()
    assert first.startswith(
        '{"request_id":"mooncake-conv-000000","timestamp":1717200000000,"model":"mooncake/conversation",'
    )
    assert json.loads(first)["prefix_blocks"] == list(range(14))


@pytest.mark.parametrize(
    ("service", "rows", "first", "last", "tokens"),
    [
        ("conv", 19366, "2023-11-16T18:15:46.680Z", "2023-11-16T19:14:08.402Z", (22361870, 4088665)),
        ("code", 8819, "2023-11-16T18:17:03.979Z", "2023-11-16T19:14:19.928Z", (18059974, 245896)),
    ],
)
def test_azure_known_answers(
    azure: dict[str, pd.DataFrame], service: str, rows: int, first: str, last: str, tokens: tuple[int, int]
) -> None:
    df = azure[service]
    assert len(df) == rows
    assert list(df.columns) == ["request_id", "timestamp", "model", "input_tokens", "output_tokens", "status", "task"]
    assert df["request_id"].is_unique
    assert df["request_id"].iloc[0] == f"azure-{service}-000000"
    assert df["request_id"].iloc[-1] == f"azure-{service}-{rows - 1:06d}"
    assert (df["model"] == f"azure/{service}").all()
    assert (df["task"] == {"conv": "conversation", "code": "code"}[service]).all()
    assert df["timestamp"].str.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z").all()
    assert (df["timestamp"].iloc[0], df["timestamp"].iloc[-1]) == (first, last)
    assert pd.to_datetime(df["timestamp"]).is_monotonic_increasing
    assert (int(df["input_tokens"].astype(int).sum()), int(df["output_tokens"].astype(int).sum())) == tokens


def test_all_request_ids_unique_across_samples(
    alpaca: pd.DataFrame,
    mooncake: pd.DataFrame,
    azure: dict[str, pd.DataFrame],
    mmlu: pd.DataFrame,
    mt_bench: pd.DataFrame,
) -> None:
    ids = pd.concat([alpaca["request_id"], mooncake["request_id"], azure["conv"]["request_id"], azure["code"]["request_id"],
                     mmlu["request_id"], mt_bench["request_id"]])  # fmt: skip
    assert ids.is_unique and len(ids) == 11270 + 12031 + 19366 + 8819 + 28084 + 320


@pytest.mark.parametrize("name", ["mooncake_conversation.jsonl.gz", "azure_conv.csv.gz", "azure_code.csv.gz"])
def test_sample_gzip_headers_are_deterministic(name: str) -> None:
    head = (SAMPLE / name).read_bytes()[:10]
    assert head[:3] == b"\x1f\x8b\x08"
    assert head[3] == 0  # no file name (a temp name would leak in)
    assert head[4:8] == b"\0\0\0\0"  # mtime 0


def test_sample_sizes_stay_small() -> None:
    total = sum(p.stat().st_size for p in SAMPLE.iterdir() if p.is_file())
    assert total < 4_000_000  # 3.39 MB: the RouteLLM MMLU question texts are 2.0 MB of it


# ---------------------------------------------------------------------------------------------- RouteLLM samples

ROUTELLM_COLUMNS = [
    "request_id",
    "timestamp",
    "model",
    "input_tokens",
    "output_tokens",
    "status",
    "prompt",
    "prompt_id",
    "quality",
    "task",
]
MIXTRAL, GPT4 = "Mixtral-8x7B-Instruct-v0.1", "gpt4_1106_preview"


@pytest.fixture(scope="module")
def mmlu() -> pd.DataFrame:
    return pd.read_parquet(SAMPLE / "routellm_mmlu.parquet")


@pytest.fixture(scope="module")
def mt_bench() -> pd.DataFrame:
    return pd.read_parquet(SAMPLE / "routellm_mt_bench.parquet")


@pytest.mark.parametrize("name", ["routellm_mmlu.parquet", "routellm_mt_bench.parquet"])
def test_routellm_parquet_schema_is_the_contract(name: str) -> None:
    schema = pq.read_schema(SAMPLE / name)
    assert schema.names == ROUTELLM_COLUMNS
    for field in schema:
        assert field.type == FIELD_BY_NAME[field.name].arrow_type, field.name
    assert schema.metadata == {b"beast.trace_contract": b"1"}


def test_routellm_models_are_priced_and_carded() -> None:
    prices = load_prices(ROOT / "data" / "prices.yaml")
    cards = yaml.safe_load((ROOT / "data" / "models.yaml").read_text())["models"]
    for model in (MIXTRAL, GPT4):
        assert model in prices.models and model in cards
    concise = "Mixtral-8x7B-Instruct-v0.1_concise"
    assert cards[MIXTRAL] == cards[concise]
    assert prices.current(MIXTRAL) == dataclasses.replace(prices.current(concise), model=MIXTRAL)
    assert (prices.current(MIXTRAL).input, prices.current(MIXTRAL).output) == (0.60, 0.60)


def test_mmlu_known_answers(mmlu: pd.DataFrame) -> None:
    assert len(mmlu) == 28084 and mmlu["request_id"].is_unique
    assert mmlu["model"].value_counts().to_dict() == {MIXTRAL: 14042, GPT4: 14042}
    assert mmlu["prompt_id"].nunique() == 14042 and mmlu["task"].nunique() == 57
    assert mmlu.groupby("model")["quality"].sum().to_dict() == {MIXTRAL: 9560.0, GPT4: 11315.0}  # 0.6808 / 0.8058
    assert set(mmlu["quality"]) == {0.0, 1.0}
    assert (mmlu["output_tokens"] == 1).all() and (mmlu["status"] == "ok").all()
    assert (mmlu["input_tokens"] == mmlu["prompt"].map(lambda s: math.ceil(len(s) / 4))).all()
    assert int(mmlu["input_tokens"].sum()) == 3283212
    assert (mmlu["request_id"] == mmlu["prompt_id"] + "-" + mmlu["model"]).all()
    assert (mmlu["task"] == "mmlu/" + mmlu["prompt_id"].str.extract(r"^mmlu-(\w+)-\d{4}$")[0]).all()
    assert mmlu["model"].tolist()[:2] == [MIXTRAL, GPT4] and mmlu["prompt_id"].iloc[0] == "mmlu-abstract_algebra-0000"
    assert (
        mmlu["prompt"].iloc[0]
        == "Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.\nA. 0\nB. 4\nC. 2\nD. 6\nAnswer:"
    )
    assert mmlu["request_id"].iloc[-1] == f"mmlu-world_religions-0170-{GPT4}"
    ts = mmlu["timestamp"]
    assert ts.is_monotonic_increasing and ts.is_unique and str(ts.dt.tz) == "UTC"
    assert ts.iloc[0] == pd.Timestamp("2024-07-01T00:00:00Z")
    assert ts.iloc[-1] == pd.Timestamp("2024-07-01T00:00:00Z") + pd.Timedelta(minutes=14041, seconds=1)
    assert (mmlu.drop_duplicates("prompt_id")["prompt"].duplicated().sum()) == 105  # repeated texts keep own ids


def test_mt_bench_known_answers(mt_bench: pd.DataFrame) -> None:
    df = mt_bench
    assert len(df) == 320 and df["request_id"].is_unique and (df["status"] == "ok").all()
    assert df["model"].value_counts().to_dict() == {MIXTRAL: 160, GPT4: 160}
    means = df.groupby("model")["quality"].mean()
    assert means[MIXTRAL] == pytest.approx((8.340625 - 1) / 9) and means[GPT4] == pytest.approx((9.228125 - 1) / 9)
    assert df["quality"].between(0, 1).all() and df["quality"].notna().all()
    assert df.groupby("model")["output_tokens"].sum().to_dict() == {MIXTRAL: 50596, GPT4: 66267}
    assert (df["input_tokens"] == df["prompt"].map(lambda s: math.ceil(len(s) / 4))).all()
    assert int(df["input_tokens"].sum()) == 28360
    assert df["task"].value_counts().to_dict() == {f"mt-bench/{c}": 40 for c in
        ("writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities")}  # fmt: skip
    assert df["prompt_id"].tolist()[:4] == ["mtbench-81-t1"] * 2 + ["mtbench-81-t2"] * 2
    first = "Compose an engaging travel blog post about a recent trip to Hawaii, highlighting cultural experiences and must-see attractions."
    assert df["prompt"].iloc[0] == first
    assert df["prompt"].iloc[2] == first + "\n\nRewrite your previous response. Start every sentence with the letter A."
    by_id = df.drop_duplicates("prompt_id").set_index("prompt_id")["prompt"]
    for q in range(81, 161):  # a turn-2 prompt starts with its turn-1 question
        assert by_id[f"mtbench-{q}-t2"].startswith(by_id[f"mtbench-{q}-t1"] + "\n\n")
    ts = df["timestamp"]
    assert ts.is_monotonic_increasing and ts.is_unique
    assert (ts.iloc[0], ts.iloc[-1]) == (pd.Timestamp("2024-07-15T00:00:00Z"), pd.Timestamp("2024-07-15T02:39:01Z"))


# ---------------------------------------------------------------------------------------------- pure rules


def test_estimate_tokens_is_ceil_chars_over_4() -> None:
    text = pd.Series(["", "a", "abcd", "abcde", "x" * 8, "x" * 9, "éèêë", "日本語"])
    assert estimate_tokens(text).tolist() == [0, 1, 1, 2, 2, 3, 1, 1]


def test_prompt_ids_stable_and_disambiguated() -> None:
    assert prompt_ids(pd.Series(["hello"])).tolist() == ["2cf24dba5fb0a30e"]  # sha256("hello")[:16]
    ids = prompt_ids(pd.Series(["a", "b", "a", "a"]))
    assert ids[0] == hashlib.sha256(b"a").hexdigest()[:16]
    assert ids[2] == hashlib.sha256(b"a\x001").hexdigest()[:16]
    assert ids[3] == hashlib.sha256(b"a\x002").hexdigest()[:16]
    assert ids.is_unique
    assert prompt_ids(pd.Series(["b", "a"])).tolist() == [ids[1], ids[0]]  # independent of position


def _rec(model: str, instruction: str, pref: float | None, out: str = "abcde", dataset: str = "koala") -> dict:
    return {"instruction": instruction, "dataset": dataset, "generator_2": model, "output_2": out, "preference": pref}


def test_alpaca_eval_frame_tiny() -> None:
    ann = {
        "gpt4_1106_preview": [_rec("gpt4_1106_preview", "p0", 1.5), _rec("gpt4_1106_preview", "p1 longer", 1.5)],
        # other order in the file, a missing preference, an empty answer
        "b-model": [
            _rec("b-model", "p1 longer", None, out=""),
            _rec("b-model", "p0", 2.0, out="x" * 9, dataset="oasst"),
        ],
    }
    df = alpaca_eval_frame(ann, known_models={"gpt4_1106_preview", "b-model"})
    assert list(df.columns) == ["request_id", "timestamp", "model", "input_tokens", "output_tokens", "status",
                                "prompt", "prompt_id", "quality", "task"]  # fmt: skip
    # prompt-major (reference order), then models sorted by name
    assert df["model"].tolist() == ["b-model", "gpt4_1106_preview"] * 2
    assert df["prompt"].tolist() == ["p0", "p0", "p1 longer", "p1 longer"]
    base = pd.Timestamp("2024-01-01T00:00:00Z")
    assert df["timestamp"].tolist() == [base, base + pd.Timedelta(seconds=1), base + pd.Timedelta(minutes=1),
                                        base + pd.Timedelta(minutes=1, seconds=1)]  # fmt: skip
    assert df["quality"].iloc[:2].tolist() == [1.0, 0.5]
    assert np.isnan(df["quality"].iloc[2]) and df["quality"].iloc[3] == 0.5
    assert df["input_tokens"].tolist() == [1, 1, 3, 3]
    assert df["output_tokens"].tolist() == [3, 2, 0, 2]
    assert df["task"].tolist() == ["oasst", "koala", "koala", "koala"]
    pid = hashlib.sha256(b"p0").hexdigest()[:16]
    assert df["prompt_id"].iloc[0] == pid and df["request_id"].iloc[0] == f"alpaca-{pid}-b-model"
    assert (df["status"] == "ok").all()


def test_alpaca_eval_frame_duplicate_instruction_gets_own_id() -> None:
    ref = "gpt4_1106_preview"
    ann = {ref: [_rec(ref, "same", 1.5), _rec(ref, "same", 1.5)], "m": [_rec("m", "same", 1.0), _rec("m", "same", 2.0)]}
    df = alpaca_eval_frame(ann)
    assert df["prompt_id"].nunique() == 2 and df["request_id"].is_unique
    assert df["model"].tolist() == ["gpt4_1106_preview", "m"] * 2
    assert df["quality"].tolist() == [0.5, 0.0, 0.5, 1.0]  # k-th repeat matched to the reference's k-th


@pytest.mark.parametrize(
    ("ann", "message"),
    [
        ({"m": [_rec("m", "p", 1.5)]}, "reference model gpt4_1106_preview"),
        ({"gpt4_1106_preview": [_rec("other", "p", 1.5)]}, "generator_2 is 'other'"),
        ({"gpt4_1106_preview": [_rec("gpt4_1106_preview", "p", 2.5)]}, "preference must be a number in [1, 2]"),
        (
            {"gpt4_1106_preview": [_rec("gpt4_1106_preview", "p", 1.5)], "m": [_rec("m", "q", 1.5)]},
            "not in the gpt4_1106_preview file",
        ),
        ({"gpt4_1106_preview": [{"instruction": "p"}]}, "missing column(s) dataset"),
    ],
)
def test_alpaca_eval_frame_errors(ann: dict, message: str) -> None:
    with pytest.raises(
        BeastError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")
    ):
        alpaca_eval_frame(ann)


def test_alpaca_eval_frame_rejects_unpriced_model() -> None:
    ann = {"gpt4_1106_preview": [_rec("gpt4_1106_preview", "p", 1.5)], "mystery": [_rec("mystery", "p", 1.5)]}
    with pytest.raises(BeastError, match="not in the price table: mystery"):
        alpaca_eval_frame(ann, known_models={"gpt4_1106_preview"})


def test_mooncake_frame_tiny() -> None:
    raw = pd.DataFrame(
        {"timestamp": [0, 1500], "input_length": [600, 10], "output_length": [5, 0], "hash_ids": [[0, 1], [2]]}
    )
    df = mooncake_frame(raw)
    assert df["request_id"].tolist() == ["mooncake-conv-000000", "mooncake-conv-000001"]
    assert df["timestamp"].tolist() == [pd.Timestamp("2024-06-01T00:00:00Z"), pd.Timestamp("2024-06-01T00:00:01.500Z")]
    assert df["input_tokens"].tolist() == [600, 10] and df["output_tokens"].tolist() == [5, 0]
    assert df["prefix_blocks"].tolist() == [[0, 1], [2]]
    assert set(df["model"]) == {"mooncake/conversation"} and set(df["task"]) == {"conversation"}
    line = jsonl_bytes(df).decode().splitlines()[1]
    assert line == ('{"request_id":"mooncake-conv-000001","timestamp":1717200001500,"model":"mooncake/conversation",'
                    '"input_tokens":10,"output_tokens":0,"status":"ok","task":"conversation","prefix_blocks":[2]}')  # fmt: skip


@pytest.mark.parametrize(
    "raw",
    [
        {"timestamp": [0], "input_length": [-1], "output_length": [1], "hash_ids": [[0]]},
        {"timestamp": [0], "input_length": [1.5], "output_length": [1], "hash_ids": [[0]]},
        {"timestamp": [0], "input_length": [1], "output_length": [1], "hash_ids": [[1.5]]},
        {"timestamp": [0], "input_length": [1], "output_length": [1], "hash_ids": [7]},
        {"timestamp": [0], "input_length": [1], "output_length": [1]},
        {"timestamp": [0], "input_length": [True], "output_length": [1], "hash_ids": [[0]]},
        {"timestamp": [10**13], "input_length": [1], "output_length": [1], "hash_ids": [[0]]},
    ],
)
def test_mooncake_frame_errors(raw: dict) -> None:
    with pytest.raises(BeastError, match="mooncake"):
        mooncake_frame(pd.DataFrame(raw))


def test_azure_frame_tiny() -> None:
    raw = pd.DataFrame(
        {
            "TIMESTAMP": ["2023-11-16 18:15:46.6809990", "2023-11-16 23:59:59.9999999"],
            "ContextTokens": [374, 2],
            "GeneratedTokens": [44, 0],
        }
    )
    df = azure_frame(raw, "code")
    assert df["request_id"].tolist() == ["azure-code-000000", "azure-code-000001"]
    assert rfc3339_ms(df["timestamp"]).tolist() == [
        "2023-11-16T18:15:46.680Z",
        "2023-11-16T23:59:59.999Z",
    ]  # floored, not rounded
    assert df["input_tokens"].tolist() == [374, 2] and df["output_tokens"].tolist() == [44, 0]
    assert set(df["model"]) == {"azure/code"} and set(df["task"]) == {"code"} and set(df["status"]) == {"ok"}
    text = csv_bytes(df).decode()
    assert text.splitlines()[1] == "azure-code-000000,2023-11-16T18:15:46.680Z,azure/code,374,44,ok,code"
    assert azure_frame(raw, "conv")["task"].iloc[0] == "conversation"


def test_azure_frame_errors() -> None:
    good = pd.DataFrame({"TIMESTAMP": ["2023-11-16 18:15:46.6805900"], "ContextTokens": [1], "GeneratedTokens": [1]})
    with pytest.raises(BeastError, match="unknown service 'chat'"):
        azure_frame(good, "chat")
    with pytest.raises(BeastError, match="TIMESTAMP value"):
        azure_frame(good.assign(TIMESTAMP=["yesterday"]), "conv")
    with pytest.raises(BeastError, match="ContextTokens"):
        azure_frame(good.assign(ContextTokens=["many"]), "conv")


def test_rfc3339_ms_converts_to_utc() -> None:
    ts = pd.Series(pd.to_datetime(["2024-01-01T02:00:00.5+02:00"]))
    assert rfc3339_ms(ts).tolist() == ["2024-01-01T00:00:00.500Z"]


def test_gzip_bytes_deterministic() -> None:
    assert gzip_bytes(b"abc") == gzip_bytes(b"abc")
    assert gzip.decompress(gzip_bytes(b"abc")) == b"abc"


def test_write_atomic_leaves_no_temp(tmp_path: Path) -> None:
    target = write_atomic(tmp_path / "sub" / "f.bin", b"one")
    write_atomic(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["f.bin"]


# ---------------------------------------------------------------------------------------------- RouteLLM tiny inputs

MMLU_CSV = (
    "prompt,mistralai/Mixtral-8x7B-Instruct-v0.1,gpt-4-1106-preview\n"
    '"What is 2+2?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer:",True,True\n'
    "NA,False,True\n"  # a question reading NA stays text
    '"Café?\nA. oui\nAnswer:",True,False\n'
)


def _mmlu_dir(tmp_path: Path, text: str = MMLU_CSV, subject: str = "tiny_subject") -> Path:
    src = tmp_path / "mmlu"
    src.mkdir(exist_ok=True)
    (src / f"mmlu_{subject}.csv.gz").write_bytes(gzip_bytes(text.encode()))
    return src


def test_run_import_mmlu_tiny_exact_rows(tmp_path: Path) -> None:
    result = run_import("routellm-mmlu", _mmlu_dir(tmp_path), tmp_path / "out")
    assert result.rows == 6 and result.outputs == (tmp_path / "out" / "routellm_mmlu.parquet",)
    df = pd.read_parquet(result.outputs[0])
    assert list(df.columns) == ROUTELLM_COLUMNS
    q0 = "What is 2+2?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer:"
    base = pd.Timestamp("2024-07-01T00:00:00Z")
    expected = pd.DataFrame(
        {
            "request_id": [f"mmlu-tiny_subject-000{i}-{m}" for i in range(3) for m in (MIXTRAL, GPT4)],
            "timestamp": [base + pd.Timedelta(minutes=i, seconds=j) for i in range(3) for j in range(2)],
            "model": [MIXTRAL, GPT4] * 3,
            "input_tokens": [10, 10, 1, 1, 5, 5],  # ceil(40 / 4), ceil(2 / 4), ceil(19 / 4)
            "output_tokens": [1] * 6,
            "status": ["ok"] * 6,
            "prompt": [q0, q0, "NA", "NA", "Café?\nA. oui\nAnswer:", "Café?\nA. oui\nAnswer:"],
            "prompt_id": [f"mmlu-tiny_subject-000{i}" for i in range(3) for _ in range(2)],
            "quality": [1.0, 1.0, 0.0, 1.0, 1.0, 0.0],
            "task": ["mmlu/tiny_subject"] * 6,
        }
    )
    expected["timestamp"] = expected["timestamp"].astype("datetime64[ms, UTC]")
    pd.testing.assert_frame_equal(df, expected, check_dtype=False)
    assert df["timestamp"].dtype == "datetime64[ms, UTC]" and df["input_tokens"].dtype == np.int64
    assert f"mean quality {MIXTRAL} 0.6667, {GPT4} 0.6667" in result.notes
    again = run_import("routellm-mmlu", tmp_path / "mmlu", tmp_path / "out2")
    assert again.outputs[0].read_bytes() == result.outputs[0].read_bytes()


def test_mmlu_frame_orders_subjects_and_keeps_missing_labels() -> None:
    cols = ("prompt", "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview")
    subjects = {
        "b": pd.DataFrame([["q-b", "False", ""]], columns=cols),
        "a": pd.DataFrame([["q-a", True, False]], columns=cols),
    }
    df = mmlu_frame(subjects)
    assert df["prompt_id"].tolist() == ["mmlu-a-0000"] * 2 + ["mmlu-b-0000"] * 2
    assert df["quality"].tolist()[:3] == [1.0, 0.0, 0.0] and np.isnan(df["quality"].iloc[3])
    assert df["timestamp"].iloc[2] == pd.Timestamp("2024-07-01T00:01:00Z")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prompt,mistralai/Mixtral-8x7B-Instruct-v0.1\nq,True\n", "missing column(s) gpt-4-1106-preview"),
        ("question,mistralai/Mixtral-8x7B-Instruct-v0.1,gpt-4-1106-preview\nq,True,True\n", "missing column(s) prompt"),
        (
            "prompt,mistralai/Mixtral-8x7B-Instruct-v0.1,gpt-4-1106-preview,claude\nq,True,True,True\n",
            "unexpected column(s) claude",
        ),
        (
            "prompt,mistralai/Mixtral-8x7B-Instruct-v0.1,gpt-4-1106-preview\nq,yes,True\n",
            "expected True or False, got 'yes'",
        ),
        (
            "prompt,mistralai/Mixtral-8x7B-Instruct-v0.1,gpt-4-1106-preview\n,True,True\n",
            "`prompt` must be non-empty text",
        ),
    ],
)
def test_run_import_mmlu_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(BeastError, match=re.escape(message)) as info:
        run_import("routellm-mmlu", _mmlu_dir(tmp_path, text), tmp_path / "out")
    assert "routellm-mmlu tiny_subject" in str(info.value)
    assert not (tmp_path / "out").exists()


def test_run_import_mmlu_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(BeastError, match="no mmlu_\\*.csv.gz files"):
        run_import("routellm-mmlu", tmp_path, tmp_path / "out")


def _t1_prompt(question: str, answer: str, reference: str | None = None) -> str:
    ref = f"[The Start of Reference Answer]\n{reference}\n[The End of Reference Answer]\n\n" if reference else ""
    return (f"[Instruction]\nPlease act as an impartial judge ...\n\n[Question]\n{question}\n\n{ref}"
            f"[The Start of Assistant's Answer]\n{answer}\n[The End of Assistant's Answer]")  # fmt: skip


def _t2_prompt(q1: str, a1: str, q2: str, a2: str) -> str:
    return ("<|The Start of Assistant A's Conversation with User|>\n\n"
            f"### User:\n{q1}\n\n### Assistant A:\n{a1}\n\n### User:\n{q2}\n\n### Assistant A:\n{a2}\n\n"
            "<|The End of Assistant A's Conversation with User|>")  # fmt: skip


def _judgement(qid: int, model: str, judge: str, user_prompt: str, score: float, turn: int) -> dict:
    return {"question_id": qid, "model": model, "judge": ["gpt-4", judge], "user_prompt": user_prompt,
            "judgment": "... Rating: [[x]]", "score": score, "turn": turn, "tstamp": 1711862000.5}  # fmt: skip


MTB_LINES = [
    _judgement(
        111,
        "gpt-4-1106-preview",
        "single-math-v1",
        _t1_prompt("Area of the triangle?", "It is 3.", reference="3"),
        10.0,
        1,
    ),
    _judgement(
        81,
        "mistralai/Mixtral-8x7B-Instruct-v0.1",
        "single-v1-multi-turn",
        _t2_prompt("Write a blog post.", "Aloha! " * 10, "Start every sentence with A.", "A trip."),
        5.5,
        2,
    ),  # fmt: skip
]


def _mt_bench_file(tmp_path: Path, lines: list[dict]) -> Path:
    src = tmp_path / "mt_bench_judgements.jsonl.gz"
    src.write_bytes(gzip_bytes("".join(json.dumps(r) + "\n" for r in lines).encode()))
    return src


def test_run_import_mt_bench_tiny_exact_rows(tmp_path: Path) -> None:
    src = _mt_bench_file(tmp_path, MTB_LINES)
    result = run_import("routellm-mt-bench", tmp_path, tmp_path / "out")  # the folder: its mt_bench_judgements.jsonl.gz
    assert result.rows == 2 and result.outputs == (tmp_path / "out" / "routellm_mt_bench.parquet",)
    df = pd.read_parquet(result.outputs[0])
    assert list(df.columns) == ROUTELLM_COLUMNS
    turn2 = "Write a blog post.\n\nStart every sentence with A."
    expected = pd.DataFrame(
        {
            "request_id": [f"mtbench-81-t2-{MIXTRAL}", f"mtbench-111-t1-{GPT4}"],
            # prompt 0 (question 81, turn 2) with model 0, prompt 1 (question 111, turn 1) with model 1
            "timestamp": pd.to_datetime(["2024-07-15T00:00:00Z", "2024-07-15T00:01:01Z"]).astype("datetime64[ms, UTC]"),
            "model": [MIXTRAL, GPT4],
            "input_tokens": [math.ceil(len(turn2) / 4), 6],  # ceil(48 / 4), ceil(21 / 4)
            "output_tokens": [2, 2],  # "A trip." and "It is 3.": the judged answer of the turn, not a1
            "status": ["ok", "ok"],
            "prompt": [turn2, "Area of the triangle?"],
            "prompt_id": ["mtbench-81-t2", "mtbench-111-t1"],
            "quality": [0.5, 1.0],  # (5.5 - 1) / 9, (10 - 1) / 9
            "task": ["mt-bench/writing", "mt-bench/math"],
        }
    )
    pd.testing.assert_frame_equal(df, expected, check_dtype=False)
    assert df["input_tokens"].tolist() == [12, 6]
    again = run_import("routellm-mt-bench", src, tmp_path / "out2")
    assert again.outputs[0].read_bytes() == result.outputs[0].read_bytes()
    assert "one judgement per (question, turn, model)" in result.notes


def test_mt_bench_turn_extraction() -> None:
    assert mt_bench_turn(_t1_prompt("Q?", "A.", reference="R"), 1) == (["Q?"], "A.")
    assert mt_bench_turn(_t1_prompt("Q?\n\nwith lines", ""), 1) == (["Q?\n\nwith lines"], "")
    assert mt_bench_turn(_t2_prompt("q1", "a1", "q2", "a2\n\nmore"), 2) == (["q1", "q2"], "a2\n\nmore")
    # the math judge's reference conversation sits outside the assistant's block
    ref = "<|The Start of Reference Answer|>\n\n### User:\nq1\n\n### Reference answer:\nr1\n\n<|The End of Reference Answer|>\n\n\n"
    assert mt_bench_turn(ref + _t2_prompt("q1", "a1", "q2", "a2"), 2) == (["q1", "q2"], "a2")
    with pytest.raises(ValueError, match="once, found it 2"):
        mt_bench_turn(_t1_prompt("Q?", "A.\n[The End of Assistant's Answer]"), 1)
    with pytest.raises(ValueError, match="twice each"):
        mt_bench_turn(_t2_prompt("q1", "a1 ### User:\n", "q2", "a2"), 2)
    with pytest.raises(ValueError, match="turn 1: expected one"):
        mt_bench_turn("no markers", 1)


def test_mt_bench_frame_keeps_the_reference_guided_judgement() -> None:
    plain = _judgement(111, "gpt-4-1106-preview", "single-v1", _t1_prompt("Q?", "A."), 1.0, 1)
    math_ = _judgement(111, "gpt-4-1106-preview", "single-math-v1", _t1_prompt("Q?", "A.", reference="R"), 7.0, 1)
    df = mt_bench_frame(pd.DataFrame([plain, math_]))
    assert len(df) == 1 and df["quality"].tolist() == [(7.0 - 1) / 9]
    with pytest.raises(BeastError, match="several single-v1 judgements of question 111 turn 1"):
        mt_bench_frame(pd.DataFrame([plain, plain]))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"drop": "user_prompt"}, "routellm-mt-bench: missing column(s) user_prompt"),
        ({"drop": "score"}, "routellm-mt-bench: missing column(s) score"),
        ({"model": "claude-2.1"}, "unknown model 'claude-2.1'"),
        ({"score": 11.0}, "score must be in [1, 10]"),
        ({"turn": 3}, "turn must be 1 or 2"),
        ({"question_id": 7}, "question_id 7 is not an MT-Bench question (81-160)"),
        ({"judge": ["gpt-4", "single-v1-multi-turn"]}, "does not grade turn 1"),
        (
            {"user_prompt": "[Question]\nQ?\n\n[The Start of Assistant's Answer]\nno end"},
            "record 0 (question 111, turn 1, gpt-4-1106-preview): turn 1",
        ),
    ],
)
def test_mt_bench_frame_errors(change: dict, message: str) -> None:
    record = dict(MTB_LINES[0])
    if "drop" in change:
        del record[change["drop"]]
    else:
        record |= change
    with pytest.raises(BeastError, match=re.escape(message)):
        mt_bench_frame(pd.DataFrame([record]))


def test_mt_bench_frame_checks_question_texts_agree() -> None:
    t1 = _judgement(81, "gpt-4-1106-preview", "single-v1", _t1_prompt("Write a blog post.", "x"), 9.0, 1)
    t2 = dict(MTB_LINES[1])
    assert len(mt_bench_frame(pd.DataFrame([t1, t2]))) == 2
    with pytest.raises(BeastError, match="question 81: question 1 differs"):
        mt_bench_frame(pd.DataFrame([t1 | {"user_prompt": _t1_prompt("Another post.", "x")}, t2]))


def test_mt_bench_failed_judgement_leaves_quality_null(tmp_path: Path) -> None:
    _mt_bench_file(tmp_path, [MTB_LINES[0] | {"score": -1}])
    result = run_import("routellm-mt-bench", tmp_path, tmp_path / "out")
    assert "1 rows without a label: quality left null" in result.notes
    assert pd.read_parquet(result.outputs[0])["quality"].isna().all()


def test_routellm_rejects_model_without_price() -> None:
    with pytest.raises(BeastError, match="model gpt4_1106_preview .* is not in the price table"):
        mt_bench_frame(pd.DataFrame([MTB_LINES[0]]), known_models={"claude-2.1"})


# ---------------------------------------------------------------------------------------------- prices aliases


def test_price_aliases_appended_once() -> None:
    shared = (SHARED / "prices.yaml") if (SHARED / "prices.yaml").is_file() else None
    text = "models:\n  gpt4_1106_preview:                  {input: 10.00, output: 30.00}\n" \
           "  Mixtral-8x7B-Instruct-v0.1_concise: {input: 0.60,  output: 0.60}\n"  # fmt: skip
    out, added = price_aliases_text(text)
    assert added == ["Mixtral-8x7B-Instruct-v0.1"]
    assert (
        out
        == text
        + "  Mixtral-8x7B-Instruct-v0.1:         {input: 0.60,  output: 0.60}  # alias of Mixtral-8x7B-Instruct-v0.1_concise (beast import prices)\n"
    )
    assert price_aliases_text(out) == (out, [])  # idempotent: the alias is there now
    if shared is not None:  # the shared table lacks the alias; the project table is the shared one plus it
        merged, added = price_aliases_text(shared.read_text())
        assert added == list(PRICE_ALIASES) and merged == (ROOT / "data" / "prices.yaml").read_text()


def test_price_aliases_other_layouts() -> None:
    dated = "models:\n  Mixtral-8x7B-Instruct-v0.1_concise:\n    - {input: 1, output: 2, effective_from: 2024-01-01}\n"
    out, _ = price_aliases_text(dated)
    got = {p.model: (p.input, p.output, p.effective_from) for p in parse_prices(yaml.safe_load(out), "x").prices}
    assert got["Mixtral-8x7B-Instruct-v0.1"] == got["Mixtral-8x7B-Instruct-v0.1_concise"]
    with pytest.raises(BeastError, match="its model Mixtral-8x7B-Instruct-v0.1_concise is not in the price table"):
        price_aliases_text("models:\n  m: {input: 1, output: 1}\n")
    with pytest.raises(BeastError, match="is `models:` the last section"):
        price_aliases_text("models:\n  Mixtral-8x7B-Instruct-v0.1_concise: {input: 1, output: 1}\nother: 1\n")


# ---------------------------------------------------------------------------------------------- run_import errors


def test_api_names() -> None:
    assert SOURCES == ("alpaca-eval", "mooncake", "azure", "prices", "routellm-mmlu", "routellm-mt-bench")
    assert set(DEFAULT_SRC) == set(SOURCES)


def test_run_import_unknown_source(tmp_path: Path) -> None:
    with pytest.raises(BeastError, match="unknown source 'lmsys'"):
        run_import("lmsys", tmp_path, tmp_path)


@pytest.mark.parametrize("source", ["alpaca-eval", "azure", "routellm-mmlu"])
def test_run_import_missing_folder(tmp_path: Path, source: str) -> None:
    with pytest.raises(BeastError, match=f"{tmp_path / 'nope'}: .*source folder not found"):
        run_import(source, tmp_path / "nope", tmp_path / "out")


def test_run_import_bad_gzip(tmp_path: Path) -> None:
    bad = tmp_path / "m.annotations.json.gz"
    bad.write_bytes(b"not gzip at all")
    with pytest.raises(BeastError, match=f"{bad}: unreadable gzip"):
        run_import("alpaca-eval", tmp_path, tmp_path / "out")
    with pytest.raises(BeastError, match=f"{bad}: unreadable gzip"):
        run_import("mooncake", bad, tmp_path / "out")
    with pytest.raises(BeastError, match="file not found"):
        run_import("mooncake", tmp_path / "missing.jsonl.gz", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_run_import_alpaca_tiny_counts_missing_preference(tmp_path: Path) -> None:
    ref, other = "gpt4_1106_preview", "claude-2.1"
    for model, prefs in ((ref, [1.5, 1.5]), (other, [None, 1.25])):
        recs = [_rec(model, p, q) for p, q in zip(["p0", "p1"], prefs, strict=True)]
        (tmp_path / f"{model}.annotations.json.gz").write_bytes(gzip_bytes(json.dumps(recs).encode()))
    result = run_import("alpaca-eval", tmp_path, tmp_path / "out")
    assert result.rows == 4 and result.outputs == (tmp_path / "out" / "alpaca_eval.parquet",)
    assert "1 rows without preference: quality left null" in result.notes
    df = pd.read_parquet(result.outputs[0])
    assert df["quality"].isna().tolist() == [True, False, False, False]


def test_run_import_alpaca_rejects_model_without_price(tmp_path: Path) -> None:
    for model in ("gpt4_1106_preview", "mystery-7b"):
        recs = [_rec(model, "p0", 1.5)]
        (tmp_path / f"{model}.annotations.json.gz").write_bytes(gzip_bytes(json.dumps(recs).encode()))
    with pytest.raises(BeastError, match="not in the price table: mystery-7b"):
        run_import("alpaca-eval", tmp_path, tmp_path / "out")


def test_run_import_mooncake_tiny(tmp_path: Path) -> None:
    src = tmp_path / "trace.jsonl.gz"
    src.write_bytes(gzip_bytes(b'{"timestamp": 0, "input_length": 5, "output_length": 2, "hash_ids": [0]}\n'))
    result = run_import("mooncake", src, tmp_path / "out")
    assert result == ImportResult("mooncake", (tmp_path / "out" / "mooncake_conversation.jsonl.gz",), 1, result.notes)
    again = run_import("mooncake", src, tmp_path / "out2")
    assert result.outputs[0].read_bytes() == again.outputs[0].read_bytes()


def test_run_import_prices(tmp_path: Path) -> None:
    src = ROOT / "data" / "prices.yaml"  # already has the alias: copied byte for byte
    result = run_import("prices", src, tmp_path)
    assert result.rows == 15 and (tmp_path / "prices.yaml").read_bytes() == src.read_bytes()
    with pytest.raises(BeastError, match="file not found"):
        run_import("routellm-mt-bench", tmp_path / "nope.jsonl.gz", tmp_path / "out")
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  m: {input: -1, output: 1}\n")
    with pytest.raises(BeastError, match="bad.yaml: models.m.input"):
        run_import("prices", bad, tmp_path / "out")


# ---------------------------------------------------------------------------------------------- re-run on shared data


@pytest.fixture(scope="module")
def rerun(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ImportResult]:
    if not SHARED.is_dir():
        pytest.skip("../shared/data not present: cannot re-run the importers")
    out = tmp_path_factory.mktemp("rerun")
    return {s: run_import(s, ROOT / DEFAULT_SRC[s], out) for s in SOURCES}


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        "alpaca_eval.parquet",
        "mooncake_conversation.jsonl.gz",
        "azure_conv.csv.gz",
        "azure_code.csv.gz",
        "routellm_mmlu.parquet",
        "routellm_mt_bench.parquet",
    ],  # fmt: skip
)
def test_rerun_is_byte_identical(rerun: dict[str, ImportResult], name: str) -> None:
    (fresh,) = [p for r in rerun.values() for p in r.outputs if p.name == name]
    assert fresh.read_bytes() == (SAMPLE / name).read_bytes()


@pytest.mark.slow
def test_rerun_results(rerun: dict[str, ImportResult]) -> None:
    assert {s: r.rows for s, r in rerun.items()} == {
        "alpaca-eval": 11270, "mooncake": 12031, "azure": 28185, "prices": 15, "routellm-mmlu": 28084, "routellm-mt-bench": 320,
    }  # fmt: skip
    assert any("aliases added: Mixtral-8x7B-Instruct-v0.1" in n for n in rerun["prices"].notes)
    assert rerun["prices"].outputs[0].read_bytes() == (ROOT / "data" / "prices.yaml").read_bytes()
    assert not any("quality left null" in n for n in rerun["alpaca-eval"].notes)
