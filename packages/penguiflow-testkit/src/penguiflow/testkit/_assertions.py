"""Assertions over recorded events: node sequences, with failure messages a person can act on.

Both helpers take the trace id alone (the recorder that saw the trace is looked up) or, first, the
recorder, kit or flow to read.
"""

from __future__ import annotations

from collections.abc import Sequence
from inspect import Parameter, Signature
from itertools import groupby
from typing import TYPE_CHECKING, Any, overload

from penguiflow.core import FlowEvent, PenguiFlow

from ._errors import NodeSequenceMismatch
from ._recorder import EventRecorder
from ._traces import MAX_INDEXED_TRACES, TRACES

if TYPE_CHECKING:
    from ._kit import FlowTestKit

__all__ = ["assert_node_sequence", "get_recorded_events", "recorder_of"]


def recorder_of(source: EventRecorder | FlowTestKit | PenguiFlow) -> EventRecorder:
    """The recorder behind ``source``: itself, a kit's recorder, or the one attached to a flow.

    Raises:
        ValueError: ``source`` is a flow with no ``EventRecorder`` attached.
        TypeError: ``source`` is none of these.
    """
    from ._kit import FlowTestKit  # the kit module imports this one

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
    if isinstance(source, FlowTestKit):  # pyright: ignore[reportUnnecessaryIsInstance]
        return source.recorder
    raise TypeError(
        f"expected an EventRecorder, a FlowTestKit or a PenguiFlow, got {source!r}; to look a "
        "trace up by its id alone, pass the trace id string first"
    )


def _param(name: str) -> Parameter:
    return Parameter(name, Parameter.POSITIONAL_OR_KEYWORD)


_BY_TRACE_ID = Signature([_param("trace_id"), _param("expected")])
_FROM_SOURCE = Signature([_param("source"), _param("trace_id"), _param("expected")])


def _split(
    name: str, args: tuple[Any, ...], kwargs: dict[str, Any], *, with_expected: bool
) -> tuple[EventRecorder | None, Any, Any]:
    """Bind a call of either form: ``(trace_id, ...)`` or ``(source, trace_id, ...)``."""
    by_source = "source" in kwargs or (bool(args) and not isinstance(args[0], str))
    signature = _FROM_SOURCE if by_source else _BY_TRACE_ID
    if not with_expected:
        signature = signature.replace(parameters=list(signature.parameters.values())[:-1])
    usage = f"{name}(trace_id{', expected' if with_expected else ''})"
    if by_source and args and args[0] is None and len(args) + len(kwargs) == 1 + with_expected:
        raise TypeError(
            f"{name}(): a trace id of None (an untraced bare payload) cannot be looked up by id "
            f"alone; pass the recorder, kit or flow first: {usage.replace('(', '(kit, ', 1)}"
        )
    try:
        bound = signature.bind(*args, **kwargs).arguments
    except TypeError as exc:
        raise TypeError(
            f"{name}(): {exc}; call it as {usage} or {usage.replace('(', '(source, ', 1)}"
        ) from None
    recorder = recorder_of(bound["source"]) if by_source else None
    return recorder, bound["trace_id"], bound.get("expected")


@overload
def get_recorded_events(trace_id: str) -> tuple[FlowEvent, ...]: ...
@overload
def get_recorded_events(
    source: EventRecorder | FlowTestKit | PenguiFlow, trace_id: str | None
) -> tuple[FlowEvent, ...]: ...
def get_recorded_events(*args: Any, **kwargs: Any) -> tuple[FlowEvent, ...]:
    """The events recorded for a trace, in order (empty when no recorder has them).

    ``get_recorded_events(trace_id)`` asks the recorder that saw the trace (see
    ``assert_node_sequence``); ``get_recorded_events(source, trace_id)`` asks ``source``, a
    recorder, a kit or a flow.
    """
    recorder, trace_id, _ = _split("get_recorded_events", args, kwargs, with_expected=False)
    if recorder is None:
        recorder = TRACES.lookup(trace_id)
        if recorder is None:
            return ()
    return recorder.get_recorded_events(trace_id)


@overload
def assert_node_sequence(trace_id: str, expected: Sequence[str]) -> None: ...
@overload
def assert_node_sequence(
    source: EventRecorder | FlowTestKit | PenguiFlow,
    trace_id: str | None,
    expected: Sequence[str],
) -> None: ...
def assert_node_sequence(*args: Any, **kwargs: Any) -> None:
    """Assert that a trace went through exactly the nodes ``expected``, in that order.

    ``assert_node_sequence(trace_id, expected)`` reads the events of the recorder that recorded
    the trace: every ``EventRecorder`` (those of ``run_one``, ``FlowTestKit`` and the fixtures
    included) makes itself known by trace id. Trace ids are unique, so this is safe while other
    flows run; if two flows ran the same trace id, the one that started it last answers. The
    lookup remembers the last 1024 traces and never keeps a flow alive; the recorders of the last
    16 testkit runs are kept, so a flow built inline in ``run_one(create(...), msg)`` can still
    be checked. ``assert_node_sequence(source, trace_id, expected)`` reads ``source`` (a
    recorder, a kit, or a flow with a recorder attached) instead.

    Each node invocation counts once: retries of one invocation collapse into a single entry, while
    every hop of a controller loop is its own entry. See ``EventRecorder.node_sequence``.

    Raises:
        NodeSequenceMismatch: The sequences differ, or no recorder has the trace; the message
            shows both sequences, where they first differ, and every event of the trace.
    """
    __tracebackhide__ = True  # pytest: show the test's frame, not the testkit's
    recorder, trace_id, expected = _split("assert_node_sequence", args, kwargs, with_expected=True)
    if recorder is None:
        recorder = TRACES.lookup(trace_id)
        if recorder is None:
            _check_expected(expected)
            raise NodeSequenceMismatch(
                f"No recorded events for trace {trace_id!r}: no live EventRecorder has it. Run "
                "the flow with run_one() or FlowTestKit first; if it ran on a recorder or kit "
                f"you dropped, or more than {MAX_INDEXED_TRACES} traces ago, pass the flow, kit "
                "or recorder: assert_node_sequence(kit, trace_id, expected)",
                trace_id=trace_id,
                expected=list(expected),
                actual=[],
            )
    check_node_sequence(recorder, trace_id, expected)


def _check_expected(expected: Sequence[str]) -> None:
    if isinstance(expected, str):
        raise TypeError(
            f"expected must be a sequence of node names, not the string {expected!r}; "
            f"write [{expected!r}]"
        )


def check_node_sequence(
    recorder: EventRecorder, trace_id: str | None, expected: Sequence[str]
) -> None:
    """Implementation of :func:`assert_node_sequence` for one recorder."""
    __tracebackhide__ = True  # pytest: show the test's frame, not the testkit's
    _check_expected(expected)
    wanted = list(expected)
    actual = recorder.node_sequence(trace_id)
    if actual == wanted:
        return
    lines = [
        f"node sequence of trace {trace_id!r} differs from the expected one",
        f"  expected: {wanted}",
        f"  actual:   {actual}",
        f"  {_first_difference(wanted, actual)}",
    ]
    collapsed = [name for name, _ in groupby(actual)]
    if collapsed == wanted:
        lines.append(
            "  note: the trace ran some nodes several times in a row, and each invocation counts "
            "(every hop of a controller loop, a node feeding itself); penguiflow 3.x collapsed "
            f"such repeats, so expect {actual}"
        )
    lines.append(recorder.describe(trace_id))
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
