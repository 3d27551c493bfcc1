"""Packaging: the wheel holds every package. `.ci/wheel-check` builds it, installs it with the locked
versions into a fresh venv and runs `beast --help` and `beast monitor report` from a folder outside the
repo, so an editable install cannot hide a package the wheel leaves out (as it once hid `reports/`)."""

from __future__ import annotations

import os
import shutil
import subprocess

from conftest import ROOT


def test_the_installed_wheel_runs_help_and_report() -> None:
    uv = os.environ.get("UV") or shutil.which("uv") or str(ROOT / ".tools" / "bin" / "uv")
    out = subprocess.run(
        [str(ROOT / ".ci" / "wheel-check")],
        cwd=ROOT,
        env=os.environ | {"UV": uv},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "every package imports from the installed wheel" in out.stdout
    assert "wheel check passed" in out.stdout and "report/index.html" in out.stdout
