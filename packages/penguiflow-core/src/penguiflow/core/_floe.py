"""Floes (bounded edges) and the inbox that merges a node's incoming floes in arrival order.

Each edge is bounded on its own (a producer blocks while *its* edge is full), while the node's
workers take items from all incoming edges in the order they arrived. Items carry their trace key so
that the runtime can drop one trace's queued work without touching the rest.

While a trace runs at a node, later messages of that trace are parked in its *lane* behind it (one
trace, one message at a time). Parking never holds a worker, and a lane is bounded like an edge: a
producer of that trace waits while the lane is full, so a trace whose consumer stalls fills only
its own lane and every other trace keeps flowing.
"""

from __future__ import annotations

import asyncio
import sys
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = ["Floe", "Inbox", "Item"]

Item = tuple["Floe", "str | None", Any]
"""``(edge it came through, trace key, message)``."""


class Floe:
    """One bounded edge ``source -> target``."""

    __slots__ = ("_putters", "inbox", "limit", "maxsize", "size", "source", "target")

    def __init__(self, source: str, target: str, inbox: Inbox, maxsize: int) -> None:
        self.source: str = source
        self.target: str = target
        self.inbox: Inbox = inbox
        self.maxsize: int = maxsize
        self.limit: int = maxsize if maxsize > 0 else sys.maxsize
        """``maxsize`` as a plain bound (``sys.maxsize`` when unbounded): one compare per put."""
        self.size: int = 0
        self._putters: deque[asyncio.Future[None]] = deque()

    def full(self) -> bool:
        """Whether this edge is at its bound."""
        return self.size >= self.limit

    def full_for(self, key: str | None) -> bool:
        """Whether a put of trace ``key`` would have to wait (edge full, or that trace's lane)."""
        if self.size >= self.limit:
            return True
        lane = self.inbox.lanes.get(key)
        return lane is not None and len(lane) >= self.limit

    async def put(self, key: str | None, item: Any) -> None:
        """Enqueue ``item``; waits while this edge or trace ``key``'s lane at the target is full."""
        await self.wait_for_space(key)
        self.put_nowait(key, item)

    async def wait_for_space(self, key: str | None) -> None:
        """Return once a put of trace ``key`` would not wait."""
        while True:
            if self.size >= self.limit:
                await _wait(self._putters, self.wake_putter)
            elif self.inbox.lane_full(key, self.limit):
                await self.inbox.wait_for_lane(key)
            else:
                return

    def put_nowait(self, key: str | None, item: Any) -> None:
        """Enqueue without waiting; raises ``asyncio.QueueFull`` when a put would wait."""
        if self.full_for(key):
            raise asyncio.QueueFull(f"edge {self.source} -> {self.target} is full")
        self.size += 1
        self.inbox.push((self, key, item))

    def offer(self, key: str | None, item: Any) -> bool:
        """Enqueue when a put would not wait; False (nothing enqueued) otherwise."""
        if self.size >= self.limit:
            return False
        lane = self.inbox.lanes.get(key)
        if lane is not None and len(lane) >= self.limit:
            return False
        self.size += 1
        self.inbox.push((self, key, item))
        return True

    def push_unbounded(self, key: str | None, item: Any) -> None:
        """Enqueue ignoring the bound (for a controller's self-edge only).

        That edge holds at most one hop per live trace and is drained only by the node that would
        wait to put on it, so waiting there could deadlock.
        """
        self.size += 1
        self.inbox.push((self, key, item))

    def freed(self) -> None:
        """One item of this edge left the inbox."""
        self.size -= 1
        if self._putters:
            self.wake_putter()

    def wake_putter(self) -> None:
        """Wake the first producer waiting for space."""
        while self._putters:
            waiter = self._putters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def __repr__(self) -> str:
        return f"Floe({self.source!r} -> {self.target!r}, size={self.size})"


class Inbox:
    """All incoming floes of one node, drained in arrival order by the node's workers."""

    __slots__ = (
        "_getters",
        "_lane_waiters",
        "_watchers",
        "grow",
        "items",
        "lanes",
        "starting",
        "waiting",
    )

    def __init__(self) -> None:
        self.lanes: dict[str | None, deque[Any] | None] = {}
        """Traces running at this node, with the messages parked behind each (None: none yet)."""
        self._lane_waiters: dict[str | None, deque[asyncio.Future[None]]] = {}
        self.waiting: int = 0
        """Consumers inside ``get()`` (idle workers, including ones woken but not yet resumed)."""
        self.starting: int = 0
        """Workers spawned but not yet running."""
        self.grow: Callable[[], None] | None = None
        """Called when an item waits and no consumer is idle: the node may add a worker."""
        self.items: deque[Item] = deque()
        self._getters: deque[asyncio.Future[None]] = deque()
        self._watchers: list[asyncio.Future[None]] = []

    def __len__(self) -> int:
        return len(self.items)

    # ------------------------------------------------------------------ lanes
    def park(self, key: str | None, message: Any) -> None:
        """Queue ``message`` behind the running message of its trace."""
        lane = self.lanes[key]
        if lane is None:
            lane = self.lanes[key] = deque()
        lane.append(message)

    def unpark(self, key: str | None) -> Any:
        """Take the next parked message of ``key`` (the caller checked that there is one)."""
        message = self.lanes[key].popleft()  # pyright: ignore[reportOptionalMemberAccess]
        if key in self._lane_waiters:
            self._wake_lane(key, everyone=False)
        return message

    def close_lane(self, key: str | None) -> None:
        """The trace no longer runs here; producers waiting on its lane may go on."""
        del self.lanes[key]
        if key in self._lane_waiters:
            self._wake_lane(key, everyone=True)

    def drop_parked(self, key: str) -> int:
        """Forget the parked messages of ``key`` (its trace is cancelled); returns the count."""
        lane = self.lanes.get(key)
        if not lane:
            return 0
        count = len(lane)
        lane.clear()
        if key in self._lane_waiters:
            self._wake_lane(key, everyone=True)
        return count

    def lane_full(self, key: str | None, limit: int) -> bool:
        """Whether trace ``key`` has ``limit`` messages parked here."""
        lane = self.lanes.get(key)
        return lane is not None and len(lane) >= limit

    async def wait_for_lane(self, key: str | None) -> None:
        """Wait until a parked message of ``key`` is taken (or its lane closes)."""
        waiters = self._lane_waiters.setdefault(key, deque())
        try:
            await _wait(waiters, lambda: self._wake_lane(key, everyone=False))
        finally:
            if not waiters and self._lane_waiters.get(key) is waiters:
                del self._lane_waiters[key]

    def _wake_lane(self, key: str | None, *, everyone: bool) -> None:
        waiters = self._lane_waiters.get(key)
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                if not everyone:
                    break
        if not waiters:
            self._lane_waiters.pop(key, None)

    def push(self, item: Item) -> None:
        """Append an item (space on its floe was already reserved) and wake one consumer."""
        self.items.append(item)
        if self._getters:
            self._wake_getter()
        elif not self.waiting and not self.starting and self.grow is not None:
            self.grow()
        if self._watchers:
            watchers, self._watchers = self._watchers, []
            for waiter in watchers:
                if not waiter.done():
                    waiter.set_result(None)

    def get_nowait(self) -> Item:
        """Take the oldest item; raises ``asyncio.QueueEmpty`` when there is none."""
        if not self.items:
            raise asyncio.QueueEmpty
        return self._take()

    def _take(self) -> Item:
        items = self.items
        item = items.popleft()
        item[0].freed()
        if items and not self.waiting and not self.starting and self.grow is not None:
            self.grow()  # more work queued and nobody idle to take it
        return item

    async def get(self) -> Item:
        """Take the oldest item, waiting for one to arrive."""
        items = self.items
        if not items:
            self.waiting += 1
            try:
                while not items:
                    waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                    self._getters.append(waiter)
                    try:
                        await waiter
                    except BaseException:
                        _leave(self._getters, waiter, self._wake_getter)
                        raise
            finally:
                self.waiting -= 1
        return self._take()

    def discard_all(self) -> None:
        """Drop everything queued (the flow stopped)."""
        while self.items:
            self.items.popleft()[0].freed()

    def take_first(self, match: Callable[[Item], bool]) -> Item | None:
        """Remove and return the oldest item that satisfies ``match``, or None."""
        for index, item in enumerate(self.items):
            if match(item):
                del self.items[index]
                item[0].freed()
                return item
        return None

    async def get_matching(self, match: Callable[[Item], bool]) -> Item:
        """Take the oldest item that satisfies ``match``, waiting for one to arrive."""
        while True:
            item = self.take_first(match)
            if item is not None:
                return item
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._watchers.append(waiter)
            try:
                await waiter
            finally:
                if not waiter.done():
                    waiter.cancel()
                    self._watchers.remove(waiter)

    def drop_trace(self, key: str) -> list[Item]:
        """Remove every queued item of trace ``key``; returns them."""
        if not self.items:
            return []
        kept: deque[Item] = deque()
        dropped: list[Item] = []
        for item in self.items:
            (dropped if item[1] == key else kept).append(item)
        if dropped:
            # In place: consumers waiting in get() hold a reference to this deque.
            self.items.clear()
            self.items.extend(kept)
            for item in dropped:
                item[0].freed()
        return dropped

    def _wake_getter(self) -> None:
        while self._getters:
            waiter = self._getters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


async def _wait(waiters: deque[asyncio.Future[None]], wake: Callable[[], None]) -> None:
    """Wait in line on ``waiters`` until woken; a woken waiter that leaves passes the wake on."""
    waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    waiters.append(waiter)
    try:
        await waiter
    except BaseException:
        _leave(waiters, waiter, wake)
        raise


def _leave(
    waiters: deque[asyncio.Future[None]], waiter: asyncio.Future[None], wake: Callable[[], None]
) -> None:
    """A waiter gives up: forget it, or pass on the wake-up it already received."""
    if waiter.done() and not waiter.cancelled():
        wake()
        return
    waiter.cancel()
    try:
        waiters.remove(waiter)
    except ValueError:
        pass
