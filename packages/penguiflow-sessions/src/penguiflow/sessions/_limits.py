"""SessionLimits: the bounds a session enforces (this release: slots and queue sizes)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, field_validator

__all__ = ["SessionLimits"]


class SessionLimits(BaseModel):
    """A session's bounds; ``None`` means unlimited, zero or negative is a ``ValueError``."""

    model_config: ClassVar[ConfigDict] = ConfigDict(frozen=True)

    max_concurrent_tasks: int | None = 3
    """Background tasks RUNNING at once; the rest wait PENDING (checked when a slot frees).

    The foreground task never waits for one of these slots.
    """
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
    max_pending_patches: int | None = 32
    """Context patches waiting for the user at once (checked when a patch would wait)."""

    @field_validator(
        "max_concurrent_tasks",
        "update_queue_size",
        "replay_buffer_size",
        "steering_queue_size",
        "max_pending_user_messages",
        "max_steering_payload_bytes",
        "max_steering_events_per_task",
        "max_pending_patches",
    )
    @classmethod
    def _positive(cls, value: int | None) -> int | None:
        if value is not None and value <= 0:
            raise ValueError("must be a positive int, or None for unlimited")
        return value
