"""Options for the cross-package tests."""

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--soak-traces",
        type=int,
        default=20_000,
        help="traces pushed through the soak test (CI uses the default; try 100000)",
    )
