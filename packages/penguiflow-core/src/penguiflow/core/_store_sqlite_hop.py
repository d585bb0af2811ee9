"""The lifecycle half of ``SQLiteDurableStore``: options, the writer thread, the one hop.

``SQLiteHop`` is the store's base class (``_store_sqlite`` adds the operations). Entering it
starts the writer thread (``_store_sqlite_writer``), which opens the file and creates or checks
the schema; ``_call`` queues one operation for the thread and awaits its future; closing lets
the thread finish what is queued, close the connection and end.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal, Self

from ._durable import DEFAULT_MAX_VALUE_BYTES, check_options
from ._errors import StoreClosed
from ._store_history import StoreBase
from ._store_sqlite_sql import purge
from ._store_sqlite_writer import Fn, Op, Stop, Writer

__all__ = ["SQLiteHop"]


class SQLiteHop(StoreBase):
    """The lifecycle half of ``SQLiteDurableStore`` (see the module docstring)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        clock: Callable[[], float] = time.time,
        retention: Mapping[str, float] | None = None,
        busy_timeout_s: float = 5.0,
        purge_every_s: float = 60.0,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
    ) -> None:
        """Check the options; the store runs once entered (prefer ``open``)."""
        if isinstance(path, os.PathLike):
            path = os.fspath(path)
        if not isinstance(path, str) or not path:  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ValueError(f'path must be a file path or ":memory:", got {path!r}')
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f'synchronous must be "NORMAL" or "FULL", got {synchronous!r}')
        if not math.isfinite(busy_timeout_s) or busy_timeout_s < 0:
            raise ValueError(f"busy_timeout_s must be >= 0 seconds, got {busy_timeout_s}")
        if not math.isfinite(purge_every_s) or purge_every_s <= 0:
            raise ValueError(f"purge_every_s must be > 0 seconds, got {purge_every_s}")
        table = check_options(max_value_bytes, retention)
        self._path = path
        self._clock = clock
        self._retention = table
        self._max_value_bytes = max_value_bytes
        self._writer = Writer(
            path,
            synchronous=synchronous,
            clock=clock,
            busy_timeout_s=busy_timeout_s,
            purge_every_s=purge_every_s,
            purge=purge,
        )
        self._state: Literal["new", "open", "closed"] = "new"
        self._closing: asyncio.Future[Any] | None = None

    async def __aenter__(self) -> Self:
        """Start the store (if not started yet) and return it."""
        if self._state == "new":
            self._state = "open"
            self._writer.thread.start()
            try:
                await self._call(lambda conn, now: None, writes=False)
            except BaseException:
                await self.aclose()
                raise
        elif self._state == "closed":
            raise StoreClosed(f"SQLite store {self._path} is closed; open a new one")
        return self

    async def aclose(self) -> None:
        """Finish the queued operations, close the connection and join the writer thread.

        Idempotent; any later call raises ``StoreClosed``.
        """
        if self._state == "new":
            self._state = "closed"
            return
        self._state = "closed"
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_future()
            self._writer.queue.put(Stop(asyncio.get_running_loop(), self._closing))
        await asyncio.shield(self._closing)
        self._writer.thread.join()  # it has closed the connection: only its return is left

    # ------------------------------------------------------------------------ the hop
    async def _call(self, fn: Fn, *, writes: bool) -> Any:
        if self._state != "open":
            raise StoreClosed(
                f"SQLite store {self._path} is closed; open a new one"
                if self._state == "closed"
                else "the store is not open: use `async with SQLiteDurableStore.open(path)`"
            )
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._writer.queue.put(Op(fn, writes, loop, future))
        return await future
