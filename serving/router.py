"""Reference router: loads a verified export bundle and picks a model per request.

It reads nothing but the bundle (no MLflow, Optuna or Prefect; boosters come from LightGBM text) and
computes each request's features with the per-request paths of `features/` (`prompt_vector`,
`text_vector`), which are tested equal to the batch paths used in training. Policies come from a
name -> class registry, chosen by the bundle's policy config; no branch ever looks at a model name.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TextIO

import lightgbm as lgb
import numpy as np

from features.models import MODEL_FEATURES
from features.prompt import CHARS_PER_TOKEN, PROMPT_FEATURES, prompt_vector
from features.text import TextSpec, text_vector
from serving.bundle import Bundle, BundleError, load


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
        if tokens is not None and (isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0):
            raise ValueError(f"input_tokens: expected an integer >= 0, got {tokens!r}")
        ts = d.get("timestamp")
        try:
            when = dt.datetime.fromisoformat(str(ts).replace("Z", "+00:00")) if ts else None
        except ValueError:
            raise ValueError(f"timestamp: expected RFC 3339 text, got {ts!r}") from None
        if when is not None and when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        return cls(d.get("prompt"), tokens, d.get("task"), when)


class DecisionCode(StrEnum):
    OK = "ok"
    BELOW_TARGET = "below_target"  # no candidate reached the policy's target: best predicted quality instead
    FALLBACK = "fallback"  # every candidate's circuit breaker is open: first model of the fallback order


@dataclass(frozen=True)
class Decision:
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

    def record(self, usd: float, now: float) -> None:
        """Told the predicted cost of every decision made; stateless policies ignore it."""


class Threshold(Policy):
    """The cheapest model whose predicted quality reaches `target_quality`."""

    name = "threshold"

    def __init__(self, target_quality: float = 0.5):
        self.target = float(target_quality)

    def choose(self, models: Sequence[str], quality: np.ndarray, cost: np.ndarray) -> tuple[int, str, DecisionCode]:
        ok = np.flatnonzero(quality >= self.target)
        if len(ok) == 0:
            best = int(np.nanargmax(quality))
            return best, f"no model predicted >= {self.target:g}; best predicted quality {quality[best]:.3f}", DecisionCode.BELOW_TARGET
        best = int(ok[np.argmin(cost[ok])])
        return best, f"cheapest of {len(ok)} models predicted >= {self.target:g}", DecisionCode.OK


class Tradeoff(Policy):
    """Maximise predicted quality - lam x predicted cost (USD per 1,000 requests)."""

    name = "tradeoff"

    def __init__(self, lam: float = 0.1):
        self.lam = float(lam)

    def choose(self, models: Sequence[str], quality: np.ndarray, cost: np.ndarray) -> tuple[int, str, DecisionCode]:
        score = quality - self.lam * cost * 1000
        best = int(np.nanargmax(score))
        return best, f"max quality - {self.lam:g} x USD/1k requests = {score[best]:.3f}", DecisionCode.OK


class Budget(Policy):
    """Tradeoff whose lam adapts so that spend tracks `usd_per_hour`: after each decision the spend rate over
    the last `window_s` seconds is compared with the budget and lam is multiplied by exp(gain x (rate /
    budget - 1)), within [min_lam, max_lam]. Over budget -> cheaper models; under -> better ones."""

    name = "budget"

    def __init__(self, usd_per_hour: float, lam: float = 0.1, gain: float = 0.05, window_s: float = 300.0, min_lam: float = 1e-4, max_lam: float = 1e4):
        if usd_per_hour <= 0:
            raise BundleError(f"budget policy: usd_per_hour must be > 0, got {usd_per_hour!r}")
        self.budget, self.lam, self.gain, self.window = float(usd_per_hour), float(lam), float(gain), float(window_s)
        self.bounds = (float(min_lam), float(max_lam))
        self._spend: list[tuple[float, float]] = []  # (time, usd) of recent decisions

    def choose(self, models: Sequence[str], quality: np.ndarray, cost: np.ndarray) -> tuple[int, str, DecisionCode]:
        i, _, code = Tradeoff(self.lam).choose(models, quality, cost)
        return i, f"max quality - lam x USD/1k requests at lam {self.lam:.4g} (budget ${self.budget:g}/h)", code

    def record(self, usd: float, now: float) -> None:
        """Account a decision's predicted cost and move lam toward the budget rate."""
        self._spend.append((now, usd))
        while self._spend and self._spend[0][0] < now - self.window:
            self._spend.pop(0)
        span = max(now - self._spend[0][0], 1.0)
        rate = sum(u for _, u in self._spend) / span * 3600
        self.lam = float(np.clip(self.lam * math.exp(self.gain * (rate / self.budget - 1)), *self.bounds))


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
        opened = self._opened_at.get(model)
        return opened is None or now - opened >= self.cooldown_s


def make_policy(config: Mapping[str, object]) -> Policy:
    name = str(config.get("name"))
    if name not in POLICIES:
        raise BundleError(f"policy {name!r} is not one of {', '.join(POLICIES)}")
    return POLICIES[name](**dict(config.get("args") or {}))


def _booster(bundle: Bundle, predictor: str, key: str) -> lgb.Booster:
    return lgb.Booster(model_str=bundle.model_text(predictor, key))


class Router:
    """Per request: features for every candidate, predicted quality and cost, then the policy's choice."""

    def __init__(self, bundle: Bundle):
        self.bundle = bundle
        self.models: tuple[str, ...] = tuple(bundle.candidates)
        prices = bundle.candidates
        self.price_in = np.array([prices[m]["input"] for m in self.models], dtype=float)
        self.price_out = np.array([prices[m]["output"] for m in self.models], dtype=float)
        config = bundle.policy()
        self.policy = make_policy(config)
        self.fallback = tuple(m for m in config.get("fallback_order", ()) if m in self.models)
        self.breaker = CircuitBreaker(**dict(config.get("breaker") or {}))
        spec = bundle.feature_spec()
        self.text = TextSpec.from_json(json.dumps(spec["text"])) if spec.get("text") else None
        quality = bundle.side("quality")
        self.heads = quality["heads"]
        self.q_names = list(quality["feature_names"])
        keys = list(self.bundle.predictors["quality"]["keys"])
        self.q_boosters = {k: _booster(bundle, "quality", k) for k in keys}
        self.q_model_rows = self._model_rows(spec["models"])
        cost = bundle.side("cost")
        self.c_names = list(cost["feature_names"])
        self.c_categories = {k: tuple(v) for k, v in cost["categories"].items()}
        self.c_shift = cost["p90_shift"]
        self.c_p50 = _booster(bundle, "cost", "p50")

    @classmethod
    def load(cls, path: Path) -> Router:
        """Verify the bundle (folder or .tar.gz) and build the router; a tampered bundle is refused."""
        return cls(load(Path(path)))

    def _model_rows(self, models_spec: Mapping[str, object]) -> np.ndarray:
        """Model-identity features of every candidate (rows aligned with `self.models`)."""
        categories = list(models_spec["categories"])
        attrs = models_spec["attributes"]
        rows = []
        for m in self.models:
            a = attrs.get(m, {})
            code = float(categories.index(m)) if m in categories else math.nan
            rows.append([code] + [math.nan if a.get(k) is None else float(a[k]) for k in MODEL_FEATURES[1:]])
        return np.array(rows, dtype=float)

    def quality_features(self, request: RouteRequest, input_tokens: int, prompt: np.ndarray, text: np.ndarray | None) -> np.ndarray:
        """n_candidates x len(q_names) matrix in the quality boosters' column order."""
        values: dict[str, np.ndarray | float] = dict(zip(MODEL_FEATURES, self.q_model_rows.T, strict=True))
        values["log_input_tokens"] = math.log1p(input_tokens)
        values["cached_share"] = math.nan
        values |= dict(zip(PROMPT_FEATURES, prompt, strict=True))
        if text is not None:
            values |= {f"text_{i}": v for i, v in enumerate(text)}
        n = len(self.models)
        return np.column_stack([np.broadcast_to(np.asarray(values.get(name, math.nan), dtype=float), n) for name in self.q_names])

    def cost_features(self, request: RouteRequest, input_tokens: int, prompt: np.ndarray, when: dt.datetime) -> np.ndarray:
        models = self.c_categories.get("model", ())
        tasks = self.c_categories.get("task", ())
        values: dict[str, np.ndarray | float] = {
            "log_input_tokens": math.log1p(input_tokens),
            "model": np.array([float(models.index(m)) if m in models else math.nan for m in self.models]),
            "task": float(tasks.index(request.task)) if request.task in tasks else math.nan,
            "hour": float(when.astimezone(dt.UTC).hour),
            "cached_share": math.nan,
        } | {f"prompt_{k}": v for k, v in zip(PROMPT_FEATURES, prompt, strict=True)}
        n = len(self.models)
        return np.column_stack([np.broadcast_to(np.asarray(values[name], dtype=float), n) for name in self.c_names])

    def request_features(self, request: RouteRequest) -> tuple[int, np.ndarray, np.ndarray | None]:
        """What every candidate shares: input tokens, prompt features, text features (computed once)."""
        tokens = request.input_tokens if request.input_tokens is not None else math.ceil(len(request.prompt or "") / CHARS_PER_TOKEN)
        text = text_vector(self.text, request.prompt) if self.text is not None else None
        return tokens, prompt_vector(request.prompt), text

    def predict(self, request: RouteRequest) -> tuple[np.ndarray, np.ndarray]:
        """(predicted quality, predicted USD cost) per candidate."""
        tokens, prompt, text = self.request_features(request)
        Xq = self.quality_features(request, tokens, prompt, text)
        if self.heads == "shared":
            quality = self.q_boosters["shared"].predict(Xq, num_threads=1)
        else:
            quality = np.array([self.q_boosters[m].predict(Xq[i : i + 1], num_threads=1)[0] if m in self.q_boosters else math.nan for i, m in enumerate(self.models)])
        Xc = self.cost_features(request, tokens, prompt, request.timestamp or dt.datetime.now(dt.UTC))
        out_tokens = np.clip(np.expm1(self.c_p50.predict(Xc, num_threads=1)), 0, None)  # one thread: no OpenMP spin per request
        cost = (tokens * self.price_in + out_tokens * self.price_out) / 1e6
        return quality, cost

    def observe(self, model: str, ok: bool, now: float | None = None) -> None:
        """Report a served request's outcome; feeds the circuit breaker."""
        self.breaker.observe(model, ok, time.monotonic() if now is None else now)

    def route(self, request: RouteRequest, now: float | None = None) -> Decision:
        """The policy's choice among models whose breaker is closed; if none is, the first available model
        of the fallback order. Skipped models are named in `reason`."""
        now = time.monotonic() if now is None else now
        quality, cost = self.predict(request)
        up = np.array([self.breaker.available(m, now) for m in self.models])
        skipped = [m for m, ok in zip(self.models, up, strict=True) if not ok]
        note = f"; skipped (circuit open): {', '.join(skipped)}" if skipped else ""
        if up.any():
            i, reason, code = self.policy.choose(self.models, np.where(up, quality, -np.inf), np.where(up, cost, np.inf))
            self.policy.record(float(cost[i]), now)
            return Decision(self.models[i], float(quality[i]), float(cost[i]), self.policy.name, reason + note, code)
        order = [m for m in self.fallback if self.breaker.available(m, now)] or list(self.fallback or self.models)
        i = self.models.index(order[0])
        return Decision(self.models[i], float(quality[i]), float(cost[i]), self.policy.name, f"every breaker open: fallback order{note}", DecisionCode.FALLBACK)


def route_stream(router: Router, lines: Iterable[str], out: TextIO) -> int:
    """`beast route`: one JSON decision per JSON request line (order kept); a bad line gets
    {"line": n, "error": ...} in its place. Returns the number of bad lines."""
    bad = 0
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("expected a JSON object")
            decision = router.route(RouteRequest.from_dict(request))
            row = {"model": decision.model, "predicted_quality": decision.predicted_quality, "predicted_cost_usd": decision.predicted_cost_usd, "policy": decision.policy, "reason": decision.reason, "code": decision.code.value}
            if "request_id" in request:
                row = {"request_id": request["request_id"]} | row
        except (ValueError, TypeError) as exc:
            bad += 1
            row = {"line": n, "error": str(exc).splitlines()[0]}
        out.write(json.dumps(row) + "\n")
    return bad
