"""Log formatters that show a record's ``extra`` fields, and the functions that install them.

``JsonFormatter`` writes one flat JSON object a line (``configure_json_logging`` wires it up);
``StructuredFormatter`` writes JSON with the fields under ``"extra"`` and ``ExtraFormatter``
appends them to a plain line as ``[key=value, ...]`` (``configure_logging`` picks one of them).
Re-exported by ``_logging``.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import IO, Any, cast

__all__ = [
    "ExtraFormatter",
    "JsonFormatter",
    "StructuredFormatter",
    "configure_json_logging",
    "configure_logging",
]

# Attributes every LogRecord has; an ``extra`` key equal to one of them would make logging raise.
RECORD_ATTRS: frozenset[str] = frozenset(
    [*vars(logging.LogRecord("", 0, "", 0, "", None, None)), "message", "asctime"]
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
            if key not in RECORD_ATTRS:
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
    return {k: v for k, v in vars(record).items() if k not in RECORD_ATTRS}


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

    STANDARD_FIELDS: frozenset[str] = RECORD_ATTRS
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
