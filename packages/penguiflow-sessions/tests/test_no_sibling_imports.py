"""Every module of penguiflow.sessions imports, loading no undeclared sibling package.

`.ci/import_all.py` imports each module, lazy ones included, in a fresh interpreter; siblings
allowed are the package's required dependencies. In the isolated CI run only those are
installed, so a stray sibling import fails there too.
"""

import json
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]
IMPORT_ALL = PACKAGE.parents[1] / ".ci" / "import_all.py"


def test_every_module_imports_without_an_undeclared_sibling() -> None:
    completed = subprocess.run(
        [sys.executable, "-I", str(IMPORT_ALL), str(PACKAGE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    report = json.loads(completed.stdout)
    assert len(report["imported"]) + len(report["skipped"]) > 1
    assert report["foreign"] == []
