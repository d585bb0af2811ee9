"""``PostgresDurableStore``: a ``DurableStore`` in PostgreSQL through an asyncpg pool.

Loaded on first use (``penguiflow.core.PostgresDurableStore``); asyncpg, the ``postgres`` extra,
is imported when a store is opened. The tables live in their own schema, created under an
advisory lock (so stores opening at once do not race) and versioned in ``pf_meta``; an older
schema migrates forward in one transaction. Keys are ``text COLLATE "C"``: PostgreSQL compares
them byte by byte, the UTF-8 order the other backends scan in, and a prefix scan is a range on
the primary key (never ``LIKE``). Values are ``bytea``; times come from the store's clock and
travel as parameters. Every operation is one statement, so the server applies it whole or not at
all: ``put``, ``append``, ``trim``, ``erase`` and ``purge_expired`` are SQL functions, and
``put`` and ``append`` lock the row they change, which makes appends gap-free, visible in seq
order and idempotent under concurrency in one round trip. Operations borrow the pool's
connections through a ``Lender`` (``_store_postgres_lend``), which keeps idle ones instead of
releasing each to the pool. asyncpg errors become ``StoreUnavailable`` in one place. The pool,
the schema and that boundary are the base class, ``PostgresPool`` (``_store_postgres_pool``);
this module holds the operations.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any

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
from ._store_postgres_pool import SCHEMA_VERSION, PostgresPool
from ._store_postgres_sql import SELECTED, named

if TYPE_CHECKING:
    import asyncpg

__all__ = ["SCHEMA_VERSION", "PostgresDurableStore"]


def _prefix_end(prefix: str) -> str | None:
    # The smallest string above every string starting with ``prefix``, in code point order
    # (= UTF-8 byte order): the prefix with its last character raised by one.
    while prefix:
        last = ord(prefix[-1]) + 1
        if last == 0xD800:  # skip the surrogates: no key holds one
            last = 0xE000
        if last <= 0x10FFFF:
            return prefix[:-1] + chr(last)
        prefix = prefix[:-1]
    return None


def _scope_of(row: asyncpg.Record, prefix: str = "") -> Scope:
    return Scope(row[f"{prefix}tenant"], row[f"{prefix}user_id"], row[f"{prefix}session_id"])


def _record(namespace: str, row: asyncpg.Record) -> Record:
    return Record(
        namespace=namespace,
        key=row["key"],
        value=bytes(row["value"]),
        scope=_scope_of(row),
        version=row["version"],
        expires_at=row["expires_at"],
        updated_at=row["updated_at"],
    )


def _count(status: str) -> int:
    # asyncpg's command status: "DELETE 3", "UPDATE 1" …
    return int(status.rsplit(" ", 1)[-1])


class PostgresDurableStore(PostgresPool):
    """A ``DurableStore`` (and core ``StateStore``) in PostgreSQL, through an asyncpg pool.

    Open it with ``async with PostgresDurableStore.open(dsn) as store:`` (extra ``postgres``).
    Every process and machine that reaches the server shares the data of one ``schema``.
    Behind pgbouncer in transaction mode pass ``connect_kwargs={"statement_cache_size": 0}``.
    """

    @classmethod
    def open(
        cls,
        dsn: str,
        *,
        schema: str = "penguiflow",
        min_size: int = 1,
        max_size: int = 10,
        clock: Callable[[], float] = time.time,
        retention: Mapping[str, float] | None = None,
        purge_every_s: float = 60.0,
        connect_kwargs: Mapping[str, Any] | None = None,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
    ) -> AbstractAsyncContextManager[PostgresDurableStore]:
        """Connect to ``dsn`` (creating the tables if needed); leaving the block closes the pool.

        Args:
            dsn: A PostgreSQL URL, e.g. ``postgresql://user@host:5432/db``.
            schema: The schema holding the store's tables (one store's data per schema).
            min_size: Connections the pool keeps open.
            max_size: Connections the pool opens at most.
            clock: Where time comes from (seconds); TTLs and timestamps use it.
            retention: Default TTLs by namespace/stream prefix (longest prefix wins).
            purge_every_s: How often the store removes expired items in the background.
            connect_kwargs: More keyword arguments for ``asyncpg.create_pool``.
            max_value_bytes: The largest value accepted.

        Raises:
            ImportError: asyncpg is not installed (the ``postgres`` extra).
            ValueError: An option is out of range (at once).
            StoreError: The schema is newer than this package supports (on entering).
            StoreUnavailable: The server could not be reached (on entering).
        """
        return _opened(
            cls(
                dsn,
                schema=schema,
                min_size=min_size,
                max_size=max_size,
                clock=clock,
                retention=retention,
                purge_every_s=purge_every_s,
                connect_kwargs=connect_kwargs,
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
        row = await self._fetchrow(
            self._sql.put,
            namespace=namespace,
            key=key,
            value=bytes(value),
            tenant=scope.tenant,
            user=scope.user,
            session=scope.session,
            ttl=self._default_ttl(namespace, ttl_s),
            if_version=if_version,
            now=self._clock(),
        )
        assert row is not None
        if row["o_status"] == 1:
            raise ScopeMismatch(Scope(row["o_tenant"], row["o_user"], row["o_session"]), scope)
        if row["o_status"] == 2:
            assert if_version is not None
            raise VersionConflict(namespace, key, if_version, row["o_version"])
        return row["o_version"]

    async def get(self, namespace: str, key: str, *, scope: Scope | None = None) -> Record | None:
        """The record, or None when missing, expired or not selected by ``scope``."""
        check_record(namespace, key)
        if scope is None:
            row = await self._fetchrow(
                self._sql.get, namespace=namespace, key=key, now=self._clock()
            )
        else:
            row = await self._fetchrow(
                self._sql.get_scoped, namespace=namespace, key=key, now=self._clock(),
                tenant=scope.tenant, user=scope.user, session=scope.session,
            )  # fmt: skip
        return None if row is None else _record(namespace, row)

    async def take(self, namespace: str, key: str, *, scope: Scope | None = None) -> Record | None:
        """Get and delete atomically: of concurrent takes exactly one gets the record.

        A take whose ``scope`` does not select the record returns None and leaves it.
        """
        check_record(namespace, key)
        if scope is None:
            row = await self._fetchrow(
                self._sql.take, namespace=namespace, key=key, now=self._clock()
            )
        else:
            row = await self._fetchrow(
                self._sql.take_scoped, namespace=namespace, key=key, now=self._clock(),
                tenant=scope.tenant, user=scope.user, session=scope.session,
            )  # fmt: skip
        return None if row is None else _record(namespace, row)

    async def delete(self, namespace: str, key: str, *, scope: Scope | None = None) -> bool:
        """Delete the record; True when something was deleted (nothing if ``scope`` misses)."""
        check_record(namespace, key)
        if scope is None:
            status = await self._execute(
                self._sql.delete, namespace=namespace, key=key, now=self._clock()
            )
        else:
            status = await self._execute(
                self._sql.delete_scoped, namespace=namespace, key=key, now=self._clock(),
                tenant=scope.tenant, user=scope.user, session=scope.session,
            )  # fmt: skip
        return _count(status) > 0

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

        ``prefix`` is literal (``%``, ``_``, ``*`` are plain characters): the scan is a range
        on the byte-ordered key. Up to ``limit`` records, fewer meaning there are no more.
        """
        check_scan(namespace, prefix, after, limit)
        sql = self._sql.scan_sql
        values: dict[str, object] = {"namespace": namespace, "now": self._clock()}
        if prefix:
            sql += " AND key >= $low"
            values["low"] = prefix
            high = _prefix_end(prefix)
            if high is not None:
                sql += " AND key < $high"
                values["high"] = high
        if after is not None:
            sql += " AND key > $after"
            values["after"] = after
        if scope is not None:
            sql += f" AND {SELECTED}"
            values.update(tenant=scope.tenant, user=scope.user, session=scope.session)
        sql += " ORDER BY key LIMIT $limit"
        values["limit"] = limit
        rows = await self._fetch(named(sql), **values)
        return [_record(namespace, row) for row in rows]

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

        One round trip to a function that locks the stream's row (an ``UPDATE`` taking the
        next seq, or ``FOR UPDATE`` for a first append): concurrent appends get
        consecutive seqs and commit in seq order. A repeated ``idempotency_key`` returns the
        first entry's seq and writes nothing. The first append fixes the stream's scope
        (another tenant: ``ScopeMismatch``). ``ttl_s`` sets the whole stream's expiry anew;
        None keeps it (the retention default on the first append). An append to an expired
        stream starts it anew.
        """
        check_append(stream, value, scope, idempotency_key, ttl_s, self._max_value_bytes)
        row = await self._fetchrow(
            self._sql.append,
            stream=stream,
            value=bytes(value),
            tenant=scope.tenant,
            user=scope.user,
            session=scope.session,
            key=idempotency_key,
            ttl=ttl_s,
            first_ttl=self._default_ttl(stream, ttl_s),
            now=self._clock(),
        )
        assert row is not None
        if row["o_status"] == 1:
            raise ScopeMismatch(Scope(row["o_tenant"], row["o_user"], row["o_session"]), scope)
        return row["o_seq"]

    async def read(
        self, stream: str, after: int = 0, *, limit: int = 1000, scope: Scope | None = None
    ) -> list[LogEntry]:
        """Entries with ``seq > after``, ascending; ``[]`` for unknown, expired or unselected."""
        check_stream(stream)
        check_limit(limit)
        if scope is None:
            rows = await self._fetch(
                self._sql.read, stream=stream, now=self._clock(), after=after, limit=limit
            )
        else:
            rows = await self._fetch(
                self._sql.read_scoped, stream=stream, now=self._clock(), after=after,
                limit=limit, tenant=scope.tenant, user=scope.user, session=scope.session,
            )  # fmt: skip
        return [
            LogEntry(stream, row["seq"], bytes(row["value"]), row["ts"], row["idempotency_key"])
            for row in rows
        ]

    async def trim(self, stream: str, *, before: int) -> int:
        """Drop entries with ``seq < before``; returns how many went. Later seqs continue.

        The dropped entries' idempotency keys stay known (a repeat returns the old seq).
        """
        check_trim(stream, before)
        row = await self._fetchrow(self._sql.trim, stream=stream, now=self._clock(), before=before)
        assert row is not None
        return int(row[0])

    # ------------------------------------------------------------------------- retention
    async def erase(
        self, tenant: str, *, user: str | None = None, session: str | None = None
    ) -> int:
        """Remove every record and stream the filter selects, in every namespace.

        Returns records + streams removed (those still readable). Afterwards a put starts at
        version 1, an append at seq 1, and the streams' idempotency keys are forgotten.
        """
        selector = Scope(tenant, user, session)
        row = await self._fetchrow(
            self._sql.erase,
            tenant=selector.tenant,
            user=selector.user,
            session=selector.session,
            now=self._clock(),
        )
        assert row is not None
        return int(row[0])

    async def purge_expired(self) -> int:
        """Physically remove expired records and streams; returns how many.

        The store also runs this every ``purge_every_s`` in the background.
        """
        row = await self._fetchrow(self._sql.purge, now=self._clock())
        assert row is not None
        return int(row[0])


@asynccontextmanager
async def _opened(store: PostgresDurableStore) -> AsyncGenerator[PostgresDurableStore]:
    async with store:
        yield store
