"""The published metadata: penguiflow-core is the one dependency; the SDKs are extras."""

import tomllib
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parents[1]
PROJECT: dict[str, Any] = tomllib.loads((PACKAGE / "pyproject.toml").read_text())["project"]


def test_the_only_dependency_is_penguiflow_core_as_a_range() -> None:
    assert PROJECT["dependencies"] == ["penguiflow-core>=0.1,<0.2"]


def test_each_sdk_is_an_extra_named_after_it() -> None:
    assert PROJECT["optional-dependencies"] == {
        "openai": ["openai>=3,<4"],
        "anthropic": ["anthropic>=2,<3"],
        "tiktoken": ["tiktoken>=0.9"],
    }


def test_the_version_is_static_and_the_package_is_typed() -> None:
    assert PROJECT["version"] == "0.1.0"
    assert "Typing :: Typed" in PROJECT["classifiers"]
    assert (PACKAGE / "src" / "penguiflow" / "planner" / "py.typed").is_file()
    assert not (PACKAGE / "src" / "penguiflow" / "__init__.py").exists()  # PEP 420 namespace
