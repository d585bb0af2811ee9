"""FlowEvent: what the runtime reports about itself, and the protocols that listen."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol, runtime_checkable

__all__ = ["EventHook", "FlowEvent", "FlowEventType", "Middleware"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


class FlowEventType(StrEnum):
    """Kinds of :class:`FlowEvent`; members compare equal to their string values."""

    NODE_START = "node_start"
    """A node attempt begins."""
    NODE_SUCCESS = "node_success"
    """A node attempt returned; ``latency_ms`` is its duration."""
    NODE_ERROR = "node_error"
    """A node attempt raised (it may be retried)."""
    NODE_TIMEOUT = "node_timeout"
    """A node attempt ran past ``timeout_s`` (it may be retried)."""
    NODE_RETRY = "node_retry"
    """A retry is scheduled; ``extra['sleep_s']`` is the backoff."""
    NODE_FAILED = "node_failed"
    """The message failed for good; ``extra`` holds the ``FlowError`` payload."""
    DEADLINE_SKIP = "deadline_skip"
    """A node was skipped (or interrupted) because the message's deadline passed."""
    BUDGET_EXHAUSTED = "budget_exhausted"
    """A controller loop stopped on its hop or token budget."""
    TRACE_CANCEL_START = "trace_cancel_start"
    """``flow.cancel(trace_id)`` began."""
    TRACE_CANCEL_DROP = "trace_cancel_drop"
    """Queued messages of a cancelled trace were dropped; ``extra['dropped']`` counts them."""
    TRACE_CANCEL_FINISH = "trace_cancel_finish"
    """Every piece of work of the cancelled trace has unwound."""
    NODE_TRACE_CANCELLED = "node_trace_cancelled"
    """A node invocation was cancelled because its trace was."""
    EMIT = "emit"
    """A message entered the flow through OpenSea."""
    FETCH = "fetch"
    """A caller took an item from Rookery."""
    STREAM_CHUNK = "stream_chunk"
    """A node emitted a ``StreamChunk``."""


class FlowEvent(NamedTuple):
    """One observation of the runtime. Built only when someone listens.

    An immutable record with no per-instance dict (a ``NamedTuple``: several events are built per
    message hop when someone listens, and a frozen dataclass costs eight times as much to build).
    """

    event_type: FlowEventType
    """What happened."""
    ts: float
    """Wall-clock epoch seconds."""
    node_name: str | None
    """The node it happened at (None for flow-level events)."""
    node_id: str | None
    """That node's unique id."""
    trace_id: str | None
    """The trace it belongs to."""
    attempt: int = 0
    """Attempt number for node events (0 = first attempt)."""
    latency_ms: float | None = None
    """Duration of the attempt, for success/error/timeout events."""
    queue_depth_in: int = 0
    """Messages waiting in the node's incoming floes."""
    queue_depth_out: int = 0
    """Messages waiting in the node's outgoing floes."""
    outgoing_edges: int = 0
    """How many successors the node has."""
    queue_maxsize: int = 0
    """The flow's per-edge bound (<= 0 means unbounded)."""
    trace_pending: int | None = None
    """Messages of this trace still in the flow."""
    trace_inflight: int = 0
    """Node invocations of this trace running now."""
    trace_cancelled: bool = False
    """Whether the trace is being cancelled."""
    extra: Mapping[str, Any] = _EMPTY
    """Event-specific details (read-only)."""

    def to_payload(self) -> dict[str, Any]:
        """Flat, JSON-friendly dict of the event (``extra`` keys merged in)."""
        payload: dict[str, Any] = {
            "ts": self.ts,
            "event": self.event_type.value,
            "node_name": self.node_name,
            "node_id": self.node_id,
            "trace_id": self.trace_id,
            "latency_ms": self.latency_ms,
            "q_depth_in": self.queue_depth_in,
            "q_depth_out": self.queue_depth_out,
            "q_depth_total": self.queue_depth_in + self.queue_depth_out,
            "outgoing": self.outgoing_edges,
            "queue_maxsize": self.queue_maxsize,
            "attempt": self.attempt,
            "trace_inflight": self.trace_inflight,
            "trace_cancelled": self.trace_cancelled,
            "trace_pending": self.trace_pending,
        }
        payload.update(self.extra)
        return payload

    def metric_samples(self) -> dict[str, float]:
        """Numeric samples for metrics sinks (latency, queue depths, trace counters)."""
        samples: dict[str, float] = {
            "queue_depth_in": float(self.queue_depth_in),
            "queue_depth_out": float(self.queue_depth_out),
            "queue_depth_total": float(self.queue_depth_in + self.queue_depth_out),
            "attempt": float(self.attempt),
            "trace_inflight": float(self.trace_inflight),
            "trace_cancelled": 1.0 if self.trace_cancelled else 0.0,
        }
        if self.latency_ms is not None:
            samples["latency_ms"] = self.latency_ms
        if self.trace_pending is not None:
            samples["trace_pending"] = float(self.trace_pending)
        return samples

    def tag_values(self) -> dict[str, str]:
        """String tags for metrics sinks (event type, node, trace)."""
        tags = {"event_type": self.event_type.value}
        if self.node_name is not None:
            tags["node_name"] = self.node_name
        if self.node_id is not None:
            tags["node_id"] = self.node_id
        if self.trace_id is not None:
            tags["trace_id"] = self.trace_id
        return tags

    @property
    def error_payload(self) -> Mapping[str, Any] | None:
        """The ``FlowError`` payload carried by ``node_failed`` events, else None."""
        value = self.extra.get("flow_error")
        return value if isinstance(value, Mapping) else None  # pyright: ignore[reportUnknownVariableType]


@runtime_checkable
class Middleware(Protocol):
    """An async event listener. Runs off the hot path, from a bounded buffer."""

    async def __call__(self, event: FlowEvent) -> None:
        """Handle one event; exceptions are logged and counted, never fatal."""
        ...


EventHook = Callable[[FlowEvent], None]
"""A sync listener called inline for every event; keep it cheap."""
