"""The private machine under StreamingSession: task records, scheduling, running, updates."""

from __future__ import annotations

import heapq
import inspect
import itertools
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, cast

import anyio
from anyio.abc import TaskGroup
from pydantic import BaseModel, JsonValue

from ._broker import Hub, ReplayLog
from ._context import ContextState
from ._errors import ForegroundBusy, SessionClosed, TaskNotFound
from ._limits import SessionLimits
from ._runtime import SpawnSpec, TaskPipeline, TaskRuntime
from ._tasks import (
    FINAL_STATUSES,
    NotificationPayload,
    TaskError,
    TaskErrorCode,
    TaskResult,
    TaskState,
    TaskStatus,
    TaskType,
    check_transition,
)
from ._updates import StateUpdate, UpdateType, to_json

__all__ = ["Engine", "TaskRecord"]


def _now() -> datetime:
    return datetime.now(UTC)


def _pipeline_name(pipeline: object) -> str:
    name = getattr(pipeline, "name", None)
    if isinstance(name, str) and name:
        return name
    qualname = getattr(pipeline, "__qualname__", None) or type(pipeline).__qualname__
    return str(qualname)


def _is_async_callable(pipeline: object) -> bool:
    if inspect.iscoroutinefunction(pipeline):
        return True
    call = getattr(pipeline, "__call__", None)  # noqa: B004 - the method itself is inspected
    return call is not None and inspect.iscoroutinefunction(call)


@dataclass(eq=False)
class TaskRecord:
    """One task's mutable state; only the engine touches it, the world sees ``TaskState``."""

    task_id: str
    spec: SpawnSpec
    pipeline: TaskPipeline
    pipeline_name: str
    order: int
    context_version: int
    runtime: TaskRuntime | None = None
    status: TaskStatus | None = None
    progress: dict[str, JsonValue] | None = None
    result: JsonValue = None
    task_result: TaskResult | None = None
    error: TaskError | None = None
    cancel_reason: str | None = None
    created_at: datetime = field(default_factory=_now)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime = field(default_factory=_now)
    scope: anyio.CancelScope | None = None
    done: anyio.Event = field(default_factory=anyio.Event)
    children: list[TaskRecord] = field(default_factory=list["TaskRecord"])

    @property
    def live(self) -> bool:
        return self.status not in FINAL_STATUSES

    def state(self, session_id: str, tenant: str) -> TaskState:
        spec = self.spec
        assert self.status is not None
        return TaskState(
            task_id=self.task_id,
            session_id=session_id,
            tenant=tenant,
            task_type=spec.task_type,
            status=self.status,
            priority=spec.priority,
            query=spec.query,
            description=spec.description,
            pipeline=self.pipeline_name,
            parent_task_id=spec.parent_task_id,
            propagate_on_cancel=spec.propagate_on_cancel,
            notify_on_complete=spec.notify_on_complete,
            trace_id=spec.trace_id,
            progress=self.progress,
            result=self.result,
            error=self.error,
            cancel_reason=self.cancel_reason,
            context_version=self.context_version,
            created_at=self.created_at,
            started_at=self.started_at,
            finished_at=self.finished_at,
            updated_at=self.updated_at,
        )


class Engine:
    """Everything a session does; ``StreamingSession`` is its public face."""

    def __init__(self, session_id: str, *, tenant: str, limits: SessionLimits) -> None:
        self.session_id = session_id
        self.tenant = tenant
        self.limits = limits
        self.hub = Hub(
            queue_size=limits.update_queue_size, log=ReplayLog(limits.replay_buffer_size)
        )
        self.context = ContextState()
        self.records: dict[str, TaskRecord] = {}
        self.phase: Literal["new", "open", "closing", "closed"] = "new"
        self.closed = anyio.Event()
        self._tg: TaskGroup | None = None
        self._seq = 0
        self._order = itertools.count()
        self._foreground_queue: deque[TaskRecord] = deque()
        self._foreground: TaskRecord | None = None
        self._background: list[tuple[int, int, TaskRecord]] = []  # (-priority, order, record)
        self._background_running = 0

    # ----------------------------------------------------------------------- lifecycle
    def open(self, tg: TaskGroup) -> None:
        self._tg = tg
        self.phase = "open"

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
            await self.cancel_many(
                [r for r in self.records.values() if r.live], reason="session_closed"
            )
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
        update = StateUpdate(
            session_id=self.session_id,
            seq=self._seq,
            update_type=update_type,
            task_id=task_id,
            trace_id=trace_id,
            content=content,
            step_index=step_index,
            total_steps=total_steps,
        )
        self.hub.publish(update)
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

    def is_live(self, task_id: str) -> bool:
        record = self.records.get(task_id)
        return record is not None and record.live

    def _transition(self, record: TaskRecord, status: TaskStatus, reason: str) -> None:
        previous = record.status
        check_transition(previous, status)
        record.status = status
        record.updated_at = now = _now()
        if status is TaskStatus.RUNNING and record.started_at is None:
            record.started_at = now
        if status in FINAL_STATUSES:
            record.finished_at = now
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
        self.require_open()
        if not _is_async_callable(pipeline):
            raise TypeError(
                f"pipeline {pipeline!r} is not async: pass an `async def pipeline(runtime)` "
                "or an object with an `async def __call__(self, runtime)`"
            )
        if spec.if_busy not in ("queue", "interrupt", "reject"):
            raise ValueError(
                f"if_busy must be 'queue', 'interrupt' or 'reject', not {spec.if_busy!r}"
            )
        if spec.propagate_on_cancel not in ("cascade", "isolate"):
            raise ValueError(
                "propagate_on_cancel must be 'cascade' or 'isolate', "
                f"not {spec.propagate_on_cancel!r}"
            )
        priority = cast(object, spec.priority)
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise TypeError(f"priority must be an int, not {spec.priority!r}")
        parent = self.get(spec.parent_task_id) if spec.parent_task_id is not None else None
        if spec.task_id is not None and spec.task_id in self.records:
            raise ValueError(f"task id {spec.task_id!r} is already used in this session")
        if spec.task_type is TaskType.FOREGROUND:
            busy = [
                r
                for r in self.records.values()
                if r.live and r.spec.task_type is TaskType.FOREGROUND
            ]
            if busy and spec.if_busy == "reject":
                raise ForegroundBusy(
                    f"foreground task {busy[0].task_id!r} is still live; wait for it, or spawn "
                    "with if_busy='queue' or 'interrupt'",
                    active_task_id=busy[0].task_id,
                )
            if busy and spec.if_busy == "interrupt":
                await self.cancel_many(busy, reason="interrupted")
                self.require_open()
        task_id = spec.task_id if spec.task_id is not None else f"task_{uuid.uuid4().hex}"
        if task_id in self.records:  # taken while interrupting
            raise ValueError(f"task id {task_id!r} is already used in this session")
        record = TaskRecord(
            task_id=task_id,
            spec=spec,
            pipeline=pipeline,
            pipeline_name=_pipeline_name(pipeline),
            order=next(self._order),
            context_version=self.context.version,
        )
        record.runtime = TaskRuntime(
            self,
            task_id=task_id,
            session_id=self.session_id,
            tenant=self.tenant,
            task_type=spec.task_type,
            trace_id=spec.trace_id,
            query=spec.query,
            context=self.context.snapshot(
                parent_task_id=spec.parent_task_id,
                spawned_from_event_id=spec.spawned_from_event_id,
            ),
        )
        self.records[task_id] = record
        if parent is not None:
            parent.children.append(record)
        self._transition(record, TaskStatus.PENDING, "created")
        if spec.task_type is TaskType.FOREGROUND:
            self._foreground_queue.append(record)
        else:
            heapq.heappush(self._background, (-spec.priority, record.order, record))
        self._schedule()
        return task_id

    # ------------------------------------------------------------------------ schedule
    def _schedule(self) -> None:
        if self.phase != "open":
            return
        if self._foreground is None:
            while self._foreground_queue:
                record = self._foreground_queue.popleft()
                if record.status is TaskStatus.PENDING:
                    self._foreground = record
                    self._start(record)
                    break
        limit = self.limits.max_concurrent_tasks
        while self._background and (limit is None or self._background_running < limit):
            _, _, record = heapq.heappop(self._background)
            if record.status is TaskStatus.PENDING:
                self._background_running += 1
                self._start(record)

    def _start(self, record: TaskRecord) -> None:
        assert self._tg is not None
        record.scope = anyio.CancelScope()
        self._transition(record, TaskStatus.RUNNING, "started")
        self._tg.start_soon(self._run, record, name=f"penguiflow.sessions task {record.task_id}")

    def _release(self, record: TaskRecord) -> None:
        if record.spec.task_type is TaskType.FOREGROUND:
            if self._foreground is record:
                self._foreground = None
        elif record.started_at is not None:
            self._background_running -= 1
        record.done.set()
        self._schedule()

    # ----------------------------------------------------------------------------- run
    async def _run(self, record: TaskRecord) -> None:
        assert record.scope is not None and record.runtime is not None
        value: Any = None
        error: Exception | None = None
        try:
            with record.scope:
                value = await record.pipeline(record.runtime)
        except anyio.get_cancelled_exc_class():
            # Not ours (ours is swallowed by record.scope): record the end, then propagate.
            self._cancelled(record, record.cancel_reason or "session_closed")
            raise
        except Exception as exc:
            error = exc
        if record.cancel_reason is not None:
            self._cancelled(record, record.cancel_reason)
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
        result = value if isinstance(value, TaskResult) else None
        try:
            if result is None:
                payload = to_json(value, what="the pipeline's return value")
                result = TaskResult(payload=value if isinstance(value, BaseModel) else payload)
            else:
                payload = to_json(result.payload, what="TaskResult.payload")
        except TypeError as exc:
            self._fail(
                record,
                TaskError(
                    code=TaskErrorCode.INVALID_RESULT, message=str(exc), error_type="TypeError"
                ),
            )
            return
        record.result = payload
        record.task_result = result
        self.publish(
            record.task_id,
            UpdateType.RESULT,
            {
                "payload": payload,
                "digest": list[JsonValue](result.digest),
                "artifacts": result.artifacts,
                "sources": result.sources,
                "patch_id": None,
            },
            trace_id=record.spec.trace_id,
        )
        if record.spec.task_type is TaskType.BACKGROUND and record.spec.notify_on_complete:
            label = record.spec.description or record.pipeline_name
            note = result.notification or NotificationPayload(
                title=f"Background task completed: {label}", body="\n".join(result.digest)
            )
            self._notify(record, note)
        self._transition(record, TaskStatus.COMPLETE, "completed")
        self._release(record)

    def _fail(self, record: TaskRecord, error: TaskError, reason: str = "failed") -> None:
        record.error = error
        self.publish(
            record.task_id,
            UpdateType.ERROR,
            error.model_dump(mode="json"),
            trace_id=record.spec.trace_id,
        )
        if record.spec.task_type is TaskType.BACKGROUND:
            label = record.spec.description or record.pipeline_name
            self._notify(
                record,
                NotificationPayload(
                    severity="error", title=f"Background task failed: {label}", body=error.message
                ),
            )
        self._transition(record, TaskStatus.FAILED, reason)
        self._release(record)

    def _cancelled(self, record: TaskRecord, reason: str) -> None:
        record.cancel_reason = reason
        if record.spec.task_type is TaskType.BACKGROUND:
            label = record.spec.description or record.pipeline_name
            self._notify(
                record,
                NotificationPayload(
                    severity="warning", title=f"Background task cancelled: {label}", body=reason
                ),
            )
        self._transition(record, TaskStatus.CANCELLED, reason)
        self._release(record)

    def _notify(self, record: TaskRecord, note: BaseModel) -> None:
        self.publish(
            record.task_id,
            UpdateType.NOTIFICATION,
            note.model_dump(mode="json"),
            trace_id=record.spec.trace_id,
        )

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
