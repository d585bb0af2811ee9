"""The Rookery sink: results of every trace, fetched in arrival order or per trace.

Each trace has its own bounded buffer, so a caller that stops reading its trace stalls only that
trace's egress (its lane at the egress node), never another trace's. An item is handed straight to a
waiting caller when there is one, so a steady request/response load never buffers at all.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Collection
from typing import Any

__all__ = ["ANY_TRACE", "Rookery"]


class _AnyTrace:
    def __repr__(self) -> str:
        return "ANY_TRACE"


ANY_TRACE: Any = _AnyTrace()
"""Sentinel key: take the oldest item of any trace."""

Entry = tuple[int, str, Any]  # (arrival seq, source node name, item)
Delivery = tuple[str, "str | None", Any]  # (source node name, trace key, item)


class _AnyGetter:
    __slots__ = ("future", "sources")

    def __init__(self, future: asyncio.Future[Delivery], sources: Collection[str] | None):
        self.future = future
        self.sources = sources


class Rookery:
    """Per-trace bounded result buffers plus a global arrival order."""

    __slots__ = (
        "_any_getters",
        "_buffers",
        "_order",
        "_putters",
        "_seq",
        "_stale",
        "_trace_getters",
        "maxsize",
    )

    def __init__(self, maxsize: int) -> None:
        self.maxsize: int = maxsize
        self._buffers: dict[str | None, deque[Entry]] = {}
        self._order: deque[tuple[int, str | None]] = deque()
        self._stale = 0
        self._seq = 0
        self._trace_getters: dict[str | None, deque[asyncio.Future[Delivery]]] = {}
        self._any_getters: deque[_AnyGetter] = deque()
        self._putters: dict[str | None, deque[asyncio.Future[None]]] = {}

    # ----------------------------------------------------------------- sizes
    def __len__(self) -> int:
        return sum(len(b) for b in self._buffers.values())

    def depth(self, key: str | None) -> int:
        """Items buffered for trace ``key``."""
        buffer = self._buffers.get(key)
        return len(buffer) if buffer else 0

    def waiting(self, key: str | None) -> bool:
        """Whether a caller waits for an item of trace ``key``."""
        return key in self._trace_getters

    def tracked_keys(self) -> int:
        """How many traces currently hold buffers, waiters or blocked producers (leak checks)."""
        return len(self._buffers.keys() | self._trace_getters.keys() | self._putters.keys())

    def _full(self, key: str | None) -> bool:
        if self.maxsize <= 0:
            return False
        buffer = self._buffers.get(key)
        return buffer is not None and len(buffer) >= self.maxsize

    # ------------------------------------------------------------------ put
    async def put(self, source: str, key: str | None, item: Any) -> None:
        """Deliver ``item``; waits while trace ``key``'s buffer is full and nobody is reading."""
        await self.wait_for_space(key)
        self.put_nowait(source, key, item)

    def full(self, key: str | None) -> bool:
        """Whether a put for trace ``key`` would have to wait."""
        return self._full(key)

    async def wait_for_space(self, key: str | None) -> None:
        """Return once trace ``key``'s buffer has room."""
        while self._full(key):
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            putters = self._putters.setdefault(key, deque())
            putters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._wake_putter(key)
                else:
                    waiter.cancel()
                    _discard(putters, waiter)
                    if not putters:
                        self._putters.pop(key, None)
                raise

    def put_nowait(self, source: str, key: str | None, item: Any) -> None:
        """Deliver without waiting; raises ``asyncio.QueueFull`` when the trace's buffer is full."""
        if not self.offer(source, key, item):
            raise asyncio.QueueFull(f"Rookery buffer of trace {key!r} is full")

    def offer(self, source: str, key: str | None, item: Any) -> bool:
        """Deliver without waiting when there is room (or a waiting caller); False otherwise."""
        getters = self._trace_getters.get(key)
        while getters:
            future = getters.popleft()
            if not getters:
                del self._trace_getters[key]
            if not future.done():
                future.set_result((source, key, item))
                return True
        if self._any_getters:
            for getter in self._any_getters:
                if not getter.future.done() and (
                    getter.sources is None or source in getter.sources
                ):
                    self._any_getters.remove(getter)
                    getter.future.set_result((source, key, item))
                    return True
        buffer = self._buffers.get(key)
        if buffer is None:
            buffer = self._buffers[key] = deque()
        elif 0 < self.maxsize <= len(buffer):
            return False
        seq = self._seq = self._seq + 1
        buffer.append((seq, source, item))
        self._order.append((seq, key))
        return True

    # ------------------------------------------------------------------ get
    def get_nowait(
        self, key: str | None = ANY_TRACE, sources: Collection[str] | None = None
    ) -> Delivery:
        """Take the oldest matching item; raises ``asyncio.QueueEmpty`` when there is none."""
        delivery = self.poll(key, sources)
        if delivery is None:
            raise asyncio.QueueEmpty
        return delivery

    def poll(
        self, key: str | None = ANY_TRACE, sources: Collection[str] | None = None
    ) -> Delivery | None:
        """Take the oldest matching item, or None when there is none."""
        if key is not ANY_TRACE:  # the trace-scoped fetch of every stream chunk: kept inline
            buffer = self._buffers.get(key)
            if not buffer:
                return None
            _, source, item = buffer.popleft()
            if not buffer:
                del self._buffers[key]
            if key in self._putters:
                self._wake_putter(key)
            self._stale += 1
            if self._stale > 64 and self._stale * 2 > len(self._order):
                self._compact()
            return source, key, item
        if sources is not None:
            return self._take_from_sources(sources)
        order = self._order
        while order:
            seq, key = order.popleft()
            buffer = self._buffers.get(key)
            if buffer and buffer[0][0] == seq:
                _, source, item = buffer.popleft()
                self._after_take(key, buffer)
                return source, key, item
            self._stale -= 1
        return None

    async def get(
        self, key: str | None = ANY_TRACE, sources: Collection[str] | None = None
    ) -> Delivery:
        """Take the oldest matching item, waiting for one."""
        delivery = self.poll(key, sources)
        if delivery is not None:
            return delivery
        future: asyncio.Future[Delivery] = asyncio.get_running_loop().create_future()
        if key is ANY_TRACE:
            getter = _AnyGetter(future, sources)
            self._any_getters.append(getter)

            def forget() -> None:
                _discard(self._any_getters, getter)

        else:
            getters = self._trace_getters.setdefault(key, deque())
            getters.append(future)

            def forget() -> None:
                _discard(getters, future)
                if not getters and self._trace_getters.get(key) is getters:
                    del self._trace_getters[key]

        try:
            return await future
        except BaseException:
            if future.done() and not future.cancelled() and future.exception() is None:
                # An item was handed to us but we are leaving: put it back in front.
                self._requeue(*future.result())
            else:
                future.cancel()
                forget()
            raise

    def _take_from_sources(self, sources: Collection[str]) -> Delivery | None:
        best: tuple[int, str | None, int] | None = None
        for key, buffer in self._buffers.items():
            for index, (seq, source, _) in enumerate(buffer):
                if source in sources:
                    if best is None or seq < best[0]:
                        best = (seq, key, index)
                    break
        if best is None:
            return None
        _, key, index = best
        buffer = self._buffers[key]
        _, source, item = buffer[index]
        del buffer[index]
        self._taken_out_of_order(key, buffer)
        return source, key, item

    def _taken_out_of_order(self, key: str | None, buffer: deque[Entry]) -> None:
        self._stale += 1
        self._after_take(key, buffer)
        if self._stale > 64 and self._stale * 2 > len(self._order):
            self._compact()

    def _compact(self) -> None:
        """Rebuild the arrival order from the live entries (drops stale ones)."""
        live = sorted((seq, k) for k, b in self._buffers.items() for seq, _, _ in b)
        self._order = deque(live)
        self._stale = 0

    def _after_take(self, key: str | None, buffer: deque[Entry]) -> None:
        if not buffer:
            del self._buffers[key]
        if key in self._putters:
            self._wake_putter(key)

    def _requeue(self, source: str, key: str | None, item: Any) -> None:
        buffer = self._buffers.setdefault(key, deque())
        buffer.appendleft((0, source, item))
        self._order.appendleft((0, key))

    def _wake_putter(self, key: str | None) -> None:
        putters = self._putters.get(key)
        while putters:
            waiter = putters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break
        if not putters:
            self._putters.pop(key, None)

    # ------------------------------------------------------------ trace end
    def drop_trace(self, key: str) -> int:
        """Forget trace ``key``'s buffered items; returns how many were dropped."""
        buffer = self._buffers.pop(key, None)
        if not buffer:
            return 0
        self._stale += len(buffer)
        return len(buffer)

    def fail_waiters(self, key: str | None, exc: BaseException) -> int:
        """Raise ``exc`` in every caller waiting on trace ``key``; returns how many there were."""
        getters = self._trace_getters.pop(key, None)
        count = 0
        for future in getters or ():
            if not future.done():
                future.set_exception(exc)
                count += 1
        return count

    def fail_all(self, exc_factory: Callable[[], BaseException]) -> None:
        """Raise a fresh exception in every waiting caller (used when the flow stops)."""
        for key in list(self._trace_getters):
            self.fail_waiters(key, exc_factory())
        while self._any_getters:
            getter = self._any_getters.popleft()
            if not getter.future.done():
                getter.future.set_exception(exc_factory())


def _discard(items: deque[Any], value: Any) -> None:
    try:
        items.remove(value)
    except ValueError:
        pass
