"""Stage `features`: one feature frame per request x candidate model, and the versioned spec that rebuilds it.

The spec is plain JSON (text hashing + TF-IDF + SVD weights, embedding projection, model categories and attributes, context
window, column order); `build_features(frame, spec)` uses nothing else, so training, the Python router
and a router in another language compute the same numbers. Text features are computed once per distinct
prompt and broadcast: AlpacaEval sends each prompt to 14 models.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core.config import Positive
from core.errors import BeastError
from features.context import CONTEXT_FEATURES, ContextSpec, context_features, fit_context_spec
from features.embed import EmbedParams, EmbedSpec, fit_embed, transform_embed
from features.model_cards import MODEL_FEATURES, ModelCard, ModelSpec, fit_model_spec, model_features
from features.prompt import PROMPT_FEATURES, prompt_features, prompt_window
from features.text import TextParams, TextSpec, fit_text, transform_text
from traces.prices import PriceTable

SPEC_KIND = "beast.features"
SPEC_SCHEMA = "1"
TOKEN_FEATURES = ("log_input_tokens", "cached_share")


@dataclass(frozen=True)
class FeatureParams:
    """Mirrors params.yaml -> features."""

    text: TextParams = field(default_factory=TextParams)
    embed: EmbedParams = field(default_factory=EmbedParams)
    context_window_s: Positive = 300.0
    use_text: bool = True
    use_embed: bool = True  # pretrained WordLlama prompt embedding (features/embed.py)
    use_context: bool = True


@dataclass(frozen=True)
class FeatureSpec:
    columns: tuple[str, ...]
    models: ModelSpec
    context: ContextSpec | None
    text: TextSpec | None
    embed: EmbedSpec | None = None

    def to_dict(self) -> dict:
        return {
            "kind": SPEC_KIND,
            "schema": SPEC_SCHEMA,
            "columns": list(self.columns),
            "models": self.models.to_dict(),
            "context": self.context.to_dict() if self.context else None,
            "text": json.loads(self.text.to_json()) if self.text else None,
            "embed": self.embed.to_dict() if self.embed else None,
        }

    @property
    def version(self) -> str:
        """Content hash: equal specs compute equal features; any change of weights or columns changes it."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def to_json(self) -> str:
        return json.dumps(self.to_dict() | {"version": self.version}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FeatureSpec:
        try:
            d = json.loads(text)
            if d.get("kind") != SPEC_KIND or d.get("schema") != SPEC_SCHEMA:
                raise BeastError(
                    f"not a feature spec of schema {SPEC_SCHEMA} (kind={d.get('kind')!r}, schema={d.get('schema')!r})"
                )
            spec = cls(
                tuple(d["columns"]),
                ModelSpec.from_dict(d["models"]),
                ContextSpec.from_dict(d["context"]) if d["context"] else None,
                TextSpec.from_json(json.dumps(d["text"])) if d["text"] else None,
                EmbedSpec.from_dict(d["embed"]) if d.get("embed") else None,
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise BeastError(f"feature spec: cannot read it ({exc})") from None
        if d.get("version") != spec.version:
            raise BeastError(
                f"feature spec: version {d.get('version')!r} does not match its content ({spec.version}): edited or damaged"
            )
        return spec


def _per_prompt(frame: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """Prompt, text and embedding features, computed once per distinct prompt and broadcast to its rows; text
    and embedding read the prompt's window, as the prompt counts do (`features.prompt.prompt_window`)."""
    prompts = frame["prompt"].astype(object) if "prompt" in frame else pd.Series([None] * len(frame), dtype=object)
    codes, uniques = pd.factorize(prompts, use_na_sentinel=True)
    distinct = pd.Series(list(uniques) + [None], dtype=object)
    windows = pd.Series([prompt_window(str(p)) for p in uniques] + [None], dtype=object)
    parts = [prompt_features(distinct).reset_index(drop=True)]
    if spec.text is not None:
        text = transform_text(spec.text, windows)  # no prompt: NaN (unknown), not the embedding of ""
        parts.append(pd.DataFrame(text, columns=[f"text_{i}" for i in range(text.shape[1])]))
    if spec.embed is not None:
        emb = transform_embed(spec.embed, windows)
        parts.append(pd.DataFrame(emb, columns=[f"emb_{i}" for i in range(emb.shape[1])]))
    table = pd.concat(parts, axis=1)
    return table.iloc[np.where(codes < 0, len(distinct) - 1, codes)].reset_index(drop=True)


def token_features(frame: pd.DataFrame) -> pd.DataFrame:
    """`TOKEN_FEATURES` (positional index): log1p(input_tokens), and cached_input_tokens / input_tokens, NaN
    when either is unknown or input is 0. Shared by the quality and cost predictors (one definition)."""
    inp = frame["input_tokens"].to_numpy(dtype=float, na_value=np.nan)
    cached = (
        frame["cached_input_tokens"].to_numpy(dtype=float, na_value=np.nan)
        if "cached_input_tokens" in frame
        else np.full(len(frame), np.nan)
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        return pd.DataFrame(
            {"log_input_tokens": np.log1p(inp), "cached_share": np.where(inp > 0, cached / inp, np.nan)}
        )


def fit_features(
    frame: pd.DataFrame, params: FeatureParams, cards: tuple[ModelCard, ...], prices: PriceTable
) -> FeatureSpec:
    """Fit every transform on the training rows only (text weights, categories, tenants)."""
    text = embed = None
    has_prompts = "prompt" in frame and frame["prompt"].notna().any()
    windows = frame["prompt"].dropna().drop_duplicates().map(prompt_window) if has_prompts else None
    if params.use_text and has_prompts:
        text = fit_text(windows, params.text)
    if params.use_embed and has_prompts:
        embed = fit_embed(windows, params.embed)
    context = fit_context_spec(frame, params.context_window_s) if params.use_context else None
    columns = [*MODEL_FEATURES, *TOKEN_FEATURES, *PROMPT_FEATURES]
    columns += [f"text_{i}" for i in range(text.components.shape[0])] if text is not None else []
    columns += [f"emb_{i}" for i in range(embed.params.k)] if embed is not None else []
    columns += list(CONTEXT_FEATURES) if context is not None else []
    return FeatureSpec(tuple(columns), fit_model_spec(frame["model"], cards, prices), context, text, embed)


def build_features(frame: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """The feature frame (float32, `spec.columns` in order), one row per row of `frame`."""
    parts = [model_features(frame["model"], spec.models), token_features(frame), _per_prompt(frame, spec)]
    if spec.context is not None:
        parts.append(context_features(frame, spec.context))
    out = pd.concat([p.reset_index(drop=True) for p in parts], axis=1)
    return out[list(spec.columns)].astype("float32")


def throughput(frame: pd.DataFrame, spec: FeatureSpec) -> float:
    """Rows per second of `build_features` on `frame` (one timed run)."""
    started = time.perf_counter()
    build_features(frame, spec)
    return len(frame) / max(time.perf_counter() - started, 1e-9)


def write_spec(spec: FeatureSpec, path: Path) -> Path:
    from core.files import write_atomic

    return write_atomic(path, spec.to_json().encode())
