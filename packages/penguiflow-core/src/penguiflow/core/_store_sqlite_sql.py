"""The SQL and row helpers of ``SQLiteDurableStore``'s operations (run on the writer thread).

Column lists and conditions the statements share, rows turned into ``Record``s and ``Scope``s,
and the statements several operations run: a live record or stream, dropping streams, purging.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from ._durable import Record, Scope

__all__ = [
    "LIVE",
    "RECORD_COLUMNS",
    "SELECTED",
    "Row",
    "drop_streams",
    "filter_args",
    "live",
    "live_record",
    "live_stream",
    "prefix_end",
    "purge",
    "record",
    "scope_of",
]

RECORD_COLUMNS = "key, value, tenant, user_id, session_id, version, expires_at, updated_at"
LIVE = "(expires_at IS NULL OR expires_at > ?)"
SELECTED = "tenant = ? AND (? IS NULL OR user_id = ?) AND (? IS NULL OR session_id = ?)"

type Row = tuple[Any, ...]


def filter_args(scope: Scope) -> tuple[str, str | None, str | None, str | None, str | None]:
    return (scope.tenant, scope.user, scope.user, scope.session, scope.session)


def scope_of(row: Row, at: int) -> Scope:
    return Scope(row[at], row[at + 1], row[at + 2])


def live(expires_at: float | None, now: float) -> bool:
    return expires_at is None or now < expires_at


def record(namespace: str, row: Row) -> Record:
    return Record(
        namespace=namespace,
        key=bytes(row[0]).decode(),
        value=bytes(row[1]),
        scope=scope_of(row, 2),
        version=row[5],
        expires_at=row[6],
        updated_at=row[7],
    )


def prefix_end(prefix: bytes) -> bytes | None:
    # The smallest byte string above every string starting with ``prefix``. UTF-8 never holds
    # 0xFF, so incrementing the last byte always works for a non-empty prefix.
    return prefix[:-1] + bytes([prefix[-1] + 1]) if prefix else None


def live_record(conn: sqlite3.Connection, namespace: str, key: bytes, now: float) -> Row | None:
    return conn.execute(
        f"SELECT {RECORD_COLUMNS} FROM pf_records WHERE namespace = ? AND key = ? AND {LIVE}",
        (namespace, key, now),
    ).fetchone()


def live_stream(conn: sqlite3.Connection, stream: str, now: float) -> Row | None:
    return conn.execute(
        f"SELECT id, tenant, user_id, session_id FROM pf_streams WHERE name = ? AND {LIVE}",
        (stream, now),
    ).fetchone()


def drop_streams(conn: sqlite3.Connection, where: str, args: tuple[object, ...]) -> int:
    ids = f"SELECT id FROM pf_streams WHERE {where}"
    conn.execute(f"DELETE FROM pf_entries WHERE stream_id IN ({ids})", args)
    conn.execute(f"DELETE FROM pf_idempotency WHERE stream_id IN ({ids})", args)
    return conn.execute(f"DELETE FROM pf_streams WHERE {where}", args).rowcount


def purge(conn: sqlite3.Connection, now: float) -> int:
    expired = "expires_at IS NOT NULL AND expires_at <= ?"
    count = conn.execute(f"DELETE FROM pf_records WHERE {expired}", (now,)).rowcount
    return count + drop_streams(conn, expired, (now,))
