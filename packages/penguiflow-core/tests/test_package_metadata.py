"""The published metadata describes the runtime as it is."""

import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_classifiers_claim_asyncio_only() -> None:
    classifiers: list[str] = tomllib.loads(PYPROJECT.read_text())["project"]["classifiers"]
    assert "Framework :: AsyncIO" in classifiers
    assert "Framework :: AnyIO" not in classifiers  # no trio backend: asyncio queues and events
