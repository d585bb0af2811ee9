"""Structured logging of flow events, and formatters that show a record's ``extra`` fields.

``log_flow_events()`` returns a listener that logs each ``FlowEvent`` with its fields in the
record's ``extra``. It works as a sync hook (``create(on_event=...)``, ``flow.add_event_hook``)
and as an async middleware (``create(middlewares=[...])``, ``flow.add_middleware``). It asks
``logger.isEnabledFor`` before it builds anything, so a silenced logger costs one cached lookup
per event.

Formatters: ``JsonFormatter`` writes one flat JSON object a line (``configure_json_logging``
wires it up); ``StructuredFormatter`` writes JSON with the fields under ``"extra"`` and
``ExtraFormatter`` appends them to a plain line as ``[key=value, ...]`` (``configure_logging``
picks one of them).
"""

from __future__ import annotations

import json
import logging
import math
import sys
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping
from datetime import UTC, datetime
from typing import IO, Any, cast

from ._events import FlowEvent, FlowEventType

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

# Attributes every LogRecord has; an ``extra`` key equal to one of them would make logging raise.
_RECORD_ATTRS: frozenset[str] = frozenset(
    [*vars(logging.LogRecord("", 0, "", 0, "", None, None)), "message", "asctime"]
)


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


def _to_json(value: object, text: Callable[[object], str] = repr) -> object:
    if isinstance(value, Mapping):
        return dict(cast(Mapping[object, object], value))
    if isinstance(value, set | frozenset | tuple):
        return list(cast(Iterable[object], value))
    return text(value)


def _to_json_str(value: object) -> object:
    return _to_json(value, str)


def _json_safe(value: object, depth: int, text: Callable[[object], str] = repr) -> object:
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if depth > 20:
        return text(value)
    if isinstance(value, Mapping):
        items = cast(Mapping[object, object], value).items()
        return {
            (k if isinstance(k, str) else repr(k)): _json_safe(v, depth + 1, text) for k, v in items
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_safe(v, depth + 1, text) for v in cast(Iterable[object], value)]
    return text(value)


def _record_extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _RECORD_ATTRS}


class StructuredFormatter(logging.Formatter):
    """Formats each record as one JSON object, the ``extra`` fields nested under ``"extra"``.

    Keys: ``level``, ``logger``, ``message``, ``timestamp`` (ISO 8601, UTC; unless
    ``include_timestamp=False``), ``extra`` (every field the record got through ``extra``, when
    there is any) and ``exception`` (the formatted traceback, when there is one). Values JSON
    cannot encode are written as their ``str`` (mappings become objects, sets and tuples
    arrays), so a record never fails to format. For flat JSON lines, see :class:`JsonFormatter`.

    Args:
        include_timestamp: Write the ``timestamp`` key.
        indent: Indent the JSON by this many spaces (default: one line).
    """

    STANDARD_FIELDS: frozenset[str] = _RECORD_ATTRS
    """The ``LogRecord`` attributes that are not ``extra`` fields."""

    def __init__(self, include_timestamp: bool = True, indent: int | None = None) -> None:
        """Build the formatter (see the class docstring for the arguments)."""
        super().__init__()
        self.include_timestamp: bool = include_timestamp
        """Whether entries carry a ``timestamp``."""
        self.indent: int | None = indent
        """JSON indentation (None: one line)."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as JSON."""
        entry: dict[str, Any] = {
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.include_timestamp:
            entry["timestamp"] = datetime.fromtimestamp(record.created, tz=UTC).isoformat()
        extra = _record_extras(record)
        if extra:
            entry["extra"] = extra
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        try:
            return json.dumps(
                entry,
                default=_to_json_str,
                ensure_ascii=False,
                allow_nan=False,
                indent=self.indent,
            )
        except (TypeError, ValueError):  # non-string keys, NaN, cycles...
            return json.dumps(_json_safe(entry, 0, str), ensure_ascii=False, indent=self.indent)


_EXTRA_TEXT_MAX = 100


class ExtraFormatter(logging.Formatter):
    """A plain ``logging.Formatter`` line followed by the record's ``extra`` fields.

    ``INFO:penguiflow.events:node_success [event="node_success", node_name="parse", ...]``:
    strings are quoted (and cut after 100 characters, ending ``...``), other values written as
    ``str``. The fields go on the first line, before any traceback. A record without ``extra``
    fields is formatted as ``logging.Formatter`` would.
    """

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        """The formatted line, with ``[key=value, ...]`` appended when there are fields."""
        line = super().formatMessage(record)
        extras = _record_extras(record)
        if not extras:
            return line
        parts: list[str] = []
        for key, value in extras.items():
            if isinstance(value, str):
                if len(value) > _EXTRA_TEXT_MAX:
                    value = value[:_EXTRA_TEXT_MAX] + "..."
                parts.append(f"{key}={json.dumps(value, ensure_ascii=False)}")
            else:
                parts.append(f"{key}={value}")
        return f"{line} [{', '.join(parts)}]"


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


_PLAIN_FORMAT = "%(levelname)s:%(name)s:%(message)s"


def configure_logging(
    level: int | str = logging.INFO,
    *,
    structured: bool = False,
    include_extras: bool = True,
    logger_name: str = "penguiflow",
) -> logging.Logger:
    """Give the ``logger_name`` logger one stderr handler, and stop it propagating.

    Every handler the logger had is removed first, and ``propagate`` is set to False so that no
    record is written twice (by this handler and the root logger's); use
    :func:`configure_json_logging` to add a handler and leave the others alone.

    Args:
        level: Level of the logger and the handler (``logging.DEBUG`` or ``"DEBUG"``).
        structured: Write JSON (:class:`StructuredFormatter`).
        include_extras: Without ``structured``, append the ``extra`` fields to each line
            (:class:`ExtraFormatter`); else lines read ``LEVEL:logger:message``.
        logger_name: The logger to configure.

    Returns:
        The configured logger.
    """
    logger = logging.getLogger(logger_name)
    logger.setLevel(level)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(level)
    if structured:
        handler.setFormatter(StructuredFormatter())
    elif include_extras:
        handler.setFormatter(ExtraFormatter(_PLAIN_FORMAT))
    else:
        handler.setFormatter(logging.Formatter(_PLAIN_FORMAT))
    logger.addHandler(handler)
    logger.propagate = False
    return logger
