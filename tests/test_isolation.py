"""The isolated per-package CI run catches a stray sibling import (the hole of issue 16).

`.ci/run` runs each package's tests after `uv sync --only-dev` plus the package, its dependencies
and its `test` group. These tests pin both halves: that environment holds no sibling package, and
in an environment without siblings a lazily loaded module importing one fails the check.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IMPORT_ALL = ROOT / ".ci" / "import_all.py"
WORKSPACE = {
    tomllib.loads(p.read_text())["project"]["name"] for p in ROOT.glob("packages/*/pyproject.toml")
}


def uv() -> str:
    found = os.environ.get("UV") or shutil.which("uv")
    if found is None:
        pytest.fail("these tests need uv on PATH (pip install uv)")
    return found


def requirement_name(requirement: str) -> str:
    return requirement.split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip()


def test_the_dev_group_holds_no_workspace_package() -> None:
    groups = tomllib.loads((ROOT / "pyproject.toml").read_text())["dependency-groups"]
    dev = {requirement_name(r) for r in groups["dev"] if isinstance(r, str)}
    assert dev.isdisjoint(WORKSPACE), f"move {sorted(dev & WORKSPACE)} out of the dev group"


def test_core_tests_declare_no_sibling() -> None:
    core = tomllib.loads((ROOT / "packages/penguiflow-core/pyproject.toml").read_text())
    assert core["dependency-groups"]["test"] == []


def test_the_isolated_run_installs_only_the_test_group_besides_dev() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    assert "uv sync --locked --only-dev" in script
    assert 'uv run --locked --package "$pkg" --group test pytest' in script


@pytest.fixture(scope="module")
def core_copy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An editable copy of penguiflow-core in a fresh venv that has no sibling package."""
    work = tmp_path_factory.mktemp("isolation")
    copy = work / "penguiflow-core"
    shutil.copytree(
        ROOT / "packages/penguiflow-core",
        copy,
        ignore=shutil.ignore_patterns("tests", "__pycache__"),
    )
    venv = work / "venv"
    subprocess.run([uv(), "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    subprocess.run(
        [uv(), "pip", "install", "-q", "--no-sources", "--python", str(venv), "-e", str(copy)],
        check=True,
        timeout=300,
    )
    return copy, venv / "bin" / "python"


def import_all(python: Path, package: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), "-I", str(IMPORT_ALL), str(package)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_stray_sibling_import_in_a_lazy_module_fails_without_siblings(
    core_copy: tuple[Path, Path],
) -> None:
    copy, python = core_copy
    clean = import_all(python, copy)
    assert clean.returncode == 0, clean.stdout + clean.stderr

    stray = copy / "src/penguiflow/core/_stray_lazy.py"
    stray.write_text('"""Loaded by nobody at import time."""\n\nimport penguiflow.testkit\n')
    try:
        caught = import_all(python, copy)
    finally:
        stray.unlink()
    assert caught.returncode == 1, caught.stdout + caught.stderr
    report = json.loads(caught.stdout)
    assert "penguiflow.testkit" in report["errors"]["penguiflow.core._stray_lazy"]


def test_a_loaded_undeclared_sibling_is_reported(tmp_path: Path) -> None:
    """Where the sibling is installed (the full run), loading it is still named as foreign."""
    package = tmp_path / "penguiflow-zzdemo"
    src = package / "src/penguiflow/zzdemo"
    src.mkdir(parents=True)
    (package / "pyproject.toml").write_text(
        '[project]\nname = "penguiflow-zzdemo"\ndependencies = ["penguiflow-core"]\n'
    )
    (src / "__init__.py").write_text("")
    (src / "_lazy.py").write_text("import penguiflow.testkit\n")
    completed = subprocess.run(
        [sys.executable, str(IMPORT_ALL), str(package)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(package / "src")},
        cwd=tmp_path,
    )
    assert completed.returncode == 1, completed.stdout + completed.stderr
    report = json.loads(completed.stdout)
    assert "penguiflow.zzdemo._lazy" in report["imported"]
    assert "penguiflow.testkit" in report["foreign"]
    assert not any(m.startswith("penguiflow.core") for m in report["foreign"])
