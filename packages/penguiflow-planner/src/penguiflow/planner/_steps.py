"""One tool step: a single call, or parallel branches with a join; pauses collected per branch."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import anyio
from pydantic import BaseModel, ValidationError
from pydantic_core import to_jsonable_python

from penguiflow.core import FlowError, NodeSpec, TraceCancelled

from ._events import PlannerEventType
from ._prompts import json_errors
from ._toolctx import PauseRequested, ToolContext
from ._types import Approval, Interrupt

if TYPE_CHECKING:
    from ._run import Run

__all__ = ["Branch", "PendingStep", "StepFailed", "plan_step", "run_branches"]

_INJECT = ("$results", "$branches", "$failures", "$success_count", "$failure_count", "$expect")


class StepFailed(Exception):
    """A step that cannot start: its error becomes the step's observation."""

    def __init__(self, error: str, failure: dict[str, Any] | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.failure = failure


@dataclass(slots=True)
class Branch:
    """One tool invocation of a step."""

    index: int
    node: str
    args: dict[str, Any]
    ok: bool | None = None
    """None until it ran; then whether it succeeded."""
    output: Any = None
    """Its output as JSON, or its error text."""
    interrupts: list[Interrupt] = field(default_factory=list[Interrupt])
    """Pending pauses (the branch runs again once they are answered)."""
    answers: dict[int, Any] = field(default_factory=dict[int, Any])
    """Answers to its pauses so far, by pause number."""

    def to_json(self) -> dict[str, Any]:
        """The branch as JSON (for a pause record)."""
        return {
            "index": self.index,
            "node": self.node,
            "args": self.args,
            "ok": self.ok,
            "output": self.output,
            "interrupts": [_interrupt_json(i) for i in self.interrupts],
            "answers": {str(n): a for n, a in self.answers.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Branch:
        """Rebuild a branch from :meth:`to_json` data."""
        return cls(
            index=data["index"],
            node=data["node"],
            args=data["args"],
            ok=data["ok"],
            output=data["output"],
            interrupts=[Interrupt(**i) for i in data["interrupts"]],
            answers={int(n): a for n, a in data["answers"].items()},
        )


def _interrupt_json(interrupt: Interrupt) -> dict[str, Any]:
    return {
        "interrupt_id": interrupt.interrupt_id,
        "reason": interrupt.reason,
        "payload": interrupt.payload,
        "tool": interrupt.tool,
        "args": dict(interrupt.args),
        "step": interrupt.step,
        "branch": interrupt.branch,
    }


@dataclass(slots=True)
class PendingStep:
    """A tool step in progress: survives pauses (as JSON) until every branch has an outcome."""

    step: int
    action: dict[str, Any]
    branches: list[Branch]
    join: dict[str, Any] | None
    parallel: bool
    join_branch: Branch | None = None
    """The join's invocation, once its args are injected (it can pause like a branch)."""

    def all_branches(self) -> list[Branch]:
        """The branches, then the join's invocation if it started."""
        if self.join_branch is None:
            return self.branches
        return [*self.branches, self.join_branch]

    def interrupts(self) -> list[Interrupt]:
        """Every pending pause of the step, in branch order (the join's last)."""
        return [i for branch in self.all_branches() for i in branch.interrupts]

    def to_json(self) -> dict[str, Any]:
        """The step as JSON (for a pause record)."""
        return {
            "step": self.step,
            "action": self.action,
            "branches": [b.to_json() for b in self.branches],
            "join": self.join,
            "parallel": self.parallel,
            "join_branch": None if self.join_branch is None else self.join_branch.to_json(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PendingStep:
        """Rebuild a step from :meth:`to_json` data."""
        return cls(
            step=data["step"],
            action=data["action"],
            branches=[Branch.from_json(b) for b in data["branches"]],
            join=data["join"],
            parallel=data["parallel"],
            join_branch=None
            if data.get("join_branch") is None
            else Branch.from_json(data["join_branch"]),
        )


def _validated(spec: NodeSpec, args: Any) -> BaseModel:
    try:
        return spec.args_model.model_validate(args)
    except ValidationError as exc:
        raise StepFailed(
            f"invalid args for tool {spec.name!r}",
            {"tool": spec.name, "validation_errors": json_errors(exc)},
        ) from None


def plan_step(run: Run, action: dict[str, Any], step: int) -> PendingStep:
    """Check a tool or parallel action before anything runs (``StepFailed`` says why not)."""
    node: str = action["next_node"]
    args: dict[str, Any] = _mapping(action.get("args"))
    if node != "parallel":
        spec = run.tool(node)
        _validated(spec, args)
        return PendingStep(step, action, [Branch(0, node, args)], None, parallel=False)
    steps: Any = args.get("steps")
    if not isinstance(steps, list) or not steps:
        raise StepFailed("parallel needs args.steps: a non-empty list of {node, args}")
    entries = cast(list[Any], steps)
    limit = run.planner.absolute_max_parallel
    if len(entries) > limit:
        raise StepFailed(f"parallel got {len(entries)} branches; at most {limit} are allowed")
    branches: list[Branch] = []
    for index, raw in enumerate(entries):
        entry = _mapping(raw)
        name = entry.get("node")
        if not isinstance(name, str):
            raise StepFailed(f"parallel step {index} needs a node name and args")
        spec = run.tool(name)
        branch_args = _mapping(entry.get("args"))
        _validated(spec, branch_args)
        branches.append(Branch(index, spec.name, branch_args))
    join: dict[str, Any] | None = None
    if args.get("join") is not None:
        join = _mapping(args.get("join"))
        name = join.get("node")
        if not isinstance(name, str):
            raise StepFailed("parallel join needs a node name")
        run.tool(name)
        if join.get("on_failure", "skip") not in ("skip", "run"):
            raise StepFailed("parallel join on_failure must be 'skip' or 'run'")
        join["args"] = _mapping(join.get("args"))
        sources = _mapping(join.get("inject") or {"results": "$results"})
        unknown = sorted(str(s) for s in sources.values() if s not in _INJECT)
        if unknown:
            raise StepFailed(
                f"parallel join inject sources {unknown} are not among {list(_INJECT)}"
            )
        join["inject"] = sources
    return PendingStep(step, action, branches, join, parallel=True)


def _mapping(value: Any) -> dict[str, Any]:
    """``value`` as a dict (``{}`` for None; ``StepFailed`` for anything else)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise StepFailed(f"expected a JSON object, got {type(value).__name__}")
    return dict(cast(dict[str, Any], value))


def hops_needed(pending: PendingStep) -> int:
    """Tool invocations the step still needs (each unfinished branch, and the join)."""
    return sum(1 for b in pending.branches if b.ok is None) + (1 if pending.join else 0)


async def run_branches(run: Run, pending: PendingStep) -> None:
    """Run every branch that has no outcome and no unanswered pause, ``max_parallel`` at once."""
    todo = [b for b in pending.branches if b.ok is None and not b.interrupts]
    if not todo:
        return
    if len(todo) == 1:
        await _run_branch(run, pending, todo[0])
        return
    limiter = anyio.CapacityLimiter(run.planner.max_parallel)

    async def one(branch: Branch) -> None:
        async with limiter:
            await _run_branch(run, pending, branch)

    try:
        async with anyio.create_task_group() as tg:
            for branch in todo:
                tg.start_soon(one, branch)
    except* TraceCancelled as group:  # the trace was cancelled: one error, as for a single call
        raise group.exceptions[0] from None


async def _run_branch(run: Run, pending: PendingStep, branch: Branch) -> None:
    spec = run.tools.get(branch.node)
    if spec is None:  # gone from the catalog since the pause
        branch.ok, branch.output = False, f"tool {branch.node!r} is not in the catalog any more"
        return
    first = 0
    if spec.needs_approval:
        first = 1
        if 0 not in branch.answers:
            _interrupt(
                run,
                pending,
                branch,
                "approval_required",
                {"tool": spec.name, "args": branch.args},
                0,
            )
            return
        approved, reason = _approval(branch.answers[0])
        if not approved:
            branch.ok, branch.output = True, {"rejected": reason}
            return
    call_id = f"{run.run_id}:{pending.step}:{branch.index}"
    ctx = ToolContext(
        llm_context=run.trajectory.llm_context,
        tool_context=run.tool_context,
        run_id=run.run_id,
        trace_id=run.trace_id,
        call_id=call_id,
        memory_key=run.memory_key,
        flow_context=run.flow_context,
        answers={n - first: a for n, a in branch.answers.items() if n >= first},
        pause_enabled=run.planner.pause_enabled,
        on_chunk=lambda chunk: run.event(
            PlannerEventType.TOOL_STREAM_CHUNK, step=pending.step, node_name=spec.name, extra=chunk
        ),
    )
    run.event(
        PlannerEventType.TOOL_CALL_START,
        step=pending.step,
        node_name=spec.name,
        extra={"call_id": call_id, "branch": branch.index},
    )
    started = time.perf_counter()
    run.hops += 1
    run.tool_calls += 1
    try:
        result = await run.call(
            spec,
            spec.args_model.model_validate(branch.args),
            ctx,
            extra={
                "run_id": run.run_id,
                "call_id": call_id,
                "step": pending.step,
                "branch": branch.index,
            },
        )
    except PauseRequested as pause:
        run.hops -= 1  # a paused call's hop is counted when it runs to its end
        _interrupt(run, pending, branch, pause.reason, pause.payload, pause.n + first)
        ok: bool | None = None
    except FlowError as error:
        branch.ok, branch.output = False, error.message
        ok = False
    except BaseException:  # cancelled (trace, deadline, steering): the start still gets its end
        _call_end(run, pending, spec.name, call_id, branch.index, started, False, cancelled=True)
        raise
    else:
        branch.ok, branch.output = True, _json(result)
        ok = True
    _call_end(run, pending, spec.name, call_id, branch.index, started, ok)


def _call_end(
    run: Run,
    pending: PendingStep,
    tool: str,
    call_id: str,
    branch: int,
    started: float,
    ok: bool | None,
    *,
    cancelled: bool = False,
) -> None:
    """The ``tool_call_end`` event of one call (``ok`` None: it paused)."""
    run.event(
        PlannerEventType.TOOL_CALL_END,
        step=pending.step,
        node_name=tool,
        latency_ms=(time.perf_counter() - started) * 1000,
        extra={
            "call_id": call_id,
            "branch": branch,
            "ok": bool(ok),
            "paused": ok is None,
            "cancelled": cancelled,
        },
    )


def _approval(answer: Any) -> tuple[bool, str | None]:
    """``(approved, reason)`` of an approval answer: an ``Approval``, its dict, or a bool."""
    if isinstance(answer, Approval):
        return answer.approved, answer.reason
    if isinstance(answer, dict):
        data = cast(dict[str, Any], answer)
        reason = data.get("reason")
        return bool(data.get("approved")), reason if isinstance(reason, str) else None
    return bool(answer), None


def _interrupt(
    run: Run, pending: PendingStep, branch: Branch, reason: Any, payload: Any, n: int
) -> None:
    branch.interrupts.append(
        Interrupt(
            interrupt_id=f"{run.run_id}:{pending.step}:{branch.index}:{n}",
            reason=reason,
            payload=_json(payload),
            tool=branch.node,
            args=branch.args,
            step=pending.step,
            branch=branch.index,
        )
    )


def _json(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return json.loads(json.dumps(to_jsonable_python(value, fallback=str)))


def inject(pending: PendingStep) -> dict[str, Any]:
    """The join's args with the branch outcomes injected (``$results`` ...)."""
    assert pending.join is not None
    ok = [b for b in pending.branches if b.ok]
    failed = [b for b in pending.branches if b.ok is False]
    values = {
        "$results": [b.output for b in ok],
        "$branches": [
            {"node": b.node, "args": b.args, "ok": b.ok, "output": b.output}
            for b in pending.branches
        ],
        "$failures": [{"node": b.node, "error": b.output} for b in failed],
        "$success_count": len(ok),
        "$failure_count": len(failed),
        "$expect": len(pending.branches),
    }
    args: dict[str, Any] = dict(pending.join.get("args") or {})
    for name, source in dict(pending.join.get("inject") or {"results": "$results"}).items():
        args[name] = values[source]
    return args


def step_outcome(pending: PendingStep) -> tuple[Any, str | None, dict[str, Any] | None]:
    """``(observation, error, failure)`` of a step whose branches all ran (join not included)."""
    if not pending.parallel:
        branch = pending.branches[0]
        if branch.ok:
            return branch.output, None, None
        return None, str(branch.output), {"tool": branch.node}
    return (
        {
            "results": [b.output for b in pending.branches if b.ok],
            "failures": [
                {"node": b.node, "error": b.output} for b in pending.branches if b.ok is False
            ],
        },
        None,
        None,
    )


__all__ += ["hops_needed", "inject", "step_outcome"]
