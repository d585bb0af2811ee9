"""What the testkit raises when a flow does not behave as the test expects.

The tree::

    FlowTestError (AssertionError)   a flow did not behave as the test expected
    ├── FlowTestTimeout              run_one got no result in time (also a TimeoutError)
    ├── NoResult                     the trace ended without delivering a result
    ├── NodeSequenceMismatch         the trace did not go through the expected nodes
    ├── EnvelopeNotPreserved         a node dropped or changed its input's envelope
    ├── ScriptExhausted              a ScriptedLLM was called after its last scripted answer
    └── ReplayMismatch               a replaying Cassette got a call it has no recording of

Every one is an ``AssertionError``, so pytest reports it as a test failure (not an error) and shows
its message, which always carries what was expected, what happened, and the trace's events.
Misuse of the testkit itself (bad arguments, a flow that cannot be run again) raises
``TypeError``/``ValueError``/``RuntimeError`` with a message that says what to do instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from ._llm_doubles import LLMCall

__all__ = [
    "EnvelopeNotPreserved",
    "FlowTestError",
    "FlowTestTimeout",
    "NoResult",
    "NodeSequenceMismatch",
    "ReplayMismatch",
    "ScriptExhausted",
]


class FlowTestError(AssertionError):
    """Root of the testkit's assertion failures.

    Attributes:
        trace_id: The trace the failure is about, when there is one.
    """

    def __init__(self, message: str, *, trace_id: str | None = None) -> None:
        super().__init__(message)
        self.trace_id = trace_id


class FlowTestTimeout(FlowTestError, TimeoutError):
    """``run_one`` waited ``timeout_s`` without a result for the trace.

    It is also a ``TimeoutError`` (which ``asyncio.TimeoutError`` is), so tests that expect a
    timeout with ``pytest.raises(TimeoutError)`` keep working.

    Attributes:
        timeout_s: How long it waited.
    """

    def __init__(self, message: str, *, trace_id: str | None, timeout_s: float) -> None:
        super().__init__(message, trace_id=trace_id)
        self.timeout_s = timeout_s


class NoResult(FlowTestError):
    """The trace ended without delivering anything to Rookery (say a node returned ``None``)."""


class NodeSequenceMismatch(FlowTestError):
    """The trace's node sequence differs from the expected one.

    Attributes:
        expected: The sequence the test expected.
        actual: The sequence that was recorded.
    """

    def __init__(
        self, message: str, *, trace_id: str | None, expected: list[str], actual: list[str]
    ) -> None:
        super().__init__(message, trace_id=trace_id)
        self.expected = expected
        self.actual = actual


class EnvelopeNotPreserved(FlowTestError):
    """A node returned or emitted a message that lost part of its input's envelope.

    Attributes:
        problems: One line per field that was not preserved.
    """

    def __init__(self, message: str, *, trace_id: str | None, problems: list[str]) -> None:
        super().__init__(message, trace_id=trace_id)
        self.problems = problems


class ScriptExhausted(FlowTestError):
    """A ``ScriptedLLM`` was called once more than it had answers for.

    The message shows the messages of the call too many.

    Attributes:
        calls: Every call the double received, the one too many last (``LLMCall`` objects).
    """

    def __init__(self, message: str, *, calls: list[LLMCall]) -> None:
        super().__init__(message)
        self.calls = calls


class ReplayMismatch(FlowTestError):
    """A replaying ``Cassette`` got an LLM or tool call that it has no recording of.

    The message names the nearest recorded call of the same kind and shows a short diff
    (``-`` recorded, ``+`` this call).

    Attributes:
        kind: ``"llm"`` or ``"tool"``.
        request: The unmatched call as JSON: ``{"messages", "response_format"}`` for an LLM call,
            ``{"tool", "args"}`` for a tool call.
        nearest: The most similar recorded call of the same kind, in the same shape (None when
            the cassette has none).
    """

    def __init__(
        self,
        message: str,
        *,
        kind: Literal["llm", "tool"],
        request: dict[str, Any],
        nearest: dict[str, Any] | None,
    ) -> None:
        super().__init__(message)
        self.kind: Literal["llm", "tool"] = kind
        self.request = request
        self.nearest = nearest
