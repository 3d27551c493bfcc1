"""File helpers every stage shares: atomic writes, deterministic gzip, whole-file reads with clear errors."""

from __future__ import annotations

import errno
import gzip
import io
import os
import subprocess
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from core.errors import BeastError

PROJECT = Path(__file__).resolve().parents[1]  # the checkout: where its data/ (prices, shipped prior) lives


def in_project(path: Path) -> Path:
    """`path`, or for a relative path not found in the working directory the same path under the project folder
    when it is there: a command that reads the checkout's own files (the price table, the cache prior) runs from
    anywhere, and a path found in neither place is reported as given."""
    if path.is_absolute() or path.exists() or not (PROJECT / path).exists():
        return path
    return PROJECT / path


def user_cache(name: str) -> Path:
    """`$XDG_CACHE_HOME/beast/<name>`, else `~/.cache/beast/<name>`: what a machine rebuilds when it is gone."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "beast" / name


# errno of a write the file system refused: disk full, quota, read-only, permission, file size limit
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG})


def os_reason(exc: OSError) -> str:
    """The short reason of an OSError ("No space left on device"), also for pyarrow's long messages."""
    return os.strerror(exc.errno) if exc.errno else (exc.strerror or str(exc))


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a hidden temp sibling of `path`; on success it is synced and renamed into place, on failure
    removed, so a reader sees the old file or the whole new one, never half of it. A write the file
    system refuses (WRITE_ERRNOS) is re-raised as an OSError whose filename is `path`, not the temp name."""
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        if exc.errno not in WRITE_ERRNOS:
            raise
        raise OSError(exc.errno, os_reason(exc), str(path)) from exc
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def write_atomic(path: Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def gzip_writer(fileobj: BinaryIO, level: int = 9) -> gzip.GzipFile:
    """A gzip stream with mtime 0 and no file name in the header: same bytes in, same file out."""
    return gzip.GzipFile(filename="", mode="wb", fileobj=fileobj, compresslevel=level, mtime=0)


def gzip_bytes(data: bytes, level: int = 9) -> bytes:
    buf = io.BytesIO()
    with gzip_writer(buf, level) as gz:
        gz.write(data)
    return buf.getvalue()


MAX_INPUT_ENV = "BEAST_MAX_INPUT_BYTES"
MAX_INPUT_BYTES = 8 * 2**30  # a trace file read whole, after gunzip; bigger files are split (or the limit raised)


def max_input_bytes() -> int:
    """The input size limit: `BEAST_MAX_INPUT_BYTES` when set, else 8 GiB."""
    value = os.environ.get(MAX_INPUT_ENV, "")
    return int(value) if value.isdigit() and int(value) > 0 else MAX_INPUT_BYTES


def _gunzip(data: bytes, path: Path, limit: int) -> bytes:
    """Decompress in chunks, stopping at `limit` bytes: a gzip bomb fails fast instead of filling memory."""
    parts, total = [], 0
    with gzip.GzipFile(fileobj=io.BytesIO(data)) as gz:
        while chunk := gz.read(min(1 << 24, limit + 1 - total)):
            total += len(chunk)
            if total > limit:
                raise BeastError(
                    f"{path}: decompresses to more than {limit:,} bytes ({MAX_INPUT_ENV}); split the file or raise the limit"
                )
            parts.append(chunk)
    return b"".join(parts)


def read_bytes(path: Path) -> bytes:
    """Whole file, gunzipped when it ends in .gz, at most `max_input_bytes()` either way; any failure is one
    line naming the file."""
    limit = max_input_bytes()
    try:
        if path.is_file() and path.stat().st_size > limit:
            raise BeastError(
                f"{path}: {path.stat().st_size:,} bytes, more than {limit:,} ({MAX_INPUT_ENV}); split the file or raise the limit"
            )
        data = path.read_bytes()
        return _gunzip(data, path, limit) if path.suffix == ".gz" else data
    except FileNotFoundError:
        raise BeastError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise BeastError(f"{path}: is a directory, expected a file") from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise BeastError(f"{path}: unreadable gzip ({exc}); the file is truncated or not gzip") from None
    except OSError as exc:
        raise BeastError(f"{path}: cannot read: {exc.strerror or exc}") from None


def git_commit(repo: Path) -> str | None:
    """HEAD of the git checkout at `repo` (provenance for runs and bundles), or None outside git."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


@contextmanager
def file_lock(path: Path, what: str, timeout_s: float = 120.0) -> Iterator[Path]:
    """Exclusive OS lock on `path` (a file, created if missing, or a folder) for a read-decide-write sequence; a second holder
    waits up to `timeout_s`, then gets a BeastError naming `what` holds it. The OS releases the lock when
    its process dies, so a crash never leaves it held."""
    import fcntl
    import time

    from core.errors import BeastError

    if path.is_dir():  # a folder is locked through its own descriptor: no lock file is left beside anything
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise BeastError(f"another {what} holds the lock {path} (waited {timeout_s:.0f} s)") from None
                time.sleep(0.1)
        try:
            yield path
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def exchange(a: Path, b: Path) -> None:
    """Swap two existing paths in one atomic step (Linux renameat2 RENAME_EXCHANGE): at every instant each
    name holds one whole folder, old or new. OSError (ENOSYS / EINVAL / ENOTSUP) where the kernel or file
    system cannot; callers fall back to two renames."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        raise OSError(errno.ENOSYS, "renameat2 is not available", str(a))
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(a), None, str(b))
