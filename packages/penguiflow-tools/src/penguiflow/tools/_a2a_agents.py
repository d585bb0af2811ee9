"""What an A2A server runs: a PenguiFlow flow or a planner, behind an a2a-sdk ``AgentExecutor``.

A flow task is one trace (``trace_id = task_id``) read with ``stream_flow``: its chunks become
the ``stream`` artifact, its first other Rookery item the ``result`` artifact. A planner task is
one ``run``; a pause parks the task in ``INPUT_REQUIRED`` and the next message on it resumes the
run (the resume token never leaves the server).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Mapping, Sequence
from contextlib import aclosing
from typing import Any, Protocol, cast, runtime_checkable

from a2a.helpers.proto_helpers import new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.tasks import TaskUpdater
from a2a.types import Message as A2AMessage
from a2a.types import Task, TaskState, TaskStatus

from penguiflow.core import (
    DurableStore,
    FlowError,
    Headers,
    Message,
    Node,
    PenguiFlow,
    Scope,
    StreamChunk,
    TraceCancelled,
    TraceEnded,
    stream_flow,
)

from ._a2a_parts import from_parts, json_safe, to_parts

__all__ = [
    "FlowAgent",
    "PlannerAgent",
    "PlannerLike",
    "executor_for",
    "flow_agent",
    "planner_agent",
]

RESULT = "result"
STREAM = "stream"


@runtime_checkable
class PlannerLike(Protocol):
    """What ``planner_agent`` needs: ``ReactPlanner``'s ``run`` and ``resume``.

    A returned object with a ``resume_token`` is a pause; anything else is a finish whose
    ``payload`` is the result.
    """

    def run(self, query: str, *, tool_context: Mapping[str, Any] | None = None) -> Awaitable[Any]:
        """Start a run."""
        ...

    def resume(
        self, token: str, *, tool_context: Mapping[str, Any] | None = None, user_input: Any = None
    ) -> Awaitable[Any]:
        """Answer a pause."""
        ...


class FlowAgent:
    """A running (or startable) flow served as an A2A agent: build it with ``flow_agent``."""

    __slots__ = ("default_tenant", "flow", "to")

    def __init__(
        self,
        flow: PenguiFlow,
        to: Node | str | Sequence[Node | str] | None,
        default_tenant: str,
    ) -> None:
        self.flow: PenguiFlow = flow
        """The flow each task runs through."""
        self.to: Node | str | Sequence[Node | str] | None = to
        """Ingress node(s) a task's message is emitted to (None: every ingress)."""
        self.default_tenant: str = default_tenant
        """The tenant of a request that names none."""


class PlannerAgent:
    """A planner served as an A2A agent: build it with ``planner_agent``."""

    __slots__ = ("planner", "store")

    def __init__(self, planner: PlannerLike, store: DurableStore | None) -> None:
        self.planner: PlannerLike = planner
        """Runs and resumes each task."""
        self.store: DurableStore | None = store
        """Where paused tasks' resume tokens are kept (None: in memory)."""


RESUME_NAMESPACE = "tools.a2a.resume"


class _TokenBook:
    """Resume tokens of paused tasks, by task id; taking one is atomic (single use)."""

    def __init__(self, store: DurableStore | None) -> None:
        self._store = store
        self._memory: dict[str, str] = {}

    async def put(self, task_id: str, token: str, tenant: str) -> None:
        if self._store is None:
            self._memory[task_id] = token
            return
        await self._store.put(RESUME_NAMESPACE, task_id, token.encode(), scope=Scope(tenant))

    async def take(self, task_id: str, tenant: str) -> str | None:
        if self._store is None:
            return self._memory.pop(task_id, None)
        record = await self._store.take(RESUME_NAMESPACE, task_id, scope=Scope(tenant))
        return None if record is None else record.value.decode()


def flow_agent(
    flow: PenguiFlow,
    *,
    to: Node | str | Sequence[Node | str] | None = None,
    default_tenant: str = "default",
) -> FlowAgent:
    """Serve ``flow``: each A2A task becomes one trace whose id is the task id.

    Raises:
        TypeError: ``flow`` is not a ``PenguiFlow``.
    """
    if not isinstance(flow, PenguiFlow):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError(f"flow_agent() needs a PenguiFlow, got {type(flow).__name__}")
    return FlowAgent(flow, to, default_tenant)


def planner_agent(planner: PlannerLike, *, store: DurableStore | None = None) -> PlannerAgent:
    """Serve a planner (``run(query, *, tool_context)``, ``resume(token, *, user_input=...)``).

    A pause's resume token stays on the server: in memory, or with ``store`` in namespace
    ``tools.a2a.resume`` (key: the task id, scope: the tenant), so a follow-up message may reach
    another replica or come after a restart. The token is taken atomically: one resume per pause.

    Raises:
        TypeError: ``planner`` has no callable ``run`` and ``resume``.
    """
    if not (callable(getattr(planner, "run", None)) and callable(getattr(planner, "resume", None))):
        raise TypeError(
            f"planner_agent() needs an object with run() and resume() (a ReactPlanner), "
            f"got {type(planner).__name__}"
        )
    return PlannerAgent(planner, store)


def executor_for(agent: object) -> AgentExecutor:
    """The a2a-sdk executor serving ``agent``.

    Raises:
        TypeError: ``agent`` was not built by ``flow_agent`` or ``planner_agent``.
    """
    if isinstance(agent, FlowAgent):
        return _FlowExecutor(agent)
    if isinstance(agent, PlannerAgent):
        return _PlannerExecutor(agent)
    raise TypeError(
        f"serve an agent built by flow_agent(flow) or planner_agent(planner), "
        f"not {type(agent).__name__}"
    )


# ------------------------------------------------------------------------------- helpers
def _ids(context: RequestContext) -> tuple[str, str]:
    task_id, context_id = context.task_id, context.context_id
    if task_id is None or context_id is None:  # the request handler always assigns both
        raise RuntimeError("an A2A request reached the executor without task and context ids")
    return task_id, context_id


async def _open_task(context: RequestContext, queue: EventQueue) -> TaskUpdater:
    """The task's updater; a new task is announced (``SUBMITTED``) first."""
    task_id, context_id = _ids(context)
    if context.current_task is None:
        history = [context.message] if context.message is not None else []
        await queue.enqueue_event(
            Task(
                id=task_id,
                context_id=context_id,
                status=TaskStatus(state=TaskState.TASK_STATE_SUBMITTED),
                history=history,
            )
        )
    return TaskUpdater(queue, task_id, context_id)


def _status(updater: TaskUpdater, text: str, parts: Sequence[Any] = ()) -> A2AMessage:
    return updater.new_agent_message([new_text_part(text), *parts])


def _user_input(context: RequestContext) -> Any:
    message = context.message
    return from_parts(message.parts) if message is not None else None


def _is_consent(payload: object) -> bool:
    if not isinstance(payload, Mapping):
        return False
    return cast(Mapping[str, Any], payload).get("kind") == "oauth_consent"


def _base_meta(task_id: str, context_id: str) -> dict[str, Any]:
    return {"a2a": {"task_id": task_id, "context_id": context_id}}


# --------------------------------------------------------------------------------- flows
class _FlowExecutor(AgentExecutor):
    def __init__(self, agent: FlowAgent) -> None:
        self.agent = agent

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        agent = self.agent
        task_id, context_id = _ids(context)
        updater = await _open_task(context, event_queue)
        await updater.start_work()
        message = Message(
            payload=_user_input(context),
            headers=Headers(tenant=context.tenant or agent.default_tenant),
            trace_id=task_id,
            meta=_base_meta(task_id, context_id),
        )
        chunks = 0
        try:
            async with aclosing(
                stream_flow(agent.flow, message, to=agent.to, include_final=True)
            ) as items:
                async for item in items:
                    if isinstance(item, StreamChunk):
                        await updater.add_artifact(
                            [new_text_part(item.text)],
                            artifact_id=STREAM,
                            name=STREAM,
                            append=chunks > 0,
                            last_chunk=item.done,
                        )
                        chunks += 1
                        continue
                    await updater.add_artifact(to_parts(item), artifact_id=RESULT, name=RESULT)
                    await updater.complete()
                    return
        except FlowError as exc:
            await updater.failed(_status(updater, f"[{exc.code.value}] {exc.message}"))
            return
        except TraceCancelled:
            await updater.cancel()
            return
        except TraceEnded:
            pass
        await updater.failed(
            _status(updater, "[TRACE_ENDED] the trace ended without delivering a result")
        )

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        # The trace-scoped read in execute() then raises TraceCancelled; flow.cancel returns
        # once the trace's nodes have unwound, so the node has seen the cancellation.
        if context.task_id is not None:
            await self.agent.flow.cancel(context.task_id)


# ------------------------------------------------------------------------------ planners
class _PlannerExecutor(AgentExecutor):
    def __init__(self, agent: PlannerAgent) -> None:
        self.agent = agent
        self._tokens = _TokenBook(agent.store)

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        planner = self.agent.planner
        task_id, context_id = _ids(context)
        updater = await _open_task(context, event_queue)
        await updater.start_work()
        value = _user_input(context)
        text = value if isinstance(value, str) else json.dumps(json_safe(value))
        tenant = context.tenant or "default"
        tool_context = {
            "tenant": tenant,
            "session_id": context_id,
            "task_id": task_id,
        }
        token = await self._tokens.take(task_id, tenant)  # the pause is answered exactly once
        try:
            if token is not None:
                outcome = await planner.resume(token, user_input=text, tool_context=tool_context)
            else:
                outcome = await planner.run(text, tool_context=tool_context)
        except Exception as exc:
            await updater.failed(_status(updater, f"{type(exc).__name__}: {exc}"))
            return
        resume_token = getattr(outcome, "resume_token", None)
        if isinstance(resume_token, str):
            await self._tokens.put(task_id, resume_token, tenant)
            payload = getattr(outcome, "payload", None)
            state = (
                TaskState.TASK_STATE_AUTH_REQUIRED
                if _is_consent(payload)
                else TaskState.TASK_STATE_INPUT_REQUIRED
            )
            reason = str(getattr(outcome, "reason", "input"))
            parts = to_parts(payload)
            await updater.update_status(
                state, message=updater.new_agent_message(parts, metadata={"reason": reason})
            )
            return
        payload = getattr(outcome, "payload", outcome)
        if payload is None:
            error = getattr(outcome, "error", None) or "the run finished without an answer"
            reason = getattr(outcome, "reason", "no_answer")
            await updater.failed(_status(updater, f"[{reason}] {error}"))
            return
        answer = getattr(payload, "raw_answer", payload)  # a ReactPlanner FinalPayload
        await updater.add_artifact(to_parts(answer), artifact_id=RESULT, name=RESULT)
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        # A running run is cancelled by the request handler (it cancels execute()); a parked
        # task forgets its pause.
        if context.task_id is not None:
            await self._tokens.take(context.task_id, context.tenant or "default")
