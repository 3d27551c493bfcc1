"""Model identity as features: one predictor scores any candidate model from its id and its attributes
(price, size), so a new model with a card and a price gets sensible predictions before it has traffic."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.config import read_yaml
from core.errors import BeastError
from traces.prices import PriceTable

SIZE_CLASSES = ("xs", "s", "m", "l", "xl")  # ordinal: the feature is the index
_CARD_KEYS = {"provider", "open_weights", "params_b", "size_class"}
MODEL_FEATURES = ("model_code", "price_in", "price_out", "params_b", "size_class", "open_weights")


@dataclass(frozen=True)
class ModelCard:
    model: str
    provider: str
    open_weights: bool
    params_b: float | None
    size_class: str


def parse_cards(doc: object, source: str) -> tuple[ModelCard, ...]:
    if not isinstance(doc, dict) or not isinstance(doc.get("models"), dict):
        raise BeastError(f"{source}: expected a top-level `models:` mapping of model -> card")
    cards = []
    for model, card in doc["models"].items():
        where = f"{source}: models.{model}"
        if not isinstance(card, dict) or set(card) != _CARD_KEYS:
            raise BeastError(f"{where}: a card needs exactly {', '.join(sorted(_CARD_KEYS))}")
        if card["size_class"] not in SIZE_CLASSES:
            raise BeastError(
                f"{where}.size_class: expected one of {', '.join(SIZE_CLASSES)}, got {card['size_class']!r}"
            )
        size = card["params_b"]
        if size is not None and (isinstance(size, bool) or not isinstance(size, (int, float)) or size <= 0):
            raise BeastError(f"{where}.params_b: expected a positive number or null, got {size!r}")
        cards.append(
            ModelCard(
                str(model),
                str(card["provider"]),
                bool(card["open_weights"]),
                None if size is None else float(size),
                card["size_class"],
            )
        )
    return tuple(cards)


def load_cards(path: Path) -> tuple[ModelCard, ...]:
    return parse_cards(read_yaml(path), str(path))


@dataclass(frozen=True)
class ModelSpec:
    """Plain data a router needs to compute model features: category order and per-model attributes."""

    categories: tuple[str, ...]  # model_code = index in this tuple (NaN for a model not in it)
    attributes: dict[str, dict[str, float | None]]  # model -> price_in, price_out, params_b, size_class, open_weights

    def to_dict(self) -> dict:
        return {"categories": list(self.categories), "attributes": self.attributes}

    @classmethod
    def from_dict(cls, d: dict) -> ModelSpec:
        return cls(tuple(d["categories"]), dict(d["attributes"]))


def fit_model_spec(models: pd.Series, cards: tuple[ModelCard, ...], prices: PriceTable) -> ModelSpec:
    """Categories from the models seen in training (sorted); attributes for every model with a card or price."""
    by_card = {c.model: c for c in cards}
    names = sorted(set(by_card) | set(prices.models))
    attrs = {}
    for name in names:
        card, price = by_card.get(name), prices.current(name)
        attrs[name] = {
            "price_in": price.input if price else None,
            "price_out": price.output if price else None,
            "params_b": card.params_b if card else None,
            "size_class": float(SIZE_CLASSES.index(card.size_class)) if card else None,
            "open_weights": float(card.open_weights) if card else None,
        }
    return ModelSpec(tuple(sorted(set(models.dropna().astype(str)))), attrs)


def category_codes(values: object, categories: Sequence[str]) -> np.ndarray:
    """Float code = position in `categories`; null or unseen values -> NaN (LightGBM reads it as missing,
    never as another category's code). The one encoding every categorical feature uses."""
    arr = pd.Series(values, dtype=object)
    idx = pd.Index(list(categories), dtype=object).get_indexer(arr.where(arr.notna(), None).to_numpy())
    return np.where(idx >= 0, idx, np.nan).astype(np.float64)


def model_features(models: pd.Series, spec: ModelSpec) -> pd.DataFrame:
    """One row per request: the model's category code and attributes (NaN where unknown)."""
    names = models.astype(object).to_numpy()
    codes = category_codes(names, spec.categories)
    table = pd.DataFrame.from_dict(spec.attributes, orient="index", dtype=float)
    attrs = table.reindex(names).reset_index(drop=True)
    out = pd.DataFrame({"model_code": codes})
    for col in MODEL_FEATURES[1:]:
        out[col] = attrs[col].to_numpy(dtype=float) if col in attrs else np.nan
    return out.astype("float32")
