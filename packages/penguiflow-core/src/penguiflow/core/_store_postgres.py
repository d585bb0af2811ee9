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
releasing each to the pool. asyncpg errors become ``StoreUnavailable`` here, in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal, Self

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
)
from ._errors import ScopeMismatch, StoreClosed, StoreError, StoreUnavailable, VersionConflict
from ._store_history import StoreBase
from ._store_postgres_lend import Lender
from ._store_postgres_sql import SELECTED, Named, Sql, named

if TYPE_CHECKING:
    import asyncpg

    type _Conn = asyncpg.pool.PoolConnectionProxy[asyncpg.Record]

__all__ = ["SCHEMA_VERSION", "PostgresDurableStore"]

SCHEMA_VERSION = 2
"""The schema this module writes (kept in the ``pf_meta`` table of the store's schema).

Older schemas migrate forward when a store opens (``MIGRATIONS`` in ``_store_postgres_sql``): in
one transaction, under the advisory lock, keeping their data.
"""

_INSTALL = 'PostgresDurableStore needs asyncpg: pip install "penguiflow-core[postgres]"'
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_logger = logging.getLogger("penguiflow.core")


def _import_asyncpg() -> ModuleType:
    try:
        import asyncpg
    except ImportError as exc:
        raise ImportError(_INSTALL) from exc
    return asyncpg


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


async def _keep_session(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    # The pool's reset of a released connection. asyncpg's default (``Connection.reset``) is one
    # more round trip per operation (``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET
    # ALL``), undoing session state this store never makes: it takes no session locks (only
    # ``pg_advisory_xact_lock``), opens no cursors, listens to nothing and sets nothing. asyncpg
    # still rolls back a transaction left open before calling this.
    del conn


def _lock_id(schema: str) -> int:
    digest = hashlib.sha256(f"penguiflow-store:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


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


class PostgresDurableStore(StoreBase):
    """A ``DurableStore`` (and core ``StateStore``) in PostgreSQL, through an asyncpg pool.

    Open it with ``async with PostgresDurableStore.open(dsn) as store:`` (extra ``postgres``).
    Every process and machine that reaches the server shares the data of one ``schema``.
    Behind pgbouncer in transaction mode pass ``connect_kwargs={"statement_cache_size": 0}``.
    """

    def __init__(
        self,
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
    ) -> None:
        """Check the options; the store connects once entered (prefer ``open``)."""
        self._asyncpg = _import_asyncpg()
        if not isinstance(dsn, str) or not dsn:  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ValueError(f"dsn must be a PostgreSQL URL such as postgresql://…, got {dsn!r}")
        if not isinstance(schema, str) or not _SCHEMA_NAME.fullmatch(schema):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ValueError(
                "schema must be 1-63 characters of [a-z0-9_], not starting with a digit, "
                f"got {schema!r}"
            )
        if min_size < 0 or max_size < 1 or min_size > max_size:
            raise ValueError(
                f"need 0 <= min_size <= max_size and max_size >= 1, got {min_size}, {max_size}"
            )
        if not math.isfinite(purge_every_s) or purge_every_s <= 0:
            raise ValueError(f"purge_every_s must be > 0 seconds, got {purge_every_s}")
        table = check_options(max_value_bytes, retention)
        self._dsn = dsn
        self._schema = schema
        self._min_size = min_size
        self._max_size = max_size
        self._clock = clock
        self._retention = table
        self._purge_every_s = purge_every_s
        self._connect_kwargs = dict(connect_kwargs or {})
        self._max_value_bytes = max_value_bytes
        self._sql = Sql(schema)
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        self._lender: Lender | None = None
        self._purger: asyncio.Task[None] | None = None
        self._state: Literal["new", "opening", "open", "closed"] = "new"

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

    async def __aenter__(self) -> Self:
        """Connect (if not connected yet), create or check the schema, and return the store."""
        if self._state == "closed":
            raise StoreClosed(f"PostgreSQL store (schema {self._schema}) is closed; open a new one")
        if self._state != "new":
            return self
        self._state = "opening"
        try:
            self._pool = pool = await self._guard(
                self._asyncpg.create_pool(
                    self._dsn,
                    min_size=self._min_size,
                    max_size=self._max_size,
                    **{"reset": _keep_session, **self._connect_kwargs},
                )
            )
            await self._guard(self._migrate())
            self._lender = Lender(pool, self._max_size)
        except BaseException:
            await self.aclose()
            raise
        self._state = "open"
        self._purger = asyncio.create_task(self._purge_loop(), name="penguiflow-postgres-purge")
        return self

    async def aclose(self) -> None:
        """Stop the background purge and close the pool.

        Idempotent; any later call raises ``StoreClosed``.
        """
        if self._state == "closed":
            return
        self._state = "closed"
        purger, self._purger = self._purger, None
        if purger is not None:
            purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await purger
        lender, self._lender = self._lender, None
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                if lender is not None:
                    await lender.close()
                await pool.close()
            except (OSError, self._asyncpg.PostgresError, self._asyncpg.InterfaceError):
                pool.terminate()

    # ---------------------------------------------------------------------- the boundary
    async def _guard[T](self, work: Awaitable[T]) -> T:
        # The one place asyncpg (and socket) errors become StoreUnavailable.
        try:
            return await work
        except (
            OSError,
            TimeoutError,
            self._asyncpg.PostgresError,
            self._asyncpg.InterfaceError,
            self._asyncpg.InternalClientError,
        ) as exc:
            error = StoreUnavailable(
                f"PostgreSQL store (schema {self._schema}): {type(exc).__name__}: {exc}",
                original_exc=exc,
            )
            raise error from exc

    def _open_lender(self) -> Lender:
        if self._state != "open" or self._lender is None:
            raise StoreClosed(
                f"PostgreSQL store (schema {self._schema}) is closed; open a new one"
                if self._state == "closed"
                else "the store is not open: use `async with PostgresDurableStore.open(dsn)`"
            )
        return self._lender

    async def _call[T](self, run: Callable[[_Conn], Awaitable[T]]) -> T:
        # One operation on a lent connection; one that failed or was cancelled goes back to
        # the pool, which cleans it up.
        lender = self._open_lender()
        conn = await self._guard(lender.borrow())
        try:
            result = await self._guard(run(conn))
        except BaseException:
            await lender.drop(conn)
            raise
        await lender.give(conn)
        return result

    async def _fetchrow(self, sql: Named, **values: object) -> asyncpg.Record | None:
        args = sql.args(**values)
        return await self._call(lambda conn: conn.fetchrow(sql.text, *args))

    async def _fetch(self, sql: Named, **values: object) -> list[asyncpg.Record]:
        args = sql.args(**values)
        return await self._call(lambda conn: conn.fetch(sql.text, *args))

    async def _execute(self, sql: Named, **values: object) -> str:
        args = sql.args(**values)
        return await self._call(lambda conn: conn.execute(sql.text, *args))

    async def _migrate(self) -> None:
        assert self._pool is not None
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _lock_id(self._schema))
            exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", self._sql.meta)
            found: int = 0
            if exists:
                found = await conn.fetchval(f"SELECT version FROM {self._sql.meta}") or 0
            if found > SCHEMA_VERSION:
                raise StoreError(
                    f"PostgreSQL schema {self._schema} has store schema version {found}, but "
                    f"this penguiflow-core supports versions up to {SCHEMA_VERSION}: upgrade "
                    "penguiflow-core"
                )
            if found == 0:
                for statement in self._sql.ddl:
                    await conn.execute(statement)
                await conn.execute(
                    f"INSERT INTO {self._sql.meta} (id, version) VALUES (1, $1)", SCHEMA_VERSION
                )
            elif found < SCHEMA_VERSION:
                for version in range(found, SCHEMA_VERSION):
                    for statement in self._sql.migrations[version]:
                        await conn.execute(statement)
                await conn.execute(f"UPDATE {self._sql.meta} SET version = $1", SCHEMA_VERSION)
                _logger.info(
                    "PostgreSQL store (schema %s): migrated the store schema from version %d to %d",
                    self._schema,
                    found,
                    SCHEMA_VERSION,
                )

    async def _purge_loop(self) -> None:
        while True:
            await asyncio.sleep(self._purge_every_s)
            try:
                await self.purge_expired()
            except StoreError:
                _logger.warning(
                    "PostgreSQL store (schema %s): purging expired items failed",
                    self._schema,
                    exc_info=True,
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
