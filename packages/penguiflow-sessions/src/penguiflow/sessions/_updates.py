"""Updates: what a session publishes, in order, to its subscribers."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import ClassVar, Final, NamedTuple, cast

from pydantic import BaseModel, ConfigDict, Field, JsonValue, computed_field

from ._choices import Choice

__all__ = [
    "CRITICAL_UPDATE_TYPES",
    "StateUpdate",
    "UpdateRow",
    "UpdateType",
    "build_update",
    "to_json",
]


class UpdateType(Choice):
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


class UpdateRow(NamedTuple):
    """The fields of a :class:`StateUpdate` as a tuple: how a replay log keeps it compactly."""

    session_id: str
    seq: int
    update_type: UpdateType
    task_id: str | None
    trace_id: str | None
    content: JsonValue
    step_index: int | None
    total_steps: int | None
    created_at: datetime

    @classmethod
    def of(cls, update: StateUpdate) -> UpdateRow:
        """The row of ``update`` (its own field values, shared, not copied)."""
        # A model's __dict__ holds its fields in declaration order, as this tuple does.
        return cls._make(update.__dict__.values())

    def update(self) -> StateUpdate:
        """The :class:`StateUpdate` of this row (equal to the one it was taken from)."""
        return build_update(*self)


_ALL_FIELDS: Final[set[str]] = set(StateUpdate.model_fields)
_new = object.__new__
_set = object.__setattr__


def build_update(
    session_id: str,
    seq: int,
    update_type: UpdateType,
    task_id: str | None,
    trace_id: str | None,
    content: JsonValue,
    step_index: int | None,
    total_steps: int | None,
    created_at: datetime,
) -> StateUpdate:
    """A :class:`StateUpdate` from trusted parts, without validation (the session's hot path).

    Only for values the session checked already: ``content`` came through :func:`to_json`
    (a fresh copy) or was built by the session, ``update_type`` is an :class:`UpdateType`,
    ``seq >= 1``, ``created_at`` is aware UTC. The result equals, and dumps the same JSON as,
    ``StateUpdate(...)`` of the same values (a test pins that). Like
    ``StateUpdate.model_construct`` without its per-call field loop; the frozen model never
    mutates its fields set, so one set is shared.
    """
    update = _new(StateUpdate)
    _set(
        update,
        "__dict__",
        {
            "session_id": session_id,
            "seq": seq,
            "update_type": update_type,
            "task_id": task_id,
            "trace_id": trace_id,
            "content": content,
            "step_index": step_index,
            "total_steps": total_steps,
            "created_at": created_at,
        },
    )
    _set(update, "__pydantic_fields_set__", _ALL_FIELDS)
    _set(update, "__pydantic_extra__", None)
    _set(update, "__pydantic_private__", None)
    return update


def to_json(value: object, *, what: str) -> JsonValue:
    """``value`` as JSON data: pydantic models in JSON mode, JSON values copied.

    The result is a fresh copy (dicts and lists rebuilt), so a caller that later mutates
    ``value`` never changes what was published.

    Raises:
        TypeError: ``value`` is neither; the message names ``what`` and the offending part.
    """
    if isinstance(value, BaseModel):
        return cast(JsonValue, value.model_dump(mode="json"))
    try:
        return _copy_json(value)
    except _NotJson:
        _check_json(value, what, "")  # raises the TypeError naming the offending part
        raise


class _NotJson(Exception):
    pass


def _copy_json(value: object) -> JsonValue:
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        raise _NotJson
    if isinstance(value, dict):
        out: dict[str, JsonValue] = {}
        for key, item in cast(dict[object, object], value).items():
            if not isinstance(key, str):
                raise _NotJson
            out[key] = _copy_json(item)
        return out
    if isinstance(value, list):
        return [_copy_json(item) for item in cast(list[object], value)]
    raise _NotJson


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
