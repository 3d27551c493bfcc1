"""C kernels compiled on the host at first use and loaded through ctypes, cached per source, compiler and machine.

Why: a few hot loops (the text family's key hashing) cost tens of microseconds per request in Python and about
one in C. A kernel's C source ships beside the module that binds it; the system's C compiler (`$CC`, else `cc`)
builds it once into `user_cache("native")` (a file named by the sha256 of the source, the compiler's version
line, the flags and the machine), later processes load that file. No compiler, a failed build, or
`BEAST_NATIVE=0`: `shared_library` says why and the caller keeps its Python path (which its kernel is tested
equal to), as the router keeps LightGBM when lleaves cannot compile.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from core.files import user_cache

FLAGS = ("-O2", "-std=gnu99", "-ffp-contract=off", "-shared", "-fPIC")  # no FMA: floats round as numpy's
LIBS = ("-lm",)
T = TypeVar("T")
DISABLE_ENV = "BEAST_NATIVE"  # "0": never build or load a kernel
COMPILE_TIMEOUT_S = 120


@dataclass(frozen=True)
class NativeLibrary:
    """A loaded kernel library, or None and the reason there is none (`disabled` when the user said so)."""

    library: ctypes.CDLL | None
    reason: str = ""
    disabled: bool = False


def _compiler() -> tuple[str, str] | None:
    """(compiler path, its version line), None when there is none."""
    path = shutil.which(os.environ.get("CC") or "cc")
    if path is None:
        return None
    try:
        done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return None
    return path, (done.stdout.splitlines() or [""])[0]


def _build(source: Path, compiler: str, out: Path) -> str:
    """Compile `source` into the shared library `out`; "" on success, else the compiler's first error line."""
    try:
        done = subprocess.run(
            [compiler, *FLAGS, "-o", str(out), str(source), *LIBS],
            capture_output=True,
            text=True,
            timeout=COMPILE_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if "error" in line] or done.stderr.splitlines() or ["?"]
        return f"{Path(compiler).name} exited {done.returncode}: {lines[0]}"
    return ""


@functools.cache
def shared_library(source: Path, cache: Path | None = None) -> NativeLibrary:
    """The kernel library built from `source` (loaded from the cache when built before). Never raises."""
    if os.environ.get(DISABLE_ENV) == "0":
        return NativeLibrary(None, f"{DISABLE_ENV}=0", disabled=True)
    found = _compiler()
    if found is None:
        return NativeLibrary(None, f"no C compiler ({os.environ.get('CC') or 'cc'} not on PATH)")
    compiler, version = found
    code = source.read_bytes()
    key = hashlib.sha256(
        b"\0".join([code, version.encode(), " ".join(FLAGS + LIBS).encode(), platform.platform().encode()])
    ).hexdigest()
    target = (cache or user_cache("native")) / f"{source.stem}-{key[:32]}.so"
    if target.exists():
        cached = _load(target)
        if cached.library is not None:
            return cached
    with tempfile.TemporaryDirectory(prefix="beast-native-") as tmp:
        built = Path(tmp) / target.name
        failure = _build(source, compiler, built)
        if failure:
            return NativeLibrary(None, failure)
        staged = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:  # into the cache by rename: a concurrent process loads a whole file or builds its own
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(built, staged)
            os.replace(staged, target)
        except OSError:  # a read-only cache: load this build (a loaded library outlives its file)
            staged.unlink(missing_ok=True)
            return _load(built)
    return _load(target)


def _load(path: Path) -> NativeLibrary:
    try:
        return NativeLibrary(ctypes.CDLL(str(path)))
    except OSError as exc:
        return NativeLibrary(None, f"cannot load {path.name}: {exc}")


def library_or_warn(source: Path, fallback: str) -> ctypes.CDLL | None:
    """`shared_library(source)`'s library, else None and one warning "{fallback}: no C kernel (why)" (none when
    `BEAST_NATIVE=0` said so): for a module binding a kernel, once per process."""
    built = shared_library(source)
    if built.library is None and not built.disabled:
        warnings.warn(f"{fallback}: no C kernel ({built.reason})", stacklevel=3)
    return built.library


def configured_or_warn(source: Path, fallback: str, configure: Callable[[ctypes.CDLL], T]) -> T | None:
    """`configure(library)` for the kernel built from `source` (a binding told what the C does not restate), else
    None and one warning "{fallback}: why": no library (`library_or_warn`; silent when `BEAST_NATIVE=0`) or a
    binding that refuses it (its ValueError's message)."""
    library = library_or_warn(source, fallback)
    if library is None:
        return None
    try:
        return configure(library)
    except ValueError as exc:
        warnings.warn(f"{fallback}: {exc}", stacklevel=3)
        return None
