"""Stage `features` on Dask: the stored trace dataset as a Dask DataFrame, feature functions per partition.

Partitions are pieces of the committed part files (`traces.store.pieces`), read with the same types as
`read_traces`, so a feature function written for a pandas frame (`models.cost.cost_features`, ...) runs
unchanged on each partition. Nothing here decides what a feature is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import pandas as pd

from core.errors import BeastError
from traces.store import pieces, read_piece


def stored_rows(root: Path) -> int:
    """Committed rows of a dataset folder, from the Parquet footers only (0 when there is none)."""
    return sum(p.rows for p in pieces(root, 1 << 62)) if root.is_dir() else 0


def read_dataset(root: Path, columns: Sequence[str], partition_rows: int):
    """`columns` of the committed dataset as a `dask.dataframe.DataFrame`, about `partition_rows` rows per partition."""
    import dask
    import dask.dataframe as dd

    # keep pandas' own string dtype: Dask would turn text into `string[pyarrow]` (pd.NA semantics), and the
    # feature functions must see exactly what they see in one process
    dask.config.set({"dataframe.convert-string": False})
    parts = pieces(root, partition_rows)
    if not parts:
        raise BeastError(f"{root}: no stored traces: run `beast ingest` first")
    meta = read_piece(parts[0], columns).iloc[:0]
    return dd.from_map(
        partial(read_piece, columns=tuple(columns)), parts, meta=meta, enforce_metadata=False, label="read-traces"
    )


def map_frames(ddf, fn: Callable[..., pd.DataFrame], *args: object):
    """`fn(partition, *args)` over every partition; the output's schema is `fn` of the first partition's empty
    head, so `fn` must accept zero rows (every feature function here does)."""
    meta = fn(ddf._meta, *args)
    return ddf.map_partitions(fn, *args, meta=meta, enforce_metadata=False)
