"""Pipelines and the TaskRuntime a running task talks to its session through."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from pydantic import JsonValue

from ._context import TaskContextSnapshot
from ._errors import SessionError
from ._merge import MergeStrategy
from ._steering import SteeringInbox
from ._tasks import CheckpointAnswer, NotificationPayload, TaskType
from ._updates import UpdateType, to_json

__all__ = ["IfBusy", "Propagate", "RuntimeHost", "SpawnSpec", "TaskPipeline", "TaskRuntime"]

IfBusy = Literal["queue", "interrupt", "reject"]
Propagate = Literal["cascade", "isolate"]


class TaskPipeline(Protocol):
    """What a task runs: ``async def pipeline(runtime) -> TaskResult | JSON | BaseModel``.

    An object with an ``async __call__`` works too. A returned :class:`TaskResult` is used as
    is; any other value becomes ``TaskResult(payload=value)``, and a payload that is neither
    JSON data nor a pydantic model fails the task with ``INVALID_RESULT``.
    """

    def __call__(self, runtime: TaskRuntime, /) -> Awaitable[object]: ...


@dataclass(frozen=True, kw_only=True)
class SpawnSpec:
    """The arguments of one spawn, validated."""

    task_type: TaskType
    query: str | None
    description: str | None
    priority: int
    merge_strategy: MergeStrategy
    group_id: str | None
    parent_task_id: str | None
    propagate_on_cancel: Propagate
    notify_on_complete: bool
    if_busy: IfBusy
    task_id: str | None
    trace_id: str | None
    spawned_from_event_id: str | None


class RuntimeHost(Protocol):
    """What a runtime needs from the session machine (so this module never imports it)."""

    def emit_for(
        self,
        task_id: str,
        update_type: UpdateType,
        content: JsonValue,
        step_index: int | None,
        total_steps: int | None,
    ) -> None:
        """Publish one update of ``task_id`` (its runtime's ``emit_update``)."""
        ...

    def is_live(self, task_id: str) -> bool:
        """Whether ``task_id`` is still running (a runtime may emit only then)."""
        ...

    async def spawn(self, pipeline: TaskPipeline, spec: SpawnSpec) -> str:
        """Start a child task (``runtime.spawn_task``); returns its id."""
        ...

    async def pause_point(self, task_id: str) -> None:
        """Park ``task_id`` while a PAUSE is in force (RUNNING -> PAUSED -> RUNNING)."""
        ...

    async def checkpoint(
        self,
        task_id: str,
        prompt: str,
        *,
        kind: str,
        payload: object,
        options: Sequence[str],
        token: str | None,
        data: object,
    ) -> CheckpointAnswer:
        """Park ``task_id`` at a human checkpoint until it is answered."""
        ...


_SESSION_OWNED = {
    UpdateType.RESULT: "return the result from the pipeline (a TaskResult or a value)",
    UpdateType.STATUS_CHANGE: "the session publishes status changes itself",
    UpdateType.CHECKPOINT: "await runtime.checkpoint(...) to ask the user",
}


class TaskRuntime:
    """The running task as its pipeline sees it: identity, context snapshot, updates."""

    def __init__(
        self,
        host: RuntimeHost,
        *,
        task_id: str,
        session_id: str,
        tenant: str,
        task_type: TaskType,
        trace_id: str | None,
        query: str | None,
        steering: SteeringInbox,
        context: TaskContextSnapshot,
    ) -> None:
        self._host = host
        self._task_id = task_id
        self._session_id = session_id
        self._tenant = tenant
        self._task_type = task_type
        self._trace_id = trace_id
        self._query = query
        self._context = context
        self._steering = steering

    @property
    def task_id(self) -> str:
        """The running task's id."""
        return self._task_id

    @property
    def session_id(self) -> str:
        """Its session's id."""
        return self._session_id

    @property
    def tenant(self) -> str:
        """Its session's tenant."""
        return self._tenant

    @property
    def task_type(self) -> TaskType:
        """FOREGROUND or BACKGROUND."""
        return self._task_type

    @property
    def trace_id(self) -> str | None:
        """Its trace id, if any."""
        return self._trace_id

    @property
    def query(self) -> str | None:
        """The query it was spawned with."""
        return self._query

    @property
    def context(self) -> TaskContextSnapshot:
        """The session context as it was at spawn (a private copy)."""
        return self._context

    @property
    def steering(self) -> SteeringInbox:
        """This task's steering inbox (INJECT_CONTEXT, REDIRECT, USER_MESSAGE, PAUSE …)."""
        return self._steering

    async def pause_point(self) -> None:
        """Park while a PAUSE is in force (the task shows PAUSED), else return at once."""
        await self._host.pause_point(self._task_id)

    async def checkpoint(
        self,
        prompt: str,
        *,
        kind: str = "approval_required",
        payload: object = None,
        options: Sequence[str] = ("approve", "reject"),
        token: str | None = None,
        data: object = None,
    ) -> CheckpointAnswer:
        """Ask the user and park until answered; the task shows PAUSED meanwhile.

        Publishes ``CHECKPOINT{kind, resume_token, prompt, payload, options}`` (``token``,
        else a generated one, is the ``resume_token``) and sets ``TaskState.checkpoint``;
        ``data`` (JSON kept for ``ResumablePipeline.resume``) is stored with the task but never
        published. A background task gives its slot back while parked. The user answers with
        APPROVE/REJECT carrying the ``resume_token``, or any USER_MESSAGE to the task; the
        task then waits for a slot, shows RUNNING (``"checkpoint_answered"``) and gets the
        :class:`CheckpointAnswer`.

        Raises:
            TypeError: ``prompt`` is not a str, ``options`` not strs, or ``payload``/``data``
                not JSON data.
            ValueError: an empty ``kind``, or a ``token`` already open in the session.
            SessionError: the task already waits at a checkpoint, or has ended.
        """
        return await self._host.checkpoint(
            self._task_id,
            prompt,
            kind=kind,
            payload=payload,
            options=options,
            token=token,
            data=data,
        )

    def emit_update(
        self,
        update_type: UpdateType | str,
        content: object = None,
        *,
        step_index: int | None = None,
        total_steps: int | None = None,
    ) -> None:
        """Publish an update of this task; never waits for a subscriber.

        Raises:
            ValueError: ``update_type`` is RESULT, STATUS_CHANGE or CHECKPOINT (owned by the
                session; the message says what to use) or not an update type.
            TypeError: ``content`` is neither JSON data nor a pydantic model.
            SessionError: the task has ended.
        """
        kind = UpdateType(update_type)
        if kind in _SESSION_OWNED:
            raise ValueError(f"a pipeline cannot emit {kind}: {_SESSION_OWNED[kind]}")
        data = to_json(content, what=f"the {kind} content")
        self._emit(kind, data, step_index, total_steps)

    def notify(self, notification: NotificationPayload) -> None:
        """Publish a NOTIFICATION of this task.

        Raises:
            SessionError: the task has ended.
        """
        self._emit(UpdateType.NOTIFICATION, notification.model_dump(mode="json"), None, None)

    def _emit(
        self,
        kind: UpdateType,
        data: JsonValue,
        step_index: int | None,
        total_steps: int | None,
    ) -> None:
        if not self._host.is_live(self._task_id):
            raise SessionError(
                f"task {self._task_id!r} has ended; a pipeline can emit only while it runs"
            )
        self._host.emit_for(self._task_id, kind, data, step_index, total_steps)

    async def spawn_task(
        self,
        pipeline: TaskPipeline,
        *,
        task_type: TaskType | str = TaskType.FOREGROUND,
        query: str | None = None,
        description: str | None = None,
        priority: int = 0,
        merge_strategy: MergeStrategy | str = MergeStrategy.APPEND,
        group_id: str | None = None,
        propagate_on_cancel: Propagate = "cascade",
        notify_on_complete: bool = True,
        if_busy: IfBusy = "queue",
        task_id: str | None = None,
        trace_id: str | None = None,
        spawned_from_event_id: str | None = None,
    ) -> str:
        """Spawn a child task of this one (its ``parent_task_id`` is this task); its id.

        Arguments and defaults are those of ``StreamingSession.spawn_task``.
        """
        spec = SpawnSpec(
            task_type=TaskType(task_type),
            query=query,
            description=description,
            priority=priority,
            merge_strategy=MergeStrategy(merge_strategy),
            group_id=group_id,
            parent_task_id=self._task_id,
            propagate_on_cancel=propagate_on_cancel,
            notify_on_complete=notify_on_complete,
            if_busy=if_busy,
            task_id=task_id,
            trace_id=trace_id if trace_id is not None else self._trace_id,
            spawned_from_event_id=spawned_from_event_id,
        )
        return await self._host.spawn(pipeline, spec)
