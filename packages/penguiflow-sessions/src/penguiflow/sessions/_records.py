"""Task records: the mutable state of one task, kept by the engine, shown as TaskState."""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import cast

import anyio
from pydantic import JsonValue

from ._flag import Flag
from ._runtime import SpawnSpec, TaskPipeline, TaskRuntime
from ._steering import SteeringInbox
from ._tasks import FINAL_STATUSES, CheckpointInfo, TaskError, TaskResult, TaskState, TaskStatus

__all__ = ["TaskRecord", "check_spawn", "now", "pipeline_name"]


def now() -> datetime:
    return datetime.now(UTC)


def pipeline_name(pipeline: object) -> str:
    name = getattr(pipeline, "name", None)
    if isinstance(name, str) and name:
        return name
    qualname = getattr(pipeline, "__qualname__", None) or type(pipeline).__qualname__
    return str(qualname)


def is_async_callable(pipeline: object) -> bool:
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
    inbox: SteeringInbox
    runtime: TaskRuntime | None = None
    status: TaskStatus | None = None
    progress: dict[str, JsonValue] | None = None
    result: JsonValue = None
    task_result: TaskResult | None = None
    error: TaskError | None = None
    cancel_reason: str | None = None
    checkpoint: CheckpointInfo | None = None
    holds_slot: bool = False
    created_at: datetime = field(default_factory=now)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime = field(default_factory=now)
    scope: anyio.CancelScope | None = None
    done: Flag = field(default_factory=Flag)
    children: list[TaskRecord] = field(default_factory=list["TaskRecord"])

    timer: anyio.CancelScope | None = None
    remaining_s: float | None = None

    def start_clock(self, limit_s: float | None) -> anyio.CancelScope:
        """The inner scope whose deadline is ``max_task_runtime_s`` of running time."""
        self.remaining_s = limit_s
        deadline = anyio.current_time() + limit_s if limit_s is not None else math.inf
        self.timer = anyio.CancelScope(deadline=deadline)
        return self.timer

    def stop_clock(self) -> None:
        """Parked: keep the running time left and let no deadline pass meanwhile."""
        if self.timer is not None and self.remaining_s is not None:
            self.remaining_s = max(0.0, self.timer.deadline - anyio.current_time())
            self.timer.deadline = math.inf

    def run_clock(self) -> None:
        """Running again: the deadline is the time left from now."""
        if self.timer is not None and self.remaining_s is not None:
            self.timer.deadline = anyio.current_time() + self.remaining_s

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
            group_id=spec.group_id,
            merge_strategy=spec.merge_strategy,
            propagate_on_cancel=spec.propagate_on_cancel,
            notify_on_complete=spec.notify_on_complete,
            trace_id=spec.trace_id,
            progress=self.progress,
            result=self.result,
            error=self.error,
            cancel_reason=self.cancel_reason,
            checkpoint=self.checkpoint,
            context_version=self.context_version,
            created_at=self.created_at,
            started_at=self.started_at,
            finished_at=self.finished_at,
            updated_at=self.updated_at,
        )


def check_spawn(pipeline: object, spec: SpawnSpec) -> None:
    """Refuse a spawn's arguments before anything is recorded; the message says what to pass."""
    if not is_async_callable(pipeline):
        raise TypeError(
            f"pipeline {pipeline!r} is not async: pass an `async def pipeline(runtime)` "
            "or an object with an `async def __call__(self, runtime)`"
        )
    if spec.if_busy not in ("queue", "interrupt", "reject"):
        raise ValueError(f"if_busy must be 'queue', 'interrupt' or 'reject', not {spec.if_busy!r}")
    if spec.propagate_on_cancel not in ("cascade", "isolate"):
        raise ValueError(
            f"propagate_on_cancel must be 'cascade' or 'isolate', not {spec.propagate_on_cancel!r}"
        )
    priority = cast(object, spec.priority)
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise TypeError(f"priority must be an int, not {spec.priority!r}")
