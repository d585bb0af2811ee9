"""run_one: push one message through a flow and return that trace's first result."""

from __future__ import annotations

import math
import uuid
from typing import Any

import anyio

from penguiflow.core import (
    FlowEvent,
    FlowEventType,
    Message,
    ModelRegistry,
    PenguiFlow,
    TraceEnded,
)

from ._errors import FlowTestTimeout, NoResult
from ._recorder import EventRecorder
from ._traces import TRACES

__all__ = ["emit_and_fetch", "run_one"]


async def run_one(
    flow: PenguiFlow,
    message: Any,
    *,
    registry: ModelRegistry | None = None,
    timeout_s: float | None = 1.0,
    trace_id: str | None = None,
) -> Any:
    """Run ``flow`` for one message and return the first Rookery item of its trace.

    The flow is started (with ``registry``) and stopped around the call; a flow runs once, so to
    send several messages use ``async with FlowTestKit(flow) as kit``. When ``flow`` is already
    running it is only used, not started or stopped. An ``EventRecorder`` is attached to the flow
    unless one already is, so ``assert_node_sequence(message.trace_id, [...])`` (or
    ``assert_node_sequence(flow, ...)``) works afterwards.

    Outcomes:
        * a result: returned as delivered to Rookery (usually a ``Message``; read ``.payload``);
        * with ``create(..., emit_errors_to_rookery=True)``, a failed trace's ``FlowError`` *is*
          the Rookery item, so it is returned, not raised: assert on its ``code``;
        * otherwise a failed trace raises its ``FlowError``, and a cancelled one
          ``TraceCancelled``;
        * the trace ends without a result (a node returned ``None``, a router chose no
          successor): ``NoResult``, listing the trace's events;
        * no result within ``timeout_s``: ``FlowTestTimeout`` (also a ``TimeoutError``),
          listing the trace's events.

    Args:
        flow: The flow under test.
        message: A ``Message``, or a bare payload (tracked under ``trace_id``).
        registry: Validates messages while the flow runs (only when ``run_one`` starts it).
        timeout_s: How long to wait for the result, in seconds; None waits without a bound
            (a trace that ends without a result still raises ``NoResult`` at once).
        trace_id: Trace id for a bare payload (default: a fresh one). Ignored for ``Message``
            objects, which carry their own.
    """
    __tracebackhide__ = True  # pytest: show the test's frame, not the testkit's
    recorder = EventRecorder.for_flow(flow)
    if flow.running_now:
        if registry is not None:
            raise ValueError(
                "the flow is already running, so registry= cannot apply; pass the registry "
                "where the flow is started (flow.running(registry=...) or FlowTestKit(...))"
            )
        return await emit_and_fetch(flow, recorder, message, timeout_s=timeout_s, trace_id=trace_id)
    async with flow.running(registry=registry):
        return await emit_and_fetch(flow, recorder, message, timeout_s=timeout_s, trace_id=trace_id)


async def emit_and_fetch(
    flow: PenguiFlow,
    recorder: EventRecorder,
    message: Any,
    *,
    timeout_s: float | None,
    trace_id: str | None = None,
) -> Any:
    """Emit ``message`` into a running flow and fetch its trace's first result (see run_one)."""
    __tracebackhide__ = True  # pytest: show the test's frame, not the testkit's
    if timeout_s is not None and not (timeout_s > 0 and math.isfinite(timeout_s)):
        raise ValueError(
            f"timeout_s must be a positive number of seconds (or None: no bound), got {timeout_s!r}"
        )
    TRACES.pin(recorder)  # an inline `run_one(create(...), msg)` can still be asserted on
    bound = math.inf if timeout_s is None else timeout_s
    if isinstance(message, Message):
        key = message.trace_id
        emit_trace_id = None
    else:
        key = emit_trace_id = trace_id if trace_id is not None else uuid.uuid4().hex
    try:
        with anyio.move_on_after(bound):
            # No await separates a non-blocking emit from the fetch registering its waiter, so
            # however this trace ends, the fetch is waiting and answered.
            await flow.emit(message, trace_id=emit_trace_id)
            return await flow.fetch(trace_id=key)
    except TraceEnded:
        raise NoResult(no_result_message(recorder, key), trace_id=key) from None
    raise FlowTestTimeout(timeout_message(recorder, key, bound), trace_id=key, timeout_s=bound)


def no_result_message(recorder: EventRecorder, trace_id: str) -> str:
    """Explain a trace that ended without a result."""
    return "\n".join(
        [
            f"trace {trace_id!r} ended without a result",
            f"  node sequence: {recorder.node_sequence(trace_id)}",
            "  hint: a node returned None (which drops the message), a router chose no "
            "successor, or a join never got all its branches",
            recorder.describe(trace_id),
        ]
    )


def timeout_message(recorder: EventRecorder, trace_id: str, timeout_s: float) -> str:
    """Explain a run that produced no result: what ran, what is still open, what to check."""
    events = recorder.get_recorded_events(trace_id)
    return "\n".join(
        [
            f"no result for trace {trace_id!r} within {timeout_s:g}s",
            f"  node sequence so far: {recorder.node_sequence(trace_id)}",
            f"  hint: {_hint(events, timeout_s)}",
            recorder.describe(trace_id),
        ]
    )


def _hint(events: tuple[FlowEvent, ...], timeout_s: float) -> str:
    if not any(event.event_type is FlowEventType.EMIT for event in events):
        return "the message never entered the flow (was the emit blocked by a full ingress queue?)"
    last: dict[str, FlowEvent] = {}
    for event in events:
        if event.node_name is not None:
            last[event.node_name] = event
    running = [n for n, e in last.items() if e.event_type is FlowEventType.NODE_START]
    backing_off = [n for n, e in last.items() if e.event_type is FlowEventType.NODE_RETRY]
    failed = [e for e in last.values() if e.event_type is FlowEventType.NODE_FAILED]
    if running:
        return (
            f"node(s) {running} started and had not returned after {timeout_s:g}s: they may be "
            "waiting on something that never happens, or need a larger timeout_s"
        )
    if backing_off:
        return (
            f"node(s) {backing_off} were waiting to retry; use a small NodePolicy.backoff_base "
            "in tests (e.g. 0.0) or a larger timeout_s"
        )
    if failed:
        names = [e.node_name for e in failed]
        return f"node(s) {names} failed and nothing else reached Rookery for this trace"
    return (
        "every node that started has returned, yet nothing reached Rookery for this trace: a "
        "node returned None (which drops the message), a router chose no successor, or a join "
        "is still waiting for more branches"
    )
