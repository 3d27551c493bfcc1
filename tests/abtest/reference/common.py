"""Shared helpers for the reference-vector generators: seeded data, case records, tolerances."""

from __future__ import annotations

import numpy as np

# Tolerance policy (also in tests/abtest/test_reference_vectors.py):
# same formula on both sides, only floating-point noise (also for gbstats / spotify-confidence, which work
# from sums of squares, and for references solved by brentq to machine precision)
EXACT = {"abs": 1e-9, "rel": 1e-7}
UNITS = {"abs": 1.0, "rel": 0.0}  # sample sizes after rounding up: +-1 unit


def data(seed: int, kind: str, n: int, loc: float = 0.0, scale: float = 1.0, decimals: int = 4) -> list[float]:
    """Seeded sample (<= 200 values), rounded so the JSON stores exactly the numbers both sides use."""
    if n > 200:
        raise ValueError("keep arrays <= 200 values")
    rng = np.random.default_rng(seed)
    if kind == "normal":
        x = rng.normal(loc, scale, n)
    elif kind == "lognormal":
        x = loc + rng.lognormal(0.0, scale, n)
    elif kind == "poisson":
        x = rng.poisson(scale, n).astype(float) + loc
    elif kind == "integers":  # heavily tied ratings, loc .. loc + scale
        x = rng.integers(int(loc), int(loc + scale) + 1, n).astype(float)
    else:
        raise ValueError(kind)
    return [float(v) for v in np.round(x, decimals)]


def num(x: object) -> float | bool | list:
    """A plain JSON value: float (NaN / inf kept), bool, or a list of those."""
    if isinstance(x, bool | np.bool_):
        return bool(x)
    if isinstance(x, list | tuple | np.ndarray):
        return [num(v) for v in x]
    return float(x)  # NaN / inf serialise as NaN / Infinity, which json.load reads back


def case(
    id: str, source: str, function: str, kwargs: dict, expected: dict, tol: dict | None = None, note: str = ""
) -> dict:
    out = {
        "id": id,
        "source": source,
        "function": function,
        "kwargs": kwargs,
        "expected": {k: (v if isinstance(v, str) else num(v)) for k, v in expected.items()},
        "tol": dict(tol or EXACT),
    }
    if note:
        out["note"] = note
    return out
