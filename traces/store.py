"""The trace dataset: Parquet partitioned by UTC date, written atomically, read through one function.

Layout: `<root>/date=YYYY-MM-DD/part-<ingest_id>-0.parquet`. Each file is written under a hidden temporary
name and renamed into place, so a reader never sees a half-written file; an exclusive lock on
`<root>/.lock` serialises writers (parallel ingests cannot store a request_id twice).
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from beast.errors import BeastError
from beast.files import atomic_path
from traces.contract import STORE_SCHEMA

_PARTITIONING = ds.partitioning(pa.schema([("date", pa.string())]), flavor="hive")


@contextmanager
def locked(root: Path) -> Iterator[None]:
    """Hold the dataset's writer lock (blocking) for the duration of the block."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        fh = open(root / ".lock", "a+")
    except OSError as exc:
        raise BeastError(f"{root}: cannot create the dataset directory ({exc.strerror or exc})") from None
    with fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def arrow_to_pandas(table: pa.Table) -> pd.DataFrame:
    """Nullable ints and bools, so an id like 7 stays 7 (not 7.0) next to a missing value."""

    def mapper(t: pa.DataType) -> object:
        if pa.types.is_signed_integer(t):
            return pd.Int64Dtype()
        if pa.types.is_boolean(t):
            return pd.BooleanDtype()
        if pa.types.is_list(t) or pa.types.is_large_list(t):
            return pd.ArrowDtype(t)  # lists stay Arrow: no per-row numpy arrays
        return None

    return table.to_pandas(types_mapper=mapper)


def _dataset(root: Path) -> ds.Dataset | None:
    if not root.exists() or not any(root.glob("date=*/*.parquet")):
        return None
    return ds.dataset(root, format="parquet", partitioning=_PARTITIONING, schema=STORE_SCHEMA)


def read_traces(root: Path, columns: list[str] | None = None, filter: ds.Expression | None = None) -> pd.DataFrame:
    """All stored traces (or some columns / a filter): the one way later stages read traces."""
    dataset = _dataset(root)
    if dataset is None:
        return arrow_to_pandas(STORE_SCHEMA.empty_table().select(columns or STORE_SCHEMA.names))
    return arrow_to_pandas(dataset.to_table(columns=columns, filter=filter))


def stored_keys(root: Path) -> pd.DataFrame:
    """request_id -> row_hash of every stored row (what dedupe needs, nothing more)."""
    return read_traces(root, columns=["request_id", "row_hash"])


def has_ingest(root: Path, ingest_id: str) -> bool:
    """Whether any part file of this ingest id is stored (ids name files, so they are never reused)."""
    return any(root.glob(f"date=*/part-{ingest_id}-*.parquet"))


def _by_date(table: pa.Table) -> Iterator[tuple[str, pa.Table]]:
    """(date, rows of that date) slices; traces are usually time-ordered, so the sort is usually a no-op."""
    dates = table["date"]
    if pc.count_distinct(dates).as_py() == 1:
        yield dates[0].as_py(), table
        return
    table = table.take(pc.sort_indices(dates))
    offset = 0
    for item in pc.value_counts(table["date"]):
        n = item["counts"].as_py()
        yield item["values"].as_py(), table.slice(offset, n)
        offset += n


def append(root: Path, table: pa.Table, ingest_id: str) -> list[Path]:
    """Write `table` (STORE_SCHEMA) as one part file per date; each appears by an atomic rename or not at all."""
    written: list[Path] = []
    try:
        for date, part in _by_date(table.select(STORE_SCHEMA.names)) if table.num_rows else ():
            target = root / f"date={date}" / f"part-{ingest_id}-0.parquet"
            with atomic_path(target) as tmp:  # hidden while written: dataset discovery skips dot-files
                pq.write_table(part.drop_columns(["date"]), tmp, compression="zstd")
            written.append(target)
    except OSError as exc:
        raise BeastError(f"{root}: cannot write the dataset ({exc.strerror or exc}); {len(written)} part file(s) were stored") from None
    return written


def part_files(root: Path) -> list[Path]:
    """Every stored part file, in path order (hidden staging files of a write in progress excluded)."""
    return sorted(p for p in root.glob("date=*/*.parquet") if not p.name.startswith(".")) if root.exists() else []


def replace_parts(tables: Mapping[Path, pa.Table]) -> list[Path]:
    """Rewrite existing part files in place (same name, so ingest ids stay findable). Every new version is
    written to a hidden temporary sibling first; only when all are written are they renamed over the old
    ones, each rename atomic, so a reader sees each file whole (old or new) and a failed write changes
    nothing. The caller holds `locked(root)`; the rewrite must be idempotent (a crash between two renames
    is repaired by running it again)."""
    done: list[Path] = []
    try:
        with ExitStack() as stack:
            for path, table in tables.items():
                tmp = stack.enter_context(atomic_path(path))
                pq.write_table(table, tmp, compression="zstd")
                done.append(path)
    except OSError as exc:
        raise BeastError(f"{next(iter(tables)).parents[1]}: cannot rewrite the dataset ({exc.strerror or exc}); "
                         "files are whole (old or new), run the same update again to finish it") from None
    return done
