"""penguiflow.core never imports a sibling package (testkit, planner, ...).

Checked in a fresh interpreter: importing ``penguiflow.core``, and importing every one of its
modules, lazy ones included (``.ci/import_all.py``). In the isolated CI run no sibling is
installed, so a stray import fails there too.
"""

import json
import subprocess
import sys
from pathlib import Path

CODE = (
    "import json, sys, penguiflow.core; "
    "print(json.dumps(sorted(m for m in sys.modules if m.startswith('penguiflow'))))"
)


def test_importing_core_loads_only_core_modules() -> None:
    completed = subprocess.run(
        [sys.executable, "-c", CODE],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    loaded: list[str] = json.loads(completed.stdout)
    assert "penguiflow.core" in loaded
    foreign = [
        name
        for name in loaded
        if name != "penguiflow"
        and name != "penguiflow.core"
        and not name.startswith("penguiflow.core.")
    ]
    assert foreign == [], f"importing penguiflow.core also imported {foreign}"


PACKAGE = Path(__file__).resolve().parents[1]
IMPORT_ALL = PACKAGE.parents[1] / ".ci" / "import_all.py"


def test_every_module_imports_without_a_sibling() -> None:
    completed = subprocess.run(
        [sys.executable, "-I", str(IMPORT_ALL), str(PACKAGE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    report = json.loads(completed.stdout)
    assert "penguiflow.core.otel" in report["imported"]  # lazy modules are imported too
    assert report["foreign"] == []
