"""``RedisDurableStore``: a ``DurableStore`` on a Redis server (redis-py asyncio, extra ``redis``).

Layout under ``prefix`` (``P``): a record is hash ``P:r:{ns}|{key}`` (value, tenant, user,
session, version, exp, updated; namespaces hold no ``|``), listed in sorted set ``P:k:{ns}`` (all
scores 0, so ``ZRANGE … BYLEX`` is byte order). A log is stream ``P:l:{name}`` with ids
``seq-0``, its metadata hash ``P:lm:{name}`` (scope, last seq, exp) and its idempotency keys in
hash ``P:li:{name}``. Set ``P:t:{tenant}`` indexes what a tenant owns (``erase``), sorted set
``P:x`` what expires when (``purge_expired``). Every write, and every read that must see one
consistent state, is one Lua script: atomic on the server. ``exp`` (store-clock seconds) is
checked on every read; native expiry, from real time with a margin, is only a backstop.

Scripts run in call order: calls queue, and whoever finds no batch in flight starts a flush,
which sends everything queued as one pipeline on one connection (one round trip for a burst,
like SQLite's group commit; a lone call is one plain ``EVALSHA``), so concurrent callers' writes
reach the server in the order they were made. redis errors become ``StoreUnavailable`` in one
place (``_unavailable``). The clients, that queue and that boundary are the base class,
``RedisClient`` (``_store_redis_client``); this module holds the operations.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from ._durable import (
    DEFAULT_MAX_VALUE_BYTES,
    LogEntry,
    Record,
    Scope,
    check_append,
    check_limit,
    check_put,
    check_record,
    check_scan,
    check_stream,
    check_trim,
)
from ._errors import ScopeMismatch, VersionConflict
from ._store_redis_client import MIN_REDIS_VERSION, RedisClient, check_redis_version
from ._store_redis_client import text as _text

__all__ = ["MIN_REDIS_VERSION", "RedisDurableStore", "check_redis_version"]

_MARGIN_MS = 60_000  # native expiry trails the store clock's: a backstop, never the rule
_PURGE_BATCH = 500


# --------------------------------------------------------------------------- helpers
def _opt(value: object) -> str | None:
    text = _text(value)
    return text or None


def _exp(expires_at: float | None) -> str:
    return "" if expires_at is None else repr(expires_at)


def _filter(scope: Scope | None) -> list[str]:
    if scope is None:
        return ["", "", ""]
    return [scope.tenant, scope.user or "", scope.session or ""]


def _record(namespace: str, key: str, fields: Sequence[Any]) -> Record:
    # fields: value tenant user session version exp updated
    exp = _text(fields[5])
    return Record(
        namespace=namespace,
        key=key,
        value=bytes(fields[0]),
        scope=Scope(_text(fields[1]), _opt(fields[2]), _opt(fields[3])),
        version=int(fields[4]),
        expires_at=float(exp) if exp else None,
        updated_at=float(_text(fields[6])),
    )


def _live(expires_at: float | None, now: float) -> bool:
    return expires_at is None or now < expires_at


def _prefix_end(prefix: bytes) -> bytes | None:
    # The smallest byte string above every string starting with ``prefix`` (UTF-8 has no 0xFF).
    return prefix[:-1] + bytes([prefix[-1] + 1]) if prefix else None


def _native_ms(ttl_s: float) -> int:
    return math.ceil(ttl_s * 1000) + _MARGIN_MS


class RedisDurableStore(RedisClient):
    """A ``DurableStore`` (and core ``StateStore``) on a Redis server, version 6.2 or later.

    Open it with ``async with RedisDurableStore.open("redis://host:6379/0") as store:`` (or a
    ``unix://`` URL). Every key lives under ``prefix``, so several stores share one database.
    Durable only as far as the server persists (a warning is logged at open when
    ``appendonly`` is off). Cluster mode is not supported.
    """

    def __repr__(self) -> str:
        return f"<RedisDurableStore {self._state} prefix={self._prefix!r}>"

    @classmethod
    def open(
        cls,
        url: str,
        *,
        prefix: str = "pf",
        clock: Callable[[], float] = time.time,
        retention: Mapping[str, float] | None = None,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
    ) -> AbstractAsyncContextManager[RedisDurableStore]:
        """Connect to the server at ``url``; leaving the block closes the connections.

        Args:
            url: ``redis://[user:password@]host[:port][/db]``, ``rediss://…`` or
                ``unix:///path/to/redis.sock[?db=N]``.
            prefix: Every key of this store starts with ``{prefix}:``.
            clock: Where time comes from (seconds); TTLs and timestamps use it.
            retention: Default TTLs by namespace/stream prefix (longest prefix wins).
            max_value_bytes: The largest value accepted.

        Raises:
            ImportError: redis-py is not installed (at once; the message says what to install).
            ValueError: An option is out of range (at once).
            StoreError: The server is older than Redis 6.2 (on entering).
            StoreUnavailable: The server could not be reached (on entering).
        """
        return _opened(
            cls(
                url,
                prefix=prefix,
                clock=clock,
                retention=retention,
                max_value_bytes=max_value_bytes,
            )
        )

    # --------------------------------------------------------------------------- records
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
        ``VersionConflict``). Each put sets the TTL anew (None: the retention default, or no
        expiry). A record of another tenant raises ``ScopeMismatch``.
        """
        check_put(namespace, key, value, scope, ttl_s, if_version, self._max_value_bytes)
        ttl = self._default_ttl(namespace, ttl_s)
        now = self._clock()
        reply = await self._script(
            "put",
            namespace,
            key,
            bytes(value),
            scope.tenant,
            scope.user or "",
            scope.session or "",
            "" if if_version is None else str(if_version),
            repr(now),
            _exp(None if ttl is None else now + ttl),
            "" if ttl is None else _native_ms(ttl),
        )
        outcome = _text(reply[0])
        if outcome == "scope":
            raise ScopeMismatch(Scope(_text(reply[1]), _opt(reply[2]), _opt(reply[3])), scope)
        if outcome == "version":
            raise VersionConflict(namespace, key, if_version or 0, int(reply[1]))
        return int(reply[1])

    async def get(self, namespace: str, key: str, *, scope: Scope | None = None) -> Record | None:
        """The record, or None when missing, expired or not selected by ``scope``."""
        check_record(namespace, key)
        name = f"{self._prefix}:r:{namespace}|{key}"
        fields: list[Any] = await self._run(
            lambda c: c.hmget(
                name, ["value", "tenant", "user", "session", "version", "exp", "updated"]
            )
        )
        if fields[1] is None:
            return None
        record = _record(namespace, key, fields)
        if not _live(record.expires_at, self._clock()):
            return None
        if scope is not None and not scope.selects(record.scope):
            return None
        return record

    async def take(self, namespace: str, key: str, *, scope: Scope | None = None) -> Record | None:
        """Get and delete atomically: of concurrent takes exactly one gets the record.

        A take whose ``scope`` does not select the record returns None and leaves it.
        """
        check_record(namespace, key)
        reply = await self._script("take", namespace, key, repr(self._clock()), *_filter(scope))
        return None if reply is None else _record(namespace, key, reply)

    async def delete(self, namespace: str, key: str, *, scope: Scope | None = None) -> bool:
        """Delete the record; True when something was deleted (nothing if ``scope`` misses)."""
        check_record(namespace, key)
        reply = await self._script("take", namespace, key, repr(self._clock()), *_filter(scope))
        return reply is not None

    async def scan(
        self,
        namespace: str,
        prefix: str = "",
        *,
        after: str | None = None,
        limit: int = 100,
        scope: Scope | None = None,
    ) -> list[Record]:
        """Records whose key starts with ``prefix``, ascending by UTF-8 bytes, after ``after``.

        ``prefix`` is literal (``%``, ``_``, ``*`` are plain characters); up to ``limit``
        records, fewer meaning there are no more.
        """
        check_scan(namespace, prefix, after, limit)
        low = prefix.encode()
        # Lex ranges are literal bytes: nothing in the prefix needs escaping.
        start = b"[" + low
        if after is not None and after.encode() >= low:
            start = b"(" + after.encode()
        end = _prefix_end(low)
        stop = b"+" if end is None else b"(" + end
        rows: list[Any] = await self._script(
            "scan", namespace, start, stop, limit, repr(self._clock()), *_filter(scope)
        )
        return [_record(namespace, _text(row[0]), row[1:]) for row in rows]

    # ------------------------------------------------------------------------------ logs
    async def append(
        self,
        stream: str,
        value: bytes,
        *,
        scope: Scope,
        idempotency_key: str | None = None,
        ttl_s: float | None = None,
    ) -> int:
        """Append to ``stream``; returns its seq (1, 2, 3 … with no gaps).

        A repeated ``idempotency_key`` returns the first entry's seq and writes nothing. The
        first append fixes the stream's scope (another tenant: ``ScopeMismatch``). ``ttl_s``
        sets the whole stream's expiry anew; None keeps it (the retention default on the
        first append).
        """
        check_append(stream, value, scope, idempotency_key, ttl_s, self._max_value_bytes)
        if idempotency_key is not None and (
            not isinstance(idempotency_key, str) or not idempotency_key  # pyright: ignore[reportUnnecessaryIsInstance]
        ):
            raise ValueError(
                f"idempotency_key must be a non-empty string or None, got {idempotency_key!r}"
            )
        first_ttl = self._default_ttl(stream, ttl_s)
        now = self._clock()
        reply = await self._script(
            "append",
            stream,
            bytes(value),
            scope.tenant,
            scope.user or "",
            scope.session or "",
            idempotency_key or "",
            repr(now),
            _exp(None if ttl_s is None else now + ttl_s),
            _exp(None if first_ttl is None else now + first_ttl),
            _MARGIN_MS,
        )
        if isinstance(reply, int):
            return reply
        raise ScopeMismatch(Scope(_text(reply[1]), _opt(reply[2]), _opt(reply[3])), scope)

    async def read(
        self, stream: str, after: int = 0, *, limit: int = 1000, scope: Scope | None = None
    ) -> list[LogEntry]:
        """Entries with ``seq > after``, ascending; ``[]`` for unknown, expired or unselected."""
        check_stream(stream)
        check_limit(limit)
        reply = await self._script("read", stream, max(0, int(after)), limit, repr(self._clock()))
        if reply is None:
            return []
        owner = Scope(_text(reply[0]), _opt(reply[1]), _opt(reply[2]))
        if scope is not None and not scope.selects(owner):
            return []
        entries: list[LogEntry] = []
        for entry_id, flat in reply[3]:
            fields = {_text(flat[i]): flat[i + 1] for i in range(0, len(flat), 2)}
            key = fields.get("k")
            entries.append(
                LogEntry(
                    stream,
                    int(_text(entry_id).split("-")[0]),
                    bytes(fields["v"]),
                    float(_text(fields["t"])),
                    None if key is None else _text(key),
                )
            )
        return entries

    async def trim(self, stream: str, *, before: int) -> int:
        """Drop entries with ``seq < before``; returns how many went. Later seqs continue."""
        check_trim(stream, before)
        return int(await self._script("trim", stream, int(before), repr(self._clock())))

    # ------------------------------------------------------------------------- retention
    async def erase(
        self, tenant: str, *, user: str | None = None, session: str | None = None
    ) -> int:
        """Remove every record and stream the filter selects, in every namespace.

        Returns records + streams removed (those still readable). Afterwards a put starts at
        version 1, an append at seq 1, and the streams' idempotency keys are forgotten.
        """
        selector = Scope(tenant, user, session)
        return int(
            await self._script(
                "erase",
                selector.tenant,
                selector.user or "",
                selector.session or "",
                repr(self._clock()),
            )
        )

    async def purge_expired(self) -> int:
        """Physically remove expired records and streams; returns how many.

        Redis also expires them natively (later, from real time), so nothing piles up when
        this is never called.
        """
        now = repr(self._clock())
        removed = 0
        while True:
            count, looked_at = await self._script("purge", now, _PURGE_BATCH)
            removed += int(count)
            if int(looked_at) < _PURGE_BATCH:
                return removed


@asynccontextmanager
async def _opened(store: RedisDurableStore) -> AsyncGenerator[RedisDurableStore]:
    async with store:
        yield store
