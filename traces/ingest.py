"""Stage `ingest`: validate trace files against contract v1, quarantine bad rows, store the rest.

Invariant (checked on every run, tested): rows read = rows accepted + rows quarantined, per file and in total.
Accepted rows whose request_id is already stored with the same content are counted as `already_stored` and not
written again (however often the file repeats them), so re-ingesting a file adds nothing and quarantines nothing
new.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TextIO

import numpy as np
import pandas as pd
import pyarrow as pa

from core.config import Count, load_params, with_overrides
from core.errors import BeastError
from core.files import atomic_path, os_reason, write_atomic
from traces import store
from traces.contract import CONTRACT_VERSION, COST_UNKNOWN, STATUS_ERROR, STORE_SCHEMA, Reason
from traces.prices import PriceTable, compute_costs, load_prices
from traces.readers import KNOWN_SUFFIXES, Block, Reject, reader_for, trace_format
from traces.validate import check, row_hash


@dataclass(frozen=True)
class IngestParams:
    """Mirrors params.yaml -> ingest."""

    out: Path = Path("data/traces")
    quarantine: Path = Path("data/quarantine")
    prices: Path = Path("data/prices.yaml")
    metrics: Path | None = (
        None  # DVC metrics JSON (`IngestReport.metrics()`); set only by `beast ingest --metrics FILE` (dvc.yaml)
    )
    strict: bool = False
    block_rows: Count = 200_000


@dataclass(frozen=True)
class FileSummary:
    source: str
    rows: int
    accepted: int
    quarantined: int


@dataclass(frozen=True)
class IngestReport:
    ingest_id: str
    contract_version: str
    dataset: str
    files: tuple[FileSummary, ...]
    rows_read: int
    accepted: int
    stored: int
    already_stored: int
    quarantined: Mapping[str, int]
    models: Mapping[str, int]
    time_min: str | None
    time_max: str | None
    total_cost_usd: float
    cost_unknown_rows: int
    error_rate: float | None
    quarantine_file: str | None
    seconds: float
    written_files: tuple[str, ...] = field(default=())
    strict_failed: bool = False  # --strict and a row was quarantined: nothing was stored (stored == 0)

    @property
    def quarantined_total(self) -> int:
        return sum(self.quarantined.values())

    @property
    def rows_per_second(self) -> float | None:
        """None when no time was measured: a rate is never infinite."""
        return self.rows_read / self.seconds if self.seconds > 0 else None

    def summary_line(self) -> str:
        """One line for logs (the Prefect flow's ingest task): what was read, accepted, stored and quarantined."""
        stored = "nothing stored (--strict)" if self.strict_failed else f"{self.stored:,} new"
        return (
            f"ingest {self.ingest_id}: {self.rows_read:,} rows read from {len(self.files)} file(s), "
            f"{self.accepted:,} accepted ({stored}, {self.already_stored:,} already stored), "
            f"{self.quarantined_total:,} quarantined"
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self) | {"quarantined_total": self.quarantined_total}, indent=2)

    def metrics(self) -> dict[str, object]:
        """The numbers that depend only on the inputs (no ids, no timings): DVC metrics."""
        keys = (
            "rows_read",
            "accepted",
            "stored",
            "already_stored",
            "total_cost_usd",
            "cost_unknown_rows",
            "error_rate",
        )
        return {k: getattr(self, k) for k in keys} | {
            "quarantined_total": self.quarantined_total,
            "quarantined": dict(self.quarantined),
            "models": len(self.models),
        }


class StrictFailure(BeastError):
    """--strict and at least one row was quarantined: nothing was stored."""

    def __init__(self, report: IngestReport):
        self.report = report
        super().__init__(
            f"--strict: {report.quarantined_total} of {report.rows_read} rows broke the contract; nothing was stored "
            f"(see {report.quarantine_file})"
        )


Progress = Callable[[str], None]
log = logging.getLogger(__name__)


def _new_id() -> str:
    return f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def _checked_block(block: Block) -> tuple[pd.DataFrame, np.ndarray, list[Reject]]:
    """Validate one block: (good rows with hash and provenance, their positions, rejects incl. unparseable lines)."""
    checked = check(block.frame)
    bad = np.flatnonzero(checked.bad)
    rejects = list(block.rejects)
    if len(bad):
        raws = block.raw(bad)
        rejects += [
            Reject(block.source, int(block.rows[i]), checked.reason[i], checked.field[i], checked.detail[i], raw)
            for i, raw in zip(bad, raws, strict=True)
        ]
    keep = ~checked.bad
    good = checked.frame[keep].reset_index(drop=True)
    good["row_hash"] = row_hash(good)
    good["source_file"] = block.source
    good["source_row"] = block.rows[keep]
    return good, np.flatnonzero(keep), rejects


def _dedupe(frame: pd.DataFrame, seen: pd.Series, stored: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Masks (duplicate, already_stored, new) over `frame`; `seen`/`stored` map request_id -> row_hash. A row equal
    to its stored row is already stored however often the input repeats it, so re-ingesting a file is idempotent;
    an id stored with other content, or one repeating an earlier row of this ingest, is a duplicate."""
    ids = frame["request_id"]
    in_store = ids.isin(stored.index).to_numpy()
    same = np.zeros(len(frame), dtype=bool)
    if in_store.any():
        same[in_store] = stored.reindex(ids[in_store]).to_numpy() == frame["row_hash"].to_numpy()[in_store]
    already = in_store & same
    dup = ~already & (in_store | ids.duplicated(keep="first").to_numpy() | ids.isin(seen.index).to_numpy())
    return dup, already, ~dup & ~already


@dataclass(frozen=True)
class FileRows:
    """One file after validation: good rows (with `_block` / `_pos` to find their raw text), rejects, count."""

    frame: pd.DataFrame
    blocks: tuple[Block, ...]
    rejects: tuple[Reject, ...]
    rows: int


def _read_file(path: Path, params: IngestParams, progress: Progress, label: str) -> FileRows:
    frames, blocks, rejects = [], [], []
    rows = 0
    for b, block in enumerate(reader_for(path)(path, params.block_rows)):
        good, positions, bad = _checked_block(block)
        good["_block"], good["_pos"] = b, positions
        frames.append(good)
        blocks.append(block)
        rejects += bad
        rows += len(block.frame) + len(block.rejects)
        progress(f"{label}: {rows:,} rows read")  # quarantine counts come after dedupe, per file
    if not frames:  # an empty file: still a typed (empty) frame
        empty, _, _ = _checked_block(Block(str(path), pd.DataFrame(), np.array([], dtype=np.int64), lambda pos: []))
        frames.append(empty.assign(_block=0, _pos=0))
    return FileRows(pd.concat(frames, ignore_index=True), tuple(blocks), tuple(rejects), rows)


def _dup_rejects(read: FileRows, mask: np.ndarray, stored: pd.Series) -> list[Reject]:
    """Quarantine records for duplicate ids, with the raw text fetched block by block."""
    out = []
    dups = read.frame[mask]
    for b, group in dups.groupby("_block", sort=True):
        block = read.blocks[b]
        for (rid, row), raw in zip(
            group[["request_id", "source_row"]].itertuples(index=False),
            block.raw(group["_pos"].to_numpy()),
            strict=True,
        ):
            where = (
                "is stored with different content" if rid in stored.index else "repeats an earlier row of this ingest"
            )
            out.append(
                Reject(
                    block.source, int(row), Reason.DUPLICATE_ID.value, "request_id", f"request_id {rid!r} {where}", raw
                )
            )
    return out


def _summary_numbers(frame: pd.DataFrame) -> dict:
    if frame.empty:
        return {
            "models": {},
            "time_min": None,
            "time_max": None,
            "total_cost_usd": 0.0,
            "cost_unknown_rows": 0,
            "error_rate": None,
        }
    ts = frame["timestamp"]
    return {
        "models": {str(k): int(v) for k, v in frame["model"].value_counts().sort_index().items()},
        "time_min": ts.min().isoformat(),
        "time_max": ts.max().isoformat(),
        "total_cost_usd": round(float(np.nansum(frame["cost_usd"].to_numpy(dtype=float))), 6),
        "cost_unknown_rows": int((frame["cost_source"] == COST_UNKNOWN).sum()),
        "error_rate": round(float((frame["status"] == STATUS_ERROR).mean()), 6),
    }


def _write_quarantine(rejects: list[Reject], directory: Path, ingest_id: str) -> Path | None:
    directory.mkdir(parents=True, exist_ok=True)  # always there, so it is a stable output of the stage
    if not rejects:
        return None
    path = directory / f"{ingest_id}.jsonl"
    try:
        with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
            for r in rejects:
                fh.write(
                    json.dumps(asdict(r) | {"ingest_id": ingest_id}) + "\n"
                )  # ASCII: no Unicode line breaks inside a line
    except OSError as exc:
        raise BeastError(f"{path}: cannot write the quarantine file ({os_reason(exc)}); nothing was stored") from None
    return path


def check_inputs(paths: Sequence[Path]) -> tuple[Path, ...]:
    """The files to ingest, failing on a missing file, an unknown format or a folder without trace files before
    doing any work. A folder stands for its trace files (suffixes the readers know; hidden files and subfolders
    skipped, so a dataset or quarantine folder inside is never read), sorted by path."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if not p.name.startswith(".") and p.is_file() and trace_format(p))
            if not found:
                raise BeastError(f"{path}: no trace files in this folder ({KNOWN_SUFFIXES}; subfolders are not read)")
            files += found
            continue
        reader_for(path)
        if not path.is_file():
            raise BeastError(f"{path}: file not found")
        files.append(path)
    return tuple(files)


def ingest(
    paths: Sequence[Path],
    params: IngestParams,
    prices: PriceTable,
    ingest_id: str | None = None,
    progress: Progress = lambda _: None,
) -> IngestReport:
    """Read, validate, cost, dedupe and store `paths`; write the quarantine file; return the report."""
    started = time.perf_counter()
    ingest_id = ingest_id or _new_id()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", ingest_id):
        raise BeastError(f"ingest id {ingest_id!r}: use 1-64 letters, digits, '.', '_' or '-'")
    paths = check_inputs(paths)
    with store.locked(params.out):
        store.recover(params.out)  # an ingest killed before its commit is rolled back, so it can run again
        if store.has_ingest(params.out, ingest_id) or (params.quarantine / f"{ingest_id}.jsonl").exists():
            raise BeastError(f"{params.out}: ingest id {ingest_id!r} was used before; ids name files and must be new")
        stored_keys = store.stored_keys(params.out)
        stored = pd.Series(stored_keys["row_hash"].to_numpy(), index=stored_keys["request_id"].to_numpy())
        seen = pd.Series([], dtype="uint64")
        files, accepted_frames, new_frames, rejects = [], [], [], []
        for k, path in enumerate(paths, 1):
            label = f"[{k}/{len(paths)}] {path}"
            read = _read_file(path, params, progress, label)
            dup, already, new = _dedupe(read.frame, seen, stored)
            file_rejects = [*read.rejects, *_dup_rejects(read, dup, stored)]
            frame = read.frame[~dup].reset_index(drop=True)
            new = new[~dup]
            seen = pd.concat([seen, pd.Series(frame["row_hash"].to_numpy(), index=frame["request_id"].to_numpy())])
            frame["cost_usd"], frame["cost_source"] = compute_costs(
                prices,
                frame["model"],
                frame["timestamp"],
                frame["input_tokens"],
                frame["output_tokens"],
                frame["cached_input_tokens"],
                frame["cost_usd"],
            )
            accepted_frames.append(frame)
            new_frames.append(frame[new])
            rejects += file_rejects
            files.append(FileSummary(str(path), read.rows, len(frame), len(file_rejects)))
            if read.rows != len(frame) + len(file_rejects):  # the invariant: never lose a row silently
                raise AssertionError(
                    f"{path}: {read.rows} rows read but {len(frame)} accepted + {len(file_rejects)} quarantined"
                )
            progress(f"{label}: {read.rows:,} read, {len(frame):,} accepted, {len(file_rejects):,} quarantined")
        accepted = pd.concat(accepted_frames, ignore_index=True)
        order = {str(p): i for i, p in enumerate(paths)}
        rejects.sort(key=lambda r: (order[r.source], r.row))
        store.begin(params.out, ingest_id, [params.quarantine / f"{ingest_id}.jsonl"])
        try:
            quarantine_file = _write_quarantine(rejects, params.quarantine, ingest_id)
        except BeastError:  # disk full, read-only: nothing of this ingest was written, close its journal too
            store.recover(params.out)
            raise
        counts = Counter(r.reason for r in rejects)
        to_store = pd.concat(new_frames, ignore_index=True)
        report = IngestReport(
            ingest_id=ingest_id,
            contract_version=CONTRACT_VERSION,
            dataset=str(params.out),
            files=tuple(files),
            rows_read=sum(f.rows for f in files),
            accepted=len(accepted),
            stored=0 if (params.strict and rejects) else len(to_store),
            already_stored=len(accepted) - len(to_store),
            quarantined={k: counts[k] for k in sorted(counts)},
            quarantine_file=str(quarantine_file) if quarantine_file else None,
            seconds=0.0,
            strict_failed=bool(params.strict and rejects),
            **_summary_numbers(accepted),
        )
        if report.strict_failed:
            store.commit(params.out, ingest_id)  # strict: the quarantine file is the whole result
            report = replace(report, seconds=round(time.perf_counter() - started, 3))
            log.info(report.summary_line())
            raise StrictFailure(report)
        try:
            written = store.append(params.out, to_table(to_store, ingest_id), ingest_id)
        except BeastError:  # nothing was stored: the quarantine file of this ingest goes too
            if quarantine_file is not None:
                quarantine_file.unlink(missing_ok=True)
            store.commit(params.out, ingest_id)  # nothing of it is left to roll back
            raise
        store.commit(params.out, ingest_id)
    report = replace(report, seconds=round(time.perf_counter() - started, 3), written_files=tuple(map(str, written)))
    log.info(report.summary_line())
    return report


def to_table(frame: pd.DataFrame, ingest_id: str) -> pa.Table:
    """Accepted rows -> an Arrow table of STORE_SCHEMA (adds ingest_id and the date partition)."""
    frame = frame.copy()
    frame["ingest_id"] = ingest_id
    frame["timestamp"] = frame["timestamp"].dt.tz_convert(None)  # naive UTC: Arrow applies the schema's tz
    frame["date"] = np.datetime_as_string(frame["timestamp"].to_numpy().astype("datetime64[D]"), unit="D")
    frame["extra"] = frame["extra"].astype(object)
    return pa.Table.from_pandas(frame[STORE_SCHEMA.names], schema=STORE_SCHEMA, preserve_index=False)


def format_summary(report: IngestReport) -> str:
    """The table printed after an ingest."""
    stored = (
        f"0 stored: --strict and {report.quarantined_total:,} quarantined, nothing was written"
        if report.strict_failed
        else f"{report.stored:,} new, {report.already_stored:,} already stored"
    )
    rate = report.rows_per_second
    rows = [
        ("rows read", f"{report.rows_read:,}"),
        ("accepted", f"{report.accepted:,}  ({stored})"),
        ("quarantined", f"{report.quarantined_total:,}"),
    ]
    rows += [(f"  {reason}", f"{n:,}") for reason, n in report.quarantined.items()]
    top = sorted(report.models.items(), key=lambda kv: -kv[1])
    models = ", ".join(f"{m} ({n:,})" for m, n in top[:5]) + (f", +{len(top) - 5} more" if len(top) > 5 else "")
    rows += [
        ("models", f"{len(top)}: {models}" if top else "0"),
        ("time span", f"{report.time_min} .. {report.time_max}" if report.time_min else "-"),
        (
            "total cost",
            f"${report.total_cost_usd:,.4f}"
            + (f"  (+ {report.cost_unknown_rows:,} rows cost_unknown: no price)" if report.cost_unknown_rows else ""),
        ),
        ("error rate", f"{report.error_rate:.2%}" if report.error_rate is not None else "-"),
        ("dataset", report.dataset + ("  (unchanged)" if report.strict_failed else "")),
        ("quarantine", report.quarantine_file or "- (no bad rows)"),
        ("throughput", f"{rate:,.0f} rows/s ({report.seconds:.2f} s)" if rate is not None else "-"),
    ]
    width = max(len(k) for k, _ in rows)
    per_file = [
        f"  {f.source}: {f.rows:,} read, {f.accepted:,} accepted, {f.quarantined:,} quarantined" for f in report.files
    ]
    return "\n".join(
        [f"ingest {report.ingest_id} (trace contract v{report.contract_version})", *per_file, ""]
        + [f"{k:<{width}}  {v}" for k, v in rows]
    )


def progress_to(stream: TextIO) -> Progress:
    """Progress (file k of n, rows) on one rewritten line of a terminal; nothing when `stream` is piped or a file,
    so logs and CI output hold only the summary. An empty message clears the line."""
    if not stream.isatty():
        return lambda _: None

    def show(message: str) -> None:
        stream.write("\r\x1b[K" + message)
        stream.flush()

    return show


def main(
    paths: Sequence[Path],
    params_file: Path | None = None,
    overrides: Mapping[str, object] | None = None,
    ingest_id: str | None = None,
) -> IngestReport:
    """CLI / DVC edge: params `ingest` section (params.yaml when present), overridden by flags; writes the metrics
    JSON only when `metrics` is set (`--metrics FILE`: the dvc.yaml stage names its output)."""
    params = load_params(params_file, "ingest", IngestParams)
    params = with_overrides(params, **(overrides or {}))
    paths = check_inputs(paths)
    prices = load_prices(params.prices)
    progress = progress_to(sys.stderr)
    try:
        report = ingest(paths, params, prices, ingest_id=ingest_id, progress=progress)
    except StrictFailure as failure:
        print(format_summary(failure.report))
        raise
    finally:
        progress("")
    if params.metrics:
        write_atomic(params.metrics, (json.dumps(report.metrics(), indent=2) + "\n").encode())
    print(format_summary(report))
    return report
