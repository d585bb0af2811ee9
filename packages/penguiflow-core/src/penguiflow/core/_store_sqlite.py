"""``SQLiteDurableStore``: a ``DurableStore`` in one SQLite file (stdlib ``sqlite3``, WAL mode).

One dedicated writer thread per store owns the connection. Every operation is one hop: the
caller queues it and awaits a future that the thread resolves with ``call_soon_threadsafe``.
The thread group-commits: whatever is queued when it wakes runs in one ``BEGIN IMMEDIATE …
COMMIT``, each operation inside its own savepoint, so one failing operation undoes only itself.
A cancelled caller stops waiting; the thread still runs the queued operation, whole. Keys are
stored as UTF-8 BLOBs, so SQLite's ``memcmp`` order is the byte order the other backends scan
in. sqlite3 errors become ``StoreUnavailable`` in one place. The writer thread's lifecycle and
the hop are the base class, ``SQLiteHop`` (``_store_sqlite_hop``); the shared SQL and row helpers
are in ``_store_sqlite_sql``; this module holds the operations.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Literal, cast

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
from ._store_sqlite_hop import SQLiteHop
from ._store_sqlite_sql import LIVE as _LIVE
from ._store_sqlite_sql import RECORD_COLUMNS as _RECORD_COLUMNS
from ._store_sqlite_sql import SELECTED as _SELECTED
from ._store_sqlite_sql import drop_streams as _drop_streams
from ._store_sqlite_sql import filter_args as _filter_args
from ._store_sqlite_sql import live as _live
from ._store_sqlite_sql import live_record as _live_record
from ._store_sqlite_sql import live_stream as _live_stream
from ._store_sqlite_sql import prefix_end as _prefix_end
from ._store_sqlite_sql import purge as _purge
from ._store_sqlite_sql import record as _record
from ._store_sqlite_sql import scope_of as _scope_of
from ._store_sqlite_writer import SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION", "SQLiteDurableStore"]


class SQLiteDurableStore(SQLiteHop):
    """A ``DurableStore`` (and core ``StateStore``) in one SQLite file, or ``":memory:"``.

    Open it with ``async with SQLiteDurableStore.open(path) as store:``. WAL mode;
    ``synchronous="NORMAL"`` survives a process crash but may lose the last commits on power
    loss, ``"FULL"`` does not. Several processes of one host may open the same file: writes
    serialise on SQLite's lock, waiting up to ``busy_timeout_s``.
    """

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        clock: Callable[[], float] = time.time,
        retention: Mapping[str, float] | None = None,
        busy_timeout_s: float = 5.0,
        purge_every_s: float = 60.0,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
    ) -> AbstractAsyncContextManager[SQLiteDurableStore]:
        """Open (creating if needed) the store at ``path``; leaving the block closes it.

        Args:
            path: A file path, or ``":memory:"`` for a private in-memory database.
            synchronous: ``"NORMAL"`` (the default) or ``"FULL"`` (durable on power loss).
            clock: Where time comes from (seconds); TTLs and timestamps use it.
            retention: Default TTLs by namespace/stream prefix (longest prefix wins).
            busy_timeout_s: How long a write waits for another process's lock.
            purge_every_s: How often the writer thread removes expired items.
            max_value_bytes: The largest value accepted.

        Raises:
            ValueError: An option is out of range (at once).
            StoreError: The file's schema is newer than this package supports (on entering).
            StoreUnavailable: SQLite could not open the file (on entering).
        """
        return _opened(
            cls(
                path,
                synchronous=synchronous,
                clock=clock,
                retention=retention,
                busy_timeout_s=busy_timeout_s,
                purge_every_s=purge_every_s,
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
        data, kb = bytes(value), key.encode()
        ttl = self._default_ttl(namespace, ttl_s)

        def run(conn: sqlite3.Connection, now: float) -> int:
            row = conn.execute(
                "SELECT version, tenant, user_id, session_id, expires_at FROM pf_records "
                "WHERE namespace = ? AND key = ?",
                (namespace, kb),
            ).fetchone()
            actual = 0
            if row is not None and _live(row[4], now):
                if row[1] != scope.tenant:
                    raise ScopeMismatch(_scope_of(row, 1), scope)
                actual = row[0]
            if if_version is not None and if_version != actual:
                raise VersionConflict(namespace, key, if_version, actual)
            version = actual + 1
            conn.execute(
                "INSERT OR REPLACE INTO pf_records (namespace, key, value, tenant, user_id, "
                "session_id, version, expires_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    namespace,
                    kb,
                    data,
                    scope.tenant,
                    scope.user,
                    scope.session,
                    version,
                    None if ttl is None else now + ttl,
                    now,
                ),
            )
            return version

        return cast(int, await self._call(run, writes=True))

    async def get(self, namespace: str, key: str, *, scope: Scope | None = None) -> Record | None:
        """The record, or None when missing, expired or not selected by ``scope``."""
        check_record(namespace, key)
        kb = key.encode()

        def run(conn: sqlite3.Connection, now: float) -> Record | None:
            row = _live_record(conn, namespace, kb, now)
            if row is None or (scope is not None and not scope.selects(_scope_of(row, 2))):
                return None
            return _record(namespace, row)

        return cast(Record | None, await self._call(run, writes=False))

    async def take(self, namespace: str, key: str, *, scope: Scope | None = None) -> Record | None:
        """Get and delete atomically: of concurrent takes exactly one gets the record.

        A take whose ``scope`` does not select the record returns None and leaves it.
        """
        check_record(namespace, key)
        kb = key.encode()

        def run(conn: sqlite3.Connection, now: float) -> Record | None:
            row = _live_record(conn, namespace, kb, now)
            if row is None or (scope is not None and not scope.selects(_scope_of(row, 2))):
                return None
            conn.execute("DELETE FROM pf_records WHERE namespace = ? AND key = ?", (namespace, kb))
            return _record(namespace, row)

        return cast(Record | None, await self._call(run, writes=True))

    async def delete(self, namespace: str, key: str, *, scope: Scope | None = None) -> bool:
        """Delete the record; True when something was deleted (nothing if ``scope`` misses)."""
        check_record(namespace, key)
        kb = key.encode()

        def run(conn: sqlite3.Connection, now: float) -> bool:
            row = _live_record(conn, namespace, kb, now)
            if row is None or (scope is not None and not scope.selects(_scope_of(row, 2))):
                return False
            conn.execute("DELETE FROM pf_records WHERE namespace = ? AND key = ?", (namespace, kb))
            return True

        return cast(bool, await self._call(run, writes=True))

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
        low, high = prefix.encode(), _prefix_end(prefix.encode())
        sql = f"SELECT {_RECORD_COLUMNS} FROM pf_records WHERE namespace = ? AND {_LIVE}"
        args: list[object] = [namespace]
        if low:
            sql += " AND key >= ? AND key < ?"
        if after is not None:
            sql += " AND key > ?"
        if scope is not None:
            sql += f" AND {_SELECTED}"
        sql += " ORDER BY key LIMIT ?"

        def run(conn: sqlite3.Connection, now: float) -> list[Record]:
            params: list[object] = [*args, now]
            if low:
                params += [low, high]
            if after is not None:
                params.append(after.encode())
            if scope is not None:
                params += _filter_args(scope)
            params.append(limit)
            return [_record(namespace, row) for row in conn.execute(sql, params)]

        return cast(list[Record], await self._call(run, writes=False))

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
        data = bytes(value)
        first_ttl = self._default_ttl(stream, ttl_s)

        def run(conn: sqlite3.Connection, now: float) -> int:
            row = conn.execute(
                "SELECT id, tenant, user_id, session_id, last_seq, expires_at FROM pf_streams "
                "WHERE name = ?",
                (stream,),
            ).fetchone()
            if row is not None and not _live(row[5], now):
                _drop_streams(conn, "id = ?", (row[0],))  # expired: this append starts anew
                row = None
            if row is None:
                expires_at = None if first_ttl is None else now + first_ttl
                cursor = conn.execute(
                    "INSERT INTO pf_streams (name, tenant, user_id, session_id, last_seq, "
                    "expires_at) VALUES (?, ?, ?, ?, 1, ?)",
                    (stream, scope.tenant, scope.user, scope.session, expires_at),
                )
                stream_id, seq = cast(int, cursor.lastrowid), 1
            else:
                if row[1] != scope.tenant:
                    raise ScopeMismatch(_scope_of(row, 1), scope)
                stream_id = row[0]
                if idempotency_key is not None:
                    known = conn.execute(
                        "SELECT seq FROM pf_idempotency WHERE stream_id = ? AND key = ?",
                        (stream_id, idempotency_key),
                    ).fetchone()
                    if known is not None:
                        return known[0]
                seq = row[4] + 1
                expires_at = row[5] if ttl_s is None else now + ttl_s
                conn.execute(
                    "UPDATE pf_streams SET last_seq = ?, expires_at = ? WHERE id = ?",
                    (seq, expires_at, stream_id),
                )
            conn.execute(
                "INSERT INTO pf_entries (stream_id, seq, value, ts, idempotency_key) "
                "VALUES (?, ?, ?, ?, ?)",
                (stream_id, seq, data, now, idempotency_key),
            )
            if idempotency_key is not None:
                conn.execute(
                    "INSERT INTO pf_idempotency (stream_id, key, seq) VALUES (?, ?, ?)",
                    (stream_id, idempotency_key, seq),
                )
            return seq

        return cast(int, await self._call(run, writes=True))

    async def read(
        self, stream: str, after: int = 0, *, limit: int = 1000, scope: Scope | None = None
    ) -> list[LogEntry]:
        """Entries with ``seq > after``, ascending; ``[]`` for unknown, expired or unselected."""
        check_stream(stream)
        check_limit(limit)

        def run(conn: sqlite3.Connection, now: float) -> list[LogEntry]:
            row = _live_stream(conn, stream, now)
            if row is None or (scope is not None and not scope.selects(_scope_of(row, 1))):
                return []
            return [
                LogEntry(stream, seq, bytes(value), ts, key)
                for seq, value, ts, key in conn.execute(
                    "SELECT seq, value, ts, idempotency_key FROM pf_entries "
                    "WHERE stream_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                    (row[0], after, limit),
                )
            ]

        return cast(list[LogEntry], await self._call(run, writes=False))

    async def trim(self, stream: str, *, before: int) -> int:
        """Drop entries with ``seq < before``; returns how many went. Later seqs continue."""
        check_trim(stream, before)

        def run(conn: sqlite3.Connection, now: float) -> int:
            row = _live_stream(conn, stream, now)
            if row is None:
                return 0
            cursor = conn.execute(
                "DELETE FROM pf_entries WHERE stream_id = ? AND seq < ?", (row[0], before)
            )
            return cursor.rowcount

        return cast(int, await self._call(run, writes=True))

    # ------------------------------------------------------------------------- retention
    async def erase(
        self, tenant: str, *, user: str | None = None, session: str | None = None
    ) -> int:
        """Remove every record and stream the filter selects, in every namespace.

        Returns records + streams removed (those still readable). Afterwards a put starts at
        version 1, an append at seq 1, and the streams' idempotency keys are forgotten.
        """
        where = _SELECTED
        args = _filter_args(Scope(tenant, user, session))

        def run(conn: sqlite3.Connection, now: float) -> int:
            live = f"SELECT COUNT(*) FROM {{}} WHERE {where} AND {_LIVE}"
            count: int = conn.execute(live.format("pf_records"), (*args, now)).fetchone()[0]
            count += conn.execute(live.format("pf_streams"), (*args, now)).fetchone()[0]
            conn.execute(f"DELETE FROM pf_records WHERE {where}", args)
            _drop_streams(conn, where, args)
            return count

        return cast(int, await self._call(run, writes=True))

    async def purge_expired(self) -> int:
        """Physically remove expired records and streams; returns how many.

        The writer thread also runs this every ``purge_every_s``.
        """
        return cast(int, await self._call(_purge, writes=True))


@asynccontextmanager
async def _opened(store: SQLiteDurableStore) -> AsyncGenerator[SQLiteDurableStore]:
    async with store:
        yield store
