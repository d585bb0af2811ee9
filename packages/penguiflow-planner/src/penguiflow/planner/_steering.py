"""Steering a run from outside: inject context, redirect, pause, cancel."""

from __future__ import annotations

import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import anyio

__all__ = ["SteeringEvent", "SteeringEventType", "SteeringInbox"]


class SteeringEventType(StrEnum):
    """What a steering event asks for."""

    INJECT_CONTEXT = "inject_context"
    USER_MESSAGE = "user_message"
    REDIRECT = "redirect"
    CANCEL = "cancel"
    PAUSE = "pause"
    RESUME = "resume"
    PRIORITIZE = "prioritize"
    APPROVE = "approve"
    REJECT = "reject"


def _uuid() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class SteeringEvent:
    """One message to a running run."""

    event_type: SteeringEventType
    payload: dict[str, Any] = field(default_factory=dict[str, Any])
    event_id: str = field(default_factory=_uuid)
    source: str = "user"
    created_at: float = field(default_factory=time.time)


class SteeringInbox:
    """A bounded inbox a run drains between steps; ``CANCEL`` is watched during calls too."""

    def __init__(self, maxsize: int = 100) -> None:
        if maxsize < 1:
            raise ValueError(f"SteeringInbox maxsize must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self._events: deque[SteeringEvent] = deque()
        self._cancelled = anyio.Event()
        self._arrived = anyio.Event()

    def push_nowait(self, event: SteeringEvent) -> bool:
        """Queue ``event``; False (and nothing queued) when the inbox is full.

        A ``CANCEL`` always gets through: it is acted on at once, even mid-call.
        """
        if event.event_type is SteeringEventType.CANCEL:
            self._cancelled.set()
        elif len(self._events) >= self.maxsize:
            return False
        self._events.append(event)
        self._arrived.set()
        return True

    def drain(self) -> list[SteeringEvent]:
        """Take every queued event, oldest first."""
        events = list(self._events)
        self._events.clear()
        self._arrived = anyio.Event()
        return events

    @property
    def cancelled(self) -> bool:
        """Whether a ``CANCEL`` arrived."""
        return self._cancelled.is_set()

    async def wait_cancelled(self) -> None:
        """Return once a ``CANCEL`` arrives."""
        await self._cancelled.wait()

    async def wait_for_event(self) -> None:
        """Return once an event is queued (at once if one is waiting)."""
        if self._events:
            return
        await self._arrived.wait()

    def __len__(self) -> int:
        return len(self._events)
