"""Read one section of params.yaml into a frozen dataclass, once, at a stage's edge.

Each stage's dataclass holds the defaults and params.yaml repeats them in full (one test holds the two equal,
`tests/test_params.py`), so a stage behaves the same with or without ./params.yaml. Values are checked at
load: types, unknown keys, unknown top-level sections, and ranges declared on the field's type
(`Fraction`, `Count`, ...), each failure one line naming `file:section.key`."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml

from core.errors import BeastError

T = TypeVar("T")

# Every top-level section a params file may hold (one per stage; the owning dataclasses: tests/test_params.py).
SECTIONS = (
    "ingest", "synth", "features", "train", "dask", "tune", "gate", "evaluate", "monitor", "retrain",
    "report", "recommend", "budget", "cache_sim", "cache_tiers", "semantic_cache", "stack",
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Between:
    """A range a number must fall in (open or closed at each end), declared with `Annotated`."""

    low: float
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def holds(self, x: float) -> bool:
        above = x > self.low if self.low_open else x >= self.low
        below = x < self.high if self.high_open else x <= self.high
        return above and below

    def describe(self) -> str:
        if self.high == math.inf:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


Fraction = Annotated[float, Between(0, 1, low_open=True, high_open=True)]  # a share or level strictly inside (0, 1)
Share = Annotated[float, Between(0, 1)]  # a rate or share that may be 0 or 1
PositiveShare = Annotated[float, Between(0, 1, low_open=True)]  # (0, 1], e.g. LightGBM's feature_fraction
Positive = Annotated[float, Between(0, low_open=True)]
NonNegative = Annotated[float, Between(0)]
Count = Annotated[int, Between(1)]
AtLeastTwo = Annotated[int, Between(2)]  # folds, bins, leaves, grid points
NonNegativeInt = Annotated[int, Between(0)]
Port = Annotated[int, Between(0, 65535)]


def read_yaml(path: Path) -> Any:
    """Parse a YAML file, naming the file in any error."""
    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except FileNotFoundError:
        raise BeastError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        raise BeastError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from None
    except UnicodeDecodeError as exc:
        raise BeastError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except RecursionError:
        raise BeastError(f"{path}: not valid YAML: nested too deeply") from None
    except OSError as exc:
        raise BeastError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _check_marks(marks: typing.Iterable[object], value: Any, where: str) -> None:
    """The `Between` marks of an `Annotated` type hold for `value` (one line naming `where` if not)."""
    for mark in marks:
        if isinstance(mark, Between) and not mark.holds(value):
            raise BeastError(f"{where}: expected a number {mark.describe()}, got {value!r}")


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is Annotated:
        inner, *marks = typing.get_args(hint)
        value = _coerce(value, inner, where)
        _check_marks(marks, value, where)
        return value
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return from_mapping(hint, value, where)
    if hint is Path:
        if not isinstance(value, str):
            raise BeastError(f"{where}: expected a path (text), got {value!r}")
        return Path(value)
    if origin is tuple:
        (item,) = {a for a in typing.get_args(hint) if a is not Ellipsis}
        if not isinstance(value, (list, tuple)):
            raise BeastError(f"{where}: expected a list, got {value!r}")
        return tuple(_coerce(v, item, where) for v in value)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return None if value is None else _coerce(value, args[0], where)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        if abs(value) > 1e300:
            raise BeastError(
                f"{where}: expected float, got an integer beyond float range ({len(str(abs(value)))} digits)"
            )
        return float(value)
    if isinstance(hint, type) and not isinstance(value, hint) or (hint is not bool and isinstance(value, bool)):
        raise BeastError(f"{where}: expected {getattr(hint, '__name__', hint)}, got {value!r}")
    return value


def from_mapping(cls: type[T], data: dict[str, Any] | None, where: str) -> T:
    """Build dataclass `cls` from a mapping; unknown keys and wrong types are errors naming `where`."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise BeastError(f"{where}: expected a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(map(str, set(data) - set(fields)))
    if unknown:
        raise BeastError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(fields)}")
    hints = typing.get_type_hints(cls, include_extras=True)
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    return cls(**kwargs)


def _check_ranges(value: Any, hint: Any, where: str) -> None:
    """The `Between` marks of `hint` (also inside tuples) hold for an already typed `value`."""
    origin = typing.get_origin(hint)
    if origin is Annotated:
        inner, *marks = typing.get_args(hint)
        _check_marks(marks, value, where)
        _check_ranges(value, inner, where)
    elif origin is tuple and isinstance(value, tuple):
        (item,) = {a for a in typing.get_args(hint) if a is not Ellipsis}
        for v in value:
            _check_ranges(v, item, where)


def with_overrides(params: T, **values: Any) -> T:
    """Command-line flags over a params section: every non-None value replaces the field of that name,
    range-checked like a params.yaml value (the error names the flag, e.g. `--eval-from`)."""
    changes = {k: v for k, v in values.items() if v is not None}
    hints = typing.get_type_hints(type(params), include_extras=True)
    for key, value in changes.items():
        _check_ranges(value, hints[key], f"--{key.replace('_', '-')}")
    return dataclasses.replace(params, **changes)  # type: ignore[type-var]


def load_section(params_file: Path, section: str, cls: type[T]) -> T:
    """Read `section` (dotted, e.g. "train.quality") of a params file into `cls`; absent = defaults."""
    node: Any = read_yaml(params_file) or {}
    unknown = sorted(map(str, set(node) - set(SECTIONS))) if isinstance(node, dict) else []
    if unknown:
        raise BeastError(f"{params_file}: unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}")
    for part in section.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return from_mapping(cls, node, f"{params_file}:{section}")


def load_params(params_file: Path | None, section: str, cls: type[T]) -> T:
    """A stage's params: from `params_file` (must exist), else ./params.yaml if present, else defaults."""
    if params_file is None:
        params_file = Path("params.yaml")
        if not params_file.exists():
            return cls()
    return load_section(params_file, section, cls)
