"""Plots a person would rather look at than read: calibration, feature importance, error by model.
Each function writes one PNG and returns its path (matplotlib's Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def save_figure(fig: plt.Figure, path: Path, dpi: int = 110) -> Path:
    """Lay out, write atomically as PNG (a reader never sees half a file) and close: every plot goes here."""
    from core.files import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
    return path


def reliability_plot(table: pd.DataFrame, path: Path, title: str) -> Path:
    """Mean predicted vs mean actual per bin (the diagonal is perfect calibration); dot size = rows."""
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="perfect")
    ax.scatter(
        table["predicted"], table["actual"], s=20 + 200 * table["rows"] / table["rows"].max(), alpha=0.8, label="bins"
    )
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean predicted", ylabel="mean actual", title=title)
    ax.legend(loc="upper left")
    return save_figure(fig, path)


def importance_plot(booster: lgb.Booster, path: Path, title: str, top: int = 20) -> Path:
    """Total gain per feature, largest first."""
    gain = pd.Series(booster.feature_importance("gain"), index=booster.feature_name()).sort_values().tail(top)
    fig, ax = plt.subplots(figsize=(6, 0.25 * len(gain) + 1.2))
    ax.barh(gain.index, gain.to_numpy())
    ax.set(xlabel="total gain", title=title)
    return save_figure(fig, path)


def error_by_group_plot(values: pd.Series, path: Path, title: str, xlabel: str) -> Path:
    """One bar per group (e.g. mean absolute error per model), sorted."""
    values = values.sort_values()
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(values) + 1.2))
    ax.barh(values.index.astype(str), values.to_numpy())
    ax.set(xlabel=xlabel, title=title)
    return save_figure(fig, path)
