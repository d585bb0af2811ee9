"""The replay log of a session: its retained updates, and the store's log behind them.

Cursors (``since_id``) resolve against it and lagging subscribers read from it. Without a store
it is a bounded memory buffer (``replay_buffer_size``); with one, a :class:`LogSource` (the
store's ``sessions.updates/{sid}`` stream) serves what the buffer no longer holds, including
the updates of an earlier process.
"""

from __future__ import annotations

import re
from collections import deque
from typing import Protocol

from ._errors import UnknownCursor
from ._updates import StateUpdate, UpdateRow

__all__ = ["PAGE", "LogSource", "ReplayLog"]

_CURSOR = re.compile(r"[0-9]{1,18}")
PAGE = 256  # updates read from a LogSource at once


class LogSource(Protocol):
    """Where a replay log finds updates its memory buffer no longer holds (a store's log)."""

    async def oldest(self) -> int:
        """The oldest seq the source still holds (``head + 1`` when it holds none)."""
        ...

    async def read(self, after: int, limit: int) -> list[StateUpdate]:
        """Up to ``limit`` updates with ``seq > after``, ascending."""
        ...


class ReplayLog:
    """The retained updates of a session, oldest first; their seqs are contiguous.

    It keeps each update as an :class:`UpdateRow` (a plain tuple of its fields, a third of a
    model's size) and rebuilds an equal :class:`StateUpdate` when one is read back.
    """

    def __init__(self, maxlen: int | None) -> None:
        self._items: deque[UpdateRow] = deque(maxlen=maxlen)
        self.head: int = 0
        """The newest seq appended (0 before any)."""
        self.source: LogSource | None = None
        """The store's log behind the memory buffer, if the session has a store."""

    def continue_from(self, head: int, source: LogSource) -> None:
        """Continue a log whose first ``head`` updates are in ``source`` (a restart)."""
        self.head = head
        self.source = source

    def append(self, update: StateUpdate) -> None:
        """Keep ``update`` (the oldest falls off once the log is full)."""
        self._items.append(UpdateRow.of(update))
        self.head = update.seq

    @property
    def oldest(self) -> int:
        """The oldest retained seq (``head + 1`` when nothing is retained)."""
        return self._items[0].seq if self._items else self.head + 1

    def get(self, seq: int) -> StateUpdate | None:
        """The update with ``seq`` if retained."""
        index = seq - self.oldest
        return self._items[index].update() if 0 <= index < len(self._items) else None

    def resolve(self, cursor: str) -> int:
        """The seq a ``since_id`` stands for; ``UnknownCursor`` unless it can be replayed."""
        if not _CURSOR.fullmatch(cursor):
            raise UnknownCursor(
                f"since_id {cursor!r} is not an update_id; pass one a session gave, or '0'",
                cursor=cursor,
                head=str(self.head),
            )
        seq = int(cursor)
        if seq > self.head:
            raise UnknownCursor(
                f"since_id {cursor!r} is ahead of the session's newest update {self.head}; "
                "subscribe without since_id to follow live updates",
                cursor=cursor,
                head=str(self.head),
            )
        if seq < self.oldest - 1 and self.source is None:
            raise self._gone(cursor, self.oldest)
        return seq

    async def aresolve(self, cursor: str) -> int:
        """:meth:`resolve`, also asking the store's log for cursors older than the memory."""
        seq = self.resolve(cursor)
        if seq < self.oldest - 1:
            assert self.source is not None
            oldest = min(await self.source.oldest(), self.oldest)
            if seq < oldest - 1:
                raise self._gone(cursor, oldest)
        return seq

    def _gone(self, cursor: str, oldest: int) -> UnknownCursor:
        return UnknownCursor(
            f"since_id {cursor!r} is no longer retained (the oldest kept update is "
            f"{oldest}); start over without since_id or raise replay_buffer_size "
            "(with a store: its retention of sessions.updates/)",
            cursor=cursor,
            head=str(self.head),
        )

    async def fetch(self, after: int, limit: int) -> list[StateUpdate]:
        """Up to ``limit`` retained updates with ``seq > after`` (memory, else the store)."""
        out: list[StateUpdate] = []
        seq = after
        while seq < self.head and len(out) < limit:
            update = self.get(seq + 1)
            if update is None:
                if self.source is None:
                    break
                older = await self.source.read(seq, min(PAGE, limit - len(out)))
                older = [u for u in older if u.seq <= self.head]
                if not older or older[0].seq != seq + 1:
                    break
                out.extend(older)
                seq = older[-1].seq
                continue
            out.append(update)
            seq = update.seq
        return out

    async def page(
        self, since_id: str | None, *, task_id: str | None, limit: int
    ) -> list[StateUpdate]:
        """The first ``limit`` retained updates after ``since_id`` (None: the oldest)."""
        if since_id is not None:
            seq = await self.aresolve(since_id)
        elif self.source is not None:
            seq = min(await self.source.oldest(), self.oldest) - 1
        else:
            seq = self.oldest - 1
        page: list[StateUpdate] = []
        while len(page) < limit:
            batch = await self.fetch(seq, PAGE)
            if not batch:
                break
            seq = batch[-1].seq
            page.extend(u for u in batch if task_id is None or u.task_id == task_id)
        return page[:limit]
