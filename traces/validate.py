"""Vectorised validation of raw trace rows against contract v1 (pure: frames in, typed frames + reasons out).

A raw frame has one column per input field, of whatever dtype the reader produced: typed columns from
pyarrow on the fast path, `str` cells from CSV, mixed `object` cells from the per-line fallback. Each
field's converter handles all of these without a Python loop per row (object columns, seen only on the
fallback path of damaged input, use `Series.map(type)`), so JSON and CSV mean the same thing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from traces.contract import FIELDS, STATUS_ERROR, FieldSpec, Kind, Reason

_MIN_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
_MAX_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z
_INT_LIMIT = 2**53  # integers are exact below this in every representation (JSON numbers are doubles)
_TRUE = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
_INTS = (int, np.integer)
_NUMS = (int, float, np.integer, np.floating)
# Unicode control characters (C0, DEL, C1): never part of an id or a name (a NUL in a model name is a logger bug).
_CONTROL = r"[\x00-\x1f\x7f-\x9f]"
# RFC 3339 date-time (what serving/router.py accepts too): seconds required, fraction and offset optional (none = UTC).
# pandas' ISO 8601 parser alone also takes `2024-03-01`, `2024-03` or `20240301T0500`.
_RFC3339 = r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})?"


@dataclass(frozen=True)
class Converted:
    """One field converted: typed values plus per-row masks (all numpy bool arrays of the frame's length)."""

    values: pd.Series
    missing: np.ndarray
    invalid: np.ndarray  # present but unusable (reason given by `code`)
    code: np.ndarray  # object array of Reason per invalid row ("" elsewhere)
    expected: str  # what a valid value looks like, for the detail text


@dataclass(frozen=True)
class Checked:
    """A validated block: `frame` has every contract column (typed) plus `extra`, one row per input row."""

    frame: pd.DataFrame
    bad: np.ndarray  # bool per row
    reason: np.ndarray  # first Reason per bad row ("" for good rows)
    field: np.ndarray  # field of that first problem
    detail: np.ndarray  # every problem of the row, human-readable ("" for good rows)


def _codes(n: int, mask: np.ndarray, code: Reason) -> np.ndarray:
    out = np.full(n, "", dtype=object)
    out[mask] = code.value
    return out


def _is_obj(s: pd.Series) -> bool:
    return s.dtype == object


def _types(s: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For an object column: masks of (bool, number, str) cells."""
    kinds = s.map(
        lambda v: (
            0 if isinstance(v, (bool, np.bool_)) else 1 if isinstance(v, _NUMS) else 2 if isinstance(v, str) else 3
        )
    )
    k = kinds.to_numpy()
    return k == 0, k == 1, k == 2


def nulls(s: pd.Series) -> np.ndarray:
    """Null cells. In an object column (JSON read line by line, NaN-holding columns) only None / NA is null: a JSON
    `NaN` is a value that is not a number (bad_type), never read as absent (which would recompute a cost)."""
    if _is_obj(s):
        return s.map(lambda v: v is None or v is pd.NA).to_numpy(dtype=bool, copy=True)
    return s.isna().to_numpy(copy=True)


def _strip_empty(s: pd.Series) -> np.ndarray:
    """Missing for text: null, or empty after stripping (CSV writes absent as an empty cell)."""
    miss = nulls(s)
    if pd.api.types.is_string_dtype(s.dtype) and not _is_obj(s):
        miss |= (s.str.strip() == "").fillna(False).to_numpy(dtype=bool)
    return miss


def _as_number(s: pd.Series) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """(float values, missing, invalid) for any raw dtype; text numbers count, booleans do not."""
    n = len(s)
    missing = _strip_empty(s)
    if pd.api.types.is_bool_dtype(s.dtype):
        return pd.Series(np.full(n, np.nan)), missing, ~missing
    if pd.api.types.is_numeric_dtype(s.dtype):
        vals = pd.Series(s.to_numpy(dtype=float, na_value=np.nan))
        return vals, missing, ~missing & ~np.isfinite(vals.to_numpy())
    if _is_obj(s):
        is_bool, is_num, is_str = _types(s)
        missing |= is_str & (s.where(is_str, "x").astype(str).str.strip() == "").to_numpy()
        usable = (is_num | is_str) & ~missing
        try:
            vals = pd.to_numeric(s.where(usable), errors="coerce").astype(float)
        except OverflowError:  # an integer beyond float range (a 309+ digit JSON number): not finite, so invalid
            huge = s.where(usable).map(
                lambda v: (np.inf if v > 0 else -np.inf) if isinstance(v, int) and abs(v) > 1e308 else v
            )
            vals = pd.to_numeric(huge, errors="coerce").astype(float)
    elif not pd.api.types.is_string_dtype(s.dtype):  # timestamps, durations, ... (e.g. from Parquet): not a number
        return pd.Series(np.full(n, np.nan)), missing, ~missing
    else:
        vals = pd.to_numeric(s.str.strip(), errors="coerce").astype(float)
    vals = pd.Series(vals.to_numpy(dtype=float, na_value=np.nan))
    return vals, missing, ~missing & ~np.isfinite(vals.to_numpy())


def _range(spec: FieldSpec, vals: np.ndarray) -> np.ndarray:
    bad = np.zeros(len(vals), dtype=bool)
    with np.errstate(invalid="ignore"):
        if spec.minimum is not None:
            bad |= vals < spec.minimum
        if spec.maximum is not None:
            bad |= vals > spec.maximum
    return bad


def _expect(spec: FieldSpec) -> str:
    bounds = [
        f">= {spec.minimum:g}" if spec.minimum is not None else "",
        f"<= {spec.maximum:g}" if spec.maximum is not None else "",
    ]
    return " ".join([spec.kind.value] + [b for b in bounds if b])


def convert_number(spec: FieldSpec, s: pd.Series) -> Converted:
    vals, missing, invalid = _as_number(s)
    v = vals.to_numpy()
    if spec.kind is Kind.INT:
        with np.errstate(invalid="ignore"):
            invalid |= ~missing & (np.floor(v) != v)
    code = _codes(len(s), invalid, Reason.BAD_TYPE)
    oor = ~missing & ~invalid & _range(spec, v)
    if spec.kind is Kind.INT:
        with np.errstate(invalid="ignore"):
            oor |= ~missing & ~invalid & (np.abs(v) >= _INT_LIMIT)  # beyond exact integers: not a count
    code[oor] = Reason.OUT_OF_RANGE.value
    invalid = invalid | oor
    values = pd.Series(np.where(invalid | missing, np.nan, v))
    if spec.kind is Kind.INT:
        values = values.astype("Int64")
    return Converted(values, missing, invalid, code, _expect(spec))


def convert_text(spec: FieldSpec, s: pd.Series) -> Converted:
    """Text fields: strings as they are, integers as their decimal text; anything else is bad_type."""
    n = len(s)
    missing = _strip_empty(s)
    invalid = np.zeros(n, dtype=bool)
    if pd.api.types.is_integer_dtype(s.dtype):
        values = s.astype("str")
    elif _is_obj(s):
        is_bool, is_num, is_str = _types(s)
        is_int = is_num & s.map(lambda v: isinstance(v, _INTS)).to_numpy(dtype=bool)
        missing |= is_str & (s.where(is_str, "x").astype(str).str.strip() == "").to_numpy()
        invalid = ~missing & ~(is_str | is_int)
        values = s.where(is_str | is_int).map(str, na_action="ignore").astype("str")
    elif pd.api.types.is_string_dtype(s.dtype):
        values = s.astype("str")
    else:  # floats, booleans, timestamps: not text
        values = pd.Series(np.full(n, None, dtype=object), dtype="str")
        invalid = ~missing
    values = values.where(~(invalid | missing))
    if spec.kind is Kind.STR and not spec.free_text:
        ctrl = ~invalid & ~missing & values.str.contains(_CONTROL, regex=True).fillna(False).to_numpy(dtype=bool)
        code = _codes(n, invalid, Reason.BAD_TYPE)
        code[ctrl] = Reason.BAD_VALUE.value
        return Converted(values.where(~ctrl), missing, invalid | ctrl, code, "text without control characters")
    if spec.kind is Kind.ENUM:
        norm = values.str.strip().str.lower()
        off = ~invalid & ~missing & ~norm.isin(spec.choices).to_numpy(dtype=bool)
        code = _codes(n, invalid, Reason.BAD_TYPE)
        code[off] = Reason.BAD_VALUE.value
        return Converted(norm.where(~off), missing, invalid | off, code, "one of " + " / ".join(spec.choices))
    return Converted(values, missing, invalid, _codes(n, invalid, Reason.BAD_TYPE), "text")


def convert_bool(spec: FieldSpec, s: pd.Series) -> Converted:
    n = len(s)
    missing = _strip_empty(s)
    if pd.api.types.is_bool_dtype(s.dtype):
        vals = s.astype("boolean")
    elif pd.api.types.is_numeric_dtype(s.dtype):
        num = s.astype(float)
        vals = num.map({1.0: True, 0.0: False})
    else:
        text = s.map(lambda v: v if isinstance(v, (bool, np.bool_)) else str(v).strip().lower(), na_action="ignore")
        vals = text.map(lambda v: v if isinstance(v, (bool, np.bool_)) else _TRUE.get(v), na_action="ignore")
    vals = pd.Series(vals.to_numpy(dtype=object), dtype=object)
    invalid = ~missing & vals.isna().to_numpy()
    values = pd.Series(np.where(invalid | missing, None, vals.to_numpy()), dtype="boolean")
    return Converted(values, missing, invalid, _codes(n, invalid, Reason.BAD_TYPE), "true / false")


def convert_timestamp(spec: FieldSpec, s: pd.Series) -> Converted:
    """RFC 3339 text (offset honoured, none = UTC) or epoch milliseconds -> datetime64[ms, UTC]."""
    n = len(s)
    missing = _strip_empty(s)
    ms = np.full(n, np.nan)
    if isinstance(s.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(s.dtype):
        ts = s.dt.tz_localize("UTC") if s.dt.tz is None else s.dt.tz_convert("UTC")
        ms = ts.astype("datetime64[ms, UTC]").astype("int64").to_numpy(dtype=float, copy=True)
        ms[missing] = np.nan
        unparsed = np.zeros(n, dtype=bool)
    elif pd.api.types.is_bool_dtype(s.dtype) or not (
        _is_obj(s) or pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_string_dtype(s.dtype)
    ):
        unparsed = ~missing  # booleans, durations, ... (e.g. from Parquet): not a time
    elif pd.api.types.is_numeric_dtype(s.dtype):
        ms = s.to_numpy(dtype=float, na_value=np.nan)
        unparsed = ~missing & ~np.isfinite(ms)
    else:
        if _is_obj(s):
            is_bool, _, _ = _types(s)  # dates and numbers read through their text form
            text = s.where(~is_bool).map(str, na_action="ignore").astype("str")
            wrong = ~missing & is_bool
        else:
            text = s
            wrong = np.zeros(n, dtype=bool)
        text = text.str.strip()
        digits = text.str.fullmatch(r"-?\d+(\.\d+)?").fillna(False).to_numpy(dtype=bool)
        ms = np.where(
            digits, pd.to_numeric(text.where(digits), errors="coerce").to_numpy(dtype=float, na_value=np.nan), np.nan
        )
        iso = ~digits & ~missing & ~wrong & text.str.fullmatch(_RFC3339).fillna(False).to_numpy(dtype=bool)
        if iso.any():  # upper case: RFC 3339 allows `t` / `z`, pandas' parser does not
            parsed = pd.to_datetime(text.where(iso).str.upper(), utc=True, format="ISO8601", errors="coerce")
            pms = parsed.dt.as_unit("ms").astype("int64").to_numpy().astype(float)
            pms[parsed.isna().to_numpy()] = np.nan
            ms = np.where(iso, pms, ms)
        unparsed = ~missing & np.isnan(ms)
    code = _codes(n, unparsed, Reason.BAD_TIMESTAMP)
    with np.errstate(invalid="ignore"):
        oor = ~missing & ~unparsed & ((ms < _MIN_MS) | (ms >= _MAX_MS))
    code[oor] = Reason.OUT_OF_RANGE.value
    invalid = unparsed | oor
    good = np.where(invalid | missing, np.nan, ms)
    values = pd.Series(pd.to_datetime(good, unit="ms", utc=True)).astype("datetime64[ms, UTC]")
    return Converted(values, missing, invalid, code, "RFC 3339 text or epoch ms in [2000, 2100)")


INT_LIST_DTYPE = pd.ArrowDtype(pa.list_(pa.int64()))


def _int_list(v: object) -> list[int] | None:
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except ValueError:
            return None
    if isinstance(v, np.ndarray):
        v = v.tolist()
    if isinstance(v, (list, tuple)) and all(isinstance(x, _INTS) and not isinstance(x, bool) for x in v):
        return [int(x) for x in v]
    return None


def convert_int_list(spec: FieldSpec, s: pd.Series) -> Converted:
    """A list of integers: Arrow lists as they are (fast path); JSON arrays or their text (CSV) cell by cell."""
    n = len(s)
    if (
        isinstance(s.dtype, pd.ArrowDtype)
        and pa.types.is_list(s.dtype.pyarrow_dtype)
        and pa.types.is_integer(s.dtype.pyarrow_dtype.value_type)
    ):
        missing = s.isna().to_numpy(dtype=bool, na_value=True)
        none = np.zeros(n, dtype=bool)
        return Converted(s.astype(INT_LIST_DTYPE), missing, none, _codes(n, none, Reason.BAD_TYPE), "list of integers")
    cells = s.astype(object).to_numpy()
    nan_is_null = not _is_obj(s)  # an object column keeps a JSON NaN apart from null (see `nulls`)
    missing = np.array(
        [
            v is None
            or v is pd.NA
            or (nan_is_null and isinstance(v, float) and v != v)
            or (isinstance(v, str) and not v.strip())
            for v in cells
        ],
        dtype=bool,
    )
    lists = [None if m else _int_list(v) for v, m in zip(cells, missing, strict=True)]
    invalid = ~missing & np.array([x is None for x in lists], dtype=bool)
    values = pd.Series(pd.arrays.ArrowExtensionArray(pa.array(lists, type=pa.list_(pa.int64()))))
    return Converted(values, missing, invalid, _codes(n, invalid, Reason.BAD_TYPE), "list of integers")


_ABSENT_DTYPES = {
    Kind.STR: "str",
    Kind.ENUM: "str",
    Kind.INT: "Int64",
    Kind.FLOAT: "float64",
    Kind.BOOL: "boolean",
    Kind.TIMESTAMP: "datetime64[ms, UTC]",
    Kind.INT_LIST: INT_LIST_DTYPE,
}


def _absent(spec: FieldSpec, n: int) -> Converted:
    """A field no row of the block has: all missing, no conversion work."""
    none = np.zeros(n, dtype=bool)
    values = (
        pd.Series(pd.array([None] * n, dtype=_ABSENT_DTYPES[spec.kind]))
        if n
        else pd.Series([], dtype=_ABSENT_DTYPES[spec.kind])
    )
    return Converted(values, np.ones(n, dtype=bool), none, _codes(n, none, Reason.BAD_TYPE), "")


_CONVERTERS = {
    Kind.INT: convert_number,
    Kind.FLOAT: convert_number,
    Kind.STR: convert_text,
    Kind.ENUM: convert_text,
    Kind.BOOL: convert_bool,
    Kind.TIMESTAMP: convert_timestamp,
    Kind.INT_LIST: convert_int_list,
}


def extra_json(raw: pd.DataFrame) -> pd.Series:
    """Unknown fields of each row as one JSON object (null when the row has none): kept, never dropped."""
    known = {f.name for f in FIELDS}
    unknown = [c for c in raw.columns if c not in known]
    if not unknown:
        return pd.Series(np.full(len(raw), None, dtype=object))
    sub = raw[unknown].reset_index(drop=True)
    present = sub.notna().any(axis=1).to_numpy()
    try:
        text = sub.to_json(orient="records", lines=True, date_format="iso", default_handler=str)
    except UnicodeDecodeError:  # bytes that are not UTF-8 (a Parquet binary column): kept, escaped
        sub = sub.map(lambda v: v.decode("utf-8", "backslashreplace") if isinstance(v, bytes) else v)
        text = sub.to_json(orient="records", lines=True, date_format="iso", default_handler=str)
    lines = np.array(text.rstrip("\n").split("\n") if text else [], dtype=object)
    return pd.Series(np.where(present, lines, None), dtype=object)


def _fmt(value: object, nan: str = "nothing") -> str:
    """A raw cell for a detail text; `nan` is what a float NaN reads as (null in a typed column, NaN in an object one)."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and np.isnan(value):
        return nan
    if value is None or value is pd.NA:
        return "nothing"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check(raw: pd.DataFrame) -> Checked:
    """Validate a raw block: every contract field converted, every problem of every row found."""
    raw = raw.reset_index(drop=True)
    n = len(raw)
    frame: dict[str, pd.Series] = {}
    problems: list[tuple[str, np.ndarray, np.ndarray, str]] = []  # (field, mask, codes, expected)
    for spec in FIELDS:
        col = raw[spec.name] if spec.name in raw.columns else None
        if col is not None and isinstance(col.dtype, pd.ArrowDtype) and spec.kind is not Kind.INT_LIST:
            col = col.astype(object)  # a list / struct where a scalar belongs: judged cell by cell
        conv = _absent(spec, n) if col is None or nulls(col).all() else _CONVERTERS[spec.kind](spec, col)
        frame[spec.name] = conv.values
        problems.append((spec.name, conv.invalid, conv.code, conv.expected))
        if spec.required:
            problems.append((spec.name, conv.missing, _codes(n, conv.missing, Reason.MISSING_FIELD), "a value"))
    status = frame["status"].to_numpy(dtype=object)
    no_type = (status == STATUS_ERROR) & frame["error_type"].isna().to_numpy()
    problems.append(
        ("error_type", no_type, _codes(n, no_type, Reason.MISSING_FIELD), "an error type when status is error")
    )
    cached = frame["cached_input_tokens"].to_numpy(dtype=float, na_value=np.nan)
    inp = frame["input_tokens"].to_numpy(dtype=float, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        over = cached > inp
    problems.append(("cached_input_tokens", over, _codes(n, over, Reason.INCONSISTENT), "<= input_tokens"))
    frame["extra"] = extra_json(raw)
    out = pd.DataFrame(frame)

    masks = np.stack([p[1] for p in problems]) if n else np.zeros((len(problems), 0), dtype=bool)
    bad = masks.any(axis=0)
    first = masks.argmax(axis=0)
    reason = np.full(n, "", dtype=object)
    field = np.full(n, "", dtype=object)
    detail = np.full(n, "", dtype=object)
    for i in np.flatnonzero(bad):  # only bad rows: a small share of a healthy input
        reason[i] = problems[first[i]][2][i]
        field[i] = problems[first[i]][0]
        parts = []
        for name, mask, codes, expected in problems:
            if mask[i]:
                got = (
                    _fmt(raw.at[i, name], "NaN" if _is_obj(raw[name]) else "nothing")
                    if name in raw.columns
                    else "nothing"
                )
                parts.append(f"{name}: {codes[i]}: expected {expected}, got {got}")
        detail[i] = "; ".join(parts)
    return Checked(out, bad, reason, field, detail)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: spreads bits so that summing per-column hashes stays collision-resistant."""
    x = x.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x


def _ragged_hash(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per-row hash of variable-length rows (list items) from flat values + offsets."""
    lengths = np.diff(offsets)
    flat = values[offsets[0] : offsets[-1]].astype(np.uint64)
    if len(flat) == 0:
        return _mix64(lengths.astype(np.uint64))
    starts = offsets[:-1] - offsets[0]
    pos = np.arange(len(flat)) - np.repeat(starts, lengths)
    with np.errstate(over="ignore"):
        elem = _mix64(flat ^ _mix64(pos.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)))
        # per-row sums as differences of one running sum (mod 2^64): exact for empty rows anywhere; a
        # reduceat with clipped starts dropped the last item of a row followed only by empty rows
        total = np.concatenate([np.zeros(1, dtype=np.uint64), np.cumsum(elem, dtype=np.uint64)])
        sums = total[starts + lengths] - total[starts]
    return _mix64(sums ^ lengths.astype(np.uint64))


def _one_array(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def _column_hash(s: pd.Series) -> np.ndarray:
    """64-bit hash per cell of a canonical (validated) column; null cells are masked by the caller."""
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        return pd.util.hash_array(s.dt.tz_convert(None).to_numpy().view("int64"))
    if isinstance(s.dtype, pd.ArrowDtype):  # list<int64>
        arr = _one_array(pa.array(s.array)).fill_null([])
        return _ragged_hash(arr.values.to_numpy(zero_copy_only=False), arr.offsets.to_numpy().astype(np.int64))
    if pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype):
        return pd.util.hash_array(s.to_numpy(dtype=float, na_value=0.0))
    if s.dtype == object:  # `extra`: JSON text or None
        return pd.util.hash_array(s.fillna("").to_numpy(dtype=object))
    return pd.util.hash_pandas_object(s, index=False).to_numpy()


def row_hash(frame: pd.DataFrame) -> np.ndarray:
    """64-bit content hash of contract fields + extra. A null cell adds nothing, so rows read from JSONL,
    CSV or Parquet hash equal and an absent column costs no work; lists are hashed from their Arrow
    buffers (no Python per row)."""
    total = np.zeros(len(frame), dtype=np.uint64)
    for k, name in enumerate([f.name for f in FIELDS] + ["extra"]):
        s = frame[name]
        present = s.notna().to_numpy(dtype=bool, na_value=False)
        if present.any():
            with np.errstate(over="ignore"):
                salt = np.uint64((k + 1) * 0x9E3779B97F4A7C15 % 2**64)
                total += np.where(present, _mix64(_column_hash(s) ^ salt), np.uint64(0))
    return total
