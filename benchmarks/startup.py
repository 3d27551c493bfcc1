"""Start-up benchmark, one run, ratios against a reference measured in the same run: how long `beast --help`,
`beast --version`, `beast metrics`, `beast traces contract` and `beast route --help` (optionally every command's
`--help`) take from process start to exit, each the median of `runs` fresh processes, next to `python -c pass`
with the same interpreter (the floor no command can beat).

Rounds are interleaved (the reference and every command once per round, after one untimed warm-up round), so a
machine that gets busier mid-run slows all of them alike. The goal: every command here under 1 s; a command that
needs a heavy library (LightGBM, pandas, MLflow, ...) imports it inside its handler, never at `beast` start-up.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from core.errors import BeastError

GOAL_S = 1.0
COMMANDS: tuple[tuple[str, ...], ...] = (
    ("--help",),
    ("--version",),
    ("metrics",),
    ("traces", "contract"),
    ("route", "--help"),
)


@dataclass(frozen=True)
class StartupTime:
    command: str  # as typed, e.g. "beast metrics"
    median_s: float
    min_s: float
    ratio: float  # median over the median of `python -c pass`
    exit_code: int  # of the last run (a command that fails is not measuring its start-up)


def entry_point() -> list[str]:
    """How `beast` is started: the console script next to this interpreter, else `python -m beast.cli`."""
    script = Path(sys.executable).parent / "beast"
    return [str(script)] if script.exists() else [sys.executable, "-m", "beast.cli"]


def _run(argv: Sequence[str], cwd: Path | None) -> tuple[float, int]:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start, done.returncode


def measure(
    commands: Sequence[Sequence[str]] = COMMANDS, runs: int = 7, cwd: Path | None = None
) -> tuple[float, list[StartupTime]]:
    """Median seconds of `python -c pass`, and each command's start-up time and ratio to it."""
    if runs < 1:
        raise BeastError(f"--runs: expected >= 1, got {runs}")
    beast = entry_point()
    argvs = [[sys.executable, "-c", "pass"]] + [[*beast, *c] for c in commands]
    times: list[list[float]] = [[] for _ in argvs]
    codes = [0] * len(argvs)
    for round_ in range(runs + 1):  # round 0 warms the file-system cache and is not timed
        for i, argv in enumerate(argvs):
            seconds, codes[i] = _run(argv, cwd)
            if round_:
                times[i].append(seconds)
    base = statistics.median(times[0])
    return base, [
        StartupTime("beast " + " ".join(c), statistics.median(t), min(t), statistics.median(t) / base, code)
        for c, t, code in zip(commands, times[1:], codes[1:])
    ]


def render(base: float, results: Sequence[StartupTime], runs: int) -> str:
    width = max(len(r.command) for r in results)
    lines = [
        f"start-up, median of {runs} fresh processes each; reference `python -c pass`: {base:.3f} s",
        f"{'command':<{width}}  {'seconds':>8}  {'x python':>8}  goal < {GOAL_S:g} s",
    ]
    for r in results:
        verdict = f"exit {r.exit_code}" if r.exit_code else ("ok" if r.median_s < GOAL_S else "SLOW")
        lines.append(f"{r.command:<{width}}  {r.median_s:>8.3f}  {r.ratio:>7.1f}x  {verdict}")
    return "\n".join(lines)


def main(
    runs: int = 7, extra: Sequence[Sequence[str]] = (), as_json: bool = False, cwd: Path | None = None
) -> list[StartupTime]:
    """`beast bench startup`: COMMANDS and the `extra` ones (the CLI passes every `<command> --help` for --every-help);
    prints the table (or, with `as_json`, only the JSON) and returns the results."""
    commands = list(dict.fromkeys(tuple(c) for c in [*COMMANDS, *extra]))  # `route --help` may be in both
    base, results = measure(commands, runs, cwd)
    if as_json:
        doc = {
            "python": sys.executable,
            "runs": runs,
            "goal_s": GOAL_S,
            "python_pass_s": base,
            "commands": [asdict(r) for r in results],
        }
        print(json.dumps(doc, indent=2))
    else:
        print(render(base, results, runs))
    return results
