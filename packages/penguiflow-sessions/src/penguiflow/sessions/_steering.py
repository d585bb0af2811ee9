"""Steering types: session events, receipts, the control policy, and the per-task inbox.

They build on the planner's steering types: a session :class:`SteeringEvent` is also a
planner ``SteeringEvent`` and a session :class:`SteeringInbox` is also a planner
``SteeringInbox``, so a planner run reads a task's inbox directly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass as std_dataclass
from enum import StrEnum
from typing import ClassVar, Final, Literal, cast

import anyio
from pydantic import BaseModel, ConfigDict, Field, JsonValue
from pydantic.dataclasses import dataclass

from penguiflow.planner._steering import SteeringEvent as PlannerSteeringEvent
from penguiflow.planner._steering import SteeringEventType
from penguiflow.planner._steering import SteeringInbox as PlannerSteeringInbox

from ._flag import Flag

__all__ = [
    "ControlPolicy",
    "SteeringEvent",
    "SteeringEventType",
    "SteeringInbox",
    "SteeringOutcome",
    "SteeringReceipt",
    "check_required",
    "sanitise",
]

Source = Literal["user", "agent", "system"]


@dataclass(frozen=True, kw_only=True)
class SteeringEvent(PlannerSteeringEvent):
    """A steering event for one task of one session (also a planner ``SteeringEvent``).

    ``payload`` must be JSON data: anything else fails at construction with pydantic's
    ``ValidationError``. Required payload fields per type: ``INJECT_CONTEXT{text}``,
    ``REDIRECT{instruction}``, ``CANCEL{reason?}``, ``PRIORITIZE{priority}``,
    ``PAUSE{reason?}``, ``RESUME{reason?}``, ``APPROVE{resume_token | patch_id, input?,
    strategy?}``, ``REJECT{resume_token | patch_id, reason?}``, ``USER_MESSAGE{text}``.
    """

    session_id: str
    """The session the event is for; another session's event is rejected."""
    task_id: str
    """The task the event is for."""
    payload: dict[str, JsonValue] = Field(default_factory=dict[str, JsonValue])
    """The event's JSON body."""
    source: Source = "user"
    """Who sent it: approvals count only from ``"user"``."""
    trace_id: str | None = None
    """A trace id to correlate it with, if any."""


class SteeringOutcome(StrEnum):
    """What :meth:`StreamingSession.steer` did with an event."""

    DELIVERED = "DELIVERED"
    """Queued in the task's inbox for its pipeline."""
    APPLIED = "APPLIED"
    """Acted on by the session (cancel, pause, approval …)."""
    PARKED = "PARKED"
    """Held until the user confirms it (a ``confirm_steering`` checkpoint)."""
    DUPLICATE = "DUPLICATE"
    """Its ``event_id`` was seen before; nothing done."""
    REJECTED = "REJECTED"
    """Refused; ``reason`` says why."""


class SteeringReceipt(BaseModel):
    """What ``steer()`` returns; truthy iff the outcome is DELIVERED or APPLIED."""

    model_config: ClassVar[ConfigDict] = ConfigDict(frozen=True)

    event_id: str
    """The event this receipt is for."""
    outcome: SteeringOutcome
    """What happened to it."""
    reason: str | None = None
    """Why it was rejected (``"session_mismatch"``, ``"invalid"`` …), else None."""
    errors: list[str] = Field(default_factory=list[str])
    """What is wrong with an ``"invalid"`` event's payload."""
    resume_token: str | None = None
    """The token a user APPROVE/REJECT answers a PARKED event with."""
    truncated: bool = False
    """Whether sanitising clamped the payload."""

    def __bool__(self) -> bool:
        """True iff the event was DELIVERED or APPLIED."""
        return self.outcome in (SteeringOutcome.DELIVERED, SteeringOutcome.APPLIED)


@std_dataclass(frozen=True, kw_only=True)
class ControlPolicy:
    """Which steering events wait for the user's confirmation; subclass to customise."""

    require_confirmation: bool = True
    """Whether destructive events from anyone but the user are parked."""
    destructive_events: frozenset[SteeringEventType] = frozenset(
        {SteeringEventType.CANCEL, SteeringEventType.REDIRECT}
    )
    """The event types that count as destructive."""

    def requires_confirmation(self, event: SteeringEvent) -> bool:
        """Whether ``event`` is parked until a user APPROVE (its payload cannot say otherwise)."""
        return (
            self.require_confirmation
            and event.source != "user"
            and event.event_type in self.destructive_events
        )


class SteeringInbox(PlannerSteeringInbox):
    """One task's inbox (made by the session); the planner's inbox plus pause and ``next()``."""

    def __init__(self, maxsize: int = 200, *, max_pending_user_messages: int | None = 2) -> None:
        super().__init__(maxsize)
        self._max_messages = max_pending_user_messages
        self._cancel_reason: str | None = None
        self._resumed = Flag(is_set=True)

    def push_nowait(self, event: PlannerSteeringEvent) -> bool:
        """Queue ``event``; False when full or too many USER_MESSAGEs wait; CANCEL always fits."""
        kind = event.event_type
        if kind is SteeringEventType.USER_MESSAGE and self._max_messages is not None:
            waiting = sum(1 for e in self._events if e.event_type is kind)
            if waiting >= self._max_messages:
                return False
        if kind is SteeringEventType.CANCEL and self._cancel_reason is None:
            reason = event.payload.get("reason")
            self._cancel_reason = reason if isinstance(reason, str) and reason else "cancelled"
        return super().push_nowait(event)

    def has_event(self) -> bool:
        """Whether an event is queued."""
        return bool(self._events)

    async def next(self) -> PlannerSteeringEvent:
        """Wait for and take the oldest queued event."""
        while not self._events:
            await self.wait_for_event()
        event = self._events.popleft()
        if not self._events:
            self._arrived = anyio.Event()
        return event

    @property
    def cancel_reason(self) -> str | None:
        """The reason of the CANCEL that arrived, if one did."""
        return self._cancel_reason

    @property
    def paused(self) -> bool:
        """Whether a PAUSE is in force (no RESUME since)."""
        return not self._resumed.is_set()

    async def wait_if_paused(self) -> None:
        """Return once no PAUSE is in force (at once if none is)."""
        await self._resumed.wait()

    def set_paused(self, paused: bool) -> None:
        """Put a PAUSE in force or lift it (the session calls this)."""
        if paused and not self.paused:
            self._resumed = Flag()
        elif not paused:
            self._resumed.set()


# ------------------------------------------------------------------------ sanitising
MAX_DEPTH: Final = 6
MAX_KEYS: Final = 64
MAX_ITEMS: Final = 50
MAX_STRING: Final = 4096


def sanitise(payload: dict[str, JsonValue]) -> tuple[dict[str, JsonValue], bool]:
    """``payload`` clamped to depth 6, 64 keys, 50 items, 4 096-char strings; truncated?"""
    flag = [False]
    clean = cast(dict[str, JsonValue], _clamp(payload, 1, flag))
    return clean, flag[0]


def _clamp(value: JsonValue, depth: int, flag: list[bool]) -> JsonValue:
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            flag[0] = True
            return value[:MAX_STRING]
        return value
    if isinstance(value, dict):
        out: dict[str, JsonValue] = {}
        for key, item in value.items():
            if len(out) >= MAX_KEYS:
                flag[0] = True
                break
            if isinstance(item, (dict, list)) and depth >= MAX_DEPTH:
                flag[0] = True
                continue
            out[key] = _clamp(item, depth + 1, flag)
        return out
    if isinstance(value, list):
        items: list[JsonValue] = []
        for item in value:
            if len(items) >= MAX_ITEMS:
                flag[0] = True
                break
            if isinstance(item, (dict, list)) and depth >= MAX_DEPTH:
                flag[0] = True
                continue
            items.append(_clamp(item, depth + 1, flag))
        return items
    return value


def json_size(payload: dict[str, JsonValue]) -> int:
    """The payload's compact JSON size in bytes."""
    return len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())


_MERGE_VALUES: Final = ("append", "replace", "human_gated")


def check_required(kind: SteeringEventType, payload: dict[str, JsonValue]) -> list[str]:
    """What is missing or wrong in ``payload`` for ``kind`` (empty: valid)."""
    errors: list[str] = []

    def need_str(name: str, *, optional: bool = False) -> None:
        value = payload.get(name)
        if value is None and optional:
            return
        if not isinstance(value, str) or not value:
            errors.append(f"{kind.name} needs {name!r}: a non-empty string")

    S = SteeringEventType
    if kind is S.INJECT_CONTEXT or kind is S.USER_MESSAGE:
        need_str("text")
    elif kind is S.REDIRECT:
        need_str("instruction")
    elif kind in (S.CANCEL, S.PAUSE, S.RESUME):
        need_str("reason", optional=True)
    elif kind is S.PRIORITIZE:
        priority = payload.get("priority")
        if isinstance(priority, bool) or not isinstance(priority, int):
            errors.append("PRIORITIZE needs 'priority': an int")
    else:  # APPROVE / REJECT
        keys = [k for k in ("resume_token", "patch_id") if payload.get(k) is not None]
        if len(keys) != 1:
            errors.append(f"{kind.name} needs exactly one of 'resume_token' or 'patch_id'")
        for key in keys:
            need_str(key)
        if kind is S.APPROVE:
            strategy = payload.get("strategy")
            if strategy is not None and strategy not in _MERGE_VALUES:
                errors.append(f"APPROVE 'strategy' must be one of {', '.join(_MERGE_VALUES)}")
        else:
            need_str("reason", optional=True)
    return errors
