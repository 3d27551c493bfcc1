"""Importers: turn the public raw data (AlpacaEval, Mooncake, Azure, RouteLLM's MMLU and MT-Bench, prices) into
contract-v1 trace files.

The frame functions are pure (raw records in, contract-v1 DataFrame out, columns in contract order, only
the fields the source has); the `import_*` functions do the I/O. Output files are deterministic: the same
input gives byte-identical files (fixed compression, gzip mtime 0, no wall-clock times), so a re-run of
`beast traces import` over unchanged data changes nothing in git. Conversion rules are documented in data/README.md.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from core.errors import BeastError
from core.files import PROJECT, gzip_bytes, read_bytes, write_atomic
from traces.contract import CONTRACT_VERSION, FIELD_BY_NAME, FIELDS, STATUS_OK
from traces.prices import load_prices, parse_prices

SOURCES = ("alpaca-eval", "mooncake", "azure", "prices", "routellm-mmlu", "routellm-mt-bench")

# Relative to the repository root (the working directory of `uv run beast ...`).
DEFAULT_SRC: dict[str, Path] = {
    "alpaca-eval": Path("../shared/data/alpaca_eval"),
    "mooncake": Path("../shared/data/mooncake/conversation_trace.jsonl.gz"),
    "azure": Path("../shared/data/azure_llm"),
    "prices": Path("../shared/data/prices.yaml"),
    "routellm-mmlu": Path("../shared/data/routellm/mmlu"),
    "routellm-mt-bench": Path("../shared/data/routellm/mt_bench_judgements.jsonl.gz"),
}

PROJECT_PRICES = PROJECT / "data" / "prices.yaml"

# Documented synthetic time bases: AlpacaEval has no times, Mooncake only offsets from the trace start.
ALPACA_EPOCH = pd.Timestamp("2024-01-01T00:00:00Z")
MOONCAKE_EPOCH = pd.Timestamp("2024-06-01T00:00:00Z")
ALPACA_REFERENCE = "gpt4_1106_preview"  # its file fixes the prompt order (and is the judge's reference answer)
CHARS_PER_TOKEN = 4
MOONCAKE_MODEL = "mooncake/conversation"
MOONCAKE_FIELDS = ("timestamp", "input_length", "output_length", "hash_ids")  # every line of a published trace
AZURE_SERVICES: dict[str, str] = {"conv": "conversation", "code": "code"}  # service -> task
AZURE_FILE = "AzureLLMInferenceTrace_{service}.csv"
ALPACA_SUFFIX = ".annotations.json.gz"

# RouteLLM (lm-sys/RouteLLM evals): one weak and one strong model. Their names -> the project's canonical names,
# so that data sets pooled for training share model identity (AlpacaEval calls GPT-4 Turbo gpt4_1106_preview).
ROUTELLM_MODELS: dict[str, str] = {
    "mistralai/Mixtral-8x7B-Instruct-v0.1": "Mixtral-8x7B-Instruct-v0.1",
    "Mixtral-8x7B-Instruct": "Mixtral-8x7B-Instruct-v0.1",
    "gpt-4-1106-preview": "gpt4_1106_preview",
}
MMLU_MODEL_COLUMNS = ("mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview")  # RouteLLM's ROUTED_PAIR
MMLU_EPOCH = pd.Timestamp("2024-07-01T00:00:00Z")  # synthetic, like ALPACA_EPOCH (the evals have no times)
MT_BENCH_EPOCH = pd.Timestamp("2024-07-15T00:00:00Z")
# RouteLLM generated MMLU answers with `max_new_tokens=1` (routellm/evals/mmlu/generate_responses.py): one letter.
MMLU_OUTPUT_TOKENS = 1
MMLU_PREFIX, MMLU_SUFFIX = "mmlu_", ".csv.gz"
MT_BENCH_FILE = "mt_bench_judgements.jsonl.gz"
# MT-Bench's 80 questions come in blocks of 10 per category (FastChat llm_judge/data/mt_bench/question.jsonl).
MT_BENCH_CATEGORIES = ("writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities")
MT_BENCH_FIRST_ID = 81
# The judge prompts' markers (FastChat judge_prompts.jsonl: single-v1, single-math-v1 and their -multi-turn forms).
_MTB_QUESTION = "[Question]\n"
_MTB_QUESTION_END = "\n\n[The Start of "  # the reference answer (math judge) or the assistant's answer follows
_MTB_ANSWER, _MTB_ANSWER_END = "[The Start of Assistant's Answer]\n", "\n[The End of Assistant's Answer]"
_MTB_CONV = "<|The Start of Assistant A's Conversation with User|>\n\n"
_MTB_CONV_END = "\n\n<|The End of Assistant A's Conversation with User|>"
_MTB_USER, _MTB_ASSISTANT = "### User:\n", "### Assistant A:\n"
MT_BENCH_TURN_SEPARATOR = "\n\n"  # a turn-2 prompt is question 1 + this + question 2

# `beast traces import prices` adds these documented aliases (alias -> model whose price it copies) when the shared
# table lacks them: RouteLLM's full-length Mixtral costs what AlpacaEval's `_concise` run of the same model does.
PRICE_ALIASES: dict[str, str] = {"Mixtral-8x7B-Instruct-v0.1": "Mixtral-8x7B-Instruct-v0.1_concise"}

PARQUET_COMPRESSION, PARQUET_LEVEL = "zstd", 19
GZIP_LEVEL = 9


@dataclass(frozen=True)
class ImportResult:
    source: str
    outputs: tuple[Path, ...]
    rows: int
    notes: tuple[str, ...]  # e.g. "12 rows without preference: quality left null"


# ---------------------------------------------------------------------------------------------- pure rules


def estimate_tokens(text: pd.Series) -> pd.Series:
    """Token estimate ceil(characters / 4): AlpacaEval gives text, not tokens (characters = code points)."""
    n = text.str.len().to_numpy(dtype=np.int64)
    return pd.Series(-(-n // CHARS_PER_TOKEN), index=text.index, dtype="int64")


def prompt_ids(instruction: pd.Series) -> pd.Series:
    """First 16 hex chars of sha256(UTF-8 instruction): the same prompt gets the same id in every run.

    A repeated identical instruction (none in AlpacaEval 2.0, checked) would collide; its k-th repeat
    (k >= 1, in row order) is hashed as instruction + "\\x00" + str(k) instead, so ids stay unique and the
    first occurrence keeps the plain hash.
    """
    occurrence = instruction.groupby(instruction, sort=False).cumcount()
    keyed = instruction.where(occurrence == 0, instruction + "\x00" + occurrence.astype(str))
    return keyed.map(lambda s: hashlib.sha256(s.encode("utf-8")).hexdigest()[:16]).astype(object)


def rfc3339_ms(ts: pd.Series) -> pd.Series:
    """UTC timestamps as RFC 3339 text with milliseconds and a Z, e.g. 2023-11-16T18:15:46.680Z."""
    ts = ts.dt.tz_convert("UTC")
    ms = (ts.dt.microsecond // 1000).astype(str).str.zfill(3)
    return (ts.dt.strftime("%Y-%m-%dT%H:%M:%S") + "." + ms + "Z").astype(object)


def epoch_ms(ts: pd.Series) -> pd.Series:
    """UTC timestamps as integer epoch milliseconds (the JSONL form the contract accepts)."""
    return ts.dt.as_unit("ms").astype("int64")


def _numbered(prefix: str, n: int) -> pd.Series:
    """prefix + zero-padded 6-digit row index (0-based): stable ids for traces that carry none."""
    return (prefix + pd.Series(np.arange(n)).astype(str).str.zfill(6)).astype(object)


def _contract_order(df: pd.DataFrame) -> pd.DataFrame:
    """Columns in contract order, so every output lists its fields the same way."""
    unknown = set(df.columns) - set(FIELD_BY_NAME)
    assert not unknown, f"not contract fields: {sorted(unknown)}"
    return df[[f.name for f in FIELDS if f.name in df.columns]].reset_index(drop=True)


def _require_columns(df: pd.DataFrame, columns: Collection[str], where: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise BeastError(f"{where}: missing column(s) {', '.join(missing)}; found: {', '.join(map(str, df.columns))}")


def _non_negative_ints(values: pd.Series, where: str) -> pd.Series:
    """Token counts as int64; anything else (text, fractions, negatives, nulls, booleans) is a data error."""
    if pd.api.types.infer_dtype(values, skipna=True) == "boolean":
        raise BeastError(f"{where}: booleans where integers >= 0 were expected")
    num = pd.to_numeric(values, errors="coerce")
    bad = num.isna() | (num < 0) | (num != np.floor(num))
    if bad.any():
        first = int(np.flatnonzero(bad.to_numpy())[0])
        raise BeastError(
            f"{where}: {int(bad.sum())} value(s) not integers >= 0 (first at row {first}: {values.iloc[first]!r})"
        )
    return num.astype("int64")


# ---------------------------------------------------------------------------------------------- AlpacaEval


def alpaca_eval_frame(
    annotations: Mapping[str, list[dict]],
    *,
    known_models: Collection[str] | None = None,
    reference: str = ALPACA_REFERENCE,
) -> pd.DataFrame:
    """One row per (instruction, model) from AlpacaEval annotations (model name -> its records).

    Why synthetic times: the benchmark has none, and the ingest needs a timestamp to price rows. Prompt i (in
    the reference model's order) arrives at 2024-01-01T00:00:00Z + i minutes, model j (sorted names) + j s.
    """
    if reference not in annotations:
        raise BeastError(f"alpaca-eval: no annotations for the reference model {reference} (it fixes the prompt order)")
    models = sorted(annotations)
    if len(models) > 60:
        raise BeastError(f"alpaca-eval: {len(models)} models do not fit one second each in a prompt's minute")
    if known_models is not None:
        unpriced = [m for m in models if m not in known_models]
        if unpriced:
            raise BeastError(f"alpaca-eval: model(s) not in the price table: {', '.join(unpriced)}")

    parts = []
    for j, model in enumerate(models):
        df = pd.DataFrame.from_records(annotations[model])
        where = f"alpaca-eval {model}"
        if df.empty:
            raise BeastError(f"{where}: no annotations")
        _require_columns(df, ("instruction", "dataset", "generator_2", "output_2"), where)
        if "preference" not in df.columns:
            df["preference"] = np.nan  # no record has one: every quality stays null (and is counted)
        wrong = df["generator_2"] != model
        if wrong.any():
            raise BeastError(
                f"{where}: generator_2 is {df.loc[wrong, 'generator_2'].iloc[0]!r} in {int(wrong.sum())} row(s), expected {model!r}"
            )
        for col in ("instruction", "output_2", "dataset"):
            if pd.api.types.infer_dtype(df[col], skipna=False) != "string":
                raise BeastError(f"{where}: `{col}` must be text in every record")
        pref = pd.to_numeric(df["preference"], errors="coerce")
        bad = pref.isna() & df["preference"].notna()
        if bad.any() or ((pref < 1) | (pref > 2)).any():
            raise BeastError(f"{where}: preference must be a number in [1, 2] (or missing)")
        parts.append(
            pd.DataFrame(
                {
                    "model": model,
                    "j": j,
                    "instruction": df["instruction"].astype(object),
                    "occurrence": df.groupby("instruction", sort=False).cumcount(),
                    "task": df["dataset"].astype(object),
                    "output_tokens": estimate_tokens(df["output_2"]),
                    "quality": pref.astype("float64") - 1.0,
                }
            )
        )
    rows = pd.concat(parts, ignore_index=True)

    ref = rows.loc[rows["model"] == reference, ["instruction", "occurrence"]].reset_index(drop=True)
    ref["i"] = np.arange(len(ref))
    ref["prompt_id"] = prompt_ids(ref["instruction"])
    rows = rows.merge(ref, on=["instruction", "occurrence"], how="left", validate="many_to_one")
    stray = rows["i"].isna()
    if stray.any():
        first = rows[stray].iloc[0]
        raise BeastError(
            f"alpaca-eval {first['model']}: {int(stray.sum())} instruction(s) not in the {reference} file, e.g. {first['instruction'][:60]!r}"
        )
    if ref["prompt_id"].duplicated().any():
        raise BeastError("alpaca-eval: two different instructions share a 16-hex prompt_id (sha256 prefix collision)")
    rows = rows.sort_values(["i", "j"], kind="stable").reset_index(drop=True)

    offset = pd.to_timedelta(rows["i"].astype("int64") * 60 + rows["j"].astype("int64"), unit="s")
    out = pd.DataFrame(
        {
            "request_id": "alpaca-" + rows["prompt_id"] + "-" + rows["model"],
            "timestamp": (ALPACA_EPOCH + offset).dt.as_unit("ms"),
            "model": rows["model"],
            "input_tokens": estimate_tokens(rows["instruction"]),
            "output_tokens": rows["output_tokens"],
            "status": STATUS_OK,
            "prompt": rows["instruction"],
            "prompt_id": rows["prompt_id"],
            "quality": rows["quality"],
            "task": rows["task"],
        }
    )
    return _contract_order(
        out.astype(dict.fromkeys(("request_id", "model", "status", "prompt", "prompt_id", "task"), object))
    )


# ---------------------------------------------------------------------------------------------- Mooncake


def mooncake_frame(records: pd.DataFrame) -> pd.DataFrame:
    """One row per Mooncake trace line; times are offsets (ms), placed after the synthetic 2024-06-01 base.

    The trace names no model, so every row gets the placeholder `mooncake/conversation` (the source service).
    """
    _require_columns(records, MOONCAKE_FIELDS, "mooncake")
    records = records.reset_index(drop=True)
    blocks = records["hash_ids"]
    lengths = blocks.str.len() if blocks.dtype == object else pd.Series(np.nan, index=blocks.index)
    values = blocks[lengths > 0].explode()
    if lengths.isna().any() or (len(values) and pd.api.types.infer_dtype(values, skipna=False) != "integer"):
        raise BeastError("mooncake: hash_ids must be a list of integers on every line")
    offset = _non_negative_ints(records["timestamp"], "mooncake timestamp")
    if (offset >= 50 * 365 * 86_400_000).any():  # keeps the result inside the contract's [2000, 2100)
        raise BeastError(f"mooncake: timestamp offset over 50 years (max {int(offset.max())} ms)")
    out = pd.DataFrame(
        {
            "request_id": _numbered("mooncake-conv-", len(records)),
            "timestamp": MOONCAKE_EPOCH + pd.to_timedelta(offset, unit="ms"),
            "model": MOONCAKE_MODEL,
            "input_tokens": _non_negative_ints(records["input_length"], "mooncake input_length"),
            "output_tokens": _non_negative_ints(records["output_length"], "mooncake output_length"),
            "status": STATUS_OK,
            "task": "conversation",
            "prefix_blocks": blocks,
        }
    )
    out["timestamp"] = out["timestamp"].dt.as_unit("ms")
    return _contract_order(out.astype(dict.fromkeys(("model", "status", "task"), object)))


# ---------------------------------------------------------------------------------------------- Azure


def azure_frame(raw: pd.DataFrame, service: str) -> pd.DataFrame:
    """One row per Azure trace record; naive TIMESTAMP is UTC (documented), kept to the millisecond (floored).

    No model names in the trace: the placeholder `azure/<service>` names the source service instead.
    """
    if service not in AZURE_SERVICES:
        raise BeastError(f"azure: unknown service {service!r}; known: {', '.join(AZURE_SERVICES)}")
    where = f"azure {service}"
    _require_columns(raw, ("TIMESTAMP", "ContextTokens", "GeneratedTokens"), where)
    raw = raw.reset_index(drop=True)
    ts = pd.to_datetime(raw["TIMESTAMP"], format="%Y-%m-%d %H:%M:%S.%f", errors="coerce", utc=True)
    if ts.isna().any():
        first = int(np.flatnonzero(ts.isna().to_numpy())[0])
        raise BeastError(
            f"{where}: {int(ts.isna().sum())} TIMESTAMP value(s) unreadable (first at row {first}: {raw['TIMESTAMP'].iloc[first]!r})"
        )
    out = pd.DataFrame(
        {
            "request_id": _numbered(f"azure-{service}-", len(raw)),
            "timestamp": ts.dt.floor("ms").dt.as_unit("ms"),
            "model": f"azure/{service}",
            "input_tokens": _non_negative_ints(raw["ContextTokens"], f"{where} ContextTokens"),
            "output_tokens": _non_negative_ints(raw["GeneratedTokens"], f"{where} GeneratedTokens"),
            "status": STATUS_OK,
            "task": AZURE_SERVICES[service],
        }
    )
    return _contract_order(out.astype(dict.fromkeys(("model", "status", "task"), object)))


# ---------------------------------------------------------------------------------------------- RouteLLM


def _routellm_model(name: str, where: str, known_models: Collection[str] | None) -> str:
    if name not in ROUTELLM_MODELS:
        raise BeastError(f"{where}: unknown model {name!r}; known: {', '.join(ROUTELLM_MODELS)}")
    model = ROUTELLM_MODELS[name]
    if known_models is not None and model not in known_models:
        raise BeastError(
            f"{where}: model {model} (RouteLLM's {name}) is not in the price table; run `beast traces import prices` first"
        )
    return model


def _correct(values: pd.Series, where: str) -> pd.Series:
    """RouteLLM's correctness cells (bool, or the text True / False) as quality 1.0 / 0.0; empty / NaN -> NaN."""

    def one(v: object) -> float:
        if isinstance(v, (bool, np.bool_)):
            return float(v)
        if isinstance(v, str) and v in ("True", "False", ""):
            return {"True": 1.0, "False": 0.0, "": np.nan}[v]
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return np.nan
        raise BeastError(f"{where}: expected True or False, got {v!r}")

    return values.map(one).astype("float64")


def _synthetic_times(epoch: pd.Timestamp, prompt_index: pd.Series, model_index: pd.Series) -> pd.Series:
    """Prompt i at epoch + i minutes, model j (index in the sorted model names) j seconds into that minute."""
    offset = pd.to_timedelta(prompt_index.astype("int64") * 60 + model_index.astype("int64"), unit="s")
    return (epoch + offset).dt.as_unit("ms")


def mmlu_frame(subjects: Mapping[str, pd.DataFrame], *, known_models: Collection[str] | None = None) -> pd.DataFrame:
    """One row per (MMLU question, model) from RouteLLM's per-subject tables (subject -> its rows).

    quality = 1.0 when the model answered correctly, 0.0 when not (a missing cell stays null); the prompt is the
    question with its options as RouteLLM stored it (without the 5-shot prefix it was sent with). Question i of
    all subjects (sorted by name, rows in file order) arrives at 2024-07-01T00:00:00Z + i minutes, model j (sorted
    canonical names) + j seconds. output_tokens is the constant MMLU_OUTPUT_TOKENS (RouteLLM asked for one token).
    """
    if not subjects:
        raise BeastError("routellm-mmlu: no subjects")
    parts = []
    for subject in sorted(subjects):
        where = f"routellm-mmlu {subject}"
        if not re.fullmatch(r"[A-Za-z0-9_]+", subject):
            raise BeastError(f"{where}: a subject name is letters, digits and _ only")
        df = subjects[subject].reset_index(drop=True)
        _require_columns(df, ("prompt", *MMLU_MODEL_COLUMNS), where)
        extra = [str(c) for c in df.columns if c != "prompt" and c not in MMLU_MODEL_COLUMNS]
        if extra:
            raise BeastError(
                f"{where}: unexpected column(s) {', '.join(extra)}; expected prompt, {', '.join(MMLU_MODEL_COLUMNS)}"
            )
        if df.empty:
            raise BeastError(f"{where}: no questions")
        if pd.api.types.infer_dtype(df["prompt"], skipna=False) != "string" or (df["prompt"] == "").any():
            raise BeastError(f"{where}: `prompt` must be non-empty text in every row")
        index = pd.Series(np.arange(len(df)))
        for column in MMLU_MODEL_COLUMNS:
            parts.append(
                pd.DataFrame(
                    {
                        "subject": subject,
                        "index": index,
                        "model": _routellm_model(column, where, known_models),
                        "prompt": df["prompt"].astype(object),
                        "quality": _correct(df[column], f"{where} `{column}`"),
                    }
                )
            )
    rows = pd.concat(parts, ignore_index=True)
    models = sorted(rows["model"].unique())
    rows["j"] = rows["model"].map({m: j for j, m in enumerate(models)})
    rows = rows.sort_values(["subject", "index", "j"], kind="stable").reset_index(drop=True)
    rows["i"] = rows.groupby(["subject", "index"], sort=False).ngroup()
    prompt_id = ("mmlu-" + rows["subject"] + "-" + rows["index"].astype(str).str.zfill(4)).astype(object)
    out = pd.DataFrame(
        {
            "request_id": prompt_id + "-" + rows["model"],
            "timestamp": _synthetic_times(MMLU_EPOCH, rows["i"], rows["j"]),
            "model": rows["model"],
            "input_tokens": estimate_tokens(rows["prompt"]),
            "output_tokens": pd.Series(MMLU_OUTPUT_TOKENS, index=rows.index, dtype="int64"),
            "status": STATUS_OK,
            "prompt": rows["prompt"],
            "prompt_id": prompt_id,
            "quality": rows["quality"],
            "task": "mmlu/" + rows["subject"],
        }
    )
    return _contract_order(
        out.astype(dict.fromkeys(("request_id", "model", "status", "prompt", "prompt_id", "task"), object))
    )


def _one_between(text: str, start: str, end: str, what: str) -> str:
    """The text between the only `start` and the only `end` after it."""
    for marker in (start, end):
        if text.count(marker) != 1:
            raise ValueError(f"{what}: expected the marker {marker!r} once, found it {text.count(marker)} time(s)")
    a, b = text.index(start) + len(start), text.index(end)
    if b < a:
        raise ValueError(f"{what}: {end!r} comes before {start!r}")
    return text[a:b]


def mt_bench_turn(user_prompt: str, turn: int) -> tuple[list[str], str]:
    """(user questions up to `turn`, the assistant's answer in `turn`) from an MT-Bench judge prompt.

    Turn 1 (judges single-v1, single-math-v1): `[Question]\n<q>\n\n[The Start of ...` (a reference answer may
    come next) and the answer between `[The Start of Assistant's Answer]\n` and `\n[The End of Assistant's
    Answer]`. Turn 2 (`-multi-turn` judges): the conversation block between `<|The Start of Assistant A's
    Conversation with User|>` and its end marker, `### User:\n<q1>\n\n### Assistant A:\n<a1>\n\n### User:\n<q2>
    \n\n### Assistant A:\n<a2>` (the math judge's reference block sits outside it). A marker that is missing or
    repeated (so the split would be ambiguous) raises ValueError.
    """
    if turn == 1:
        body = user_prompt.split(_MTB_QUESTION, 1)[1] if user_prompt.count(_MTB_QUESTION) == 1 else None
        if body is None or _MTB_QUESTION_END not in body:
            raise ValueError(f"turn 1: expected one {_MTB_QUESTION!r} followed by {_MTB_QUESTION_END!r}")
        question = body.split(_MTB_QUESTION_END, 1)[0]
        return [question], _one_between(user_prompt, _MTB_ANSWER, _MTB_ANSWER_END, "turn 1")
    if turn == 2:
        block = _one_between(user_prompt, _MTB_CONV, _MTB_CONV_END, "turn 2")
        if block.count(_MTB_USER) != 2 or block.count(_MTB_ASSISTANT) != 2 or not block.startswith(_MTB_USER):
            raise ValueError(f"turn 2: expected the conversation to be {_MTB_USER!r} / {_MTB_ASSISTANT!r} twice each")
        sep_a, sep_u = MT_BENCH_TURN_SEPARATOR + _MTB_ASSISTANT, MT_BENCH_TURN_SEPARATOR + _MTB_USER
        q1, rest = (block[len(_MTB_USER) :].split(sep_a, 1) + [""])[:2]
        _, rest = (rest.split(sep_u, 1) + [""])[:2]
        parts = rest.split(sep_a, 1)
        if len(parts) != 2:
            raise ValueError("turn 2: the conversation does not alternate user / assistant")
        return [q1, parts[0]], parts[1]
    raise ValueError(f"turn must be 1 or 2, got {turn}")


def mt_bench_category(question_id: int) -> str:
    k = (question_id - MT_BENCH_FIRST_ID) // 10
    if not 0 <= k < len(MT_BENCH_CATEGORIES):
        last = MT_BENCH_FIRST_ID + 10 * len(MT_BENCH_CATEGORIES) - 1
        raise BeastError(
            f"routellm-mt-bench: question_id {question_id} is not an MT-Bench question ({MT_BENCH_FIRST_ID}-{last})"
        )
    return MT_BENCH_CATEGORIES[k]


def _judge_name(judge: object) -> str:
    """`["gpt-4", "single-math-v1"]` -> "single-math-v1" (a plain string is taken as the name)."""
    if isinstance(judge, str):
        return judge
    if isinstance(judge, (list, tuple, np.ndarray)) and len(judge) == 2 and all(isinstance(x, str) for x in judge):
        return str(judge[1])
    raise BeastError(f"routellm-mt-bench: judge must be [judge model, prompt name], got {judge!r}")


def mt_bench_frame(records: pd.DataFrame, *, known_models: Collection[str] | None = None) -> pd.DataFrame:
    """One row per (MT-Bench question, turn, model) from RouteLLM's judgement records.

    quality = (score - 1) / 9 (score 1-10; a missing score or FastChat's failed-judgement -1 leaves it null).
    Several judgements of one (question, turn, model): the reference-guided `single-math-*` one is kept (MT-Bench
    grades math, reasoning and coding with it); two of the same judge are an error. Prompt: turn 1 the question,
    turn 2 question 1 + "\n\n" + question 2; output_tokens from the judged answer of that turn. Prompt i (sorted by
    question_id, turn) arrives at 2024-07-15T00:00:00Z + i minutes, model j (sorted names) + j seconds.
    """
    where = "routellm-mt-bench"
    _require_columns(records, ("question_id", "model", "judge", "user_prompt", "score", "turn"), where)
    if records.empty:
        raise BeastError(f"{where}: no judgements")
    records = records.reset_index(drop=True)
    qid = _non_negative_ints(records["question_id"], f"{where} question_id")
    turn = _non_negative_ints(records["turn"], f"{where} turn")
    if not turn.isin([1, 2]).all():
        raise BeastError(f"{where}: turn must be 1 or 2, got {sorted(set(turn) - {1, 2})}")
    if pd.api.types.infer_dtype(records["user_prompt"], skipna=False) != "string":
        raise BeastError(f"{where}: `user_prompt` must be text in every record")
    models = {name: _routellm_model(name, where, known_models) for name in records["model"].astype(str).unique()}
    judge = records["judge"].map(_judge_name)
    multi = judge.str.endswith("-multi-turn")
    wrong = multi != (turn == 2)
    if wrong.any():
        r = int(np.flatnonzero(wrong.to_numpy())[0])
        raise BeastError(
            f"{where}: record {r}: judge {judge.iloc[r]} does not grade turn {turn.iloc[r]} (-multi-turn judges grade turn 2)"
        )
    score = pd.to_numeric(records["score"], errors="coerce")
    if (score.isna() & records["score"].notna()).any() or pd.api.types.infer_dtype(
        records["score"], skipna=True
    ) == "boolean":
        raise BeastError(f"{where}: score must be a number")
    score = score.where(score != -1)  # FastChat writes -1 when it cannot read the judge's rating
    if ((score < 1) | (score > 10)).any():
        raise BeastError(
            f"{where}: score must be in [1, 10] (or -1 / missing), got {sorted(score[(score < 1) | (score > 10)].unique())}"
        )

    rows = pd.DataFrame(
        {
            "qid": qid,
            "turn": turn,
            "model": records["model"].astype(str).map(models),
            "reference_guided": judge.str.startswith("single-math"),
            "judge": judge,
            "quality": (score - 1.0) / 9.0,
            "k": np.arange(len(records)),
        }
    )
    same = rows.duplicated(["qid", "turn", "model", "judge"], keep=False)
    if same.any():
        first = rows[same].iloc[0]
        raise BeastError(
            f"{where}: several {first['judge']} judgements of question {first['qid']} turn {first['turn']} for {first['model']}"
        )
    rows = rows.sort_values(
        ["qid", "turn", "model", "reference_guided", "k"], ascending=[True, True, True, False, True], kind="stable"
    )
    rows = rows.drop_duplicates(["qid", "turn", "model"], keep="first")

    questions, answers = [], []
    for k, t in zip(rows["k"], rows["turn"], strict=True):
        try:
            qs, answer = mt_bench_turn(records["user_prompt"].iloc[k], int(t))
        except ValueError as exc:
            raise BeastError(
                f"{where}: record {k} (question {qid.iloc[k]}, turn {t}, {records['model'].iloc[k]}): {exc}"
            ) from None
        questions.append(qs)
        answers.append(answer)
    rows["prompt"] = [MT_BENCH_TURN_SEPARATOR.join(qs) for qs in questions]
    rows["first"] = [qs[0] for qs in questions]
    rows["output_tokens"] = estimate_tokens(pd.Series(answers, index=rows.index, dtype=object))
    for keys, col, what in ((["qid", "turn"], "prompt", "the question text"), (["qid"], "first", "question 1")):
        differs = rows.groupby(keys)[col].nunique() > 1
        if differs.any():
            raise BeastError(f"{where}: question {differs[differs].index[0]}: {what} differs between judgements")
    rows["category"] = rows["qid"].map(mt_bench_category)

    names = sorted(rows["model"].unique())
    rows["j"] = rows["model"].map({m: j for j, m in enumerate(names)})
    rows = rows.sort_values(["qid", "turn", "j"], kind="stable").reset_index(drop=True)
    rows["i"] = rows.groupby(["qid", "turn"], sort=False).ngroup()
    prompt_id = ("mtbench-" + rows["qid"].astype(str) + "-t" + rows["turn"].astype(str)).astype(object)
    out = pd.DataFrame(
        {
            "request_id": prompt_id + "-" + rows["model"],
            "timestamp": _synthetic_times(MT_BENCH_EPOCH, rows["i"], rows["j"]),
            "model": rows["model"],
            "input_tokens": estimate_tokens(rows["prompt"]),
            "output_tokens": rows["output_tokens"],
            "status": STATUS_OK,
            "prompt": rows["prompt"],
            "prompt_id": prompt_id,
            "quality": rows["quality"].astype("float64"),
            "task": "mt-bench/" + rows["category"],
        }
    )
    return _contract_order(
        out.astype(dict.fromkeys(("request_id", "model", "status", "prompt", "prompt_id", "task"), object))
    )


# ---------------------------------------------------------------------------------------------- serialising


def parquet_bytes(df: pd.DataFrame) -> bytes:
    """Parquet with the contract's Arrow types, zstd, and only the contract version as metadata (no pandas
    metadata: it would tie the bytes to the index layout)."""
    schema = pa.schema(
        [pa.field(c, FIELD_BY_NAME[c].arrow_type) for c in df.columns],
        metadata={"beast.trace_contract": CONTRACT_VERSION},
    )
    table = pa.table([_arrow_column(df[c], schema.field(c).type) for c in df.columns], schema=schema)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression=PARQUET_COMPRESSION, compression_level=PARQUET_LEVEL)
    return buf.getvalue()


def _arrow_column(values: pd.Series, type_: pa.DataType) -> pa.Array:
    if pa.types.is_timestamp(type_):  # UTC instants as naive ms, then tagged UTC (same values, no tz warning)
        naive = values.dt.tz_convert("UTC").dt.tz_localize(None).dt.as_unit("ms").to_numpy()
        return pa.array(naive, type=pa.timestamp("ms")).cast(type_)
    return pa.array(values.to_numpy(dtype=object) if type_ == pa.string() else values.to_numpy(), type=type_)


def jsonl_bytes(df: pd.DataFrame) -> bytes:
    """JSON lines, keys in column order, timestamp as integer epoch ms (gzip it separately)."""
    df = df.assign(timestamp=epoch_ms(df["timestamp"]))
    text = df.to_json(orient="records", lines=True, force_ascii=False)
    # pandas escapes "/" as "\/" (valid JSON, but ungreppable); undo it when no escaped backslash could be hit.
    if "\\\\" not in text:
        text = text.replace("\\/", "/")
    return text.encode("utf-8")


def csv_bytes(df: pd.DataFrame) -> bytes:
    """CSV with a header, LF line ends, timestamp as RFC 3339 UTC text with milliseconds."""
    return df.assign(timestamp=rfc3339_ms(df["timestamp"])).to_csv(index=False, lineterminator="\n").encode("utf-8")


# ---------------------------------------------------------------------------------------------- reading


def _require_dir(src: Path, what: str) -> None:
    if not src.is_dir():
        raise BeastError(f"{src}: {what} source folder not found")


def read_alpaca_eval(src: Path) -> dict[str, list[dict]]:
    """Model name (from the file name) -> its annotation records."""
    _require_dir(src, "alpaca-eval")
    files = sorted(src.glob(f"*{ALPACA_SUFFIX}"))
    if not files:
        raise BeastError(f"{src}: no *{ALPACA_SUFFIX} files")
    out: dict[str, list[dict]] = {}
    for path in files:
        try:
            doc = json.loads(read_bytes(path).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BeastError(f"{path}: not valid UTF-8 JSON: {exc}") from None
        if not isinstance(doc, list) or not all(isinstance(r, dict) for r in doc):
            raise BeastError(f"{path}: expected a JSON list of objects")
        out[path.name.removesuffix(ALPACA_SUFFIX)] = doc
    return out


def read_mooncake(src: Path) -> pd.DataFrame:
    """The trace's JSON lines as a DataFrame (numbers kept as read; no date guessing)."""
    path = src / "conversation_trace.jsonl.gz" if src.is_dir() else src
    data = read_bytes(path)
    try:
        return pd.read_json(io.BytesIO(data), lines=True, dtype=False)
    except ValueError as exc:
        raise BeastError(f"{path}: not valid JSON lines: {exc}") from None


def read_mmlu(src: Path) -> dict[str, pd.DataFrame]:
    """Subject (from the file name mmlu_<subject>.csv.gz) -> its rows, every cell as text (no NA guessing:
    a question reading "None" stays text)."""
    _require_dir(src, "routellm-mmlu")
    files = sorted(src.glob(f"{MMLU_PREFIX}*{MMLU_SUFFIX}"))
    if not files:
        raise BeastError(f"{src}: no {MMLU_PREFIX}*{MMLU_SUFFIX} files")
    out: dict[str, pd.DataFrame] = {}
    for path in files:
        data = read_bytes(path)
        try:
            out[path.name.removeprefix(MMLU_PREFIX).removesuffix(MMLU_SUFFIX)] = pd.read_csv(
                io.BytesIO(data), dtype=str, keep_default_na=False
            )
        except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
            raise BeastError(f"{path}: unreadable CSV: {exc}".replace("\n", " ")) from None
    return out


def read_mt_bench(src: Path) -> pd.DataFrame:
    """The judgement JSON lines as a DataFrame (a folder: its mt_bench_judgements.jsonl.gz)."""
    path = src / MT_BENCH_FILE if src.is_dir() else src
    data = read_bytes(path)
    try:
        return pd.read_json(io.BytesIO(data), lines=True, dtype=False)  # dtype=False: no date guessing either
    except ValueError as exc:
        raise BeastError(f"{path}: not valid JSON lines: {exc}") from None


def read_azure(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype={"TIMESTAMP": str})
    except FileNotFoundError:
        raise BeastError(f"{path}: file not found") from None
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise BeastError(f"{path}: unreadable CSV: {exc}".replace("\n", " ")) from None


# ---------------------------------------------------------------------------------------------- import_*


def import_alpaca_eval(src: Path, out: Path) -> ImportResult:
    frame = alpaca_eval_frame(read_alpaca_eval(src), known_models=load_prices(PROJECT_PRICES).models)
    path = write_atomic(out / "alpaca_eval.parquet", parquet_bytes(frame))
    notes = [f"{frame['model'].nunique()} models x {frame['prompt_id'].nunique()} prompts"]
    missing = int(frame["quality"].isna().sum())
    if missing:
        notes.append(f"{missing} rows without preference: quality left null")
    empty = int((frame["output_tokens"] == 0).sum())
    if empty:
        notes.append(f"{empty} empty answers: output_tokens 0")
    counts = frame["model"].value_counts()
    if counts.nunique() > 1:
        notes.append("uneven rows per model: " + ", ".join(f"{m}={n}" for m, n in counts.sort_index().items()))
    return ImportResult("alpaca-eval", (path,), len(frame), tuple(notes))


def import_mooncake(src: Path, out: Path) -> ImportResult:
    frame = mooncake_frame(read_mooncake(src))
    path = write_atomic(out / "mooncake_conversation.jsonl.gz", gzip_bytes(jsonl_bytes(frame), GZIP_LEVEL))
    return ImportResult("mooncake", (path,), len(frame), (f"model placeholder {MOONCAKE_MODEL}",))


def import_azure(src: Path, out: Path) -> ImportResult:
    _require_dir(src, "azure")
    frames = {s: azure_frame(read_azure(src / AZURE_FILE.format(service=s)), s) for s in AZURE_SERVICES}
    paths = tuple(
        write_atomic(out / f"azure_{s}.csv.gz", gzip_bytes(csv_bytes(f), GZIP_LEVEL)) for s, f in frames.items()
    )
    notes = tuple(f"{s}: {len(f)} rows, model placeholder azure/{s}" for s, f in frames.items())
    return ImportResult("azure", paths, sum(len(f) for f in frames.values()), notes)


def _quality_notes(frame: pd.DataFrame) -> list[str]:
    notes = ["mean quality " + ", ".join(f"{m} {q:.4f}" for m, q in frame.groupby("model")["quality"].mean().items())]
    missing = int(frame["quality"].isna().sum())
    if missing:
        notes.append(f"{missing} rows without a label: quality left null")
    return notes


def import_routellm_mmlu(src: Path, out: Path) -> ImportResult:
    frame = mmlu_frame(read_mmlu(src), known_models=load_prices(PROJECT_PRICES).models)
    path = write_atomic(out / "routellm_mmlu.parquet", parquet_bytes(frame))
    first = frame.drop_duplicates("prompt_id")
    notes = [
        f"{frame['model'].nunique()} models x {len(first)} questions in {frame['task'].nunique()} subjects",
        *_quality_notes(frame),
    ]
    repeats = int(first["prompt"].duplicated().sum())
    if repeats:
        notes.append(f"{repeats} questions repeat an earlier question's text (own prompt_id each)")
    notes.append(f"output_tokens {MMLU_OUTPUT_TOKENS} on every row (RouteLLM generated one token)")
    return ImportResult("routellm-mmlu", (path,), len(frame), tuple(notes))


def import_routellm_mt_bench(src: Path, out: Path) -> ImportResult:
    records = read_mt_bench(src)
    frame = mt_bench_frame(records, known_models=load_prices(PROJECT_PRICES).models)
    path = write_atomic(out / "routellm_mt_bench.parquet", parquet_bytes(frame))
    notes = [
        f"{frame['model'].nunique()} models x {frame['prompt_id'].nunique()} (question, turn) prompts",
        *_quality_notes(frame),
    ]
    dropped = len(records) - len(frame)
    notes.append(
        f"{dropped} extra judgements dropped (the reference-guided one kept)"
        if dropped
        else "one judgement per (question, turn, model)"
    )
    return ImportResult("routellm-mt-bench", (path,), len(frame), tuple(notes))


def price_aliases_text(text: str, aliases: Mapping[str, str] = PRICE_ALIASES) -> tuple[str, list[str]]:
    """The price-table text with one line appended per alias the table lacks, copying its model's entry.

    The entry is copied as written when it is a one-line `  model: {...}` (else as YAML flow text), so the table
    keeps its layout; the result is parsed again and must give the alias exactly its model's prices.
    Returns (text, aliases added).
    """
    doc = yaml.safe_load(text)
    table = parse_prices(doc, "price table")
    added = []
    for alias, model in aliases.items():
        if alias in table.models:
            continue
        if model not in table.models:
            raise BeastError(f"price alias {alias}: its model {model} is not in the price table")
        line = re.search(rf"^  {re.escape(model)}:[ \t]*(\{{[^#\n]*\}})[ \t]*(#.*)?$", text, flags=re.MULTILINE)
        value = (
            line.group(1).rstrip()
            if line
            else yaml.safe_dump(doc["models"][model], default_flow_style=True, width=10**6).strip()
        )
        width = line.start(1) - line.start() if line else 0
        entry = f"{'  ' + alias + ':':<{width}}" if len(alias) + 4 <= width else f"  {alias}: "
        text = (
            text + ("" if text.endswith("\n") else "\n") + f"{entry}{value}  # alias of {model} (beast import prices)\n"
        )
        added.append(alias)
    if added:
        try:
            new = parse_prices(yaml.safe_load(text), "price table with aliases")
        except (yaml.YAMLError, BeastError) as exc:
            raise BeastError(
                f"price aliases {', '.join(added)}: appending them broke the table (is `models:` the last section?): {exc}".replace(
                    "\n", " "
                )
            ) from None
        for alias in added:
            got = [(p.input, p.output, p.cached_input, p.effective_from) for p in new.prices if p.model == alias]
            want = [
                (p.input, p.output, p.cached_input, p.effective_from) for p in table.prices if p.model == aliases[alias]
            ]
            if got != want or new.prices[: len(table.prices)] != table.prices:
                raise BeastError(
                    f"price alias {alias}: appending it to the table did not copy {aliases[alias]}'s price (is `models:` the last section?)"
                )
    return text, added


def import_prices(src: Path, out: Path) -> ImportResult:
    """Validate the price table with the project's own loader, then copy it to out/prices.yaml, byte for byte
    plus one appended line per documented alias (PRICE_ALIASES) the source lacks."""
    table = load_prices(src)
    source = src.read_bytes()
    try:
        text, added = price_aliases_text(source.decode("utf-8"))
    except UnicodeDecodeError:
        raise BeastError(f"{src}: not UTF-8 text") from None
    data = text.encode("utf-8") if added else source
    target = out / "prices.yaml"
    same = target.is_file() and target.read_bytes() == data
    if not same:
        write_atomic(target, data)
    note = "unchanged" if same else "written"
    models = len(table.models) + len(added)
    notes = [f"{models} models; {target.name} {note}"]
    if added:
        notes.append("aliases added: " + ", ".join(f"{a} (price of {PRICE_ALIASES[a]})" for a in added))
    return ImportResult("prices", (target,), models, tuple(notes))


_IMPORTERS: dict[str, Callable[[Path, Path], ImportResult]] = {
    "alpaca-eval": import_alpaca_eval,
    "mooncake": import_mooncake,
    "azure": import_azure,
    "prices": import_prices,
    "routellm-mmlu": import_routellm_mmlu,
    "routellm-mt-bench": import_routellm_mt_bench,
}


def run_import(source: str, src: Path, out: Path) -> ImportResult:
    """Import one source: `src` is the raw folder or file, `out` the output folder (prices: its folder)."""
    if source not in _IMPORTERS:
        raise BeastError(f"unknown source {source!r}; known: {', '.join(SOURCES)}")
    return _IMPORTERS[source](Path(src), Path(out))
