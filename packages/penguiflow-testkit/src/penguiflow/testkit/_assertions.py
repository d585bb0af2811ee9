"""Assertions over recorded events: node sequences, with failure messages a person can act on."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from penguiflow.core import FlowEvent, PenguiFlow

from ._errors import NodeSequenceMismatch
from ._recorder import EventRecorder

if TYPE_CHECKING:
    from ._kit import FlowTestKit

__all__ = ["assert_node_sequence", "get_recorded_events", "recorder_of"]


def recorder_of(source: EventRecorder | FlowTestKit | PenguiFlow) -> EventRecorder:
    """The recorder behind ``source``: itself, a kit's recorder, or the one attached to a flow.

    Raises:
        ValueError: ``source`` is a flow with no ``EventRecorder`` attached.
    """
    if isinstance(source, EventRecorder):
        return source
    if isinstance(source, PenguiFlow):
        recorder = EventRecorder.attached_to(source)
        if recorder is None:
            raise ValueError(
                f"no EventRecorder is attached to {source!r}; run it with run_one() or "
                "FlowTestKit(flow), or call EventRecorder().attach(flow) before it runs"
            )
        return recorder
    return source.recorder


def get_recorded_events(
    source: EventRecorder | FlowTestKit | PenguiFlow, trace_id: str | None
) -> tuple[FlowEvent, ...]:
    """The events recorded for ``trace_id`` by ``source`` (a recorder, a kit or a flow)."""
    return recorder_of(source).get_recorded_events(trace_id)


def assert_node_sequence(
    source: EventRecorder | FlowTestKit | PenguiFlow,
    trace_id: str | None,
    expected: Sequence[str],
) -> None:
    """Assert that ``trace_id`` went through exactly the nodes ``expected``, in that order.

    Each node invocation counts once: retries of one invocation collapse into a single entry, while
    every hop of a controller loop is its own entry. See ``EventRecorder.node_sequence``.

    Raises:
        NodeSequenceMismatch: The sequences differ; the message shows both, where they first
            differ, and every event of the trace.
    """
    __tracebackhide__ = True  # pytest: show the test's frame, not the testkit's
    check_node_sequence(recorder_of(source), trace_id, expected)


def check_node_sequence(
    recorder: EventRecorder, trace_id: str | None, expected: Sequence[str]
) -> None:
    """Implementation of :func:`assert_node_sequence` for one recorder."""
    __tracebackhide__ = True  # pytest: show the test's frame, not the testkit's
    if isinstance(expected, str):
        raise TypeError(
            f"expected must be a sequence of node names, not the string {expected!r}; "
            f"write [{expected!r}]"
        )
    wanted = list(expected)
    actual = recorder.node_sequence(trace_id)
    if actual == wanted:
        return
    lines = [
        f"node sequence of trace {trace_id!r} differs from the expected one",
        f"  expected: {wanted}",
        f"  actual:   {actual}",
        f"  {_first_difference(wanted, actual)}",
        recorder.describe(trace_id),
    ]
    raise NodeSequenceMismatch("\n".join(lines), trace_id=trace_id, expected=wanted, actual=actual)


def _first_difference(expected: list[str], actual: list[str]) -> str:
    for index, (want, got) in enumerate(zip(expected, actual, strict=False)):
        if want != got:
            return f"first difference at position {index}: expected {want!r}, got {got!r}"
    if len(actual) < len(expected):
        missing = expected[len(actual) :]
        return f"the trace stopped after {len(actual)} node(s); missing: {missing}"
    extra = actual[len(expected) :]
    return f"the trace went through {len(extra)} more node(s) than expected: {extra}"
