"""Hydrate: a session entering with a store picks up where the last process left it.

It loads the session's tasks, context, pending patches, task groups, the steering event ids it
accepted (so a duplicate is still a DUPLICATE after a restart) and the last update ``seq`` (so
``seq`` continues and old cursors stay valid). A task the store shows PENDING, RUNNING or PAUSED was
live in a process that is gone: it becomes FAILED with ``TaskError(code=INTERRUPTED)``,
publishing ``ERROR{code:"INTERRUPTED"}`` and ``STATUS_CHANGE{reason:"interrupted"}`` like any
failure, so nothing is silently lost — unless it is PAUSED at a checkpoint of a
:class:`ResumablePipeline` the session was given (``pipelines=``): then it stays PAUSED, its
checkpoint stays answerable, and the answer runs ``pipeline.resume(runtime, checkpoint,
answer)`` to the task's normal end (its ``runtime.context`` is the session context as
hydrated). ``aclose()`` leaves such tasks PAUSED in the store for the next process.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import AsyncIterator, Awaitable, Iterable
from typing import TYPE_CHECKING, Any, Protocol, cast, runtime_checkable

from pydantic import JsonValue, TypeAdapter

from penguiflow.core import Record

from . import _finish as finish
from ._checkpoint import OpenCheckpoint
from ._errors import SessionError, SessionTenantMismatch
from ._groups import GroupRecord, GroupStatus, TaskGroup
from ._merge import ContextPatch, MergeStrategy, PendingPatch
from ._persist_layout import (
    NS_CONTEXT,
    NS_GROUPS,
    NS_META,
    NS_PATCHES,
    NS_TASKS,
    StoreLog,
    steering_stream,
)
from ._records import TaskRecord
from ._runtime import SpawnSpec, TaskRuntime
from ._spawn import new_inbox, new_runtime
from ._steering import SteeringEvent, SteeringInbox, SteeringOutcome
from ._tasks import (
    CheckpointAnswer,
    CheckpointInfo,
    TaskError,
    TaskErrorCode,
    TaskState,
    TaskStatus,
    TaskType,
)

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = ["ResumablePipeline", "check_pipelines", "hydrate"]


@runtime_checkable
class ResumablePipeline(Protocol):
    """A pipeline whose checkpoints survive a restart: the next process resumes it.

    Pass it in ``StreamingSession(..., pipelines=[...])`` (and ``SessionManager``); a task that
    ran it and was PAUSED at ``runtime.checkpoint()`` when its process went away stays PAUSED
    after hydrate, and the user's answer calls :meth:`resume` instead of re-running it. Keep what
    ``resume`` needs in the checkpoint's ``data`` (stored with the task, never published).
    """

    name: str
    """Identifies the pipeline across processes (``TaskState.pipeline``)."""

    def __call__(self, runtime: TaskRuntime, /) -> Awaitable[object]:
        """Run the task from the start (what a ``TaskPipeline`` does)."""
        ...

    def resume(
        self, runtime: TaskRuntime, checkpoint: CheckpointInfo, answer: CheckpointAnswer, /
    ) -> Awaitable[object]:
        """Continue after ``checkpoint`` was answered; return what ``__call__`` returns."""
        ...


def check_pipelines(pipelines: Iterable[object]) -> dict[str, ResumablePipeline]:
    """The resumable pipelines by name; ``TypeError``/``ValueError`` saying what to pass."""
    by_name: dict[str, ResumablePipeline] = {}
    for pipeline in pipelines:
        name = getattr(pipeline, "name", None)
        resume = getattr(pipeline, "resume", None)
        call = getattr(pipeline, "__call__", None)  # noqa: B004 - the method is inspected
        if not (isinstance(name, str) and name) or not inspect.iscoroutinefunction(resume):
            raise TypeError(
                f"pipelines takes ResumablePipelines: {pipeline!r} needs a non-empty str `name` "
                "and `async def resume(self, runtime, checkpoint, answer)`"
            )
        if not inspect.iscoroutinefunction(call):
            raise TypeError(f"{pipeline!r} needs `async def __call__(self, runtime)`")
        if name in by_name:
            raise ValueError(f"two pipelines are named {name!r}; give each a unique `name`")
        by_name[name] = cast(ResumablePipeline, pipeline)
    return by_name


_SCAN = 100


async def _scan(engine: Engine, namespace: str) -> AsyncIterator[Record]:
    store = engine.outbox.store
    assert store is not None
    after: str | None = None
    while True:
        page = await store.scan(
            namespace,
            f"{engine.session_id}/",
            after=after,
            limit=_SCAN,
            scope=engine.outbox.scope,
        )
        for record in page:
            yield record
        if len(page) < _SCAN:
            return
        after = page[-1].key


async def hydrate(engine: Engine) -> None:
    """Load the session from its store (nothing without one); see the module docstring.

    Raises:
        SessionTenantMismatch: the stored session belongs to another tenant.
    """
    outbox = engine.outbox
    store = outbox.store
    if store is None:
        return
    sid = engine.session_id
    meta = await store.get(NS_META, sid)
    if meta is not None and meta.scope.tenant != engine.tenant:
        raise SessionTenantMismatch(
            f"session {sid!r} is stored for another tenant, not {engine.tenant!r}; "
            "open it with its own tenant or use another session id"
        )
    outbox.records.meta_written = meta is not None
    log = StoreLog(store, sid, outbox.scope)
    last = await log.last_seq()
    hub_log = engine.hub.log
    assert hub_log is not None
    hub_log.continue_from(last, log)
    engine.continue_seq(last)
    await _load_context(engine)
    async for record in _scan(engine, NS_PATCHES):
        pending = PendingPatch.model_validate_json(record.value)
        engine.desk.pending[pending.patch_id] = pending
        outbox.records.patches.add(pending.patch_id)
    await _load_steering(engine)
    live: list[TaskRecord] = []
    try:
        await _restore_all(engine, live)
    except BaseException:
        # Never part of this process: nothing may wait for them (aclose would, forever).
        for record in live:
            if record.live and record.scope is None:
                engine.records.pop(record.task_id, None)
                record.done.set()
        raise
    await outbox.flush()


async def _restore_all(engine: Engine, live: list[TaskRecord]) -> None:
    outbox = engine.outbox
    async for stored in _scan(engine, NS_TASKS):
        try:
            record = _restore(engine, stored.value)
        except (ValueError, KeyError, TypeError) as exc:  # pydantic's ValidationError included
            raise SessionError(
                f"stored task record {NS_TASKS} {stored.key!r} is not one this package wrote "
                f"({type(exc).__name__}: {exc}); remove it, or erase the session with "
                f"store.erase({engine.tenant!r}, session={engine.session_id!r})"
            ) from exc
        outbox.records.mark(record)
        if record.live:
            live.append(record)
    for record in engine.records.values():
        parent = engine.records.get(record.spec.parent_task_id or "")
        if parent is not None:
            parent.children.append(record)
    async for stored in _scan(engine, NS_GROUPS):  # before interrupting: members end in them
        group = _restore_group(engine, stored.value)
        outbox.records.groups[group.group.group_id] = (id(group.group), len(group.patches))
    for record in live:
        pipeline = outbox.resumable.get(record.pipeline_name)
        checkpoint = record.checkpoint
        if record.status is TaskStatus.PAUSED and checkpoint is not None and pipeline is not None:
            _keep_parked(engine, record, pipeline, checkpoint)
        else:
            _interrupt(engine, record)


async def _load_context(engine: Engine) -> None:
    store = engine.outbox.store
    assert store is not None
    stored = await store.get(NS_CONTEXT, engine.session_id, scope=engine.outbox.scope)
    if stored is None:
        return
    data = cast(dict[str, Any], json.loads(stored.value))
    context = engine.context
    context.llm_context = data["llm_context"]
    context.memory = data["memory"]
    context.artifacts = data["artifacts"]
    context.background_results = data["background_results"]
    context.version = data["version"]
    engine.outbox.records.context_version = context.version


_EVENT = TypeAdapter(SteeringEvent)


async def _load_steering(engine: Engine) -> None:
    store = engine.outbox.store
    assert store is not None
    stream = steering_stream(engine.session_id)
    after = 0
    while True:
        entries = await store.read(stream, after, limit=500, scope=engine.outbox.scope)
        for entry in entries:
            data = cast(dict[str, JsonValue], json.loads(entry.value))
            if data.get("outcome") != SteeringOutcome.REJECTED.value:
                event = _EVENT.validate_python(data["event"])
                engine.steerer._remember(event)  # pyright: ignore[reportPrivateUsage]
        if len(entries) < 500:
            return
        after = entries[-1].seq


def _restore_group(engine: Engine, value: bytes) -> GroupRecord:
    data = cast(dict[str, Any], json.loads(value))
    group = TaskGroup.model_validate(data["group"])
    record = GroupRecord(
        group,
        members=[engine.records[t] for t in group.task_ids if t in engine.records],
        patches=[
            (ContextPatch.model_validate(patch), MergeStrategy(strategy))
            for patch, strategy in data["patches"]
        ],
    )
    if group.status in (GroupStatus.COMPLETE, GroupStatus.FAILED):
        record.done.set()
    engine.groups.records[group.group_id] = record
    return record


async def _gone(runtime: TaskRuntime) -> None:
    raise RuntimeError(f"task {runtime.task_id!r} ran in an earlier process; it cannot run again")


def _restore(engine: Engine, value: bytes) -> TaskRecord:
    data = cast(dict[str, Any], json.loads(value))
    state = TaskState.model_validate(data["state"])
    spec = SpawnSpec(
        task_type=state.task_type,
        query=state.query,
        description=state.description,
        priority=state.priority,
        parent_task_id=state.parent_task_id,
        propagate_on_cancel=state.propagate_on_cancel,
        notify_on_complete=state.notify_on_complete,
        if_busy="queue",
        merge_strategy=state.merge_strategy,
        group_id=state.group_id,
        task_id=state.task_id,
        trace_id=state.trace_id,
        spawned_from_event_id=cast(str | None, data.get("spawned_from_event_id")),
    )
    record = TaskRecord(
        task_id=state.task_id,
        spec=spec,
        pipeline=_gone,
        pipeline_name=state.pipeline,
        order=engine.next_order(),
        context_version=state.context_version,
        inbox=SteeringInbox(1),
        status=state.status,
        progress=state.progress,
        result=state.result,
        error=state.error,
        cancel_reason=state.cancel_reason,
        created_at=state.created_at,
        started_at=state.started_at,
        finished_at=state.finished_at,
        updated_at=state.updated_at,
        checkpoint=state.checkpoint,
    )
    if not record.live:
        record.done.set()
    engine.records[record.task_id] = record
    return record


def _interrupt(engine: Engine, record: TaskRecord) -> None:
    previous = record.status
    assert previous is not None
    finish.fail(
        engine,
        record,
        TaskError(
            code=TaskErrorCode.INTERRUPTED,
            message=(
                f"the process running task {record.task_id!r} ended while it was "
                f"{previous.value}; spawn it again to retry"
            ),
        ),
        "interrupted",
    )


def _keep_parked(
    engine: Engine, record: TaskRecord, pipeline: ResumablePipeline, info: CheckpointInfo
) -> None:
    """Leave the task PAUSED at its checkpoint; its answer runs ``pipeline.resume``."""
    spec = record.spec
    record.inbox = new_inbox(engine)
    record.runtime = new_runtime(engine, record)
    waiting = OpenCheckpoint(record, info)
    engine.checkpoints.open[info.resume_token] = waiting
    if spec.task_type is TaskType.FOREGROUND:
        engine.scheduler.foreground = record  # still the session's foreground turn

    async def resumed(runtime: TaskRuntime) -> object:
        record.stop_clock()  # parked: waiting never counts toward max_task_runtime_s
        try:
            await waiting.answered.wait()
        finally:
            engine.checkpoints.open.pop(info.resume_token, None)
            record.checkpoint = None
        answer = waiting.answer
        assert answer is not None
        await engine.scheduler.reacquire(record)
        record.run_clock()
        engine.transition(  # the one transition path
            record, TaskStatus.RUNNING, "checkpoint_answered"
        )
        return await pipeline.resume(runtime, info, answer)

    record.pipeline = resumed
    engine.start_restored(record)
