"""Ingest benchmark: our full ingest vs a plain pyarrow read + Parquet write of the same file, one run.

The plain read/write is the physical floor (parse + encode, no validation, costing, dedupe or
quarantine), so the ratio says what the contract costs. Goal: >= 5M rows/min on 2 cores.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from traces.ingest import IngestParams, ingest
from traces.prices import load_prices
from traces.synth import SynthParams, synth_frame, write_trace

GOAL_ROWS_PER_MINUTE = 5_000_000
_PLAIN_READ = {"jsonl": pa_json.read_json, "csv": pa_csv.read_csv, "parquet": pq.read_table}


def plain_read_write(path: Path, fmt: str, out: Path) -> float:
    """Seconds for pyarrow to read `path` and write it as one Parquet file (the reference)."""
    started = time.perf_counter()
    pq.write_table(_PLAIN_READ[fmt](path), out, compression="zstd")
    return time.perf_counter() - started


def main(
    rows: int, fmt: str = "jsonl", seed: int = 0, prices_file: Path = Path("data/prices.yaml")
) -> dict[str, float]:
    prices = load_prices(prices_file)
    with tempfile.TemporaryDirectory(prefix="beast-bench-") as tmp:
        tmpdir = Path(tmp)
        src = tmpdir / f"traces.{fmt}"
        t0 = time.perf_counter()
        write_trace(synth_frame(SynthParams(rows=rows, seed=seed), prices), src)
        print(
            f"generated {rows:,} synthetic rows as {fmt} ({src.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t0:.1f} s"
        )
        plain = plain_read_write(src, fmt, tmpdir / "plain.parquet")
        params = IngestParams(out=tmpdir / "traces", quarantine=tmpdir / "quarantine", metrics=None)
        report = ingest([src], params, prices)
    ours = report.seconds
    result = {
        "rows": rows,
        "plain_rows_per_s": rows / plain,
        "ingest_rows_per_s": report.rows_read / ours,
        "ratio": plain / ours,
    }
    print(f"{'':<28}{'seconds':>9}{'rows/s':>13}{'rows/min':>14}")
    print(
        f"{'pyarrow read + write':<28}{plain:>9.2f}{result['plain_rows_per_s']:>13,.0f}{result['plain_rows_per_s'] * 60:>14,.0f}"
    )
    print(
        f"{'beast ingest (validated)':<28}{ours:>9.2f}{result['ingest_rows_per_s']:>13,.0f}{result['ingest_rows_per_s'] * 60:>14,.0f}"
    )
    verdict = "meets" if result["ingest_rows_per_s"] * 60 >= GOAL_ROWS_PER_MINUTE else "MISSES"
    print(f"ratio ingest / plain = {result['ratio']:.2f}  ({verdict} the goal of {GOAL_ROWS_PER_MINUTE:,} rows/min)")
    return result
