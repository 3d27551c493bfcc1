"""Crash injection: run an operation in a forked child and SIGKILL it just before its k-th file-system event.

Events are the calls that change what is on disk and in what order: rename / replace / link / symlink /
unlink / rmdir / mkdir / fsync, `shutil.rmtree` / `copytree` / `move`, opening a file for writing, and each
predictor's alias move or new-version aliasing in the registry (database writes no Python file call shows). The
child is forked from a `forkserver` that has imported the project but never run LightGBM or opened a
database, so OpenMP and SQLAlchemy state is never inherited. `count_events(op)` runs an operation to the end
and returns how many events it made; `kill_at(op, k)` runs it again and kills it just before event k (the
kill points are the events themselves, so they are deterministic and cover every step boundary).
"""

from __future__ import annotations

import builtins
import json
import multiprocessing
import os
import shutil
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path

PRELOAD = [
    "pandas",
    "pyarrow.parquet",
    "lightgbm",
    "numpy",
    "matplotlib.pyplot",
    "traces.ingest",
    "models.export",
    "serving.bundle",
    "models.registry",
    "abtest.gate",
    "pipelines.promote",
    "pipelines.flows",
]
_CTX = None


def context() -> multiprocessing.context.BaseContext:
    global _CTX
    if _CTX is None:
        _CTX = multiprocessing.get_context("forkserver")
        _CTX.set_forkserver_preload(PRELOAD)
    return _CTX


def _install(kill_at: int | None, counter: list[int], names: list[str]) -> None:
    """Wrap every event function: count it; at event `kill_at`, SIGKILL this process before it happens."""

    def hook(fn: Callable, is_event: Callable[..., bool] = lambda *a, **k: True) -> Callable:
        def wrapped(*args, **kwargs):
            if is_event(*args, **kwargs):
                counter[0] += 1
                names.append(fn.__name__)
                if counter[0] == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
            return fn(*args, **kwargs)

        return wrapped

    for name in ("rename", "replace", "link", "symlink", "unlink", "remove", "rmdir", "mkdir", "fsync"):
        setattr(os, name, hook(getattr(os, name)))
    for name in ("rmtree", "copytree", "move"):
        setattr(shutil, name, hook(getattr(shutil, name)))

    def writes(file, mode="r", *args, **kwargs) -> bool:
        return any(c in mode for c in "wax+")

    builtins.open = hook(builtins.open, writes)
    from models import registry  # the one module that talks to MLflow: one event per predictor's alias move

    registry._apply = hook(registry._apply)
    registry._alias_new_version = hook(registry._alias_new_version)


def _child(op: Callable[..., None], args: tuple, kill_at: int | None, out: str) -> None:
    tempfile.tempdir = os.path.dirname(out)  # a killed child's temporary folders stay in the test's scratch, not /tmp
    counter, names = [0], []
    _install(kill_at, counter, names)
    op(*args)
    with builtins.open(out, "w") as fh:  # counted too, after the operation: harmless
        fh.write(json.dumps(names[: counter[0]]))


def run(
    op: Callable[..., None], args: tuple, kill_at: int | None, scratch: str, timeout: float = 120
) -> tuple[int, list[str] | None]:
    """(exit code, events made, by function name): exit code -9 when killed; events only when it finished."""
    out = os.path.join(scratch, f"events-{os.getpid()}-{kill_at}")
    if os.path.exists(out):
        os.unlink(out)
    p = context().Process(target=_child, args=(op, args, kill_at, out))
    p.start()
    p.join(timeout)
    if p.is_alive():
        p.kill()
        p.join()
        raise TimeoutError(f"{op.__name__} did not finish in {timeout} s")
    events = json.loads(Path(out).read_text()) if os.path.exists(out) else None
    return p.exitcode, events


def event_names(op: Callable[..., None], args: tuple, scratch: str) -> list[str]:
    """The events `op` makes when nothing kills it, in order (event k is names[k - 1])."""
    code, events = run(op, args, None, scratch)
    if code != 0 or events is None:
        raise RuntimeError(f"{op.__name__} failed without a kill (exit {code})")
    return events


def count_events(op: Callable[..., None], args: tuple, scratch: str) -> int:
    return len(event_names(op, args, scratch))


def kill_at(op: Callable[..., None], args: tuple, k: int, scratch: str) -> bool:
    """Run `op` and kill it before event k; True if it was killed (False: it finished first)."""
    code, _ = run(op, args, k, scratch)
    if code not in (0, -signal.SIGKILL):
        raise RuntimeError(f"{op.__name__} exited {code} (neither finished nor killed) at kill point {k}")
    return code == -signal.SIGKILL
