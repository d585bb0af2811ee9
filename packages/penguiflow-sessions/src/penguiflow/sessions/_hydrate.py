"""Hydrate: a session entering with a store picks up where the last process left it.

It loads the session's tasks, context, pending patches, the steering event ids it accepted
(so a duplicate is still a DUPLICATE after a restart) and the last update ``seq`` (so ``seq``
continues and old cursors stay valid). A task the store shows PENDING, RUNNING or PAUSED was
live in a process that is gone: it becomes FAILED with ``TaskError(code=INTERRUPTED)``,
publishing ``ERROR{code:"INTERRUPTED"}`` and ``STATUS_CHANGE{reason:"interrupted"}`` like any
failure, so nothing is silently lost.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from pydantic import JsonValue, TypeAdapter

from penguiflow.core import Record

from ._errors import SessionTenantMismatch
from ._merge import PendingPatch
from ._persist import NS_CONTEXT, NS_META, NS_PATCHES, NS_TASKS, StoreLog, steering_stream
from ._records import TaskRecord
from ._runtime import SpawnSpec, TaskRuntime
from ._steering import SteeringEvent, SteeringInbox, SteeringOutcome
from ._tasks import TaskError, TaskErrorCode, TaskState

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = ["hydrate"]

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
    async for stored in _scan(engine, NS_TASKS):
        record = _restore(engine, stored.value)
        outbox.records.mark(record)
        if record.live:
            live.append(record)
    for record in engine.records.values():
        parent = engine.records.get(record.spec.parent_task_id or "")
        if parent is not None:
            parent.children.append(record)
    for record in live:
        _interrupt(engine, record)
    await outbox.flush()


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
    )
    if not record.live:
        record.done.set()
    engine.records[record.task_id] = record
    return record


def _interrupt(engine: Engine, record: TaskRecord) -> None:
    previous = record.status
    assert previous is not None
    started_at: datetime | None = record.started_at
    # The slot it held belonged to the dead process: release nothing here.
    record.started_at = None
    engine._fail(  # pyright: ignore[reportPrivateUsage]  # the one failure path
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
    record.started_at = started_at
