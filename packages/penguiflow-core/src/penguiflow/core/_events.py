"""FlowEvent: what the runtime reports about itself, and the protocols that listen."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol, Self, cast, runtime_checkable

__all__ = ["EventHook", "FlowEvent", "FlowEventType", "Middleware", "format_flow_event"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_tuple_new = cast(
    Callable[[type[Any], tuple[Any, ...]], Any],
    tuple.__new__,  # pyright: ignore[reportUnknownMemberType]
)


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


class _EventRecord(NamedTuple):
    """The fields of a ``FlowEvent``, in order (its base: see ``FlowEvent``)."""

    # The fields of FlowEvent, in order. FlowEvent subclasses this to check what a caller builds
    # (NamedTuple forbids defining __new__ in its own body); the runtime builds events straight
    # from a tuple, skipping the check.

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


class FlowEvent(_EventRecord):
    """One observation of the runtime. Built only when someone listens.

    An immutable record with no per-instance dict (a ``NamedTuple``: several events are built per
    message hop when someone listens, and a frozen dataclass costs eight times as much to build).

    Building one yourself (a test of a sink, a replay) takes the fields by position or by name;
    ``event_type`` may be the string value (``"node_success"``) and becomes the
    :class:`FlowEventType` member, and ``extra`` is copied into a read-only mapping. Events
    pickle and copy (``extra`` travels as a plain dict and comes back read-only).
    """

    __slots__ = ()

    def __new__(
        cls,
        event_type: FlowEventType | str,
        ts: float,
        node_name: str | None,
        node_id: str | None,
        trace_id: str | None,
        attempt: int = 0,
        latency_ms: float | None = None,
        queue_depth_in: int = 0,
        queue_depth_out: int = 0,
        outgoing_edges: int = 0,
        queue_maxsize: int = 0,
        trace_pending: int | None = None,
        trace_inflight: int = 0,
        trace_cancelled: bool = False,
        extra: Mapping[str, Any] | None = None,
    ) -> Self:
        """Build an event, checking ``event_type`` and freezing ``extra``.

        Raises:
            ValueError: ``event_type`` is not one of the :class:`FlowEventType` values.
        """
        if not isinstance(event_type, FlowEventType):
            try:
                event_type = FlowEventType(event_type)
            except ValueError:
                known = ", ".join(t.value for t in FlowEventType)
                raise ValueError(
                    f"unknown FlowEvent event_type {event_type!r}; use a FlowEventType member "
                    f"or one of: {known}"
                ) from None
        frozen = _EMPTY if not extra else MappingProxyType(dict(extra))
        return _tuple_new(
            cls,
            (
                event_type,
                ts,
                node_name,
                node_id,
                trace_id,
                attempt,
                latency_ms,
                queue_depth_in,
                queue_depth_out,
                outgoing_edges,
                queue_maxsize,
                trace_pending,
                trace_inflight,
                trace_cancelled,
                frozen,
            ),
        )

    @classmethod
    def _make(cls, iterable: Iterable[Any]) -> Self:  # pyright: ignore[reportIncompatibleMethodOverride]
        # Final for type checkers only: overridden so that ``_replace`` and ``_make`` go through
        # the constructor's check (a replaced ``extra`` stays read-only).
        return cls(*iterable)

    def __reduce__(self) -> tuple[Any, ...]:
        # A read-only mapping does not pickle: send extra as a dict, rebuilt read-only on load.
        return (type(self), (*self[:-1], dict(self.extra)))

    @property
    def queue_depth(self) -> int:
        """Messages waiting around the node: ``queue_depth_in + queue_depth_out``."""
        return self.queue_depth_in + self.queue_depth_out

    def to_payload(self) -> dict[str, Any]:
        """Flat, JSON-friendly dict of the event (``extra`` keys merged in)."""
        payload: dict[str, Any] = {
            "ts": self.ts,
            "event": str(self.event_type),
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
        """Numeric samples for metrics sinks (latency, queue depths, trace counters).

        ``latency_ms`` is the event's latency; a number (or numeric string) under
        ``extra["latency_ms"]`` takes its place.
        """
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
        override = self.extra.get("latency_ms")
        if override is not None and not isinstance(override, bool):
            try:
                samples["latency_ms"] = float(override)
            except (TypeError, ValueError):
                pass  # not a number: the event's own latency stands
        return samples

    def tag_values(self) -> dict[str, str]:
        """String tags for metrics sinks.

        ``event_type``, then ``node_name``, ``node_id`` and ``trace_id`` when known, then every
        ``extra`` entry whose value is a ``str``, ``int``, ``float`` or ``bool`` (as its
        ``str``). An ``extra`` key never replaces one of the first four tags.
        """
        tags = {"event_type": str(self.event_type)}
        if self.node_name is not None:
            tags["node_name"] = self.node_name
        if self.node_id is not None:
            tags["node_id"] = self.node_id
        if self.trace_id is not None:
            tags["trace_id"] = self.trace_id
        for key, value in self.extra.items():
            if isinstance(value, str | int | float) and key not in _CORE_TAGS:
                tags[key] = str(value)
        return tags

    @property
    def error_payload(self) -> Mapping[str, Any] | None:
        """The ``FlowError`` payload carried by ``node_failed`` events (read-only), else None."""
        value = self.extra.get("flow_error")
        if not isinstance(value, Mapping):
            return None
        return MappingProxyType(dict(cast(Mapping[str, Any], value)))


_CORE_TAGS = frozenset({"event_type", "node_name", "node_id", "trace_id"})


def format_flow_event(event: FlowEvent) -> dict[str, Any]:
    """``event.to_payload()`` with its ``FlowError`` payload flattened, ready for a log record.

    For an event that carries one (``node_failed``), ``flow_error`` holds the error payload as a
    plain dict and each of its keys is copied to the top level as ``flow_error_<key>``
    (``flow_error_code``, ``flow_error_message`` …), so log aggregators can index them.
    """
    payload = event.to_payload()
    error = event.error_payload
    if error is not None:
        payload["flow_error"] = dict(error)
        for key, value in error.items():
            payload[f"flow_error_{key}"] = value
    return payload


@runtime_checkable
class Middleware(Protocol):
    """An async event listener. Runs off the hot path, from a bounded buffer.

    Usually an object or function with ``async def __call__(self, event) -> None``; anything
    whose call returns an awaitable fits (``log_flow_events()`` returns one that is already
    done, so it also serves as a sync :data:`EventHook`).
    """

    def __call__(self, event: FlowEvent, /) -> Awaitable[None]:
        """Handle one event; exceptions are logged and counted, never fatal."""
        ...


EventHook = Callable[[FlowEvent], object]
"""A sync listener called inline for every event; keep it cheap. Its return value is ignored."""
