"""One run of a planner: all per-run state, and the step loop.

A step: budgets -> steering -> compaction -> one LLM call -> parse (repair) -> dispatch. LLM
calls, usage and compaction live in ``_llmcall``; parsing and repairing the next action in
``_next_action``; the final answer and reflection in ``_final``;
tool steps in ``_toolstep`` (their branches in ``_steps``); pauses in ``_pause``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio
from pydantic import BaseModel

from penguiflow.core import NodeSpec

from ._events import PlannerEvent, PlannerEventCallback, PlannerEventType, deliver
from ._final import final
from ._llm import LLMMessage
from ._llmcall import Finished, call_llm, check_llm_budgets, maybe_compact
from ._next_action import next_action
from ._prompts import FINAL, build_messages
from ._steering import SteeringEventType, SteeringInbox
from ._steps import PendingStep, StepFailed
from ._toolstep import continue_step, tool_step
from ._trajectory import Trajectory, TrajectoryStep
from ._types import (
    Exhausted,
    FinalPayload,
    FinishReason,
    PlannerAction,
    PlannerBudget,
    PlannerFinish,
    PlannerPause,
    RunUsage,
)

if TYPE_CHECKING:
    from ._react import ReactPlanner

__all__ = ["Run"]


class Run:
    """The state of one run (made per call, dropped when it returns)."""

    __slots__ = (
        "arg_failures",
        "budget",
        "by_purpose",
        "cancelled",
        "chunk_sink",
        "compacted_for_length",
        "completion_tokens",
        "cost",
        "deadline_at",
        "estimated",
        "extra_messages",
        "flow_context",
        "hops",
        "iters",
        "listeners",
        "llm_calls",
        "memory_key",
        "memory_message",
        "memory_resolved",
        "pending",
        "planner",
        "prompt_tokens",
        "revisions",
        "run_id",
        "started",
        "steering",
        "step_usage",
        "tool_calls",
        "tool_context",
        "tools",
        "trace_id",
        "trajectory",
    )

    def __init__(
        self,
        planner: ReactPlanner[Any],
        *,
        query: str,
        llm_context: Mapping[str, Any],
        tool_context: Mapping[str, Any],
        memory_key: Any,
        steering: SteeringInbox | None,
        budget: PlannerBudget,
        trace_id: str | None,
        listeners: tuple[PlannerEventCallback, ...],
        flow_context: Any = None,
        deadline_at: float | None = None,
        run_id: str | None = None,
    ) -> None:
        self.planner: ReactPlanner[Any] = planner
        self.run_id: str = run_id or uuid.uuid4().hex
        self.trace_id: str = trace_id or self.run_id
        self.trajectory: Trajectory = Trajectory(query=query, llm_context=dict(llm_context))
        self.tool_context: Mapping[str, Any] = tool_context
        self.memory_key: Any = memory_key
        self.steering: SteeringInbox | None = steering
        self.budget: PlannerBudget = budget
        self.listeners: tuple[PlannerEventCallback, ...] = listeners
        self.flow_context: Any = flow_context
        self.tools: dict[str, NodeSpec] = planner.visible_tools
        self.started: float = planner.time_source()
        self.deadline_at: float | None = deadline_at
        if budget.deadline_s is not None:
            own = self.started + budget.deadline_s
            self.deadline_at = own if deadline_at is None else min(own, deadline_at)
        self.iters: int = 0
        self.hops: int = 0
        self.tool_calls: int = 0
        self.llm_calls: int = 0
        self.prompt_tokens: int = 0
        self.completion_tokens: int = 0
        self.cost: float | None = None
        self.estimated: bool = False
        self.by_purpose: Counter[str] = Counter()
        self.arg_failures: int = 0
        self.revisions: int = 0
        self.compacted_for_length: bool = False
        self.pending: PendingStep | None = None
        self.extra_messages: list[LLMMessage] = []
        self.memory_message: LLMMessage | None = None
        self.memory_resolved: Any = None
        """The memory key the run reads and writes (None: memory is off for it)."""
        self.chunk_sink: Callable[[str], None] | None = None
        """Where a streamed final answer's deltas go besides the events (as a node)."""
        self.cancelled: bool = False
        self.step_usage: dict[str, int] | None = None
        """Tokens of the current step's planning call(s), for its ``TrajectoryStep.usage``."""

    def record(self, step: TrajectoryStep) -> None:
        """Append a finished step, with the tokens its planning call(s) used."""
        step.usage, self.step_usage = self.step_usage, None
        self.trajectory.steps.append(step)

    def stream_chunk(self, text: str) -> None:
        """One delta of a streamed final answer."""
        if self.chunk_sink is not None:
            self.chunk_sink(text)

    # ---------------------------------------------------------------- events
    def event(self, event_type: PlannerEventType, **fields: Any) -> None:
        """Emit one event to the run's listeners (built only when someone listens)."""
        if self.listeners:
            deliver(
                self.listeners,
                PlannerEvent(
                    event_type=event_type,
                    ts=time.time(),
                    run_id=self.run_id,
                    trace_id=self.trace_id,
                    **fields,
                ),
            )

    def tool(self, name: str) -> NodeSpec:
        """The visible tool called ``name`` (``StepFailed`` listing the visible ones)."""
        spec = self.tools.get(name)
        if spec is None:
            raise StepFailed(
                f"unknown tool {name!r}; the tools are {sorted(self.tools)} "
                "(or parallel, final_response)",
                {"unknown_tool": name},
            )
        return spec

    async def call(self, spec: NodeSpec, args: BaseModel, ctx: Any, extra: dict[str, Any]) -> Any:
        """One tool invocation through the core runtime (the outer flow's, as a node)."""
        if self.flow_context is not None:
            return await self.flow_context.call_node(spec.node, args, ctx, extra=extra)
        return await self.planner.tool_flow.call_node(
            spec.node, args, ctx, trace_id=self.trace_id, extra=extra
        )

    def usage(self) -> RunUsage:
        """What the run used so far."""
        return RunUsage(
            llm_calls=self.llm_calls,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            total_tokens=self.prompt_tokens + self.completion_tokens,
            cost_usd=self.cost,
            tool_calls=self.tool_calls,
            hops=self.hops,
            estimated=self.estimated,
            by_purpose=dict(self.by_purpose),
        )

    def remaining_s(self) -> float | None:
        """Seconds left before the run's deadline (None: no deadline)."""
        if self.deadline_at is None:
            return None
        return self.deadline_at - self.planner.time_source()

    # ------------------------------------------------------------------- run
    async def execute(self) -> PlannerFinish[Any] | PlannerPause:
        """Run until the run finishes or pauses."""
        remaining = self.remaining_s()
        if remaining is not None and remaining <= 0:
            return self.finish("budget_exhausted", exhausted="deadline", error="deadline passed")
        outcome: PlannerFinish[Any] | PlannerPause | None = None
        failure: Exception | None = None
        if remaining is None and self.steering is None:  # nothing can cut the run short
            try:
                outcome = await self._loop()
            except Finished as done:
                outcome = done.result
            return outcome
        with anyio.CancelScope() as scope:
            if remaining is not None:
                scope.deadline = anyio.current_time() + remaining
            async with anyio.create_task_group() as tg:
                if self.steering is not None:
                    tg.start_soon(self._watch_cancel, scope)
                try:
                    outcome = await self._loop()
                except Finished as done:
                    outcome = done.result
                except Exception as exc:  # raised as is below, not as an ExceptionGroup
                    failure = exc
                finally:
                    tg.cancel_scope.cancel()
        if failure is not None:
            raise failure
        if outcome is not None:
            return outcome
        if self.cancelled:
            return self.finish("cancelled", error="cancelled by steering")
        return self.finish(
            "budget_exhausted", exhausted="deadline", error="the run's deadline passed"
        )

    async def _watch_cancel(self, scope: anyio.CancelScope) -> None:
        assert self.steering is not None
        await self.steering.wait_cancelled()
        self.cancelled = True
        scope.cancel()

    async def _loop(self) -> PlannerFinish[Any] | PlannerPause:
        if self.pending is not None:
            await continue_step(self)
        while True:
            await self._steer()
            check_llm_budgets(self)
            limit = self.budget.max_iters
            if limit is not None and self.iters >= limit:
                return self.finish("no_path", exhausted="max_iters", error="max_iters reached")
            await maybe_compact(self)
            before = self.prompt_tokens, self.completion_tokens
            action = await self._next_action()
            self.iters += 1
            self.step_usage = {
                "prompt_tokens": self.prompt_tokens - before[0],
                "completion_tokens": self.completion_tokens - before[1],
            }
            if action.next_node == FINAL:
                result = await final(self, action)
                if result is not None:
                    return result
                continue
            await tool_step(self, action)

    # ------------------------------------------------------------- steering
    async def _steer(self) -> None:
        """Apply queued steering events; hold on PAUSE until RESUME (the deadline keeps running)."""
        inbox = self.steering
        if inbox is None:
            return
        held = False
        while True:
            for event in inbox.drain():
                kind = event.event_type
                record = {
                    "event_type": kind.value,
                    "payload": event.payload,
                    "event_id": event.event_id,
                }
                self.trajectory.steering_inputs.append(record)
                if kind not in _APPLIED:
                    continue  # recorded only (PRIORITIZE, APPROVE, REJECT; CANCEL acts at once)
                self.event(PlannerEventType.STEERING_RECEIVED, extra=record)
                if kind in (SteeringEventType.INJECT_CONTEXT, SteeringEventType.USER_MESSAGE):
                    content = json.dumps({kind.value: event.payload}, default=str)
                    self.extra_messages.append({"role": "user", "content": content})
                elif kind is SteeringEventType.REDIRECT:
                    goal = event.payload.get("goal") or event.payload.get("query")
                    if isinstance(goal, str):
                        self.trajectory.query = goal
                else:
                    held = kind is SteeringEventType.PAUSE
            if inbox.cancelled:  # queued before the run (or step) began: make no call
                self.cancelled = True
                raise Finished(self.finish("cancelled", error="cancelled by steering"))
            if not held:
                return
            await inbox.wait_for_event()

    # ------------------------------------------------------------------ LLM
    async def llm(
        self,
        messages: list[LLMMessage],
        purpose: str,
        response_format: Mapping[str, Any],
        *,
        client: Any = None,
    ) -> str:
        """One LLM call under the run's budgets and retry policy (see ``_llmcall``)."""
        return await call_llm(self, messages, purpose, response_format, client=client)

    def messages(self) -> list[LLMMessage]:
        """The messages of the next planning call."""
        return build_messages(
            self.planner.system,
            self.trajectory,
            memory=self.memory_message,
            limit=self.planner.observation_max_chars,
            extra=self.extra_messages,
        )

    async def _next_action(self) -> PlannerAction:
        """Ask for the next action; repair bad replies up to ``repair_attempts`` times."""
        return await next_action(self)

    # --------------------------------------------------------------- finish
    def finish(
        self,
        reason: FinishReason,
        *,
        output: Any = None,
        payload: FinalPayload | None = None,
        exhausted: Exhausted | None = None,
        error: str | None = None,
    ) -> PlannerFinish[Any]:
        """The run's outcome (the ``finish`` event comes last)."""
        cost = self.cost
        result: PlannerFinish[Any] = PlannerFinish(
            reason=reason,
            output=output,
            payload=payload,
            exhausted=exhausted,
            error=error,
            run_id=self.run_id,
            trace_id=self.trace_id,
            usage=self.usage(),
            trajectory=self.trajectory,
            metadata={
                "steps": [s.to_json() for s in self.trajectory.steps],
                "step_count": len(self.trajectory.steps),
                "cost": cost,
            },
        )
        self.event(
            PlannerEventType.FINISH, error=error, extra={"reason": reason, "exhausted": exhausted}
        )
        return result


_APPLIED = frozenset(
    (
        SteeringEventType.INJECT_CONTEXT,
        SteeringEventType.USER_MESSAGE,
        SteeringEventType.REDIRECT,
        SteeringEventType.PAUSE,
        SteeringEventType.RESUME,
    )
)
