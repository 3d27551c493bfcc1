"""`beast report`: every number equals a direct pandas computation, panels that cannot be computed say why,
trace text is escaped, and the page renders with its plots in a real headless browser."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from monitoring.predictions import Skip, calibration_bins, comparable_rows, prediction_check
from monitoring.report import ReportParams, build, drift_window_hours, main
from monitoring.traffic import monitor_numbers, pick_bucket
from traces.prices import parse_prices

PRICES = parse_prices(
    {"models": {"big": {"input": 10.0, "output": 30.0}, "small": {"input": 0.1, "output": 0.2, "cached_input": 0.05}}},
    "test",
)
HOSTILE = "<script>alert('x')</script>"


def frame() -> pd.DataFrame:
    """12 requests over 3 hours: 2 priced models and one without a price, 3 failures, 2 tenants."""
    t0 = pd.Timestamp("2025-03-01T10:00:00Z")
    rows = [
        # minutes, model, in, out, status, error, latency, cached, quality, tenant
        (0, "big", 1000, 100, "ok", None, 900.0, 0, 0.9, "acme"),
        (5, "big", 2000, 50, "ok", None, 1100.0, 500, 0.7, "acme"),
        (20, "big", 10, 0, "error", "timeout", 30000.0, 0, None, "acme"),
        (61, "small", 400, 40, "ok", None, 200.0, 100, 0.5, "acme"),
        (62, "small", 400, 40, "ok", None, 250.0, 0, None, HOSTILE),
        (70, "small", 300, 0, "error", "rate_limit", 5.0, 0, None, HOSTILE),
        (95, "small", 100, 10, "ok", None, 180.0, 0, 0.3, None),
        (130, "mystery", 100, 10, "ok", None, 700.0, 50, None, "acme"),
        (140, "mystery", 100, 0, "error", "timeout", 10000.0, 0, None, "acme"),
        (150, "big", 500, 500, "ok", None, 2000.0, 0, 1.0, HOSTILE),
        (170, "small", 50, 5, "ok", None, None, 0, None, "acme"),
        (179, "big", 300, 30, "ok", None, 1500.0, 300, None, "acme"),
    ]
    cols = [
        "minutes",
        "model",
        "input_tokens",
        "output_tokens",
        "status",
        "error_type",
        "latency_ms",
        "cached_input_tokens",
        "quality",
        "tenant",
    ]
    d = pd.DataFrame(rows, columns=cols)
    d["timestamp"] = t0 + pd.to_timedelta(d.pop("minutes"), unit="min")
    d["request_id"] = [f"r{i}" for i in range(len(d))]
    return d


def test_bucket_choice() -> None:
    assert pick_bucket(3 * 3600, 200) == ("1min", 60)
    assert pick_bucket(3 * 3600, 100) == ("5min", 300)
    assert pick_bucket(30 * 86400, 200) == ("6h", 21600)
    assert pick_bucket(1e9, 10) == ("1D", 86400)


def test_numbers_equal_direct_pandas() -> None:
    d = frame()
    n = monitor_numbers(d, PRICES, max_buckets=10)  # 3 h / 10 -> 30-min buckets do not exist: 1h
    err = d["status"] == "error"

    o = n.overview
    assert (o.requests, o.failures, o.error_rate) == (12, 3, 0.25)
    assert o.span_hours == pytest.approx(179 / 60)
    assert o.input_tokens == d["input_tokens"].sum() and o.cached_input_tokens == 950
    assert o.labelled_requests == 5 and o.mean_quality == pytest.approx(d["quality"].mean())

    # timeline: hour buckets, requests and failures per bucket
    assert n.timeline.bucket == "1h"
    assert n.timeline.requests == (3, 4, 5) and n.timeline.failures == (1, 1, 1)
    assert o.peak_rps == pytest.approx(5 / 3600)

    # error rates per model and tenant, and error types as a share of the failures
    by_model = {r.key: (r.requests, r.failures) for r in n.errors_by_model}
    assert by_model == {
        m: (int((d["model"] == m).sum()), int((err & (d["model"] == m)).sum())) for m in d["model"].unique()
    }
    assert {r.key: r.error_rate for r in n.errors_by_tenant} == pytest.approx(
        {"acme": 2 / 8, HOSTILE: 1 / 3, "(none)": 0.0}
    )
    assert [(r.key, r.failures, r.error_rate) for r in n.errors_by_type] == [
        ("timeout", 2, pytest.approx(2 / 3)),
        ("rate_limit", 1, pytest.approx(1 / 3)),
    ]

    # latency: successful requests with a latency only
    for lat in n.latency:
        x = d.loc[~err & (d["model"] == lat.model), "latency_ms"].dropna().to_numpy()
        assert lat.requests == len(x)
        assert (lat.p50_ms, lat.p95_ms, lat.p99_ms) == pytest.approx(tuple(np.percentile(x, [50, 95, 99])))

    # cost: price table, cached tokens at the cached price ("big" has none: full input price), mystery unknown
    def usd(r) -> float:
        p = PRICES.current(r.model)
        return (
            (r.input_tokens - r.cached_input_tokens) * p.input
            + r.cached_input_tokens * p.cached_input
            + r.output_tokens * p.output
        ) / 1e6

    priced = d[d["model"] != "mystery"]
    assert n.ledger.cost_usd == pytest.approx(sum(usd(r) for r in priced.itertuples()))
    assert n.ledger.unknown_requests == 2 and n.ledger.unknown_by_model() == {"mystery": 2}
    by_tenant = n.ledger.by("tenant")
    assert by_tenant["acme"].cost_usd == pytest.approx(
        sum(usd(r) for r in priced[priced["tenant"] == "acme"].itertuples())
    )

    # savings: only "small" has a cached discount: 100 tokens x (0.1 - 0.05) / 1e6; "mystery" has no price
    assert [(s.key, s.cached_input_tokens) for s in n.savings_by_model] == [("small", 100), ("big", 800)]
    assert (
        n.savings_by_model[0].savings_usd == pytest.approx(100 * 0.05 / 1e6)
        and n.savings_by_model[1].savings_usd == 0.0
    )
    assert n.unpriced_cached_rows == 1 and o.cached_savings_usd == pytest.approx(5e-6)

    # quality: mean and normal interval per model
    q = {x.model: x for x in n.quality}
    big = d.loc[d["model"] == "big", "quality"].dropna()
    assert (q["big"].labelled, q["big"].mean) == (3, pytest.approx(big.mean()))
    assert q["big"].ci_high - q["big"].mean == pytest.approx(1.959964 * big.std() / np.sqrt(3))


def test_prediction_check_known_answers() -> None:
    pred = np.array([1.0, 2.0, 3.0, np.nan, 5.0])
    actual = np.array([2.0, 2.0, 1.0, 4.0, 5.0])
    c = prediction_check("cost_usd", pred, actual, bins=2)
    assert c.rows == 4 and c.mae == pytest.approx((1 + 0 + 2 + 0) / 4) and c.bias == pytest.approx((-1 + 0 + 2 + 0) / 4)
    assert c.median_ape == pytest.approx(np.median([0.5, 0.0, 2.0, 0.0]))
    assert [(b.predicted, b.actual, b.rows) for b in c.bins] == [(1.5, 2.0, 2), (4.0, 3.0, 2)]
    assert np.isnan(prediction_check("quality", pred, actual).median_ape)
    assert calibration_bins(np.array([]), np.array([]), 3) == ()


def test_comparable_rows_count_every_row() -> None:
    d = frame()
    rows, skipped = comparable_rows(d, ("big", "small"), max_rows=4, seed=1)
    assert skipped == {Skip.FAILED.value: 3, Skip.NOT_CANDIDATE.value: 1, Skip.NOT_SAMPLED.value: 4}
    assert len(rows) == 4 and set(d.loc[rows, "model"]) <= {"big", "small"} and (d.loc[rows, "status"] == "ok").all()
    assert len(rows) + sum(skipped.values()) == len(d)


def test_drift_window_shrinks_to_a_quarter_of_a_short_trace() -> None:
    ts = pd.Series(pd.date_range("2025-01-01", periods=5, freq="2h", tz="UTC"))  # 8 h span
    assert drift_window_hours(ts, 24.0) == 2.0
    assert drift_window_hours(ts, 1.0) == 1.0


def _write_prices(tmp: Path) -> Path:
    path = tmp / "prices.yaml"
    path.write_text(
        json.dumps(
            {
                "models": {
                    "big": {"input": 10.0, "output": 30.0},
                    "small": {"input": 0.1, "output": 0.2, "cached_input": 0.05},
                }
            }
        )
    )
    return path


def test_report_without_bundle_or_budgets_says_why_and_escapes_trace_text(tmp_path: Path) -> None:
    params = ReportParams(
        out=tmp_path / "out", prices=_write_prices(tmp_path), bundle=tmp_path / "nope", budgets=tmp_path / "none.yaml"
    )
    doc, files, _ = build(frame(), params)
    assert set(doc["missing"]) == {"champion", "recommendations", "budgets", "drift"}
    assert "no champion bundle" in doc["missing"]["champion"] and "too few rows" in doc["missing"]["drift"]
    assert {"timeline", "errors", "cost", "latency", "savings", "quality"} <= set(files)
    from monitoring import html as h
    from monitoring.report import sections

    page = h.page("t", "s", sections(doc, files))
    assert HOSTILE not in page and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert page.count('src="data:image/png;base64,') == len(files)
    assert "http://" not in page and "https://" not in page  # nothing fetched: it opens offline


@pytest.fixture(scope="module")
def report_run(routed, sample_dataset: Path, tmp_path_factory: pytest.TempPathFactory):
    """`beast report` on the committed samples with the small trained bundle."""
    tmp = tmp_path_factory.mktemp("report")
    folder, _, _ = routed
    (tmp / "params.yaml").write_text(
        f"report:\n  out: {tmp / 'out'}\n  bundle: {folder / 'bundle'}\n  predict_rows: 600\n"
    )
    return main([sample_dataset], params_file=tmp / "params.yaml")


def test_report_on_the_samples(report_run, routed, sample_traces) -> None:
    router = routed[2]
    doc = json.loads(report_run.json.read_text())
    assert doc["overview"]["requests"] == len(sample_traces) == report_run.rows
    assert doc["overview"]["failures"] == int((sample_traces["status"] == "error").sum())
    assert doc["cost"]["unknown_requests"] == int(sample_traces["cost_usd"].isna().sum())
    assert doc["cost"]["cost_usd"] == pytest.approx(sample_traces["cost_usd"].sum())
    c = doc["champion"]
    assert c["cost"]["rows"] == 600 and sum(c["skipped"].values()) + 600 == len(sample_traces)
    ok = sample_traces["status"] == "ok"
    assert c["skipped"]["not_a_candidate"] == int((ok & ~sample_traces["model"].isin(router.models)).sum())
    assert 0.0 < c["quality"]["mean_predicted"] < 1.0 and c["cost"]["spearman"] > 0.5
    assert doc["budgets"] and {b["budget"]["name"] for b in doc["budgets"]} == {
        "all-daily",
        "all-monthly",
        "tenant-a-weekly",
    }
    assert report_run.html.stat().st_size < 5e6


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def test_report_renders_in_a_headless_browser(report_run, tmp_path: Path) -> None:
    browser = _chromium()
    if browser is None:
        if os.environ.get("BEAST_REQUIRE_BROWSER"):
            pytest.fail("BEAST_REQUIRE_BROWSER is set but no chromium is installed")
        pytest.skip("no chromium (CI installs it: .ci/run)")
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--hide-scrollbars",
    ]  # fmt: skip
    url = report_run.html.resolve().as_uri()
    dom = subprocess.run(
        [browser, *flags, f"--user-data-dir={tmp_path / 'p1'}", "--virtual-time-budget=5000", "--dump-dom", url],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    body = dom[dom.index("<body") : dom.index(">", dom.index("<body"))]
    images = int(body.split('data-images="')[1].split('"')[0])
    loaded = int(body.split('data-images-loaded="')[1].split('"')[0])
    plots = json.loads(report_run.json.read_text())["meta"]["plots"]
    assert 'data-rendered="yes"' in body and images == len(plots) >= 5 and loaded == images
    shot = tmp_path / "shot.png"
    subprocess.run(
        [browser, *flags, f"--user-data-dir={tmp_path / 'p2'}", "--window-size=1300,2400", f"--screenshot={shot}", url],
        capture_output=True,
        timeout=120,
        check=True,
    )
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (2400, 1300) and pixels.std() > 20  # not a blank page
