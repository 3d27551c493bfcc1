"""What-if recommendations: which traffic could move to a cheaper model, how much that saves per day, and
at what predicted quality change (`beast monitor recommend`), ranked.

The rules, exact:

1. Rows. A failed request (`status` error: no answer whose quality could be compared) and a request served
   by a model that is not a candidate of the bundle (the predictors know nothing of it) are skipped and
   counted by code (`SkipCode`), never dropped silently. The rest are eligible.
2. Groups: (tenant, task, prompt size, serving model A). Size buckets cut `input_tokens` at `size_cuts`
   (default < 512 short, 512-4095 medium, >= 4096 long). A missing tenant or task is its own group.
3. Sampling. Predictions cost ~0.2 ms a row, so at most `max_rows` eligible rows are predicted: a group
   with fewer than `min_group_rows` rows is skipped (`small_group`, its rows counted) and not predicted;
   every other group keeps min(n, max(min_group_rows, ceil(n x r))) rows, a seeded uniform sample within
   the group, with the largest r that fits `max_rows` (the floors alone may exceed it with very many
   groups). Each predicted row stands for n_group / n_group_predicted rows of the trace, so every group's
   requests per day stay exact and its savings are scaled up by its own sampling ratio; the report gives
   the overall ratio (rows predicted / eligible).
4. Per group and every other candidate B (all of them, or `targets`), from the champion predictors
   (`Router.predict_many`, both sides from the same predictors so they are consistent):
   - quality change = mean over the group's rows of q_B - q_A, with a 95% normal CI (mean +- 1.96 sd /
     sqrt(n)). The CI is the spread of the per-prompt predicted difference; the predictors' own error is
     not in it.
   - savings per day = sum over rows of (predicted cost A - predicted cost B) x rows it stands for / span
     days. Span = last - first timestamp of the whole trace, at least `min_span_hours`.
   - for context: requests per day, the group's actual spend per day (logged or priced `cost_usd` of the
     predicted rows, scaled like the savings; rows without one left out and their share reported), the
     predicted spend of A and B, and A's mean logged quality label when the rows have one.
5. A move is kept when its quality change (or, with `require_ci`, the CI's lower end) is >= -max_quality_drop
   and its savings > min_usd_per_day; per group the one with the largest savings; ranked by savings per
   day (ties by group), the first `top` reported.

Rows whose serving model has no prediction (NaN) are skipped as `no_prediction`; a B without a finite
prediction on every row of the group is not considered for that group.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from core.config import Count, NonNegative, NonNegativeInt
from traces.contract import STATUS_ERROR

GROUP_KEYS: tuple[str, ...] = ("tenant", "task", "size", "model")
Z95 = 1.959963984540054  # two-sided 95% normal quantile
ROW_COLUMNS = (*GROUP_KEYS, "represents", "per_day", "cost_usd")  # what the pure core reads


class SkipCode(StrEnum):
    ERROR_STATUS = "error_status"
    NOT_A_CANDIDATE = "not_a_candidate"
    SMALL_GROUP = "small_group"
    NO_PREDICTION = "no_prediction"


SKIP_DOCS: dict[SkipCode, str] = {
    SkipCode.ERROR_STATUS: "failed request (status error): no answer to compare",
    SkipCode.NOT_A_CANDIDATE: "served by a model that is not a candidate of the bundle",
    SkipCode.SMALL_GROUP: "its group (tenant, task, size, model) has fewer than min_group_rows rows (or predicted rows)",
    SkipCode.NO_PREDICTION: "the predictors gave no finite quality or cost for the serving model",
}


@dataclass(frozen=True)
class RecommendParams:
    """Mirrors params.yaml -> recommend."""

    size_cuts: tuple[int, ...] = (512, 4096)  # input_tokens cut points between size buckets
    size_names: tuple[str, ...] = ("short", "medium", "long")  # one more than size_cuts
    max_quality_drop: NonNegative = 0.02  # keep moves whose predicted quality change >= -this
    require_ci: bool = False  # True: the 95% CI's lower end, not the mean, must clear -max_quality_drop
    min_usd_per_day: NonNegative = 0.1  # keep moves saving more than this
    min_group_rows: Count = 20  # rows a group needs (and gets in the sample) to be evaluated
    targets: tuple[str, ...] = ()  # models B may be; empty = every bundle candidate
    top: Count = 10
    max_rows: Count = 20000  # rows predicted at most (seeded sample within each group above it)
    seed: NonNegativeInt = 0
    min_span_hours: NonNegative = 1.0  # floor of the trace span used for per-day figures
    out: Path = Path("data/recommend")

    def __post_init__(self) -> None:
        if len(self.size_names) != len(self.size_cuts) + 1 or list(self.size_cuts) != sorted(set(self.size_cuts)):
            raise ValueError(
                f"recommend: size_cuts must increase and size_names have one more entry; got {self.size_cuts} and {self.size_names}"
            )
        if (
            self.max_rows < 1
            or self.min_group_rows < 1
            or self.top < 1
            or self.min_span_hours <= 0
            or self.max_quality_drop < 0
        ):
            raise ValueError(
                f"recommend: need max_rows, min_group_rows, top >= 1, min_span_hours > 0, max_quality_drop >= 0; got {self}"
            )


@dataclass(frozen=True)
class Recommendation:
    tenant: str | None
    task: str | None
    size: str
    size_range: str  # e.g. "< 512 tokens"
    from_model: str
    to_model: str
    rows: int  # predicted rows of the group
    requests_per_day: float
    actual_usd_per_day: float  # logged / priced spend of the group's rows that have a cost
    priced_share: float  # share of the group's rows with a cost
    predicted_usd_per_day_from: float
    predicted_usd_per_day_to: float
    savings_usd_per_day: float
    quality_from: float  # mean predicted quality of A on the group's rows
    quality_to: float
    quality_change: float
    quality_change_ci: tuple[float, float]
    observed_quality_from: float | None = None  # mean logged quality label of A on the group's rows, if any

    @property
    def savings_share(self) -> float:
        """Savings as a share of the group's predicted spend on A."""
        return (
            self.savings_usd_per_day / self.predicted_usd_per_day_from
            if self.predicted_usd_per_day_from > 0
            else math.nan
        )

    def sentence(self) -> str:
        who = f"tenant {self.tenant}'s " if self.tenant else ""
        task = f" {self.task}" if self.task else ""
        lo, hi = self.quality_change_ci
        return (
            f"Moving {who}{self.size} ({self.size_range}){task} prompts from {self.from_model} to {self.to_model} "
            f"saves ${self.savings_usd_per_day:,.2f} per day ({self.savings_share:.0%} of their predicted spend; "
            f"{self.requests_per_day:,.0f} requests/day) at a predicted quality change of {self.quality_change:+.3f} "
            f"(95% CI {lo:+.3f} to {hi:+.3f})."
        )

    def to_json(self) -> dict[str, object]:
        return asdict(self) | {
            "quality_change_ci": list(self.quality_change_ci),
            "savings_share": self.savings_share,
            "sentence": self.sentence(),
        }


@dataclass(frozen=True)
class Ranked:
    """Every group's best passing move, ranked (not cut to `top`), and what was skipped on the way."""

    moves: tuple[Recommendation, ...]
    skipped: Mapping[SkipCode, int]
    groups: int  # groups evaluated (enough rows)


@dataclass(frozen=True)
class RecommendReport:
    recommendations: tuple[Recommendation, ...]  # the first `top` of the ranking
    groups: int
    groups_with_move: int
    rows_read: int
    rows_eligible: int
    rows_in_groups: int  # eligible rows of groups with at least min_group_rows rows: the sampled population
    rows_predicted: int
    skipped: Mapping[SkipCode, int]  # rows of the trace by code (no_prediction scaled up from the sample)
    span_days: float
    models: tuple[str, ...]
    predict_s: float
    params: RecommendParams

    @property
    def sample_ratio(self) -> float:
        """Rows predicted / rows they were sampled from (1.0: nothing sampled)."""
        return self.rows_predicted / self.rows_in_groups if self.rows_in_groups else 1.0

    @property
    def total_savings_usd_per_day(self) -> float:
        return sum(r.savings_usd_per_day for r in self.recommendations)

    def to_json(self) -> dict[str, object]:
        scalars = {
            k: getattr(self, k)
            for k in (
                "groups",
                "groups_with_move",
                "rows_read",
                "rows_eligible",
                "rows_in_groups",
                "rows_predicted",
                "span_days",
                "predict_s",
            )
        }
        return scalars | {
            "sample_ratio": self.sample_ratio,
            "total_savings_usd_per_day": self.total_savings_usd_per_day,
            "skipped": {str(k): v for k, v in self.skipped.items()},
            "models": list(self.models),
            "params": json.loads(json.dumps(asdict(self.params), default=str)),
            "recommendations": [r.to_json() for r in self.recommendations],
        }

    def markdown(self) -> str:
        """The ranked table, the sentences and what the numbers rest on."""
        p = self.params
        lines = [
            f"Recommendations: {len(self.recommendations)} of {self.groups_with_move} groups with a move (of {self.groups} evaluated); "
            f"quality change >= -{p.max_quality_drop:g}{' (CI lower end)' if p.require_ci else ''}, savings > ${p.min_usd_per_day:g}/day.",
            "",
            "| # | tenant | task | size | from | to | requests/day | actual $/day | predicted $/day from -> to | saves $/day | quality change (95% CI) |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for i, r in enumerate(self.recommendations, 1):
            lo, hi = r.quality_change_ci
            lines.append(
                f"| {i} | {r.tenant or '-'} | {r.task or '-'} | {r.size} | {r.from_model} | {r.to_model} | {r.requests_per_day:,.0f} | "
                f"{r.actual_usd_per_day:,.2f} | {r.predicted_usd_per_day_from:,.2f} -> {r.predicted_usd_per_day_to:,.2f} | "
                f"{r.savings_usd_per_day:,.2f} | {r.quality_change:+.3f} ({lo:+.3f}, {hi:+.3f}) |"
            )
        lines += ["", *(f"{i}. {r.sentence()}" for i, r in enumerate(self.recommendations, 1)), ""]
        skipped = ", ".join(f"{k} {v:,}" for k, v in self.skipped.items() if v) or "none"
        lines.append(
            f"Per day over a trace span of {self.span_days * 24:,.2f} h; {self.rows_predicted:,} of {self.rows_in_groups:,} rows in groups of >= {p.min_group_rows} rows predicted "
            f"(sample ratio {self.sample_ratio:.3f}, seed {p.seed}; per-day figures scaled per group by rows / predicted rows) in {self.predict_s:.1f} s. "
            f"Rows read {self.rows_read:,}; skipped: {skipped}. Quality and cost are the champion predictors'; the CI is the spread of the "
            "per-prompt predicted difference, not the predictors' error."
        )
        return "\n".join(lines)


class Predictor(Protocol):
    """What the core needs of `serving.router.Router` (tests pass a stand-in)."""

    models: tuple[str, ...]

    def predict_many(self, requests: Sequence[object]) -> tuple[np.ndarray, np.ndarray]: ...


# --- the pure core ------------------------------------------------------------------------------------


def size_ranges(params: RecommendParams) -> dict[str, str]:
    """Bucket name -> its token range in words."""
    cuts = params.size_cuts
    ranges = (
        [f"< {cuts[0]} tokens"]
        + [f"{a}-{b - 1} tokens" for a, b in zip(cuts[:-1], cuts[1:])]
        + [f">= {cuts[-1]} tokens"]
        if cuts
        else ["any size"]
    )
    return dict(zip(params.size_names, ranges, strict=True))


def size_bucket(input_tokens: pd.Series, params: RecommendParams) -> pd.Series:
    """Bucket name per row: index of the first cut above input_tokens."""
    idx = np.searchsorted(np.asarray(params.size_cuts), input_tokens.to_numpy(dtype=np.int64), side="right")
    return pd.Series(np.asarray(params.size_names, dtype=object)[idx], index=input_tokens.index)


def row_skips(frame: pd.DataFrame, models: Sequence[str]) -> pd.Series:
    """Skip code per row ("" = eligible): failed first, then not a bundle candidate."""
    status = frame["status"].astype(str).str.lower()
    code = np.where(
        status == STATUS_ERROR,
        SkipCode.ERROR_STATUS.value,
        np.where(frame["model"].isin(list(models)), "", SkipCode.NOT_A_CANDIDATE.value),
    )
    return pd.Series(code, index=frame.index)


def span_days(timestamps: pd.Series, params: RecommendParams) -> float:
    """Last minus first timestamp, in days, at least `min_span_hours`."""
    t = pd.to_datetime(timestamps, utc=True)
    seconds = (t.max() - t.min()).total_seconds() if len(t) else 0.0
    return max(seconds, params.min_span_hours * 3600) / 86400


@dataclass(frozen=True)
class Sample:
    rows: pd.DataFrame  # the rows to predict, with ROW_COLUMNS (+ label)
    small_rows: int  # eligible rows in groups with fewer than min_group_rows rows: not predicted
    population: int  # eligible rows in the other groups: what the sample is drawn from


def quotas(n: np.ndarray, params: RecommendParams) -> np.ndarray:
    """Rows to predict per group (sizes `n`, all >= min_group_rows): all of them when the total fits in
    `max_rows`, else min(n, max(min_group_rows, ceil(n x r))) with the largest r (bisection) whose total
    fits. The floor keeps every group evaluable; when the floors alone exceed max_rows they are kept anyway."""

    def at(r: float) -> np.ndarray:
        return np.minimum(n, np.maximum(params.min_group_rows, np.ceil(n * r))).astype(np.int64)

    if n.sum() <= params.max_rows:
        return n.astype(np.int64)
    lo, hi = 0.0, 1.0
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if at(mid).sum() <= params.max_rows else (lo, mid)
    return at(lo)


def sample_rows(frame: pd.DataFrame, params: RecommendParams, days: float) -> Sample:
    """Eligible rows -> the rows to predict, with the core's columns: groups of at least `min_group_rows`
    rows, each sampled (seeded, uniform within the group) down to its quota, each row carrying the trace rows
    it stands for (group size / predicted rows of the group) and the requests per day that makes."""
    rows = pd.DataFrame(
        {
            "tenant": frame.get("tenant", None),
            "task": frame.get("task", None),
            "size": size_bucket(frame["input_tokens"], params),
            "model": frame["model"],
            "cost_usd": pd.to_numeric(frame["cost_usd"], errors="coerce") if "cost_usd" in frame else np.nan,
            "label": pd.to_numeric(frame["quality"], errors="coerce") if "quality" in frame else np.nan,
        },
        index=frame.index,
    )
    rows[["tenant", "task"]] = rows[["tenant", "task"]].astype(object).where(rows[["tenant", "task"]].notna(), "")
    group = rows.groupby(list(GROUP_KEYS), sort=False).ngroup().to_numpy()
    n = np.bincount(group) if len(group) else np.zeros(0, dtype=np.int64)
    big = n >= params.min_group_rows
    quota = np.zeros(len(n), dtype=np.int64)
    quota[big] = quotas(n[big], params)
    order = np.lexsort((np.random.default_rng(params.seed).random(len(group)), group))  # random order within each group
    rank = np.empty(len(group), dtype=np.int64)
    rank[order] = np.arange(len(group)) - np.concatenate([[0], np.cumsum(n)[:-1]])[group[order]]
    keep = rank < quota[group]
    out = rows[keep].copy()
    out["represents"] = n[group[keep]] / quota[group[keep]]
    out["per_day"] = out["represents"] / days
    return Sample(out, int(n[~big].sum()), int(n[big].sum()))


def rank_moves(
    rows: pd.DataFrame, quality: np.ndarray, cost: np.ndarray, models: Sequence[str], params: RecommendParams
) -> Ranked:
    """Every group's best passing move, ranked by savings per day (see the module docstring).

    `rows`: one row per predicted request with `ROW_COLUMNS` (tenant / task "" when missing; `represents` =
    trace rows it stands for, `per_day` = requests per day it stands for; optional `label`, the logged
    quality label); `quality`, `cost`: len(rows) x len(models) predictions. Every row's model must be one
    of `models` (the caller skips the others as not_a_candidate)."""
    models = tuple(models)
    index = {m: i for i, m in enumerate(models)}
    unknown = sorted(set(rows["model"]) - set(index))
    if unknown:
        raise ValueError(
            f"rows served by models without predictions: {', '.join(unknown)} (skip them as not_a_candidate first)"
        )
    quality, cost = np.asarray(quality, dtype=float), np.asarray(cost, dtype=float)
    if quality.shape != (len(rows), len(models)) or cost.shape != quality.shape:
        raise ValueError(f"predictions must be {len(rows)} x {len(models)}, got {quality.shape} and {cost.shape}")
    skipped = {SkipCode.NO_PREDICTION: 0.0, SkipCode.SMALL_GROUP: 0.0}
    a = rows["model"].map(index).to_numpy(dtype=np.intp)
    r = np.arange(len(rows))
    qa, ca = quality[r, a], cost[r, a]
    ok = np.isfinite(qa) & np.isfinite(ca)
    represents = rows["represents"].to_numpy(dtype=float)
    skipped[SkipCode.NO_PREDICTION] += represents[~ok].sum()
    rows, quality, cost, qa, ca, a, represents = rows[ok], quality[ok], cost[ok], qa[ok], ca[ok], a[ok], represents[ok]

    gid = rows.groupby(list(GROUP_KEYS), sort=True).ngroup().to_numpy()
    n_groups = int(gid.max()) + 1 if len(gid) else 0
    n = np.bincount(gid, minlength=n_groups)
    big = n >= params.min_group_rows
    skipped[SkipCode.SMALL_GROUP] += np.bincount(gid, weights=represents, minlength=n_groups)[~big].sum()

    def per_group(values: np.ndarray) -> np.ndarray:  # sums over each group's rows, column by column
        return np.stack(
            [np.bincount(gid, weights=values[:, j], minlength=n_groups) for j in range(values.shape[1])], axis=1
        )

    per_day = rows["per_day"].to_numpy(dtype=float)
    d = quality - qa[:, None]
    s = (ca[:, None] - cost) * per_day[:, None]
    finite = np.isfinite(d) & np.isfinite(s)
    d0, s0 = np.where(finite, d, 0.0), np.where(finite, s, 0.0)
    n_finite = per_group(finite.astype(float))
    mean = per_group(d0) / np.maximum(n, 1)[:, None]
    var = np.clip(per_group(d0**2) - n[:, None] * mean**2, 0, None) / np.maximum(n - 1, 1)[:, None]
    half = Z95 * np.sqrt(var / np.maximum(n, 1)[:, None])
    savings = per_group(s0)

    first = np.unique(gid, return_index=True)[1]  # a row of each group: its keys and model A
    a_group = a[first]
    allowed = np.array([not params.targets or m in params.targets for m in models])
    valid = big[:, None] & (n_finite == n[:, None]) & allowed[None, :]
    valid[np.arange(n_groups), a_group] = False
    gate = mean - half if params.require_ci else mean
    passing = valid & (gate >= -params.max_quality_drop) & (savings > params.min_usd_per_day)

    cost_usd = rows["cost_usd"].to_numpy(dtype=float)
    priced = np.isfinite(cost_usd)
    actual = np.bincount(gid, weights=np.where(priced, cost_usd, 0.0) * per_day, minlength=n_groups)
    priced_share = np.bincount(gid, weights=priced.astype(float), minlength=n_groups) / np.maximum(n, 1)
    requests = np.bincount(gid, weights=per_day, minlength=n_groups)
    spend = per_group(np.where(np.isfinite(cost), cost, 0.0) * per_day[:, None])
    labels = rows["label"].to_numpy(dtype=float) if "label" in rows else np.full(len(rows), np.nan)
    labelled = np.bincount(gid, weights=np.isfinite(labels).astype(float), minlength=n_groups)
    observed = np.bincount(gid, weights=np.where(np.isfinite(labels), labels, 0.0), minlength=n_groups) / np.maximum(
        labelled, 1
    )
    q_mean = per_group(np.where(np.isfinite(quality), quality, 0.0)) / np.maximum(n, 1)[:, None]
    ranges = size_ranges(params)
    keys = rows[list(GROUP_KEYS)].to_numpy(dtype=object)[first]

    moves = []
    for g in np.flatnonzero(passing.any(axis=1)):
        b = int(np.argmax(np.where(passing[g], savings[g], -np.inf)))
        tenant, task, size, _ = keys[g]
        i = a_group[g]
        moves.append(
            Recommendation(
                tenant=tenant or None,
                task=task or None,
                size=size,
                size_range=ranges[size],
                from_model=models[i],
                to_model=models[b],
                rows=int(n[g]),
                requests_per_day=float(requests[g]),
                actual_usd_per_day=float(actual[g]),
                priced_share=float(priced_share[g]),
                predicted_usd_per_day_from=float(spend[g, i]),
                predicted_usd_per_day_to=float(spend[g, b]),
                savings_usd_per_day=float(savings[g, b]),
                quality_from=float(q_mean[g, i]),
                quality_to=float(q_mean[g, b]),
                quality_change=float(mean[g, b]),
                quality_change_ci=(float(mean[g, b] - half[g, b]), float(mean[g, b] + half[g, b])),
                observed_quality_from=float(observed[g]) if labelled[g] else None,
            )
        )
    moves.sort(key=lambda m: (-m.savings_usd_per_day, m.tenant or "", m.task or "", m.size, m.from_model))
    return Ranked(tuple(moves), {k: int(round(v)) for k, v in skipped.items()}, int(big.sum()))


def recommend(
    rows: pd.DataFrame, quality: np.ndarray, cost: np.ndarray, models: Sequence[str], params: RecommendParams
) -> tuple[Recommendation, ...]:
    """The top `params.top` moves (see `rank_moves`)."""
    return rank_moves(rows, quality, cost, models, params).moves[: params.top]


def route_requests(frame: pd.DataFrame) -> list:
    """One `RouteRequest` per trace row: prompt and task when logged, input tokens, timestamp."""
    from serving.router import RouteRequest

    n = len(frame)
    prompts = frame["prompt"].astype(object).where(frame["prompt"].notna(), None) if "prompt" in frame else [None] * n
    tasks = frame["task"].astype(object).where(frame["task"].notna(), None) if "task" in frame else [None] * n
    when = pd.to_datetime(frame["timestamp"], utc=True).dt.to_pydatetime()
    tokens = frame["input_tokens"].to_numpy(dtype=np.int64).tolist()
    return [RouteRequest(p, t, k, w) for p, t, k, w in zip(prompts, tokens, tasks, when, strict=True)]


def recommend_for_frame(
    frame: pd.DataFrame, router: Predictor, params: RecommendParams = RecommendParams()
) -> RecommendReport:
    """Trace rows (contract v1) + the champion predictors -> ranked recommendations; no file I/O."""
    frame = frame.reset_index(drop=True)
    skip = row_skips(frame, router.models)
    eligible = frame[skip == ""]
    days = span_days(frame["timestamp"], params)
    sample = sample_rows(eligible, params, days)
    rows = sample.rows
    start = time.perf_counter()
    n_models = len(router.models)
    quality, cost = (
        router.predict_many(route_requests(eligible.loc[rows.index]))
        if len(rows)
        else (np.empty((0, n_models)), np.empty((0, n_models)))
    )
    predict_s = time.perf_counter() - start
    ranked = rank_moves(rows, quality, cost, router.models, params)
    counts = skip[skip != ""].value_counts()
    skipped = {
        code: int(counts.get(code.value, 0)) for code in (SkipCode.ERROR_STATUS, SkipCode.NOT_A_CANDIDATE)
    } | dict(ranked.skipped)
    skipped[SkipCode.SMALL_GROUP] += sample.small_rows
    return RecommendReport(
        recommendations=ranked.moves[: params.top], groups=ranked.groups, groups_with_move=len(ranked.moves), rows_read=len(frame),
        rows_eligible=len(eligible), rows_in_groups=sample.population, rows_predicted=len(rows), skipped=skipped, span_days=days,
        models=tuple(router.models), predict_s=predict_s, params=params,
    )  # fmt: skip


# --- the edge -----------------------------------------------------------------------------------------


def main(
    traces: Sequence[Path] = (),
    bundle: Path = Path("data/bundle"),
    params_file: Path | None = None,
    out: Path | None = None,
) -> RecommendReport:
    """`beast monitor recommend`: read the traces (default: the dataset, train.traces) and the champion bundle,
    write recommendations.json and recommendations.md to `out` (default recommend.out), print the top."""
    from core.config import load_params
    from core.errors import BeastError
    from core.files import write_atomic
    from models.train import TrainParams
    from serving.bundle import BundleError
    from serving.router import Router
    from traces.load import load_traces

    try:
        params = load_params(params_file, "recommend", RecommendParams)
    except ValueError as exc:
        raise BeastError(str(exc)) from None
    params = replace(params, out=out) if out is not None else params
    train = load_params(params_file, "train", TrainParams)
    frame = load_traces(list(traces) or [train.traces], train.prices)
    if not Path(bundle).exists():
        raise BeastError(f"{bundle}: no bundle: build the champion bundle with `make run`")
    try:
        router = Router.load(Path(bundle))
    except (BundleError, OSError) as exc:
        raise BeastError(f"{bundle}: {exc}") from None
    name = ", ".join(map(str, traces)) or str(train.traces)
    print(f"recommend on {name}: {len(frame):,} rows, bundle {bundle} ({len(router.models)} candidates)")
    report = recommend_for_frame(frame, router, params)
    params.out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = params.out / "recommendations.json", params.out / "recommendations.md"
    write_atomic(json_path, (json.dumps(report.to_json(), indent=2) + "\n").encode())
    write_atomic(
        md_path,
        f"# What-if recommendations\n\nTraces: {name}; bundle: {bundle}; written {dt.datetime.now(dt.UTC):%Y-%m-%dT%H:%MZ}.\n\n{report.markdown()}\n".encode(),
    )
    print(report.markdown())
    print(f"wrote {json_path} and {md_path}")
    return report
