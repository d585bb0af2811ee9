"""FlowTestKit: tiny, readable tests for PenguiFlow flows.

Run one message through a flow, then check the result and the path it took::

    from penguiflow.core import Headers, Message, Node, create
    from penguiflow.testkit import assert_node_sequence, run_one

    async def test_shout() -> None:
        msg = Message(payload="hi", headers=Headers(tenant="t"))
        assert (await run_one(create(Node(shout).to()), msg)).payload == "HI"
        assert_node_sequence(msg.trace_id, ["shout"])

Every recorder belongs to one flow, so tests that run flows concurrently stay independent; the
trace id alone finds the recorder that saw it (a bounded index that holds recorders weakly). The
pytest plugin (``penguiflow.testkit.pytest_plugin``, loaded automatically) provides the
``flow_kit`` and ``event_recorder`` fixtures.

For the planner, ``ScriptedLLM`` and ``FunctionLLM`` stand in for a model, ``Cassette`` records
a run's LLM and tool calls and replays them without either, and ``ProviderServer`` speaks
OpenAI's and Anthropic's wire formats on loopback for the real SDKs (the LLM doubles and
``Cassette`` need ``pip install "penguiflow-testkit[planner]"``); they load on first use.

For store backends, ``DurableStoreConformance`` (subclass it, provide an ``open_store`` fixture)
and ``ManualClock`` live in ``penguiflow.testkit.stores``; they are re-exported here and loaded on
first use, since that module imports pytest.
"""

import importlib as _importlib
import typing as _typing

from ._assertions import assert_node_sequence, get_recorded_events, recorder_of
from ._envelope import assert_preserves_message_envelope, probe_message
from ._errors import (
    EnvelopeNotPreserved,
    FlowTestError,
    FlowTestTimeout,
    NodeSequenceMismatch,
    NoResult,
    ReplayMismatch,
    ScriptExhausted,
)
from ._kit import FlowKitFactory, FlowTestKit
from ._recorder import EventRecorder, format_events
from ._run import run_one
from ._simulate import ErrorSimulator, simulate_error

if _typing.TYPE_CHECKING:
    from ._cassette import Cassette
    from ._llm_doubles import FunctionLLM, LLMCall, LLMCallInfo, ScriptedLLM
    from ._provider_server import ProviderRequest, ProviderServer
    from .stores import DurableStoreConformance, ManualClock

_LAZY = {
    "DurableStoreConformance": "stores",
    "ManualClock": "stores",
    # the planner's doubles: _llm_doubles imports penguiflow.planner (the [planner] extra)
    "FunctionLLM": "_llm_doubles",
    "LLMCall": "_llm_doubles",
    "LLMCallInfo": "_llm_doubles",
    "ScriptedLLM": "_llm_doubles",
    "Cassette": "_cassette",
    "ProviderRequest": "_provider_server",
    "ProviderServer": "_provider_server",
}

__all__ = [
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
]


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is not None:  # imports pytest or the planner: only on first use
        value = getattr(_importlib.import_module(f"{__name__}.{module}"), name)
        globals()[name] = value
        return value
    if name == "__version__":
        from importlib.metadata import version

        return version("penguiflow-testkit")
    raise AttributeError(f"module 'penguiflow.testkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
