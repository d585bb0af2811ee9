"""The wire format of ``RedisStreamsBus``: stream entry fields, replies, server checks."""

from __future__ import annotations

import json
from typing import Any, cast

from ._errors import StoreError
from ._store_redis import check_redis_version
from ._work_types import OutputKind, WorkItem

__all__ = [
    "check_version",
    "entry_fields",
    "import_redis",
    "output_kind",
    "text",
    "to_names",
    "work_item",
]

_INSTALL = 'RedisStreamsBus needs redis: pip install "penguiflow-core[redis]"'
_KINDS: tuple[OutputKind, ...] = ("result", "chunk", "end")


def import_redis() -> tuple[Any, Any]:
    """``redis.asyncio`` and ``redis.exceptions``; ``ImportError`` saying what to install."""
    try:
        import redis.asyncio as redis_asyncio
        import redis.exceptions as redis_exceptions
    except ImportError as exc:
        raise ImportError(_INSTALL) from exc
    return redis_asyncio, redis_exceptions


def check_version(found: str) -> None:
    """``StoreError`` unless the server version ``found`` is 6.2 or later."""
    try:
        check_redis_version(found)
    except StoreError:
        raise StoreError(
            f"RedisStreamsBus needs Redis >= 6.2 (XAUTOCLAIM), but the server is Redis {found}: "
            "upgrade the server"
        ) from None


def text(value: object) -> str:
    """A reply as ``str`` (bytes decoded)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def entry_fields(flat: Any) -> dict[str, bytes]:
    """A stream entry's fields (a flat ``[name, value, ...]`` list from Lua, or a dict)."""
    pairs: list[tuple[Any, Any]]
    if isinstance(flat, dict):
        pairs = list(cast(dict[Any, Any], flat).items())
    else:
        items = cast(list[Any], flat)
        pairs = [(items[i], items[i + 1]) for i in range(0, len(items), 2)]
    return {text(k): bytes(v) for k, v in pairs}


def work_item(fields: dict[str, bytes]) -> WorkItem:
    """The ``WorkItem`` a work entry's fields hold."""
    to = fields.get("to", b"")
    targets = tuple(to_names(to)) if to else None
    return WorkItem(trace_id=fields["trace"].decode(), body=fields["body"], to=targets)


def output_kind(kind: str) -> OutputKind:
    """An output entry's ``kind`` field (unknown kinds read as results)."""
    for known in _KINDS:
        if kind == known:
            return known
    return "result"


def to_names(raw: bytes) -> list[str]:
    """The ingress targets a work entry's ``to`` field holds (a JSON list)."""
    return [str(name) for name in json.loads(raw)]
