"""task_tools: ``tasks.spawn``/``list``/``get``/``cancel`` for a foreground planner.

The tools find their session through ``tool_context["task_runtime"]``, which a
:class:`PlannerTaskPipeline` passes to every tool. Their steering is the agent's
(``source="agent"``), so a ``tasks.cancel`` meets the session's ``ControlPolicy``: by default
it is PARKED until the user confirms it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field, JsonValue

from penguiflow.core import Node, NodeSpec, build_catalog, tool

from ._runtime import TaskPipeline, TaskRuntime
from ._steering import SteeringEvent, SteeringEventType
from ._tasks import TaskStatus, TaskType

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = ["task_tools"]


class SpawnArgs(BaseModel):
    """Start a background task."""

    pipeline: str
    """Which pipeline to run (one of the names the tool lists)."""
    query: str
    """What the task should do."""
    description: str | None = None
    """A label for people."""
    priority: int = 0
    """Higher starts first among waiting background tasks."""


class SpawnOut(BaseModel):
    """The spawned task."""

    task_id: str


class ListArgs(BaseModel):
    """Which tasks to list."""

    status: Literal["PENDING", "RUNNING", "PAUSED", "COMPLETE", "FAILED", "CANCELLED"] | None = None


class TaskBrief(BaseModel):
    """One task, briefly."""

    task_id: str
    task_type: str
    status: str
    pipeline: str
    description: str | None
    progress: dict[str, JsonValue] | None


class ListOut(BaseModel):
    """The session's tasks in spawn order."""

    tasks: list[TaskBrief] = Field(default_factory=list[TaskBrief])


class GetArgs(BaseModel):
    """Which task."""

    task_id: str


class GetOut(BaseModel):
    """The task's snapshot (``TaskState`` JSON)."""

    task: dict[str, JsonValue]


class CancelArgs(BaseModel):
    """Ask to cancel a task (the user may have to confirm)."""

    task_id: str
    reason: str | None = None


class CancelOut(BaseModel):
    """What the session did with the request."""

    outcome: str
    reason: str | None = None
    resume_token: str | None = None


def _runtime(ctx: Any) -> TaskRuntime:
    runtime = ctx.tool_context.get("task_runtime") if hasattr(ctx, "tool_context") else None
    if not isinstance(runtime, TaskRuntime):
        raise RuntimeError(
            "the tasks.* tools run inside a PlannerTaskPipeline task "
            "(tool_context['task_runtime'] is missing)"
        )
    return runtime


def _engine(runtime: TaskRuntime) -> Engine:
    return runtime._host  # type: ignore[return-value]


def task_tools(pipelines: Mapping[str, TaskPipeline]) -> list[NodeSpec]:
    """Catalog entries letting a foreground planner manage its session's background tasks.

    ``tasks.spawn`` starts one of ``pipelines`` (by name) as a BACKGROUND task (a child of the
    planner's task that survives its end: ``propagate_on_cancel="isolate"``); ``tasks.list`` and
    ``tasks.get`` read the session's tasks; ``tasks.cancel`` steers a CANCEL as the agent.

    Raises:
        TypeError: a pipeline is not async.
        ValueError: ``pipelines`` is empty.
    """
    from ._records import is_async_callable

    if not pipelines:
        raise ValueError("task_tools needs at least one pipeline: task_tools({'name': pipeline})")
    for name, pipeline in pipelines.items():
        if not is_async_callable(pipeline):
            raise TypeError(f"pipeline {name!r} is not async: pass `async def pipeline(runtime)`")
    table = dict(pipelines)
    names = ", ".join(sorted(table))

    @tool(desc=f"Start a background task. pipeline is one of: {names}.", side_effects="write")
    async def spawn(args: SpawnArgs, ctx: Any) -> SpawnOut:
        runtime = _runtime(ctx)
        pipeline = table.get(args.pipeline)
        if pipeline is None:
            raise ValueError(f"unknown pipeline {args.pipeline!r}; use one of: {names}")
        task_id = await runtime.spawn_task(
            pipeline,
            task_type=TaskType.BACKGROUND,
            query=args.query,
            description=args.description,
            priority=args.priority,
            propagate_on_cancel="isolate",
        )
        return SpawnOut(task_id=task_id)

    @tool(desc="List the session's tasks (optionally by status).")
    async def list_tasks(args: ListArgs, ctx: Any) -> ListOut:
        engine = _engine(_runtime(ctx))
        wanted = TaskStatus(args.status) if args.status is not None else None
        states = [r.state(engine.session_id, engine.tenant) for r in engine.records.values()]
        return ListOut(
            tasks=[
                TaskBrief(
                    task_id=s.task_id,
                    task_type=s.task_type.value,
                    status=s.status.value,
                    pipeline=s.pipeline,
                    description=s.description,
                    progress=s.progress,
                )
                for s in states
                if wanted is None or s.status is wanted
            ]
        )

    @tool(desc="Get one task's state.")
    async def get_task(args: GetArgs, ctx: Any) -> GetOut:
        engine = _engine(_runtime(ctx))
        record = engine.records.get(args.task_id)
        if record is None:
            raise ValueError(f"no task {args.task_id!r} in this session; see tasks.list")
        return GetOut(task=record.state(engine.session_id, engine.tenant).model_dump(mode="json"))

    @tool(desc="Ask to cancel a task; the user may have to confirm it.", side_effects="write")
    async def cancel(args: CancelArgs, ctx: Any) -> CancelOut:
        engine = _engine(_runtime(ctx))
        payload: dict[str, JsonValue] = {"reason": args.reason} if args.reason else {}
        receipt = await engine.steerer.steer(
            SteeringEvent(
                session_id=engine.session_id,
                task_id=args.task_id,
                event_type=SteeringEventType.CANCEL,
                payload=payload,
                source="agent",
            )
        )
        return CancelOut(
            outcome=receipt.outcome.value, reason=receipt.reason, resume_token=receipt.resume_token
        )

    return build_catalog(
        [
            Node(spawn, name="tasks.spawn"),
            Node(list_tasks, name="tasks.list"),
            Node(get_task, name="tasks.get"),
            Node(cancel, name="tasks.cancel"),
        ]
    )
