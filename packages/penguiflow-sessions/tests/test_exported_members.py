"""The public surface of penguiflow.sessions is exactly what __all__ documents."""

import json
import subprocess
import sys
import types

import penguiflow.sessions as sessions

EXPECTED = {
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
    "StateUpdate",
    "UpdateType",
    "CRITICAL_UPDATE_TYPES",
    "UpdateBroker",
    "Subscription",
    "SteeringEvent",
    "SteeringEventType",
    "SteeringInbox",
    "SteeringReceipt",
    "SteeringOutcome",
    "ControlPolicy",
    "SessionContext",
    "ContextPatch",
    "MergeStrategy",
    "PendingPatch",
    "BackgroundResult",
    "PatchNotFound",
    "SessionError",
    "SessionClosed",
    "ForegroundBusy",
    "TaskNotFound",
    "UnknownCursor",
    "SubscriberLagged",
    "TaskFailed",
    "TaskCancelled",
    "CheckpointInfo",
    "CheckpointAnswer",
    "SessionLimitExceeded",
    "GroupNotFound",
    "GroupSealed",
    "TaskGroup",
    "GroupStatus",
    "SessionTenantMismatch",
    "ResumablePipeline",
    # transports, the manager, the planner pipeline
    "Transport",
    "SessionManager",
    "ManagerStatistics",
    "PlannerTaskPipeline",
    "task_tools",
}


def test_all_is_exactly_the_public_surface() -> None:
    assert set(sessions.__all__) == EXPECTED
    assert len(sessions.__all__) == len(EXPECTED), "duplicates in __all__"


def test_every_public_class_is_documented() -> None:
    for name in sessions.__all__:
        value = getattr(sessions, name)
        if isinstance(value, type):
            assert value.__doc__, f"{name} has no docstring"


def test_no_other_public_names_leak_from_private_modules() -> None:
    public = {
        name
        for name, value in vars(sessions).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == EXPECTED


def test_version_is_the_distribution_version() -> None:
    from importlib.metadata import version

    assert sessions.__version__ == version("penguiflow-sessions")


def test_errors_share_the_penguiflow_root_and_their_categories() -> None:
    from penguiflow.core import PenguiFlowError

    assert issubclass(sessions.SessionError, PenguiFlowError)
    assert issubclass(sessions.SessionClosed, RuntimeError)
    assert issubclass(sessions.TaskNotFound, KeyError)
    assert issubclass(sessions.UnknownCursor, ValueError)
    for name in ("ForegroundBusy", "SubscriberLagged", "TaskFailed", "TaskCancelled"):
        assert issubclass(getattr(sessions, name), sessions.SessionError)


def test_importing_sessions_loads_no_web_or_llm_sdk_libraries() -> None:
    # The steering types subclass the planner's (spec §5), so the planner package is loaded;
    # its native clients' SDKs and the web extra are not.
    code = (
        "import json, sys, penguiflow.sessions; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('starlette', 'uvicorn', 'sse_starlette', 'httpx', 'openai', 'anthropic', 'penguiflow'))))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    loaded: list[str] = json.loads(completed.stdout)
    foreign = [
        name
        for name in loaded
        if name
        not in ("penguiflow", "penguiflow.core", "penguiflow.planner", "penguiflow.sessions")
        and not name.startswith(("penguiflow.core.", "penguiflow.planner.", "penguiflow.sessions."))
    ]
    assert "penguiflow.sessions" in loaded
    assert foreign == [], f"importing penguiflow.sessions also imported {foreign}"
