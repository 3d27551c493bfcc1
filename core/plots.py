"""Plots a person would rather look at than read: calibration, feature importance, error by model.
Each function writes one PNG and returns its path (matplotlib's Agg backend: no display needed).

Same figure in, same bytes out (DVC hashes the PNGs of `dvc repro`): `save_figure` writes no software stamp
and no date (PNG `Software`; SVG / PDF dates, creator and producer), and SVG element ids come from a fixed salt."""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import matplotlib

matplotlib.use("Agg")
matplotlib.rcParams["svg.hashsalt"] = "beast"  # SVG element ids from a fixed salt, not a random one
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

# Per format, the metadata keys matplotlib would fill with its version or the current time: None drops them.
NO_STAMP: dict[str, dict[str, None]] = {
    "png": {"Software": None},
    "svg": {"Creator": None, "Date": None},
    "pdf": {"Creator": None, "Producer": None, "CreationDate": None, "ModDate": None},
}


def save_figure(fig: plt.Figure, path: Path, dpi: int = 110) -> Path:
    """Lay out, write atomically (a reader never sees half a file) and close: every plot goes here. The format
    is the suffix's (.png unless .svg / .pdf), written without a software stamp or date (`NO_STAMP`)."""
    from core.files import atomic_path

    fmt = path.suffix.lstrip(".").lower()
    fmt = fmt if fmt in NO_STAMP else "png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=fmt, metadata=NO_STAMP[fmt])
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
