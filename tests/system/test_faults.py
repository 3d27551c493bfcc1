"""Faults (issue 9): disk full, read-only output, bad price table, unavailable MLflow store.

Each case runs the real `beast` command in a subprocess on a folder holding a previous good state (a stored
dataset, a bundle and its .tar.gz, a report, a tracking store) and checks three things: exit code 2 with one
`beast <command>: error: ...` line naming what failed (no traceback), and every file and folder of the
previous state byte-identical afterwards (no staging, temp or partial file left).

How the faults are made (chmod does not stop root, so mounts are used):
- read-only: a tmpfs remounted read-only (`mount -o remount,ro`) after the good state is written into it;
- disk full: a 1 MB tmpfs (24 MB for a bundle: its embedding table and tokenizer take ~5 MB, twice with the archive) filled to the last byte, or to `room` bytes, by a filler file
  after the good state is written. Without mount rights, disk full falls back to RLIMIT_FSIZE in the child
  (SIGXFSZ ignored, so writes fail with EFBIG), and the read-only and partly-full cases skip.
"""

from __future__ import annotations

import errno
import hashlib
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

ENV = os.environ | {"DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true", "OMP_WAIT_POLICY": "PASSIVE"}
ENV.pop("MLFLOW_TRACKING_URI", None)
FILLER = "filler.bin"
FSIZE_LIMIT = 4096  # RLIMIT_FSIZE fallback: any file write beyond 4 KB fails with EFBIG


# ------------------------------------------------------------------------------------------------ helpers


def beast(
    *args: object, cwd: Path, env: dict[str, str] | None = None, preexec: Callable[[], None] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "beast.cli", *map(str, args)],
        cwd=cwd,
        env=env or ENV,
        preexec_fn=preexec,
        capture_output=True,
        text=True,
        timeout=180,
    )


def snapshot(root: Path) -> dict[str, str | None]:
    """Every file (sha256) and folder (None) under `root`, hidden ones included; the filler excluded."""
    return {
        p.relative_to(root).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
        if p.name != FILLER
    }


def assert_clean_failure(out: subprocess.CompletedProcess, command: str, *needles: str) -> str:
    """Exit 2, no traceback, the last stderr line is the one-line error and names every needle."""
    assert out.returncode == 2, f"exit {out.returncode}\n{out.stderr}"
    assert "Traceback" not in out.stderr, out.stderr
    line = out.stderr.strip().splitlines()[-1]
    assert line.startswith(f"beast {command}: error: "), out.stderr
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    return line


@cache
def can_mount() -> bool:
    """Root and allowed to mount a tmpfs and remount it read-only here (BEAST_FAULTS_NO_MOUNT=1: act as if not)."""
    if os.geteuid() != 0 or not shutil.which("mount") or os.environ.get("BEAST_FAULTS_NO_MOUNT") == "1":
        return False
    probe = Path(f"/tmp/beast-mount-probe-{uuid.uuid4().hex[:8]}")
    probe.mkdir()
    try:
        ok = (
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)], capture_output=True
            ).returncode
            == 0
        )
        if ok:
            ok = subprocess.run(["mount", "-o", "remount,ro", str(probe)], capture_output=True).returncode == 0
            subprocess.run(["umount", str(probe)], capture_output=True)
        return ok
    finally:
        probe.rmdir()


@contextmanager
def tmpfs(path: Path, size: str = "1m") -> Iterator[Path]:
    path.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def remount_ro(path: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
    with pytest.raises(OSError) as info:  # it is read-only, even for root
        (path / "probe").write_bytes(b"x")
    assert info.value.errno == errno.EROFS


def fill(path: Path, leave: int = 0) -> None:
    """Write a filler file until the file system says it is full, then give back `leave` bytes."""
    chunk = b"\0" * 4096
    with open(path / FILLER, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        fh.truncate(max(0, fh.tell() - leave))
    if not leave:
        with pytest.raises(OSError), (path / FILLER).open("ab", buffering=0) as fh:
            fh.write(b"x")


def pages(paths: Iterator[Path]) -> int:
    """Bytes these files take on a tmpfs (whole 4 KB pages)."""
    return sum(-(-p.stat().st_size // 4096) * 4096 for p in paths if p.is_file())


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FSIZE_LIMIT, FSIZE_LIMIT))


@contextmanager
def full_disk(
    path: Path, size: str = "1m"
) -> Iterator[tuple[Path, Callable[..., tuple[Callable[[], None] | None, str]]]]:
    """(folder, make_full): write the good state into the folder, then call make_full(leave=0 bytes free);
    it returns the preexec_fn for the child (None when the folder really is full) and the reason the error
    must name."""
    if can_mount():
        with tmpfs(path, size) as root:

            def make_full(leave: int = 0) -> tuple[Callable[[], None] | None, str]:
                fill(root, leave)
                return None, "No space left on device"

            yield root, make_full
    else:
        path.mkdir(parents=True)
        yield path, lambda leave=0: (_limit_file_size, "File too large")


@contextmanager
def read_only(path: Path) -> Iterator[tuple[Path, Callable[[], None]]]:
    if not can_mount():
        pytest.skip(
            "read-only output needs a read-only tmpfs mount, i.e. root with mount rights (chmod 0o555 does not stop root)"
        )
    with tmpfs(path, "24m") as root:
        yield root, lambda: remount_ro(root)


# ------------------------------------------------------------------------------------------------ inputs


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cwd of every run: data/ holds copies of the price table, model cards and budgets params.yaml names
    (relative paths), so outputs with default paths land here, never in the repository."""
    from traces.synth import main as synth

    tmp = tmp_path_factory.mktemp("faults")
    (tmp / "data").mkdir()
    for name in ("prices.yaml", "models.yaml", "budgets.yaml"):
        shutil.copy(ROOT / "data" / name, tmp / "data" / name)
    synth(
        tmp / "first.jsonl", ROOT / "params.yaml", {"rows": 300, "seed": 1, "malformed": 0.0}, ROOT / "data/prices.yaml"
    )
    synth(
        tmp / "second.jsonl",
        ROOT / "params.yaml",
        {"rows": 300, "seed": 2, "malformed": 0.05},
        ROOT / "data/prices.yaml",
    )
    return tmp


def ingest_into(work: Path, root: Path) -> None:
    """The previous good state: the first synthetic file (300 clean rows) ingested into root/traces."""
    from traces.ingest import IngestParams, ingest
    from traces.prices import load_prices

    ingest(
        [work / "first.jsonl"],
        IngestParams(out=root / "traces", quarantine=root / "q", metrics=None),
        load_prices(ROOT / "data/prices.yaml"),
    )


def ingest_args(
    work: Path, root: Path, quarantine: Path | None = None, prices: Path = ROOT / "data/prices.yaml"
) -> list[object]:
    """`beast ingest` of the second file (300 rows, 5% malformed) into root/traces."""
    return [
        "ingest",
        work / "second.jsonl",
        "--out",
        root / "traces",
        "--quarantine",
        quarantine or root / "q",
        "--params",
        ROOT / "params.yaml",
        "--prices",
        prices,
    ]


# ------------------------------------------------------------------------------------------------ ingest


def test_ingest_second_file_stores_new_rows(work: Path, tmp_path: Path) -> None:
    """Control: without a fault the same command stores new rows and quarantines the bad ones."""
    ingest_into(work, tmp_path)
    before = {k for k in snapshot(tmp_path) if k.endswith(".parquet")}
    out = beast(*ingest_args(work, tmp_path), cwd=work)
    assert out.returncode == 0, out.stderr
    assert len({k for k in snapshot(tmp_path) if k.endswith(".parquet")} - before) >= 1
    assert len(list((tmp_path / "q").glob("*.jsonl"))) == 1


def test_ingest_into_read_only_dataset(work: Path, tmp_path: Path) -> None:
    with read_only(tmp_path / "mnt") as (root, make_ro):
        ingest_into(work, root)
        make_ro()
        before = snapshot(root)
        out = beast(*ingest_args(work, root), cwd=work)
        assert_clean_failure(out, "ingest", str(root / "traces"), "Read-only file system")
        assert snapshot(root) == before


@pytest.mark.parametrize(
    ("full", "room", "fails"),
    [("both", 0, ""), ("quarantine", 0, "q"), ("dataset", 8192, "traces/date=")],
    ids=["nothing_fits", "quarantine_fails", "dataset_fails"],
)
def test_ingest_onto_full_disk(work: Path, tmp_path: Path, full: str, room: int, fails: str) -> None:
    """The new file has bad rows: its quarantine file is written first, then the part files. The dataset and
    the quarantine folder on the full disk (both or one of them; `room` bytes left: the dataset's ingest
    journal fits, its part file does not). Whichever write fails, both are left as they were."""
    if full != "both" and not can_mount():
        pytest.skip("a full disk under one folder alone needs a tmpfs (RLIMIT_FSIZE limits every file of the process)")
    with full_disk(tmp_path / "mnt") as (mnt, make_full):
        data = mnt if full in ("both", "dataset") else tmp_path / "data"
        q = mnt / "q" if full in ("both", "quarantine") else tmp_path / "q"
        ingest_into(work, data)
        q.mkdir(exist_ok=True)
        (q / "earlier.jsonl").write_bytes(b'{"an": "earlier quarantine file"}\n')
        before = snapshot(tmp_path)
        preexec, reason = make_full(room)
        out = beast(*ingest_args(work, data, quarantine=q), cwd=work, preexec=preexec)
        line = assert_clean_failure(out, "ingest", str(mnt / fails), reason)
        assert snapshot(tmp_path) == before, line  # no part, journal, staging or quarantine file, no new folder


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (None, "file not found"),
        ("models: {a: {input: 1.0, output: 2.0}\n", "prices.yaml"),  # not YAML
        ("models:\n  a: {input: -1.0, output: 2.0}\n", "prices.yaml"),  # negative price
    ],
    ids=["missing", "not_yaml", "negative"],
)
def test_ingest_with_missing_or_invalid_price_table(
    work: Path, tmp_path: Path, content: str | None, needle: str
) -> None:
    ingest_into(work, tmp_path)
    prices = tmp_path / "prices.yaml"
    if content is not None:
        prices.write_text(content)
    before = snapshot(tmp_path)
    out = beast(*ingest_args(work, tmp_path, prices=prices), cwd=work)
    assert_clean_failure(out, "ingest", str(prices), needle)
    assert snapshot(tmp_path) == before


# ------------------------------------------------------------------------------------------------ export


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real predictors, trained small on the committed samples (no MLflow): what `beast export --from-dir` reads."""
    from models.train import main as train
    from traces.ingest import IngestParams, ingest
    from traces.prices import load_prices

    tmp = tmp_path_factory.mktemp("models")
    ingest(
        sorted((ROOT / "data/sample").iterdir()),
        IngestParams(out=tmp / "traces", quarantine=tmp / "q", metrics=None),
        load_prices(ROOT / "data/prices.yaml"),
    )
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"] |= {"out": str(tmp / "models"), "metrics": str(tmp / "metrics"), "plots": str(tmp / "plots"), "register": False,
                        "prices": str(ROOT / "data/prices.yaml"), "cards": str(ROOT / "data/models.yaml")}  # fmt: skip
    params["train"]["quality"] |= {"heads": "shared", "num_boost_round": 20}
    params["train"]["cost"] |= {"num_boost_round": 10}
    params["train"]["cache"] |= {"num_boost_round": 10}
    params["features"]["text"] |= {"k": 4, "n_features": 256}
    (tmp / "params.yaml").write_text(yaml.safe_dump(params))
    train(["quality", "cost", "cache"], params_file=tmp / "params.yaml", traces=[tmp / "traces"])
    return tmp / "models"


def good_bundle(models_dir: Path, root: Path) -> Path:
    """The previous good state: root/bundle and root/bundle.tar.gz, as `beast export --from-dir` writes them."""
    from models.export import export_local

    return export_local(models_dir, root / "bundle", prices_file=ROOT / "data/prices.yaml").path


def export_args(models_dir: Path, out: Path) -> list[object]:
    return ["export", "--from-dir", models_dir, "--out", out, "--prices", ROOT / "data/prices.yaml", "--overwrite"]


def test_export_to_read_only_destination(models_dir: Path, work: Path, tmp_path: Path) -> None:
    with read_only(tmp_path / "mnt") as (root, make_ro):
        good_bundle(models_dir, root)
        make_ro()
        before = snapshot(root)
        out = beast(*export_args(models_dir, root / "bundle"), cwd=work)
        assert_clean_failure(out, "export", str(root / "bundle"), "Read-only file system")
        assert snapshot(root) == before


@pytest.mark.parametrize("room", ["none", "tree_only"])
def test_export_onto_full_disk(models_dir: Path, work: Path, tmp_path: Path, room: str) -> None:
    """No room at all (the staging folder fails), or room for the staged bundle but not its .tar.gz."""
    if room == "tree_only" and not can_mount():
        pytest.skip("room for part of the output needs a tmpfs (RLIMIT_FSIZE limits every file)")
    with full_disk(tmp_path / "mnt", "24m") as (root, make_full):
        bundle = good_bundle(models_dir, root)
        before = snapshot(root)
        leave = pages(bundle.rglob("*")) + pages(iter([root / "bundle.tar.gz"])) // 2 if room == "tree_only" else 0
        preexec, reason = make_full(leave)
        out = beast(*export_args(models_dir, root / "bundle"), cwd=work, preexec=preexec)
        line = assert_clean_failure(out, "export", str(root / "bundle"), reason)
        assert line.endswith(f"{root / 'bundle.tar.gz'})") == (room == "tree_only")  # the archive is what failed
        assert snapshot(root) == before  # old bundle and .tar.gz byte-identical, no staging folder or temp archive left


# ------------------------------------------------------------------------------------------------ train + register


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once closed


@pytest.fixture(scope="module")
def train_setup(work: Path) -> tuple[Path, Path]:
    """(params file training `cost` small with register on, dataset of the first synthetic file)."""
    ingest_into(work, work / "train")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"] |= {"out": "train/models", "metrics": "train/metrics", "plots": "train/plots", "register": True}
    params["train"]["cost"] |= {"num_boost_round": 10}
    (work / "train" / "params.yaml").write_text(yaml.safe_dump(params))
    return work / "train" / "params.yaml", work / "train" / "traces"


@pytest.mark.parametrize("store", ["corrupt_sqlite", "closed_http_port"])
def test_train_registers_to_unavailable_tracking_store(
    train_setup: tuple[Path, Path], work: Path, tmp_path: Path, store: str
) -> None:
    """The tracking URI comes from $MLFLOW_TRACKING_URI (models/registry.py): a sqlite file that is not a
    database, or an http server that is not there (retries cut to 0 so the test stays quick)."""
    params, traces = train_setup
    tmp_path.joinpath("mlflow.db").write_bytes(b"this is not an sqlite database\n" * 64)  # (unused by the http case)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}" if store == "corrupt_sqlite" else f"http://127.0.0.1:{closed_port()}"
    env = ENV | {"MLFLOW_TRACKING_URI": uri, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
    before = snapshot(tmp_path)
    out = beast("train", "cost", "--traces", traces, "--params", params, cwd=work, env=env)
    line = assert_clean_failure(out, "train", "mlflow", uri)
    assert (
        "== cost:" in out.stdout and "registered" not in out.stdout
    )  # trained, then the store failed: nothing registered
    assert snapshot(tmp_path) == before, line  # the store file untouched, no mlruns/ beside it


# ------------------------------------------------------------------------------------------------ report


def test_report_into_read_only_folder(work: Path, tmp_path: Path) -> None:
    ingest_into(work, tmp_path / "data")
    with read_only(tmp_path / "mnt") as (root, make_ro):
        (root / "report" / "plots").mkdir(parents=True)  # a previous report
        for name, data in {
            "index.html": b"<html>old</html>",
            "report.json": b'{"old": true}\n',
            "plots/cost.png": b"\x89PNG old",
        }.items():
            (root / "report" / name).write_bytes(data)
        make_ro()
        before = snapshot(root)
        out = beast(
            "monitor",
            "report",
            tmp_path / "data" / "traces",
            "--out",
            root / "report",
            "--params",
            ROOT / "params.yaml",
            cwd=work,
        )
        assert_clean_failure(out, "monitor report", str(root / "report"), "Read-only file system")
        assert snapshot(root) == before
