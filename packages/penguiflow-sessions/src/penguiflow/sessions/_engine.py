"""The private machine under StreamingSession: scheduling, running, updates, cancellation."""

from __future__ import annotations

import itertools
from collections.abc import AsyncGenerator, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, Literal

import anyio
from anyio.abc import TaskGroup
from pydantic import JsonValue

from penguiflow.core import DurableStore

from . import _finish as finish
from . import _spawn as spawning
from ._broker import Hub, ReplayLog
from ._checkpoint import CheckpointAnswer, CheckpointDesk
from ._context import ContextState
from ._errors import SessionClosed, SessionError, TaskNotFound
from ._flag import Flag
from ._groups import GroupDesk
from ._hydrate import check_pipelines
from ._limits import SessionLimits
from ._patches import ContextDesk
from ._persist import Outbox
from ._records import TaskRecord, now
from ._runtime import SpawnSpec, TaskPipeline
from ._scheduler import Scheduler
from ._steer import Steerer
from ._steering import ControlPolicy
from ._tasks import (
    FINAL_STATUSES,
    TaskError,
    TaskErrorCode,
    TaskStatus,
    check_transition,
)
from ._updates import StateUpdate, UpdateType, build_update

__all__ = ["Engine"]


class Engine:
    """Everything a session does; ``StreamingSession`` is its public face."""

    def __init__(
        self,
        session_id: str,
        *,
        tenant: str,
        limits: SessionLimits,
        control_policy: ControlPolicy,
        store: DurableStore | None = None,
        pipelines: Iterable[object] = (),
    ) -> None:
        self.session_id = session_id
        self.tenant = tenant
        self.limits = limits
        self.hub = Hub(
            queue_size=limits.update_queue_size, log=ReplayLog(limits.replay_buffer_size)
        )
        self.context = ContextState()
        self.records: dict[str, TaskRecord] = {}
        self.phase: Literal["new", "open", "closing", "closed"] = "new"
        self.closed = Flag()
        self._tg: TaskGroup | None = None
        self._seq = 0
        self._order = itertools.count()
        self.scheduler = Scheduler(limits.max_concurrent_tasks, self._start)
        self.checkpoints = CheckpointDesk(self)
        self.groups = GroupDesk(self)
        self.steerer = Steerer(self, control_policy)
        self.desk = ContextDesk(self.context, limits.max_pending_patches, self.publish)
        # durability (_persist, _hydrate); a passthrough without a store
        self.outbox = Outbox(self, store, check_pipelines(pipelines))

    # ----------------------------------------------------------------------- lifecycle
    def open(self, tg: TaskGroup) -> None:
        self._tg = tg
        self.phase = "open"
        self.outbox.start(tg)

    def require_open(self) -> None:
        if self.phase == "new":
            raise SessionClosed(
                f"session {self.session_id!r} is not open; use it inside "
                "`async with StreamingSession(...) as session:`"
            )
        if self.phase != "open":
            raise SessionClosed(f"session {self.session_id!r} is closed; make a new session")

    async def aclose(self) -> None:
        if self.phase in ("new", "closed"):
            self.phase = "closed"
            self.hub.close()
            self.closed.set()
            return
        if self.phase == "closing":
            await self.closed.wait()
            return
        self.phase = "closing"
        with anyio.CancelScope(shield=True):
            live = [r for r in self.records.values() if r.live]
            self.outbox.detach(live)  # resumable checkpoints stay PAUSED in the store (§9)
            await self.cancel_many(live, reason="session_closed")
            await self.outbox.aclose()
        self.phase = "closed"
        self.hub.close()
        self.closed.set()

    # ------------------------------------------------------------------------- updates
    def publish(
        self,
        task_id: str | None,
        update_type: UpdateType,
        content: JsonValue,
        *,
        trace_id: str | None = None,
        step_index: int | None = None,
        total_steps: int | None = None,
    ) -> StateUpdate:
        self._seq += 1
        # Trusted parts (content came through to_json or is the session's own): no
        # re-validation on this hot path.
        update = build_update(
            self.session_id,
            self._seq,
            update_type,
            task_id,
            trace_id,
            content,
            step_index,
            total_steps,
            datetime.now(UTC),
        )
        self.outbox.publish(update)
        return update

    def emit_for(
        self,
        task_id: str,
        update_type: UpdateType,
        content: JsonValue,
        step_index: int | None,
        total_steps: int | None,
    ) -> None:
        record = self.records[task_id]
        if update_type is UpdateType.PROGRESS and isinstance(content, dict):
            record.progress = content
        self.publish(
            task_id,
            update_type,
            content,
            trace_id=record.spec.trace_id,
            step_index=step_index,
            total_steps=total_steps,
        )

    async def pause_point(self, task_id: str) -> None:
        record = self.records[task_id]
        if not record.inbox.paused or record.status is not TaskStatus.RUNNING:
            return
        async with self.parked(record, "paused", resumed="resumed", release_slot=False):
            await record.inbox.wait_if_paused()

    async def checkpoint(
        self,
        task_id: str,
        prompt: str,
        *,
        kind: str,
        payload: object,
        options: Sequence[str],
        token: str | None,
        data: object,
    ) -> CheckpointAnswer:
        return await self.checkpoints.park(
            self.records[task_id],
            prompt,
            kind=kind,
            payload=payload,
            options=options,
            token=token,
            data=data,
        )

    @asynccontextmanager
    async def parked(
        self, record: TaskRecord, reason: str, *, resumed: str, release_slot: bool
    ) -> AsyncGenerator[None]:
        """RUNNING -> PAUSED for the block, then (slot re-acquired) PAUSED -> RUNNING.

        If the block raises because the session cancels the task, it stays PAUSED for its
        end; if the pipeline itself abandoned the wait (its own cancel scope), it is RUNNING
        again at once (taking its slot back even beyond the limit: it never gave up running).
        """
        if record.status is not TaskStatus.RUNNING:
            raise SessionError(
                f"task {record.task_id!r} is {record.status}, not RUNNING; it can park only "
                "while it runs (one checkpoint or pause at a time)"
            )
        self.transition(record, TaskStatus.PAUSED, reason)
        record.stop_clock()
        if release_slot:
            self.scheduler.give_back(record)
            self.schedule()
        try:
            yield
        except BaseException:
            if record.cancel_reason is None:  # still PAUSED: not the session's cancel
                self.scheduler.take_back(record)
                record.run_clock()
                self.transition(record, TaskStatus.RUNNING, resumed)
            raise
        await self.scheduler.reacquire(record)
        record.run_clock()
        self.transition(record, TaskStatus.RUNNING, resumed)

    def continue_seq(self, seq: int) -> None:
        """Hydrate: the next update is ``seq + 1``."""
        self._seq = seq

    def next_order(self) -> int:
        """The next spawn-order number (a new task, or a restored one on hydrate)."""
        return next(self._order)

    def start_restored(self, record: TaskRecord) -> None:
        """Hydrate: run a restored PAUSED task (its pipeline waits for the answer)."""
        assert self._tg is not None
        record.scope = anyio.CancelScope()
        self._tg.start_soon(self._run, record, name=f"penguiflow.sessions task {record.task_id}")

    def is_live(self, task_id: str) -> bool:
        record = self.records.get(task_id)
        return record is not None and record.live

    def transition(self, record: TaskRecord, status: TaskStatus, reason: str) -> None:
        previous = record.status
        check_transition(previous, status)
        record.status = status
        record.updated_at = at = now()
        if status is TaskStatus.RUNNING and record.started_at is None:
            record.started_at = at
        if status in FINAL_STATUSES:
            record.finished_at = at
        self.publish(
            record.task_id,
            UpdateType.STATUS_CHANGE,
            {
                "status": status.value,
                "previous": previous.value if previous is not None else None,
                "reason": reason,
                "task_type": record.spec.task_type.value,
            },
            trace_id=record.spec.trace_id,
        )

    # --------------------------------------------------------------------------- spawn
    def get(self, task_id: str) -> TaskRecord:
        record = self.records.get(task_id)
        if record is None:
            raise TaskNotFound(f"session {self.session_id!r} has no task {task_id!r}")
        return record

    async def spawn(self, pipeline: TaskPipeline, spec: SpawnSpec) -> str:
        """Admit, record and schedule a task (``_spawn``); its id once PENDING is stored."""
        return await spawning.spawn(self, pipeline, spec)

    # ------------------------------------------------------------------------ schedule
    def schedule(self) -> None:
        if self.phase == "open":
            self.scheduler.schedule()

    def _start(self, record: TaskRecord) -> None:
        assert self._tg is not None
        record.scope = anyio.CancelScope()
        self.transition(record, TaskStatus.RUNNING, "started")
        self._tg.start_soon(self._run, record, name=f"penguiflow.sessions task {record.task_id}")

    def _release(self, record: TaskRecord) -> None:
        self.scheduler.finished(record)
        record.scope = record.timer = None  # it ran: nothing cancels or times it any more
        self.steerer.drop_task(record.task_id)
        self.outbox.then(record.done.set)
        self.groups.member_finished(record)
        self.schedule()

    # ----------------------------------------------------------------------------- run
    async def _run(self, record: TaskRecord) -> None:
        assert record.scope is not None and record.runtime is not None
        value: Any = None
        error: Exception | None = None
        timer = record.start_clock(self.limits.max_task_runtime_s)
        try:
            with record.scope, timer:
                value = await record.pipeline(record.runtime)
        except anyio.get_cancelled_exc_class():
            # Not ours (ours is swallowed by record.scope): record the end, then propagate.
            self._cancelled(record, record.cancel_reason or "session_closed")
            raise
        except Exception as exc:
            error = exc
        if record.cancel_reason is not None and self.outbox.detached(record):
            self._release(record)  # left PAUSED in the store for the next process (§9)
        elif record.cancel_reason is not None:
            self._cancelled(record, record.cancel_reason)
        elif timer.cancel_called:
            limit = self.limits.max_task_runtime_s
            self._fail(
                record,
                TaskError(
                    code=TaskErrorCode.TASK_TIMEOUT,
                    message=f"task {record.task_id!r} ran longer than "
                    f"SessionLimits.max_task_runtime_s={limit} (paused time excluded)",
                ),
                reason="timeout",
            )
        elif error is not None:
            self._fail(
                record,
                TaskError(
                    code=TaskErrorCode.PIPELINE_EXCEPTION,
                    message=str(error) or type(error).__name__,
                    error_type=type(error).__name__,
                ),
            )
        else:
            self._complete(record, value)

    def _complete(self, record: TaskRecord, value: object) -> None:
        finish.complete(self, record, value)

    def _fail(self, record: TaskRecord, error: TaskError, reason: str = "failed") -> None:
        finish.fail(self, record, error, reason)

    def _cancelled(self, record: TaskRecord, reason: str) -> None:
        finish.cancelled(self, record, reason)

    def end(self, record: TaskRecord, status: TaskStatus, reason: str) -> None:
        """Publish the task's terminal STATUS_CHANGE and free what it held."""
        self.transition(record, status, reason)
        self._release(record)

    def answer_patch(self, patch_id: str, *, approve: bool, strategy: str | None) -> bool:
        """Apply or drop a pending patch; False when there is no such patch."""
        return self.desk.answer(patch_id, approve=approve, strategy=strategy)

    # -------------------------------------------------------------------------- cancel
    def _request_cancel(self, record: TaskRecord, reason: str, marked: list[TaskRecord]) -> None:
        if not record.live or record.cancel_reason is not None:
            marked.append(record)
            return
        record.cancel_reason = reason
        marked.append(record)
        for child in record.children:
            if child.spec.propagate_on_cancel == "cascade":
                self._request_cancel(child, "parent_cancelled", marked)
        if record.status is TaskStatus.PENDING:
            self._cancelled(record, reason)
        elif record.scope is not None:
            record.scope.cancel()

    async def cancel_many(self, records: list[TaskRecord], *, reason: str) -> list[bool]:
        """Cancel each live one (and cascade); wait until all of them stopped."""
        first = [r.live and r.cancel_reason is None for r in records]
        marked: list[TaskRecord] = []
        for record in records:
            self._request_cancel(record, reason, marked)
        for record in marked:
            await record.done.wait()
        return first
