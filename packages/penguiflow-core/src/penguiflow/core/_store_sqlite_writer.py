"""The writer thread of ``SQLiteDurableStore``: it owns the connection and group-commits.

Callers queue operations (``Op``) and await futures the thread resolves with
``call_soon_threadsafe``. Whatever is queued when the thread wakes runs in one ``BEGIN IMMEDIATE …
COMMIT``, each write inside its own savepoint, so one failing operation undoes only itself.
sqlite3 errors become ``StoreUnavailable`` here, in one place.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ._errors import StoreError, StoreUnavailable

__all__ = ["SCHEMA_VERSION", "Fn", "Op", "Stop", "Writer"]

_logger = logging.getLogger("penguiflow.core")

SCHEMA_VERSION = 1
"""The schema this module writes (kept in ``PRAGMA user_version``)."""

_MAX_BATCH = 1024  # operations per transaction: bounds the latency of one commit
_logger = logging.getLogger("penguiflow.core")

_SCHEMA = """
CREATE TABLE pf_records (
    namespace  TEXT    NOT NULL,
    key        BLOB    NOT NULL,
    value      BLOB    NOT NULL,
    tenant     TEXT    NOT NULL,
    user_id    TEXT,
    session_id TEXT,
    version    INTEGER NOT NULL,
    expires_at REAL,
    updated_at REAL    NOT NULL,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID;
CREATE INDEX pf_records_scope ON pf_records (tenant, user_id, session_id);
CREATE INDEX pf_records_expiry ON pf_records (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE pf_streams (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE,
    tenant     TEXT    NOT NULL,
    user_id    TEXT,
    session_id TEXT,
    last_seq   INTEGER NOT NULL,
    expires_at REAL
);
CREATE INDEX pf_streams_scope ON pf_streams (tenant, user_id, session_id);
CREATE INDEX pf_streams_expiry ON pf_streams (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE pf_entries (
    stream_id       INTEGER NOT NULL,
    seq             INTEGER NOT NULL,
    value           BLOB    NOT NULL,
    ts              REAL    NOT NULL,
    idempotency_key TEXT,
    PRIMARY KEY (stream_id, seq)
) WITHOUT ROWID;
CREATE TABLE pf_idempotency (
    stream_id INTEGER NOT NULL,
    key       TEXT    NOT NULL,
    seq       INTEGER NOT NULL,
    PRIMARY KEY (stream_id, key)
) WITHOUT ROWID;
"""


type Fn = Callable[[sqlite3.Connection, float], object]
"""An operation: run on the connection at the batch's store-clock time."""


@dataclass(slots=True)
class Op:
    fn: Fn
    writes: bool
    loop: asyncio.AbstractEventLoop | None
    future: asyncio.Future[Any] | None


@dataclass(slots=True)
class Stop:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


def _settle(items: Sequence[tuple[asyncio.Future[Any], object, BaseException | None]]) -> None:
    for future, result, exc in items:
        if future.done():  # the caller was cancelled: it no longer waits
            continue
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)


class Writer:
    """The thread that owns the connection and commits queued operations in groups."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str,
        clock: Callable[[], float],
        busy_timeout_s: float,
        purge_every_s: float,
        purge: Fn,
    ) -> None:
        self.path = path
        self.synchronous = synchronous
        self.clock = clock
        self.busy_timeout_s = busy_timeout_s
        self.purge_every_s = purge_every_s
        self.purge = purge
        self.queue: queue.SimpleQueue[Op | Stop] = queue.SimpleQueue()
        self.commits = 0  # a test hook: how many transactions committed
        self.thread = threading.Thread(
            target=self._main, name=f"penguiflow-sqlite:{path}", daemon=True
        )
        self.conn: sqlite3.Connection | None = None

    # ----------------------------------------------------------------------- in the thread
    def _main(self) -> None:
        next_purge = time.monotonic() + self.purge_every_s
        stop: Stop | None = None
        while stop is None:
            timeout = max(0.0, next_purge - time.monotonic())
            try:
                first = self.queue.get(timeout=timeout)
            except queue.Empty:
                first = Op(self.purge, True, None, None)
            batch: list[Op] = []
            item: Op | Stop = first
            while True:
                if isinstance(item, Stop):
                    stop = item
                    break
                batch.append(item)
                if len(batch) >= _MAX_BATCH:
                    break
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    break
            if time.monotonic() >= next_purge:
                next_purge = time.monotonic() + self.purge_every_s
                if not any(op.future is None for op in batch):
                    batch.append(Op(self.purge, True, None, None))
            if batch:
                self._run(batch)
        if self.conn is not None:
            try:
                self.conn.close()
            except sqlite3.Error:  # pragma: no cover - closing a healthy connection
                pass
        try:
            stop.loop.call_soon_threadsafe(_settle, [(stop.future, None, None)])
        except RuntimeError:  # pragma: no cover - the loop closed first
            pass

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        found: int = conn.execute("PRAGMA user_version").fetchone()[0]
        if found == SCHEMA_VERSION:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            found = conn.execute("PRAGMA user_version").fetchone()[0]  # another process?
            if found > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} has schema version {found}, but this penguiflow-core "
                    f"supports versions up to {SCHEMA_VERSION}: upgrade penguiflow-core"
                )
            if found == 0:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _run(self, batch: list[Op]) -> None:
        outcomes: list[tuple[object, BaseException | None]] = []
        try:
            if self.conn is None:
                self.conn = self._connect()
            conn = self.conn
            writes = any(op.writes for op in batch)
            # One operation alone needs no savepoint: the transaction is its boundary.
            alone = len(batch) == 1
            conn.execute("BEGIN IMMEDIATE" if writes else "BEGIN")
            try:
                for op in batch:
                    outcomes.append(self._run_one(conn, op, savepoint=not alone))
                if alone and outcomes[0][1] is not None:
                    conn.execute("ROLLBACK")
                else:
                    conn.execute("COMMIT")
                    self.commits += 1
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except Exception as exc:  # the transaction failed as a whole: every operation did
            error = self._map(exc)
            outcomes = [(None, error)] * len(batch)
        self._deliver(batch, outcomes)

    def _run_one(
        self, conn: sqlite3.Connection, op: Op, *, savepoint: bool
    ) -> tuple[object, BaseException | None]:
        savepoint = savepoint and op.writes  # a read changes nothing to take back
        if savepoint:
            conn.execute("SAVEPOINT op")
        try:
            result = op.fn(conn, self.clock())
        except Exception as exc:
            if savepoint:
                conn.execute("ROLLBACK TO op")
                conn.execute("RELEASE op")
            if op.future is None:
                _logger.warning("SQLite store %s: purging expired items failed", self.path)
            return None, self._map(exc)
        if savepoint:
            conn.execute("RELEASE op")
        return result, None

    def _map(self, exc: Exception) -> Exception:
        if isinstance(exc, sqlite3.Error):
            error = StoreUnavailable(f"SQLite store {self.path}: {exc}", original_exc=exc)
            error.__cause__ = exc
            return error
        return exc

    def _deliver(
        self, batch: list[Op], outcomes: list[tuple[object, BaseException | None]]
    ) -> None:
        by_loop: dict[
            asyncio.AbstractEventLoop,
            list[tuple[asyncio.Future[Any], object, BaseException | None]],
        ] = {}
        for op, (result, exc) in zip(batch, outcomes, strict=True):
            if op.loop is not None and op.future is not None:
                by_loop.setdefault(op.loop, []).append((op.future, result, exc))
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, items)
            except RuntimeError:  # that loop is closed: nobody is waiting any more
                pass
