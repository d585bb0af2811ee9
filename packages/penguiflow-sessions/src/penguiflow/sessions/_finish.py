"""How a task ends: its RESULT, ERROR or NOTIFICATION, then its terminal STATUS_CHANGE."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, JsonValue

from ._patches import Merged, PendingPatchLimit, fill_patch
from ._tasks import (
    NotificationPayload,
    TaskError,
    TaskErrorCode,
    TaskResult,
    TaskStatus,
    TaskType,
)
from ._updates import UpdateType, to_json

if TYPE_CHECKING:
    from ._engine import Engine
    from ._records import TaskRecord

__all__ = ["cancelled", "complete", "fail", "notify"]


def complete(engine: Engine, record: TaskRecord, value: object) -> None:
    """RESULT, then a background NOTIFICATION, then COMPLETE (INVALID_RESULT: FAILED)."""
    result = value if isinstance(value, TaskResult) else None
    try:
        if result is None:
            payload = to_json(value, what="the pipeline's return value")
            result = TaskResult(payload=value if isinstance(value, BaseModel) else payload)
        else:
            payload = to_json(result.payload, what="TaskResult.payload")
    except TypeError as exc:
        fail(
            engine,
            record,
            TaskError(code=TaskErrorCode.INVALID_RESULT, message=str(exc), error_type="TypeError"),
        )
        return
    record.result = payload
    record.task_result = result
    merged, refused = _merge_patch(engine, record, result)
    engine.publish(
        record.task_id,
        UpdateType.RESULT,
        {
            "payload": payload,
            "digest": list[JsonValue](result.digest),
            "artifacts": result.artifacts,
            "sources": result.sources,
            "patch_id": merged.patch_id if merged is not None else None,
        },
        trace_id=record.spec.trace_id,
    )
    if merged is not None:
        engine.desk.announce(merged)
    if refused is not None:
        engine.desk.refused(record.task_id, refused)
    if record.spec.task_type is TaskType.BACKGROUND and record.spec.notify_on_complete:
        label = record.spec.description or record.pipeline_name
        note = result.notification or NotificationPayload(
            title=f"Background task completed: {label}", body="\n".join(result.digest)
        )
        notify(engine, record, note)
    engine.end(record, TaskStatus.COMPLETE, "completed")


def fail(engine: Engine, record: TaskRecord, error: TaskError, reason: str = "failed") -> None:
    """ERROR, then a background NOTIFICATION, then FAILED."""
    record.error = error
    engine.publish(
        record.task_id,
        UpdateType.ERROR,
        error.model_dump(mode="json"),
        trace_id=record.spec.trace_id,
    )
    if record.spec.task_type is TaskType.BACKGROUND:
        label = record.spec.description or record.pipeline_name
        notify(
            engine,
            record,
            NotificationPayload(
                severity="error", title=f"Background task failed: {label}", body=error.message
            ),
        )
    engine.end(record, TaskStatus.FAILED, reason)


def cancelled(engine: Engine, record: TaskRecord, reason: str) -> None:
    """A background NOTIFICATION, then CANCELLED (after the pipeline's cleanup)."""
    record.cancel_reason = reason
    if record.spec.task_type is TaskType.BACKGROUND:
        label = record.spec.description or record.pipeline_name
        notify(
            engine,
            record,
            NotificationPayload(
                severity="warning", title=f"Background task cancelled: {label}", body=reason
            ),
        )
    engine.end(record, TaskStatus.CANCELLED, reason)


def notify(engine: Engine, record: TaskRecord, note: BaseModel) -> None:
    """Publish a NOTIFICATION of the task."""
    engine.publish(
        record.task_id,
        UpdateType.NOTIFICATION,
        note.model_dump(mode="json"),
        trace_id=record.spec.trace_id,
    )


def _merge_patch(
    engine: Engine, record: TaskRecord, result: TaskResult
) -> tuple[Merged | None, str | None]:
    """Merge the result's context patch by the task's strategy: (what happened, refusal)."""
    if result.context_patch is None:
        return None, None
    assert record.runtime is not None
    patch = fill_patch(
        result.context_patch,
        task_id=record.task_id,
        spawned_from_event_id=record.spec.spawned_from_event_id,
        snapshot=record.runtime.context,
    )
    if record.spec.group_id is not None:
        engine.groups.collect(record, patch)  # applied with the group's at its end
        return None, None
    try:
        return engine.desk.apply([(patch, record.spec.merge_strategy)]), None
    except PendingPatchLimit as exc:
        return None, f"the context patch of task {record.task_id!r} was dropped: {exc}"
