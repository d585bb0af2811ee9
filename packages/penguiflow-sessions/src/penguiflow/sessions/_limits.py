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

    @field_validator("max_concurrent_tasks", "update_queue_size", "replay_buffer_size")
    @classmethod
    def _positive(cls, value: int | None) -> int | None:
        if value is not None and value <= 0:
            raise ValueError("must be a positive int, or None for unlimited")
        return value
