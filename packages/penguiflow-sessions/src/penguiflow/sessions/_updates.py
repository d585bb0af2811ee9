"""Updates: what a session publishes, in order, to its subscribers."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from enum import StrEnum
from typing import ClassVar, Final, cast

from pydantic import BaseModel, ConfigDict, Field, JsonValue, computed_field

__all__ = ["CRITICAL_UPDATE_TYPES", "StateUpdate", "UpdateType", "to_json"]


class UpdateType(StrEnum):
    """The kind of a :class:`StateUpdate`; the value is its wire name."""

    THINKING = "THINKING"
    """Free-form reasoning text of a pipeline."""
    PROGRESS = "PROGRESS"
    """Progress of a task; a dict content also becomes ``TaskState.progress``."""
    TOOL_CALL = "TOOL_CALL"
    """A tool call starting or ending."""
    STREAM = "STREAM"
    """A delta of answer text (never critical, so backpressure can drop it)."""
    RESULT = "RESULT"
    """A task's result; exactly one per completed task, published by the session."""
    ERROR = "ERROR"
    """A task's failure ``{code, message, error_type}``."""
    CHECKPOINT = "CHECKPOINT"
    """A task waits for the user; published by the session."""
    STATUS_CHANGE = "STATUS_CHANGE"
    """A task's status transition ``{status, previous, reason, task_type}``."""
    NOTIFICATION = "NOTIFICATION"
    """A :class:`NotificationPayload` for the user."""


CRITICAL_UPDATE_TYPES: Final[frozenset[UpdateType]] = frozenset(
    {
        UpdateType.RESULT,
        UpdateType.ERROR,
        UpdateType.CHECKPOINT,
        UpdateType.STATUS_CHANGE,
        UpdateType.NOTIFICATION,
    }
)
"""Update types that backpressure never drops for a subscriber."""


class StateUpdate(BaseModel):
    """One update of a session, immutable; ``update_id`` is ``str(seq)``."""

    model_config: ClassVar[ConfigDict] = ConfigDict(frozen=True)

    session_id: str
    """The session that published it."""
    seq: int = Field(ge=1)
    """Position in the session's update order: 1, 2, 3 … across all its tasks."""
    update_type: UpdateType
    """What kind of update it is."""
    task_id: str | None = None
    """The task it is about (None for session-wide updates)."""
    trace_id: str | None = None
    """The task's trace id, if it has one."""
    content: JsonValue = None
    """The JSON body; its shape depends on ``update_type``."""
    step_index: int | None = None
    """The pipeline's step this update belongs to, if it says so."""
    total_steps: int | None = None
    """The pipeline's step count, if it knows it."""
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    """When it was published (UTC)."""

    @computed_field
    @property
    def update_id(self) -> str:
        """The cursor value of this update (``since_id``, SSE ``id:``)."""
        return str(self.seq)

    def to_payload(self) -> dict[str, JsonValue]:
        """The update as JSON-ready data, ``update_id`` included."""
        return self.model_dump(mode="json")


def to_json(value: object, *, what: str) -> JsonValue:
    """``value`` as JSON data: pydantic models in JSON mode, JSON values as they are.

    Raises:
        TypeError: ``value`` is neither; the message names ``what`` and the offending part.
    """
    if isinstance(value, BaseModel):
        return cast(JsonValue, value.model_dump(mode="json"))
    _check_json(value, what, "")
    return cast(JsonValue, value)


def _check_json(value: object, what: str, path: str) -> None:
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if math.isfinite(value):
            return
        raise TypeError(f"{what}{path} is {value!r}, which JSON cannot carry")
    if isinstance(value, list):
        for index, item in enumerate(cast(list[object], value)):
            _check_json(item, what, f"{path}[{index}]")
        return
    if isinstance(value, dict):
        for key, item in cast(dict[object, object], value).items():
            if not isinstance(key, str):
                raise TypeError(f"{what}{path} has the non-string key {key!r}; JSON keys are str")
            _check_json(item, what, f"{path}[{key!r}]")
        return
    raise TypeError(
        f"{what}{path} is a {type(value).__name__}, not JSON data or a pydantic model; "
        "pass dicts, lists, str, int, float, bool, None or a BaseModel"
    )
