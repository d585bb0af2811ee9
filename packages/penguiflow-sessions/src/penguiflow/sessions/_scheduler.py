"""Who runs when: the foreground queue, background slots by priority, parked tasks' slots.

At most one foreground task is active; it never waits for a background slot. Background
tasks hold one of ``max_concurrent_tasks`` slots while they run. A task parked at a
checkpoint gives its slot back; when answered it waits for a slot again, ahead of the
PENDING tasks (it has started already). PENDING background tasks start by priority, higher
first, FIFO within one.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio

from ._tasks import TaskStatus, TaskType

if TYPE_CHECKING:
    from ._records import TaskRecord

__all__ = ["Scheduler"]


class Scheduler:
    """The session's run queues and background slot accounting."""

    def __init__(self, limit: int | None, start: Callable[[TaskRecord], None]) -> None:
        self.limit = limit
        self._start = start
        self.foreground_queue: deque[TaskRecord] = deque()
        self.foreground: TaskRecord | None = None
        self.background_queue: list[tuple[int, int, TaskRecord]] = []  # (-priority, order, r)
        self.running = 0
        """Background slots held now."""
        self.waiters: deque[TaskRecord] = deque()
        """Answered parked tasks waiting for a slot again, in answer order."""
        self._grants: dict[TaskRecord, anyio.Event] = {}

    def _free(self) -> bool:
        return self.limit is None or self.running < self.limit

    def enqueue(self, record: TaskRecord) -> None:
        """Queue a new PENDING task."""
        if record.spec.task_type is TaskType.FOREGROUND:
            self.foreground_queue.append(record)
        else:
            heapq.heappush(self.background_queue, (-record.spec.priority, record.order, record))

    def schedule(self) -> None:
        """Start what may start now: the next foreground task, then waiters, then PENDING."""
        if self.foreground is None:
            while self.foreground_queue:
                record = self.foreground_queue.popleft()
                if record.status is TaskStatus.PENDING:
                    self.foreground = record
                    self._start(record)
                    break
        while self.waiters and self._free():
            record = self.waiters.popleft()
            self._take(record)
            self._grants.pop(record).set()
        while self.background_queue and self._free():
            _, _, record = heapq.heappop(self.background_queue)
            if record.status is TaskStatus.PENDING:
                self._take(record)
                self._start(record)

    def _take(self, record: TaskRecord) -> None:
        self.running += 1
        record.holds_slot = True

    def give_back(self, record: TaskRecord) -> None:
        """Release the task's background slot (it parks or ends); others may start."""
        if record.holds_slot:
            record.holds_slot = False
            self.running -= 1

    def take_back(self, record: TaskRecord) -> None:
        """Hold a slot again without waiting (a pipeline that abandoned its checkpoint)."""
        if record.spec.task_type is TaskType.BACKGROUND and not record.holds_slot:
            self._take(record)

    def finished(self, record: TaskRecord) -> None:
        """The task ended: free whatever it held."""
        if self.foreground is record:
            self.foreground = None
        self.give_back(record)

    async def reacquire(self, record: TaskRecord) -> None:
        """Wait for a background slot again (at once for a foreground task)."""
        if record.spec.task_type is TaskType.FOREGROUND or record.holds_slot:
            return
        if self._free() and not self.waiters:
            self._take(record)
            return
        granted = anyio.Event()
        self._grants[record] = granted
        self.waiters.append(record)
        try:
            await granted.wait()
        finally:
            if not record.holds_slot:
                self._grants.pop(record, None)
                self.waiters.remove(record)

    def reprioritise(self, record: TaskRecord) -> None:
        """Re-sort the PENDING background queue after ``record`` got a new priority."""
        if record.status is TaskStatus.PENDING and record.spec.task_type is TaskType.BACKGROUND:
            queue = [(-r.spec.priority, r.order, r) for _, _, r in self.background_queue]
            heapq.heapify(queue)
            self.background_queue[:] = queue
