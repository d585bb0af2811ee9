"""Payloads to A2A parts and back: the one conversion the server and the transport share."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, cast

from a2a.helpers.proto_helpers import get_data_parts, new_data_part, new_raw_part, new_text_part
from a2a.types import Part
from pydantic_core import to_jsonable_python

from penguiflow.core import FinalAnswer

__all__ = ["from_parts", "json_safe", "to_parts"]


def json_safe(value: Any) -> Any:
    """``value`` as JSON data (models dumped, dataclasses as dicts, unknown objects as text)."""
    return to_jsonable_python(value, fallback=str)


def to_parts(value: Any) -> list[Part]:
    """One part for ``value``: text for ``str``/``FinalAnswer``, raw for bytes, else data.

    A non-empty list of ``Part``s is sent as it is (an A2A source's text and data parts).
    """
    if isinstance(value, list) and value and all(isinstance(p, Part) for p in value):  # pyright: ignore[reportUnknownVariableType]
        return list(cast(list[Part], value))
    if isinstance(value, str):
        return [new_text_part(value)]
    if isinstance(value, FinalAnswer):
        return [new_text_part(value.text)]
    if isinstance(value, bytes | bytearray):
        return [new_raw_part(bytes(value))]
    return [new_data_part(json_safe(value))]


def _integral(value: Any) -> Any:
    # protobuf's Value stores every number as a double: 3 arrives as 3.0
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_integral(item) for item in cast(list[Any], value)]
    if isinstance(value, dict):
        return {key: _integral(item) for key, item in cast(dict[str, Any], value).items()}
    return value


def _part_value(part: Part) -> Any:
    if part.HasField("text"):
        return part.text
    if part.HasField("raw"):
        return part.raw
    if part.HasField("data"):
        return _integral(get_data_parts([part])[0])
    if part.HasField("url"):
        return part.url
    return None


def from_parts(parts: Iterable[Part]) -> Any:
    r"""The value carried by ``parts``.

    Text parts only → their texts joined with ``"\n"``; a single part → its value (a data
    part's JSON, a raw part's bytes); anything else → the list of part values. Whole numbers
    that protobuf turned into floats come back as ``int``.
    """
    items = list(parts)
    if items and all(part.HasField("text") for part in items):
        return "\n".join(part.text for part in items)
    if len(items) == 1:
        return _part_value(items[0])
    if not items:
        return None
    return [_part_value(part) for part in items]


def metadata_of(meta: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-safe copy of ``meta`` for a message's ``metadata`` struct."""
    safe = json_safe(dict(meta))
    return cast(dict[str, Any], safe) if isinstance(safe, dict) else {}
