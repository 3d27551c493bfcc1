"""Stage `evaluate` (`beast eval routing`): how good is routing, measured on logged quality and cost with prompts the router never saw.

Input: any contract-v1 trace file (or dataset folder) with `quality` labels where a `prompt_id` was
answered by two or more models. Group k-fold by prompt_id (seeded): per fold the quality predictor
(`models.quality.fit`) and the cost predictor (`models.cost.fit`) are trained on the train folds only,
then every router picks one of the models that answered each test prompt, and is scored with the logged
quality and cost of that model's answer (several rows of one (prompt, model) count as their mean).

Routers, all on the same test prompts:
- `learned/threshold`, `learned/tradeoff`: the shipped policies (`serving.router.POLICIES`, their own
  `choose()`) on predicted quality and predicted USD (P50 head, as the router uses), swept over their knob
  (target quality; lambda). `budget` is not swept on its own: it is `tradeoff` with a lambda its
  controller moves to track a spend rate, so its operating points lie on the tradeoff curve.
- `knn/threshold`, `knn/tradeoff`: the same policies on kNN estimates (each model's mean quality and mean
  cost on the k training prompts nearest in text features; `models.quality.knn_baseline`; a model none of
  the neighbours answered gets its prior).
- `prior/tradeoff`: each model's train-fold mean quality and cost (one model for every prompt per lambda).
- `always/<model>`: one model for everything. `oracle`: tradeoff on the *actual* quality and cost.
- `random`: a seeded share x of prompts to the strong model, the rest to the weak one (realised decisions;
  the RouteLLM 0.5-APGR reference). `pair/learned`: the share x of prompts with the largest predicted quality
  gain of strong over weak go to strong.

Metrics are in `evaluation/metrics.py`. Outputs (fixed names, in --out): `report.json`, `decisions.jsonl`
(one line per router, knob value and test prompt: every number is recomputable from it and the traces),
`report.md`, `cost_quality.png`, `pgr.png`. They are a pure function of the inputs (the DVC `evaluate` stage
hashes them): no wall-clock time in report.json / report.md (the run's duration is printed on stdout only),
PNGs without a software stamp (`core.plots.save_figure`).
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from core.config import AtLeastTwo, Count, Fraction, NonNegativeInt, load_params
from core.errors import BeastError
from core.files import write_atomic
from evaluation import metrics as rm
from features.build import FeatureParams, build_features
from features.model_cards import ModelCard, load_cards
from models import calibration as cal
from models import cost, quality
from models.common import Split
from traces.load import load_traces
from traces.prices import PriceTable, load_prices

SCHEMA = "beast.route_bench/1"
ORACLE = "oracle"
OUTPUTS = ("report.json", "decisions.jsonl", "report.md", "cost_quality.png", "pgr.png")


@dataclass(frozen=True)
class Grid:
    """Knob values: `n` points from low to high (geometric when `log`), with 0 first when `zero`."""

    low: float
    high: float
    n: AtLeastTwo
    log: bool = False
    zero: bool = False

    def values(self) -> tuple[float, ...]:
        vals = np.geomspace(self.low, self.high, self.n) if self.log else np.linspace(self.low, self.high, self.n)
        short = [float(f"{v:.6g}") for v in vals]  # short decimals: decisions.jsonl stays small and exact
        return tuple(dict.fromkeys(([0.0] if self.zero else []) + short))


@dataclass(frozen=True)
class EvalParams:
    """Mirrors params.yaml -> bench."""

    folds: AtLeastTwo = 5
    seed: NonNegativeInt = 0
    prices: Path = Path("data/prices.yaml")  # to cost rows without cost_usd (through a throwaway ingest)
    cards: Path = Path("data/models.yaml")
    grid: AtLeastTwo = 41  # knob values per policy router, calibrated on the training folds' predictions (levels 0..1)
    shares: Grid = field(default_factory=lambda: Grid(0.0, 1.0, 41))  # random / pair: target share of calls to strong
    random_seeds: Count = 200  # random strong/weak routers: APGR mean and 95th percentile over this many seeds
    bootstrap: Count = 1000  # resamples of test prompts for the savings, APGR and CPT CIs
    level: Fraction = 0.95
    quality_share: Fraction = 0.95  # cost saved at >= this share of the strong model's mean quality (and at 100%)


@dataclass(frozen=True)
class RouterScore:
    knobs: tuple[float | None, ...]
    points: tuple[tuple[float, float], ...]  # [mean cost USD, mean quality] per knob value
    aiq: float
    aiq_vs_oracle: float | None
    aiq_to_strong: float  # the same area over [cheapest model's cost, strong model's cost]: where routing trades
    aiq_to_strong_vs_oracle: float | None
    cost_savings: float | None  # share of always-strong's mean cost saved at >= its mean quality
    cost_savings_ci: tuple[float | None, float | None]
    savings_reached: float  # share of bootstrap resamples in which some point reached the strong model's quality
    savings_vs_oracle: float | None
    cost_savings_95: float | None  # the same at >= `quality_share` (0.95) of the strong model's mean quality
    cost_savings_95_ci: tuple[float | None, float | None]
    regret: float  # mean over knob values of the mean selection regret
    regret_by_knob: tuple[float, ...]
    prompts: int


@dataclass(frozen=True)
class PairCurve:
    apgr: float
    cpt50: float | None
    cpt80: float | None
    shares: tuple[float, ...]  # realised share of strong calls
    pgr: tuple[float, ...]
    apgr_ci: tuple[float | None, float | None] = (None, None)  # bootstrap over test prompts, decisions fixed
    cpt50_ci: tuple[float | None, float | None] = (None, None)
    cpt80_ci: tuple[float | None, float | None] = (None, None)


@dataclass(frozen=True)
class PairScore:
    """The strong/weak pair. Top-level apgr / cpt / curve = `pair/learned`; every pair router in `routers`;
    `random` is one seeded random router (its decisions are in decisions.jsonl), `random_seeds` many."""

    strong: str
    weak: str
    q_strong: float
    q_weak: float
    prompts: int
    apgr: float
    cpt50: float | None
    cpt80: float | None
    shares: tuple[float, ...]
    pgr: tuple[float, ...]
    random: PairCurve
    apgr_ci: tuple[float | None, float | None] = (None, None)
    routers: Mapping[str, PairCurve] = field(default_factory=dict)
    random_seeds: rm.RandomPair | None = None


@dataclass(frozen=True)
class BenchReport:
    traces: str
    folds: int  # 0: transfer (trained on `train_traces`, tested on every prompt of `traces`)
    seed: int
    prompts: int
    models: tuple[str, ...]
    cheapest: str
    cost_range: tuple[float, float]
    savings_reference: str
    routers: Mapping[str, RouterScore]
    pair: PairScore
    notes: tuple[str, ...]
    seconds: float  # wall time of the run: printed, never written (the outputs stay a function of the inputs)
    train_traces: str | None = None
    fallback_folds: int = 0  # folds whose quality heads fell back to the per-model prior

    def to_json(self) -> str:
        body = {k: v for k, v in asdict(self).items() if k != "seconds"}
        return json.dumps({"schema": SCHEMA} | body, indent=1, allow_nan=False)


# ------------------------------------------------------------------------------------------ data


def bench_rows(traces: pd.DataFrame) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """Rows with quality, prompt, prompt_id and a known cost, of prompts answered by >= 2 models; notes say what was dropped."""
    rows = quality.quality_rows(traces)
    notes = []
    if rows.empty:
        raise BeastError("no rows with quality, prompt and prompt_id: the routing bench needs quality labels")
    if "cost_usd" not in rows or rows["cost_usd"].isna().all():
        raise BeastError("no row has a cost (cost_usd, or a price for its model): cannot score cost")
    unpriced = rows["cost_usd"].isna()
    if unpriced.any():
        notes.append(
            f"{int(unpriced.sum()):,} labelled rows without a cost dropped (models without a price: {', '.join(sorted(rows.loc[unpriced, 'model'].astype(str).unique()))})"
        )
        rows = rows[~unpriced]
    answered = rows.groupby("prompt_id")["model"].nunique()
    multi = answered.index[answered >= 2]
    if len(multi) < len(answered):
        notes.append(f"{len(answered) - len(multi):,} prompts answered by a single model dropped")
    rows = rows[rows["prompt_id"].isin(multi)].reset_index(drop=True)
    if rows["prompt_id"].nunique() < 2:
        raise BeastError(
            f"{rows['prompt_id'].nunique()} prompt(s) answered by two or more models: the routing bench needs many"
        )
    return rows, tuple(notes)


def candidates(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (prompt, model): the first logged row's request fields, mean quality and mean cost."""
    rows = rows.sort_values(["prompt_id", "model"], kind="stable")
    first = rows.drop_duplicates(["prompt_id", "model"]).drop(columns=["quality", "cost_usd"])
    means = rows.groupby(["prompt_id", "model"], as_index=False).agg(
        quality=("quality", "mean"), cost_usd=("cost_usd", "mean")
    )
    return first.merge(means, on=["prompt_id", "model"], validate="one_to_one").reset_index(drop=True)


def assign_folds(prompt_ids: pd.Series, folds: int, seed: int) -> np.ndarray:
    """Group k-fold: a seeded permutation of the distinct prompt_ids dealt round-robin into `folds` folds."""
    uniq, inverse = np.unique(prompt_ids.astype(str).to_numpy(), return_inverse=True)
    if folds < 2 or folds > len(uniq):
        raise BeastError(f"--folds {folds}: need 2 <= folds <= {len(uniq)} (the number of prompts)")
    fold = np.empty(len(uniq), dtype=int)
    fold[np.random.default_rng(seed).permutation(len(uniq))] = np.arange(len(uniq)) % folds
    return fold[inverse]


def pick_pair(rows: pd.DataFrame, strong: str | None, weak: str | None) -> tuple[str, str]:
    """Defaults: strong = highest mean logged quality, weak = lowest mean cost; a named model must be present."""
    models = sorted(rows["model"].astype(str).unique())
    for role, name in (("strong", strong), ("weak", weak)):
        if name is not None and name not in models:
            raise BeastError(f"--{role} {name!r}: no such model in the traces; models: {', '.join(models)}")
    strong = strong or str(rows.groupby("model")["quality"].mean().idxmax())
    weak = weak or str(rows.groupby("model")["cost_usd"].mean().idxmin())
    if strong == weak:
        raise BeastError(f"strong and weak are the same model ({strong}): name them with --strong / --weak")
    return strong, weak


# ------------------------------------------------------------------------------------------ predictions


PREDICTED = ("q_learned", "c_learned", "q_knn", "c_knn", "q_prior", "c_prior")


@dataclass(frozen=True)
class FoldFit:
    """Predictions (columns `PREDICTED`) for one fold's test candidates and for its training candidates (the
    knob grids are calibrated on the latter), aligned with the candidate frames given to `fit_fold`."""

    test: Mapping[str, np.ndarray]
    train: Mapping[str, np.ndarray]
    heads: str
    fallback: str | None


def _predict(
    qpred: quality.QualityPredictor,
    cpred: cost.CostPredictor,
    rows: pd.DataFrame,
    prices: PriceTable,
    means: pd.DataFrame,
    default_q: float,
) -> dict[str, np.ndarray]:
    """Learned and prior predictions for candidate rows; a model the training side never saw gets the
    training mean quality (no head, no prior of its own)."""
    q_prior = rows["model"].map(means["quality"]).to_numpy(dtype=float)
    q_prior = np.where(np.isnan(q_prior), default_q, q_prior)
    c_learned = cpred.predict_cost(rows, prices)["p50"].to_numpy(dtype=float)
    c_prior = rows["model"].map(means["cost_usd"]).to_numpy(dtype=float)
    q_learned = qpred.predict(build_features(rows, qpred.spec), rows["model"])
    return {
        "q_learned": np.where(np.isnan(q_learned), q_prior, q_learned),
        "c_learned": c_learned,
        "q_prior": q_prior,
        "c_prior": np.where(np.isnan(c_prior), c_learned, c_prior),
    }


def _knn(
    qpred: quality.QualityPredictor, train: pd.DataFrame, test: pd.DataFrame, k: int, prior: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """kNN estimates for `test` candidates from `train` rows (each model's mean over the k nearest training
    prompts on the same text features as the learned heads); no neighbour answered: the prior."""
    both = pd.concat([train, test], ignore_index=True)
    side = Split(np.arange(len(both)) < len(train), np.arange(len(both)) >= len(train))
    X = build_features(both, qpred.spec)
    q = quality.knn_baseline(X, both, side, k, "quality")
    c = quality.knn_baseline(X, both, side, k, "cost_usd")
    return {"q_knn": np.where(np.isnan(q), prior["q_prior"], q), "c_knn": np.where(np.isnan(c), prior["c_prior"], c)}


def fit_fold(
    train: pd.DataFrame,
    test: pd.DataFrame,
    qp: quality.QualityParams,
    cp: cost.CostParams,
    features: FeatureParams,
    cards: tuple[ModelCard, ...],
    prices: PriceTable,
) -> FoldFit:
    """Pure: predictors and baselines fit on `train` rows only; predictions for the `test` candidates and for
    the training candidates (`candidates(train)`, in-sample: only for calibrating knob grids)."""
    qpred = quality.fit(train, qp, features, cards, prices)
    cpred = cost.fit(train, cp)
    means = train.groupby("model")[["quality", "cost_usd"]].mean()
    default_q = float(train["quality"].mean())
    train_cand = candidates(train)
    out = {}
    for side, rows in (("test", test), ("train", train_cand)):
        pred = _predict(qpred, cpred, rows, prices, means, default_q)
        out[side] = pred | _knn(qpred, train, rows, qp.knn_k, pred)
    return FoldFit(out["test"], out["train"], qpred.heads, qpred.fallback)


# ------------------------------------------------------------------------------------------ routing


@dataclass(frozen=True)
class PolicyRouter:
    """A shipped policy swept over one constructor argument, on two columns of the candidate table. Its knob
    values are calibrated per fold on that fold's training-side predictions (`calibrate`) and named by their
    level in [0, 1], the same levels in every fold."""

    name: str
    policy: str  # key of serving.router.POLICIES
    knob: str  # the policy's constructor argument
    quality: str
    cost: str

    def calibrate(self, train: pd.DataFrame, n: int) -> np.ndarray:
        """Knob values at `n` levels from training candidates (sorted by prompt): threshold targets span the
        predicted qualities, tradeoff lambdas the break-even lambdas, so each sweep runs from the cheapest
        model to the best predicted one."""
        q, c = train[self.quality].to_numpy(dtype=float), train[self.cost].to_numpy(dtype=float)
        if self.policy == "threshold":
            return cal.threshold_grid(q, n)
        return cal.tradeoff_grid(q, c, prompt_starts(train), n)


def prompt_starts(cand: pd.DataFrame) -> np.ndarray:
    """Row offsets where each prompt's candidates start (candidates are sorted by prompt_id), plus the end."""
    pid = cand["prompt_id"].to_numpy()
    return np.flatnonzero(np.r_[True, pid[1:] != pid[:-1], True])


def knob_label(level: float) -> float:
    return float(f"{level:.6g}")  # short decimals: decisions.jsonl stays small and exact


def route_policy(
    cand: pd.DataFrame, starts: np.ndarray, router: PolicyRouter, grids: Mapping[int, np.ndarray]
) -> list[tuple[float, np.ndarray]]:
    """(knob level, chosen candidate row per prompt) for each level, through the policy's own choose(), each
    prompt with the knob value calibrated on its fold's training side (`grids`: fold -> values per level)."""
    from serving.router import POLICIES

    q, c = cand[router.quality].to_numpy(dtype=float), cand[router.cost].to_numpy(dtype=float)
    models = cand["model"].astype(str).to_numpy()
    folds = cand["fold"].to_numpy()[starts[:-1]]
    bounds = list(zip(starts[:-1], starts[1:], strict=True))
    n = len(next(iter(grids.values())))
    out = []
    for j, level in enumerate(cal.quantile_levels(n)):
        policies = {f: POLICIES[router.policy](**{router.knob: float(g[j])}) for f, g in grids.items()}
        chosen = np.array(
            [
                s + policies[f].choose(tuple(models[s:e]), q[s:e], c[s:e])[0]
                for (s, e), f in zip(bounds, folds, strict=True)
            ],
            dtype=np.intp,
        )
        out.append((knob_label(level), chosen))
    return out


def route_pair(
    cand: pd.DataFrame, starts: np.ndarray, strong: str, weak: str, order: np.ndarray, shares: Sequence[float]
) -> list[tuple[float, np.ndarray]]:
    """Share x of the pair prompts, first in `order` (positions into the pair prompts), to strong; the rest to weak."""
    rows_strong, rows_weak = _pair_rows(cand, starts, strong, weak)
    out = []
    for x in shares:
        to_strong = np.zeros(len(rows_strong), dtype=bool)
        to_strong[order[: int(round(x * len(rows_strong)))]] = True
        out.append((float(x), np.where(to_strong, rows_strong, rows_weak)))
    return out


def route_pair_scores(
    cand: pd.DataFrame,
    starts: np.ndarray,
    strong: str,
    weak: str,
    column: str,
    thresholds: Mapping[int, np.ndarray],
    shares: Sequence[float],
) -> list[tuple[float, np.ndarray]]:
    """Pair router on a score (predicted quality of strong minus weak, from `column`): at target share x a
    prompt goes to strong when its score exceeds the threshold that sends a share x of its fold's *training*
    prompts there (RouteLLM's calibration; the realised test share is what the curves use)."""
    rows_strong, rows_weak, score = pair_scores(cand, starts, strong, weak, column)
    folds = cand["fold"].to_numpy()[rows_strong]
    out = []
    for j, x in enumerate(shares):
        tau = np.array([thresholds[f][j] for f in folds])
        out.append((float(x), np.where(score > tau, rows_strong, rows_weak)))
    return out


def pair_scores(
    cand: pd.DataFrame, starts: np.ndarray, strong: str, weak: str, column: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The strong and weak candidate rows of every prompt both models answered, and its score (strong minus
    weak on `column`)."""
    rows_strong, rows_weak = _pair_rows(cand, starts, strong, weak)
    v = cand[column].to_numpy(dtype=float)
    return rows_strong, rows_weak, v[rows_strong] - v[rows_weak]


def _pair_rows(cand: pd.DataFrame, starts: np.ndarray, strong: str, weak: str) -> tuple[np.ndarray, np.ndarray]:
    """Candidate rows of strong and weak on the prompts both answered (in prompt order)."""
    prompt = np.repeat(np.arange(len(starts) - 1), np.diff(starts))
    models = cand["model"].astype(str).to_numpy()
    s = pd.Series(np.flatnonzero(models == strong), index=prompt[models == strong])
    w = pd.Series(np.flatnonzero(models == weak), index=prompt[models == weak])
    both = s.index.intersection(w.index)
    return s[both].to_numpy(), w[both].to_numpy()


def always(cand: pd.DataFrame, model: str) -> list[tuple[float | None, np.ndarray]]:
    return [(None, np.flatnonzero(cand["model"].astype(str).to_numpy() == model))]


# ------------------------------------------------------------------------------------------ scoring


def _matrices(cand: pd.DataFrame, starts: np.ndarray, models: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """prompts x models actual quality and cost (NaN = that model did not answer)."""
    prompt = np.repeat(np.arange(len(starts) - 1), np.diff(starts))
    col = pd.Index(models).get_indexer(cand["model"].astype(str))
    Q = np.full((len(starts) - 1, len(models)), np.nan)
    C = Q.copy()
    Q[prompt, col] = cand["quality"].to_numpy(dtype=float)
    C[prompt, col] = cand["cost_usd"].to_numpy(dtype=float)
    return Q, C


def score_routers(
    cand: pd.DataFrame,
    starts: np.ndarray,
    decisions: Mapping[str, list[tuple[float | None, np.ndarray]]],
    models: Sequence[str],
    strong: str,
    params: EvalParams,
) -> tuple[dict[str, RouterScore], str, tuple[float, float]]:
    """Every router's points, AIQ (common range and anchor), savings vs always-strong with CI, regret."""
    q, c = cand["quality"].to_numpy(dtype=float), cand["cost_usd"].to_numpy(dtype=float)
    prompt = np.repeat(np.arange(len(starts) - 1), np.diff(starts))
    Q, C = _matrices(cand, starts, models)
    singles = {m: (float(np.nanmean(C[:, i])), float(np.nanmean(Q[:, i]))) for i, m in enumerate(models)}
    cheapest = min(singles, key=lambda m: singles[m][0])
    lo, hi = singles[cheapest][0], max(v[0] for v in singles.values())
    ref_c, ref_q = C[:, list(models).index(strong)], Q[:, list(models).index(strong)]

    raw: dict[str, tuple] = {}
    for name, runs in decisions.items():
        pts = np.array([(c[rows].mean(), q[rows].mean()) for _, rows in runs])
        covered = np.ones(len(starts) - 1, dtype=bool)
        for _, rows in runs:
            mask = np.zeros(len(starts) - 1, dtype=bool)
            mask[prompt[rows]] = True
            covered &= mask
        keep = covered & np.isfinite(ref_c)  # bootstrap on prompts every knob value and the reference answered
        cost_m = np.full((len(runs), len(starts) - 1), np.nan)
        qual_m = cost_m.copy()
        regrets = []
        for k, (_, rows) in enumerate(runs):
            cost_m[k, prompt[rows]], qual_m[k, prompt[rows]] = c[rows], q[rows]
            regrets.append(rm.selection_regret(q[rows], c[rows], Q[prompt[rows]], C[prompt[rows]]))
        ci = rm.savings_bootstrap(
            cost_m[:, keep], qual_m[:, keep], ref_c[keep], ref_q[keep], params.bootstrap, params.seed, params.level
        )
        saving = rm.savings(pts, float(np.nanmean(ref_c)), float(np.nanmean(ref_q)))
        share = params.quality_share
        ci95 = rm.savings_bootstrap(
            cost_m[:, keep],
            qual_m[:, keep],
            ref_c[keep],
            share * ref_q[keep],
            params.bootstrap,
            params.seed,
            params.level,
        )
        saving95 = rm.savings(pts, float(np.nanmean(ref_c)), share * float(np.nanmean(ref_q)))
        areas = (rm.aiq(pts, lo, hi, singles[cheapest]), rm.aiq(pts, lo, singles[strong][0], singles[cheapest]))
        raw[name] = (runs, pts, areas, saving, ci, regrets, int(covered.sum()), saving95, ci95)

    oracle_aiq, oracle_saving = raw[ORACLE][2], raw[ORACLE][3]
    scores = {}
    for name, (runs, pts, areas, saving, ci, regrets, n, saving95, ci95) in raw.items():
        scores[name] = RouterScore(
            knobs=tuple(k for k, _ in runs),
            points=tuple((float(x), float(y)) for x, y in pts),
            aiq=areas[0],
            aiq_vs_oracle=_ratio(areas[0], oracle_aiq[0]),
            aiq_to_strong=areas[1],
            aiq_to_strong_vs_oracle=_ratio(areas[1], oracle_aiq[1]),
            cost_savings=saving,
            cost_savings_ci=(ci.low, ci.high) if saving is not None else (None, None),  # no CI around "never reached"
            savings_reached=ci.reached,
            savings_vs_oracle=_ratio(saving, oracle_saving),
            cost_savings_95=saving95,
            cost_savings_95_ci=(ci95.low, ci95.high) if saving95 is not None else (None, None),
            regret=float(np.mean(regrets)),
            regret_by_knob=tuple(regrets),
            prompts=n,
        )
    return scores, cheapest, (lo, hi)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 or not math.isfinite(a) else float(a / b)


def pair_curve(
    q: np.ndarray,
    runs: list[tuple[float | None, np.ndarray]],
    rows_strong: np.ndarray,
    rows_weak: np.ndarray,
    params: EvalParams | None = None,
) -> PairCurve:
    """PGR of each run (by realised share of strong calls), its APGR, CPT(50%), CPT(80%), and (with `params`)
    their bootstrap CIs over the pair prompts."""
    q_strong, q_weak = float(q[rows_strong].mean()), float(q[rows_weak].mean())
    to_strong = np.array([rows == rows_strong for _, rows in runs])  # runs list the pair prompts in order
    shares = to_strong.mean(axis=1)
    values = rm.pgr(np.array([q[rows].mean() for _, rows in runs]), q_weak, q_strong)
    st = rm.pair_stats(shares, values)
    ci = (
        rm.pair_bootstrap(to_strong, q[rows_strong], q[rows_weak], params.bootstrap, params.seed, params.level)
        if params is not None
        else None
    )
    extra = {"apgr_ci": ci.apgr, "cpt50_ci": ci.cpt50, "cpt80_ci": ci.cpt80} if ci is not None else {}
    return PairCurve(st.apgr, st.cpt50, st.cpt80, tuple(map(float, shares)), tuple(map(float, values)), **extra)


# ------------------------------------------------------------------------------------------ the bench


def run_bench(
    traces: pd.DataFrame,
    params: EvalParams,
    qp: quality.QualityParams,
    cp: cost.CostParams,
    features: FeatureParams,
    cards: tuple[ModelCard, ...],
    prices: PriceTable,
    strong: str | None = None,
    weak: str | None = None,
    progress: Callable[[str], None] = lambda _: None,
    source: str = "",
    train_traces: pd.DataFrame | None = None,
    train_source: str | None = None,
) -> tuple[BenchReport, pd.DataFrame]:
    """Pure (no files): fit, route, score; returns the report and the decisions table. k-fold by prompt on
    `traces`, or, with `train_traces`, one fit on those and every prompt of `traces` as the test side
    (cross-dataset transfer)."""
    started = time.perf_counter()
    rows, notes = bench_rows(traces)
    strong, weak = pick_pair(rows, strong, weak)
    progress(
        f"strong = {strong} (mean quality {rows.loc[rows['model'] == strong, 'quality'].mean():.3f}), weak = {weak} (mean cost ${rows.loc[rows['model'] == weak, 'cost_usd'].mean() * 1000:.4f} / 1k requests)"
    )
    cand = candidates(rows)
    if train_traces is None:
        folds = params.folds
        cand["fold"] = assign_folds(cand["prompt_id"], folds, params.seed)
        fold_rows = assign_folds(rows["prompt_id"], folds, params.seed)
        sides = [(rows[fold_rows != f].reset_index(drop=True), cand["fold"].to_numpy() == f) for f in range(folds)]
    else:
        folds = 0
        train_rows, train_notes = bench_rows(train_traces)
        notes = (*notes, *(f"train traces: {n}" for n in train_notes))
        unseen = sorted(set(cand["model"].astype(str)) - set(train_rows["model"].astype(str)))
        if unseen:
            notes = (
                *notes,
                f"models absent from the train traces (scored with the training mean quality as their prior): {', '.join(unseen)}",
            )
        overlap = set(train_rows["prompt_id"].astype(str)) & set(cand["prompt_id"].astype(str))
        if overlap:
            raise BeastError(
                f"--train-traces shares {len(overlap):,} prompt_id(s) with --traces (e.g. {sorted(overlap)[0]!r}): a transfer test needs disjoint prompts"
            )
        cand["fold"] = 0
        sides = [(train_rows, np.ones(len(cand), dtype=bool))]
    for col in PREDICTED:
        cand[col] = np.nan
    shares = params.shares.values()
    policy_routers = (
        PolicyRouter("learned/threshold", "threshold", "target_quality", "q_learned", "c_learned"),
        PolicyRouter("learned/tradeoff", "tradeoff", "lam", "q_learned", "c_learned"),
        PolicyRouter("knn/threshold", "threshold", "target_quality", "q_knn", "c_knn"),
        PolicyRouter("knn/tradeoff", "tradeoff", "lam", "q_knn", "c_knn"),
        PolicyRouter("prior/tradeoff", "tradeoff", "lam", "q_prior", "c_prior"),
        PolicyRouter(ORACLE, "tradeoff", "lam", "quality", "cost_usd"),
    )
    pair_routers = {"pair/learned": "q_learned", "pair/knn": "q_knn"}
    grids: dict[str, dict[int, np.ndarray]] = {r.name: {} for r in policy_routers} | {name: {} for name in pair_routers}
    heads, fallbacks = [], 0
    for f, (train, test) in enumerate(sides):
        t0 = time.perf_counter()
        fit = fit_fold(train, cand[test].reset_index(drop=True), qp, cp, features, cards, prices)
        for col in PREDICTED:
            cand.loc[test, col] = fit.test[col]
        train_cand = candidates(train).assign(**fit.train)
        for r in policy_routers:
            grids[r.name][f] = r.calibrate(train_cand, params.grid)
        for name, column in pair_routers.items():
            grids[name][f] = cal.share_thresholds(
                pair_scores(train_cand, prompt_starts(train_cand), strong, weak, column)[2], np.array(shares)
            )
        heads.append(fit.heads + ("->prior" if fit.fallback else ""))
        fallbacks += fit.fallback is not None
        where = f"fold {f + 1}/{folds}" if folds else "transfer"
        progress(
            f"{where}: {train['prompt_id'].nunique():,} train / {cand.loc[test, 'prompt_id'].nunique():,} test prompts, quality heads={heads[-1]}, {time.perf_counter() - t0:.1f} s"
        )

    starts = prompt_starts(cand)
    models = tuple(sorted(cand["model"].astype(str).unique()))
    decisions: dict[str, list[tuple[float | None, np.ndarray]]] = {
        r.name: route_policy(cand, starts, r, grids[r.name]) for r in policy_routers
    }
    rows_strong, rows_weak = _pair_rows(cand, starts, strong, weak)
    decisions |= {
        name: route_pair_scores(cand, starts, strong, weak, column, grids[name], shares)
        for name, column in pair_routers.items()
    }
    decisions["random"] = route_pair(
        cand, starts, strong, weak, np.random.default_rng(params.seed).permutation(len(rows_strong)), shares
    )
    decisions |= {f"always/{m}": always(cand, m) for m in models}
    t0 = time.perf_counter()
    scores, cheapest, cost_range = score_routers(cand, starts, decisions, models, strong, params)
    progress(
        f"routed and scored {len(decisions)} routers ({sum(len(r) for r in decisions.values())} operating points) in {time.perf_counter() - t0:.1f} s"
    )

    q = cand["quality"].to_numpy(dtype=float)
    curves = {name: pair_curve(q, decisions[name], rows_strong, rows_weak, params) for name in pair_routers}
    rand = pair_curve(q, decisions["random"], rows_strong, rows_weak, params)
    many = rm.random_pair(q[rows_strong], q[rows_weak], np.array(shares), params.random_seeds, params.seed)
    learned = curves["pair/learned"]
    pair = PairScore(
        strong,
        weak,
        float(q[rows_strong].mean()),
        float(q[rows_weak].mean()),
        len(rows_strong),
        learned.apgr,
        learned.cpt50,
        learned.cpt80,
        learned.shares,
        learned.pgr,
        rand,
        learned.apgr_ci,
        curves,
        many,
    )
    protocol = (
        f"{folds}-fold group CV by prompt_id"
        if folds
        else f"trained on {train_source or 'the train traces'}, tested on every prompt"
    )
    notes = (
        *notes,
        f"protocol: {protocol}; every knob grid is calibrated on the training side's predictions (threshold: quantiles of predicted quality; tradeoff: quantiles of break-even lambdas; pair routers: the score threshold that sends a share x of the training prompts to strong)",
        f"AIQ range = mean cost of the cheapest single model ({cheapest}) .. of the most expensive; every router's set includes the cheapest model's point; hull flat beyond its best point",
        f"cost_savings = 1 - (mean cost of the cheapest operating point with mean quality >= always-{strong}'s) / always-{strong}'s mean cost; cost_savings_95: at >= {params.quality_share:g} x its quality; CI: {params.bootstrap} bootstrap resamples of test prompts",
        f"random: one seeded router (decisions.jsonl); random_seeds: APGR mean / 95th percentile over {params.random_seeds} seeds",
        "regret = mean over knob values of mean(best actual quality among models no dearer on that prompt - chosen quality)",
        "learned and knn policies use predicted USD (learned: cost predictor P50 head, as the router); oracle uses actual quality and cost",
        "budget policy not swept: it is tradeoff with a lambda its controller moves toward a spend rate, so its operating points lie on learned/tradeoff",
        f"quality heads per fold: {', '.join(heads)} (->prior: validation said the heads add nothing, the per-model prior is used)",
    )
    table = decisions_table(cand, decisions)
    report = BenchReport(
        source,
        folds,
        params.seed,
        int(cand["prompt_id"].nunique()),
        models,
        cheapest,
        cost_range,
        strong,
        scores,
        pair,
        notes,
        round(time.perf_counter() - started, 1),
        train_source,
        fallbacks,
    )
    return report, table


def decisions_table(cand: pd.DataFrame, decisions: Mapping[str, list[tuple[float | None, np.ndarray]]]) -> pd.DataFrame:
    """One row per (router, knob value, test prompt): router, knob, prompt_id, model, fold."""
    parts = []
    pid, model, fold = (
        cand["prompt_id"].astype(str).to_numpy(),
        cand["model"].astype(str).to_numpy(),
        cand["fold"].to_numpy(),
    )
    for name, runs in decisions.items():
        for knob, rows in runs:
            parts.append(
                pd.DataFrame(
                    {
                        "router": name,
                        "knob": [knob] * len(rows),
                        "prompt_id": pid[rows],
                        "model": model[rows],
                        "fold": fold[rows],
                    }
                )
            )
    return pd.concat(parts, ignore_index=True)


# ------------------------------------------------------------------------------------------ outputs


def _num(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{round(v, digits) + 0.0:.{digits}f}"  # + 0.0: no "-0.000"


def _ci(s: RouterScore, sep: str) -> str:
    lo, hi = s.cost_savings_ci
    return "-" if lo is None or hi is None else f"{_num(lo)}{sep}{_num(hi)}"


def _interval(ci: tuple[float | None, float | None], sep: str = " .. ") -> str:
    return "-" if ci[0] is None or ci[1] is None else f"{_num(ci[0])}{sep}{_num(ci[1])}"


def _pair_lines(p: PairScore) -> list[str]:
    lines = [f"pair {p.strong} (q {p.q_strong:.3f}) vs {p.weak} (q {p.q_weak:.3f}), {p.prompts} prompts:"]
    for name, c in p.routers.items():
        lines.append(
            f"  {name:<13} APGR {c.apgr:.3f} ({_interval(c.apgr_ci)})  CPT50 {_num(c.cpt50)} ({_interval(c.cpt50_ci)})  CPT80 {_num(c.cpt80)} ({_interval(c.cpt80_ci)})"
        )
    r = p.random_seeds
    if r is not None:
        lines.append(
            f"  random        APGR mean {r.apgr_mean:.3f}, 95th percentile {r.apgr_p95:.3f} over {r.seeds} seeds; CPT50 mean {_num(r.cpt50_mean)}, CPT80 mean {_num(r.cpt80_mean)}"
        )
    return lines


def summary_table(report: BenchReport) -> str:
    """One line per router, best AIQ first (what stdout shows; report.md has the same in Markdown)."""
    head = f"{'router':<40} {'AIQ':>7} {'/oracle':>7} {'AIQ<=s':>7} {'/oracle':>7} {'saved':>7} {'95% CI':>14} {'saved95':>7} {'95% CI':>14} {'regret':>7}"
    lines = [head]
    for name, s in sorted(report.routers.items(), key=lambda kv: (-kv[1].aiq, -kv[1].aiq_to_strong)):
        lines.append(
            f"{name:<40} {s.aiq:>7.4f} {_num(s.aiq_vs_oracle):>7} {s.aiq_to_strong:>7.4f} {_num(s.aiq_to_strong_vs_oracle):>7} "
            f"{_num(s.cost_savings):>7} {_ci(s, ', '):>14} {_num(s.cost_savings_95):>7} {_interval(s.cost_savings_95_ci, ', '):>14} {s.regret:>7.4f}"
        )
    lines.append(
        f"(AIQ<=s: area over [cheapest model's cost, {report.savings_reference}'s cost]; saved / saved95: share of always-{report.savings_reference}'s cost saved at >= 100% / 95% of its quality)"
    )
    lines += _pair_lines(report.pair)
    return "\n".join(lines)


def markdown(report: BenchReport) -> str:
    protocol = (
        f"{report.folds}-fold group CV by prompt_id (seed {report.seed})"
        if report.folds
        else f"trained on {report.train_traces}, tested on every prompt (transfer)"
    )
    lines = [
        f"# Routing benchmark: {report.traces}",
        "",
        f"{report.prompts} prompts, {len(report.models)} models, {protocol}.",
        f"AIQ cost range ${report.cost_range[0] * 1000:.4f} .. ${report.cost_range[1] * 1000:.4f} per 1k requests; AIQ<=strong stops at {report.savings_reference}'s cost; "
        f"savings vs always-{report.savings_reference}.",
        "",
        "| router | AIQ | / oracle | AIQ<=strong | / oracle | saved at 100% | 95% CI | / oracle's | saved at 95% | 95% CI | regret |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in sorted(report.routers.items(), key=lambda kv: (-kv[1].aiq, -kv[1].aiq_to_strong)):
        lines.append(
            f"| {name} | {s.aiq:.4f} | {_num(s.aiq_vs_oracle)} | {s.aiq_to_strong:.4f} | {_num(s.aiq_to_strong_vs_oracle)} | "
            f"{_num(s.cost_savings)} | {_ci(s, ' .. ')} | {_num(s.savings_vs_oracle)} | {_num(s.cost_savings_95)} | {_interval(s.cost_savings_95_ci)} | {s.regret:.4f} |"
        )
    p = report.pair
    lines += [
        "",
        f"Pair: strong = {p.strong} (mean quality {p.q_strong:.3f}), weak = {p.weak} ({p.q_weak:.3f}), {p.prompts} prompts.",
        "",
        "| pair router | APGR | 95% CI | CPT(50%) | 95% CI | CPT(80%) | 95% CI |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {n} | {c.apgr:.3f} | {_interval(c.apgr_ci)} | {_num(c.cpt50)} | {_interval(c.cpt50_ci)} | {_num(c.cpt80)} | {_interval(c.cpt80_ci)} |"
            for n, c in p.routers.items()
        ),
        f"| random (seed {report.seed}) | {p.random.apgr:.3f} | {_interval(p.random.apgr_ci)} | {_num(p.random.cpt50)} | - | {_num(p.random.cpt80)} | - |",
    ]
    if p.random_seeds is not None:
        r = p.random_seeds
        lines.append(
            f"| random ({r.seeds} seeds) | mean {r.apgr_mean:.3f}, 95th pct {r.apgr_p95:.3f} | - | mean {_num(r.cpt50_mean)} | - | mean {_num(r.cpt80_mean)} | - |"
        )
    lines += [
        "",
        *[f"- {n}" for n in report.notes],
        "",
    ]
    return "\n".join(lines)


def _save_png(fig: object, path: Path) -> Path:
    from core.plots import save_figure  # atomic, no software stamp: same report in, same PNG bytes out

    return save_figure(fig, path)


def cost_quality_plot(report: BenchReport, path: Path) -> Path:
    """Every router's points and hull (log cost axis: prices span orders of magnitude); single models as dots."""
    from core.plots import plt  # Agg backend

    fig, ax = plt.subplots(figsize=(9, 6))
    for name, s in sorted(report.routers.items()):
        pts = np.array(s.points) * [1000, 1]
        if name.startswith("always/"):
            ax.scatter(pts[:, 0], pts[:, 1], color="grey", s=18, zorder=3)
            ax.annotate(
                name.removeprefix("always/"),
                pts[0],
                fontsize=6,
                color="grey",
                xytext=(3, 2),
                textcoords="offset points",
            )
            continue
        v = rm.hull(pts)
        xs = (
            np.geomspace(v[0, 0], v[-1, 0], 200) if len(v) > 1 else v[:, 0]
        )  # the hull is linear in cost: sample it for the log axis
        style = {"color": "black", "lw": 2.2} if name == ORACLE else {"lw": 1.4}
        line = ax.plot(
            xs, rm.hull_value(v, xs), label=f"{name} (AIQ {s.aiq:.3f}, <=strong {s.aiq_to_strong:.3f})", **style
        )[0]
        ax.scatter(pts[:, 0], pts[:, 1], s=6, color=line.get_color(), alpha=0.6)
    ax.set_xscale("log")
    ax.axvspan(report.cost_range[0] * 1000, report.cost_range[1] * 1000, color="grey", alpha=0.05)
    ax.set(
        xlabel="mean cost, USD per 1k requests (log)",
        ylabel="mean quality",
        title=f"routers on {report.prompts} held-out prompts ({report.folds}-fold)",
    )
    ax.legend(fontsize=7, loc="lower right")
    return _save_png(fig, path)


def pgr_plot(report: BenchReport, path: Path) -> Path:
    """PGR against the share of calls to the strong model: every pair router vs random (the diagonal)."""
    from core.plots import plt

    p = report.pair
    fig, ax = plt.subplots(figsize=(5.5, 5))
    extra = (
        f"; over {p.random_seeds.seeds} seeds mean {p.random_seeds.apgr_mean:.3f}, 95th pct {p.random_seeds.apgr_p95:.3f}"
        if p.random_seeds
        else ""
    )
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label=f"expected random{extra}")
    for name, c in p.routers.items():
        ax.plot(c.shares, c.pgr, marker=".", ms=3, label=f"{name} (APGR {c.apgr:.3f}, 95% CI {_interval(c.apgr_ci)})")
    ax.plot(p.random.shares, p.random.pgr, label=f"random, seed {report.seed} (APGR {p.random.apgr:.3f})", alpha=0.8)
    for level in (0.5, 0.8):
        ax.axhline(level, color="grey", lw=0.5)
    ax.set(xlabel=f"share of calls to {p.strong}", ylabel="performance gap recovered", title=f"{p.strong} vs {p.weak}")
    ax.legend(fontsize=8, loc="lower right")
    return _save_png(fig, path)


def write_outputs(report: BenchReport, decisions: pd.DataFrame, out: Path) -> dict[str, Path]:
    """Each file atomically; report.json last, so its presence means the rest is complete."""
    lines = [
        json.dumps(
            {
                "router": r,
                "knob": None if k is None or (isinstance(k, float) and math.isnan(k)) else k,
                "prompt_id": p,
                "model": m,
                "fold": int(f),
            }
        )
        for r, k, p, m, f in decisions[["router", "knob", "prompt_id", "model", "fold"]].itertuples(index=False)
    ]
    files = {"decisions.jsonl": write_atomic(out / "decisions.jsonl", ("\n".join(lines) + "\n").encode())}
    files["cost_quality.png"] = cost_quality_plot(report, out / "cost_quality.png")
    files["pgr.png"] = pgr_plot(report, out / "pgr.png")
    files["report.md"] = write_atomic(out / "report.md", markdown(report).encode())
    files["report.json"] = write_atomic(out / "report.json", (report.to_json() + "\n").encode())
    return files


def summary(report: BenchReport, digits: int = 6) -> dict[str, object]:
    """DVC metrics: the numbers to compare across experiments (no timings, no per-knob detail), rounded.

    Per router except the single models: AIQ, AIQ<=strong, both / oracle, cost saved vs always-strong (None:
    never reached) with the bootstrap CI of the one at 95%, regret; always-strong's AIQ; the strong/weak pair's
    APGR and CPT beside random's (one seed, and the mean / 95th percentile over the seeds)."""

    def r(v: float | None) -> float | None:
        return None if v is None else round(float(v), digits) + 0.0  # + 0.0: no -0.0

    strong = f"always/{report.savings_reference}"
    routers = {name: s for name, s in report.routers.items() if not name.startswith("always/") or name == strong}
    p = report.pair
    return {
        "prompts": report.prompts,
        "folds": report.folds,
        "models": len(report.models),
        "strong": report.savings_reference,
        "weak": p.weak,
        "routers": {
            name: {
                "aiq": r(s.aiq),
                "aiq_vs_oracle": r(s.aiq_vs_oracle),
                "aiq_to_strong": r(s.aiq_to_strong),
                "aiq_to_strong_vs_oracle": r(s.aiq_to_strong_vs_oracle),
                "cost_savings": r(s.cost_savings),
                "cost_savings_95": r(s.cost_savings_95),
                "cost_savings_95_ci": [r(v) for v in s.cost_savings_95_ci],
                "regret": r(s.regret),
            }
            for name, s in routers.items()
        },
        "pair": {
            "apgr": r(p.apgr),
            "cpt50": r(p.cpt50),
            "cpt80": r(p.cpt80),
            "random_apgr": r(p.random.apgr),
            "random_cpt50": r(p.random.cpt50),
            "random_cpt80": r(p.random.cpt80),
            "random_seed_count": p.random_seeds.seeds if p.random_seeds else None,
            "random_apgr_mean": r(p.random_seeds.apgr_mean) if p.random_seeds else None,
            "random_apgr_p95": r(p.random_seeds.apgr_p95) if p.random_seeds else None,
            "random_cpt50_mean": r(p.random_seeds.cpt50_mean) if p.random_seeds else None,
            "random_cpt80_mean": r(p.random_seeds.cpt80_mean) if p.random_seeds else None,
            "routers": {
                n: {"apgr": r(c.apgr), "apgr_ci": [r(v) for v in c.apgr_ci], "cpt50": r(c.cpt50), "cpt80": r(c.cpt80)}
                for n, c in p.routers.items()
            },
        },
    }


def plot_tables(report: BenchReport, points: int = 60, digits: int = 6) -> dict[str, pd.DataFrame]:
    """DVC plot data (what the PNGs show, as tables):

    - `cost_quality.csv`: x = mean cost in USD per 1k requests on a log grid over the AIQ range, one column per
      router (single models excluded): the quality of its hull (with the cheapest model's point), whose mean is AIQ;
    - `pgr.csv`: x = share of calls to the strong model (0..1 by 0.025), PGR of every pair router and of the
      seeded random router, each curve interpolated between its realised shares;
    - `aiq.csv`: one row per router (single models included): AIQ and AIQ<=strong."""
    lo, hi = report.cost_range
    grid = np.geomspace(lo, hi, points)
    anchor = np.array([report.routers[f"always/{report.cheapest}"].points[0]])
    curves = {"cost_usd_per_1k": grid * 1000}
    for name, s in report.routers.items():
        if not name.startswith("always/"):
            curves[name] = rm.hull_value(rm.hull(np.vstack([np.array(s.points), anchor])), grid)
    p = report.pair
    at = np.linspace(0.0, 1.0, 41)
    pgr = (
        {"share": at}
        | {n: rm.curve_at(c.shares, c.pgr, at) for n, c in p.routers.items()}
        | {"random": rm.curve_at(p.random.shares, p.random.pgr, at)}
    )
    aiq = pd.DataFrame(
        [
            {"router": n, "aiq": s.aiq, "aiq_to_strong": s.aiq_to_strong}
            for n, s in sorted(report.routers.items(), key=lambda kv: -kv[1].aiq)
        ]
    )
    return {
        "cost_quality.csv": pd.DataFrame(curves).round(digits),
        "pgr.csv": pd.DataFrame(pgr).round(digits),
        "aiq.csv": aiq.round(digits),
    }


def write_dvc_outputs(report: BenchReport, metrics: Path | None, plots: Path | None) -> dict[str, Path]:
    """`summary()` as JSON to `metrics` and `plot_tables()` as CSV into `plots` (each atomically, when given)."""
    files = {}
    if plots is not None:
        files |= {
            name: write_atomic(plots / name, table.to_csv(index=False, lineterminator="\n").encode())
            for name, table in plot_tables(report).items()
        }
    if metrics is not None:
        files["metrics"] = write_atomic(metrics, (json.dumps(summary(report), indent=2) + "\n").encode())
    return files


def main(
    traces: Path,
    out: Path,
    params_file: Path | None = None,
    folds: int | None = None,
    seed: int | None = None,
    strong: str | None = None,
    weak: str | None = None,
    train_traces: Sequence[Path] | None = None,
) -> BenchReport:
    """`beast eval routing`: read params (bench, features, train.quality, train.cost) once, run, write, print the table."""
    params = load_params(params_file, "evaluate", EvalParams)
    overrides = {k: v for k, v in {"folds": folds, "seed": seed}.items() if v is not None}
    params = replace(params, **overrides)
    qp = load_params(params_file, "train.quality", quality.QualityParams)
    cp = load_params(params_file, "train.cost", cost.CostParams)
    features = load_params(params_file, "features", FeatureParams)

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    frame = load_traces([traces], params.prices)
    progress(f"read {len(frame):,} rows from {traces}")
    train_frame, train_source = None, None
    if train_traces:
        train_frame = load_traces(list(train_traces), params.prices)
        train_source = " + ".join(map(str, train_traces))
        progress(f"read {len(train_frame):,} training rows from {train_source}")
    report, decisions = run_bench(
        frame,
        params,
        qp,
        cp,
        features,
        load_cards(params.cards),
        load_prices(params.prices),
        strong,
        weak,
        progress,
        str(traces),
        train_frame,
        train_source,
    )
    files = write_outputs(
        report, decisions, out
    )  # DVC metrics / plot data: only `beast eval routing --metrics FILE --plots DIR`
    print(summary_table(report))
    print(f"({report.seconds:.1f} s; {len(decisions):,} decisions) wrote {', '.join(str(p) for p in files.values())}")
    return report
