"""The public surface of penguiflow.testkit is exactly what __all__ documents."""

from types import ModuleType

import penguiflow.testkit as testkit

EXPECTED = {
    # running flows
    "FlowKitFactory",
    "FlowTestKit",
    "run_one",
    # recording and asserting
    "EventRecorder",
    "assert_node_sequence",
    "assert_preserves_message_envelope",
    "format_events",
    "get_recorded_events",
    "recorder_of",
    # test doubles
    "ErrorSimulator",
    "probe_message",
    "simulate_error",
    # failures
    "EnvelopeNotPreserved",
    "FlowTestError",
    "FlowTestTimeout",
    "NoResult",
    "NodeSequenceMismatch",
}


def test_all_is_exactly_the_public_surface() -> None:
    assert set(testkit.__all__) == EXPECTED


def test_every_public_name_is_importable_and_documented() -> None:
    for name in testkit.__all__:
        value = getattr(testkit, name)
        assert value.__doc__, f"{name} has no docstring"


def test_no_other_public_names_leak_from_private_modules() -> None:
    # Submodules (pytest_plugin, once pytest loaded it) are attributes too, and are fine.
    public = {
        name
        for name in dir(testkit)
        if not name.startswith("_") and not isinstance(getattr(testkit, name), ModuleType)
    }
    assert public == EXPECTED


def test_version_is_the_distribution_version() -> None:
    from importlib.metadata import version

    assert testkit.__version__ == version("penguiflow-testkit")
