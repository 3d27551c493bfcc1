"""The remaining-budget file: how a router learns how much it may still spend (format `beast.budget-state` v1).

Whoever knows the spend (the ledger of `beast monitor budget`, a billing export, an operator) writes one small JSON
object; every router that routes with the `budget` policy reads it and paces its spend so that the
remaining money lasts until the period ends::

    {"kind": "beast.budget-state", "version": "1", "scope": "tenant-a",
     "period_start": "2026-11-01T00:00:00Z", "period_end": "2026-12-01T00:00:00Z",
     "budget_usd": 5000.0, "spent_usd": 1234.5, "updated_at": "2026-11-26T09:00:00Z"}

Target rate (USD per hour) = max(budget_usd - spent_usd - what this router spent since it read the file, 0)
/ hours from now to `period_end` (at least one minute); a period that has ended is paced at 0 and the reason says so. Writers replace the file atomically (`write_state`); readers re-read it when it changes and keep
the last good state (and say so) if it becomes unreadable. Stdlib only: a router in any language can
implement this in a few lines.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from core.errors import BeastError

KIND = "beast.budget-state"
VERSION = "1"
MAX_BYTES = 64 * 1024
MIN_HOURS_LEFT = 1 / 60


class BudgetFileError(BeastError):
    """A budget file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class BudgetState:
    scope: str
    period_start: dt.datetime
    period_end: dt.datetime
    budget_usd: float
    spent_usd: float
    updated_at: dt.datetime

    @property
    def remaining_usd(self) -> float:
        return max(self.budget_usd - self.spent_usd, 0.0)

    def to_json(self) -> str:
        stamp = {
            k: v.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            for k, v in asdict(self).items()
            if isinstance(v, dt.datetime)
        }
        return json.dumps({"kind": KIND, "version": VERSION} | asdict(self) | stamp, indent=1) + "\n"


def _time(raw: Mapping[str, object], key: str, where: str) -> dt.datetime:
    value = raw.get(key)
    try:
        when = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")) if isinstance(value, str) else None
    except ValueError:
        when = None
    if when is None:
        raise BudgetFileError(f"{where}: {key}: expected RFC 3339 text such as 2026-12-01T00:00:00Z, got {value!r}")
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def _finite(value: int | float) -> bool:
    """math.isfinite, False (not OverflowError) for an integer beyond float range."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _usd(raw: Mapping[str, object], key: str, where: str) -> float:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not _finite(value) or value < 0:
        raise BudgetFileError(f"{where}: {key}: expected a finite number >= 0 (USD), got {value!r}")
    return float(value)


def parse_state(raw: object, where: str) -> BudgetState:
    """A budget state from decoded JSON; every problem names `where` and the field."""
    if not isinstance(raw, dict):
        raise BudgetFileError(f"{where}: expected a JSON object, got {type(raw).__name__}")
    if raw.get("kind") != KIND or raw.get("version") != VERSION:
        raise BudgetFileError(
            f"{where}: kind/version: expected {KIND!r} version {VERSION!r}, got {raw.get('kind')!r} version {raw.get('version')!r}"
        )
    scope = raw.get("scope", "all")
    if not isinstance(scope, str):
        raise BudgetFileError(f"{where}: scope: expected text, got {scope!r}")
    start, end = _time(raw, "period_start", where), _time(raw, "period_end", where)
    if end <= start:
        raise BudgetFileError(f"{where}: period_end {end.isoformat()} is not after period_start {start.isoformat()}")
    return BudgetState(
        scope,
        start,
        end,
        _usd(raw, "budget_usd", where),
        _usd(raw, "spent_usd", where),
        _time(raw, "updated_at", where),
    )


def read_state(path: Path) -> BudgetState:
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise BudgetFileError(f"{path}: cannot read the budget file ({exc.strerror or exc})") from None
    if len(data) > MAX_BYTES:
        raise BudgetFileError(f"{path}: larger than {MAX_BYTES} bytes; not a budget file")
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError) as exc:  # bad UTF-8 / JSON, a 4300+ digit number, nesting too deep
        raise BudgetFileError(f"{path}: not JSON ({exc})") from None
    return parse_state(raw, str(path))


def write_state(path: Path, state: BudgetState) -> Path:
    """Replace `path` atomically, so a reader sees the old state or the new one, never half of either."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(state.to_json())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


class BudgetFile:
    """A budget file watched by a router: re-read when its mtime or size changes, looked at no more than
    every `refresh_s` seconds; an unreadable update keeps the last good state and reports why. The router's
    own spend since the state was read (`spend`) is taken off what the file says remains, so the pace holds
    between updates instead of drifting up as the period runs out."""

    def __init__(self, path: Path, refresh_s: float = 5.0, clock: Callable[[], float] = time.time):
        self.path, self.refresh_s, self.clock = Path(path), float(refresh_s), clock
        self.state = read_state(self.path)  # a bad file at start is an error, not a silent default
        self.problem: str | None = None
        self.own_usd = 0.0  # this router's spend since `state` was read
        self._stamp = self._stat()
        self._checked = clock()

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def current(self) -> BudgetState:
        now = self.clock()
        if now - self._checked >= self.refresh_s:
            self._checked = now
            stamp = self._stat()
            if stamp != self._stamp:
                self._stamp = stamp
                try:
                    self.state, self.problem, self.own_usd = read_state(self.path), None, 0.0
                except BudgetFileError as exc:
                    self.problem = f"{exc}; keeping the state of {self.state.updated_at:%Y-%m-%dT%H:%M:%SZ}"
        return self.state

    def spend(self, usd: float) -> None:
        self.own_usd += usd

    def remaining_usd(self) -> float:
        return max(self.current().remaining_usd - self.own_usd, 0.0)

    def target_usd_per_hour(self) -> float:
        """What remains (after this router's own spend) over the hours left in the period.

        A period that has ended is never paced on: the rate is 0 (spend as little as possible: the budget
        policy then picks the cheapest models) and `problem` says why, until a current state is written.
        (Pacing what was left over the last minute allowed would spend it at once.)"""
        state = self.current()
        now = dt.datetime.fromtimestamp(self.clock(), dt.UTC)
        if now >= state.period_end:
            ended = (
                f"{self.path}: the budget period ended {state.period_end:%Y-%m-%dT%H:%M:%SZ}: not pacing on it "
                "(rate 0, cheapest models) until a current budget-state file is written"
            )
            if self.problem is None or ended not in self.problem:
                self.problem = ended if self.problem is None else f"{ended}; {self.problem}"
            return 0.0
        hours = max((state.period_end - now).total_seconds() / 3600, MIN_HOURS_LEFT)
        return self.remaining_usd() / hours
