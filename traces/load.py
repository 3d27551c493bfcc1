"""Traces for any stage that reads them: stored dataset folders as they are, trace files through a throwaway
ingest (so every reader sees only contract-valid rows, whatever the file format). A public Mooncake trace as
downloaded (JSON lines of timestamp, input_length, output_length, hash_ids) is converted by the Mooncake importer
first, as `beast traces import mooncake` would, so a cache study reads it as given."""

from __future__ import annotations

import gzip
import json
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from core.errors import BeastError


def load_traces(
    paths: Sequence[Path], prices: Path, columns: list[str] | None = None, log: Callable[[str], None] | None = None
) -> pd.DataFrame:
    """Traces from dataset folders and trace files (validated and costed with the price table `prices`);
    only `columns` when given: a 1M-row dataset reads in a second without its prefix-block lists. `log` is told
    of each published Mooncake file converted on the way in."""
    from traces.ingest import IngestParams, ingest
    from traces.prices import load_prices
    from traces.store import read_traces

    for p in paths:
        if not p.exists():
            raise BeastError(f"{p}: file not found")
    folders, files = [p for p in paths if p.is_dir()], [p for p in paths if not p.is_dir()]
    frames = [read_traces(p, columns) for p in folders]
    rejected: dict[str, int] = {}
    if files:
        with tempfile.TemporaryDirectory(prefix="beast-traces-") as tmp:
            files = [
                _converted(p, Path(tmp) / f"{n}.jsonl", log) if is_raw_mooncake(p) else p for n, p in enumerate(files)
            ]
            ip = IngestParams(out=Path(tmp) / "traces", quarantine=Path(tmp) / "q", metrics=None, prices=prices)
            report = ingest(files, ip, load_prices(prices))
            rejected = {k: n for k, n in report.quarantined.items() if n}
            frames.append(read_traces(ip.out, columns))
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if frame.empty and rejected:
        reasons = ", ".join(f"{n:,} {reason}" for reason, n in sorted(rejected.items()))
        raise BeastError(
            f"no valid traces in {', '.join(map(str, paths))}: every row broke the trace contract ({reasons}); "
            "`beast ingest` on the file writes each rejected row with its reason to the quarantine"
        )
    if frame.empty:
        raise BeastError(f"no traces in {', '.join(map(str, paths))}: run `beast ingest` (or `make run`) first")
    return frame


_PEEK_BYTES = 1 << 20  # a raw trace line is a few KB; a longer first line is not one


def is_raw_mooncake(path: Path) -> bool:
    """Whether `path` is a Mooncake trace as published: its first non-blank line a JSON object with the four
    Mooncake fields and no contract field naming a model or prefix blocks (plain or gzipped JSON lines)."""
    from traces.importers import MOONCAKE_FIELDS

    if not path.name.endswith((".jsonl", ".jsonl.gz", ".json", ".json.gz")):
        return False
    try:
        with (gzip.open if path.name.endswith(".gz") else open)(path, "rb") as f:
            head = f.read(_PEEK_BYTES)
    except (OSError, EOFError):  # unreadable or a broken gzip: the ingest reports it
        return False
    line = next((x for x in head.splitlines() if x.strip()), b"")
    try:
        first = json.loads(line)
    except (ValueError, RecursionError):  # not JSON, or nested too deeply: not a Mooncake line, the ingest says why
        return False
    return (
        isinstance(first, dict)
        and first.keys() >= set(MOONCAKE_FIELDS)
        and not {"model", "prefix_blocks"} & first.keys()
    )


def _converted(path: Path, out: Path, log: Callable[[str], None] | None) -> Path:
    """The raw Mooncake trace at `path` as contract-v1 JSON lines in `out` (`traces.importers.mooncake_frame`)."""
    from traces.importers import jsonl_bytes, mooncake_frame, read_mooncake

    out.write_bytes(jsonl_bytes(mooncake_frame(read_mooncake(path))))
    if log is not None:
        log(f"{path}: a Mooncake trace as published (hash_ids), imported as `beast traces import mooncake` would")
    return out
