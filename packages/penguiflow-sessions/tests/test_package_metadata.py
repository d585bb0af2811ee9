"""The published metadata: core and planner as ranges, pydantic, anyio; web as an extra."""

import tomllib
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parents[1]
PROJECT: dict[str, Any] = tomllib.loads((PACKAGE / "pyproject.toml").read_text())["project"]


def test_dependencies_are_core_and_planner_as_ranges_plus_pydantic_and_anyio() -> None:
    assert PROJECT["dependencies"] == [
        "penguiflow-core>=0.1,<0.2",
        "penguiflow-planner>=0.1,<0.2",
        "pydantic>=2.7",
        "anyio>=4",
    ]


def test_the_web_extra_is_declared() -> None:
    assert PROJECT["optional-dependencies"] == {
        "web": ["starlette>=0.40", "uvicorn>=0.30", "sse-starlette>=2"]
    }


def test_the_version_is_static_and_the_package_is_typed() -> None:
    assert PROJECT["name"] == "penguiflow-sessions"
    assert PROJECT["version"] == "0.1.0"
    assert "Typing :: Typed" in PROJECT["classifiers"]
    assert (PACKAGE / "src" / "penguiflow" / "sessions" / "py.typed").is_file()
    assert not (PACKAGE / "src" / "penguiflow" / "__init__.py").exists()  # PEP 420 namespace
