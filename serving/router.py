"""Reference router: loads a verified export bundle and picks a model per request.

It reads nothing but the bundle (no MLflow, Optuna or Prefect; boosters come from LightGBM text) and
computes each request's features with the per-request paths of `features/` (`prompt_vector`,
`text_vector`), which are tested equal to the batch paths used in training. Policies come from a
name -> class registry, chosen by the bundle's policy config; no branch ever looks at a model name.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import json
import math
import os
import re
import time
import warnings
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property, partial
from pathlib import Path
from typing import NamedTuple, Protocol, TextIO

import lightgbm as lgb
import numpy as np

from core.errors import BeastError
from features.embed import EmbedSpec, Encoder
from features.model_cards import MODEL_FEATURES
from features.prompt import (
    CHARS_PER_TOKEN,
    PROMPT_FEATURES,
    counted_in_c,
    prompt_matrix,
    prompt_vector,
    prompt_window,
)
from features.text import TextSpec, text_matrix, text_vector, warm_words
from features.text_kernel import kernel as text_kernel
from serving.budget import BudgetFile
from serving.bundle import Bundle, BundleError, bundle_key, load
from serving.compiled import load_trees, per_request, verify_trees

# The largest input a request may claim: no candidate reads more. The model cards (data/models.yaml), the price
# table and the bundle carry no context-window sizes, so this is a documented constant above the largest
# context window of any current model (2M tokens). A larger `input_tokens` is refused (ValueError: an HTTP
# 400); a prompt whose estimate (ceil(chars / 4)) is larger is counted as this many tokens, so a predicted
# cost -- and what the budget policy is charged for one request -- is bounded by this many input tokens.
MAX_INPUT_TOKENS = 2_000_000
# The fewest requests for which `request_vectors` uses a feature family's batch path rather than stacking its
# per-request vectors (equal numbers, tested). A batch path has a fixed cost per call (prompt: ~0.85 ms, pyarrow
# compiles its regexes per call; text: ~0.35 ms; embedding: ~0.07 ms) and a lower cost per prompt (prompt 15 vs
# 30 us, text 19 vs 44, embedding 6 vs 16: AlpacaEval prompts, words memoised, batches of 4-96 timed on the
# 2-core VM), so each breaks even here.
BATCH_MIN = {"prompt": 64, "text": 17, "embed": 6}


@dataclass(frozen=True)
class RouteRequest:
    prompt: str | None = None
    input_tokens: int | None = None  # default: the prompt's estimate, ceil(chars / 4)
    task: str | None = None
    timestamp: dt.datetime | None = None  # default: now (UTC)

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> RouteRequest:
        """A request from JSON; a wrong field raises ValueError naming it (prompt text is only ever data)."""
        for key in ("prompt", "task"):
            if d.get(key) is not None and not isinstance(d[key], str):
                raise ValueError(f"{key}: expected text or null, got {type(d[key]).__name__}")
        tokens = d.get("input_tokens")
        if tokens is not None and (
            isinstance(tokens, bool) or not isinstance(tokens, int) or not 0 <= tokens <= MAX_INPUT_TOKENS
        ):
            raise ValueError(
                f"input_tokens: expected an integer in 0..{MAX_INPUT_TOKENS} (the largest context a candidate takes), got {tokens!r}"
            )
        ts = d.get("timestamp")
        return cls(d.get("prompt"), tokens, d.get("task"), None if ts is None else parse_timestamp(ts))


_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})?")


def parse_timestamp(value: object) -> dt.datetime:
    """RFC 3339 text (`Z`/`z` or an offset; none means UTC, as in the trace contract) -> aware UTC datetime;
    anything else (numbers, other ISO 8601 forms, dates that leave the calendar in UTC) -> ValueError."""
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ValueError(f"timestamp: expected RFC 3339 text such as 2025-01-01T12:00:00Z, got {value!r}")
    text = value[:-1] + "+00:00" if value[-1] in "Zz" else value
    try:
        when = dt.datetime.fromisoformat(text[:10] + "T" + text[11:])
        when = when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)
        return when.astimezone(dt.UTC)
    except (ValueError, OverflowError):
        raise ValueError(f"timestamp: not a valid UTC time: {value!r}") from None


class DecisionCode(StrEnum):
    OK = "ok"
    BELOW_TARGET = "below_target"  # no candidate reached the policy's target: best predicted quality instead
    FALLBACK = "fallback"  # every candidate's circuit breaker is open: first model of the fallback order


class Decision(NamedTuple):
    """One routing decision. A named tuple rather than a frozen dataclass: as immutable and typed, and built in
    a third of the time (0.2 vs 0.6 us, paid per decision of a batch)."""

    model: str
    predicted_quality: float
    predicted_cost_usd: float
    policy: str
    reason: str
    code: DecisionCode


class Policy(ABC):
    """Chooses one candidate from predicted quality and cost (arrays aligned with `models`)."""

    name: str

    @abstractmethod
    def choose(self, models: Sequence[str], quality: np.ndarray, cost: np.ndarray) -> tuple[int, str, DecisionCode]: ...

    def record(self, usd: float, now: float) -> None:  # noqa: B027 - an optional hook: stateless policies keep this no-op
        """Told the predicted cost of every decision made; stateless policies ignore it."""

    def choose_many(self, models: Sequence[str], quality: np.ndarray, cost: np.ndarray, now: float) -> Choices:
        """`choose` of every row (quality, cost: n x len(models)) in order, each followed by `record` of its cost,
        so a stateful policy sees the decisions one by one; stateless policies override this with one
        vectorised pass (tested equal to this loop)."""
        picks, reasons, codes = [], [], []
        for q, c in zip(quality, cost, strict=True):
            i, reason, code = self.choose(models, q, c)
            self.record(float(c[i]), now)
            picks.append(i)
            reasons.append(reason)
            codes.append(code)
        return Choices(np.array(picks, dtype=np.intp), reasons, codes)


@dataclass(frozen=True)
class Choices:
    """A policy's choices for a batch: candidate index, reason and code per row."""

    index: np.ndarray
    reasons: list[str]
    codes: list[DecisionCode]


_NO_PREDICTION = "no model has a quality prediction; cheapest available"


# `choose` reads one request's few floats as Python floats: numpy's per-call overhead on 14 of them was ~15 us
# a decision. Same IEEE operations in the same order, and numpy's tie and NaN rules (tested against `choose_many`).


def _best(score: Sequence[float]) -> int | None:
    """Index of the highest finite score (NaN = no prediction, -inf = unavailable; the first of equals), None if
    there is none."""
    best, top = None, -math.inf
    for i, s in enumerate(score):
        if top < s < math.inf:
            best, top = i, s
    return best


def _first_min(values: Sequence[float], among: Sequence[int]) -> int:
    """`among[np.argmin(values[among])]`: the first NaN if there is one, else the first of the smallest."""
    best, low = among[0], values[among[0]]
    for i in among:
        v = values[i]
        if v != v:
            return i
        if v < low:
            best, low = i, v
    return best


def _cheapest(cost: np.ndarray) -> int:
    """The cheapest model (unavailable ones cost +inf; NaN cost never wins)."""
    return int(np.argmin(np.where(np.isnan(cost), np.inf, cost)))


def _best_rows(score: np.ndarray, cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`_best` of every row, the rows without a finite score taking `_cheapest`: (index, has a finite score)."""
    finite = np.isfinite(score)
    has = finite.any(axis=1)
    best = np.argmax(np.where(finite, score, -np.inf), axis=1)
    if not has.all():
        best = np.where(has, best, np.argmin(np.where(np.isnan(cost), np.inf, cost), axis=1))
    return best, has


class Threshold(Policy):
    """The cheapest model whose predicted quality reaches `target_quality`."""

    name = "threshold"

    def __init__(self, target_quality: float = 0.5):
        self.target = float(target_quality)

    def choose(self, models: Sequence[str], quality: np.ndarray, cost: np.ndarray) -> tuple[int, str, DecisionCode]:
        q, target = quality.tolist(), self.target
        ok = [i for i, v in enumerate(q) if v >= target]
        if not ok:
            best = _best(q)
            if best is None:
                return _cheapest(cost), _NO_PREDICTION, DecisionCode.BELOW_TARGET
            return (
                best,
                f"no model predicted >= {target:g}; best predicted quality {q[best]:.3f}",
                DecisionCode.BELOW_TARGET,
            )
        return _first_min(cost.tolist(), ok), f"cheapest of {len(ok)} models predicted >= {target:g}", DecisionCode.OK

    def choose_many(self, models: Sequence[str], quality: np.ndarray, cost: np.ndarray, now: float) -> Choices:
        ok = quality >= self.target
        n_ok = ok.sum(axis=1)
        cheapest_ok = np.argmin(np.where(ok, cost, np.inf), axis=1)
        best, has = _best_rows(quality, cost)
        rows = np.arange(len(quality))
        index = np.where(n_ok > 0, cheapest_ok, best)
        if not ok[rows, cheapest_ok][n_ok > 0].all():  # every reaching model costs +inf: `choose`'s first of them
            index = np.where((n_ok > 0) & ~ok[rows, cheapest_ok], ok.argmax(axis=1), index)
        top = quality[rows, best].tolist()
        reached = f" models predicted >= {self.target:g}"
        below = f"no model predicted >= {self.target:g}; best predicted quality "
        reasons = [
            f"cheapest of {k}{reached}" if k else (f"{below}{q:.3f}" if h else _NO_PREDICTION)
            for k, q, h in zip(n_ok.tolist(), top, has.tolist(), strict=True)
        ]
        codes = [DecisionCode.OK if k else DecisionCode.BELOW_TARGET for k in n_ok.tolist()]
        return Choices(index, reasons, codes)


class Tradeoff(Policy):
    """Maximise predicted quality - lam x predicted cost (USD per 1,000 requests)."""

    name = "tradeoff"

    def __init__(self, lam: float = 0.1):
        self.lam = float(lam)

    def choose(self, models: Sequence[str], quality: np.ndarray, cost: np.ndarray) -> tuple[int, str, DecisionCode]:
        lam = self.lam  # lam 0 x an unavailable model's inf cost: NaN, never chosen
        score = [q - lam * c * 1000 for q, c in zip(quality.tolist(), cost.tolist(), strict=True)]
        best = _best(score)
        if best is None:
            return _cheapest(cost), _NO_PREDICTION, DecisionCode.BELOW_TARGET
        return best, f"max quality - {self.lam:g} x USD/1k requests = {score[best]:.3f}", DecisionCode.OK

    def choose_many(self, models: Sequence[str], quality: np.ndarray, cost: np.ndarray, now: float) -> Choices:
        with np.errstate(invalid="ignore"):
            score = quality - self.lam * cost * 1000
        best, has = _best_rows(score, cost)
        head = f"max quality - {self.lam:g} x USD/1k requests = "
        top = score[np.arange(len(score)), best].tolist()
        has = has.tolist()
        reasons = [f"{head}{v:.3f}" if h else _NO_PREDICTION for v, h in zip(top, has, strict=True)]
        return Choices(best, reasons, [DecisionCode.OK if h else DecisionCode.BELOW_TARGET for h in has])


class Budget(Policy):
    """Tradeoff whose lam adapts so that spend tracks a budget rate: after each decision the spend rate over
    the last `window_s` seconds is compared with the budget and lam is multiplied by exp(gain x (rate /
    budget - 1)), within [min_lam, max_lam]. Over budget -> cheaper models; under -> better ones.

    The budget rate is `usd_per_hour`, or, with `state_file`, what the remaining-budget file
    (`serving/budget.py`) says is left divided by the hours left in its period, re-read as it changes."""

    name = "budget"

    def __init__(
        self,
        usd_per_hour: float | None = None,
        lam: float = 0.1,
        gain: float = 0.05,
        window_s: float = 300.0,
        min_lam: float = 1e-4,
        max_lam: float = 1e4,
        state_file: str | None = None,
        refresh_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ):
        if (usd_per_hour is None) == (state_file is None):
            raise BundleError(
                f"budget policy: give exactly one of usd_per_hour and state_file, got {usd_per_hour!r} and {state_file!r}"
            )
        if usd_per_hour is not None and usd_per_hour <= 0:
            raise BundleError(f"budget policy: usd_per_hour must be > 0, got {usd_per_hour!r}")
        self.file = BudgetFile(Path(state_file), refresh_s, clock) if state_file is not None else None
        self.budget = float(usd_per_hour) if usd_per_hour is not None else self.file.target_usd_per_hour()
        self.lam, self.gain, self.window = float(lam), float(gain), float(window_s)
        self.bounds = (float(min_lam), float(max_lam))
        self._spend: deque[tuple[float, float]] = deque()  # (time, usd) of recent decisions
        self._sum = 0.0

    def choose(self, models: Sequence[str], quality: np.ndarray, cost: np.ndarray) -> tuple[int, str, DecisionCode]:
        i, _, code = Tradeoff(self.lam).choose(models, quality, cost)
        source = ""
        if self.file is not None:
            self.budget = self.file.target_usd_per_hour()
            state = self.file.current()
            source = (
                f" = ${self.file.remaining_usd():,.2f} left of {state.scope} until {state.period_end:%Y-%m-%dT%H:%MZ}"
            )
            source += f" ({self.file.problem})" if self.file.problem else ""
        return (
            i,
            f"max quality - lam x USD/1k requests at lam {self.lam:.4g} (budget ${self.budget:.4g}/h{source})",
            code,
        )

    def record(self, usd: float, now: float) -> None:
        """Account a decision's predicted cost and move lam toward the budget rate (a cost that is not a finite
        number >= 0 is accounted as 0: one bad prediction must not poison the pace for good)."""
        usd = float(usd) if math.isfinite(usd) and usd > 0 else 0.0
        self._spend.append((now, usd))
        self._sum += usd
        if self.file is not None:
            self.file.spend(usd)
        while self._spend and self._spend[0][0] < now - self.window:
            self._sum -= self._spend.popleft()[1]
        span = max(now - self._spend[0][0], 1.0)
        rate = max(self._sum, 0.0) / span * 3600
        budget = max(self.budget, 1e-12)  # an exhausted budget drives lam to max_lam: cheapest models
        self.lam = float(np.clip(self.lam * math.exp(min(self.gain * (rate / budget - 1), 50.0)), *self.bounds))


POLICIES: dict[str, type[Policy]] = {"threshold": Threshold, "tradeoff": Tradeoff, "budget": Budget}


@dataclass
class CircuitBreaker:
    """Per model: open after `max_error_rate` of the last `window` outcomes failed (with at least
    `min_requests` seen); while open the model is skipped; after `cooldown_s` one trial request is let
    through (half-open) and its outcome closes or re-opens the breaker. Self-healing without a restart."""

    window: int = 20
    min_requests: int = 5
    max_error_rate: float = 0.5
    cooldown_s: float = 30.0

    def __post_init__(self) -> None:
        if not (self.window >= 1 and self.min_requests >= 1 and 0 < self.max_error_rate <= 1 and self.cooldown_s >= 0):
            raise BundleError(
                f"breaker: need window >= 1, min_requests >= 1, 0 < max_error_rate <= 1, cooldown_s >= 0; got {self}"
            )
        self._outcomes: dict[str, list[bool]] = {}
        self._opened_at: dict[str, float] = {}

    def observe(self, model: str, ok: bool, now: float) -> None:
        outcomes = self._outcomes.setdefault(model, [])
        outcomes.append(ok)
        del outcomes[: -self.window]
        if model in self._opened_at:  # the half-open trial decides
            if ok:
                del self._opened_at[model]
                outcomes[:] = [True]
            else:
                self._opened_at[model] = now
            return
        errors = outcomes.count(False)
        if len(outcomes) >= self.min_requests and errors / len(outcomes) >= self.max_error_rate:
            self._opened_at[model] = now

    def available(self, model: str, now: float) -> bool:
        return model not in self.unavailable(now)

    def unavailable(self, now: float) -> set[str]:
        """Models skipped at `now` (open, cooldown not over): one pass over the open breakers, usually none."""
        return {m for m, opened in self._opened_at.items() if now - opened < self.cooldown_s}


def budget_file_policy(config: Mapping[str, object], state_file: Path) -> dict[str, object]:
    """`config` switched to the budget policy paced by `state_file` (its lam / gain / window kept when it
    already was a budget policy; fallback order and breaker kept either way)."""
    check_policy_config(config)  # a config of the wrong shape: one clear line, not a traceback
    args = dict(config.get("args") or {}) if config.get("name") == "budget" else {}
    args.pop("usd_per_hour", None)
    return dict(config) | {"name": "budget", "args": args | {"state_file": str(state_file)}}


@dataclass(frozen=True)
class ArgRule:
    """What one policy / breaker setting accepts (the same rules as serving/js/beast-router.mjs `ARG_RULES`):
    a finite JSON number (never a bool, text or NaN / infinity) within the bounds, an integer when `integer`,
    text when `text`; null only when `nullable`."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    integer: bool = False
    text: bool = False
    nullable: bool = False

    def check(self, where: str, value: object) -> object:
        if value is None:
            if self.nullable:
                return None
            raise BundleError(f"{where} must not be null")
        if self.text:
            if not isinstance(value, str):
                raise BundleError(f"{where} must be text{' or null' if self.nullable else ''}, got {_json_kind(value)}")
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BundleError(f"{where} must be a finite number, got {_json_kind(value)} {_short(value)}")
        try:
            number = float(value)
        except OverflowError:  # an integer beyond float64: JSON readers elsewhere see infinity
            number = math.inf
        if not math.isfinite(number):
            raise BundleError(f"{where} must be a finite number, got {_short(value)}")
        if self.integer and not number.is_integer():
            raise BundleError(f"{where} must be an integer, got {_short(value)}")
        for op, bound, bad in (
            (">=", self.ge, lambda b: number < b),
            (">", self.gt, lambda b: number <= b),
            ("<=", self.le, lambda b: number > b),
        ):
            if bound is not None and bad(bound):
                raise BundleError(f"{where} must be {op} {bound:g}, got {_short(value)}")
        return int(number) if self.integer else number


def _json_kind(value: object) -> str:
    """The JSON type name of a parsed value (the names the Node router uses too)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, (list, tuple)):
        return "array"
    return type(value).__name__


def _short(value: object) -> str:
    text = json.dumps(value) if isinstance(value, (str, int, float)) and not isinstance(value, bool) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# Every setting a policy config may carry, per policy (each name must be a parameter of the class; `clock`
# and other code-only parameters are not settable from a config), and the breaker's.
POLICY_ARGS: dict[str, dict[str, ArgRule]] = {
    "threshold": {"target_quality": ArgRule(ge=0.0, le=1.0)},
    "tradeoff": {"lam": ArgRule(ge=0.0)},
    "budget": {
        "usd_per_hour": ArgRule(gt=0.0, nullable=True),
        "lam": ArgRule(ge=0.0),
        "gain": ArgRule(ge=0.0),
        "window_s": ArgRule(gt=0.0),
        "min_lam": ArgRule(gt=0.0),
        "max_lam": ArgRule(gt=0.0),
        "state_file": ArgRule(text=True, nullable=True),
        "refresh_s": ArgRule(ge=0.0),
    },
}
BREAKER_ARGS: dict[str, ArgRule] = {
    "window": ArgRule(ge=1, integer=True),
    "min_requests": ArgRule(ge=1, integer=True),
    "max_error_rate": ArgRule(gt=0.0, le=1.0),
    "cooldown_s": ArgRule(ge=0.0),
}


def _check_settings(where: str, given: object, rules: Mapping[str, ArgRule]) -> dict[str, object]:
    if given is None:
        return {}
    if not isinstance(given, Mapping):
        raise BundleError(f"{where} must be an object, got {_json_kind(given)}")
    out = {}
    for key, value in given.items():
        if key not in rules:
            raise BundleError(f"{where}: unknown argument {str(key)!r}; it takes {', '.join(rules)}")
        out[key] = rules[key].check(f"{where}: {key}", value)
    return out


def check_policy_config(config: object) -> tuple[str, dict[str, object], tuple[str, ...], dict[str, object]]:
    """(name, args, fallback order, breaker settings) of a policy config -- `policy.json` or a deployment's
    override -- checked against the registry and each policy's arguments; anything else is one BundleError
    line. The Node router (serving/js/beast-router.mjs `checkPolicyConfig`) accepts and refuses the same
    configs (tests/serving/policy_configs.json)."""
    if not isinstance(config, Mapping):
        raise BundleError(f'policy: expected an object {{"name": ..., "args": {{...}}}}, got {_json_kind(config)}')
    name = config.get("name")
    if not isinstance(name, str) or name not in POLICIES:
        shown = repr(name) if isinstance(name, str) else _json_kind(name)
        raise BundleError(f"policy {shown} is not one of {', '.join(POLICIES)}")
    args = _check_settings(f"policy {name}: args", config.get("args"), POLICY_ARGS[name])
    if name == "budget":
        lo = args.get("min_lam", 1e-4)
        hi = args.get("max_lam", 1e4)
        if lo > hi:
            raise BundleError(f"policy budget: args: min_lam {lo:g} is above max_lam {hi:g}")
        if (args.get("usd_per_hour") is None) == (args.get("state_file") is None):
            raise BundleError(
                f"budget policy: give exactly one of usd_per_hour and state_file, got {args.get('usd_per_hour')!r} and {args.get('state_file')!r}"
            )
    order = config.get("fallback_order")
    if order is None:
        order = []
    if not isinstance(order, list) or not all(isinstance(m, str) for m in order):
        raise BundleError(f"policy: fallback_order must be a list of model names, got {_json_kind(order)}")
    breaker = _check_settings("breaker", config.get("breaker"), BREAKER_ARGS)
    return name, args, tuple(order), breaker


def make_policy(config: Mapping[str, object]) -> Policy:
    """The policy a config names, built from its checked arguments (BundleError for any bad config)."""
    name, args, _, _ = check_policy_config(config)
    return POLICIES[name](**args)


class RowPredictor:
    """One booster, one float64 row at a time, through LightGBM's single-row fast C API: parameters and the
    thread count are parsed once here (a `FastConfig`), so a call costs a few microseconds where
    `Booster.predict` spends ~25 us on checks. Values are those of `Booster.predict` (tested equal).
    Not thread-safe: the HTTP server serialises routing with a lock."""

    def __init__(self, booster: lgb.Booster):
        self.booster = booster  # keeps the C handle alive
        self.ncol = booster.num_feature()
        self._out = np.zeros(1)
        self._out_ptr = self._out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
        self._len = ctypes.c_int64()
        self._len_ref = ctypes.byref(self._len)
        self._config = ctypes.c_void_p()
        self._lib = getattr(lgb.basic, "_LIB", None)
        init = getattr(self._lib, "LGBM_BoosterPredictForMatSingleRowFastInit", None)
        if (
            init is None
            or init(
                booster._handle, 0, 0, -1, 1, ctypes.c_int32(self.ncol), b"num_threads=1", ctypes.byref(self._config)
            )
            != 0
        ):
            self._config = None  # this LightGBM build lacks the fast path: Booster.predict instead

    def __call__(self, row: np.ndarray) -> float:
        """Prediction for `row`, a C-contiguous float64 array of `ncol` values."""
        if self._config is None:
            return float(self.booster.predict(row.reshape(1, -1), num_threads=1)[0])
        if (
            self._lib.LGBM_BoosterPredictForMatSingleRowFast(
                self._config, ctypes.c_void_p(row.ctypes.data), self._len_ref, self._out_ptr
            )
            != 0
        ):
            raise BundleError(
                f"LightGBM single-row prediction failed: {self._lib.LGBM_GetLastError().decode(errors='replace')}"
            )
        return float(self._out[0])

    def __del__(self) -> None:
        if getattr(self, "_config", None) is not None and self._lib is not None:
            self._lib.LGBM_FastConfigFree(self._config)


class TreeEvaluator(Protocol):
    """The router's boosters over candidate rows: `one` for one request's n_candidates rows (the router's reused
    buffers); `many` for a batch, candidate-major (n_candidates x n_requests x n_features, or 1 x n_requests x
    n_features read by every candidate: `fill_many`), returning n_requests x n_candidates arrays; both return
    (quality, cost booster output)."""

    cost_blocks: int | None  # cost blocks `many` reads (None: every candidate's); a batch fills no more

    def one(self, Xq: np.ndarray, Xc: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def many(self, Xq: np.ndarray, Xc: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


class LightGBMTrees:
    """The boosters through LightGBM: `RowPredictor` row by row for one request, one `Booster.predict` per
    booster for a batch. The reference for the compiled trees, and the path when they are unavailable."""

    cost_blocks = None  # the cost booster reads each candidate's own rows

    def __init__(self, heads: Sequence[lgb.Booster | None], shared: bool, cost: lgb.Booster):
        self.heads, self.shared, self.cost = tuple(heads), shared, cost
        fast = {id(b): RowPredictor(b) for b in self.heads if b is not None}
        self._q_fast = [fast[id(b)] if b is not None else None for b in self.heads]
        self._c_fast = RowPredictor(cost)

    def one(self, Xq: np.ndarray, Xc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        quality = np.array([f(Xq[i]) if f is not None else math.nan for i, f in enumerate(self._q_fast)])
        return quality, np.array([self._c_fast(row) for row in Xc])

    def many(self, Xq: np.ndarray, Xc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n, (blocks, n_requests) = len(self.heads), Xq.shape[:2]
        quality = np.full((n, n_requests), math.nan)
        if n_requests and self.shared:
            quality[:] = self.heads[0].predict(Xq.reshape(blocks * n_requests, -1), num_threads=1).reshape(blocks, -1)
        elif n_requests:
            for i, booster in enumerate(self.heads):
                if booster is not None:
                    quality[i] = booster.predict(Xq[i if blocks > 1 else 0], num_threads=1)
        rows = Xc.reshape(len(Xc) * n_requests, Xc.shape[2])
        log_out = self.cost.predict(rows, num_threads=1) if n_requests else np.empty(0)
        return quality.T, per_request(log_out.reshape(len(Xc), n_requests), n)


TREES_ENV = "BEAST_TREES"  # "lightgbm" forces the LightGBM path (a benchmark's reference); default "compiled"


def tree_evaluator(
    mode: str | None,
    reference: LightGBMTrees,
    head_texts: Sequence[str | None],
    cost_text: str,
    probe: tuple[np.ndarray, np.ndarray],
    cost_rows: tuple[np.ndarray, np.ndarray],
) -> TreeEvaluator:
    """The compiled trees (serving/compiled.py; `cost_rows`: the cost layout's template and `varies`, for the
    batch kernel's pruned cost trees), checked against `reference` on the `probe` rows (quality and cost
    matrices side by side, laid out as a batch fills them); `reference` itself when `mode` (else $BEAST_TREES)
    is "lightgbm", or, with one warning naming why, when compiling is unavailable or fails."""
    mode = mode or os.environ.get(TREES_ENV) or "compiled"
    if mode not in ("compiled", "lightgbm"):
        raise BundleError(f"trees {mode!r}: expected 'compiled' or 'lightgbm' (${TREES_ENV})")
    if mode == "lightgbm":
        return reference
    try:
        trees = load_trees(head_texts, reference.shared, cost_text, cost_rows)
        verify_trees(trees, reference, *probe)
    except BundleError as exc:
        warnings.warn(f"compiled trees unavailable, routing with LightGBM: {exc}", RuntimeWarning, stacklevel=3)
        return reference
    return trees


@dataclass(frozen=True)
class FeatureLayout:
    """How a predictor's feature matrix is filled: a template (one row per candidate, candidate columns
    set, everything else NaN) and where each request-level value goes. Per request the router copies the
    template and copies the request vector into it run by run: microseconds, against ~100 us for a
    dict-built matrix."""

    template: np.ndarray  # n_candidates x n_features, float64, C order
    runs: tuple[tuple[slice, slice], ...]  # (columns in the predictor's order, slots of the request vector)

    @classmethod
    def make(
        cls, names: Sequence[str], candidate: Mapping[str, np.ndarray], request: Sequence[str], n: int
    ) -> FeatureLayout:
        """`candidate`: column name -> one value per candidate; `request`: names of the request vector's slots."""
        template = np.full((n, len(names)), np.nan)
        for j, name in enumerate(names):
            if name in candidate:
                template[:, j] = candidate[name]
        slot = {name: i for i, name in enumerate(request)}
        pairs = [(j, slot[name]) for j, name in enumerate(names) if name in slot and name not in candidate]
        return cls(template, _runs(pairs))

    @cached_property
    def blocks(self) -> int:
        """Row blocks a batch fills: 1 when every candidate's row of the template is the same (no candidate
        column, as in the quality heads' layout), else one per candidate."""
        t = self.template
        return 1 if len(t) and np.array_equal(t, np.broadcast_to(t[:1], t.shape), equal_nan=True) else len(t)

    @cached_property
    def varies(self) -> np.ndarray:
        """Per column: True where a request's values go (the runs), False where every row keeps its template value."""
        out = np.zeros(self.template.shape[1], dtype=bool)
        for columns, _ in self.runs:
            out[columns] = True
        return out

    def fill(self, out: np.ndarray, vector: np.ndarray) -> np.ndarray:
        """`out` (template-shaped, reused) set to the template with the request's values copied in."""
        np.copyto(out, self.template)
        for columns, slots in self.runs:
            out[:, columns] = vector[slots]
        return out

    def fill_many(self, vectors: np.ndarray, blocks: int | None = None) -> np.ndarray:
        """`fill` for a batch (one request vector per row of `vectors`), candidate-major: `blocks` x n_requests
        x n_features, so each candidate's rows are one C-contiguous block, as its head reads them (no strided
        copy per head); one block that every candidate reads when their rows are the same (the quality heads':
        a 14th of the copying, and the trees read rows that are already in cache). `blocks` (default: all) fills
        only the first ones, for an evaluator that reads no more (`TreeEvaluator.cost_blocks`)."""
        blocks = self.blocks if blocks is None else min(blocks, self.blocks)
        out = np.empty((blocks, len(vectors), self.template.shape[1]))
        out[:] = self.template[:blocks, None, :]
        for columns, slots in self.runs:
            out[:, :, columns] = vectors[None, :, slots]
        return out


def _runs(pairs: Sequence[tuple[int, int]]) -> tuple[tuple[slice, slice], ...]:
    """(column, slot) pairs as maximal runs where both advance by one: slice copies instead of fancy indexing
    (the quality layout is 2 runs, the cost layout 3; a batch fills in ~0.4x the time)."""
    runs: list[list[int]] = []  # [first column, first slot, length]
    for j, i in pairs:
        if runs and j == runs[-1][0] + runs[-1][2] and i == runs[-1][1] + runs[-1][2]:
            runs[-1][2] += 1
        else:
            runs.append([j, i, 1])
    return tuple((slice(j, j + n), slice(i, i + n)) for j, i, n in runs)


def input_tokens(request: RouteRequest) -> int:
    """The request's input tokens: as given, else the prompt's estimate ceil(chars / 4), at most MAX_INPUT_TOKENS
    (bounded: one request's predicted cost never exceeds a full context's)."""
    given = request.input_tokens
    return min(given if given is not None else math.ceil(len(request.prompt or "") / CHARS_PER_TOKEN), MAX_INPUT_TOKENS)


def _stacked(vector: Callable[[str | None], np.ndarray], items: Sequence[str | None]) -> np.ndarray | float:
    """The per-request vectors of `items` as rows (NaN for no items: the empty batch's slots stay unset)."""
    return np.vstack([vector(x) for x in items]) if items else math.nan


def _booster(bundle: Bundle, predictor: str, key: str) -> lgb.Booster:
    return lgb.Booster(model_str=bundle.model_text(predictor, key))


def _encoder(bundle: Bundle) -> Encoder | None:
    """The embedding family from the bundle's own files (tokenizer + projected table), None without one."""
    files = bundle.embed_files()
    if files is None:
        return None
    try:
        spec = EmbedSpec.from_dict(bundle.feature_spec()["embed"])
    except BeastError as exc:
        raise BundleError(f"{bundle.root}: feature_spec.json: {exc}") from None
    tokenizer, raw = files
    if len(raw) != 4 * spec.vocab_size * spec.params.k:
        raise BundleError(
            f"{bundle.root}: {spec.to_dict()['table']}: {len(raw)} bytes, vocab {spec.vocab_size} x k {spec.params.k} needs {4 * spec.vocab_size * spec.params.k}"
        )
    table = np.frombuffer(raw, dtype="<f4").reshape(spec.vocab_size, spec.params.k)
    if not np.isfinite(table).all():
        raise BundleError(f"{bundle.root}: embedding table holds a value that is not finite")
    try:
        return Encoder(tokenizer, table, spec.offset, spec.params.max_chars)
    except BeastError as exc:
        raise BundleError(f"{bundle.root}: {exc}") from None


def _codes(values: Sequence[str], categories: Sequence[str]) -> np.ndarray:
    """Category codes as the trainers encode them (index in the fitted categories; NaN if unseen)."""
    index = {c: float(i) for i, c in enumerate(categories)}
    return np.array([index.get(v, math.nan) for v in values], dtype=float)


class Router:
    """Per request: features for every candidate, predicted quality and cost, then the policy's choice.
    One request at a time (`route`) or many at once (`route_many`, same decisions, higher throughput)."""

    def __init__(self, bundle: Bundle, policy: Mapping[str, object] | None = None, trees: str | None = None):
        """`trees`: "compiled" (default; LightGBM with a warning if compiling is unavailable) or "lightgbm"."""
        self.bundle = bundle
        self.models: tuple[str, ...] = tuple(bundle.candidates)
        n = len(self.models)
        prices = bundle.candidates
        self.price_in = np.array([prices[m]["input"] for m in self.models], dtype=float)
        self.price_out = np.array([prices[m]["output"] for m in self.models], dtype=float)
        config = bundle.policy() if policy is None else policy  # a deployment may override the bundle's
        try:
            name, args, order, breaker = check_policy_config(config)
        except BundleError as exc:
            source = f"{bundle.root}: policy.json" if policy is None else "policy override"
            raise BundleError(f"{source}: {exc}") from None
        self.policy = POLICIES[name](**args)
        self.fallback = tuple(m for m in order if m in self.models)
        self.breaker = CircuitBreaker(**breaker)
        spec = bundle.feature_spec()
        self.prompt_counts_in_c = counted_in_c()  # the kernels are loaded here, not on the first request
        self.text = TextSpec.from_json(json.dumps(spec["text"])) if spec.get("text") else None
        self.embed = _encoder(bundle)
        self.embeds_in_c = self.embed is not None and self.embed.in_c()  # the embedding kernel is built here
        # without a kernel, a family's memos learn the tokenizer's whole words at load (the C ones need none)
        text_memos = self.text is not None and text_kernel(self.text.params.n_features) is None
        if self.embed is not None and (text_memos or not self.embeds_in_c):
            words = self.embed.vocabulary_words()
            self.embed.warm(words)
            if text_memos:
                warm_words(words, self.text.params.n_features)
        k = self.text.params.k if self.text is not None else 0
        k_emb = self.embed.k if self.embed is not None else 0
        # the request vector: [log1p(input tokens), task code, UTC hour, prompt features..., text..., embedding...]
        self._slots = (
            "log_input_tokens",
            "task",
            "hour",
            *PROMPT_FEATURES,
            *(f"text_{i}" for i in range(k)),
            *(f"emb_{i}" for i in range(k_emb)),
        )
        quality = bundle.side("quality")
        self.heads = quality["heads"]
        self.q_names = list(quality["feature_names"])
        self.q_boosters = {key: _booster(bundle, "quality", key) for key in bundle.predictors["quality"]["keys"]}
        model_rows = self._model_rows(spec["models"])
        self.q_layout = FeatureLayout.make(
            self.q_names, dict(zip(MODEL_FEATURES, model_rows.T, strict=True)), self._slots, n
        )
        self.q_heads = [
            self.q_boosters["shared"] if self.heads == "shared" else self.q_boosters.get(m) for m in self.models
        ]
        cost = bundle.side("cost")
        self.c_names = list(cost["feature_names"])
        self.c_categories = {key: tuple(v) for key, v in cost["categories"].items()}
        self.c_shift = cost["p90_shift"]
        self.c_p50 = _booster(bundle, "cost", "p50")
        cost_slots = ("log_input_tokens", "task", "hour", *(f"prompt_{f}" for f in PROMPT_FEATURES))
        self.c_layout = FeatureLayout.make(
            self.c_names, {"model": _codes(self.models, self.c_categories.get("model", ()))}, cost_slots, n
        )
        self._task_code = {t: float(i) for i, t in enumerate(self.c_categories.get("task", ()))}
        self._Xq = self.q_layout.template.copy()
        self._Xc = self.c_layout.template.copy()
        head_keys = ["shared" if self.heads == "shared" else m for m in self.models]
        self.trees: TreeEvaluator = tree_evaluator(
            trees,
            LightGBMTrees(self.q_heads, self.heads == "shared", self.c_p50),
            [bundle.model_text("quality", k) if b is not None else None for k, b in zip(head_keys, self.q_heads)],
            bundle.model_text("cost", "p50"),
            tuple(  # probe rows as a batch fills them (its blocks): the template, then every request column 0.0
                np.stack([t.template, np.where(t.varies, 0.0, t.template)], 1)[: t.blocks]
                for t in (self.q_layout, self.c_layout)
            ),
            (self.c_layout.template, self.c_layout.varies),
        )

    @classmethod
    def load(cls, path: Path, budget_file: Path | None = None, key: bytes | None = None) -> Router:
        """Verify the bundle (a folder, a symlink to one, or its ``.tar.gz``, extracted into a private temporary
        folder removed at exit) and build the router; a tampered bundle is refused, and so is an unsigned
        or foreign-signed one when a key is given or `BEAST_BUNDLE_KEY` is set (`serving.bundle.bundle_key`).
        With `budget_file` it routes with the budget policy paced by that remaining-budget file."""
        bundle = load(Path(path), key=bundle_key() if key is None else key)
        if budget_file is None:
            return cls(bundle)
        config = bundle.policy()
        try:
            check_policy_config(config)  # a bad policy.json is refused even when the budget file replaces its policy
        except BundleError as exc:
            raise BundleError(f"{bundle.root}: policy.json: {exc}") from None
        return cls(bundle, budget_file_policy(config, budget_file))

    def _model_rows(self, models_spec: Mapping[str, object]) -> np.ndarray:
        """Model-identity features of every candidate (rows aligned with `self.models`)."""
        attrs = models_spec["attributes"]
        codes = _codes(self.models, list(models_spec["categories"]))
        rows = [
            [code] + [math.nan if attrs.get(m, {}).get(k) is None else float(attrs[m][k]) for k in MODEL_FEATURES[1:]]
            for m, code in zip(self.models, codes, strict=True)
        ]
        return np.array(rows, dtype=float)

    def request_features(self, request: RouteRequest) -> tuple[int, np.ndarray, np.ndarray | None]:
        """What every candidate shares: input tokens, prompt features, text features (computed once)."""
        tokens = input_tokens(request)
        window = None if request.prompt is None else prompt_window(request.prompt)
        text = text_vector(self.text, window) if self.text is not None else None
        return tokens, prompt_vector(request.prompt), text

    def embed_features(self, request: RouteRequest) -> np.ndarray | None:
        """The prompt's embedding features (float32, of its window), None when the bundle has no embedding family."""
        if self.embed is None:
            return None
        return self.embed.vector(None if request.prompt is None else prompt_window(request.prompt))

    def request_vector(self, request: RouteRequest, now: dt.datetime | None = None) -> tuple[int, np.ndarray]:
        """Input tokens and the request vector (`_slots` order) that both feature layouts scatter from."""
        tokens, prompt, text = self.request_features(request)
        emb = self.embed_features(request)
        parts = (
            [np.array(self._head(request, tokens, now)), prompt]
            + ([text.astype(np.float64)] if text is not None else [])
            + ([emb.astype(np.float64)] if emb is not None else [])
        )
        return tokens, np.concatenate(parts)

    def _head(self, request: RouteRequest, tokens: int, now: dt.datetime | float | None) -> tuple[float, float, float]:
        """The request vector's first slots: log1p(input tokens), task code, UTC hour (of the request's timestamp,
        else of `now`, which a batch passes as its hour, computed once; else of the current time)."""
        if request.timestamp is not None:
            hour = float(request.timestamp.astimezone(dt.UTC).hour)
        elif isinstance(now, float):
            hour = now
        else:
            hour = float((now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).hour)
        task = request.task
        return math.log1p(tokens), math.nan if task is None else self._task_code.get(task, math.nan), hour

    def request_vectors(
        self, requests: Sequence[RouteRequest], now: dt.datetime | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """`request_vector` of every request at once: input tokens (float) and the len(requests) x len(_slots)
        matrix whose row i equals `request_vector(requests[i], now)[1]`, from the feature families' batch paths
        (`prompt_matrix`, `text_matrix`, `Encoder.vectors`; tested equal to the per-request ones) for batches of at
        least `BATCH_MIN` requests, else from their per-request vectors stacked."""
        now = now or dt.datetime.now(dt.UTC)
        n = len(requests)
        tokens = [input_tokens(r) for r in requests]
        out = np.empty((n, len(self._slots)))
        hour = float(now.astimezone(dt.UTC).hour)
        out[:, :3] = np.array([self._head(r, t, hour) for r, t in zip(requests, tokens, strict=True)]).reshape(-1, 3)
        prompts = [r.prompt for r in requests]
        windows = [None if p is None else prompt_window(p) for p in prompts]
        end = 3 + len(PROMPT_FEATURES)
        out[:, 3:end] = (
            prompt_matrix(prompts, windows=windows) if n >= BATCH_MIN["prompt"] else _stacked(prompt_vector, prompts)
        )
        if self.text is not None:
            text, k = self.text, self.text.params.k
            batch = n >= BATCH_MIN["text"]
            out[:, end : end + k] = (
                text_matrix(text, windows) if batch else _stacked(partial(text_vector, text), windows)
            )
            end += k
        if self.embed is not None:
            emb = self.embed
            out[:, end : end + emb.k] = (
                emb.vectors(windows) if n >= BATCH_MIN["embed"] else _stacked(emb.vector, windows)
            )
        return np.array(tokens, dtype=float), out

    def quality_features(self, vector: np.ndarray) -> np.ndarray:
        """n_candidates x len(q_names) matrix in the quality boosters' column order (a fresh array)."""
        return self.q_layout.fill(np.empty_like(self.q_layout.template), vector)

    def cost_features(self, vector: np.ndarray) -> np.ndarray:
        """n_candidates x len(c_names) matrix in the cost booster's column order (a fresh array)."""
        return self.c_layout.fill(np.empty_like(self.c_layout.template), vector)

    def _usd(self, tokens: np.ndarray, log_out: np.ndarray) -> np.ndarray:
        out_tokens = np.maximum(np.expm1(log_out), 0.0)  # np.clip's Python wrapper costs ~5 us a request
        return (tokens * self.price_in + out_tokens * self.price_out) / 1e6

    def predict(self, request: RouteRequest) -> tuple[np.ndarray, np.ndarray]:
        """(predicted quality, predicted USD cost) per candidate: one tree-evaluator call per booster over the
        request's candidate rows, filled into buffers reused across requests."""
        tokens, vector = self.request_vector(request)
        quality, log_out = self.trees.one(self.q_layout.fill(self._Xq, vector), self.c_layout.fill(self._Xc, vector))
        return quality, self._usd(np.float64(tokens), log_out)

    def predict_many(self, requests: Sequence[RouteRequest]) -> tuple[np.ndarray, np.ndarray]:
        """(quality, cost), each len(requests) x n_candidates, with one tree-evaluator call per booster over all
        rows: the per-call overhead is paid once per batch, not once per candidate and request."""
        tokens, vectors = self.request_vectors(requests, dt.datetime.now(dt.UTC))
        Xc = self.c_layout.fill_many(vectors, self.trees.cost_blocks)
        quality, log_out = self.trees.many(self.q_layout.fill_many(vectors), Xc)
        return quality, self._usd(tokens[:, None], log_out)

    def observe(self, model: str, ok: bool, now: float | None = None) -> None:
        """Report a served request's outcome; feeds the circuit breaker."""
        self.breaker.observe(model, ok, time.monotonic() if now is None else now)

    def _available(self, quality: np.ndarray, cost: np.ndarray, now: float) -> tuple[np.ndarray, np.ndarray, str, int]:
        """(quality, cost) with the models whose breaker is open at `now` made unpickable (-inf, +inf; rows or
        one row alike), the note naming them, and the fallback model's index when every breaker is open (else -1)."""
        down = self.breaker.unavailable(now)
        if not down:
            return quality, cost, "", -1
        skipped = [m for m in self.models if m in down]
        note = f"; skipped (circuit open): {', '.join(skipped)}"
        if len(skipped) == len(self.models):
            order = [m for m in self.fallback if m not in down] or list(self.fallback or self.models)
            return quality, cost, note, self.models.index(order[0])
        up = np.array([m not in down for m in self.models])
        return np.where(up, quality, -np.inf), np.where(up, cost, np.inf), note, -1

    def decide(self, quality: np.ndarray, cost: np.ndarray, now: float) -> Decision:
        """The policy's choice among models whose breaker is closed; if none is, the first available model
        of the fallback order. Skipped models are named in `reason`."""
        quality, cost, note, fallback = self._available(quality, cost, now)
        if fallback >= 0:
            return self._fallback(fallback, float(quality[fallback]), float(cost[fallback]), note)
        i, reason, code = self.policy.choose(self.models, quality, cost)
        self.policy.record(float(cost[i]), now)
        return Decision(self.models[i], float(quality[i]), float(cost[i]), self.policy.name, reason + note, code)

    def decide_many(self, quality: np.ndarray, cost: np.ndarray, now: float) -> list[Decision]:
        """`decide` of every row (quality, cost: n x candidates) in order, through the policy's `choose_many`
        (one numpy pass for a stateless policy; tested equal to `decide` row by row)."""
        quality, cost, note, fallback = self._available(quality, cost, now)
        if fallback >= 0:
            return [
                self._fallback(fallback, q, c, note)
                for q, c in zip(quality[:, fallback].tolist(), cost[:, fallback].tolist(), strict=True)
            ]
        chosen = self.policy.choose_many(self.models, quality, cost, now)
        rows = np.arange(len(quality))
        name, models = self.policy.name, self.models
        return [
            Decision(models[i], q, c, name, reason + note if note else reason, code)
            for i, q, c, reason, code in zip(
                chosen.index.tolist(),
                quality[rows, chosen.index].tolist(),
                cost[rows, chosen.index].tolist(),
                chosen.reasons,
                chosen.codes,
                strict=True,
            )
        ]

    def _fallback(self, i: int, quality: float, cost: float, note: str) -> Decision:
        reason = f"every breaker open: fallback order{note}"
        return Decision(self.models[i], quality, cost, self.policy.name, reason, DecisionCode.FALLBACK)

    def route(self, request: RouteRequest, now: float | None = None) -> Decision:
        """One request's decision (see `decide`)."""
        quality, cost = self.predict(request)
        return self.decide(quality, cost, time.monotonic() if now is None else now)

    def route_many(self, requests: Sequence[RouteRequest], now: float | None = None) -> list[Decision]:
        """The decisions `route` would make for `requests` in order (stateful policies see them in order)."""
        if len(requests) == 1:
            return [self.route(requests[0], now)]
        quality, cost = self.predict_many(requests)
        return self.decide_many(quality, cost, time.monotonic() if now is None else now)


def route_stream(router: Router, lines: Iterable[str], out: TextIO) -> int:
    """`beast route`: one JSON decision per JSON request line (order kept); a bad line gets
    {"line": n, "error": ...} in its place. Returns the number of bad lines."""
    bad = 0
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            try:
                request = json.loads(line)
            except RecursionError:
                raise ValueError("not JSON: nested too deeply") from None
            if not isinstance(request, dict):
                raise ValueError("expected a JSON object")
            decision = router.route(RouteRequest.from_dict(request))
            row = {
                "model": decision.model,
                "predicted_quality": decision.predicted_quality,
                "predicted_cost_usd": decision.predicted_cost_usd,
                "policy": decision.policy,
                "reason": decision.reason,
                "code": decision.code.value,
            }
            if "request_id" in request:
                row = {"request_id": request["request_id"]} | row
        except (ValueError, TypeError) as exc:
            bad += 1
            row = {"line": n, "error": str(exc).splitlines()[0]}
        out.write(json.dumps(row) + "\n")
    return bad
