"""The rooms hold: import contracts (import-linter, pyproject.toml) kept, no private name imported across
packages, every package shipped in the wheel and saying what it is for."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from conftest import PACKAGES, PYPROJECT, ROOT


def private_imports(source: str, package: str) -> list[str]:
    """`from other_package... import _name` in one module of `package` (same-package helpers are fine)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            top = node.module.split(".")[0]
            if top in PACKAGES and top != package:
                found += [
                    f"{node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
    return found


def test_the_private_import_scanner_sees_cross_package_names_only() -> None:
    src = "from features.text import _counts, tfidf_matrix\nfrom caching.sim import _lru\nfrom numpy import _core\n"
    assert private_imports(src, "caching") == ["features.text._counts"]


def test_no_private_name_is_imported_across_packages() -> None:
    found = {
        str(path.relative_to(ROOT)): bad
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if (bad := private_imports(path.read_text(), package))
    }
    assert found == {}


def test_every_package_is_in_the_wheel_and_documented() -> None:
    on_disk = {p.parent.name for p in ROOT.glob("*/__init__.py") if p.parent.name not in {"tests", "notebooks"}}
    assert on_disk == set(PACKAGES), "pyproject.toml [tool.hatch.build.targets.wheel] packages must list every package"
    assert PYPROJECT["tool"]["importlinter"]["root_packages"] == list(PACKAGES)
    for package in PACKAGES:
        assert ast.get_docstring(ast.parse((ROOT / package / "__init__.py").read_text())), (
            f"{package}/__init__.py: say what the room is for"
        )


def test_import_contracts_are_kept() -> None:
    out = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout
