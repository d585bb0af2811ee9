"""Tasks: their types, the status state machine, results, errors and frozen snapshots."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import ClassVar, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from ._choices import Choice
from ._merge import ContextPatch, MergeStrategy

__all__ = [
    "FINAL_STATUSES",
    "CheckpointAnswer",
    "CheckpointInfo",
    "NotificationAction",
    "NotificationPayload",
    "TaskError",
    "TaskErrorCode",
    "TaskResult",
    "TaskState",
    "TaskStatus",
    "TaskType",
    "check_transition",
]


class TaskType(Choice):
    """Whether a task is the user's current turn or runs beside it."""

    FOREGROUND = "FOREGROUND"
    """The user's current turn; at most one is active per session."""
    BACKGROUND = "BACKGROUND"
    """Runs beside the foreground, in one of ``max_concurrent_tasks`` slots."""


class TaskStatus(Choice):
    """Where a task is in its life; COMPLETE, FAILED and CANCELLED are final."""

    PENDING = "PENDING"
    """Recorded, waiting for its slot."""
    RUNNING = "RUNNING"
    """Its pipeline runs."""
    PAUSED = "PAUSED"
    """Its pipeline is parked (a checkpoint or a PAUSE)."""
    COMPLETE = "COMPLETE"
    """Its pipeline returned; its RESULT was published."""
    FAILED = "FAILED"
    """Its pipeline raised or returned an invalid result; its ERROR was published."""
    CANCELLED = "CANCELLED"
    """It was cancelled and its pipeline's cleanup ran."""


FINAL_STATUSES: Final[frozenset[TaskStatus]] = frozenset(
    {TaskStatus.COMPLETE, TaskStatus.FAILED, TaskStatus.CANCELLED}
)

_TRANSITIONS: Final[dict[TaskStatus | None, frozenset[TaskStatus]]] = {
    None: frozenset({TaskStatus.PENDING}),
    # PENDING -> FAILED happens only at hydrate: a task queued in a process that is gone (§9).
    TaskStatus.PENDING: frozenset({TaskStatus.RUNNING, TaskStatus.FAILED, TaskStatus.CANCELLED}),
    TaskStatus.RUNNING: frozenset(
        {TaskStatus.PAUSED, TaskStatus.COMPLETE, TaskStatus.FAILED, TaskStatus.CANCELLED}
    ),
    TaskStatus.PAUSED: frozenset({TaskStatus.RUNNING, TaskStatus.FAILED, TaskStatus.CANCELLED}),
    TaskStatus.COMPLETE: frozenset(),
    TaskStatus.FAILED: frozenset(),
    TaskStatus.CANCELLED: frozenset(),
}


def check_transition(previous: TaskStatus | None, status: TaskStatus) -> None:
    """Refuse a status change the state machine does not have (an internal invariant)."""
    if status not in _TRANSITIONS[previous]:
        raise RuntimeError(f"penguiflow.sessions bug: a task cannot go {previous} -> {status}")


class TaskErrorCode(StrEnum):
    """The stable code of a task's failure."""

    PIPELINE_EXCEPTION = "PIPELINE_EXCEPTION"
    """The pipeline raised."""
    TASK_TIMEOUT = "TASK_TIMEOUT"
    """The task ran longer than ``max_task_runtime_s``."""
    INTERRUPTED = "INTERRUPTED"
    """The process that ran the task ended while it was live."""
    INVALID_RESULT = "INVALID_RESULT"
    """The pipeline returned something that is neither JSON data nor a pydantic model."""


class TaskError(BaseModel):
    """Why a task failed."""

    model_config: ClassVar[ConfigDict] = ConfigDict(frozen=True)

    code: TaskErrorCode
    """The stable code."""
    message: str
    """A human-readable message."""
    error_type: str | None = None
    """The exception's class name, if an exception caused it."""


class NotificationAction(BaseModel):
    """A button a notification offers the user."""

    model_config: ClassVar[ConfigDict] = ConfigDict(frozen=True)

    id: str
    """What the client sends back when it is chosen."""
    label: str
    """What the button says."""
    payload: dict[str, JsonValue] = Field(default_factory=dict[str, JsonValue])
    """Data the client sends back with it."""


class NotificationPayload(BaseModel):
    """The content of a NOTIFICATION update."""

    model_config: ClassVar[ConfigDict] = ConfigDict(frozen=True)

    severity: Literal["info", "warning", "error"] = "info"
    """How loudly a client should show it."""
    code: str | None = None
    """A stable machine-readable code, if any (``"PENDING_PATCH_LIMIT"`` …)."""
    title: str
    """A one-line summary."""
    body: str = ""
    """The details."""
    actions: list[NotificationAction] = Field(default_factory=list[NotificationAction])
    """Buttons to offer."""


class TaskResult(BaseModel):
    """What a pipeline returns; any other return value becomes ``TaskResult(payload=value)``."""

    model_config: ClassVar[ConfigDict] = ConfigDict(frozen=True)

    payload: JsonValue | BaseModel = None
    """The answer: JSON data or a pydantic model (published in JSON mode)."""
    context_patch: ContextPatch | None = None
    """What to merge into the session context, by the task's ``merge_strategy``."""
    digest: list[str] = Field(default_factory=list[str])
    """Short lines summarising the result."""
    artifacts: list[JsonValue] = Field(default_factory=list[JsonValue])
    """Artifacts the task produced (JSON references)."""
    sources: list[JsonValue] = Field(default_factory=list[JsonValue])
    """Sources the task used."""
    notification: NotificationPayload | None = None
    """The NOTIFICATION a background task publishes on completion (None: a default one)."""
    metadata: dict[str, JsonValue] = Field(default_factory=dict[str, JsonValue])
    """Anything else for the caller of ``run_task``; never published."""


class CheckpointInfo(BaseModel):
    """An open checkpoint of a task, as ``TaskState.checkpoint`` shows it."""

    model_config: ClassVar[ConfigDict] = ConfigDict(frozen=True)

    resume_token: str
    """What APPROVE/REJECT ``{resume_token}`` names."""
    kind: str
    """What is asked (``"approval_required"`` …)."""
    prompt: str
    """The question for the user."""
    payload: JsonValue = None
    """Details for the user (published with the CHECKPOINT)."""
    options: tuple[str, ...] = ("approve", "reject")
    """The answers a client should offer."""
    data: JsonValue = None
    """JSON the pipeline keeps for ``resume()``; stored with the task, never published."""
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    """When the task parked."""


class CheckpointAnswer(BaseModel):
    """How the user answered a checkpoint; what ``runtime.checkpoint()`` returns."""

    model_config: ClassVar[ConfigDict] = ConfigDict(frozen=True)

    decision: Literal["approve", "reject", "message"]
    """APPROVE, REJECT, or a USER_MESSAGE to the task."""
    input: JsonValue = None
    """APPROVE's ``payload.input``, or the message's text."""
    reason: str | None = None
    """REJECT's ``payload.reason``."""
    event_id: str | None = None
    """The steering event that answered."""


class TaskState(BaseModel):
    """A frozen snapshot of one task; its JSON is what a task listing serves."""

    model_config: ClassVar[ConfigDict] = ConfigDict(frozen=True)

    task_id: str
    """The task's id, unique in its session."""
    session_id: str
    """Its session."""
    tenant: str
    """Its session's tenant."""
    task_type: TaskType
    """FOREGROUND or BACKGROUND."""
    status: TaskStatus
    """Where it is in its life."""
    priority: int
    """Higher starts first among PENDING background tasks."""
    query: str | None
    """The query it was spawned with."""
    description: str | None
    """A label for people."""
    pipeline: str
    """The pipeline's ``name``, else its qualified name."""
    parent_task_id: str | None
    """The task that spawned it, if any."""
    group_id: str | None
    """Its task group, if any."""
    merge_strategy: MergeStrategy
    """How its result's ``context_patch`` reaches the session context."""
    propagate_on_cancel: Literal["cascade", "isolate"]
    """Whether cancelling its parent cancels it."""
    notify_on_complete: bool
    """Whether a background completion publishes a NOTIFICATION."""
    trace_id: str | None
    """Its trace id, if any."""
    progress: dict[str, JsonValue] | None
    """The last PROGRESS dict it emitted."""
    result: JsonValue
    """The JSON of its result's payload once COMPLETE."""
    error: TaskError | None
    """Why it failed, once FAILED."""
    cancel_reason: str | None
    """Why it was cancelled, once cancelling."""
    checkpoint: CheckpointInfo | None
    """The checkpoint it waits at (cleared once answered)."""
    context_version: int
    """The session context version its snapshot was taken at."""
    created_at: datetime
    """When it was spawned."""
    started_at: datetime | None
    """When it first ran."""
    finished_at: datetime | None
    """When it reached a final status."""
    updated_at: datetime
    """Its last status change."""
