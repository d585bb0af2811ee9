"""The connection half of ``PostgresDurableStore``: options, pool, schema, the error boundary.

``PostgresPool`` is the store's base class (``_store_postgres`` adds the operations). Entering
it creates the asyncpg pool and creates or migrates the schema under an advisory lock (versioned
in ``pf_meta``; ``MIGRATIONS`` in ``_store_postgres_sql``); leaving closes it. ``_guard`` is the
one place asyncpg errors become ``StoreUnavailable``; ``_call`` runs one operation on a
connection lent by the ``Lender`` (``_store_postgres_lend``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal, Self, cast

from ._durable import DEFAULT_MAX_VALUE_BYTES, DurableStore, check_options
from ._errors import StoreClosed, StoreError, StoreUnavailable
from ._store_history import StoreBase
from ._store_postgres_lend import Lender
from ._store_postgres_sql import Named, Sql

if TYPE_CHECKING:
    import asyncpg

    type _Conn = asyncpg.pool.PoolConnectionProxy[asyncpg.Record]

__all__ = ["SCHEMA_VERSION", "PostgresPool"]

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


class PostgresPool(StoreBase):
    """The connection half of ``PostgresDurableStore`` (see the module docstring)."""

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
                await cast(DurableStore, self).purge_expired()
            except StoreError:
                _logger.warning(
                    "PostgreSQL store (schema %s): purging expired items failed",
                    self._schema,
                    exc_info=True,
                )
