"""The trace dataset: Parquet partitioned by UTC date, written atomically, read through one function.

Layout: `<root>/date=YYYY-MM-DD/part-<ingest_id>-0.parquet`. Each file is written under a hidden temporary
name and renamed into place, so a reader never sees a half-written file; an exclusive lock on
`<root>/.lock` serialises writers (parallel ingests cannot store a request_id twice). An ingest's files
appear as one transaction (`begin` / `commit` / `recover`): a killed ingest is invisible and rolled back.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from core.errors import BeastError
from core.files import atomic_path, os_reason, write_atomic
from traces.contract import STORE_SCHEMA

# Rows per Parquet row group: the smallest unit a partitioned reader (Dask) can split a part file into.
ROW_GROUP_ROWS = 65_536
_PARTITIONING = ds.partitioning(pa.schema([("date", pa.string())]), flavor="hive")


@contextmanager
def locked(root: Path) -> Iterator[None]:
    """Hold the dataset's writer lock (blocking) for the duration of the block."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        fh = open(root / ".lock", "a+")  # noqa: SIM115 - closed by the `with fh:` below; opened apart so an open failure has its own message
    except OSError as exc:
        raise BeastError(
            f"{root}: cannot create the dataset directory or its lock file ({exc.strerror or exc})"
        ) from None
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
    files = part_files(root)
    if not files:
        return None
    return ds.dataset(
        [str(p) for p in files],
        format="parquet",
        partitioning=_PARTITIONING,
        partition_base_dir=str(root),
        schema=STORE_SCHEMA,
    )


def read_traces(root: Path, columns: list[str] | None = None, filter: ds.Expression | None = None) -> pd.DataFrame:
    """All stored traces (or some columns / a filter): the one way later stages read traces."""
    dataset = _dataset(root)
    if dataset is None:
        return arrow_to_pandas(STORE_SCHEMA.empty_table().select(columns or STORE_SCHEMA.names))
    return arrow_to_pandas(dataset.to_table(columns=columns, filter=filter))


@dataclass(frozen=True)
class Piece:
    """Some row groups of one committed part file: the unit a partitioned reader (Dask) reads in one go."""

    path: Path
    row_groups: tuple[int, ...]
    rows: int


def pieces(root: Path, max_rows: int) -> list[Piece]:
    """The committed dataset cut into pieces of at most about `max_rows` rows (consecutive row groups of a file;
    a single larger row group is a piece of its own). Reads only the files' footers."""
    out = []
    for path in part_files(root):
        meta = pq.ParquetFile(path).metadata
        groups: list[int] = []
        rows = 0
        for g in range(meta.num_row_groups):
            n = meta.row_group(g).num_rows
            if groups and rows + n > max_rows:
                out.append(Piece(path, tuple(groups), rows))
                groups, rows = [], 0
            groups.append(g)
            rows += n
        if groups:
            out.append(Piece(path, tuple(groups), rows))
    return out


def read_piece(piece: Piece, columns: Sequence[str]) -> pd.DataFrame:
    """`columns` of one piece with exactly the types `read_traces` gives (absent columns as typed nulls)."""
    table = pq.ParquetFile(piece.path).read_row_groups(
        list(piece.row_groups), columns=[c for c in columns if c != "date"]
    )
    date = piece.path.parent.name.removeprefix("date=")
    arrays = []
    for name in columns:
        field = STORE_SCHEMA.field(name) if name != "date" else pa.field("date", pa.string())
        if name == "date":
            arrays.append(pa.array([date] * table.num_rows, pa.string()))
        elif name in table.column_names:
            arrays.append(table.column(name).cast(field.type))
        else:
            arrays.append(pa.nulls(table.num_rows, field.type))
    return arrow_to_pandas(pa.table(arrays, names=list(columns)))


def stored_keys(root: Path) -> pd.DataFrame:
    """request_id -> row_hash of every stored row (what dedupe needs, nothing more)."""
    return read_traces(root, columns=["request_id", "row_hash"])


def has_ingest(root: Path, ingest_id: str) -> bool:
    """Whether this ingest id is stored and committed (ids name files, so they are never reused); the parts
    of an ingest that died before its commit do not count (`recover` removes them)."""
    return not _journal(root, ingest_id).exists() and any(root.glob(f"date=*/part-{ingest_id}-*.parquet"))


# An ingest is one transaction: before its first file appears a journal names the ingest id and the other
# files it will write (the quarantine file); the journal is removed once every part file is in place. A
# process killed in between leaves the journal: readers skip that id's parts, `has_ingest` says no, and the
# next writer (`recover`, under the lock) removes whatever the dead ingest wrote, so it can simply run again.


def _journal(root: Path, ingest_id: str) -> Path:
    return root / f".pending-{ingest_id}.json"


def pending_ids(root: Path) -> set[str]:
    """Ingest ids begun but not committed (their writer died, or is writing now under the lock)."""
    return {p.name[len(".pending-") : -len(".json")] for p in root.glob(".pending-*.json")} if root.exists() else set()


def begin(root: Path, ingest_id: str, files: Sequence[Path]) -> Path:
    """Open the ingest's transaction: the journal, durable before any file of the ingest appears."""
    return write_atomic(
        _journal(root, ingest_id),
        (json.dumps({"ingest_id": ingest_id, "files": [str(f) for f in files]}) + "\n").encode(),
    )


def commit(root: Path, ingest_id: str) -> None:
    """Close the transaction: every file is in place, the ingest counts from now on."""
    _journal(root, ingest_id).unlink()


def recover(root: Path) -> list[str]:
    """Roll back every uncommitted ingest (its part files and listed files removed, then its journal); the
    caller holds `locked(root)`. Returns the ids rolled back."""
    done = []
    for ingest_id in sorted(pending_ids(root)):
        journal = _journal(root, ingest_id)
        try:
            listed = [Path(f) for f in json.loads(journal.read_text(encoding="utf-8"))["files"]]
        except (OSError, ValueError, KeyError, TypeError):
            listed = []  # a journal is written atomically; unreadable means empty
        for path in [*root.glob(f"date=*/part-{ingest_id}-*.parquet"), *listed]:
            path.unlink(missing_ok=True)
        journal.unlink()
        done.append(ingest_id)
    return done


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
    """Write `table` (STORE_SCHEMA) as one part file per date; each appears by an atomic rename or not at all.
    If one cannot be written, the ones this call already stored are removed again (with the date folders it
    created): the dataset is left exactly as it was. The caller holds `locked(root)`."""
    written: list[Path] = []
    created: list[Path] = []
    try:
        for date, part in _by_date(table.select(STORE_SCHEMA.names)) if table.num_rows else ():
            target = root / f"date={date}" / f"part-{ingest_id}-0.parquet"
            if not target.parent.exists():
                created.append(target.parent)
            with atomic_path(target) as tmp:  # hidden while written: dataset discovery skips dot-files
                pq.write_table(part.drop_columns(["date"]), tmp, compression="zstd", row_group_size=ROW_GROUP_ROWS)
            written.append(target)
    except OSError as exc:
        for path in written:
            path.unlink(missing_ok=True)
        for folder in created:
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        where = exc.filename or root
        raise BeastError(f"{where}: cannot write the dataset {root} ({os_reason(exc)}); nothing was stored") from None
    return written


def part_files(root: Path) -> list[Path]:
    """Every committed part file, in path order (hidden staging files and the parts of an uncommitted ingest
    excluded)."""
    if not root.exists():
        return []
    pending = tuple(f"part-{i}-" for i in pending_ids(root))
    return sorted(
        p
        for p in root.glob("date=*/*.parquet")
        if not p.name.startswith(".") and not (pending and p.name.startswith(pending))
    )


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
                pq.write_table(table, tmp, compression="zstd", row_group_size=ROW_GROUP_ROWS)
                done.append(path)
    except OSError as exc:
        raise BeastError(
            f"{next(iter(tables)).parents[1]}: cannot rewrite the dataset ({exc.strerror or exc}); "
            "files are whole (old or new), run the same update again to finish it"
        ) from None
    return done
