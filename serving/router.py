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
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

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
        ts = d.get("timestamp")
        when = dt.datetime.fromisoformat(str(ts).replace("Z", "+00:00")) if ts else None
        tokens = d.get("input_tokens")
        return cls(d.get("prompt"), int(tokens) if tokens is not None else None, d.get("task"), when)


class DecisionCode(StrEnum):
    OK = "ok"
    BELOW_TARGET = "below_target"  # no candidate reached the policy's target: best predicted quality instead


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


POLICIES: dict[str, type[Policy]] = {"threshold": Threshold, "tradeoff": Tradeoff}


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
        self.policy = make_policy(bundle.policy())
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
            quality = self.q_boosters["shared"].predict(Xq)
        else:
            quality = np.array([self.q_boosters[m].predict(Xq[i : i + 1])[0] if m in self.q_boosters else math.nan for i, m in enumerate(self.models)])
        Xc = self.cost_features(request, tokens, prompt, request.timestamp or dt.datetime.now(dt.UTC))
        out_tokens = np.clip(np.expm1(self.c_p50.predict(Xc)), 0, None)
        cost = (tokens * self.price_in + out_tokens * self.price_out) / 1e6
        return quality, cost

    def route(self, request: RouteRequest) -> Decision:
        quality, cost = self.predict(request)
        i, reason, code = self.policy.choose(self.models, quality, cost)
        return Decision(self.models[i], float(quality[i]), float(cost[i]), self.policy.name, reason, code)
