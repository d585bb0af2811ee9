"""EventRecorder: the FlowEvents of one flow, grouped by trace.

A recorder is a sync event hook (``flow.add_event_hook(recorder)``): the runtime calls it inline,
so by the time a result is fetched every event that led to it has been recorded. Each flow gets its
own recorder, so tests that run flows concurrently never see each other's events.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Self

from penguiflow.core import FlowEvent, FlowEventType, PenguiFlow

from ._traces import TRACES

__all__ = ["EventRecorder", "format_events"]


class EventRecorder:
    """Records every ``FlowEvent`` of the flow(s) it is attached to, per trace.

    Attach it with ``recorder.attach(flow)`` (or ``flow.add_event_hook(recorder)``) before the flow
    runs; ``FlowTestKit`` and ``run_one`` do this for you. Subflows started with
    ``call_playbook`` inherit the parent's hooks, so their node events are recorded under the
    parent's trace too.

    Every recorder also tells the testkit which traces it saw, so ``assert_node_sequence(trace_id,
    expected)`` and ``get_recorded_events(trace_id)`` find it from the trace id alone. That index
    holds recorders weakly and remembers the last 1024 trace ids; a recorder you hold (or a kit's)
    can always be asked directly, however many traces it recorded.
    """

    __slots__ = ("__weakref__", "_by_trace", "_events")

    def __init__(self) -> None:
        self._events: list[FlowEvent] = []
        self._by_trace: dict[str | None, list[FlowEvent]] = {}

    def __call__(self, event: FlowEvent) -> None:
        """Record one event (the runtime calls this inline)."""
        self._events.append(event)
        bucket = self._by_trace.get(event.trace_id)
        if bucket is None:
            bucket = self._by_trace[event.trace_id] = []
            if event.trace_id is not None:
                TRACES.note(event.trace_id, self)
        bucket.append(event)

    # ------------------------------------------------------------ attaching
    def attach(self, flow: PenguiFlow) -> Self:
        """Listen to ``flow``'s events (idempotent) and return this recorder."""
        if not any(hook is self for hook in flow.event_hooks):
            flow.add_event_hook(self)
        return self

    @classmethod
    def attached_to(cls, flow: PenguiFlow) -> EventRecorder | None:
        """The first recorder attached to ``flow``, or None."""
        for hook in flow.event_hooks:
            if isinstance(hook, EventRecorder):
                return hook
        return None

    @classmethod
    def for_flow(cls, flow: PenguiFlow) -> EventRecorder:
        """The recorder attached to ``flow``, attaching a new one when there is none."""
        recorder = cls.attached_to(flow)
        return recorder if recorder is not None else cls().attach(flow)

    # --------------------------------------------------------------- reading
    @property
    def all_events(self) -> tuple[FlowEvent, ...]:
        """Every recorded event, in the order the runtime reported them."""
        return tuple(self._events)

    @property
    def trace_ids(self) -> tuple[str | None, ...]:
        """The traces seen so far, in first-seen order (None: untraced bare payloads)."""
        return tuple(self._by_trace)

    def get_recorded_events(self, trace_id: str | None) -> tuple[FlowEvent, ...]:
        """The events of ``trace_id``, in order (empty when the trace was never seen)."""
        return tuple(self._by_trace.get(trace_id, ()))

    def node_sequence(self, trace_id: str | None) -> list[str]:
        """Names of the nodes the trace went through, in the order they started.

        One entry per node invocation: retries of an invocation (``attempt > 0``) are not new
        entries, while each hop of a controller loop is.
        """
        return [
            event.node_name
            for event in self._by_trace.get(trace_id, ())
            if event.event_type == FlowEventType.NODE_START
            and event.attempt == 0
            and event.node_name is not None
        ]

    def describe(self, trace_id: str | None) -> str:
        """A readable, multi-line account of the trace's events (used in failure messages)."""
        events = self._by_trace.get(trace_id, ())
        if not events:
            seen = [t for t in self._by_trace if t is not None]
            return (
                f"no event was recorded for trace {trace_id!r} "
                f"(traces recorded: {_short_list(seen)})"
            )
        return f"events of trace {trace_id!r} ({len(events)}):\n{format_events(events)}"

    def clear(self) -> None:
        """Forget every recorded event."""
        self._events.clear()
        self._by_trace.clear()

    def __len__(self) -> int:
        return len(self._events)

    def __repr__(self) -> str:
        return f"EventRecorder(events={len(self._events)}, traces={len(self._by_trace)})"


def format_events(events: Iterable[FlowEvent]) -> str:
    """Render events one per line, with times relative to the first one."""
    lines: list[str] = []
    start: float | None = None
    for event in events:
        if start is None:
            start = event.ts
        offset = (event.ts - start) * 1000
        node = event.node_name or "-"
        line = f"  {offset:8.2f} ms  {str(event.event_type):<20} {node:<16}"
        detail = _detail(event)
        lines.append(f"{line} {detail}".rstrip())
    return "\n".join(lines)


def _detail(event: FlowEvent) -> str:
    kind = event.event_type
    extra = event.extra
    parts: list[str] = []
    if event.node_name is not None:
        parts.append(f"attempt={event.attempt}")
    if event.latency_ms is not None:
        parts.append(f"latency={event.latency_ms:.2f}ms")
    if kind == FlowEventType.EMIT and "targets" in extra:
        parts.append(f"to={extra['targets']}")
    elif kind in (FlowEventType.NODE_ERROR, FlowEventType.NODE_TIMEOUT) and "exception" in extra:
        parts.append(str(extra["exception"]))
    elif kind == FlowEventType.NODE_RETRY and "sleep_s" in extra:
        parts.append(f"sleep={float(extra['sleep_s']):.3f}s")
    elif kind == FlowEventType.NODE_FAILED:
        error = event.error_payload
        if error is not None:
            parts.append(f"[{error.get('code')}] {error.get('message')}")
    elif extra:
        parts.append(", ".join(f"{key}={value!r}" for key, value in extra.items()))
    return "  ".join(parts)


def _short_list(items: Sequence[str], limit: int = 5) -> str:
    if not items:
        return "none"
    shown = ", ".join(repr(item) for item in items[:limit])
    more = len(items) - limit
    return f"{shown} and {more} more" if more > 0 else shown
