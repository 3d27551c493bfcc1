"""Read trace files (JSONL, CSV, Parquet; gzip on the text formats) into raw blocks for validation.

Fast path: pyarrow parses a whole block at once. Only a block that pyarrow refuses (a broken line, a
column whose type changes, a short CSV record) is re-read line by line, so that every row is either
in a block's frame or in its `rejects`, with its source row number and raw text: nothing is lost.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from core.errors import BeastError
from core.files import read_bytes
from traces.contract import Reason
from traces.store import arrow_to_pandas


@dataclass(frozen=True)
class Reject:
    """A row that is not stored, with everything needed to find, understand and replay it."""

    source: str
    row: int
    reason: str
    field: str
    detail: str
    raw: str


@dataclass(frozen=True)
class Block:
    """Raw rows of one file: `frame` (any dtypes) with their source row numbers, plus unparseable rows."""

    source: str
    frame: pd.DataFrame
    rows: np.ndarray
    raw: Callable[[np.ndarray], list[str]]  # raw text of the frame rows at these positions
    rejects: tuple[Reject, ...] = ()


def _frame(table: pa.Table) -> pd.DataFrame:
    """`arrow_to_pandas`, except that a float column holding NaN becomes object cells (NaN and None apart): pandas
    would read NaN as null, so a JSON `NaN` cost would be recomputed and a `NaN` quality label would vanish."""
    frame = arrow_to_pandas(table)
    for i, col in enumerate(table.columns):
        if pa.types.is_floating(col.type) and pc.any(pc.is_nan(col)).as_py():
            frame.isetitem(i, pd.Series(col.to_pylist(), dtype=object, index=frame.index))
    return frame


def _object_frame(records: list[dict]) -> pd.DataFrame:
    """Columns of Python values as they were (no int -> float upcast on missing values)."""
    keys = list(dict.fromkeys(k for r in records for k in r))
    return pd.DataFrame(
        {k: pd.Series([r.get(k) for r in records], dtype=object) for k in keys}, index=range(len(records))
    )


# ---------------------------------------------------------------- JSONL


def _line_bounds(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    buf = np.frombuffer(data, dtype=np.uint8)
    nl = np.flatnonzero(buf == 10)
    starts = np.concatenate(([0], nl + 1))
    ends = np.concatenate((nl, [len(data)]))
    return starts, ends


def _nonblank(data: bytes, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Indices of lines with content; only short lines need a look (whitespace-only ones are not rows)."""
    lengths = ends - starts
    keep = lengths > 0
    for i in np.flatnonzero(keep & (lengths <= 8)):
        keep[i] = bool(data[starts[i] : ends[i]].strip())
    return np.flatnonzero(keep)


# JSON nested deeper than this is a bad line (bad_json). pyarrow's parser overflows the C stack (the
# process dies) near 10,000 levels, Python's json raises RecursionError near 1,000, pandas' JSON writer
# (unknown fields -> `extra`) stops at 1,024. pyarrow never sees a line that might hold > _GUARD_OPENS
# opening brackets; a block it parsed whose schema nests deeper than MAX_DEPTH is re-read line by line.
MAX_DEPTH = 256
_GUARD_OPENS = 4096
_GUARD_WINDOW = 1 << 16
# pyarrow 25's JSON reader segfaults on a buffer whose first value is `null` (a file or block starting
# with a `null` line); such a block is read line by line instead.
_LEADING_NULL = re.compile(rb"(?:\xef\xbb\xbf)?\s*null")


def _may_nest_deep(data: bytes, lo: int, hi: int) -> bool:
    """Could a line of data[lo:hi] hold more than _GUARD_OPENS opening brackets? A sound over-estimate from
    per-window byte counts (memchr speed, no copy): a line's brackets are at most those of the windows it
    touches, and the windows inside a line have no newline."""
    run = 0  # brackets from the last window with a newline (inclusive) up to here
    for a in range(lo, hi, _GUARD_WINDOW):
        b = min(a + _GUARD_WINDOW, hi)
        opens = data.count(b"[", a, b) + data.count(b"{", a, b)
        if data.find(b"\n", a, b) >= 0:
            if run + opens > _GUARD_OPENS:
                return True
            run = opens
        else:
            run += opens
            if run > _GUARD_OPENS:
                return True
    return False


def _nesting(schema: pa.Schema) -> int:
    """Containers deep of the deepest row pyarrow parsed (the row object counts 1). Iterative."""
    deepest, stack = 1, [(f.type, 2) for f in schema]
    while stack:
        t, depth = stack.pop()
        if pa.types.is_nested(t):
            deepest = max(deepest, depth)
            stack.extend((t.field(i).type, depth + 1) for i in range(t.num_fields))
    return deepest


def _valid_utf8(table: pa.Table) -> bool:
    """pyarrow's JSON parser passes invalid UTF-8 inside strings through; Arrow's full validation finds it."""
    try:
        table.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def _too_deep(value: object) -> bool:
    """Does parsed JSON `value` nest more than MAX_DEPTH containers deep? Iterative: no recursion."""
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        children = v.values() if isinstance(v, dict) else v if isinstance(v, list) else None
        if children is None:
            continue
        if depth > MAX_DEPTH:
            return True
        stack.extend((c, depth + 1) for c in children)
    return False


def _parse_line(line: bytes) -> tuple[dict | None, Reason | None, str]:
    """One JSONL line. Decoded as UTF-8 here: `json.loads(bytes)` would guess UTF-16 / UTF-32 and accept them."""
    if line.startswith((b"\xff\xfe", b"\xfe\xff")):
        return None, Reason.BAD_ENCODING, "not UTF-8: UTF-16 or UTF-32 text (byte order mark)"
    if b"\x00" in line:  # never in UTF-8 JSON (a NUL in a string is written \\u0000): UTF-16 / UTF-32 text
        return None, Reason.BAD_ENCODING, f"not UTF-8: a NUL byte at byte {line.index(0)} (UTF-16 or UTF-32 text?)"
    try:
        value = json.loads(line.removeprefix(b"\xef\xbb\xbf").decode("utf-8"))
    except UnicodeDecodeError as exc:
        return None, Reason.BAD_ENCODING, f"not UTF-8: {exc.reason} at byte {exc.start}"
    except ValueError as exc:
        return None, Reason.BAD_JSON, f"not JSON: {exc}"
    except RecursionError:
        return None, Reason.BAD_JSON, f"JSON nested deeper than {MAX_DEPTH} levels"
    if not isinstance(value, dict):
        return None, Reason.NOT_AN_OBJECT, f"a JSON {type(value).__name__}, expected an object"
    if line.count(b"[") + line.count(b"{") > MAX_DEPTH and _too_deep(value):
        return None, Reason.BAD_JSON, f"JSON nested deeper than {MAX_DEPTH} levels"
    if (
        b"\\ud" in line or b"\\uD" in line or b"\xed" in line
    ):  # a \uD800-\uDFFF escape (json decodes bytes with surrogatepass)
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            return None, Reason.BAD_ENCODING, f"not Unicode: a lone surrogate escape ({exc.object[exc.start]!r})"
    return value, None, ""


def _parse_block(chunk: memoryview) -> pa.Table | None:
    """pyarrow's parse of a whole block, or None when it refuses (any damaged line or type change)."""
    buf = pa.py_buffer(chunk)

    def read(block_size: int, text: list[str]) -> pa.Table:
        return pa_json.read_json(
            pa.BufferReader(buf),
            read_options=pa_json.ReadOptions(block_size=block_size),
            parse_options=pa_json.ParseOptions(
                explicit_schema=pa.schema([(c, pa.string()) for c in text]) if text else None
            ),
        )

    # Small parse blocks keep both cores busy; a line longer than that needs one block for the whole chunk.
    for block_size in dict.fromkeys((min(1 << 21, len(buf) + 1), len(buf) + 1)):
        try:
            table = read(block_size, [])
            # pyarrow reads ISO-looking text as a time (`2024-03-01` and `2024-03-01T05` too, not RFC 3339; a
            # task "2024-03-01" would stop being text): such columns are read again as the text they are
            times = [f.name for f in table.schema if pa.types.is_timestamp(f.type)]
            return read(block_size, times) if times else table
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            continue
    return None


def read_jsonl(path: Path, block_rows: int) -> Iterator[Block]:
    """Blocks of about `block_rows` lines cut at newlines; line numbers come from counting newlines
    (memchr speed); exact line bounds are computed only for a block with blank or damaged lines."""
    data = read_bytes(path)
    source, view = str(path), memoryview(data)
    target = max(1, int(len(data) / max(data.count(b"\n"), 1) * block_rows))
    lo, first_line = 0, 0
    while lo < len(data):
        nl = data.find(b"\n", min(lo + target, len(data)) - 1)
        hi = len(data) if nl < 0 else nl + 1
        n_lines = data.count(b"\n", lo, hi) + (data[hi - 1] != 10)
        unsafe = _LEADING_NULL.match(data, lo, hi) is not None or _may_nest_deep(data, lo, hi)
        table = None if unsafe else _parse_block(view[lo:hi])
        if table is not None and (_nesting(table.schema) > MAX_DEPTH or not _valid_utf8(table)):
            table = None  # too deep or not UTF-8 somewhere: line by line, so only that line is quarantined
        yield _jsonl_block(source, data, lo, hi, first_line, n_lines, table)
        lo, first_line = hi, first_line + n_lines


def _jsonl_block(
    source: str, data: bytes, lo: int, hi: int, first_line: int, n_lines: int, table: pa.Table | None
) -> Block:
    bounds: list[tuple[np.ndarray, np.ndarray]] = []

    def lines() -> tuple[np.ndarray, np.ndarray]:  # absolute start / end of each line of the block
        if not bounds:
            starts, ends = _line_bounds(data[lo:hi])
            bounds.append((starts[:n_lines] + lo, ends[:n_lines] + lo))
        return bounds[0]

    def text(i: int) -> str:
        starts, ends = lines()
        return data[starts[i] : ends[i]].decode("utf-8", "backslashreplace").rstrip("\r")

    if table is not None and table.num_rows == n_lines:  # the common case: no blank or bad line
        kept = np.arange(n_lines)
        return Block(source, _frame(table), kept + first_line + 1, lambda pos: [text(kept[p]) for p in pos])
    starts, ends = lines()
    nonblank = _nonblank(data, starts, ends)
    if table is not None and table.num_rows == len(nonblank):  # blank lines only
        return Block(source, _frame(table), nonblank + first_line + 1, lambda pos: [text(nonblank[p]) for p in pos])
    records, kept_l, rejects = [], [], []
    for i in nonblank:  # a damaged block: line by line, so each bad line gets its own reason
        line = data[starts[i] : ends[i]]
        if not line.strip():  # a long whitespace-only line: blank, as pyarrow sees it
            continue
        value, reason, detail = _parse_line(line)
        if value is None:
            rejects.append(Reject(source, int(i) + first_line + 1, reason.value, "", detail, text(i)))
        else:
            records.append(value)
            kept_l.append(i)
    kept = np.asarray(kept_l, dtype=np.int64)
    return Block(
        source, _object_frame(records), kept + first_line + 1, lambda pos: [text(kept[p]) for p in pos], tuple(rejects)
    )


# ---------------------------------------------------------------- CSV


def _jsonable(value: object) -> object:
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value.item() if isinstance(value, np.generic) else value


def _cells_raw(frame: pd.DataFrame) -> Callable[[np.ndarray], list[str]]:
    """Raw text of CSV / Parquet rows: the cells as read (CSV cells are all text), absent ones left out."""

    objects = {
        c for c, d in frame.dtypes.items() if pd.api.types.is_object_dtype(d)
    }  # their NaN is a value (see `_frame`)

    def kept(k: str, v: object) -> bool:
        if k in objects:
            return v is not None and v is not pd.NA
        return isinstance(v, np.ndarray) or not pd.isna(v)

    def raw(pos: np.ndarray) -> list[str]:
        records = frame.iloc[pos].astype(object).to_dict("records")
        return [
            json.dumps({k: _jsonable(v) for k, v in r.items() if kept(k, v)}, ensure_ascii=False, default=str)
            for r in records
        ]

    return raw


@contextmanager
def _csv_field_limit(size: int, source: str, what: str) -> Iterator[None]:
    """Python's csv refuses fields over 128 KiB by default; a field can be as long as the text (a long
    prompt), which is in memory anyway. Any other csv.Error is one BeastError naming the file."""
    old = csv.field_size_limit()
    csv.field_size_limit(max(old, min(size + 1, 2**31 - 1)))
    try:
        yield
    except csv.Error as exc:
        raise BeastError(f"{source}: unreadable CSV {what}: {exc}") from None
    finally:
        csv.field_size_limit(old)


def _csv_slow(source: str, text: str, delimiter: str) -> tuple[pd.DataFrame, np.ndarray, list[Reject]]:
    """Python's csv module: knows each record's number, so short/long records are quarantined exactly."""
    with _csv_field_limit(len(text), source, "text"):
        return _csv_records(source, text, delimiter)


CSV_DELIMITERS = (",", ";", "\t")


def csv_delimiter(header_line: str) -> str:
    """The delimiter of a CSV file: of comma, semicolon and tab, the one that splits the header line into the most
    columns (a tie: the earlier). A semicolon file read with commas would be one column: every row missing_field."""
    counts = [len(next(csv.reader([header_line], delimiter=d), [])) for d in CSV_DELIMITERS]
    return CSV_DELIMITERS[counts.index(max(counts))]


def _check_header(source: str, header: list[str]) -> None:
    if len(set(header)) != len(header):
        dup = sorted({h for h in header if header.count(h) > 1})
        raise BeastError(
            f"{source}: CSV header repeats column(s) {', '.join(map(repr, dup)) if any(not h.isprintable() for h in dup) else ', '.join(dup)}"
        )


def _csv_records(source: str, text: str, delimiter: str) -> tuple[pd.DataFrame, np.ndarray, list[Reject]]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = next(reader, [])
    _check_header(source, header)  # the full header record (a quoted name may span lines)
    cells, numbers, rejects = [], [], []
    record = 0
    for fields in reader:
        if not fields:
            continue
        record += 1
        line = io.StringIO()
        if len(fields) != len(header):
            csv.writer(line, delimiter=delimiter, lineterminator="").writerow(fields)
            detail = f"{len(fields)} fields, header has {len(header)}"
            rejects.append(Reject(source, record, Reason.BAD_CSV_ROW.value, "", detail, line.getvalue()))
        elif any("\udc80" <= ch <= "\udcff" for f in fields for ch in f):
            csv.writer(line, delimiter=delimiter, lineterminator="").writerow(fields)
            raw = line.getvalue().encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            rejects.append(Reject(source, record, Reason.BAD_ENCODING.value, "", "not UTF-8", raw))
        else:
            cells.append([f if f != "" else None for f in fields])
            numbers.append(record)
    frame = pd.DataFrame(cells, columns=header, dtype="str") if cells else pd.DataFrame(columns=header, dtype="str")
    return frame, np.asarray(numbers, dtype=np.int64), rejects


def read_csv(path: Path, block_rows: int) -> Iterator[Block]:
    data = read_bytes(path)
    source = str(path)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    first = data.split(b"\n", 1)[0].decode("utf-8", "replace").rstrip("\r")
    with _csv_field_limit(len(first), source, "header"):
        delimiter = csv_delimiter(first)
        header = next(csv.reader([first], delimiter=delimiter), [])
    if not header:
        return
    _check_header(source, header)
    invalid = []
    # pyarrow decodes a short / long record to text before calling the handler; on bytes that are not UTF-8
    # that fails, is printed as "Exception ignored ..." and the read raises ArrowInvalid: the line-by-line
    # path below then quarantines the record (bad_csv_row / bad_encoding). Silence the print, keep the rest.
    hook, sys.unraisablehook = sys.unraisablehook, lambda _: None
    try:
        table = pa_csv.read_csv(
            io.BytesIO(data),
            parse_options=pa_csv.ParseOptions(
                delimiter=delimiter,
                newlines_in_values=True,
                invalid_row_handler=lambda row: invalid.append(row) or "skip",
            ),
            # only an empty cell is null, as on the line-by-line path (pyarrow's default also nulls NaN, NA, null...)
            convert_options=pa_csv.ConvertOptions(
                column_types={h: pa.string() for h in header}, strings_can_be_null=True, null_values=[""]
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        table = None
    finally:
        sys.unraisablehook = hook
    if table is not None:
        _check_header(source, table.column_names)  # the header as pyarrow read it (quoted newlines included)
    if table is not None and not invalid:
        frame, rows, rejects = arrow_to_pandas(table), np.arange(1, table.num_rows + 1), []
    else:
        frame, rows, rejects = _csv_slow(source, data.decode("utf-8", "surrogateescape"), delimiter)
    raw = _cells_raw(frame)
    for a in range(0, max(len(frame), 1), block_rows):
        sub = frame.iloc[a : a + block_rows].reset_index(drop=True)
        yield Block(
            source,
            sub,
            rows[a : a + block_rows],
            lambda pos, a=a: raw(np.asarray(pos) + a),
            tuple(rejects) if a == 0 else (),
        )


# ---------------------------------------------------------------- Parquet


def read_parquet(path: Path, block_rows: int) -> Iterator[Block]:
    source = str(path)
    try:
        pf = pq.ParquetFile(path)
    except FileNotFoundError:
        raise BeastError(f"{path}: file not found") from None
    except (pa.ArrowInvalid, OSError) as exc:
        raise BeastError(f"{path}: not a readable Parquet file ({exc})") from None
    done = 0
    try:
        for batch in pf.iter_batches(batch_size=block_rows):
            frame = _frame(pa.Table.from_batches([batch]))
            rows = np.arange(done + 1, done + len(frame) + 1)
            done += len(frame)
            yield Block(source, frame, rows, _cells_raw(frame))
    except (pa.ArrowInvalid, OSError) as exc:
        raise BeastError(f"{path}: Parquet data is damaged after row {done} ({exc})") from None


READERS: dict[str, Callable[[Path, int], Iterator[Block]]] = {
    ".jsonl": read_jsonl,
    ".ndjson": read_jsonl,
    ".csv": read_csv,
    ".parquet": read_parquet,
    ".pq": read_parquet,
}


def trace_format(path: Path) -> str | None:
    """The READERS key of a file name (`.jsonl.gz` -> `.jsonl`), or None when no reader knows it."""
    suffixes = path.suffixes[-2:] if path.suffix == ".gz" else path.suffixes[-1:]
    fmt = suffixes[0].lower() if suffixes else ""
    if fmt not in READERS or (path.suffix == ".gz" and READERS[fmt] is read_parquet):
        return None
    return fmt


KNOWN_SUFFIXES = ", ".join(sorted(READERS)) + " (+ .gz for text formats)"


def reader_for(path: Path) -> Callable[[Path, int], Iterator[Block]]:
    """Pick the reader by suffix (`.jsonl.gz` -> JSONL); an unknown suffix is an error naming the file."""
    fmt = trace_format(path)
    if fmt is None:
        suffixes = path.suffixes[-2:] if path.suffix == ".gz" else path.suffixes[-1:]
        raise BeastError(f"{path}: unknown trace format {''.join(suffixes) or '(no suffix)'}; known: {KNOWN_SUFFIXES}")
    return READERS[fmt]
