"""Structured logging of flow events: a cheap sync hook, and a one-JSON-object-per-line formatter.

``log_flow_events()`` returns an event hook (for ``create(on_event=...)`` or
``flow.add_event_hook``) that logs each ``FlowEvent`` with its fields in the record's ``extra``.
It asks ``logger.isEnabledFor`` before it builds anything, so a silenced logger costs one cached
lookup per event. ``JsonFormatter`` turns those records into JSON lines; ``configure_json_logging``
wires both up in one call.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import IO, Any, cast

from ._events import FlowEvent, FlowEventType

__all__ = [
    "FlowEventLogger",
    "JsonFormatter",
    "configure_json_logging",
    "event_log_fields",
    "log_flow_events",
]

ERROR_EVENTS: frozenset[FlowEventType] = frozenset(
    {FlowEventType.NODE_ERROR, FlowEventType.NODE_FAILED, FlowEventType.NODE_TIMEOUT}
)
"""Event types logged at ``error_level``."""

# Attributes every LogRecord has; an ``extra`` key equal to one of them would make logging raise.
_RECORD_ATTRS: frozenset[str] = frozenset(
    [*vars(logging.LogRecord("", 0, "", 0, "", None, None)), "message", "asctime"]
)

_MESSAGE = "%s node=%s trace=%s"
_MESSAGE_LATENCY = "%s node=%s trace=%s latency_ms=%.3f"


def event_log_fields(event: FlowEvent) -> dict[str, Any]:
    """The default ``extra`` of a logged event: ``event.to_payload()``.

    A key that would clash with a ``LogRecord`` attribute is renamed ``event_<key>``.
    """
    payload = event.to_payload()
    if _RECORD_ATTRS.isdisjoint(payload):
        return payload
    return {(f"event_{k}" if k in _RECORD_ATTRS else k): v for k, v in payload.items()}


class FlowEventLogger:
    """A sync event hook that logs every ``FlowEvent`` it is given (see :func:`log_flow_events`)."""

    __slots__ = ("error_level", "events", "fields", "level", "logger")

    def __init__(
        self,
        logger: logging.Logger,
        *,
        level: int,
        error_level: int,
        events: frozenset[FlowEventType] | None,
        fields: Callable[[FlowEvent], Mapping[str, Any]],
    ) -> None:
        self.logger: logging.Logger = logger
        """Where records go."""
        self.level: int = level
        """Level of ordinary events."""
        self.error_level: int = error_level
        """Level of ``node_error``, ``node_timeout`` and ``node_failed``."""
        self.events: frozenset[FlowEventType] | None = events
        """The event types logged (None: all)."""
        self.fields: Callable[[FlowEvent], Mapping[str, Any]] = fields
        """Builds the record's ``extra`` (called only for records that will be emitted)."""

    def __call__(self, event: FlowEvent) -> None:
        """Log ``event`` unless the logger is disabled for its level or its type is filtered out."""
        kind = event.event_type
        level = self.error_level if kind in ERROR_EVENTS else self.level
        if not self.logger.isEnabledFor(level):
            return
        if self.events is not None and kind not in self.events:
            return
        node, trace = event.node_name or "-", event.trace_id or "-"
        extra = self.fields(event)
        if event.latency_ms is None:
            self.logger.log(level, _MESSAGE, kind.value, node, trace, extra=extra)
        else:
            self.logger.log(
                level, _MESSAGE_LATENCY, kind.value, node, trace, event.latency_ms, extra=extra
            )

    def __repr__(self) -> str:
        return f"FlowEventLogger(logger={self.logger.name!r}, level={self.level})"


def log_flow_events(
    logger: logging.Logger | str | None = None,
    *,
    level: int = logging.INFO,
    error_level: int = logging.ERROR,
    events: Iterable[FlowEventType | str] | None = None,
    fields: Callable[[FlowEvent], Mapping[str, Any]] = event_log_fields,
) -> FlowEventLogger:
    """An event hook that logs each flow event as one structured record.

    Use it as ``create(..., on_event=log_flow_events())`` or ``flow.add_event_hook(...)``. The
    record's message reads ``"node_success node=parse trace=ab12… latency_ms=1.234"``; its
    ``extra`` holds the event's fields (``event``, ``node_name``, ``trace_id``, ``latency_ms``,
    ``q_depth_in`` … and the event's own ``extra``), which :class:`JsonFormatter` writes out.

    Args:
        logger: A logger or logger name (default ``"penguiflow.events"``).
        level: Level of ordinary events.
        error_level: Level of ``node_error``, ``node_timeout`` and ``node_failed`` events.
        events: Log only these event types (default: all).
        fields: Builds a record's ``extra`` from the event; called only when the record will be
            emitted.

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
        logger, level=level, error_level=error_level, events=selected, fields=fields
    )


class JsonFormatter(logging.Formatter):
    """Formats each record as one JSON object on one line.

    Keys: ``timestamp`` (ISO 8601, UTC), ``level``, ``logger``, ``message``, then every field the
    record got through ``extra`` (an ``extra`` key equal to one of those four gets a trailing
    ``_``), then ``exc_info``/``stack_info`` when present. Values JSON cannot encode are written as
    their ``repr`` (mappings become objects, sets and tuples arrays), so a record never fails to
    format.
    """

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as a JSON line (without the newline)."""
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS:
                entry[f"{key}_" if key in entry else key] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        try:
            return json.dumps(entry, default=_to_json, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError):  # non-string keys, NaN, cycles...
            return json.dumps(_json_safe(entry, 0), ensure_ascii=False)


def _to_json(value: object) -> object:
    if isinstance(value, Mapping):
        return dict(cast(Mapping[object, object], value))
    if isinstance(value, set | frozenset | tuple):
        return list(cast(Iterable[object], value))
    return repr(value)


def _json_safe(value: object, depth: int) -> object:
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if depth > 20:
        return repr(value)
    if isinstance(value, Mapping):
        items = cast(Mapping[object, object], value).items()
        return {(k if isinstance(k, str) else repr(k)): _json_safe(v, depth + 1) for k, v in items}
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_safe(v, depth + 1) for v in cast(Iterable[object], value)]
    return repr(value)


class _JsonHandler(logging.StreamHandler[IO[str]]):
    """The handler ``configure_json_logging`` installs (so a second call replaces it)."""


def configure_json_logging(
    logger: logging.Logger | str = "penguiflow",
    level: int = logging.INFO,
    *,
    stream: IO[str] | None = None,
) -> logging.Logger:
    """Send ``logger``'s records to ``stream`` (default stderr) as JSON lines, at ``level``.

    Calling it again replaces the handler it installed before instead of adding a second one.
    Other handlers, and ``propagate``, are left as they are. Returns the logger.
    """
    if isinstance(logger, str):
        logger = logging.getLogger(logger)
    for handler in list(logger.handlers):
        if isinstance(handler, _JsonHandler):
            logger.removeHandler(handler)
    handler = _JsonHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(level)
    return logger
