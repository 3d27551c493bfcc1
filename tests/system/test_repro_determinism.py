"""Two clean `dvc repro` give the same dvc.lock: every DVC-tracked output is a pure function of its stage's deps.

Once, `make repro` on a fresh clone left dvc.lock modified while every metric was equal: data/bench/report.json
and report.md carried the benchmark's wall time ("seconds": 103.0 / "103 s"), and data/export's manifest its
`created_at` (now) and `source.git_commit` (HEAD: the commit holding dvc.lock is always newer than the run), so
bundle/manifest.json and bundle.tar.gz changed too. Now the run time is printed only, the DVC `export` stage
builds with SOURCE_DATE_EPOCH=0 (models/export.py: created_at 1970-01-01T00:00:00Z, no commit), and PNGs carry no
software stamp (core/plots.py).

The test that a clean repro records the committed output hashes (which another repro wrote: `make repro` in a
working copy, another folder and time, so an absolute path or a clock in an output would show) lives in
test_dvc_repro.py beside the repro it reads; the tests here need no repro.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

pytestmark = pytest.mark.slow


def test_the_export_stage_pins_the_bundle_provenance() -> None:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert stages["export"]["cmd"].startswith("env SOURCE_DATE_EPOCH=0 beast export ")


def test_source_date_epoch_pins_created_at_and_drops_the_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    from core.errors import BeastError
    from models.export import _provenance

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    pinned = _provenance()
    assert pinned["created_at"] == "1970-01-01T00:00:00Z" and pinned["source"]["git_commit"] is None
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert _provenance()["created_at"] == "2023-11-14T22:13:20Z"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(BeastError, match="SOURCE_DATE_EPOCH"):
        _provenance()
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    now = _provenance()
    assert now["created_at"] != "1970-01-01T00:00:00Z" and len(now["created_at"]) == 20


def test_a_figure_saves_to_the_same_bytes_without_a_software_stamp(tmp_path: Path) -> None:
    from core.plots import plt, save_figure

    def draw(path: Path) -> bytes:
        fig, ax = plt.subplots(figsize=(3, 2))
        ax.plot([0, 1, 2], [1, 0, 2], label="x")
        ax.legend()
        return save_figure(fig, path).read_bytes()

    for suffix in (".png", ".svg", ".pdf"):
        a, b = draw(tmp_path / f"a{suffix}"), draw(tmp_path / f"b{suffix}")
        assert a == b, suffix
        assert b"Matplotlib v" not in a and b"matplotlib version" not in a.lower(), suffix


def test_the_bench_report_json_carries_no_wall_time() -> None:
    from evaluation.routing import BenchReport

    fields = BenchReport.__dataclass_fields__
    assert "seconds" in fields  # still measured (and printed), but not written
    report = BenchReport.__new__(BenchReport)  # a stand-in with the fields to_json reads
    for name, value in (dict.fromkeys(fields) | {"seconds": 12.5, "routers": {}, "notes": ()}).items():
        object.__setattr__(report, name, value)
    assert "seconds" not in json.loads(report.to_json())


def test_the_bundle_archive_is_deterministic(tmp_path: Path) -> None:
    from models.export import _tar

    folder = tmp_path / "bundle"
    (folder / "models").mkdir(parents=True)
    (folder / "b.json").write_text("{}")
    (folder / "models" / "a.txt").write_text("tree")
    _tar(folder, tmp_path / "one.tar.gz")
    (folder / "b.json").touch()  # a new mtime changes nothing
    _tar(folder, tmp_path / "two.tar.gz")
    one = (tmp_path / "one.tar.gz").read_bytes()
    assert one == (tmp_path / "two.tar.gz").read_bytes()
    assert one[4:8] == b"\0\0\0\0"  # gzip header mtime 0
    with tarfile.open(fileobj=io.BytesIO(one)) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["b.json", "models/a.txt"]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}
