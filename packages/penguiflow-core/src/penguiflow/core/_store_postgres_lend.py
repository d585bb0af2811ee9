"""``Lender``: hands ``PostgresDurableStore``'s operations the asyncpg pool's connections.

An operation borrows a connection and gives it back when it has finished. asyncpg's
``Pool.release`` runs in a task of its own (``asyncio.shield``), so each acquire/release pair
costs a few event-loop iterations, about 50 µs per operation here (a ``SELECT 1`` takes 47 µs
on a bare connection and 100 µs through the pool). The lender keeps connections it got from the
pool, idle ones on a stack, and lends them again without going back to the pool; one idle
longer than ``MAX_IDLE_S`` does go back (so the pool still checks and retires idle
connections). At most ``limit`` connections are out of the pool at once; further borrowers wait
in order until one is given back.

A connection whose operation failed or was cancelled goes back to the pool (``drop``), which
waits for a cancelled query to stop and rolls back whatever it left open; the lender then takes
a fresh one when it needs to. Once ``close`` has begun, every connection given back returns to
the pool, so ``Pool.close`` can finish.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncpg

__all__ = ["Lender"]

type _Conn = asyncpg.pool.PoolConnectionProxy[asyncpg.Record]

MAX_IDLE_S = 30.0
"""A connection idle here longer goes back to the pool before it is lent again (the pool then
checks it and recycles it after ``max_inactive_connection_lifetime``, as without a lender)."""


class Lender:
    """Lends the connections of one asyncpg pool, keeping the idle ones."""

    __slots__ = ("_closing", "_idle", "_limit", "_out", "_pool", "_waiting")

    def __init__(self, pool: asyncpg.Pool[asyncpg.Record], limit: int) -> None:
        self._pool = pool
        self._limit = limit
        self._idle: list[tuple[_Conn, float]] = []  # and since when (monotonic)
        self._out = 0  # connections taken from the pool: idle here or lent
        self._waiting: deque[asyncio.Future[_Conn | None]] = deque()
        self._closing = False

    async def borrow(self) -> _Conn:
        """A connection for one operation (give it back with ``give`` or ``drop``)."""
        while True:
            if self._idle:
                conn, since = self._idle.pop()
                if time.monotonic() - since <= MAX_IDLE_S:
                    return conn
                await self.drop(conn)
                continue
            if self._out < self._limit:
                self._out += 1
                try:
                    return await self._pool.acquire()
                except BaseException:
                    self._out -= 1
                    self._wake(None)
                    raise
            waiter: asyncio.Future[_Conn | None] = asyncio.get_running_loop().create_future()
            self._waiting.append(waiter)
            try:
                conn = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():  # handed over as we were cancelled
                    handed = waiter.result()
                    if handed is None:
                        self._wake(None)  # pass the room on
                    else:
                        await self.give(handed)
                raise
            if conn is not None:
                return conn
            # None: a connection went back to the pool, so there is room to take one

    async def give(self, conn: _Conn) -> None:
        """``conn``'s operation finished cleanly: lend it again (or return it, when closing)."""
        if self._closing:
            await self.drop(conn)
            return
        if not self._wake(conn):
            now = time.monotonic()
            self._idle.append((conn, now))
            if now - self._idle[0][1] > MAX_IDLE_S:  # the bottom of the stack sat unused
                await self.drop(self._idle.pop(0)[0])

    async def drop(self, conn: _Conn) -> None:
        """Return ``conn`` to the pool (after a failed or cancelled operation, or on closing)."""
        self._out -= 1
        try:
            await self._pool.release(conn)
        finally:
            self._wake(None)

    async def close(self) -> None:
        """Return the idle connections to the pool; later ``give`` calls return theirs."""
        self._closing = True
        while self._idle:
            await self.drop(self._idle.pop()[0])

    def _wake(self, value: _Conn | None) -> bool:
        # Hand ``value`` (a connection, or None: room to take one) to the first live waiter.
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(value)
                return True
        return False
