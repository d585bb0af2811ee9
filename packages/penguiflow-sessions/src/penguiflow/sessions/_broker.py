"""Fan-out of updates to subscribers: bounded queues, lossless critical updates, replay.

One mechanism serves both the session and the standalone :class:`UpdateBroker`: a ``Hub``
offers each published update to every registered :class:`Subscription`. A subscription's queue
is bounded; when it is full a non-critical update is dropped for that subscriber (counted) and
a critical one evicts the oldest queued non-critical one. If only critical updates are queued,
a subscription of a hub with a replay log (the session's) stops queueing and reads the log from
its last delivered update instead, so it still gets every update in order; without a log
(the broker) it raises :class:`SubscriberLagged` after what it had queued. Publishing never
waits: it only appends to deques and sets events.

A session with a store gives its log a :class:`LogSource` (the store's
``sessions.updates/{sid}`` stream): cursors and lagging subscribers then read what the memory
buffer no longer holds, including updates of an earlier process, from the store.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection
from types import TracebackType
from typing import ClassVar, Self

from pydantic import BaseModel, ConfigDict

from ._errors import SessionClosed, SessionError, SubscriberLagged
from ._flag import Wakeup
from ._replay import PAGE, LogSource, ReplayLog
from ._updates import CRITICAL_UPDATE_TYPES, StateUpdate, UpdateType

__all__ = ["BrokerStatistics", "Hub", "LogSource", "ReplayLog", "Subscription", "UpdateBroker"]


class BrokerStatistics(BaseModel):
    """A frozen snapshot of an :class:`UpdateBroker`."""

    model_config: ClassVar[ConfigDict] = ConfigDict(frozen=True)

    subscribers: int
    """Subscriptions registered now."""
    published: int
    """Updates published so far."""
    dropped: int
    """Updates dropped or evicted for some subscriber so far (once per subscriber)."""


class Hub:
    """Registered subscriptions and, for a session, the replay log."""

    def __init__(self, *, queue_size: int | None, log: ReplayLog | None) -> None:
        self.queue_size: int | None = queue_size
        self.log: ReplayLog | None = log
        self.subscribers: dict[Subscription, None] = {}
        self.published: int = 0
        self.dropped: int = 0
        self.closed: bool = False

    def publish(self, update: StateUpdate, *, wake: bool = True) -> None:
        """Log ``update`` and offer it to every subscriber (``wake=False``: :meth:`wake` later)."""
        if self.log is not None:
            self.log.append(update)
        self.published += 1
        for sub in self.subscribers:
            sub._offer(update, wake)  # pyright: ignore[reportPrivateUsage]

    def wake(self) -> None:
        """Wake every subscriber waiting (for updates published with ``wake=False``)."""
        for sub in self.subscribers:
            sub._wake()  # pyright: ignore[reportPrivateUsage]

    def close(self) -> None:
        """No more updates: every subscriber ends after what it has queued."""
        self.closed = True
        for sub in self.subscribers:
            sub._wake()  # pyright: ignore[reportPrivateUsage]


class Subscription:
    """A filtered, ordered stream of updates: ``async with`` it, then iterate it.

    It is registered on entry (nothing published later is missed) and removed on exit; it is
    its own async iterator, so ``anext(sub)`` works and a later ``async for`` continues where
    the last one stopped. Iteration ends once the session closes and its last updates were
    delivered.
    """

    def __init__(
        self,
        hub: Hub,
        *,
        task_ids: Collection[str] | None,
        update_types: Collection[UpdateType | str] | None,
        since_id: str | None,
        queue_size: int | None,
    ) -> None:
        if queue_size is not None and queue_size <= 0:
            raise ValueError(f"queue_size must be a positive int or None, not {queue_size!r}")
        self._hub = hub
        self._task_ids = frozenset(task_ids) if task_ids is not None else None
        self._types = (
            frozenset(UpdateType(t) for t in update_types) if update_types is not None else None
        )
        self._since_id = since_id
        self._capacity = queue_size if queue_size is not None else hub.queue_size
        self._queue: deque[StateUpdate] = deque()
        self._wakeup = Wakeup()
        self._entered = False
        self._exited = False
        self._from_log = False  # reading the replay log instead of the queue
        self._scan = 0  # in log mode: the last seq looked at
        # In log mode after a lag, non-critical updates up to this seq were already dropped
        # (and counted) for this subscriber: only their critical neighbours are re-read.
        self._critical_only_until = 0
        self._lagged = False  # broker only: raise after the queue drains
        self._last: StateUpdate | None = None
        self._dropped = 0
        self._older: deque[StateUpdate] = deque()  # a page read from the store's log

    @property
    def dropped(self) -> int:
        """Updates dropped or evicted for this subscriber so far."""
        return self._dropped

    @property
    def last_id(self) -> str | None:
        """The ``update_id`` of the last update delivered (None: none yet)."""
        return self._last.update_id if self._last is not None else None

    async def __aenter__(self) -> Self:
        if self._entered:
            raise RuntimeError("a Subscription can be entered once; subscribe again instead")
        if self._hub.closed:
            raise SessionClosed("the session is closed; no new subscription can start")
        log = self._hub.log
        if self._since_id is not None:
            if log is None:
                raise ValueError("since_id needs a replay log; an UpdateBroker has none")
            self._scan = await log.aresolve(self._since_id)
            self._from_log = True
        self._entered = True
        self._hub.subscribers[self] = None
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._exited = True
        self._hub.subscribers.pop(self, None)
        self._queue.clear()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> StateUpdate:
        queue = self._queue
        if queue and not self._from_log:
            # An update is queued: return it without awaiting, as asyncio.Queue.get does. Only
            # a reader that must wait reaches a cancellation point (the wait below), so a
            # cancelled reader never loses an update it was handed.
            update = self._last = queue.popleft()
            return update
        if not self._entered or self._exited:
            raise SessionError("iterate a Subscription inside `async with session.subscribe():`")
        while True:
            if self._from_log:
                update = await self._next_from_log()
                if update is not None:
                    return self._deliver(update)
                # Caught up: from here on every publish reaches the queue (no await between).
                self._from_log = False
            if self._queue:
                return self._deliver(self._queue.popleft())
            if self._lagged:
                raise SubscriberLagged(
                    "this subscriber fell behind while only critical updates were queued and "
                    "the broker keeps no log; subscribe again, with a larger queue_size",
                    resume_from=self.last_id,
                )
            if self._hub.closed:
                raise StopAsyncIteration
            await self._wakeup.wait()  # the cancellation point

    def _deliver(self, update: StateUpdate) -> StateUpdate:
        self._last = update
        return update

    def _matches(self, update: StateUpdate) -> bool:
        if self._task_ids is not None and update.task_id not in self._task_ids:
            return False
        return self._types is None or update.update_type in self._types

    async def _next_from_log(self) -> StateUpdate | None:
        log = self._hub.log
        assert log is not None
        while self._scan < log.head:
            update = log.get(self._scan + 1)
            if update is None and log.source is not None:
                update = await self._older_update(log, self._scan + 1)
            if update is None:
                raise SubscriberLagged(
                    f"this subscriber fell behind past the replay buffer (update "
                    f"{self._scan + 1} is gone); resume with since_id or raise "
                    "replay_buffer_size / update_queue_size",
                    resume_from=self.last_id,
                )
            self._scan = update.seq
            if self._matches(update) and (
                update.seq > self._critical_only_until
                or update.update_type in CRITICAL_UPDATE_TYPES
            ):
                return update
        return None

    async def _older_update(self, log: ReplayLog, seq: int) -> StateUpdate | None:
        older = self._older
        while older and older[0].seq < seq:
            older.popleft()
        if not older:
            older.extend(await log.fetch(seq - 1, PAGE))
        return older.popleft() if older and older[0].seq == seq else None

    def _count_drop(self) -> None:
        self._dropped += 1
        self._hub.dropped += 1

    def _offer(self, update: StateUpdate, wake: bool = True) -> None:
        if self._from_log or self._lagged or not self._matches(update):
            return
        queue = self._queue
        if self._capacity is None or len(queue) < self._capacity:
            queue.append(update)
        elif update.update_type not in CRITICAL_UPDATE_TYPES:
            self._count_drop()
            return
        else:
            for index, queued in enumerate(queue):
                if queued.update_type not in CRITICAL_UPDATE_TYPES:
                    del queue[index]
                    self._count_drop()
                    queue.append(update)
                    break
            else:
                if self._hub.log is not None:
                    # Continue from the log after the last delivered update: same order, and
                    # every critical update still arrives.
                    self._from_log = True
                    self._scan = self._last.seq if self._last is not None else self._scan_start()
                    self._critical_only_until = update.seq
                    queue.clear()
                else:
                    self._lagged = True
        if wake:
            self._wake()

    def _scan_start(self) -> int:
        # Nothing delivered yet: everything queued came after registration; the first queued
        # update is the oldest one this subscriber still needs.
        return self._queue[0].seq - 1

    def _wake(self) -> None:
        self._wakeup.set()


class UpdateBroker:
    """A standalone fan-out of updates with the session's backpressure rules and no log.

    A subscriber that lags while only critical updates are queued gets
    :class:`SubscriberLagged` after what it had queued.
    """

    def __init__(self, *, max_queue_size: int | None = 500) -> None:
        if max_queue_size is not None and max_queue_size <= 0:
            raise ValueError(f"max_queue_size must be positive or None, not {max_queue_size!r}")
        self._hub = Hub(queue_size=max_queue_size, log=None)

    def subscribe(
        self,
        *,
        task_ids: Collection[str] | None = None,
        update_types: Collection[UpdateType | str] | None = None,
        queue_size: int | None = None,
    ) -> Subscription:
        """A subscription to updates published from now on, filtered by task and type."""
        return Subscription(
            self._hub,
            task_ids=task_ids,
            update_types=update_types,
            since_id=None,
            queue_size=queue_size,
        )

    def publish(self, update: StateUpdate) -> None:
        """Offer ``update`` to every subscriber; never waits."""
        self._hub.publish(update)

    def statistics(self) -> BrokerStatistics:
        """A frozen snapshot of the broker's counters."""
        hub = self._hub
        return BrokerStatistics(
            subscribers=len(hub.subscribers), published=hub.published, dropped=hub.dropped
        )
