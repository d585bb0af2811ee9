"""The install clash of docs/migration.md, shown in a throwaway venv, and the documented fix.

penguiflow 3.x ships ``penguiflow/__init__.py`` (and ``penguiflow/planner/``, ``sessions/``,
``tools/``). Installed beside the new namespace packages it turns ``penguiflow`` back into a
regular package, so ``import penguiflow.core`` runs the old ``__init__`` and fails; uninstalling
it afterwards also deletes files the new packages share a path with. The fix the page gives:
uninstall ``penguiflow``, then (re)install the new packages.

It installs ``penguiflow==3.11.2`` from the package index; it skips, saying so, only when the
index cannot be reached.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MIGRATION = ROOT / "docs" / "migration.md"
NEW = [str(ROOT / "packages" / "penguiflow-core"), str(ROOT / "packages" / "penguiflow-planner")]
# --no-sources: installed as a user would (regular wheels), not as editable workspace members.
PIP = ("--no-sources", "--python")
TIMEOUT_S = 300
# What uv prints when it cannot reach an index (DNS, connect, TLS, timeouts): not resolution errors.
UNREACHABLE = re.compile(
    r"(?i)(failed to fetch|error sending request|dns error|failed to lookup address|"
    r"connection refused|network is unreachable|operation timed out|tcp connect error)"
)


def uv() -> str:
    found = os.environ.get("UV") or shutil.which("uv")
    if not found:
        pytest.fail("uv is needed to build the throwaway venv (pip install uv)")
    return found


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    return subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT_S, env=env, cwd="/")


def python(venv: Path, code: str) -> subprocess.CompletedProcess[str]:
    # -I: the import must come from the venv, never from this repository.
    return run(str(venv / "bin" / "python"), "-I", "-c", code)


def old_public_names(venv: Path) -> list[str]:
    """``__all__`` of the installed 3.x ``penguiflow/__init__.py``, read without importing it."""
    (init,) = venv.glob("lib/python*/site-packages/penguiflow/__init__.py")
    for node in ast.parse(init.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            names = ast.literal_eval(node.value)
            assert isinstance(names, list | tuple) and names, "3.x __all__ is empty"
            return [str(name) for name in names if name != "__version__"]
    raise AssertionError(f"no __all__ in {init}")


def test_penguiflow_3x_beside_the_new_packages_breaks_until_uninstalled(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    created = run(uv(), "venv", "--quiet", "--python", "3.12", str(venv))
    assert created.returncode == 0, created.stderr
    installed = run(uv(), "pip", "install", *PIP, str(venv), "penguiflow==3.11.2", *NEW)
    if installed.returncode != 0 and UNREACHABLE.search(installed.stderr):
        pytest.skip(f"the package index is unreachable: {installed.stderr.strip()[-300:]}")
    assert installed.returncode == 0, installed.stderr

    # The clash: the old penguiflow/__init__.py hides the namespace.
    clash = python(venv, "import penguiflow.core")
    assert clash.returncode != 0
    assert "cannot import name 'DEFAULT_QUEUE_MAXSIZE' from 'penguiflow.core'" in clash.stderr

    # The migration page maps every public name of 3.x (its penguiflow/__init__.py's __all__).
    missing = [name for name in old_public_names(venv) if f"`{name}`" not in MIGRATION.read_text()]
    assert not missing, f"docs/migration.md does not say where these 3.x names went: {missing}"

    # Uninstalling the old package after the new ones deletes the files they share a path with.
    removed = run(uv(), "pip", "uninstall", "--python", str(venv), "penguiflow")
    assert removed.returncode == 0, removed.stderr
    broken = python(venv, "from penguiflow.planner import ReactPlanner")
    assert broken.returncode != 0
    assert "ReactPlanner" in broken.stderr

    # The fix: with penguiflow gone, (re)install the new packages; both import, as a namespace.
    fixed_install = run(uv(), "pip", "install", "--reinstall", *PIP, str(venv), *NEW)
    assert fixed_install.returncode == 0, fixed_install.stderr
    fixed = python(
        venv,
        "import penguiflow, penguiflow.core, penguiflow.planner\n"
        "assert getattr(penguiflow, '__file__', None) is None, penguiflow.__file__\n"
        "from penguiflow.core import create\n"
        "from penguiflow.planner import ReactPlanner\n"
        "print('namespace ok')",
    )
    assert fixed.returncode == 0, fixed.stderr
    assert "namespace ok" in fixed.stdout
