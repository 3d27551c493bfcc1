"""`beast` starts fast: the CLI and the light commands import no heavy library (checked on `sys.modules` of a fresh
process, never timed here: timings are `beast bench startup`), they exit 0, and `--version` names the versions."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version

import pytest
from conftest import ROOT

import beast
import beast.cli as cli
from benchmarks import startup
from serving.bundle import SCHEMA_VERSION
from traces.contract import CONTRACT_VERSION

# Each costs 0.5-3 s to import: only the commands that use one may import it, inside their handler.
HEAVY = ("mlflow", "prefect", "dask", "distributed", "lightgbm", "sklearn", "matplotlib", "optuna", "scipy", "pandas")

# Runs `beast ARGV...` in this fresh process as the console script does (stdout discarded), then prints the exit
# code and which HEAVY top-level packages ended up in sys.modules. ARGV is a JSON list of argv lists.
PROBE = """
import contextlib, io, json, sys
from beast.cli import main
codes = []
for argv in json.loads(sys.argv[1]):
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            codes.append(main(argv))
        except SystemExit as exc:
            codes.append(exc.code)
heavy = json.loads(sys.argv[2])
print(json.dumps({"codes": codes, "loaded": sorted({m.split(".")[0] for m in sys.modules} & set(heavy))}))
"""


def probe(*argvs: list[str]) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(argvs), json.dumps(HEAVY)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(out.stdout)


def test_importing_the_cli_pulls_in_no_heavy_library() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "import sys, beast.cli; print('\\n'.join(sys.modules))"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    loaded = {name.split(".")[0] for name in out.stdout.split()}
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_every_help_imports_no_heavy_library() -> None:
    paths = [[name, "--help"] for name in cli._commands(cli._parser())]
    paths += [
        [group, name, "--help"] for group in cli.GROUPS for name in cli._commands(cli._commands(cli._parser())[group])
    ]
    result = probe(["--help"], *paths)
    assert result == {"codes": [0] * (len(paths) + 1), "loaded": []}


@pytest.mark.parametrize("argv", [["metrics"], ["--version"], ["traces", "contract"]], ids=" ".join)
def test_light_commands_import_no_heavy_library(argv: list[str]) -> None:
    assert probe(argv) == {"codes": [0], "loaded": []}


@pytest.mark.parametrize(
    "argv", [["--help"], ["metrics"], ["contract"], ["route", "--help"], ["--version"]], ids=" ".join
)
def test_light_commands_exit_0_through_the_entry_point(argv: list[str]) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "beast.cli", *argv], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_names_package_bundle_schema_and_trace_contract(flag: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main([flag])
    assert info.value.code == 0
    assert capsys.readouterr().out.splitlines() == [
        f"beast-mode {version('beast-mode')}",
        f"bundle schema_version {SCHEMA_VERSION}",
        f"trace contract v{CONTRACT_VERSION}",
    ]


def test_version_is_listed_in_the_top_help(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert out.startswith("usage: beast [-h] [-V] COMMAND ...") and "-V, --version" in out


def test_bench_startup_measures_against_python_in_one_run(capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["bench", "startup", "--runs", "1", "--json"]) == cli.EXIT_OK
    doc = json.loads(capsys.readouterr().out)
    assert doc["runs"] == 1 and doc["python_pass_s"] > 0
    assert [c["command"] for c in doc["commands"]] == ["beast " + " ".join(c) for c in startup.COMMANDS]
    for c in doc["commands"]:
        assert c["exit_code"] == 0 and c["median_s"] == c["min_s"] > 0
        assert c["ratio"] == pytest.approx(c["median_s"] / doc["python_pass_s"])


def test_bench_startup_table_and_a_failing_command(capsys: pytest.CaptureFixture) -> None:
    base, results = startup.measure([("--help",), ("no-such-command",)], runs=1, cwd=ROOT)
    assert [r.exit_code for r in results] == [0, 2]
    table = startup.render(base, results, 1)
    assert "python -c pass" in table and "beast --help" in table and "exit 2" in table
    assert cli.main(["bench", "startup", "--runs", "0"]) == cli.EXIT_ERROR
    assert "--runs: expected >= 1" in capsys.readouterr().err


NUMPY_KERNELS = """
import json, os, sys
import beast.cli
import numpy
from numpy._core._multiarray_umath import __cpu_features__ as features
from threadpoolctl import threadpool_info
blas = [i["architecture"] for i in threadpool_info() if i["internal_api"] == "openblas" and "numpy" in i["filepath"]]
print(json.dumps([os.environ.get("NPY_DISABLE_CPU_FEATURES"), features.get("X86_V4", False), features.get("AVX512_ICL", False), blas]))
"""


def _numpy_kernels(monkeypatch: pytest.MonkeyPatch, given: str | None) -> list:
    monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    if given is None:
        monkeypatch.delenv("NPY_DISABLE_CPU_FEATURES", raising=False)
    else:
        monkeypatch.setenv("NPY_DISABLE_CPU_FEATURES", given)
    out = subprocess.run([sys.executable, "-c", NUMPY_KERNELS], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_beast_runs_numpy_and_openblas_without_their_avx512_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same repro must train the same bytes on an AVX-512 machine (beast/__init__.py)."""
    got = _numpy_kernels(monkeypatch, None)
    assert got[:3] == ["X86_V4 AVX512_ICL AVX512_SPR", False, False]
    assert got[3] == (["Haswell"] if beast._has_avx2() else got[3])  # OpenBLAS is told Haswell only with AVX2


def test_a_numpy_kernel_choice_the_user_made_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _numpy_kernels(monkeypatch, "AVX512_ICL")[0::2] == ["AVX512_ICL", False]
