"""No code path of ours can unpickle: a scan of every project module for the calls and imports that would
(pickle / joblib / dill / cloudpickle / shelve / marshal loads, pandas read_pickle, numpy allow_pickle=True,
MLflow's pickled-flavour model loaders, torch.load). Models travel as LightGBM text / JSON only. And trace
text stays data: no shell, eval or exec anywhere, so a prompt can never become a command."""

from __future__ import annotations

import ast

from conftest import PACKAGES, ROOT

BANNED_MODULES = {"pickle", "cPickle", "_pickle", "joblib", "dill", "cloudpickle", "shelve", "marshal", "torch"}
BANNED_CALLS = {"read_pickle", "load_model", "load_pyfunc", "loads_pickle", "pickle_load"}


def offences(source: str) -> list[str]:
    """Banned imports, banned call names and `allow_pickle=True` in one module's source."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name.split(".")[0] in BANNED_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in BANNED_MODULES:
            found.append(f"from {node.module} import ...")
        elif isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in BANNED_CALLS:
                found.append(f"call {name}() at line {node.lineno}")
            found += [
                f"allow_pickle=True at line {node.lineno}"
                for k in node.keywords
                if k.arg == "allow_pickle" and getattr(k.value, "value", False) is True
            ]
    return found


def test_the_scanner_finds_each_way_in() -> None:
    bad = "import pickle\nfrom joblib import load\nimport pandas as pd\npd.read_pickle('x')\nnp.load('a.npy', allow_pickle=True)\nmlflow.sklearn.load_model('m')\n"
    assert offences(bad) == [
        "import pickle",
        "from joblib import ...",
        "call read_pickle() at line 4",
        "allow_pickle=True at line 5",
        "call load_model() at line 6",
    ]
    assert offences("import json\njson.loads('{}')\nnp.load('a.npy')\n") == []


def test_no_project_module_can_unpickle() -> None:
    files = [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]
    assert len(files) > 40
    found = {str(p.relative_to(ROOT)): o for p in files if (o := offences(p.read_text(encoding="utf-8")))}
    assert found == {}


def shell_offences(source: str) -> list[str]:
    """shell=True, os.system / os.popen, eval / exec calls in one module's source."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            owner = getattr(f.value, "id", "") if isinstance(f, ast.Attribute) else ""
            if name in ("eval", "exec") and not owner or (owner, name) in (("os", "system"), ("os", "popen")):
                found.append(f"{owner + '.' if owner else ''}{name}() at line {node.lineno}")
            found += [
                f"shell=True at line {node.lineno}"
                for k in node.keywords
                if k.arg == "shell" and getattr(k.value, "value", False) is True
            ]
    return found


def test_the_shell_scanner_finds_each_way_in() -> None:
    bad = "import os, subprocess\nos.system('ls')\nsubprocess.run('ls', shell=True)\neval('1')\nexec('x=1')\nos.popen('ls')\n"
    assert shell_offences(bad) == [
        "os.system() at line 2",
        "shell=True at line 3",
        "eval() at line 4",
        "exec() at line 5",
        "os.popen() at line 6",
    ]
    assert (
        shell_offences("import subprocess\nsubprocess.run(['git', 'rev-parse', 'HEAD'])\nre.compile('x').pattern\n")
        == []
    )


def test_no_project_module_runs_a_shell_or_evaluates_text() -> None:
    files = [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]
    found = {str(p.relative_to(ROOT)): o for p in files if (o := shell_offences(p.read_text(encoding="utf-8")))}
    assert found == {}
