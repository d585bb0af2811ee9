"""examples/testkit_demo works in a pip-only project, set up as its README says."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "testkit_demo"


def readme_block(language: str) -> str:
    text = (DEMO / "README.md").read_text()
    install = text[text.index("## Install") :]
    match = re.search(rf"```{language}\n(.*?)```", install, re.S)
    assert match, f"no ```{language} block under ## Install in {DEMO / 'README.md'}"
    return match.group(1)


def test_the_demo_passes_in_a_fresh_pip_only_project(tmp_path: Path) -> None:
    uv = os.environ.get("UV") or shutil.which("uv")
    if uv is None:
        pytest.fail("this test builds a venv with uv: pip install uv")
    project = tmp_path / "project"
    project.mkdir()
    for test_file in DEMO.glob("test_*.py"):
        shutil.copy(test_file, project)
    (project / "pytest.ini").write_text(readme_block("ini"))

    install = readme_block("bash").split()
    assert install[:2] == ["pip", "install"], install
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    subprocess.run(
        [uv, "pip", "install", "-q", "--no-sources", "--python", str(venv), *install[2:]],
        cwd=ROOT,  # the README's paths are relative to a clone
        check=True,
        timeout=300,
    )
    completed = subprocess.run(
        [str(venv / "bin" / "python"), "-I", "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    assert re.search(r"\d+ passed", output) and "failed" not in output, output
