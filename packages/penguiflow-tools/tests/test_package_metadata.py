"""The published metadata: core + pydantic + anyio + httpx; the SDK is an extra."""

import tomllib
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parents[1]
PROJECT: dict[str, Any] = tomllib.loads((PACKAGE / "pyproject.toml").read_text())["project"]


def test_dependencies_are_core_as_a_range_and_the_http_stack() -> None:
    assert PROJECT["dependencies"] == [
        "penguiflow-core>=0.1,<0.2",
        "pydantic>=2.7",
        "anyio>=4",
        "httpx>=0.28",
    ]


def test_the_sdk_is_an_extra() -> None:
    assert PROJECT["optional-dependencies"] == {
        "mcp": ["mcp>=2.3,<3"],
        "utcp": ["utcp>=1.2,<2", "utcp-http>=1.1.15,<2"],
        "a2a": ["a2a-sdk[http-server]>=1.3,<2", "uvicorn>=0.30"],
        "all": ["penguiflow-tools[mcp,utcp,a2a]"],
    }


def test_the_version_is_static_and_the_package_is_typed() -> None:
    assert PROJECT["version"] == "0.1.0"
    assert "Typing :: Typed" in PROJECT["classifiers"]
    assert (PACKAGE / "src" / "penguiflow" / "tools" / "py.typed").is_file()
    assert not (PACKAGE / "src" / "penguiflow" / "__init__.py").exists()  # PEP 420 namespace
