"""Import every module of one workspace package and report the sibling packages that loaded.

    python .ci/import_all.py packages/penguiflow-core [--optional penguiflow.planner ...]

Every ``.py`` under the package's ``src/penguiflow/<name>/`` is imported, lazy modules included
(the ones ``__getattr__`` loads on first use). It fails (exit 1) when

* a module cannot be imported, unless the ``ImportError`` says what to install
  (``pip install "..."``: an optional extra that is not installed, reported as skipped);
* a ``penguiflow.*`` module of a package that is neither the package itself, nor one of its
  required dependencies, nor listed with ``--optional`` is loaded.

Each package's ``tests/test_no_sibling_imports.py`` runs it in a fresh interpreter; in the
isolated CI run (only dev tools, the package and what it declares) a stray sibling import fails.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
import tomllib
from pathlib import Path


def module_names(src: Path, top: str) -> list[str]:
    names: list[str] = []
    for path in sorted(src.rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names.append(".".join([top, *parts]))
    return names


def required_modules(pyproject: Path) -> set[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    found: set[str] = set()
    for requirement in project.get("dependencies", []):
        match = re.match(r"penguiflow-([A-Za-z0-9_-]+)", requirement)
        if match:
            found.add("penguiflow." + match.group(1).replace("-", "_"))
    return found


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("package_dir", type=Path)
    parser.add_argument("--optional", action="append", default=[])
    args = parser.parse_args()
    package_dir: Path = args.package_dir.resolve()
    sub = package_dir.name.removeprefix("penguiflow-").replace("-", "_")
    top = f"penguiflow.{sub}"
    allowed = {top} | required_modules(package_dir / "pyproject.toml") | set(args.optional)

    imported: list[str] = []
    skipped: dict[str, str] = {}
    errors: dict[str, str] = {}
    for name in module_names(package_dir / "src" / "penguiflow" / sub, top):
        try:
            importlib.import_module(name)
        except ImportError as exc:
            text = f"{type(exc).__name__}: {exc}"
            if 'pip install "' in str(exc):
                skipped[name] = text
            else:
                errors[name] = text
        except Exception as exc:  # report every failure, then exit 1
            errors[name] = f"{type(exc).__name__}: {exc}"
        else:
            imported.append(name)
    loaded = sorted(m for m in sys.modules if m.startswith("penguiflow."))
    foreign = [m for m in loaded if not any(m == a or m.startswith(a + ".") for a in allowed)]
    report = {
        "package": top,
        "allowed": sorted(allowed),
        "imported": imported,
        "skipped": skipped,
        "errors": errors,
        "foreign": foreign,
    }
    print(json.dumps(report, indent=2))
    return 1 if errors or foreign else 0


if __name__ == "__main__":
    sys.exit(main())
