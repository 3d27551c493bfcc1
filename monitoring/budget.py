"""Budgets: spend so far, remaining, a forecast of end-of-period spend with a prediction interval, alerts.

Config (`data/budgets.yaml`, parsed by `parse_budgets`): a list of budgets, each a scope (a tenant, or `all`),
a period (`day`, `week` from Monday, `month`; UTC calendar periods), a USD amount and alert levels in % of
it; plus, optionally, `prices:` for models the price table lacks (same format as `data/prices.yaml`).

Forecast (`forecast_spend`), deliberately simple. The spend still to come in the period is the spend of
the recent past, `lookback_hours` before `at` (or since the data starts, if later), scaled to the hours
left: point forecast = spend rate x hours left. Two ways to put an interval around it:

- `bootstrap` (default): cut the lookback into `block_minutes` blocks ending at `at`, draw as many blocks
  as fit in the remaining hours with replacement (`n_boot` times, seeded) and sum them; the interval is
  the quantiles of those sums. It keeps the burstiness of real traffic (arrival clumps, expensive
  requests in bursts) that a Poisson model misses. Two widenings: the rate itself is an estimate (the
  spread is scaled by sqrt(1 + horizon / history)), and with `drift` the rate may wander: log block spend
  as a random walk whose step sd is the robust (MAD) sd of consecutive blocks' log ratios; the horizon's
  mean level gets that walk's spread (grown over at most the history's length of blocks). No trend is
  extrapolated: the point forecast is the recent rate.
- `poisson`: requests arrive as a Poisson process at the recent rate, each costs a request drawn from
  the recent requests' costs (compound Poisson): mean = lambda H E[c], variance = lambda H E[c^2], a normal
  interval clipped at 0, variance x (1 + horizon / history) for the estimated rate. Narrower: it treats
  arrivals as independent and the rate as fixed.

Only priced requests (`traces.ledger`) forecast spend; requests without a price are counted and reported,
never costed at 0. The cost predictor is not used: every stored request has its token counts, so the
ledger gives its exact cost; a router that logs requests before completion could add predicted costs.

Backtest (`backtest`, `beast monitor budget backtest`) on the Azure traces (one hour each, costed with the
illustrative prices of `data/budgets.yaml`): at each cut point (fraction of the trace's span), forecast
the spend from the cut to the end of the trace from everything before it, and compare. The traces are one
hour long, so "the final hour" of the issue becomes the second half hour. Measured on the committed
samples (cuts 0.5, 0.55, ..., 0.9, two traces = 18 points, 80% intervals, 5-minute blocks):

- headline, cut 0.5 (forecast the last ~29 minutes from the first ~29): +18.9% (conv), +62.7% (code)
- all 18 points: mean |error| 67.9% (conv 34.8%, code 101%), every point too high: both traces peak near
  the middle of the hour and fall after it (code: ~1.0 -> ~0.4 USD per 5 minutes), which a rate taken from
  the past cannot know; an hour-of-day profile would need days of history
- 80% interval coverage: bootstrap 0.50 (conv 5/9, code 4/9), poisson 0.00 (its interval is ~+-2%)

Caveats, measured: 2.5-minute blocks read 0.67 coverage with a plain step sd, but through degenerate
intervals (0.00-0.25 USD around a 5.8 forecast): the code trace bursts every ~5 minutes, so 2.5-minute
blocks alternate high / low and the random-walk step becomes noise (0.56 with the robust sd); 5 minutes
is the default. The drift spread stops growing at the history's length, so
a month forecast from half an hour of data has an interval that is too narrow.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from core.config import Count, Fraction, NonNegativeInt, Positive, load_params, read_yaml, with_overrides
from core.errors import BeastError
from core.files import write_atomic
from traces.ledger import Ledger, cost_rows, format_ledger, merge_prices, summarise
from traces.prices import PriceTable, load_prices, parse_prices

PERIODS = ("day", "week", "month")
METHODS = ("bootstrap", "poisson")
COLUMNS = [
    "timestamp",
    "model",
    "tenant",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cost_usd",
    "cost_source",
]


@dataclass(frozen=True)
class BudgetParams:
    """Mirrors params.yaml -> budget."""

    config: Path = Path("data/budgets.yaml")
    traces: Path = Path("data/traces")
    prices: Path = Path("data/prices.yaml")
    out: Path = Path("data/budget")
    level: Fraction = 0.8  # prediction-interval level
    method: str = "bootstrap"
    lookback_hours: Positive = 24.0
    block_minutes: Positive = 5.0
    n_boot: Count = 2000
    seed: NonNegativeInt = 0
    drift: bool = True  # bootstrap: add the uncertainty of a wandering rate (log random walk) to the block resampling
    backtest_traces: tuple[Path, ...] = (Path("data/sample/azure_conv.csv.gz"), Path("data/sample/azure_code.csv.gz"))
    backtest_cuts: tuple[float, ...] = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9)

    def __post_init__(self) -> None:
        if not 0 < self.level < 1:
            raise BeastError(f"budget.level: expected a number in (0, 1), got {self.level!r}")
        if self.method not in METHODS:
            raise BeastError(f"budget.method: expected one of {', '.join(METHODS)}, got {self.method!r}")
        if self.lookback_hours <= 0 or self.block_minutes <= 0 or self.n_boot < 100:
            raise BeastError("budget: lookback_hours and block_minutes must be > 0, n_boot >= 100")
        if any(not 0 < c < 1 for c in self.backtest_cuts):
            raise BeastError(f"budget.backtest_cuts: expected fractions in (0, 1), got {self.backtest_cuts!r}")


@dataclass(frozen=True)
class BudgetSpec:
    name: str
    scope: str  # a tenant, or "all"
    period: str  # day | week | month
    usd: float
    alerts: tuple[float, ...] = (50.0, 80.0, 100.0)  # % of usd


@dataclass(frozen=True)
class BudgetConfig:
    budgets: tuple[BudgetSpec, ...]
    prices: PriceTable | None = None  # extra prices (models the main table lacks)


def _positive(value: Any, where: str) -> float:
    if (
        isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1e300
    ):  # also NaN, inf, huge ints
        raise BeastError(f"{where}: expected a number > 0, got {value!r}")
    return float(value)


def parse_budgets(doc: Any, source: str) -> BudgetConfig:
    """Validate a parsed budgets document; every error names `source`, the budget and the field."""
    if not isinstance(doc, dict) or not isinstance(doc.get("budgets"), list) or not doc["budgets"]:
        raise BeastError(f"{source}: expected a top-level `budgets:` list")
    unknown = set(doc) - {"budgets", "prices"}
    if unknown:
        raise BeastError(f"{source}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; known: budgets, prices")
    specs: list[BudgetSpec] = []
    for i, raw in enumerate(doc["budgets"]):
        where = f"{source}: budgets[{i}]"
        if not isinstance(raw, dict):
            raise BeastError(f"{where}: expected a mapping with scope, period, usd")
        bad = set(raw) - {"name", "scope", "period", "usd", "alerts"}
        if bad:
            raise BeastError(
                f"{where}: unknown key(s) {', '.join(sorted(map(str, bad)))}; known: name, scope, period, usd, alerts"
            )
        scope, period = str(raw.get("scope", "all")), raw.get("period")
        if period not in PERIODS:
            raise BeastError(f"{where}.period: expected one of {', '.join(PERIODS)}, got {period!r}")
        alerts = raw.get("alerts", [50, 80, 100])
        if not isinstance(alerts, list) or not alerts:
            raise BeastError(f"{where}.alerts: expected a list of percentages, got {alerts!r}")
        levels = tuple(sorted(_positive(a, f"{where}.alerts") for a in alerts))
        name = str(raw.get("name", f"{scope}-{period}"))
        if not name or any(c in name for c in "/\\") or name.startswith("."):
            raise BeastError(f"{where}.name: {name!r} cannot name a file")
        specs.append(BudgetSpec(name, scope, str(period), _positive(raw.get("usd"), f"{where}.usd"), levels))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise BeastError(f"{source}: budget names must be unique, got {names}")
    prices = parse_prices(doc["prices"], f"{source}: prices") if "prices" in doc else None
    return BudgetConfig(tuple(specs), prices)


def load_budgets(path: Path) -> BudgetConfig:
    return parse_budgets(read_yaml(path), str(path))


def period_bounds(period: str, at: pd.Timestamp) -> tuple[pd.Timestamp, pd.Timestamp]:
    """[start, end) of the UTC calendar period containing `at` (weeks start on Monday)."""
    day = at.tz_convert("UTC").normalize()
    if period == "day":
        return day, day + pd.Timedelta(days=1)
    if period == "week":
        start = day - pd.Timedelta(days=day.weekday())
        return start, start + pd.Timedelta(days=7)
    if period == "month":
        start = day.replace(day=1)
        return start, start + pd.DateOffset(months=1)
    raise BeastError(f"period: expected one of {', '.join(PERIODS)}, got {period!r}")


# ------------------------------------------------------------------------------------------ forecast


@dataclass(frozen=True)
class Forecast:
    """Spend from `at` for `hours`: point forecast and a `level` prediction interval (USD)."""

    mean_usd: float
    low_usd: float
    high_usd: float
    level: float
    method: str
    hours: float
    history_hours: float
    history_requests: int
    usd_per_hour: float


def forecast_spend(
    times: pd.Series, costs: np.ndarray, at: pd.Timestamp, hours: float, data_start: pd.Timestamp, params: BudgetParams
) -> Forecast:
    """Forecast the spend of the `hours` after `at` from priced requests (`times`, `costs`) before `at`.

    History = [max(at - lookback, data_start), at). Pure and seeded (see the module docstring for the model)."""
    start = max(at - pd.Timedelta(hours=params.lookback_hours), data_start)
    hist_h = max((at - start).total_seconds() / 3600, 0.0)
    ts = pd.to_datetime(times, utc=True)
    keep = ((ts >= start) & (ts < at)).to_numpy()
    c = np.asarray(costs, dtype=float)[keep]
    if hours <= 0 or hist_h <= 0:
        return Forecast(0.0, 0.0, 0.0, params.level, params.method, max(hours, 0.0), hist_h, int(keep.sum()), 0.0)
    rate = float(c.sum()) / hist_h
    mean = rate * hours
    alpha = (1 - params.level) / 2
    block_h = params.block_minutes / 60
    n_blocks = int(hist_h // block_h)
    method = params.method if n_blocks >= 4 else "poisson"  # too little history to resample blocks
    if method == "bootstrap":
        offs = ((at - ts[keep]).dt.total_seconds().to_numpy() / 3600 // block_h).astype(int)
        inside = offs < n_blocks
        sums = np.bincount(offs[inside], weights=c[inside], minlength=n_blocks)
        k = hours / block_h
        draws = int(math.ceil(k))
        rng = np.random.default_rng(params.seed)
        if draws * params.n_boot <= 20_000_000:
            boot = sums[rng.integers(0, n_blocks, size=(params.n_boot, draws))].sum(axis=1) * (k / draws)
        else:  # long horizons: the sum of many blocks is normal (CLT) with the block mean and variance
            boot = rng.normal(k * sums.mean(), math.sqrt(k) * sums.std(ddof=1), size=params.n_boot)
        mean = k * float(sums.mean())  # the blocks' mean: same rate over whole blocks
        boot = mean + (boot - mean) * math.sqrt(1 + k / n_blocks)  # + the error of the estimated rate itself
        if params.drift and n_blocks >= 3 and (sums > 0).all():
            # the rate itself wanders: log block spend as a random walk, step sd from consecutive blocks;
            # the horizon's mean level then has log-sd sigma * sqrt((j+1)(2j+1)/(6j)) (mean of a walk of j
            # steps), j = the horizon in blocks but at most the history's: beyond the span it has seen, the
            # forecast does not claim the walk keeps spreading (the rate is taken to revert, e.g. daily)
            steps = np.diff(np.log(sums))
            sigma = 1.4826 * float(
                np.median(np.abs(steps - np.median(steps)))
            )  # robust sd: one ramp-up block must not dominate
            j = min(k, n_blocks)
            s_k = sigma * math.sqrt((j + 1) * (2 * j + 1) / (6 * j))
            boot = boot * np.exp(rng.normal(-(s_k**2) / 2, s_k, size=params.n_boot))
        low, high = (float(max(q, 0.0)) for q in np.quantile(boot, [alpha, 1 - alpha]))
    else:
        lam_h = len(c) / hist_h * hours
        m2 = float(np.mean(c**2)) if len(c) else 0.0
        sd = math.sqrt(lam_h * m2 * (1 + hours / hist_h))  # future noise + the error of the estimated rate
        z = NormalDist().inv_cdf(1 - alpha)
        low, high = max(mean - z * sd, 0.0), mean + z * sd
    return Forecast(mean, low, high, params.level, method, hours, hist_h, int(keep.sum()), rate)


# ------------------------------------------------------------------------------------------ status


@dataclass(frozen=True)
class BudgetStatus:
    budget: BudgetSpec
    at: str
    period_start: str
    period_end: str
    spent_usd: float
    remaining_usd: float  # budget - spent, may be < 0 (over budget)
    unknown_requests: int  # requests in the period without a price: not in spent_usd
    forecast_end_usd: float  # spent + forecast of the rest of the period
    forecast_low_usd: float
    forecast_high_usd: float
    forecast: Forecast
    alert: float | None  # highest alert level (%) spent has reached
    forecast_alert: float | None  # highest alert level the point forecast reaches

    def to_state(self):  # -> serving.budget.BudgetState
        from serving.budget import BudgetState

        def when(s: str) -> dt.datetime:
            return pd.Timestamp(s).to_pydatetime()

        return BudgetState(
            self.budget.scope,
            when(self.period_start),
            when(self.period_end),
            self.budget.usd,
            self.spent_usd,
            when(self.at),
        )


def _reached(levels: Sequence[float], share_pct: float) -> float | None:
    hit = [lv for lv in levels if share_pct >= lv]
    return max(hit) if hit else None


def budget_status(rows: pd.DataFrame, spec: BudgetSpec, at: pd.Timestamp, params: BudgetParams) -> BudgetStatus:
    """One budget at `at` from ledger rows (`traces.ledger.cost_rows`); rows at or after `at` are ignored."""
    scoped = rows if spec.scope == "all" else rows[rows["tenant"] == spec.scope]
    scoped = scoped[scoped["timestamp"] < at]
    start, end = period_bounds(spec.period, at)
    in_period = scoped[scoped["timestamp"] >= start]
    priced = in_period["cost_usd"].notna()
    spent = float(in_period.loc[priced, "cost_usd"].sum())
    known = scoped[scoped["cost_usd"].notna()]
    data_start = rows["timestamp"].min() if len(rows) else at
    fc = forecast_spend(
        known["timestamp"], known["cost_usd"].to_numpy(), at, (end - at).total_seconds() / 3600, data_start, params
    )
    iso = "%Y-%m-%dT%H:%M:%SZ"
    return BudgetStatus(
        spec,
        at.strftime(iso),
        start.strftime(iso),
        end.strftime(iso),
        spent,
        spec.usd - spent,
        int((~priced).sum()),
        spent + fc.mean_usd,
        spent + fc.low_usd,
        spent + fc.high_usd,
        fc,
        _reached(spec.alerts, 100 * spent / spec.usd),
        _reached(spec.alerts, 100 * (spent + fc.mean_usd) / spec.usd),
    )


def period_ended(status: BudgetStatus, now: pd.Timestamp) -> bool:
    """Whether the budget period of `status` ended at or before `now` (wall clock): a replay, not live state."""
    return pd.Timestamp(status.period_end) <= now


def format_status(
    statuses: Sequence[BudgetStatus], ledger: Ledger, at: str | None = None, now: pd.Timestamp | None = None
) -> str:
    """The status table and the ledger by model; `at` = the `--at` text given (None: now), `now` = the wall
    clock, to mark periods that are over."""

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v:g}%"

    lines = [
        "| budget | period | budget USD | spent | remaining | forecast end (interval) | alert | forecast alert | unpriced requests |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in statuses:
        lvl = f"{s.forecast.level:.0%}"
        lines.append(
            f"| {s.budget.name} ({s.budget.scope}) | {s.budget.period} {s.period_start[:10]}{' (ended)' if now is not None and period_ended(s, now) else ''} | {s.budget.usd:,.2f} | {s.spent_usd:,.2f} | "
            f"{s.remaining_usd:,.2f} | {s.forecast_end_usd:,.2f} ({lvl}: {s.forecast_low_usd:,.2f}-{s.forecast_high_usd:,.2f}) | "
            f"{pct(s.alert)} | {pct(s.forecast_alert)} | {s.unknown_requests:,} |"
        )
    unknown = ledger.unknown_by_model()
    tail = (
        f"\nRequests without a price (not counted as spend): {', '.join(f'{m} {n:,}' for m, n in unknown.items())}"
        if unknown
        else ""
    )
    until = f"requests before --at {statuses[0].at}" if at is not None and statuses else "requests up to now"
    return "\n".join(lines) + f"\n\nLedger by model ({until}):\n" + format_ledger(ledger, "model") + tail


# ------------------------------------------------------------------------------------------ backtest


@dataclass(frozen=True)
class BacktestPoint:
    trace: str
    method: str
    cut_fraction: float
    cut: str
    horizon_minutes: float
    actual_usd: float
    forecast_usd: float
    low_usd: float
    high_usd: float
    covered: bool

    @property
    def error(self) -> float:
        """Signed relative error of the point forecast."""
        return (self.forecast_usd - self.actual_usd) / self.actual_usd if self.actual_usd else float("nan")


@dataclass(frozen=True)
class BacktestReport:
    points: tuple[BacktestPoint, ...]
    level: float
    summary: dict[str, dict[str, float]] = field(default_factory=dict)  # method -> numbers

    def to_json(self) -> str:
        pts = [asdict(p) | {"error": p.error} for p in self.points]
        return json.dumps({"level": self.level, "summary": self.summary, "points": pts}, indent=1)


def backtest(rows_by_trace: dict[str, pd.DataFrame], params: BudgetParams) -> BacktestReport:
    """At each cut fraction of each trace, forecast the spend from the cut to the trace's end from the rows
    before the cut (history = all of them), for each method; `rows_by_trace` are `cost_rows` frames."""
    points = []
    for name, rows in rows_by_trace.items():
        known = rows[rows["cost_usd"].notna()].sort_values("timestamp")
        if known.empty:
            raise BeastError(f"backtest: {name} has no priced requests (add a price in the budgets config)")
        t0, t1 = known["timestamp"].min(), known["timestamp"].max()
        end = t1 + pd.Timedelta(milliseconds=1)
        for method in METHODS:
            p = replace(params, method=method)
            for frac in params.backtest_cuts:
                cut = t0 + (end - t0) * frac
                hours = (end - cut).total_seconds() / 3600
                fc = forecast_spend(known["timestamp"], known["cost_usd"].to_numpy(), cut, hours, t0, p)
                actual = float(known.loc[known["timestamp"] >= cut, "cost_usd"].sum())
                points.append(
                    BacktestPoint(
                        name,
                        method,
                        frac,
                        cut.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                        hours * 60,
                        actual,
                        fc.mean_usd,
                        fc.low_usd,
                        fc.high_usd,
                        fc.low_usd <= actual <= fc.high_usd,
                    )
                )
    summary = {}
    first = min(params.backtest_cuts)
    for method in METHODS:
        pts = [p for p in points if p.method == method]
        errs = np.array([p.error for p in pts])
        summary[method] = {
            "points": len(pts),
            "coverage": float(np.mean([p.covered for p in pts])),
            "mean_abs_error": float(np.mean(np.abs(errs))),
            "mean_error": float(np.mean(errs)),
        } | {f"error_at_{first:g}.{p.trace}": p.error for p in pts if p.cut_fraction == first}
    return BacktestReport(tuple(points), params.level, summary)


def format_backtest(report: BacktestReport) -> str:
    lines = [
        "| trace | method | cut | horizon min | actual USD | forecast USD | interval | covered | error |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {p.trace} | {p.method} | {p.cut_fraction:g} | {p.horizon_minutes:.1f} | {p.actual_usd:.3f} | {p.forecast_usd:.3f} | "
        f"{p.low_usd:.3f}-{p.high_usd:.3f} | {'yes' if p.covered else 'no'} | {p.error:+.1%} |"
        for p in report.points
    ]
    lines.append("")
    for method, s in report.summary.items():
        heads = ", ".join(f"{k.split('.', 2)[-1]} {v:+.1%}" for k, v in s.items() if k.startswith("error_at_"))
        lines.append(
            f"{method}: {report.level:.0%} interval coverage {s['coverage']:.2f} over {s['points']} cut points; "
            f"mean |error| {s['mean_abs_error']:.1%}; at the first cut: {heads}"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ edges


def budget_prices(params: BudgetParams, config: BudgetConfig) -> PriceTable:
    return merge_prices(load_prices(params.prices), config.prices)


def _read(paths: Sequence[Path], params: BudgetParams) -> pd.DataFrame:
    """Stored traces (a dataset folder) or trace files validated through a throwaway ingest."""
    from traces.load import load_traces

    return load_traces(list(paths), params.prices)


def parse_at(text: str | None) -> pd.Timestamp:
    if text is None:
        return pd.Timestamp.now(tz="UTC")
    try:
        ts = pd.Timestamp(text)
    except ValueError:
        raise BeastError(f"--at: expected a timestamp such as 2023-11-16T18:45:00Z, got {text!r}") from None
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def status_main(
    params_file: Path | None = None,
    at: str | None = None,
    traces: Sequence[Path] = (),
    config: Path | None = None,
    out: Path | None = None,
    now: pd.Timestamp | None = None,
) -> list[BudgetStatus]:
    """`beast monitor budget status`: the ledger up to `at`, every budget's status, status.json and one
    `beast.budget-state` file per budget (`<out>/<name>.budget-state.json`) for routers to pace on.

    A budget whose period (the one containing `at`) has ended before `now` (the wall clock) is a read-only
    replay: its status is printed and kept in status.json (`"period_ended": true`), but its budget-state
    file is not written (an existing one is left as it is): a router paced on a period that is over would
    divide what was left by the one minute `serving/budget.py` allows and spend it at once. To keep a
    replay away from the live files altogether, give `--out` another folder."""
    from serving.budget import write_state

    params = load_params(params_file, "budget", BudgetParams)
    params = with_overrides(params, config=config, out=out)
    cfg = load_budgets(params.config)
    when = parse_at(at)
    now = pd.Timestamp.now(tz="UTC") if now is None else now
    rows = cost_rows(_read(list(traces) or [params.traces], params), budget_prices(params, cfg))
    rows = rows[rows["timestamp"] < when].reset_index(drop=True)
    statuses = [budget_status(rows, spec, when, params) for spec in cfg.budgets]
    ledger = summarise(rows)
    doc = {
        "at": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "now": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "ledger": ledger.to_dict(),
        "budgets": [asdict(s) | {"period_ended": period_ended(s, now)} for s in statuses],
    }
    write_atomic(params.out / "status.json", (json.dumps(doc, indent=1) + "\n").encode())
    live = [s for s in statuses if not period_ended(s, now)]
    states = [write_state(params.out / f"{s.budget.name}.budget-state.json", s.to_state()) for s in live]
    print(format_status(statuses, ledger, at, now))
    for s in statuses:
        if period_ended(s, now):
            print(
                f"budget {s.budget.name}: its {s.budget.period} period {s.period_start} .. {s.period_end} ended before now "
                f"({doc['now']}): a read-only replay; {params.out / (s.budget.name + '.budget-state.json')} not written "
                "(a router must not pace on a period that is over)",
                file=sys.stderr,
            )
    print(
        f"wrote {params.out / 'status.json'} and {len(states)} budget-state file(s)"
        + (f": {', '.join(map(str, states))}" if states else ""),
        file=sys.stderr,
    )
    return statuses


def backtest_main(
    params_file: Path | None = None, traces: Sequence[Path] = (), config: Path | None = None, out: Path | None = None
) -> BacktestReport:
    """`beast monitor budget backtest`: forecast error and interval coverage on the Azure traces; writes backtest.json."""
    params = load_params(params_file, "budget", BudgetParams)
    params = with_overrides(params, config=config, out=out)
    cfg = load_budgets(params.config)
    table = budget_prices(params, cfg)
    by_trace = {
        Path(p).name: cost_rows(_read([Path(p)], params), table) for p in (list(traces) or params.backtest_traces)
    }
    report = backtest(by_trace, params)
    write_atomic(params.out / "backtest.json", (report.to_json() + "\n").encode())
    print(format_backtest(report))
    print(f"wrote {params.out / 'backtest.json'}", file=sys.stderr)
    return report
