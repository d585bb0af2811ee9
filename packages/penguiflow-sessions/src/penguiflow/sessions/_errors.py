"""Every exception penguiflow.sessions raises, in one place.

The tree::

    PenguiFlowError                 root of everything penguiflow raises (penguiflow.core)
    └── SessionError                root of everything a session raises; also a runtime's
        │                           ``emit_update`` after its task ended
        ├── SessionClosed           the session is not open: enter it with ``async with`` first,
        │   (RuntimeError)          or it was closed by ``aclose()``
        ├── ForegroundBusy          ``if_busy="reject"`` while another foreground task is live
        ├── SessionLimitExceeded    a spawn beyond a ``SessionLimits`` bound (``limit``,
        │                           ``value``, ``current``); nothing was recorded
        ├── SessionTenantMismatch   the session id belongs to another tenant
        │   (PermissionError)
        ├── GroupNotFound           no task group with that id in this session
        │   (KeyError)
        ├── GroupSealed             a spawn into a group that was sealed
        ├── TaskNotFound            no task with that id in this session
        │   (KeyError)
        ├── UnknownCursor           a ``since_id`` that is malformed, ahead of the log or no
        │   (ValueError)            longer retained
        ├── SubscriberLagged        a subscriber fell so far behind that updates it must get are
        │                           gone; ``resume_from`` is its last delivered update id
        ├── TaskFailed              ``run_task``: the task ended FAILED (``.task``, ``.code``)
        ├── TaskCancelled           ``run_task``: the task ended CANCELLED (``.task``, ``.reason``)
        └── SessionTenantMismatch   the session id is stored (or open) for another tenant
            (PermissionError)

Outer cancellation is never turned into one of these errors: it propagates as is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from penguiflow.core import PenguiFlowError

if TYPE_CHECKING:
    from ._tasks import TaskErrorCode, TaskState

__all__ = [
    "ForegroundBusy",
    "GroupNotFound",
    "GroupSealed",
    "SessionLimitExceeded",
    "SessionClosed",
    "SessionError",
    "SessionTenantMismatch",
    "SubscriberLagged",
    "TaskCancelled",
    "TaskFailed",
    "TaskNotFound",
    "UnknownCursor",
    "SessionTenantMismatch",
]


class SessionError(PenguiFlowError):
    """Root of every exception raised by penguiflow.sessions."""


class SessionClosed(SessionError, RuntimeError):
    """The session is not open: it was never entered, or it was closed.

    Enter it with ``async with StreamingSession(...) as session:``; after ``aclose()`` make a
    new session.
    """


class ForegroundBusy(SessionError):
    """A foreground spawn with ``if_busy="reject"`` met another live foreground task.

    Attributes:
        active_task_id: The live foreground task.
    """

    def __init__(self, message: str, *, active_task_id: str) -> None:
        super().__init__(message)
        self.active_task_id = active_task_id


class TaskNotFound(SessionError, KeyError):
    """No task with that id exists in this session."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class PatchNotFound(SessionError, KeyError):
    """No pending context patch with that id exists in this session."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UnknownCursor(SessionError, ValueError):
    """A ``since_id`` the session cannot replay from.

    Attributes:
        cursor: The cursor as given.
        head: The newest ``update_id`` of the session (``"0"`` before any update).
    """

    def __init__(self, message: str, *, cursor: str, head: str) -> None:
        super().__init__(message)
        self.cursor = cursor
        self.head = head


class SubscriberLagged(SessionError):
    """A subscriber fell behind further than the retained updates reach.

    Attributes:
        resume_from: The ``update_id`` of the last update it received (None: none yet);
            subscribe again with ``since_id=resume_from`` or start over.
    """

    def __init__(self, message: str, *, resume_from: str | None) -> None:
        super().__init__(message)
        self.resume_from = resume_from


class TaskFailed(SessionError):
    """``run_task``: the task ended FAILED.

    Attributes:
        task: The task's final snapshot (``task.error`` holds code, message and type).
        code: The failure's stable code.
    """

    def __init__(self, message: str, *, task: TaskState, code: TaskErrorCode) -> None:
        super().__init__(message)
        self.task = task
        self.code = code


class TaskCancelled(SessionError):
    """``run_task``: the task ended CANCELLED.

    Attributes:
        task: The task's final snapshot.
        reason: Why it was cancelled (``"cancelled"``, ``"interrupted"``, ``"session_closed"`` …).
    """

    def __init__(self, message: str, *, task: TaskState, reason: str) -> None:
        super().__init__(message)
        self.task = task
        self.reason = reason


class SessionLimitExceeded(SessionError):
    """A spawn would exceed a :class:`SessionLimits` bound; nothing was recorded.

    Attributes:
        limit: The ``SessionLimits`` field (``"max_background_tasks"`` …).
        value: Its configured value.
        current: How many there are now.
    """

    def __init__(self, message: str, *, limit: str, value: int, current: int) -> None:
        super().__init__(message)
        self.limit = limit
        self.value = value
        self.current = current


class GroupNotFound(SessionError, KeyError):
    """No task group with that id exists in this session."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class GroupSealed(SessionError):
    """The task group is sealed: no task can join it any more.

    Attributes:
        group_id: The sealed group.
    """

    def __init__(self, message: str, *, group_id: str) -> None:
        super().__init__(message)
        self.group_id = group_id


class SessionTenantMismatch(SessionError, PermissionError):
    """The stored session (or the manager's open one) with that id belongs to another tenant."""
