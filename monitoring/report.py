"""`beast monitor report TRACES... --out DIR`: one self-contained `index.html` plus `report.json` with the same numbers.

Panels: overview, requests and failures over time (throughput), errors by model / type / tenant, latency
percentiles by model, cost by model / tenant / day (unknown prices counted, never 0), cached-token savings,
quality where labelled, budgets (status and forecast), predicted vs actual cost and quality of the champion
predictors (from the exported bundle), recommendations, drift. Definitions: `monitoring/traffic.py`.

A panel that cannot be computed (no bundle yet, no budgets file, too little data for drift) says why in the
page and in `report.json` (`missing`), and the rest of the report is still written.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from core.config import Count, NonNegativeInt, load_params, with_overrides
from core.files import write_atomic
from core.jsonable import plain
from monitoring import html as h
from monitoring.traffic import monitor_numbers

READ_COLUMNS = [
    "request_id", "timestamp", "model", "input_tokens", "output_tokens", "status", "prompt", "latency_ms", "cost_usd",
    "cached_input_tokens", "error_type", "quality", "tenant", "task", "cost_source",
]  # fmt: skip


@dataclass(frozen=True)
class ReportParams:
    """Mirrors params.yaml -> report."""

    out: Path = Path("data/report")
    prices: Path = Path("data/prices.yaml")
    bundle: Path = Path("data/bundle")  # the champion predictors as routers load them
    budgets: Path = Path("data/budgets.yaml")
    max_buckets: Count = 200  # time buckets of the timeline
    predict_rows: Count = 5000  # seeded sample for predicted vs actual
    seed: NonNegativeInt = 0
    drift: bool = True
    recommend: bool = True


@dataclass(frozen=True)
class ReportResult:
    out: Path
    html: Path
    json: Path
    rows: int
    seconds: float
    missing: dict[str, str]  # panel -> why it is not in the report


class Timer:
    """Progress on stderr with the time of each step (a 1M-row report takes tens of seconds)."""

    def __init__(self, log: Callable[[str], None]):
        self.log, self.times, self._t = log, {}, time.perf_counter()

    def step(self, name: str) -> None:
        now = time.perf_counter()
        self.times[name] = round(now - self._t, 3)
        self.log(f"  {name:<22s} {now - self._t:6.2f} s")
        self._t = now


def read_frame(traces: Sequence[Path], prices: Path) -> pd.DataFrame:
    """The columns the report needs, from dataset folders or trace files (`traces.load.load_traces`), by time."""
    from traces.load import load_traces

    frame = load_traces(list(traces), prices, columns=READ_COLUMNS)
    return frame.sort_values("timestamp", kind="stable").reset_index(drop=True)


def _drift(frame: pd.DataFrame, params_file: Path | None, out: Path) -> tuple[dict | None, str | None, Path | None]:
    from monitoring.drift import MonitorParams, drift_report, psi_plot, split_window

    mp = load_params(params_file, "monitor", MonitorParams)
    window = drift_window_hours(frame["timestamp"], mp.window_hours)
    reference, recent = split_window(frame, window)
    if len(reference) < mp.min_rows or len(recent) < mp.min_rows:
        return (
            None,
            f"too few rows to compare: {len(reference):,} reference and {len(recent):,} in the last {window:g} h (need {mp.min_rows:,} each)",
            None,
        )
    report = drift_report(reference, recent, mp)
    return (
        report.to_dict() | {"window_hours": window},
        None,
        psi_plot(report, out / "plots" / "drift_psi.png", mp.psi_threshold),
    )


def drift_window_hours(timestamps: pd.Series, window_hours: float) -> float:
    """`monitor.window_hours`, or a quarter of the traces' span when that is shorter (a 14-hour trace still
    compares its last 3.5 hours with the rest instead of having nothing before the window)."""
    ts = pd.to_datetime(timestamps, utc=True)
    span_h = (ts.max() - ts.min()).total_seconds() / 3600 if len(ts) else 0.0
    return min(window_hours, span_h / 4) if span_h > 0 else window_hours


def _budgets(
    frame: pd.DataFrame, params: ReportParams, params_file: Path | None
) -> tuple[list[dict] | None, str | None]:
    from monitoring.budget import BudgetParams, budget_prices, budget_status, load_budgets
    from traces.ledger import cost_rows

    if not params.budgets.exists():
        return None, f"no budgets file at {params.budgets}"
    cfg = load_budgets(params.budgets)
    bp = replace(load_params(params_file, "budget", BudgetParams), prices=params.prices)
    rows = cost_rows(frame, budget_prices(bp, cfg))
    at = rows["timestamp"].max() + pd.Timedelta(milliseconds=1)  # "now" = just after the newest row
    return [asdict(budget_status(rows, spec, at, bp)) for spec in cfg.budgets], None


def _champion(frame: pd.DataFrame, params: ReportParams) -> tuple[dict | None, Any, str | None]:
    from monitoring.predictions import champion_check
    from serving.bundle import BundleError
    from serving.router import Router

    if not params.bundle.exists():
        return None, None, f"no champion bundle at {params.bundle}: run `make run` (or `beast export --alias champion`)"
    try:
        router = Router.load(params.bundle)
    except BundleError as exc:
        return None, None, f"bundle {params.bundle} refused: {exc}"
    return champion_check(frame, router, str(params.bundle), params.predict_rows, params.seed).to_dict(), router, None


def build(
    frame: pd.DataFrame,
    params: ReportParams,
    params_file: Path | None = None,
    log: Callable[[str], None] = lambda _s: None,
) -> tuple[dict, dict[str, Path], dict[str, float]]:
    """All panels' numbers (report.json's content) and their plots under `params.out / plots`."""
    from traces.prices import load_prices

    timer = Timer(log)
    plots = params.out / "plots"
    numbers = monitor_numbers(frame, load_prices(params.prices), params.max_buckets)
    doc: dict[str, Any] = numbers.to_dict()
    doc["missing"] = {}
    timer.step("traffic, errors, cost")
    files = {
        "timeline": h.timeline_plot(doc["timeline"], plots / "timeline.png"),
        "cost": h.cost_plot(doc["cost"], [asdict(x) for x in numbers.ledger.lines], plots / "cost.png"),
    }
    if numbers.overview.failures:
        files["errors"] = h.errors_plot(doc["errors"], plots / "errors.png")
    else:
        doc["missing"]["errors"] = "no failed request in these traces"
    if doc["latency_by_model"]:
        files["latency"] = h.latency_plot(doc["latency_by_model"], plots / "latency.png")
    else:
        doc["missing"]["latency"] = "no successful request has latency_ms"
    if numbers.overview.cached_savings_usd > 0:
        files["savings"] = h.savings_plot(doc["cached_savings"]["by_model"], plots / "savings.png")
    elif doc["cached_savings"]["by_model"]:
        doc["missing"]["cached_savings"] = (
            "cached input tokens were priced at the full input price (no cached-input discount in the price table): nothing saved"
        )
    else:
        doc["missing"]["cached_savings"] = "no request has cached_input_tokens > 0 with a known price"
    if doc["quality_by_model"]:
        files["quality"] = h.quality_plot(doc["quality_by_model"], plots / "quality.png")
    else:
        doc["missing"]["quality"] = "no request has a quality label"
    timer.step("plots")
    budgets, why = _budgets(frame, params, params_file)
    doc["budgets"] = plain(budgets)
    if budgets:
        files["budgets"] = h.budget_plot(budgets, plots / "budgets.png")
    elif why:
        doc["missing"]["budgets"] = why
    timer.step("budgets")
    check, router, why = _champion(frame, params)
    doc["champion"] = plain(check)
    if check is not None:
        files["champion"] = h.predicted_plot(doc["champion"], plots / "champion.png")
    else:
        doc["missing"]["champion"] = why
    timer.step("champion predictions")
    doc["recommendations"] = None
    if params.recommend and router is not None:
        doc["recommendations"], why = _recommend(frame, router, params_file)
        if why:
            doc["missing"]["recommendations"] = why
    elif params.recommend:
        doc["missing"]["recommendations"] = why or "recommendations are off"
    timer.step("recommendations")
    doc["drift"] = None
    if params.drift:
        drift, why, psi = _drift(frame, params_file, params.out)
        doc["drift"] = plain(drift)
        if psi is not None:
            files["drift"] = psi
        if why:
            doc["missing"]["drift"] = why
    timer.step("drift")
    return doc, files, timer.times


def _recommend(frame: pd.DataFrame, router: Any, params_file: Path | None) -> tuple[dict | None, str | None]:
    """What-if moves from the champion predictors (`monitoring/recommend.py`, params `recommend`)."""
    from monitoring.recommend import RecommendParams, recommend_for_frame

    report = recommend_for_frame(frame, router, load_params(params_file, "recommend", RecommendParams))
    return report.to_json(), None


# ------------------------------------------------------------------------------------------- page


def _overview(doc: dict) -> str:
    o = doc["overview"]
    items = [
        ("requests", f"{o['requests']:,}"),
        ("failures", f"{o['failures']:,} ({h._pct(o['error_rate'], 2)})"),
        ("span", f"{o['span_hours']:,.1f} h"),
        ("mean / peak req/s", f"{h._num(o['mean_rps'], ',.2f')} / {h._num(o['peak_rps'], ',.2f')}"),
        ("spend (priced)", f"${o['cost_usd']:,.2f}"),
        ("requests without a price", f"{o['unknown_cost_requests']:,}"),
        ("saved by cached tokens", f"${o['cached_savings_usd']:,.2f}"),
        ("tokens in / out", f"{o['input_tokens']:,} / {o['output_tokens']:,}"),
        ("labelled / mean quality", f"{o['labelled_requests']:,} / {h._num(o['mean_quality'], '.3f')}"),
    ]
    text = f"From {o['start']} to {o['end']}."
    return h.cards(items) + h.note(text)


def _rates(rows: list[dict], what: str) -> str:
    return h.table(
        [what, "requests", "failures", "error rate"],
        [(r["key"], f"{r['requests']:,}", f"{r['failures']:,}", h._pct(r["error_rate"], 2)) for r in rows],
    )


def _missing(doc: dict, key: str) -> str:
    return h.note(f"Not shown: {doc['missing'][key]}.", warn=True) if key in doc["missing"] else ""


def sections(doc: dict, files: dict[str, Path]) -> list[tuple[str, str, str]]:
    """(id, heading, HTML) of every panel, in reading order."""

    def img(key: str, alt: str) -> str:
        return h.image(files[key], alt) if key in files else ""

    cost = doc["cost"]
    unknown = cost["unknown_by_model"]
    cost_html = (
        img("cost", "spend per day by model and per tenant")
        + h.table(
            ["model", "requests", "cost USD", "unpriced requests"],
            [
                (m, f"{x['requests']:,}", f"{x['cost_usd']:,.4f}", f"{x['unknown_requests']:,}")
                for m, x in sorted(cost["by_model"].items(), key=lambda kv: -kv[1]["cost_usd"])
            ],
        )
        + h.table(
            ["tenant", "requests", "cost USD", "unpriced requests"],
            [
                (t, f"{x['requests']:,}", f"{x['cost_usd']:,.4f}", f"{x['unknown_requests']:,}")
                for t, x in sorted(cost["by_tenant"].items(), key=lambda kv: -kv[1]["cost_usd"])
            ],
        )
        + (
            h.note(
                "Requests without a price (never counted as $0): "
                + ", ".join(f"{m} {n:,}" for m, n in unknown.items()),
                warn=True,
            )
            if unknown
            else ""
        )
    )
    out = [
        ("overview", "Overview", _overview(doc)),
        ("traffic", "Requests and failures over time", img("timeline", "throughput and error rate over time")),
        (
            "errors",
            "Errors",
            _missing(doc, "errors")
            + img("errors", "error rate by model, type and tenant")
            + _rates(doc["errors"]["by_model"], "model")
            + h.table(
                ["error type", "failures", "share of failures"],
                [(r["key"], f"{r['failures']:,}", h._pct(r["error_rate"])) for r in doc["errors"]["by_type"]],
            )
            + _rates(doc["errors"]["by_tenant"], "tenant"),
        ),
        (
            "latency",
            "Latency",
            _missing(doc, "latency")
            + img("latency", "latency percentiles by model")
            + h.table(
                ["model", "requests", "p50 ms", "p95 ms", "p99 ms"],
                [
                    (
                        r["model"],
                        f"{r['requests']:,}",
                        h._num(r["p50_ms"], ",.0f"),
                        h._num(r["p95_ms"], ",.0f"),
                        h._num(r["p99_ms"], ",.0f"),
                    )
                    for r in doc["latency_by_model"]
                ],
            ),
        ),
        ("cost", "Cost", cost_html),
        (
            "cache",
            "Cached-token savings",
            _missing(doc, "cached_savings")
            + img("savings", "savings from cached input tokens by model")
            + h.table(
                ["tenant", "cached input tokens", "saved USD"],
                [
                    (r["key"], f"{r['cached_input_tokens']:,}", f"{r['savings_usd']:,.4f}")
                    for r in doc["cached_savings"]["by_tenant"]
                ],
            ),
        ),
        (
            "quality",
            "Quality (labelled requests)",
            _missing(doc, "quality")
            + img("quality", "mean quality label by model")
            + h.table(
                ["model", "labelled", "mean", "95% interval"],
                [
                    (
                        r["model"],
                        f"{r['labelled']:,}",
                        h._num(r["mean"], ".3f"),
                        f"{h._num(r['ci_low'], '.3f')} .. {h._num(r['ci_high'], '.3f')}",
                    )
                    for r in doc["quality_by_model"]
                ],
            ),
        ),
        (
            "budgets",
            "Budgets",
            _missing(doc, "budgets")
            + img("budgets", "budgets: spent and forecast")
            + _budget_table(doc["budgets"] or []),
        ),
        (
            "champion",
            "Champion predictors: predicted vs actual",
            _missing(doc, "champion")
            + img("champion", "predicted vs actual cost and quality")
            + _champion_table(doc["champion"]),
        ),
        (
            "recommendations",
            "Recommendations",
            _missing(doc, "recommendations") + _recommend_html(doc["recommendations"]),
        ),
        ("drift", "Drift", _missing(doc, "drift") + img("drift", "PSI per feature") + _drift_html(doc["drift"])),
    ]
    return out


def _budget_table(budgets: list[dict]) -> str:
    if not budgets:
        return ""
    rows = [
        (
            f"{b['budget']['name']} ({b['budget']['scope']})",
            f"{b['budget']['period']} from {b['period_start'][:10]}",
            f"{b['budget']['usd']:,.2f}",
            f"{b['spent_usd']:,.2f}",
            f"{b['remaining_usd']:,.2f}",
            f"{b['forecast_end_usd']:,.2f} ({b['forecast_low_usd']:,.2f} .. {b['forecast_high_usd']:,.2f})",
            "-" if b["alert"] is None else f"{b['alert']:g}%",
            "-" if b["forecast_alert"] is None else f"{b['forecast_alert']:g}%",
        )
        for b in budgets
    ]
    return h.table(
        ["budget", "period", "USD", "spent", "remaining", "forecast end (interval)", "alert", "forecast alert"], rows
    ) + h.note(
        f"At {budgets[0]['at']} (just after the newest request); forecast interval level {budgets[0]['forecast']['level']:.0%}."
    )


def _champion_table(check: dict | None) -> str:
    if not check:
        return ""
    rows = [
        (
            c["target"],
            f"{c['rows']:,}",
            h._num(c["mean_predicted"]),
            h._num(c["mean_actual"]),
            h._num(c["mae"]),
            h._num(c["bias"]),
            h._num(c["spearman"], ".3f"),
            h._pct(c["median_ape"]),
        )
        for c in (check["cost"], check["quality"])
    ]
    versions = ", ".join(f"{k} v{v.get('version')}" for k, v in check["predictors"].items())
    skipped = ", ".join(f"{k} {v:,}" for k, v in check["skipped"].items() if v)
    return h.table(
        ["target", "rows", "mean predicted", "mean actual", "MAE", "bias", "Spearman", "median APE"], rows
    ) + h.note(f"Bundle {check['bundle']} ({versions}). Rows not compared: {skipped or 'none'}.")


def _recommend_html(rec: dict | None) -> str:
    if not rec:
        return ""
    p = rec["params"]
    rows = [
        (
            str(i),
            r["sentence"],
            f"{r['requests_per_day']:,.0f}",
            f"{r['savings_usd_per_day']:,.2f}",
            f"{r['quality_change']:+.3f} ({r['quality_change_ci'][0]:+.3f} .. {r['quality_change_ci'][1]:+.3f})",
        )
        for i, r in enumerate(rec["recommendations"], 1)
    ]
    skipped = ", ".join(f"{k} {v:,}" for k, v in rec["skipped"].items() if v) or "none"
    basis = (
        f"{rec['groups_with_move']:,} of {rec['groups']:,} (tenant, task, prompt size, model) groups have a move that keeps the predicted "
        f"quality change >= -{p['max_quality_drop']:g} and saves more than ${p['min_usd_per_day']:g}/day; the top {len(rows)} are shown. "
        f"{rec['rows_predicted']:,} rows predicted (sample ratio {rec['sample_ratio']:.3f}) over {rec['span_days']:.2f} days; rows not used: {skipped}. "
        "Quality changes are the predictors' view: the interval is the spread over prompts, not the predictors' own error."
    )
    if not rows:
        return h.note("No move passes the filters. " + basis)
    return (
        '<div class="text-table">'
        + h.table(["#", "recommendation", "requests/day", "saves $/day", "quality change (95% CI)"], rows)
        + "</div>"
        + h.note(basis)
    )


def _drift_html(drift: dict | None) -> str:
    if not drift:
        return ""
    verdict = (
        (
            "Retrain recommended (the Prefect `monitor` flow acts on this; the report only reports): "
            + "; ".join(drift["reasons"])
        )
        if drift["retrain"]
        else "No retrain needed."
    )
    head = h.note(
        f"Last {drift['window_hours']:.3g} h ({drift['recent_rows']:,} rows) against the {drift['reference_rows']:,} rows before. {verdict}",
        warn=drift["retrain"],
    )
    rows = [
        (
            f["feature"],
            f["code"],
            h._num(f["psi"], ".3f"),
            h._num(f["ks_stat"], ".3f"),
            h._num(f["reference_median"]),
            h._num(f["recent_median"]),
        )
        for f in drift["features"]
    ]
    return head + h.table(["feature", "check", "PSI", "KS", "median before", "median recent"], rows)


# ------------------------------------------------------------------------------------------- edge


def main(
    traces: Sequence[Path], params_file: Path | None = None, out: Path | None = None, bundle: Path | None = None
) -> ReportResult:
    """`beast monitor report`: read, compute, plot, write index.html and report.json atomically, print where."""
    started = time.perf_counter()
    params = load_params(params_file, "report", ReportParams)
    params = with_overrides(params, out=out, bundle=bundle)

    def log(s: str) -> None:
        print(s, file=sys.stderr, flush=True)

    log(f"report on {', '.join(map(str, traces))}")
    frame = read_frame(traces, params.prices)
    log(f"  read {len(frame):,} rows in {time.perf_counter() - started:.2f} s")
    doc, files, times = build(frame, params, params_file, log)
    title = "beast monitoring report"
    subtitle = f"{len(frame):,} requests from {', '.join(p.name for p in traces)}; generated {pd.Timestamp.now(tz='UTC'):%Y-%m-%d %H:%M} UTC"
    page = h.page(title, subtitle, sections(doc, files))
    seconds = time.perf_counter() - started
    doc["meta"] = {
        "traces": [str(p) for p in traces],
        "rows": len(frame),
        "seconds": round(seconds, 2),
        "step_seconds": times,
        "plots": {k: str(v) for k, v in files.items()},
    }
    html_path, json_path = params.out / "index.html", params.out / "report.json"
    write_atomic(json_path, (json.dumps(plain(doc), indent=1) + "\n").encode())
    write_atomic(html_path, page.encode("utf-8"))
    missing = dict(doc["missing"])
    print(
        f"report: {html_path} ({len(page) / 1e6:.1f} MB, self-contained) and {json_path}; {len(frame):,} rows in {seconds:.1f} s"
    )
    for k, why in missing.items():
        print(f"  not shown: {k}: {why}")
    return ReportResult(params.out, html_path, json_path, len(frame), seconds, missing)
