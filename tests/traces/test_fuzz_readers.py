"""Hostile input (issue 9): property-based fuzzing of every reader of the project.

Properties, for every reader: a rejection is the project's own error type (BeastError and its subclasses
BundleError / BudgetFileError; ValueError where the API documents it: `RouteRequest.from_dict`) and its
message names the file / field; no other exception type escapes (no traceback reaches the user). Trace
files (JSONL, CSV, Parquet, .gz) and feedback files are read losslessly: rows read = accepted + quarantined.
Seeds are fixed (derandomize) so CI sees the same examples on every run.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import http.client
import io
import json
import math
import os
import re
import shutil
import tarfile
import tempfile
import threading
from dataclasses import fields
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import ROOT, good_row
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.config import from_mapping, load_params
from core.errors import BeastError
from traces.contract import Reason
from traces.ingest import IngestParams, ingest

SETTINGS = settings(
    max_examples=40, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)  # fmt: skip
FEW = settings(SETTINGS, max_examples=20)
REASONS = {r.value for r in Reason}

# --------------------------------------------------------------------------- hostile building blocks

big_ints = st.sampled_from([2**63, -(2**63) - 1, 10**400, -(10**400)])
scalars = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | big_ints
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12)
    | st.sampled_from(["", " ", "1e400", "NaN", "-1", "2024-13-45", "9999-12-31T23:59:59-23:59", "0001-01-01", "\ud800", "a\x00b", "../x", "/abs"])
)  # fmt: skip
docs = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6) | st.integers(-3, 3), inner, max_size=4)
    ),
    max_leaves=12,
)
json_docs = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | big_ints
    | st.floats(allow_nan=False)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


def nested(depth: int, leaf: str = "1") -> str:
    """JSON text of `depth` nested containers, alternating arrays and objects."""
    opens = "".join("[" if i % 2 else '{"a":' for i in range(depth))
    closes = "".join("]" if i % 2 else "}" for i in reversed(range(depth)))
    return opens + leaf + closes


def json_depth(text: str) -> int:
    """Containers deep of JSON text (no brackets inside strings in the texts we build)."""
    deepest = depth = 0
    for ch in text:
        depth += ch in "[{"
        depth -= ch in "]}"
        deepest = max(deepest, depth)
    return deepest


def names(exc: BaseException, *words: str) -> bool:
    text = str(exc)
    return all(w in text for w in words)


def yaml_text(doc: object) -> str:
    import yaml

    return yaml.safe_dump(doc, allow_unicode=True)


# --------------------------------------------------------------------------- trace files: ingest


def _ingest(src: Path, tmp: Path, prices) -> tuple:
    params = IngestParams(out=tmp / "traces", quarantine=tmp / "q", metrics=None, block_rows=5)
    report = ingest([src], params, prices)
    rejects = (
        [json.loads(x) for x in Path(report.quarantine_file).read_text().splitlines()] if report.quarantine_file else []
    )
    return report, rejects


def _lossless(report, rejects) -> None:
    assert report.rows_read == report.accepted + report.quarantined_total
    assert len(rejects) == report.quarantined_total
    assert all(r["reason"] in REASONS and r["row"] >= 1 for r in rejects)


hostile_lines = st.one_of(
    st.builds(lambda i: json.dumps(good_row(i)), st.integers(0, 50)),
    st.builds(
        lambda i, d: json.dumps(good_row(i))[:-1] + f', "x": {nested(d)}}}', st.integers(0, 50), st.integers(1, 3000)
    ),
    st.builds(lambda d: nested(d), st.integers(1, 12000)),  # deep, not an object (pyarrow segfaulted past ~10k)
    st.builds(
        lambda i, n: json.dumps(good_row(i))[:-1] + f', "input_tokens": {"9" * n}}}',
        st.integers(0, 50),
        st.integers(18, 4400),
    ),
    st.builds(
        lambda i, v: json.dumps(good_row(i, **{"input_tokens": v})),
        st.integers(0, 50),
        st.sampled_from(["NaN", "Infinity", "-0", "1e999", [], {}]),
    ),
    st.builds(lambda i: json.dumps(good_row(i, prompt="\ud800 lone surrogate")), st.integers(0, 50)),
    st.builds(lambda i: json.dumps(good_row(i), ensure_ascii=False).replace("r", "\u2028", 1), st.integers(0, 50)),
    st.sampled_from(
        ["null", " null", "\ufeffnull", "null {}"]
    ),  # a first line `null` segfaulted pyarrow 25's JSON reader
    st.binary(max_size=40).map(lambda b: b.replace(b"\n", b" ").decode("latin-1")),
    st.text(max_size=30).map(lambda t: t.replace("\n", " ").replace("\r", " ")),
    json_docs.map(lambda d: json.dumps(d).replace("\n", " ")),
)


@SETTINGS
@given(lines=st.lists(hostile_lines, min_size=1, max_size=8), gz=st.booleans(), crlf=st.booleans())
def test_hostile_jsonl_is_lossless(lines: list[str], gz: bool, crlf: bool, prices) -> None:
    data = ("\r\n" if crlf else "\n").join(lines).encode("utf-8", "surrogatepass") + b"\n"
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / ("t.jsonl.gz" if gz else "t.jsonl")
        src.write_bytes(gzip.compress(data) if gz else data)
        report, rejects = _ingest(src, Path(tmp), prices)
    _lossless(report, rejects)
    assert report.rows_read == sum(1 for line in data.split(b"\n") if line.strip())


@settings(SETTINGS, max_examples=20)
@given(depth=st.integers(1, 12000), others=st.integers(0, 8))
def test_deep_json_is_quarantined_beyond_max_depth(depth: int, others: int, prices) -> None:
    """A row nesting deeper than MAX_DEPTH is bad_json (before the fix: RecursionError, a pandas ValueError,
    or a segfault inside pyarrow past ~10,000 levels); shallower is stored with the field kept in `extra`."""
    from traces.readers import MAX_DEPTH

    deep = json.dumps(good_row(99))[:-1] + f', "x": {nested(depth)}}}'
    lines = [json.dumps(good_row(i)) for i in range(others)] + [deep]
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "t.jsonl"
        src.write_text("\n".join(lines) + "\n")
        report, rejects = _ingest(src, Path(tmp), prices)
    _lossless(report, rejects)
    if 1 + depth > MAX_DEPTH:
        assert [(r["row"], r["reason"]) for r in rejects] == [(others + 1, "bad_json")]
        assert "nested deeper" in rejects[0]["detail"] or "not JSON" in rejects[0]["detail"]
    else:
        assert report.accepted == others + 1 and not rejects


def test_huge_jsonl_line_and_csv_field_are_read_whole(prices) -> None:
    """A 3 MB prompt: JSONL and CSV (Python's csv refused fields over 128 KiB: `_csv.Error`) store it."""
    prompt = "p" * 3_000_000
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        j = tmp / "t.jsonl"
        j.write_text(json.dumps(good_row(0, prompt=prompt)) + "\n" + json.dumps(good_row(1)) + "\n")
        c = tmp / "t.csv"
        with open(c, "w", newline="") as fh:
            w = csv.writer(fh)
            row = good_row(2, prompt=prompt)
            w.writerow(row)
            w.writerow(row.values())
            w.writerow(["r3", "short"])  # forces the line-by-line CSV path
        for src, sub in ((j, "j"), (c, "c")):
            report, rejects = _ingest(src, tmp / sub, prices)
            _lossless(report, rejects)
            from traces.store import read_traces

            stored = read_traces(tmp / sub / "traces")
            assert set(stored["prompt"].dropna().str.len()) == {3_000_000}
        assert [r["reason"] for r in rejects] == ["bad_csv_row"]


csv_cells = st.one_of(
    st.text(max_size=8),
    st.sampled_from(
        [
            '"',
            '""',
            'a"b',
            "a\nb",
            "a\r\nb",
            "\r",
            "\x00",
            "\ufeff",
            ",",
            "9" * 30,
            "NaN",
            "-1",
            "2024-03-01T00:00:00Z",
            "ok",
            "error",
        ]
    ),
)


@SETTINGS
@given(
    header=st.lists(
        st.sampled_from(
            [
                "request_id",
                "timestamp",
                "model",
                "input_tokens",
                "output_tokens",
                "status",
                "prompt",
                "x",
                "",
                '"q"',
                "a\nb",
            ]
        ),
        min_size=1,
        max_size=8,
    ),
    rows=st.lists(st.lists(csv_cells, min_size=0, max_size=9), max_size=12),
    bom=st.booleans(),
    gz=st.booleans(),
    raw_tail=st.binary(max_size=20),
)
def test_hostile_csv_is_lossless_or_one_error(
    header: list[str], rows: list[list[str]], bom: bool, gz: bool, raw_tail: bytes, prices
) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    data = (b"\xef\xbb\xbf" if bom else b"") + buf.getvalue().encode("utf-8") + raw_tail
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / ("t.csv.gz" if gz else "t.csv")
        src.write_bytes(gzip.compress(data) if gz else data)
        try:
            report, rejects = _ingest(src, Path(tmp), prices)
        except BeastError as exc:
            assert names(exc, str(src)) and "repeats column" in str(exc)
            assert len(set(header)) != len(header) or not header
            return
    _lossless(report, rejects)


# Parquet: any Arrow type where a contract field belongs
arrow_columns = st.sampled_from([
    lambda n: pa.array(range(n), pa.int64()),
    lambda n: pa.array([float("nan"), float("inf"), -1.5, 2.0**70] * n, pa.float64()).slice(0, n),
    lambda n: pa.array([str(i) for i in range(n)], pa.string()),
    lambda n: pa.array([str(i) for i in range(n)], pa.large_string()),
    lambda n: pa.array([None] * n, pa.null()),
    lambda n: pa.array([i % 2 == 0 for i in range(n)], pa.bool_()),
    lambda n: pa.array([b"\xff\xfe" for _ in range(n)], pa.binary()),
    lambda n: pa.array([dt.datetime(2024, 3, 1, tzinfo=dt.UTC)] * n, pa.timestamp("ms", tz="UTC")),
    lambda n: pa.array([dt.datetime(1677, 9, 22)] * n, pa.timestamp("ns")),
    lambda n: pa.array([dt.date(2024, 3, 1)] * n, pa.date32()),
    lambda n: pa.array([[i, None] for i in range(n)], pa.list_(pa.int64())),
    lambda n: pa.array([{"a": i} for i in range(n)], pa.struct([("a", pa.int64())])),
    lambda n: pa.array(["ok", "error", "OK", None] * n, pa.string()).slice(0, n).dictionary_encode(),
    lambda n: pa.array([1, 2, 3] * n, pa.decimal128(38, 3)).slice(0, n),
    lambda n: pa.array([2**64 - 1] * n, pa.uint64()),
    lambda n: pa.array([dt.timedelta(seconds=1)] * n, pa.duration("s")),
])  # fmt: skip


@SETTINGS
@given(
    n=st.integers(1, 12),
    overrides=st.dictionaries(
        st.sampled_from(
            [
                "request_id",
                "timestamp",
                "model",
                "input_tokens",
                "output_tokens",
                "status",
                "quality",
                "cache_hit",
                "prefix_blocks",
                "x",
            ]
        ),
        arrow_columns,
        max_size=4,
    ),
)
def test_parquet_with_any_column_types_is_lossless(n: int, overrides: dict, prices) -> None:
    table = pa.Table.from_pylist([good_row(i) for i in range(n)])
    for name, make in overrides.items():
        col = make(n)
        table = (
            table.set_column(table.schema.get_field_index(name), name, col)
            if name in table.schema.names
            else table.append_column(name, col)
        )
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "t.parquet"
        pq.write_table(table, src)
        report, rejects = _ingest(src, Path(tmp), prices)
    _lossless(report, rejects)
    assert report.rows_read == n


@SETTINGS
@given(
    data=st.binary(max_size=300), suffix=st.sampled_from([".parquet", ".jsonl.gz", ".csv.gz"]), cut=st.integers(1, 200)
)
def test_damaged_binary_trace_files_are_one_error_naming_the_file(data: bytes, suffix: str, cut: int, prices) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / f"t{suffix}"
        if suffix == ".parquet":
            sink = io.BytesIO()
            pq.write_table(pa.Table.from_pylist([good_row(i) for i in range(20)]), sink)
            whole = sink.getvalue()
            payload = (
                data if len(data) % 2 else whole[: max(len(whole) - cut, 0)] + data[:8]
            )  # random or truncated + junk
        else:
            whole = gzip.compress(b"\n".join(json.dumps(good_row(i)).encode() for i in range(20)))
            payload = data if len(data) % 2 else whole[: max(len(whole) - cut, 1)]
        src.write_bytes(payload)
        try:
            report, rejects = _ingest(src, Path(tmp), prices)
        except BeastError as exc:
            assert names(exc, str(src))
            return
    _lossless(report, rejects)  # a gzip of nothing, or junk that happens to decompress


# --------------------------------------------------------------------------- price tables, params, budgets

price_entries = st.dictionaries(
    st.sampled_from(["input", "output", "cached_input", "effective_from", "cache", 3]),
    scalars | st.dates() | st.datetimes() | docs,
    max_size=5,
)
price_docs = st.one_of(
    docs,
    st.builds(
        lambda m: {"models": m},
        st.dictionaries(
            st.text(max_size=6) | st.integers(),
            price_entries | st.lists(price_entries, max_size=3) | scalars,
            max_size=4,
        ),
    ),
)


@SETTINGS
@given(doc=price_docs)
def test_parse_prices_accepts_or_names_the_problem(doc: object) -> None:
    from traces.prices import PriceTable, parse_prices

    try:
        table = parse_prices(doc, "prices.yaml")
    except BeastError as exc:
        assert str(exc).startswith("prices.yaml: ")
        return
    assert isinstance(table, PriceTable) and table.prices
    for p in table.prices:
        assert all(math.isfinite(v) and v >= 0 for v in (p.input, p.output, p.cached_input))


yaml_files = st.one_of(
    st.binary(max_size=200),
    price_docs.map(lambda d: yaml_text(d).encode("utf-8", "surrogatepass")),
    st.integers(50, 1200).map(lambda n: ("models:\n  m: " + "[" * n + "]" * n + "\n").encode()),  # deep YAML
    st.just(b"a: &a [*a, *a]\n"),
    st.just(b"models: !!python/object:os.system {}\n"),
)


@FEW
@given(data=yaml_files)
def test_yaml_files_load_or_fail_naming_the_file(data: bytes) -> None:
    from traces.prices import load_prices

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "prices.yaml"
        path.write_bytes(data)
        try:
            load_prices(path)
        except BeastError as exc:
            assert names(exc, str(path))
        try:
            load_params(path, "ingest", IngestParams)
        except BeastError as exc:
            assert names(exc, str(path))


def _params_classes() -> list[type]:
    from abtest.gate import GateParams
    from features.build import FeatureParams
    from models.cost import CostParams
    from models.quality import QualityParams
    from models.train import TrainParams
    from models.tune import TuneParams
    from monitoring.budget import BudgetParams
    from monitoring.drift import MonitorParams

    return [
        IngestParams,
        GateParams,
        FeatureParams,
        BudgetParams,
        CostParams,
        QualityParams,
        TrainParams,
        TuneParams,
        MonitorParams,
    ]


@st.composite
def params_mappings(draw) -> tuple[type, object]:
    cls = draw(st.sampled_from(_params_classes()))
    keys = [f.name for f in fields(cls)] + ["unknown", 7]
    data = draw(st.one_of(docs, st.dictionaries(st.sampled_from(keys), docs, max_size=4)))
    return cls, data


@SETTINGS
@given(case=params_mappings())
def test_params_from_mapping_accepts_or_names_the_key(case: tuple[type, object]) -> None:
    cls, data = case
    try:
        params = from_mapping(cls, data, "params.yaml:section")
    except BeastError as exc:
        # from_mapping names where + key; a dataclass's own check (__post_init__) names its field
        assert "params.yaml:section" in str(exc) or any(f.name in str(exc) for f in fields(cls))
        return
    assert isinstance(params, cls)
    for f in fields(cls):  # every accepted field has its declared kind
        value = getattr(params, f.name)
        if f.type in ("Path", Path):
            assert isinstance(value, Path)
        if f.type in ("float", float):
            assert isinstance(value, float)
        if f.type in ("int", int):
            assert isinstance(value, int) and not isinstance(value, bool)


budget_entries = st.dictionaries(
    st.sampled_from(["name", "scope", "period", "usd", "alerts", "limit", 1]),
    scalars | st.lists(scalars, max_size=3) | st.sampled_from(["day", "week", "month"]),
    max_size=5,
)


@SETTINGS
@given(
    doc=st.one_of(
        docs,
        st.builds(
            lambda b, extra: {"budgets": b} | extra,
            st.lists(budget_entries | scalars, max_size=3),
            st.dictionaries(st.sampled_from(["prices", "x", 2]), docs, max_size=2),
        ),
    )
)
def test_parse_budgets_accepts_or_names_the_problem(doc: object) -> None:
    from monitoring.budget import BudgetConfig, parse_budgets

    try:
        cfg = parse_budgets(doc, "budgets.yaml")
    except BeastError as exc:
        assert str(exc).startswith("budgets.yaml: ")
        return
    assert isinstance(cfg, BudgetConfig)
    for b in cfg.budgets:
        assert b.period in ("day", "week", "month") and 0 < b.usd < math.inf and all(0 < a < math.inf for a in b.alerts)
        assert "/" not in b.name and not b.name.startswith(".")


# --------------------------------------------------------------------------- budget-state files

STATE = {"kind": "beast.budget-state", "version": "1", "scope": "t", "period_start": "2026-11-01T00:00:00Z",
         "period_end": "2026-12-01T00:00:00Z", "budget_usd": 5.0, "spent_usd": 1.0, "updated_at": "2026-11-26T09:00:00Z"}  # fmt: skip
state_files = st.one_of(
    st.binary(max_size=200),
    json_docs.map(lambda d: json.dumps(d).encode()),
    st.dictionaries(st.sampled_from(list(STATE)), scalars, max_size=4).map(
        lambda o: json.dumps(STATE | o).encode("utf-8", "surrogatepass")
    ),
    st.integers(100, 30000).map(lambda n: ("[" * n + "]" * n).encode()),  # deep, under 64 KiB: RecursionError before
    st.integers(4301, 6000).map(
        lambda n: json.dumps(STATE)[:-1].encode() + b', "x": ' + b"7" * n + b"}"
    ),  # int over 4300 digits: ValueError before
    st.sampled_from(
        [
            json.dumps(STATE | {"budget_usd": 10**400}).encode(),
            json.dumps(STATE).encode("utf-16"),
            b"\xef\xbb\xbf" + json.dumps(STATE).encode(),
        ]
    ),
)


@SETTINGS
@given(data=state_files)
def test_budget_state_file_reads_or_names_the_file(data: bytes) -> None:
    from serving.budget import BudgetFileError, read_state

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "a.budget-state.json"
        path.write_bytes(data)
        try:
            state = read_state(path)
        except BudgetFileError as exc:
            assert str(exc).startswith(str(path))
            return
    assert state.period_end > state.period_start and state.period_start.tzinfo is not None
    assert math.isfinite(state.budget_usd) and math.isfinite(state.spent_usd) and state.remaining_usd >= 0


def test_budget_state_reader_is_bounded() -> None:
    """read_state reads at most 64 KiB + 1 byte of any file (a huge file is refused, not loaded)."""
    from serving.budget import MAX_BYTES, BudgetFileError, read_state

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "huge.json"
        with open(path, "wb") as fh:
            fh.truncate(1 << 30)  # sparse 1 GiB
        with pytest.raises(BudgetFileError, match=f"larger than {MAX_BYTES} bytes"):
            read_state(path)


# --------------------------------------------------------------------------- bundles

SHA = "0" * 64
file_entries = st.one_of(
    st.fixed_dictionaries({"sha256": st.sampled_from([SHA, "x", 5]), "bytes": st.sampled_from([0, 1, True, "1", -1])}),
    scalars,
)
rel_paths = st.one_of(
    st.sampled_from(["feature_spec.json", "policy.json", "q.json", "models/q/k.txt", "models/q/k.json", "../x", "/etc/passwd", "a//b", "./a", "a\x00",
                     "C:x", "a\\b", "manifest.json", "signature.json", "a" * 300, "/".join(["d" * 200] * 30), "\udc80", "models"]),
    st.text(max_size=10),
)  # fmt: skip
predictor_entries = st.one_of(
    st.fixed_dictionaries(
        {
            "side": rel_paths | scalars,
            "files": st.dictionaries(
                st.text(max_size=3),
                st.dictionaries(st.sampled_from(["text", "json"]), rel_paths | scalars | st.lists(scalars, max_size=2)),
                max_size=2,
            )
            | scalars,
        }
    ),
    docs,
)
manifests = st.one_of(
    json_docs,
    st.fixed_dictionaries(
        {"kind": st.just("beast-bundle"), "schema_version": st.sampled_from(["1", 1, None]),
         "files": st.dictionaries(rel_paths, file_entries, max_size=5) | scalars,
         "predictors": st.dictionaries(st.sampled_from(["quality", "cost", "x"]), predictor_entries, max_size=2) | scalars,
         "candidates": json_docs, "policy": json_docs}
    ),
)  # fmt: skip


def inside(root: Path, rel: str) -> Path | None:
    """`root / rel` when it stays inside `root`; None for an absolute or escaping name ("/etc/passwd",
    "../x"): `root / "/etc/passwd"` IS /etc/passwd, and the tests run as root in CI."""
    try:
        path = (root / rel).resolve()
    except (OSError, ValueError):
        return None
    return path if path.is_relative_to(root.resolve()) else None


def _write_manifest(root: Path, manifest: object, files: dict[str, bytes]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "manifest.json").write_bytes(json.dumps(manifest).encode("utf-8", "surrogatepass"))
    for rel, data in files.items():
        if (p := inside(root, rel)) is None:
            continue  # listed in the manifest, never written outside the bundle
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        except (OSError, ValueError):
            pass  # a name the file system refuses: the manifest still lists it


def test_the_fuzz_writer_never_leaves_its_folder(tmp_path: Path) -> None:
    root = tmp_path / "b"
    root.mkdir()
    assert inside(root, "/etc/passwd") is None and inside(root, "../x") is None and inside(root, "a\x00") is None
    assert inside(root, "models/q/k.txt") == (root / "models/q/k.txt").resolve()


@SETTINGS
@given(
    manifest=manifests,
    present=st.lists(rel_paths, max_size=3),
    extra=st.sampled_from([None, b"[" * 5000 + b"]" * 5000, b"1" * 5000, b"\xff"]),
)
def test_verify_random_manifests(manifest: object, present: list[str], extra: bytes | None) -> None:
    from serving.bundle import BundleError, verify

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "b"
        _write_manifest(root, manifest, dict.fromkeys(present, b"x"))
        if extra is not None:
            (root / "manifest.json").write_bytes(extra)  # deep / 5000-digit / not UTF-8 manifest
        try:
            bundle = verify(root)
        except BundleError as exc:
            assert str(exc).startswith(str(root))
            return
        assert isinstance(bundle.manifest, dict) and all(
            isinstance(e.get("sha256"), str) for e in bundle.files.values()
        )


tar_members = st.lists(
    st.tuples(rel_paths, st.sampled_from([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE, tarfile.CHRTYPE]),
              st.binary(max_size=20), st.sampled_from(["", "../../x", "/etc/passwd", "manifest.json"])),
    max_size=6,
)  # fmt: skip


@SETTINGS
@given(members=tar_members, manifest=manifests, with_manifest=st.booleans(), cut=st.integers(0, 60))
def test_extract_random_archives(members: list, manifest: object, with_manifest: bool, cut: int) -> None:
    """Random members (unsafe names and types, links, duplicates) and random or truncated archives: a
    BundleError naming the archive, and nothing written outside the destination's temp folder."""
    from serving.bundle import BundleError, extract

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
            if with_manifest:
                body = json.dumps(manifest).encode("utf-8", "surrogatepass")
                info = tarfile.TarInfo("manifest.json")
                info.size = len(body)
                tar.addfile(info, io.BytesIO(body))
            for name, kind, data, link in members:
                info = tarfile.TarInfo(name)
                info.type, info.linkname = kind, link
                info.size = len(data) if kind == tarfile.REGTYPE else 0
                tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
        archive = tmp / "in" / "b.tar.gz"
        archive.parent.mkdir()
        archive.write_bytes(buf.getvalue()[: len(buf.getvalue()) - cut] if cut else buf.getvalue())
        out = tmp / "out"
        out.mkdir()
        try:
            extract(archive, out / "bundle")
        except BundleError as exc:
            assert str(exc).startswith(str(archive)) or str(exc).startswith(str(out / "bundle"))
            assert list(out.iterdir()) == []  # the temp folder is gone, nothing half-written
        assert sorted(p.name for p in tmp.iterdir()) == ["in", "out"] and os.listdir(archive.parent) == ["b.tar.gz"]


# --------------------------------------------------------------------------- route requests, HTTP, `beast route`

requests = st.one_of(
    st.dictionaries(st.sampled_from(["prompt", "task", "input_tokens", "timestamp", "request_id", "x"]), scalars | json_docs, max_size=5),
    st.fixed_dictionaries({}, optional={
        "prompt": st.text(max_size=30) | st.just("\ud800"), "task": st.text(max_size=5),
        "input_tokens": st.integers(-5, 2**64) | big_ints,
        "timestamp": st.sampled_from(["2025-01-01T12:00:00Z", "0000-01-01T00:00:00Z", "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+01:00", "2025-02-30T00:00:00Z", "2025-01-01 12:00:00z"]),
    }),
)  # fmt: skip


@SETTINGS
@given(d=requests)
def test_route_request_from_dict(d: dict) -> None:
    from serving.router import RouteRequest

    try:
        r = RouteRequest.from_dict(d)
    except ValueError as exc:
        assert str(exc).split(":")[0] in ("prompt", "task", "input_tokens", "timestamp")
        return
    assert r.prompt is None or isinstance(r.prompt, str)
    assert r.input_tokens is None or 0 <= r.input_tokens < 2**63
    assert r.timestamp is None or r.timestamp.utcoffset() == dt.timedelta(0)
    _StubRouter().route(r)  # the request's features compute (log1p, float64, hour, prompt features)


class _StubRouter:
    """The HTTP server's view of a Router, computing the request features the real one computes first."""

    models = ("a", "b")

    class policy:  # noqa: N801
        name = "stub"

    def route(self, request):
        from features.prompt import prompt_vector
        from serving.router import Decision, DecisionCode

        tokens = request.input_tokens if request.input_tokens is not None else math.ceil(len(request.prompt or "") / 4)
        when = request.timestamp or dt.datetime.now(dt.UTC)
        vec = np.concatenate([[math.log1p(tokens), float(when.astimezone(dt.UTC).hour)], prompt_vector(request.prompt)])
        usd = float(np.float64(tokens) * 1e-6)
        return Decision("a", float(np.isfinite(vec).mean()), usd, "stub", "stub", DecisionCode.OK)

    def route_many(self, requests):
        return [self.route(r) for r in requests]


@pytest.fixture(scope="module")
def http_server():
    from serving.http import make_server

    server = make_server(_StubRouter(), port=0)
    errors: list[str] = []
    server.handle_error = lambda request, address: errors.append("handler raised")  # a traceback would reach stderr
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, errors
    server.shutdown()
    server.server_close()


bodies = st.one_of(
    requests.map(lambda d: json.dumps(d).encode("utf-8", "surrogatepass")),
    st.lists(requests | json_docs, min_size=0, max_size=4).map(
        lambda items: json.dumps(items).encode("utf-8", "surrogatepass")
    ),
    json_docs.map(lambda d: json.dumps(d).encode()),
    st.binary(max_size=60),
    st.integers(100, 400_000).map(lambda n: b"[" * n + b"]" * n),  # deep: RecursionError in the handler before
    st.integers(100, 400_000).map(lambda n: b'{"prompt": ' + b"[" * n + b"]" * n + b"}"),
    st.just(b'{"input_tokens": ' + b"9" * 400 + b"}"),  # fits no float: OverflowError in routing before
)


@SETTINGS
@given(body=bodies)
def test_http_route_answers_every_body(body: bytes, http_server) -> None:
    server, errors = http_server
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    conn.request("POST", "/route", body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    answer = json.loads(resp.read())
    conn.close()
    assert not errors
    assert resp.status in (200, 400, 413)
    if resp.status != 200:
        assert isinstance(answer, dict) and isinstance(answer["error"], str) and answer["error"]
    elif isinstance(answer, list):
        assert all("model" in a or ("index" in a and "error" in a) for a in answer)


@FEW
@given(lines=st.lists(bodies.map(lambda b: b.replace(b"\n", b" ").decode("utf-8", "replace")), max_size=6))
def test_route_stream_answers_every_line(lines: list[str]) -> None:
    from serving.router import route_stream

    out = io.StringIO()
    bad = route_stream(_StubRouter(), lines, out)
    answers = [json.loads(x) for x in out.getvalue().splitlines()]
    assert len(answers) == sum(1 for line in lines if line.strip())
    assert bad == sum("error" in a for a in answers)


# --------------------------------------------------------------------------- feedback files


@pytest.fixture(scope="module")
def labelled_dataset(prices, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fb")
    src = tmp / "t.jsonl"
    src.write_text("".join(json.dumps(good_row(i)) + "\n" for i in range(6)))
    ingest([src], IngestParams(out=tmp / "traces", quarantine=tmp / "q", metrics=None), prices)
    return tmp / "traces"


feedback_rows = st.one_of(
    st.fixed_dictionaries({"request_id": st.sampled_from(["r0", "r1", "r5", "nope", 7, None]), "score": scalars, "source": scalars},
                          optional={"timestamp": scalars | st.integers(-(2**63), 2**63), "x": json_docs}),
    json_docs,
)  # fmt: skip


@FEW
@given(
    rows=st.lists(feedback_rows, max_size=10),
    fmt=st.sampled_from(["jsonl", "csv", "jsonl.gz"]),
    junk=st.lists(st.binary(max_size=20).map(lambda b: b.replace(b"\n", b"")), max_size=2),
)
def test_feedback_files_are_lossless(rows: list, fmt: str, junk: list[bytes], labelled_dataset: Path) -> None:
    from traces.feedback import apply_feedback

    with tempfile.TemporaryDirectory() as tmp:
        dataset = Path(tmp) / "traces"
        shutil.copytree(labelled_dataset, dataset)
        src = Path(tmp) / f"f.{fmt}"
        if fmt == "csv":
            buf = io.StringIO()
            w = csv.writer(buf)
            w.writerow(["request_id", "score", "source", "timestamp"])
            for r in rows:
                w.writerow(
                    [r.get(k, "") if isinstance(r, dict) else r for k in ("request_id", "score", "source", "timestamp")]
                )
            data = buf.getvalue().encode("utf-8", "surrogatepass")
        else:
            data = b"\n".join([json.dumps(r).encode("utf-8", "surrogatepass") for r in rows] + junk) + b"\n"
        src.write_bytes(gzip.compress(data) if fmt.endswith(".gz") else data)
        try:
            report = apply_feedback(src, dataset, Path(tmp) / "q")
        except BeastError as exc:
            assert names(exc, str(src))
            return
    assert (
        report.rows_read == report.applied + report.quarantined_total
        and report.applied == report.changed + report.unchanged
    )
    assert set(report.quarantined) <= REASONS | {"unknown_request_id", "stale"}


# --------------------------------------------------------------------------- the gate's experiment files


@FEW
@given(
    n=st.integers(0, 60),
    columns=st.dictionaries(
        st.sampled_from(["variant", "quality", "cost_usd", "status", "prompt_id", "latency_ms"]),
        st.lists(scalars, min_size=1, max_size=4), max_size=6),
    min_rows=st.integers(1, 20),
)  # fmt: skip
def test_gate_decides_on_any_experiment_frame(n: int, columns: dict, min_rows: int) -> None:
    """`decide` (the gate's pure core) never raises; without enough rows per arm it never promotes."""
    import pandas as pd

    from abtest.gate import GateCode, GateDecision, GateParams, decide

    frame = pd.DataFrame(
        {k: pd.Series([v[i % len(v)] for i in range(n)], dtype=object) for k, v in columns.items()}, index=range(n)
    )
    params = GateParams(min_rows_per_arm=min_rows, min_pairs=min_rows)
    decision = decide(frame, params)
    assert isinstance(decision, GateDecision) and json.loads(decision.to_json())
    arms = [(frame["variant"] == a).sum() if "variant" in frame else 0 for a in (params.champion, params.challenger)]
    if min(arms) < min_rows:
        assert not decision.promote and decision.reasons
    if decision.promote:
        assert decision.reasons == (GateCode.PROMOTE,)


@FEW
@given(lines=st.lists(hostile_lines, max_size=6))
def test_gate_experiment_file_reads_or_names_it(lines: list[str]) -> None:
    """The gate reads its experiment file with `traces.load.load_traces` (a throwaway ingest)."""
    from traces.load import load_traces

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "exp.jsonl"
        src.write_bytes("\n".join(lines).encode("utf-8", "surrogatepass"))
        try:
            frame = load_traces([src], ROOT / "data" / "prices.yaml")
        except BeastError as exc:
            assert names(exc, str(src))
            return
    assert len(frame) and frame["request_id"].is_unique


# --------------------------------------------------------------------------- `beast ingest`: what the user sees

CLI_CASES = {  # each was a crash (segfault or traceback) before issue 9's fixes
    "t.jsonl": b"null\n" + json.dumps(good_row(0)).encode() + b"\n",  # pyarrow 25 segfaulted on a leading null
    "deep.jsonl": json.dumps(good_row(9)).encode()
    + b"\n"
    + json.dumps(good_row(1)).encode()[:-1]
    + b', "x": '
    + nested(30000).encode()
    + b"}\n",  # segfault
    "big.jsonl": json.dumps(good_row(2, input_tokens=10**400)).encode()
    + b"\n"
    + json.dumps(good_row(3, input_tokens=1)).encode()
    + b"\n",  # OverflowError
    "long.csv": b"request_id,timestamp,model,input_tokens,output_tokens,status,prompt\n"
    + b"r4,2024-03-01T00:00:00Z,gpt-3.5-turbo-1106,1,1,ok,"
    + b"p" * 200_000
    + b"\nr5,short\n",  # _csv.Error
    "bad.jsonl.gz": b"\x1f\x8b\x08\x00 not gzip",  # one line: unreadable gzip
}


@pytest.mark.parametrize("name", sorted(CLI_CASES))
def test_beast_ingest_never_shows_a_traceback(name: str, tmp_path: Path, capsys) -> None:
    from beast.cli import main

    src = tmp_path / name
    src.write_bytes(CLI_CASES[name])
    (tmp_path / "params.yaml").write_text("ingest:\n  metrics: null\n")
    flags = [
        "--out",
        str(tmp_path / "traces"),
        "--quarantine",
        str(tmp_path / "q"),
        "--prices",
        str(ROOT / "data/prices.yaml"),
        "--params",
        str(tmp_path / "params.yaml"),
    ]
    code = main(["ingest", str(src), *flags])
    captured = capsys.readouterr()
    err = captured.err
    assert "Traceback" not in err and "Exception ignored" not in err
    if name.endswith(".gz"):
        assert code == 2 and f"{src}: unreadable gzip" in err
    else:
        assert code == 0
        rejects = [json.loads(x) for f in (tmp_path / "q").iterdir() for x in f.read_text().splitlines()]
        expected = {
            "t.jsonl": "not_an_object",
            "deep.jsonl": "bad_json",
            "big.jsonl": "bad_type",
            "long.csv": "bad_csv_row",
        }[name]
        assert [r["reason"] for r in rejects] == [expected]
        assert re.search(r"accepted +1 ", captured.out)  # the summary table: one good row stored


def test_a_gzip_bomb_stops_at_the_input_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """200 MB of zeros in a 200 KB .gz: with a 10 MB limit the reader stops after at most ~26 MB, naming the
    file and the limit; a file under the limit reads as before."""
    import gzip
    import resource

    from core.errors import BeastError
    from core.files import MAX_INPUT_ENV, read_bytes

    bomb = tmp_path / "bomb.jsonl.gz"
    with gzip.open(bomb, "wb", compresslevel=9) as fh:
        for _ in range(200):
            fh.write(b"\0" * 2**20)
    assert bomb.stat().st_size < 400_000
    monkeypatch.setenv(MAX_INPUT_ENV, str(10 * 2**20))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(
        BeastError, match=f"bomb.jsonl.gz: decompresses to more than 10,485,760 bytes \\({MAX_INPUT_ENV}\\)"
    ):
        read_bytes(bomb)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB: no 200 MB spike
    small = tmp_path / "ok.jsonl.gz"
    small.write_bytes(gzip.compress(b'{"a": 1}\n' * 1000))
    assert read_bytes(small) == b'{"a": 1}\n' * 1000
    plain = tmp_path / "big.jsonl"
    plain.write_bytes(b"x" * (10 * 2**20 + 1))
    with pytest.raises(BeastError, match="more than 10,485,760"):
        read_bytes(plain)
