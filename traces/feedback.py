"""`beast traces feedback FILE`: join user ratings or judge scores to the stored traces as `quality` labels.

Input: a JSONL / CSV / Parquet file (`.gz` on the text formats) with columns `request_id`, `score` (in
[0, 1]), `source` (who labelled: `user`, `judge:gpt-4`, ...) and optionally `timestamp` (when it was
labelled: RFC 3339 or epoch ms). Other columns are ignored (and kept in the raw text of a quarantined row).

Where a label lives: `quality` (the contract field) holds the score; its provenance goes into the row's
`extra` JSON object (the contract has no provenance field): `quality_source`, `quality_labelled_at` (the
feedback's timestamp, or the time it was applied when it has none), `quality_feedback` (`file:row`),
and, when it replaced an earlier label, `quality_previous` ({quality, source, labelled_at}). `row_hash`
is not changed: it identifies the row as the router logged it, so re-ingesting the original log still
counts as `already_stored`.

Rules (each tested):

- **The newest label wins.** Within a file, feedback for the same request_id is decided by timestamp
  (equal or absent: the later row of the file); the others are quarantined as `duplicate_id`. Against
  the store, feedback older than the stored label's `quality_labelled_at` is quarantined as `stale`. So
  applying files in any order leaves the same labels.
- **Nothing is lost.** rows read = applied + quarantined; applied = changed + unchanged. A bad row goes
  to `<quarantine>/<feedback_id>.jsonl` with file, row, reason (`missing_field`, `bad_type`,
  `out_of_range` (score outside [0, 1]), `bad_timestamp`, `unknown_request_id`, `duplicate_id`,
  `stale`, or a reader reason such as `bad_json`), every problem in words, and the raw row.
- **Re-applying changes nothing.** A stored row that already has the same score from the same source is
  `unchanged` and its part file is not rewritten.
- **Atomic.** Under the dataset's writer lock, every part file holding a changed row is rewritten in
  full to a hidden temporary file, and only when all are written are they renamed into place (one atomic
  rename each; `traces.store.replace_parts`).

Dataset and quarantine folders come from params.yaml `ingest` (`out`, `quarantine`).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core.config import load_params
from core.errors import BeastError
from core.files import atomic_path
from traces import store
from traces.contract import FIELD_BY_NAME, FieldSpec, Kind, Reason
from traces.ingest import IngestParams
from traces.readers import Reject, reader_for
from traces.validate import convert_number, convert_text, convert_timestamp

COLUMNS = ("request_id", "score", "source", "timestamp")
_SPECS: dict[str, FieldSpec] = {
    "request_id": FIELD_BY_NAME["request_id"],
    "score": FieldSpec("score", Kind.FLOAT, True, "quality label", minimum=0, maximum=1),
    "source": FieldSpec("source", Kind.STR, True, "who labelled"),
    "timestamp": FieldSpec("timestamp", Kind.TIMESTAMP, False, "when it was labelled"),
}
_CONVERT = {"request_id": convert_text, "score": convert_number, "source": convert_text, "timestamp": convert_timestamp}


class FeedbackReason(StrEnum):
    """Reasons beyond the ingest's (`traces.contract.Reason`), which feedback reuses where they apply."""

    UNKNOWN_ID = "unknown_request_id"
    STALE = "stale"


@dataclass(frozen=True)
class Feedback:
    """Valid feedback rows (one per request_id, the newest) and everything rejected so far."""

    rows: pd.DataFrame  # request_id, score, source, labelled_at (datetime UTC), origin ("file:row"), source_row, raw
    rejects: tuple[Reject, ...]
    read: int


@dataclass(frozen=True)
class FeedbackReport:
    feedback_id: str
    file: str
    dataset: str
    rows_read: int
    applied: int
    changed: int
    unchanged: int
    quarantined: Mapping[str, int]
    quarantine_file: str | None
    sources: Mapping[str, int]  # applied rows per label source
    rewritten_files: tuple[str, ...] = field(default=())

    @property
    def quarantined_total(self) -> int:
        return sum(self.quarantined.values())

    def to_json(self) -> str:
        return json.dumps(asdict(self) | {"quarantined_total": self.quarantined_total}, indent=2)


def _new_id() -> str:
    return f"feedback-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def read_feedback(path: Path, applied_at: pd.Timestamp, block_rows: int = 200_000) -> Feedback:
    """Read and validate a feedback file; keep the newest row per request_id (pure but for the file read)."""
    frames, rejects, read = [], [], 0
    for block in reader_for(path)(path, block_rows):
        read += len(block.frame) + len(block.rejects)
        rejects += block.rejects
        raw = block.frame.reset_index(drop=True)
        n = len(raw)
        if n == 0:
            continue
        values, problems = {}, []
        for name in COLUMNS:
            spec = _SPECS[name]
            col = raw[name] if name in raw.columns else pd.Series([None] * n, dtype=object)
            if isinstance(col.dtype, pd.ArrowDtype):
                col = col.astype(object)
            conv = _CONVERT[name](spec, col)
            values[name] = conv.values.reset_index(drop=True)
            problems.append((name, conv.invalid, conv.code))
            if spec.required:
                problems.append((name, conv.missing, np.where(conv.missing, Reason.MISSING_FIELD.value, "")))
        masks = np.stack([m for _, m, _ in problems])
        bad = masks.any(axis=0)
        raws = block.raw(np.arange(n))
        for i in np.flatnonzero(bad):
            found = [(name, codes[i]) for name, mask, codes in problems if mask[i]]
            detail = "; ".join(
                f"{name}: {code}: got {raw.at[i, name] if name in raw.columns else 'nothing'!r}" for name, code in found
            )
            rejects.append(Reject(block.source, int(block.rows[i]), found[0][1], found[0][0], detail, raws[i]))
        keep = ~bad
        labelled = values["timestamp"].where(values["timestamp"].notna(), applied_at)
        frames.append(pd.DataFrame({
            "request_id": values["request_id"][keep].astype(str).to_numpy(),
            "score": values["score"][keep].to_numpy(dtype=float),
            "source": values["source"][keep].astype(str).to_numpy(),
            "labelled_at": pd.to_datetime(labelled[keep], utc=True).to_numpy(),
            "source_row": block.rows[keep],
            "raw": np.asarray(raws, dtype=object)[keep],
        }))  # fmt: skip
    rows = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame({c: [] for c in ("request_id", "score", "source", "labelled_at", "source_row", "raw")})
    )
    rows["labelled_at"] = pd.to_datetime(rows["labelled_at"], utc=True)
    rows = rows.sort_values(["request_id", "labelled_at", "source_row"], kind="stable")
    superseded = rows["request_id"].duplicated(keep="last").to_numpy()
    winners = rows[~superseded].set_index("request_id")["source_row"]
    for rid, row, raw in rows.loc[superseded, ["request_id", "source_row", "raw"]].itertuples(index=False):
        rejects.append(
            Reject(
                str(path),
                int(row),
                Reason.DUPLICATE_ID.value,
                "request_id",
                f"request_id {rid!r}: superseded by newer feedback at row {int(winners[rid])}",
                raw,
            )
        )
    rows = rows[~superseded].reset_index(drop=True)
    rows["origin"] = [f"{path}:{r}" for r in rows["source_row"]]
    return Feedback(rows, tuple(rejects), read)


def _extra(text: object) -> dict:
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return {}
    try:
        obj = json.loads(text)
    except (TypeError, ValueError):
        return {"extra": text}
    return obj if isinstance(obj, dict) else {"extra": obj}


def _iso(ts: pd.Timestamp) -> str:
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Decision:
    """What to do with one feedback row against its stored row."""

    action: str  # change | unchanged | stale
    quality: float
    extra: str | None
    detail: str = ""


def decide(fb: Mapping[str, object], stored_quality: float | None, stored_extra: str | None) -> Decision:
    """Pure: the newest-label-wins rule for one feedback row and the stored row it labels."""
    extra = _extra(stored_extra)
    source, score, labelled = str(fb["source"]), float(fb["score"]), pd.Timestamp(fb["labelled_at"])
    has_q = stored_quality is not None and not np.isnan(stored_quality)
    if has_q and stored_quality == score and extra.get("quality_source") == source:
        return Decision("unchanged", score, stored_extra)
    prev_at = extra.get("quality_labelled_at")
    if has_q and prev_at is not None and pd.Timestamp(prev_at) > labelled:
        return Decision(
            "stale",
            score,
            stored_extra,
            f"labelled {_iso(labelled)}, older than the stored label ({stored_quality:g} from {extra.get('quality_source')!r} at {prev_at})",
        )
    new = {k: v for k, v in extra.items() if k != "quality_previous"}
    if has_q:
        new["quality_previous"] = {
            "quality": stored_quality,
            "source": extra.get("quality_source"),
            "labelled_at": prev_at,
        }
    new |= {"quality_source": source, "quality_labelled_at": _iso(labelled), "quality_feedback": str(fb["origin"])}
    return Decision("change", score, json.dumps(new, separators=(",", ":"), ensure_ascii=False))


def _write_quarantine(rejects: list[Reject], directory: Path, feedback_id: str) -> Path | None:
    directory.mkdir(parents=True, exist_ok=True)
    if not rejects:
        return None
    path = directory / f"{feedback_id}.jsonl"
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for r in rejects:
            fh.write(json.dumps(asdict(r) | {"feedback_id": feedback_id}) + "\n")
    return path


def apply_feedback(
    path: Path, dataset: Path, quarantine: Path, feedback_id: str | None = None, now: pd.Timestamp | None = None
) -> FeedbackReport:
    """Validate `path`, join it to the stored traces and rewrite the part files whose labels change."""
    feedback_id = feedback_id or _new_id()
    now = now or pd.Timestamp.now(tz="UTC")
    reader_for(path)  # unknown format: one clear error before anything else
    if not path.is_file():
        raise BeastError(f"{path}: file not found")
    fb = read_feedback(path, now)
    rejects = list(fb.rejects)
    with store.locked(dataset):
        by_id = fb.rows.set_index("request_id", drop=False)
        wanted = pa.array(by_id.index.to_numpy(dtype=object), type=pa.string())
        found: set[str] = set()
        new_tables: dict[Path, pa.Table] = {}
        actions: Counter[str] = Counter()
        applied_sources: Counter[str] = Counter()
        for part in store.part_files(dataset):
            table = pq.read_table(part)
            hit = pc.is_in(table["request_id"], value_set=wanted).to_numpy(zero_copy_only=False)
            if not hit.any():
                continue
            ids = table["request_id"].to_numpy(zero_copy_only=False)
            quality = table["quality"].to_numpy(zero_copy_only=False).astype(float)
            extra = np.asarray(table["extra"].to_pylist(), dtype=object)
            changed = False
            for i in np.flatnonzero(hit):
                rid = ids[i]
                found.add(rid)
                row = by_id.loc[rid]
                d = decide(row, None if np.isnan(quality[i]) else float(quality[i]), extra[i])
                if d.action == "stale":
                    rejects.append(
                        Reject(
                            str(path),
                            int(row["source_row"]),
                            FeedbackReason.STALE.value,
                            "timestamp",
                            f"request_id {rid!r}: {d.detail}",
                            row["raw"],
                        )
                    )
                    continue
                actions[d.action] += 1
                applied_sources[str(row["source"])] += 1
                if d.action == "change":
                    quality[i], extra[i], changed = d.quality, d.extra, True
            if changed:
                q_idx, e_idx = table.schema.get_field_index("quality"), table.schema.get_field_index("extra")
                table = table.set_column(
                    q_idx, table.schema.field(q_idx), pa.array(quality, type=pa.float64(), from_pandas=True)
                )
                table = table.set_column(e_idx, table.schema.field(e_idx), pa.array(extra.tolist(), type=pa.string()))
                new_tables[part] = table
        for rid, row, raw in fb.rows.loc[
            ~fb.rows["request_id"].isin(found), ["request_id", "source_row", "raw"]
        ].itertuples(index=False):
            rejects.append(
                Reject(
                    str(path),
                    int(row),
                    FeedbackReason.UNKNOWN_ID.value,
                    "request_id",
                    f"request_id {rid!r} is not in the dataset {dataset}",
                    raw,
                )
            )
        rejects.sort(key=lambda r: r.row)
        quarantine_file = _write_quarantine(rejects, quarantine, feedback_id)
        written = store.replace_parts(new_tables) if new_tables else []
    applied = actions["change"] + actions["unchanged"]
    if fb.read != applied + len(rejects):  # the invariant: never lose a row silently
        raise AssertionError(f"{path}: {fb.read} rows read but {applied} applied + {len(rejects)} quarantined")
    counts = Counter(r.reason for r in rejects)
    return FeedbackReport(
        feedback_id=feedback_id, file=str(path), dataset=str(dataset), rows_read=fb.read, applied=applied,
        changed=actions["change"], unchanged=actions["unchanged"], quarantined={k: counts[k] for k in sorted(counts)},
        quarantine_file=str(quarantine_file) if quarantine_file else None, sources=dict(sorted(applied_sources.items())),
        rewritten_files=tuple(map(str, written)),
    )  # fmt: skip


def format_summary(report: FeedbackReport) -> str:
    rows = [
        ("rows read", f"{report.rows_read:,}"),
        ("applied", f"{report.applied:,}  ({report.changed:,} changed, {report.unchanged:,} unchanged)"),
        ("quarantined", f"{report.quarantined_total:,}"),
        *[(f"  {reason}", f"{n:,}") for reason, n in report.quarantined.items()],
        ("sources", ", ".join(f"{s} ({n:,})" for s, n in report.sources.items()) or "-"),
        ("dataset", f"{report.dataset} ({len(report.rewritten_files)} part file(s) rewritten)"),
        ("quarantine", report.quarantine_file or "- (no bad rows)"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join([f"feedback {report.feedback_id}: {report.file}", *[f"{k:<{width}}  {v}" for k, v in rows]])


def main(
    path: Path, params_file: Path | None = None, dataset: Path | None = None, quarantine: Path | None = None
) -> FeedbackReport:
    """CLI edge: dataset and quarantine folders from params `ingest` (or the flags); prints the summary."""
    params = load_params(params_file, "ingest", IngestParams)
    report = apply_feedback(path, dataset or params.out, quarantine or params.quarantine)
    print(format_summary(report))
    return report
