"""The public surface of penguiflow.testkit is exactly what __all__ documents."""

import json
import subprocess
import sys
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
    # LLM doubles for the planner
    "Cassette",
    "FunctionLLM",
    "LLMCall",
    "LLMCallInfo",
    "ProviderRequest",
    "ProviderServer",
    "ScriptedLLM",
    # store backends
    "DurableStoreConformance",
    "ManualClock",
    # failures
    "EnvelopeNotPreserved",
    "FlowTestError",
    "FlowTestTimeout",
    "NoResult",
    "NodeSequenceMismatch",
    "ReplayMismatch",
    "ScriptExhausted",
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


def test_importing_testkit_loads_neither_pytest_nor_the_store_suite_nor_the_planner() -> None:
    code = (
        "import json, sys, penguiflow.testkit; "
        "print(json.dumps([m for m in ('pytest', 'penguiflow.testkit.stores', "
        "'penguiflow.planner', 'penguiflow.testkit._llm_doubles', "
        "'penguiflow.testkit._cassette', "
        "'penguiflow.testkit._provider_server') if m in sys.modules]))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(completed.stdout) == []


def test_store_names_load_lazily_from_the_stores_module() -> None:
    from penguiflow.testkit import stores

    assert testkit.ManualClock is stores.ManualClock
    assert testkit.DurableStoreConformance is stores.DurableStoreConformance


def test_llm_doubles_load_lazily_from_their_modules() -> None:
    from penguiflow.testkit import (
        _cassette,  # pyright: ignore[reportPrivateUsage]
        _llm_doubles,  # pyright: ignore[reportPrivateUsage]
        _provider_server,  # pyright: ignore[reportPrivateUsage]
    )

    assert testkit.Cassette is _cassette.Cassette
    assert testkit.ScriptedLLM is _llm_doubles.ScriptedLLM
    assert testkit.FunctionLLM is _llm_doubles.FunctionLLM
    assert testkit.ProviderServer is _provider_server.ProviderServer
