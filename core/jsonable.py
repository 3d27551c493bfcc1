"""One conversion to JSON-ready values for every report the stages write (drift, monitoring report)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np


def plain(x: Any) -> Any:
    """Mappings / sequences recursively; enums as their value, paths as text, numpy scalars as Python
    numbers, NaN / inf (not computed) as null."""
    if isinstance(x, Mapping):
        return {str(k): plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    if isinstance(x, Enum):
        return x.value
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(float(x)) else None
    return x
