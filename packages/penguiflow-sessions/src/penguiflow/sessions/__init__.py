"""PenguiFlow sessions: a user's foreground turn and background tasks, streamed as updates.

This release holds the task model and its update stream: :class:`StreamingSession` runs
pipelines as foreground or background tasks (priorities, ``if_busy``, cancellation with
cascades, ``aclose()`` that leaves no task behind), every change is a :class:`StateUpdate`
in one order, and subscribers get them through bounded queues where critical updates are never
dropped and ``since_id`` cursors replay, then go live with no gap and no duplicate::

    from penguiflow.sessions import StreamingSession, TaskRuntime, UpdateType

    async def pipeline(runtime: TaskRuntime) -> dict[str, str]:
        runtime.emit_update(UpdateType.PROGRESS, {"step": "searching"})
        return {"answer": "42"}

    async with StreamingSession("s1") as session:
        async with session.subscribe() as updates:
            result = await session.run_task(pipeline, query="the answer?")
"""

from ._broker import Subscription, UpdateBroker
from ._checkpoint import CheckpointAnswer, CheckpointInfo
from ._context import TaskContextSnapshot
from ._errors import (
    ForegroundBusy,
    GroupNotFound,
    GroupSealed,
    PatchNotFound,
    SessionClosed,
    SessionError,
    SessionLimitExceeded,
    SessionTenantMismatch,
    SubscriberLagged,
    TaskCancelled,
    TaskFailed,
    TaskNotFound,
    UnknownCursor,
)
from ._groups import GroupStatus, TaskGroup
from ._hydrate import ResumablePipeline
from ._limits import SessionLimits
from ._manager import ManagerStatistics, SessionManager
from ._merge import BackgroundResult, ContextPatch, MergeStrategy, PendingPatch, SessionContext
from ._planner import PlannerTaskPipeline
from ._runtime import TaskPipeline, TaskRuntime
from ._session import SessionStatistics, StreamingSession
from ._steering import (
    ControlPolicy,
    SteeringEvent,
    SteeringEventType,
    SteeringInbox,
    SteeringOutcome,
    SteeringReceipt,
)
from ._task_tools import task_tools
from ._tasks import (
    NotificationAction,
    NotificationPayload,
    TaskError,
    TaskErrorCode,
    TaskResult,
    TaskState,
    TaskStatus,
    TaskType,
)
from ._transport import Transport
from ._updates import CRITICAL_UPDATE_TYPES, StateUpdate, UpdateType

__all__ = [
    # sessions and tasks
    "StreamingSession",
    "SessionLimits",
    "SessionStatistics",
    "TaskRuntime",
    "TaskPipeline",
    "TaskResult",
    "TaskState",
    "TaskError",
    "TaskErrorCode",
    "TaskType",
    "TaskStatus",
    "TaskContextSnapshot",
    "NotificationPayload",
    "NotificationAction",
    # updates
    "StateUpdate",
    "UpdateType",
    "CRITICAL_UPDATE_TYPES",
    "UpdateBroker",
    "Subscription",
    # steering
    "SteeringEvent",
    "SteeringEventType",
    "SteeringInbox",
    "SteeringReceipt",
    "SteeringOutcome",
    "ControlPolicy",
    # context
    "SessionContext",
    "ContextPatch",
    "MergeStrategy",
    "PendingPatch",
    "BackgroundResult",
    # errors
    "PatchNotFound",
    "SessionError",
    "SessionClosed",
    "ForegroundBusy",
    "TaskNotFound",
    "UnknownCursor",
    "SubscriberLagged",
    "TaskFailed",
    "TaskCancelled",
    # added with checkpoints, limits and groups
    "CheckpointInfo",
    "CheckpointAnswer",
    "SessionLimitExceeded",
    "GroupNotFound",
    "GroupSealed",
    "TaskGroup",
    "GroupStatus",
    # durability
    "SessionTenantMismatch",
    "ResumablePipeline",
    # transports, the manager, the planner pipeline
    "Transport",
    "SessionManager",
    "ManagerStatistics",
    "PlannerTaskPipeline",
    "task_tools",
]


def __getattr__(name: str) -> object:
    if name == "__version__":
        from importlib.metadata import version

        return version("penguiflow-sessions")
    raise AttributeError(f"module 'penguiflow.sessions' has no attribute {name!r}")
