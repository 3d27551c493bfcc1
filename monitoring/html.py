"""The report's plots (matplotlib PNGs) and its single self-contained HTML page (images inlined as data: URIs,
no CDN, no script from anywhere: it opens offline and can be mailed as one file).

Every string that came from the traces (model, tenant and error names) is HTML-escaped: trace text is data.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from core.plots import save_figure  # noqa: E402

TOP = 15  # rows of a bar chart or table before "the rest"


def _save(fig: plt.Figure, path: Path) -> Path:
    return save_figure(fig, path, dpi=100)


def _short(name: str, width: int = 32) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def timeline_plot(tl: dict[str, Any], path: Path) -> Path:
    """Throughput and failures per bucket, error rate below: when it broke and how badly."""
    t = pd.to_datetime(pd.Series(tl["start"]), utc=True)
    req, fail = np.asarray(tl["requests"], float), np.asarray(tl["failures"], float)
    fig, (a, b) = plt.subplots(2, 1, figsize=(9, 5), sharex=True, height_ratios=(2, 1))
    a.plot(t, req / tl["bucket_s"], lw=1, label="requests/s")
    a.plot(t, fail / tl["bucket_s"], lw=1, color="tab:red", label="failures/s")
    a.set(ylabel="per second", title=f"Throughput per {tl['bucket']} bucket")
    a.legend(loc="upper right")
    with np.errstate(invalid="ignore", divide="ignore"):
        b.plot(t, 100 * fail / req, lw=1, color="tab:red")
    b.set(ylabel="error rate %")
    for ax in (a, b):
        ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    return _save(fig, path)


def _barh(
    ax: plt.Axes, labels: Sequence[str], values: Sequence[float], title: str, xlabel: str, color: str = "tab:blue"
) -> None:
    labels, values = list(labels)[:TOP][::-1], list(values)[:TOP][::-1]
    ax.barh([_short(x) for x in labels], values, color=color)
    ax.set(title=title, xlabel=xlabel)
    ax.grid(axis="x", alpha=0.3)


def errors_plot(errors: dict[str, list[dict]], path: Path) -> Path:
    """Error rate by model and tenant, failures by type."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 0.28 * min(TOP, max(len(v) for v in errors.values()) or 1) + 1.8))
    m = sorted(errors["by_model"], key=lambda r: -r["error_rate"])
    _barh(axes[0], [r["key"] for r in m], [100 * r["error_rate"] for r in m], "Error rate by model", "%", "tab:red")
    _barh(
        axes[1],
        [r["key"] for r in errors["by_type"]],
        [r["failures"] for r in errors["by_type"]],
        "Failures by error type",
        "failures",
        "tab:orange",
    )
    t = sorted(errors["by_tenant"], key=lambda r: -r["error_rate"])
    _barh(axes[2], [r["key"] for r in t], [100 * r["error_rate"] for r in t], "Error rate by tenant", "%", "tab:red")
    return _save(fig, path)


def latency_plot(rows: list[dict], path: Path) -> Path:
    """p50 / p95 / p99 of successful requests per model, log scale (tails are what users feel)."""
    rows = sorted(rows, key=lambda r: r["p99_ms"])[-TOP:]
    y = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(rows) + 1.5))
    for k, (key, color) in enumerate((("p50_ms", "tab:green"), ("p95_ms", "tab:orange"), ("p99_ms", "tab:red"))):
        ax.barh(y + (k - 1) * 0.27, [r[key] for r in rows], height=0.27, color=color, label=key.replace("_ms", ""))
    ax.set_yticks(y, [_short(r["model"]) for r in rows])
    ax.set(xscale="log", xlabel="latency ms (successful requests)", title="Latency by model")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.legend(loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def cost_plot(cost: dict[str, Any], lines: list[dict], path: Path) -> Path:
    """Spend per UTC day stacked by model (top models, the rest as 'other'), and spend per tenant."""
    d = pd.DataFrame(lines) if lines else pd.DataFrame(columns=["day", "model", "tenant", "cost_usd"])
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4.5), width_ratios=(3, 2))
    if len(d):
        top = d.groupby("model")["cost_usd"].sum().sort_values(ascending=False).index[:8]
        d = d.assign(model=np.where(d["model"].isin(top), d["model"], "other"))
        pivot = d.pivot_table(index="day", columns="model", values="cost_usd", aggfunc="sum", fill_value=0.0)
        bottom = np.zeros(len(pivot))
        for m in pivot.columns:
            a.bar(pivot.index, pivot[m].to_numpy(), bottom=bottom, label=_short(m, 28))
            bottom += pivot[m].to_numpy()
        a.legend(fontsize=7, loc="upper left")
        if len(pivot) > 8:
            a.set_xticks(pivot.index[:: max(1, len(pivot) // 8)])
    a.set(title="Spend per UTC day by model", ylabel="USD")
    tenants = sorted(cost["by_tenant"].values(), key=lambda x: -x["cost_usd"])
    _barh(b, [x["tenant"] for x in tenants], [x["cost_usd"] for x in tenants], "Spend by tenant", "USD", "tab:purple")
    return _save(fig, path)


def savings_plot(rows: list[dict], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 0.3 * min(TOP, len(rows)) + 1.5))
    _barh(
        ax,
        [r["key"] for r in rows],
        [r["savings_usd"] for r in rows],
        "Saved by cached input tokens, by model",
        "USD",
        "tab:green",
    )
    return _save(fig, path)


def quality_plot(rows: list[dict], path: Path) -> Path:
    rows = sorted(rows, key=lambda r: r["mean"])[-TOP:]
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(rows) + 1.5))
    y = np.arange(len(rows))
    mean = np.array([r["mean"] for r in rows])
    lo = np.array([r["ci_low"] if r["ci_low"] is not None else r["mean"] for r in rows])
    hi = np.array([r["ci_high"] if r["ci_high"] is not None else r["mean"] for r in rows])
    ax.errorbar(mean, y, xerr=[mean - lo, hi - mean], fmt="o", capsize=3)
    ax.set_yticks(y, [f"{_short(r['model'])} (n={r['labelled']:,})" for r in rows])
    ax.set(xlabel="mean quality label (95% interval)", title="Quality where labelled")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def predicted_plot(check: dict[str, Any], path: Path) -> Path:
    """Cost: predicted vs actual per request (log-log); quality: calibration of the predicted label."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.5))
    pts = np.array(check["points"]["cost_usd"] or np.empty((0, 2)))
    if len(pts):
        pos = (pts > 0).all(axis=1)
        a.scatter(pts[pos, 1], pts[pos, 0], s=4, alpha=0.3)
        lo, hi = pts[pos].min(), pts[pos].max()
        a.plot([lo, hi], [lo, hi], color="grey", ls="--", lw=1)
        a.set(xscale="log", yscale="log")
    c = check["cost"]
    a.set(
        xlabel="actual cost USD",
        ylabel="predicted cost USD",
        title=f"Cost (n={c['rows']:,}, median APE {_pct(c['median_ape'])})",
    )
    q = check["quality"]
    if q["bins"]:
        a_ = [x["actual"] for x in q["bins"]]
        p_ = [x["predicted"] for x in q["bins"]]
        b.plot([0, 1], [0, 1], color="grey", ls="--", lw=1)
        b.plot(p_, a_, marker="o")
    b.set(
        xlim=(0, 1),
        ylim=(0, 1),
        xlabel="mean predicted quality (bin)",
        ylabel="mean label",
        title=f"Quality calibration (n={q['rows']:,})",
    )
    for ax in (a, b):
        ax.grid(alpha=0.3)
    return _save(fig, path)


def budget_plot(budgets: list[dict], path: Path) -> Path:
    """Spent, forecast end-of-period spend (with interval) and the budget, per budget."""
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(budgets) + 1.5))
    y = np.arange(len(budgets))
    usd = np.array([b["budget"]["usd"] for b in budgets])
    spent = np.array([b["spent_usd"] for b in budgets]) / usd * 100
    fc = np.array([b["forecast_end_usd"] for b in budgets]) / usd * 100
    lo = np.array([b["forecast_low_usd"] for b in budgets]) / usd * 100
    hi = np.array([b["forecast_high_usd"] for b in budgets]) / usd * 100
    ax.barh(y, fc, color="tab:orange", alpha=0.4, label="forecast end of period")
    ax.errorbar(fc, y, xerr=[fc - lo, hi - fc], fmt="none", ecolor="tab:orange", capsize=3)
    ax.barh(y, spent, color="tab:blue", height=0.5, label="spent")
    ax.axvline(100, color="black", ls="--", lw=1, label="budget")
    ax.set_yticks(y, [f"{b['budget']['name']} ({b['budget']['period']})" for b in budgets])
    ax.set(xlabel="% of budget", title="Budgets")
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


# ------------------------------------------------------------------------------------------- HTML


def _pct(x: float | None, digits: int = 1) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.{digits}f}%"


def _num(x: Any, spec: str = ",.4g") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return format(x, spec) if isinstance(x, (int, float)) else html.escape(str(x))


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], limit: int = 25) -> str:
    """An HTML table; cells are escaped; rows beyond `limit` are counted, not shown."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{c if isinstance(c, Raw) else html.escape(str(c))}</td>" for c in r) + "</tr>"
        for r in rows[:limit]
    )
    more = f"<p class=more>{len(rows) - limit:,} more rows in report.json</p>" if len(rows) > limit else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}"


class Raw(str):
    """Trusted markup (built here, never from trace text)."""


def image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img class=plot alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:16px 28px}header h1{margin:0;font-size:20px}header p{margin:4px 0 0;color:#c5cad3}
nav{padding:8px 28px;background:#fff;border-bottom:1px solid #e3e6ea;position:sticky;top:0}nav a{margin-right:14px;color:#2456c7;text-decoration:none}
main{padding:8px 28px 40px;max-width:1300px}section{background:#fff;border:1px solid #e3e6ea;border-radius:6px;padding:12px 18px;margin:14px 0}
h2{font-size:17px;margin:4px 0 10px}.cards{display:flex;flex-wrap:wrap;gap:10px}.card{border:1px solid #e3e6ea;border-radius:6px;padding:8px 14px;min-width:140px}
.card b{display:block;font-size:19px}.card span{color:#5b6475;font-size:12px}table{border-collapse:collapse;margin:8px 0;font-size:13px}
td,th{border-bottom:1px solid #eceef1;padding:3px 10px;text-align:right}td:first-child,th:first-child{text-align:left}th{background:#f0f2f5}
img.plot{max-width:100%;display:block;margin:8px 0}.text-table td:nth-child(2){text-align:left;max-width:760px}.text-table td{vertical-align:top}.note{color:#5b6475}.warn{color:#a33}.more{color:#5b6475;font-size:12px}
"""

SCRIPT = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute('data-images', String(imgs.length));
  document.body.setAttribute('data-images-loaded', String(ok));
  document.body.setAttribute('data-rendered', 'yes');
});
"""


def page(title: str, subtitle: str, sections: Sequence[tuple[str, str, str]]) -> str:
    """One HTML document: header, a link bar and the (id, heading, inner HTML) sections."""
    nav = "".join(f'<a href="#{sid}">{html.escape(h)}</a>' for sid, h, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{html.escape(h)}</h2>{inner}</section>' for sid, h, inner in sections)
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head>"
        f"<body><header><h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p></header>"
        f"<nav>{nav}</nav><main>{body}</main><script>{SCRIPT}</script></body></html>\n"
    )


def cards(items: Sequence[tuple[str, str]]) -> str:
    return (
        "<div class=cards>"
        + "".join(f"<div class=card><b>{html.escape(v)}</b><span>{html.escape(k)}</span></div>" for k, v in items)
        + "</div>"
    )


def note(text: str, warn: bool = False) -> str:
    return f'<p class="{"warn" if warn else "note"}">{html.escape(text)}</p>'
