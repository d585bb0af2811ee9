"""penguiflow.core never imports a sibling package (testkit, planner, ...).

The dev dependency group installs penguiflow-testkit for dogfooding, so an accidental import of it
from core would not fail in the isolated CI run; this test checks in a fresh interpreter.
"""

import json
import subprocess
import sys

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
