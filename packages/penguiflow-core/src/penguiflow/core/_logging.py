"""Structured logging of flow events, and formatters that show a record's ``extra`` fields.

``log_flow_events()`` returns a listener that logs each ``FlowEvent`` with its fields in the
record's ``extra``. It works as a sync hook (``create(on_event=...)``, ``flow.add_event_hook``)
and as an async middleware (``create(middlewares=[...])``, ``flow.add_middleware``). It asks
``logger.isEnabledFor`` before it builds anything, so a silenced logger costs one cached lookup
per event.

Formatters: ``JsonFormatter`` writes one flat JSON object a line (``configure_json_logging``
wires it up); ``StructuredFormatter`` writes JSON with the fields under ``"extra"`` and
``ExtraFormatter`` appends them to a plain line as ``[key=value, ...]`` (``configure_logging``
picks one of them). They live in ``_log_format`` and are re-exported here.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping
from typing import Any

from ._events import FlowEvent, FlowEventType
from ._log_format import (
    RECORD_ATTRS as _RECORD_ATTRS,
)
from ._log_format import (
    ExtraFormatter,
    JsonFormatter,
    StructuredFormatter,
    configure_json_logging,
    configure_logging,
)

__all__ = [
    "ExtraFormatter",
    "FlowEventLogger",
    "JsonFormatter",
    "LatencyCallback",
    "StructuredFormatter",
    "configure_json_logging",
    "configure_logging",
    "event_log_fields",
    "log_flow_events",
]

ERROR_EVENTS: frozenset[FlowEventType] = frozenset(
    {FlowEventType.NODE_ERROR, FlowEventType.NODE_FAILED, FlowEventType.NODE_TIMEOUT}
)
"""Event types logged at ``error_level``."""

LATENCY_EVENTS: frozenset[FlowEventType] = frozenset(
    {FlowEventType.NODE_SUCCESS, FlowEventType.NODE_ERROR}
)
"""Event types whose latency goes to a ``latency_callback``."""

LatencyCallback = Callable[[str, float, FlowEvent], None]
"""Called as ``callback(event_type, latency_ms, event)`` for ``node_success`` and ``node_error``."""


class _Done:
    """An awaitable that is already finished: what a sync listener hands to an ``await``."""

    __slots__ = ()

    def __await__(self) -> Generator[None]:
        yield from ()


_DONE = _Done()


def failure_level(value: int | str | None) -> int | None:
    """``create(log_failures=...)`` as a level number: an int, a level name, or None (off)."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, str) and value.upper() in logging.getLevelNamesMapping():
        return logging.getLevelNamesMapping()[value.upper()]
    raise ValueError(
        f'log_failures must be a logging level (logging.WARNING, "WARNING") or None to not log '
        f"failures, got {value!r}"
    )


def event_log_fields(event: FlowEvent) -> dict[str, Any]:
    """The default ``extra`` of a logged event: ``event.to_payload()``.

    A key that would clash with a ``LogRecord`` attribute is renamed ``event_<key>``.
    """
    payload = event.to_payload()
    if _RECORD_ATTRS.isdisjoint(payload):
        return payload
    return {(f"event_{k}" if k in _RECORD_ATTRS else k): v for k, v in payload.items()}


class FlowEventLogger:
    """Logs every ``FlowEvent`` it is given (see :func:`log_flow_events`).

    Calling it logs at once and returns an awaitable that is already done, so the same object is
    a sync event hook (the return value is ignored) and an async middleware (it is awaited).
    """

    __slots__ = (
        "error_level",
        "events",
        "fields",
        "latency_callback",
        "level",
        "logger",
        "start_level",
        "success_level",
    )

    def __init__(
        self,
        logger: logging.Logger,
        *,
        level: int,
        start_level: int,
        success_level: int,
        error_level: int,
        events: frozenset[FlowEventType] | None,
        fields: Callable[[FlowEvent], Mapping[str, Any]],
        latency_callback: LatencyCallback | None,
    ) -> None:
        self.logger: logging.Logger = logger
        """Where records go."""
        self.level: int = level
        """Level of events other than start, success and errors."""
        self.start_level: int = start_level
        """Level of ``node_start``."""
        self.success_level: int = success_level
        """Level of ``node_success``."""
        self.error_level: int = error_level
        """Level of ``node_error``, ``node_timeout`` and ``node_failed``."""
        self.events: frozenset[FlowEventType] | None = events
        """The event types logged (None: all)."""
        self.fields: Callable[[FlowEvent], Mapping[str, Any]] = fields
        """Builds the record's ``extra`` (called only for records that will be emitted)."""
        self.latency_callback: LatencyCallback | None = latency_callback
        """Gets the latency of every ``node_success`` and ``node_error`` event."""

    def __call__(self, event: FlowEvent, /) -> Awaitable[None]:
        """Log ``event`` unless the logger is disabled for its level or its type is filtered out.

        Then hand its latency to ``latency_callback`` (whatever the level and filter); an
        exception from the callback is logged, never raised. Returns an awaitable that is
        already done.
        """
        kind = event.event_type
        if kind in ERROR_EVENTS:
            level = self.error_level
        elif kind == FlowEventType.NODE_START:
            level = self.start_level
        elif kind == FlowEventType.NODE_SUCCESS:
            level = self.success_level
        else:
            level = self.level
        if self.logger.isEnabledFor(level) and (self.events is None or kind in self.events):
            self.logger.log(level, str(kind), extra=self.fields(event))
        callback = self.latency_callback
        if callback is not None and kind in LATENCY_EVENTS and event.latency_ms is not None:
            try:
                callback(str(kind), float(event.latency_ms), event)
            except Exception:
                self.logger.exception(
                    "log_flow_events_latency_callback_error",
                    extra={
                        "event": "log_flow_events_latency_callback_error",
                        "node_name": event.node_name,
                        "node_id": event.node_id,
                        "trace_id": event.trace_id,
                    },
                )
        return _DONE

    def __repr__(self) -> str:
        return f"FlowEventLogger(logger={self.logger.name!r}, level={self.level})"


def log_flow_events(
    logger: logging.Logger | str | None = None,
    *,
    level: int = logging.INFO,
    start_level: int | None = None,
    success_level: int | None = None,
    error_level: int = logging.ERROR,
    events: Iterable[FlowEventType | str] | None = None,
    fields: Callable[[FlowEvent], Mapping[str, Any]] = event_log_fields,
    latency_callback: LatencyCallback | None = None,
) -> FlowEventLogger:
    """A listener that logs each flow event as one structured record.

    Pass it either way: ``create(..., middlewares=[log_flow_events()])`` (or
    ``flow.add_middleware``) logs from the background event buffer, off the hot path;
    ``create(..., on_event=log_flow_events())`` (or ``flow.add_event_hook``) logs inline.

    The record's message is the event type (``"node_success"``); its ``extra`` holds the
    event's fields (``event``, ``node_name``, ``trace_id``, ``latency_ms``, ``q_depth_in`` …
    and the event's own ``extra``), which :class:`JsonFormatter`, :class:`StructuredFormatter`
    and :class:`ExtraFormatter` write out.

    Args:
        logger: A logger or logger name (default ``"penguiflow.events"``).
        level: Level of the events that are not start, success or errors.
        start_level: Level of ``node_start`` events (default: ``level``).
        success_level: Level of ``node_success`` events (default: ``level``).
        error_level: Level of ``node_error``, ``node_timeout`` and ``node_failed`` events.
        events: Log only these event types (default: all).
        fields: Builds a record's ``extra`` from the event; called only when the record will be
            emitted.
        latency_callback: Called as ``callback(event_type, latency_ms, event)`` for every
            ``node_success`` and ``node_error`` event (say, to feed a histogram), whatever
            the levels and ``events``. An exception from it is logged on ``logger`` as
            ``"log_flow_events_latency_callback_error"`` with its traceback, never raised.

    Raises:
        ValueError: ``events`` names an unknown event type.
    """
    if logger is None or isinstance(logger, str):
        logger = logging.getLogger(logger or "penguiflow.events")
    selected: frozenset[FlowEventType] | None = None
    if events is not None:
        try:
            selected = frozenset(FlowEventType(e) for e in events)
        except ValueError as exc:
            known = ", ".join(t.value for t in FlowEventType)
            raise ValueError(f"{exc}; event types are: {known}") from None
    return FlowEventLogger(
        logger,
        level=level,
        start_level=level if start_level is None else start_level,
        success_level=level if success_level is None else success_level,
        error_level=error_level,
        events=selected,
        fields=fields,
        latency_callback=latency_callback,
    )
