"""SessionLimits: the bounds a session enforces, and the spawn-time checks against them."""

from __future__ import annotations

import math
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, field_validator

from ._errors import SessionLimitExceeded
from ._tasks import TaskType

__all__ = ["SessionLimits", "check_count", "check_live"]


class SessionLimits(BaseModel):
    """A session's bounds; ``None`` means unlimited, zero or negative is a ``ValueError``."""

    model_config: ClassVar[ConfigDict] = ConfigDict(frozen=True, extra="forbid")

    max_tasks_per_session: int | None = 8
    """Live (PENDING/RUNNING/PAUSED) tasks at once (checked at spawn)."""
    max_background_tasks: int | None = 4
    """Live background tasks at once (checked at spawn)."""
    max_concurrent_tasks: int | None = 3
    """Background tasks RUNNING at once; the rest wait PENDING (checked when a slot frees).

    The foreground task never waits for one of these slots, and a task parked at a
    checkpoint holds none.
    """
    max_task_runtime_s: float | None = 900
    """Running time per task in seconds, paused time excluded; past it the task FAILS with
    ``TASK_TIMEOUT`` (reason ``"timeout"``)."""
    max_tasks_per_group: int | None = 10
    """Tasks in one task group (checked at spawn into the group)."""
    max_pending_patches: int | None = 32
    """Context patches waiting for the user at once (checked when a patch would wait)."""
    update_queue_size: int | None = 500
    """Updates queued per subscriber before backpressure drops or evicts (checked per update)."""
    replay_buffer_size: int | None = 1000
    """Updates kept in memory for ``since_id`` cursors and lagging subscribers."""
    steering_queue_size: int | None = 200
    """Events queued per task inbox before steering gets ``REJECTED "inbox_full"``."""
    max_pending_user_messages: int | None = 2
    """USER_MESSAGEs waiting in one inbox before the next is ``REJECTED "inbox_full"``."""
    max_steering_payload_bytes: int | None = 16_384
    """The sanitised payload's JSON size; larger is ``REJECTED "payload_too_large"``."""
    max_steering_events_per_task: int | None = 512
    """Event ids remembered per task to detect duplicates."""

    @field_validator(
        "max_tasks_per_session",
        "max_background_tasks",
        "max_concurrent_tasks",
        "max_tasks_per_group",
        "max_pending_patches",
        "update_queue_size",
        "replay_buffer_size",
        "steering_queue_size",
        "max_pending_user_messages",
        "max_steering_payload_bytes",
        "max_steering_events_per_task",
        mode="before",
    )
    @classmethod
    def _positive_int(cls, value: object) -> object:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be a positive int, or None for unlimited (got {value!r})")
        if value <= 0:
            raise ValueError(f"must be a positive int, or None for unlimited (got {value!r})")
        return value

    @field_validator("max_task_runtime_s", mode="before")
    @classmethod
    def _positive_seconds(cls, value: object) -> object:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"must be positive seconds, or None for unlimited (got {value!r})")
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"must be positive seconds, or None for unlimited (got {value!r})")
        return value


def check_count(limits: SessionLimits, field: str, current: int, *, owner: str, what: str) -> None:
    """Raise ``SessionLimitExceeded`` when ``current`` already reaches ``limits.<field>``.

    ``owner`` names who has them (``"session 's1'"``), ``what`` what they are
    (``"live background tasks"``).
    """
    value = getattr(limits, field)
    if value is not None and current >= value:
        raise SessionLimitExceeded(
            f"{owner} already has {current} {what} (SessionLimits.{field}={value}); "
            "wait for one to finish or raise the limit",
            limit=field,
            value=value,
            current=current,
        )


def check_live(
    limits: SessionLimits, session_id: str, live: list[TaskType], spawning: TaskType
) -> None:
    """The spawn-time limits on live tasks (``live``: the types of the live tasks)."""
    owner = f"session {session_id!r}"
    check_count(limits, "max_tasks_per_session", len(live), owner=owner, what="live tasks")
    if spawning is TaskType.BACKGROUND:
        background = live.count(TaskType.BACKGROUND)
        check_count(
            limits, "max_background_tasks", background, owner=owner, what="live background tasks"
        )
