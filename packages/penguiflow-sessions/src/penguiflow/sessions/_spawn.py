"""Spawning a task: admission checks, the foreground policy, its record and runtime, PENDING."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from ._errors import ForegroundBusy
from ._limits import check_live
from ._records import TaskRecord, check_spawn, pipeline_name
from ._runtime import SpawnSpec, TaskPipeline, TaskRuntime
from ._steering import SteeringInbox
from ._tasks import TaskStatus, TaskType

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = ["check_limits", "new_inbox", "new_runtime", "spawn"]


async def spawn(engine: Engine, pipeline: TaskPipeline, spec: SpawnSpec) -> str:
    """Check, record and schedule a task; its id once its PENDING is stored (with a store).

    Raises what ``spawn_task`` documents: ``SessionClosed``, ``TypeError``/``ValueError`` for
    bad arguments, ``TaskNotFound`` for an unknown parent, ``ForegroundBusy``, the limits.
    """
    engine.require_open()
    check_spawn(pipeline, spec)
    parent = engine.get(spec.parent_task_id) if spec.parent_task_id is not None else None
    group = engine.groups.admit(spec.group_id) if spec.group_id is not None else None
    if spec.task_id is not None and spec.task_id in engine.records:
        raise ValueError(f"task id {spec.task_id!r} is already used in this session")
    busy = [
        r for r in engine.records.values() if r.live and r.spec.task_type is TaskType.FOREGROUND
    ]
    if spec.task_type is TaskType.FOREGROUND and busy:
        if spec.if_busy == "reject":
            raise ForegroundBusy(
                f"foreground task {busy[0].task_id!r} is still live; wait for it, or spawn "
                "with if_busy='queue' or 'interrupt'",
                active_task_id=busy[0].task_id,
            )
        if spec.if_busy == "interrupt":
            check_limits(engine, spec, leaving=busy)
            await engine.cancel_many(busy, reason="interrupted")
            engine.require_open()
            if spec.group_id is not None:  # it may have been sealed meanwhile
                group = engine.groups.admit(spec.group_id)
    check_limits(engine, spec)
    task_id = spec.task_id if spec.task_id is not None else f"task_{uuid.uuid4().hex}"
    if task_id in engine.records:  # taken while interrupting
        raise ValueError(f"task id {task_id!r} is already used in this session")
    record = TaskRecord(
        task_id=task_id,
        spec=spec,
        pipeline=pipeline,
        pipeline_name=pipeline_name(pipeline),
        order=engine.next_order(),
        context_version=engine.context.version,
        inbox=new_inbox(engine),
    )
    record.runtime = new_runtime(engine, record)
    engine.records[task_id] = record
    if parent is not None:
        parent.children.append(record)
    if group is not None:
        engine.groups.join(group, record)
    engine.transition(record, TaskStatus.PENDING, "created")
    engine.scheduler.enqueue(record)
    engine.schedule()
    await engine.outbox.flush()
    return task_id


def check_limits(engine: Engine, spec: SpawnSpec, leaving: list[TaskRecord] | None = None) -> None:
    """Refuse the spawn if the session's live-task limits would be exceeded (``leaving`` aside)."""
    live = [
        r.spec.task_type for r in engine.records.values() if r.live and r not in (leaving or ())
    ]
    check_live(engine.limits, engine.session_id, live, spec.task_type)


def new_inbox(engine: Engine) -> SteeringInbox:
    """A task's steering inbox, sized by the session's limits."""
    limits = engine.limits
    return SteeringInbox(
        limits.steering_queue_size or 1_000_000,
        max_pending_user_messages=limits.max_pending_user_messages,
    )


def new_runtime(engine: Engine, record: TaskRecord) -> TaskRuntime:
    """The runtime a task's pipeline gets: its identity, its inbox and a context snapshot."""
    spec = record.spec
    return TaskRuntime(
        engine,
        task_id=record.task_id,
        session_id=engine.session_id,
        tenant=engine.tenant,
        task_type=spec.task_type,
        trace_id=spec.trace_id,
        query=spec.query,
        steering=record.inbox,
        context=engine.context.snapshot(
            parent_task_id=spec.parent_task_id,
            spawned_from_event_id=spec.spawned_from_event_id,
        ),
    )
