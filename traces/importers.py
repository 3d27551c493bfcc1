"""Importers: turn the public raw data (AlpacaEval, Mooncake, Azure, prices) into contract-v1 trace files.

The frame functions are pure (raw records in, contract-v1 DataFrame out, columns in contract order, only
the fields the source has); the `import_*` functions do the I/O. Output files are deterministic: the same
input gives byte-identical files (fixed compression, gzip mtime 0, no wall-clock times), so a re-run of
`beast import` over unchanged data changes nothing in git. Conversion rules are documented in data/README.md.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from beast.errors import BeastError
from beast.files import gzip_bytes, read_bytes, write_atomic
from traces.contract import CONTRACT_VERSION, FIELD_BY_NAME, FIELDS, STATUS_OK
from traces.prices import load_prices

SOURCES = ("alpaca-eval", "mooncake", "azure", "prices")

# Relative to the repository root (the working directory of `uv run beast ...`).
DEFAULT_SRC: dict[str, Path] = {
    "alpaca-eval": Path("../shared/data/alpaca_eval"),
    "mooncake": Path("../shared/data/mooncake/conversation_trace.jsonl.gz"),
    "azure": Path("../shared/data/azure_llm"),
    "prices": Path("../shared/data/prices.yaml"),
}

PROJECT_PRICES = Path(__file__).resolve().parents[1] / "data" / "prices.yaml"

# Documented synthetic time bases: AlpacaEval has no times, Mooncake only offsets from the trace start.
ALPACA_EPOCH = pd.Timestamp("2024-01-01T00:00:00Z")
MOONCAKE_EPOCH = pd.Timestamp("2024-06-01T00:00:00Z")
ALPACA_REFERENCE = "gpt4_1106_preview"  # its file fixes the prompt order (and is the judge's reference answer)
CHARS_PER_TOKEN = 4
MOONCAKE_MODEL = "mooncake/conversation"
AZURE_SERVICES: dict[str, str] = {"conv": "conversation", "code": "code"}  # service -> task
AZURE_FILE = "AzureLLMInferenceTrace_{service}.csv"
ALPACA_SUFFIX = ".annotations.json.gz"

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
        raise BeastError(f"{where}: {int(bad.sum())} value(s) not integers >= 0 (first at row {first}: {values.iloc[first]!r})")
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
            raise BeastError(f"{where}: generator_2 is {df.loc[wrong, 'generator_2'].iloc[0]!r} in {int(wrong.sum())} row(s), expected {model!r}")
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
        raise BeastError(f"alpaca-eval {first['model']}: {int(stray.sum())} instruction(s) not in the {reference} file, e.g. {first['instruction'][:60]!r}")
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
    return _contract_order(out.astype({c: object for c in ("request_id", "model", "status", "prompt", "prompt_id", "task")}))


# ---------------------------------------------------------------------------------------------- Mooncake


def mooncake_frame(records: pd.DataFrame) -> pd.DataFrame:
    """One row per Mooncake trace line; times are offsets (ms), placed after the synthetic 2024-06-01 base.

    The trace names no model, so every row gets the placeholder `mooncake/conversation` (the source service).
    """
    _require_columns(records, ("timestamp", "input_length", "output_length", "hash_ids"), "mooncake")
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
    return _contract_order(out.astype({c: object for c in ("model", "status", "task")}))


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
        raise BeastError(f"{where}: {int(ts.isna().sum())} TIMESTAMP value(s) unreadable (first at row {first}: {raw['TIMESTAMP'].iloc[first]!r})")
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
    return _contract_order(out.astype({c: object for c in ("model", "status", "task")}))


# ---------------------------------------------------------------------------------------------- serialising


def parquet_bytes(df: pd.DataFrame) -> bytes:
    """Parquet with the contract's Arrow types, zstd, and only the contract version as metadata (no pandas
    metadata: it would tie the bytes to the index layout)."""
    schema = pa.schema([pa.field(c, FIELD_BY_NAME[c].arrow_type) for c in df.columns], metadata={"beast.trace_contract": CONTRACT_VERSION})
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
    paths = tuple(write_atomic(out / f"azure_{s}.csv.gz", gzip_bytes(csv_bytes(f), GZIP_LEVEL)) for s, f in frames.items())
    notes = tuple(f"{s}: {len(f)} rows, model placeholder azure/{s}" for s, f in frames.items())
    return ImportResult("azure", paths, sum(len(f) for f in frames.values()), notes)


def import_prices(src: Path, out: Path) -> ImportResult:
    """Validate the price table with the project's own loader, then copy it byte for byte to out/prices.yaml."""
    table = load_prices(src)
    data = src.read_bytes()
    target = out / "prices.yaml"
    same = target.is_file() and target.read_bytes() == data
    if not same:
        write_atomic(target, data)
    note = "unchanged" if same else "written"
    return ImportResult("prices", (target,), len(table.models), (f"{len(table.models)} models; {target.name} {note}",))


_IMPORTERS: dict[str, Callable[[Path, Path], ImportResult]] = {
    "alpaca-eval": import_alpaca_eval,
    "mooncake": import_mooncake,
    "azure": import_azure,
    "prices": import_prices,
}


def run_import(source: str, src: Path, out: Path) -> ImportResult:
    """Import one source: `src` is the raw folder or file, `out` the output folder (prices: its folder)."""
    if source not in _IMPORTERS:
        raise BeastError(f"unknown source {source!r}; known: {', '.join(SOURCES)}")
    return _IMPORTERS[source](Path(src), Path(out))
