"""PlannerTaskPipeline: a ReactPlanner run as a session task, its pauses as checkpoints.

The planner is imported on first use. A run's events become the task's updates; each pending
``Interrupt`` of a ``PlannerPause`` becomes one ``runtime.checkpoint()`` (in order, the
interrupt id as its ``resume_token``, the planner's token in its ``data``), and each answer
resumes the planner with that one answer. After a restart, :meth:`PlannerTaskPipeline.resume`
continues from the stored planner token.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

import anyio
from pydantic import JsonValue
from pydantic_core import to_jsonable_python

from ._merge import ContextPatch
from ._tasks import CheckpointAnswer, CheckpointInfo, TaskResult
from ._updates import UpdateType

if TYPE_CHECKING:
    from penguiflow.planner import (
        Interrupt,
        MemoryKey,
        PlannerEvent,
        PlannerFinish,
        PlannerPause,
        ReactPlanner,
    )

    from ._runtime import TaskRuntime

__all__ = ["PlannerTaskPipeline"]


def _json(value: object) -> JsonValue:
    return cast(JsonValue, to_jsonable_python(value, fallback=repr))


class _Events:
    """The run's planner events as the task's updates (the callback is sync, never waits)."""

    def __init__(self, runtime: TaskRuntime) -> None:
        self.runtime = runtime
        self.pause_seen = anyio.Event()

    def __call__(self, event: PlannerEvent) -> None:
        kind = event.event_type.value
        emit = self.runtime.emit_update
        extra = event.extra
        if kind in ("step_start", "step_complete"):
            emit(UpdateType.PROGRESS, {"phase": kind, "step": event.step}, step_index=event.step)
        elif kind in ("tool_call_start", "tool_call_end"):
            emit(
                UpdateType.TOOL_CALL,
                {
                    "phase": "start" if kind == "tool_call_start" else "end",
                    "tool_name": event.node_name,
                    "ok": bool(extra.get("ok")) if kind == "tool_call_end" else None,
                    "latency_ms": event.latency_ms,
                },
                step_index=event.step,
            )
        elif kind == "llm_stream_chunk":
            emit(UpdateType.STREAM, {"text": _json(extra.get("text"))}, step_index=event.step)
        elif kind == "tool_stream_chunk":
            emit(UpdateType.STREAM, {"tool_name": event.node_name, **_chunk(extra)})
        elif kind == "steering_received" and extra.get("event_type") == "pause":
            self.pause_seen.set()  # the planner now holds until RESUME: show PAUSED

    async def watch_pauses(self) -> None:
        """Show the task PAUSED while the planner holds on a PAUSE (until RESUME)."""
        while True:
            await self.pause_seen.wait()
            self.pause_seen = anyio.Event()
            await self.runtime.pause_point()


def _chunk(extra: Mapping[str, Any]) -> dict[str, JsonValue]:
    return {k: _json(v) for k, v in extra.items()}


class PlannerTaskPipeline:
    """Run a ``ReactPlanner`` as a task; its interrupts become the task's checkpoints.

    ``planner`` is a ``ReactPlanner`` (one instance may serve every task; give it the session's
    store so its pause records survive a restart) or a zero-argument factory of one.
    ``memory_key`` is a ``MemoryKey``, or ``(runtime) -> MemoryKey | None``, passed alike to
    ``run`` and ``resume``. Answers: APPROVE → ``Approval(True)`` for ``approval_required``, else
    its ``input``; a USER_MESSAGE → its text; REJECT → ``Approval(False, reason)`` (else
    ``{"rejected": reason}``), so the planner skips the tool and finishes.
    """

    def __init__(
        self,
        planner: ReactPlanner[Any] | Callable[[], ReactPlanner[Any]],
        *,
        name: str = "planner",
        memory_key: MemoryKey | Callable[[TaskRuntime], MemoryKey | None] | None = None,
    ) -> None:
        if not name:
            raise ValueError("name must be a non-empty str (it names the pipeline for resume)")
        self.name: str = name
        """What the session calls this pipeline (``TaskState.pipeline``, resume after restart)."""
        self._planner = planner
        self._planner_instance: ReactPlanner[Any] | None = None
        self._memory_key = memory_key

    def _get_planner(self) -> ReactPlanner[Any]:
        if self._planner_instance is None:
            given: object = self._planner
            made = given if _is_planner(given) else cast(Callable[[], object], given)()
            if not _is_planner(made):
                raise TypeError(
                    f"PlannerTaskPipeline needs a ReactPlanner or a factory of one, got {made!r}"
                )
            self._planner_instance = cast("ReactPlanner[Any]", made)
        return self._planner_instance

    def _key(self, runtime: TaskRuntime) -> MemoryKey | None:
        key = self._memory_key
        if key is None or not callable(key):
            return key
        return key(runtime)

    @staticmethod
    def _tool_context(runtime: TaskRuntime) -> dict[str, Any]:
        return {
            **runtime.context.tool_context,
            "session_id": runtime.session_id,
            "task_id": runtime.task_id,
            "task_runtime": runtime,
        }

    async def __call__(self, runtime: TaskRuntime) -> TaskResult:
        """Run the planner on ``runtime.query`` with the task's context and inbox."""
        planner = self._get_planner()
        context = runtime.context
        events = _Events(runtime)

        async def first() -> PlannerFinish[Any] | PlannerPause:
            return await planner.run(
                runtime.query or "",
                llm_context={
                    **context.llm_context,
                    "background_results": list(context.background_results),
                },
                tool_context=self._tool_context(runtime),
                memory_key=self._key(runtime),
                steering=runtime.steering,
                trace_id=runtime.trace_id,
                event_callback=events,
            )

        return await self._drive(runtime, planner, events, first)

    async def resume(
        self, runtime: TaskRuntime, checkpoint: CheckpointInfo, answer: CheckpointAnswer
    ) -> TaskResult:
        """Continue a task restored after a restart from the planner token in ``checkpoint``.

        Raises:
            ValueError: the checkpoint holds no ``planner_token`` (not this pipeline's).
        """
        data = checkpoint.data
        token = data.get("planner_token") if isinstance(data, dict) else None
        if not isinstance(token, str):
            raise ValueError(
                f"checkpoint {checkpoint.resume_token!r} holds no planner_token; it was not "
                "opened by a PlannerTaskPipeline"
            )
        planner = self._get_planner()
        events = _Events(runtime)
        value = _answer_value(checkpoint.kind, answer)

        async def first() -> PlannerFinish[Any] | PlannerPause:
            return await self._resume(
                runtime, planner, events, token, checkpoint.resume_token, value
            )

        return await self._drive(runtime, planner, events, first)

    async def _resume(
        self,
        runtime: TaskRuntime,
        planner: ReactPlanner[Any],
        events: _Events,
        token: str,
        interrupt_id: str,
        value: object,
    ) -> PlannerFinish[Any] | PlannerPause:
        return await planner.resume(
            token,
            answers={interrupt_id: value},
            tool_context=self._tool_context(runtime),
            memory_key=self._key(runtime),
            steering=runtime.steering,
            event_callback=events,
        )

    async def _drive(
        self,
        runtime: TaskRuntime,
        planner: ReactPlanner[Any],
        events: _Events,
        first: Callable[[], Any],
    ) -> TaskResult:
        from penguiflow.planner import PlannerPause

        outcome: PlannerFinish[Any] | PlannerPause | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(events.watch_pauses)
            outcome = await first()
            while isinstance(outcome, PlannerPause):
                interrupt = outcome.interrupts[0]
                answer = await runtime.checkpoint(
                    _prompt(interrupt),
                    kind=interrupt.reason,
                    payload=_interrupt_payload(interrupt),
                    token=interrupt.interrupt_id,
                    data={"planner_token": outcome.resume_token},
                )
                value = _answer_value(interrupt.reason, answer)
                outcome = await self._resume(
                    runtime, planner, events, outcome.resume_token, interrupt.interrupt_id, value
                )
            tg.cancel_scope.cancel()
        assert outcome is not None and not isinstance(outcome, PlannerPause)
        return await _finish(runtime, outcome)


def _is_planner(value: object) -> bool:
    from penguiflow.planner import ReactPlanner

    return isinstance(value, ReactPlanner)


def _prompt(interrupt: Interrupt) -> str:
    payload = interrupt.payload
    if isinstance(payload, dict):
        prompt = cast(dict[str, Any], payload).get("prompt")
        if isinstance(prompt, str) and prompt:
            return prompt
    if interrupt.reason == "approval_required":
        return f"Approve the call of {interrupt.tool}?"
    return f"{interrupt.tool} needs your input"


def _interrupt_payload(interrupt: Interrupt) -> dict[str, JsonValue]:
    payload: dict[str, JsonValue] = {
        "interrupt_id": interrupt.interrupt_id,
        "tool": interrupt.tool,
        "args": _json(dict(interrupt.args)),
    }
    extra = _json(interrupt.payload)
    if isinstance(extra, dict):
        payload.update(extra)
    elif extra is not None:
        payload["value"] = extra
    return payload


def _answer_value(kind: str, answer: CheckpointAnswer) -> object:
    from penguiflow.planner import Approval

    approval = kind == "approval_required"
    if answer.decision == "approve":
        return Approval(True) if approval else answer.input
    if answer.decision == "reject":
        return Approval(False, answer.reason) if approval else {"rejected": answer.reason}
    return answer.input  # a USER_MESSAGE: its text


async def _finish(runtime: TaskRuntime, finish: PlannerFinish[Any]) -> TaskResult:
    if finish.reason == "cancelled":
        if runtime.steering.cancel_reason is not None:
            # The session applied that CANCEL and is cancelling this task: end CANCELLED.
            await anyio.sleep_forever()
        raise RuntimeError("the planner run was cancelled from outside the session")
    payload = finish.payload
    answer = payload.raw_answer if payload is not None else None
    digest = [answer if isinstance(answer, str) else str(_json(answer))] if answer else []
    sources = [_json(s) for s in payload.sources] if payload is not None else []
    return TaskResult(
        payload={
            "reason": finish.reason,
            "output": _json(finish.output),
            "answer": _json(answer),
            "exhausted": finish.exhausted,
            "error": finish.error,
        },
        digest=digest,
        sources=sources,
        context_patch=ContextPatch(digest=digest, sources=sources),
        metadata={"run_id": finish.run_id, "usage": _json(finish.usage)},
    )
