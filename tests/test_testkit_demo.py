"""Smoke test: the testkit demo's test files pass as documented in its README."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "testkit_demo"


def test_testkit_demo_passes() -> None:
    assert (DEMO / "README.md").is_file()
    demo_tests = sorted(path.name for path in DEMO.glob("test_*.py"))
    assert demo_tests, f"no test files in {DEMO}"
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "examples/testkit_demo", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    assert " passed" in output and "failed" not in output, output
    assert "no tests ran" not in output, output
