"""The task half of StreamingSession: spawn, run, wait for, cancel and list tasks."""

from __future__ import annotations

import anyio

from ._engine import Engine
from ._errors import TaskCancelled, TaskFailed
from ._merge import MergeStrategy
from ._runtime import IfBusy, Propagate, SpawnSpec, TaskPipeline
from ._tasks import TaskResult, TaskState, TaskStatus, TaskType

__all__ = ["TaskMethods"]


class TaskMethods:
    """Task operations of :class:`StreamingSession` (§2)."""

    _engine: Engine

    async def spawn_task(
        self,
        pipeline: TaskPipeline,
        *,
        task_type: TaskType | str = TaskType.FOREGROUND,
        query: str | None = None,
        description: str | None = None,
        priority: int = 0,
        merge_strategy: MergeStrategy | str = MergeStrategy.APPEND,
        group_id: str | None = None,
        parent_task_id: str | None = None,
        propagate_on_cancel: Propagate = "cascade",
        notify_on_complete: bool = True,
        if_busy: IfBusy = "queue",
        task_id: str | None = None,
        trace_id: str | None = None,
        spawned_from_event_id: str | None = None,
    ) -> str:
        """Record a task, publish its PENDING, and return its id; it starts when it may.

        A foreground spawn while another foreground task is live: ``if_busy="queue"`` starts
        it after that one ends, ``"interrupt"`` cancels that one (``"interrupted"``) first,
        ``"reject"`` raises ``ForegroundBusy``. The foreground task never waits for a
        background slot; PENDING background tasks start by priority (higher first, FIFO
        within one) as ``max_concurrent_tasks`` slots free. ``merge_strategy`` says how the
        result's ``context_patch`` reaches the session context; a ``group_id`` member's patch
        waits for the group's end.

        Raises:
            SessionClosed: the session is not open.
            TypeError: ``pipeline`` is not async, or ``priority`` not an int.
            ValueError: a bad ``task_type``/``if_busy``/``propagate_on_cancel``, or a reused
                ``task_id``.
            TaskNotFound: ``parent_task_id`` is not a task of this session.
            ForegroundBusy: ``if_busy="reject"`` and a foreground task is live.
            GroupNotFound: ``group_id`` is not a group of this session.
            GroupSealed: that group is sealed.
            SessionLimitExceeded: ``max_tasks_per_session``, ``max_background_tasks`` or
                ``max_tasks_per_group`` is reached; nothing was recorded.
        """
        spec = SpawnSpec(
            task_type=TaskType(task_type),
            query=query,
            description=description,
            priority=priority,
            merge_strategy=MergeStrategy(merge_strategy),
            group_id=group_id,
            parent_task_id=parent_task_id,
            propagate_on_cancel=propagate_on_cancel,
            notify_on_complete=notify_on_complete,
            if_busy=if_busy,
            task_id=task_id,
            trace_id=trace_id,
            spawned_from_event_id=spawned_from_event_id,
        )
        return await self._engine.spawn(pipeline, spec)

    async def run_task(
        self,
        pipeline: TaskPipeline,
        *,
        task_type: TaskType | str = TaskType.FOREGROUND,
        query: str | None = None,
        description: str | None = None,
        priority: int = 0,
        merge_strategy: MergeStrategy | str = MergeStrategy.APPEND,
        group_id: str | None = None,
        parent_task_id: str | None = None,
        propagate_on_cancel: Propagate = "cascade",
        notify_on_complete: bool = True,
        if_busy: IfBusy = "queue",
        task_id: str | None = None,
        trace_id: str | None = None,
        spawned_from_event_id: str | None = None,
    ) -> TaskResult:
        """Spawn a task (arguments of :meth:`spawn_task`) and await its result.

        A cancelled caller cancels the task (``"caller_cancelled"``), then its own
        cancellation propagates.

        Raises:
            TaskFailed: the task ended FAILED.
            TaskCancelled: the task ended CANCELLED.
        """
        tid = await self.spawn_task(
            pipeline,
            task_type=task_type,
            query=query,
            description=description,
            priority=priority,
            merge_strategy=merge_strategy,
            group_id=group_id,
            parent_task_id=parent_task_id,
            propagate_on_cancel=propagate_on_cancel,
            notify_on_complete=notify_on_complete,
            if_busy=if_busy,
            task_id=task_id,
            trace_id=trace_id,
            spawned_from_event_id=spawned_from_event_id,
        )
        engine = self._engine
        record = engine.get(tid)
        try:
            await record.done.wait()
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await engine.cancel_many([record], reason="caller_cancelled")
            raise
        state = record.state(engine.session_id, engine.tenant)
        if state.status is TaskStatus.COMPLETE:
            assert record.task_result is not None
            return record.task_result
        if state.status is TaskStatus.FAILED:
            assert state.error is not None
            raise TaskFailed(
                f"task {tid!r} failed ({state.error.code}): {state.error.message}",
                task=state,
                code=state.error.code,
            )
        reason = state.cancel_reason or "cancelled"
        raise TaskCancelled(f"task {tid!r} was cancelled ({reason})", task=state, reason=reason)

    async def wait_task(self, task_id: str) -> TaskState:
        """The task's final snapshot, once its terminal update is queued for every subscriber.

        Raises:
            TaskNotFound: no such task.
        """
        engine = self._engine
        record = engine.get(task_id)
        await record.done.wait()
        return record.state(engine.session_id, engine.tenant)

    async def cancel_task(self, task_id: str, *, reason: str = "cancelled") -> bool:
        """Cancel a live task and, recursively, its ``"cascade"`` children.

        Returns after it and those children stopped: True the first time it cancels a live
        task, else False.

        Raises:
            TaskNotFound: no such task.
        """
        engine = self._engine
        record = engine.get(task_id)
        (first,) = await engine.cancel_many([record], reason=reason)
        return first

    def get_task(self, task_id: str) -> TaskState | None:
        """A frozen snapshot of the task, or None if there is no such task."""
        engine = self._engine
        record = engine.records.get(task_id)
        return record.state(engine.session_id, engine.tenant) if record is not None else None

    def list_tasks(
        self, *, status: TaskStatus | str | None = None, task_type: TaskType | str | None = None
    ) -> list[TaskState]:
        """Frozen snapshots of the tasks, in spawn order, optionally filtered."""
        engine = self._engine
        wanted_status = TaskStatus(status) if status is not None else None
        wanted_type = TaskType(task_type) if task_type is not None else None
        return [
            r.state(engine.session_id, engine.tenant)
            for r in engine.records.values()
            if (wanted_status is None or r.status is wanted_status)
            and (wanted_type is None or r.spec.task_type is wanted_type)
        ]
