"""``InMemoryDurableStore``: the ``DurableStore`` protocol in dicts, for tests and one process.

Every operation runs without suspending between its checks and its writes, so under one event
loop it is atomic: of concurrent ``take`` calls exactly one gets the record, concurrent appends
get gap-free seqs. Each operation yields to the loop once *before* it starts (a cancelled caller
finds nothing applied). The store is not shared between threads or event loops.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Self

from anyio.lowlevel import checkpoint

from ._durable import (
    DEFAULT_MAX_VALUE_BYTES,
    LogEntry,
    Record,
    Scope,
    check_append,
    check_limit,
    check_options,
    check_put,
    check_record,
    check_scan,
    check_stream,
    check_trim,
    retention_ttl,
)
from ._errors import ScopeMismatch, StoreClosed, VersionConflict
from ._store_history import StoreBase

__all__ = ["InMemoryDurableStore"]


@dataclass(slots=True)
class _Namespace:
    records: dict[str, Record] = field(default_factory=lambda: {})
    keys: list[str] = field(default_factory=lambda: [])
    """``records``' keys, sorted (code point order is UTF-8 byte order)."""


@dataclass(slots=True)
class _Stream:
    scope: Scope
    expires_at: float | None
    entries: list[LogEntry] = field(default_factory=lambda: [])
    last_seq: int = 0
    seq_of_key: dict[str, int] = field(default_factory=lambda: {})


def _live(expires_at: float | None, now: float) -> bool:
    return expires_at is None or now < expires_at


class InMemoryDurableStore(StoreBase):
    """A ``DurableStore`` (and core ``StateStore``) held in memory.

    For tests, examples and single-process services: nothing survives the process. Time comes
    from ``clock`` (pass ``ManualClock`` from ``penguiflow.testkit.stores`` to drive TTLs).

    Args:
        clock: Returns the current time in seconds (default ``time.time``).
        retention: Default TTLs by namespace or stream prefix (longest prefix wins), e.g.
            ``{"pf.events/": 7 * 86400}``; applied when a put, or a stream's first append,
            passes no ``ttl_s``.
        max_value_bytes: The largest value accepted (default 16 MiB).
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        retention: Mapping[str, float] | None = None,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
    ) -> None:
        if not callable(clock):
            raise TypeError(f"clock must be a callable returning seconds, got {clock!r}")
        self._retention = check_options(max_value_bytes, retention)
        self._clock = clock
        self._max_value_bytes = max_value_bytes
        self._namespaces: dict[str, _Namespace] = {}
        self._streams: dict[str, _Stream] = {}
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._namespaces)} namespaces"
        return f"<InMemoryDurableStore {state}, {len(self._streams)} streams>"

    # ------------------------------------------------------------------ records
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
        """Store ``value``; returns the new version (1 on create, +1 per put).

        ``if_version=0`` creates only, ``n`` replaces only version ``n`` (else
        ``VersionConflict``). Each put sets the TTL anew: ``ttl_s``, else the retention default,
        else none. A record of another tenant raises ``ScopeMismatch``.
        """
        check_put(namespace, key, value, scope, ttl_s, if_version, self._max_value_bytes)
        await self._enter()
        now = self._clock()
        space = self._namespaces.get(namespace)
        old = space.records.get(key) if space is not None else None
        if old is not None and not _live(old.expires_at, now):
            old = None  # a put over an expired record is a create
        if old is not None and old.scope.tenant != scope.tenant:
            raise ScopeMismatch(old.scope, scope)
        actual = 0 if old is None else old.version
        if if_version is not None and if_version != actual:
            raise VersionConflict(namespace, key, if_version, actual)
        if ttl_s is None:
            ttl_s = self._default_ttl(namespace, None)
        if space is None:
            space = self._namespaces[namespace] = _Namespace()
        if key not in space.records:
            bisect.insort(space.keys, key)
        space.records[key] = Record(
            namespace=namespace,
            key=key,
            value=bytes(value),
            scope=scope,
            version=actual + 1,
            expires_at=None if ttl_s is None else now + ttl_s,
            updated_at=now,
        )
        return actual + 1

    async def get(self, namespace: str, key: str, *, scope: Scope | None = None) -> Record | None:
        """The record, or None when missing, expired or not selected by ``scope``."""
        check_record(namespace, key)
        await self._enter()
        return self._visible(namespace, key, scope)

    async def take(self, namespace: str, key: str, *, scope: Scope | None = None) -> Record | None:
        """Get and delete atomically; a record ``scope`` does not select is left in place."""
        check_record(namespace, key)
        await self._enter()
        record = self._visible(namespace, key, scope)
        if record is not None:
            self._remove(namespace, key)
        return record

    async def delete(self, namespace: str, key: str, *, scope: Scope | None = None) -> bool:
        """Delete the record; True when a live record selected by ``scope`` was deleted."""
        check_record(namespace, key)
        await self._enter()
        if self._visible(namespace, key, scope) is None:
            return False
        self._remove(namespace, key)
        return True

    async def scan(
        self,
        namespace: str,
        prefix: str = "",
        *,
        after: str | None = None,
        limit: int = 100,
        scope: Scope | None = None,
    ) -> list[Record]:
        """Live records whose key starts with ``prefix`` (literally), ascending, after ``after``.

        At most ``limit``; fewer than ``limit`` means there are no more.
        """
        check_scan(namespace, prefix, after, limit)
        await self._enter()
        space = self._namespaces.get(namespace)
        if space is None:
            return []
        now = self._clock()
        start = bisect.bisect_left(space.keys, prefix)
        if after is not None:
            start = max(start, bisect.bisect_right(space.keys, after))
        found: list[Record] = []
        for key in space.keys[start:]:
            if not key.startswith(prefix):
                break
            record = space.records[key]
            if _live(record.expires_at, now) and (scope is None or scope.selects(record.scope)):
                found.append(record)
                if len(found) == limit:
                    break
        return found

    # ------------------------------------------------------------------ logs
    async def append(
        self,
        stream: str,
        value: bytes,
        *,
        scope: Scope,
        idempotency_key: str | None = None,
        ttl_s: float | None = None,
    ) -> int:
        """Append ``value``; returns its seq (1, 2, 3 … per stream, no gaps).

        A repeated ``idempotency_key`` returns the first entry's seq and writes nothing. The
        stream's scope is its first append's (another tenant: ``ScopeMismatch``); ``ttl_s`` sets
        the whole stream's expiry to now + ``ttl_s`` (None keeps it, or applies the retention
        default on the first append).
        """
        check_append(stream, value, scope, idempotency_key, ttl_s, self._max_value_bytes)
        await self._enter()
        now = self._clock()
        log = self._live_stream(stream, now)
        if log is None:
            default = retention_ttl(self._retention, stream) if ttl_s is None else None
            log = _Stream(scope=scope, expires_at=None if default is None else now + default)
            self._streams[stream] = log
        elif log.scope.tenant != scope.tenant:
            raise ScopeMismatch(log.scope, scope)
        if idempotency_key is not None:
            seq = log.seq_of_key.get(idempotency_key)
            if seq is not None:
                return seq
            log.seq_of_key[idempotency_key] = log.last_seq + 1
        log.last_seq += 1
        log.entries.append(LogEntry(stream, log.last_seq, bytes(value), now, idempotency_key))
        if ttl_s is not None:
            log.expires_at = now + ttl_s
        return log.last_seq

    async def read(
        self, stream: str, after: int = 0, *, limit: int = 1000, scope: Scope | None = None
    ) -> list[LogEntry]:
        """Entries with ``seq > after``, ascending; ``[]`` for unknown, expired or unselected."""
        check_stream(stream)
        check_limit(limit)
        await self._enter()
        log = self._live_stream(stream, self._clock())
        if log is None or (scope is not None and not scope.selects(log.scope)):
            return []
        entries = log.entries
        # Seqs are contiguous from the first kept entry, so the position is arithmetic.
        start = 0 if not entries else max(0, after + 1 - entries[0].seq)
        return entries[start : start + limit]

    async def trim(self, stream: str, *, before: int) -> int:
        """Drop entries with ``seq < before``; returns how many were removed."""
        check_trim(stream, before)
        await self._enter()
        log = self._live_stream(stream, self._clock())
        if log is None or not log.entries:
            return 0
        count = max(0, min(before - log.entries[0].seq, len(log.entries)))
        del log.entries[:count]
        return count

    # ------------------------------------------------------------------ retention
    async def erase(
        self, tenant: str, *, user: str | None = None, session: str | None = None
    ) -> int:
        """Remove every record and stream the filter selects, in every namespace.

        Returns records + streams removed. Afterwards a put starts at version 1, an append at
        seq 1, and the streams' idempotency keys are forgotten.
        """
        selector = Scope(tenant, user, session)
        await self._enter()
        removed = 0
        for namespace, space in list(self._namespaces.items()):
            doomed = [k for k, r in space.records.items() if selector.selects(r.scope)]
            for key in doomed:
                self._remove(namespace, key)
            removed += len(doomed)
        doomed_streams = [s for s, log in self._streams.items() if selector.selects(log.scope)]
        for stream in doomed_streams:
            del self._streams[stream]
        return removed + len(doomed_streams)

    async def purge_expired(self) -> int:
        """Physically remove expired records and streams; returns how many."""
        await self._enter()
        now = self._clock()
        removed = 0
        for namespace, space in list(self._namespaces.items()):
            doomed = [k for k, r in space.records.items() if not _live(r.expires_at, now)]
            for key in doomed:
                self._remove(namespace, key)
            removed += len(doomed)
        doomed_streams = [s for s, log in self._streams.items() if not _live(log.expires_at, now)]
        for stream in doomed_streams:
            del self._streams[stream]
        return removed + len(doomed_streams)

    # ------------------------------------------------------------------ lifecycle
    async def aclose(self) -> None:
        """Close the store and drop its data (idempotent); later calls raise ``StoreClosed``."""
        self._closed = True
        self._namespaces.clear()
        self._streams.clear()

    async def __aenter__(self) -> Self:
        """The store itself."""
        self._check_open()
        return self

    # ------------------------------------------------------------------ internals
    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed("the InMemoryDurableStore was closed; open a new one")

    async def _enter(self) -> None:
        # One yield before the operation, none inside it: a cancelled caller finds nothing
        # applied, and the operation itself runs atomically on the loop.
        self._check_open()
        await checkpoint()
        self._check_open()

    def _visible(self, namespace: str, key: str, scope: Scope | None) -> Record | None:
        space = self._namespaces.get(namespace)
        record = space.records.get(key) if space is not None else None
        if record is None or not _live(record.expires_at, self._clock()):
            return None
        if scope is not None and not scope.selects(record.scope):
            return None
        return record

    def _live_stream(self, stream: str, now: float) -> _Stream | None:
        # An expired stream is invisible until purged; its next append starts a new stream.
        log = self._streams.get(stream)
        return log if log is not None and _live(log.expires_at, now) else None

    def _remove(self, namespace: str, key: str) -> None:
        space = self._namespaces[namespace]
        del space.records[key]
        del space.keys[bisect.bisect_left(space.keys, key)]
        if not space.records:
            del self._namespaces[namespace]
