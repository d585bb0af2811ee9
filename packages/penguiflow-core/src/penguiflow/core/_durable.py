"""Durable state: ``Scope``, ``Record``, ``LogEntry`` and the ``DurableStore`` protocol.

Also the input rules every backend shares (names, values, TTLs, retention). Backends live in
their own modules, loaded on first use (``InMemoryDurableStore``, ``SQLiteDurableStore``);
``import penguiflow.core`` loads none of them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable

__all__ = [
    "DEFAULT_MAX_VALUE_BYTES",
    "DurableStore",
    "LogEntry",
    "Record",
    "Scope",
    "check_append",
    "check_key",
    "check_limit",
    "check_namespace",
    "check_options",
    "check_put",
    "check_record",
    "check_scan",
    "check_scope",
    "check_stream",
    "check_trim",
    "check_ttl",
    "check_value",
    "retention_ttl",
]

DEFAULT_MAX_VALUE_BYTES = 16 * 1024 * 1024
"""Largest value a store accepts by default (16 MiB)."""

_NAMESPACE = re.compile(r"[A-Za-z0-9_.:/-]{1,64}")


@dataclass(frozen=True, slots=True)
class Scope:
    """Who owns a record or a stream: a tenant, optionally one user and one session of it.

    As a filter, a scope selects another when the tenants are equal and every field it sets is
    equal too (``Scope("acme")`` selects everything of tenant acme).
    """

    tenant: str
    """The tenant (non-empty)."""
    user: str | None = None
    """The user within the tenant, if any."""
    session: str | None = None
    """The session of that user, if any."""

    def __post_init__(self) -> None:
        if not isinstance(self.tenant, str) or not self.tenant:  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ValueError(f"Scope.tenant must be a non-empty string, got {self.tenant!r}")
        for name in ("user", "session"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"Scope.{name} must be a non-empty string or None, got {value!r}")

    @classmethod
    def of(cls, message: Any) -> Scope:
        """The scope of a ``Message``: its headers' tenant, user and session."""
        headers = message.headers
        return cls(
            headers.tenant, getattr(headers, "user", None), getattr(headers, "session", None)
        )

    def selects(self, other: Scope) -> bool:
        """Whether ``other`` is within this scope (as a filter)."""
        return (
            self.tenant == other.tenant
            and (self.user is None or self.user == other.user)
            and (self.session is None or self.session == other.session)
        )


@dataclass(frozen=True, slots=True)
class Record:
    """One stored value under ``namespace`` / ``key``."""

    namespace: str
    """Which family of records (``pf.remote``, ``planner.pause`` …)."""
    key: str
    """The record's key within its namespace."""
    value: bytes
    """What was stored (callers encode and decode)."""
    scope: Scope
    """Who owns it."""
    version: int
    """1 when created, +1 for every put."""
    expires_at: float | None
    """When it stops being readable (store clock seconds), or None."""
    updated_at: float
    """When it was last written (store clock seconds)."""


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One entry of an append-only stream."""

    stream: str
    """The stream it belongs to."""
    seq: int
    """Its position: 1, 2, 3 … with no gaps."""
    value: bytes
    """What was appended."""
    ts: float
    """When it was appended (store clock seconds)."""
    idempotency_key: str | None
    """The key that made the append idempotent, if any."""


@runtime_checkable
class DurableStore(Protocol):
    """Records with versions, TTL and atomic take; gap-free append-only logs; erase by scope.

    Every operation is all-or-nothing: a caller cancelled mid-call may find it applied, never
    half-applied. A store is an async context manager (leaving it closes the store).
    """

    async def put(
        self,
        namespace: str,
        key: str,
        value: bytes,
        *,
        scope: Scope,
        ttl_s: float | None = None,
        if_version: int | None = None,
    ) -> int:
        """Store ``value``; returns the new version (``if_version``: 0 create only, n replace n)."""
        ...

    async def get(self, namespace: str, key: str, *, scope: Scope | None = None) -> Record | None:
        """The record, or None when missing, expired or not selected by ``scope``."""
        ...

    async def take(self, namespace: str, key: str, *, scope: Scope | None = None) -> Record | None:
        """Get and delete atomically: of concurrent takes exactly one gets the record."""
        ...

    async def delete(self, namespace: str, key: str, *, scope: Scope | None = None) -> bool:
        """Delete the record; True when something was deleted."""
        ...

    async def scan(
        self,
        namespace: str,
        prefix: str = "",
        *,
        after: str | None = None,
        limit: int = 100,
        scope: Scope | None = None,
    ) -> list[Record]:
        """Records whose key starts with ``prefix``, ascending by UTF-8 bytes, after ``after``."""
        ...

    async def append(
        self,
        stream: str,
        value: bytes,
        *,
        scope: Scope,
        idempotency_key: str | None = None,
        ttl_s: float | None = None,
    ) -> int:
        """Append to ``stream``; returns its seq (a repeated idempotency key: the first one's)."""
        ...

    async def read(
        self, stream: str, after: int = 0, *, limit: int = 1000, scope: Scope | None = None
    ) -> list[LogEntry]:
        """Entries with ``seq > after``, ascending."""
        ...

    async def trim(self, stream: str, *, before: int) -> int:
        """Drop entries with ``seq < before``; returns how many were removed."""
        ...

    async def erase(
        self, tenant: str, *, user: str | None = None, session: str | None = None
    ) -> int:
        """Remove every record and stream the filter selects; returns records + streams removed."""
        ...

    async def purge_expired(self) -> int:
        """Physically remove expired records and streams; returns how many."""
        ...

    async def aclose(self) -> None:
        """Close the store (idempotent); later calls raise ``StoreClosed``."""
        ...

    async def __aenter__(self) -> Self:
        """The store itself."""
        ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the store."""
        ...


# ------------------------------------------------------------------ the rules every backend checks
def check_namespace(namespace: str) -> None:
    """``namespace``: 1-64 characters of ``[A-Za-z0-9_.:/-]``."""
    if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise ValueError(
            f"namespace must be 1-64 characters of [A-Za-z0-9_.:/-], got {namespace!r}"
        )


def check_key(key: str) -> None:
    """``key``: 1-512 UTF-8 bytes, no NUL."""
    if (
        not isinstance(key, str)  # pyright: ignore[reportUnnecessaryIsInstance]
        or not key
        or "\x00" in key
        or not 0 < _utf8_len(key) <= 512
    ):
        raise ValueError(f"key must be 1-512 UTF-8 bytes without NUL, got {key!r:.80}")


def check_stream(stream: str) -> None:
    """``stream``: 1-256 characters, no NUL."""
    if (
        not isinstance(stream, str)  # pyright: ignore[reportUnnecessaryIsInstance]
        or not stream
        or "\x00" in stream
        or len(stream) > 256
        or _utf8_len(stream) < 0
    ):
        raise ValueError(f"stream must be 1-256 characters without NUL, got {stream!r:.80}")


def _utf8_len(text: str) -> int:
    # A lone surrogate has no UTF-8 form: no backend could store it (-1 fails every check).
    try:
        return len(text.encode())
    except UnicodeEncodeError:
        return -1


def check_value(value: bytes, max_value_bytes: int) -> None:
    """``value``: bytes, at most ``max_value_bytes``."""
    if not isinstance(value, bytes | bytearray | memoryview):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError("value must be bytes; encode it, e.g. model.model_dump_json().encode()")
    if len(value) > max_value_bytes:
        raise ValueError(
            f"value is {len(value)} bytes, over max_value_bytes={max_value_bytes}; store less, "
            "or open the store with a larger max_value_bytes"
        )


def check_ttl(ttl_s: float | None) -> None:
    """``ttl_s``: None or a positive, finite number of seconds."""
    if ttl_s is not None and (not math.isfinite(ttl_s) or ttl_s <= 0):
        raise ValueError(f"ttl_s must be > 0 seconds (or None for no expiry), got {ttl_s}")


def check_limit(limit: int) -> None:
    """``limit``: at least 1."""
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")


def check_scope(scope: Scope) -> None:
    """``scope``: a ``Scope``."""
    if not isinstance(scope, Scope):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError(f"scope must be a Scope(tenant, user=None, session=None), got {scope!r}")


# One check per operation, shared by every backend: the same input gets the same error anywhere.
def check_put(
    namespace: str,
    key: str,
    value: bytes,
    scope: Scope,
    ttl_s: float | None,
    if_version: int | None,
    max_value_bytes: int,
) -> None:
    """The arguments of ``put``."""
    check_namespace(namespace)
    check_key(key)
    check_value(value, max_value_bytes)
    check_ttl(ttl_s)
    check_scope(scope)
    if if_version is not None and (isinstance(if_version, bool) or if_version < 0):
        raise ValueError(f"if_version must be None, 0 (create only) or n >= 1, got {if_version}")


def check_record(namespace: str, key: str) -> None:
    """The arguments of ``get``, ``take`` and ``delete``."""
    check_namespace(namespace)
    check_key(key)


def check_scan(namespace: str, prefix: str, after: str | None, limit: int) -> None:
    """The arguments of ``scan``."""
    check_namespace(namespace)
    if not isinstance(prefix, str) or "\x00" in prefix:  # pyright: ignore[reportUnnecessaryIsInstance]
        raise ValueError(f"prefix must be a string without NUL, got {prefix!r:.80}")
    if after is not None and not isinstance(after, str):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise ValueError(f"after must be a key (str) or None, got {after!r:.80}")
    check_limit(limit)


def check_append(
    stream: str,
    value: bytes,
    scope: Scope,
    idempotency_key: str | None,
    ttl_s: float | None,
    max_value_bytes: int,
) -> None:
    """The arguments of ``append``."""
    check_stream(stream)
    check_value(value, max_value_bytes)
    check_ttl(ttl_s)
    check_scope(scope)
    if idempotency_key is not None and not isinstance(idempotency_key, str):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise ValueError(f"idempotency_key must be a string or None, got {idempotency_key!r}")


def check_trim(stream: str, before: int) -> None:
    """The arguments of ``trim``."""
    check_stream(stream)
    if isinstance(before, bool) or before < 1:
        raise ValueError(f"before must be a seq >= 1, got {before!r}")


def check_options(max_value_bytes: int, retention: Mapping[str, float] | None) -> dict[str, float]:
    """A backend's common options; returns the retention table as a plain dict."""
    if isinstance(max_value_bytes, bool) or max_value_bytes < 1:
        raise ValueError(f"max_value_bytes must be >= 1, got {max_value_bytes!r}")
    table = dict(retention or {})
    for prefix, ttl in table.items():
        if not isinstance(prefix, str):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(f"retention keys must be name prefixes (str), got {prefix!r}")
        if not isinstance(ttl, int | float) or not math.isfinite(ttl) or ttl <= 0:  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ValueError(f"retention[{prefix!r}] must be > 0 seconds, got {ttl}")
    return table


def retention_ttl(retention: Mapping[str, float] | None, name: str) -> float | None:
    """The default TTL for ``name`` (a namespace or stream): the longest matching prefix wins."""
    if not retention:
        return None
    best: tuple[int, float] | None = None
    for prefix, ttl in retention.items():
        if name.startswith(prefix) and (best is None or len(prefix) > best[0]):
            best = (len(prefix), ttl)
    return None if best is None else best[1]
