"""The public surface of penguiflow.testkit is exactly what __all__ documents."""

import penguiflow.testkit as testkit

EXPECTED: set[str] = set()


def test_all_is_exactly_the_public_surface() -> None:
    assert set(testkit.__all__) == EXPECTED


def test_version_is_the_distribution_version() -> None:
    from importlib.metadata import version

    assert testkit.__version__ == version("penguiflow-testkit")
