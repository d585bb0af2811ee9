"""A tool step of a run: check it (hops before the batch), run it, record its outcome.

The branches themselves run in ``_steps``; a step with pending interrupts pauses (``_pause``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ._events import PlannerEventType
from ._llmcall import Finished
from ._prompts import json_errors
from ._steps import (
    Branch,
    PendingStep,
    StepFailed,
    hops_needed,
    inject,
    plan_step,
    run_branches,
    step_outcome,
)
from ._trajectory import TrajectoryStep
from ._types import PlannerAction

if TYPE_CHECKING:
    from ._run import Run

__all__ = ["continue_step", "tool_step"]


async def tool_step(run: Run, action: PlannerAction) -> None:
    """Check a tool or parallel action (hops before the batch starts), then run it."""
    index = len(run.trajectory.steps)
    action_json = action.model_dump(mode="json")
    try:
        pending = plan_step(run, action_json, index)
    except StepFailed as failed:
        _failed_step(run, action_json, failed)
        return
    run.arg_failures = 0
    limit = run.budget.max_hops
    if limit is not None:
        left = limit - run.hops
        if left <= 0:
            raise Finished(
                run.finish("budget_exhausted", exhausted="hops", error="max_hops reached")
            )
        if hops_needed(pending) > left:
            _failed_step(
                run,
                action_json,
                StepFailed(
                    f"this step needs {hops_needed(pending)} tool calls but only {left} "
                    "remain in the budget"
                ),
            )
            return
    run.pending = pending
    await continue_step(run)


def _failed_step(run: Run, action_json: dict[str, Any], failed: StepFailed) -> None:
    index = len(run.trajectory.steps)
    run.record(
        TrajectoryStep(index=index, action=action_json, error=failed.error, failure=failed.failure)
    )
    run.event(PlannerEventType.STEP_COMPLETE, step=index, extra={"ok": False})
    if failed.failure and "validation_errors" in failed.failure:
        run.arg_failures += 1
        if run.arg_failures >= run.planner.max_consecutive_arg_failures:
            raise Finished(
                run.finish("no_path", error=f"{run.arg_failures} invalid tool calls in a row")
            )


async def continue_step(run: Run) -> None:
    """Run what the pending step still needs; pause, or record its outcome."""
    pending = run.pending
    assert pending is not None
    started = time.perf_counter()
    await run_branches(run, pending)
    if pending.interrupts():
        pauses = run.planner._pauses  # pyright: ignore[reportPrivateUsage]
        raise Finished(await pauses.pause(run, pending))
    observation, error, failure = step_outcome(pending)
    join = pending.join
    if join is not None:
        failed = any(b.ok is False for b in pending.branches)
        if not failed or join.get("on_failure", "skip") == "run":
            observation, error, failure = await _join(run, pending)
    run.record(
        TrajectoryStep(
            index=pending.step,
            action=pending.action,
            observation=observation,
            error=error,
            failure=failure,
            branches=[
                {"node": b.node, "args": b.args, "ok": b.ok, "output": b.output}
                for b in pending.branches
            ]
            if pending.parallel
            else None,
            latency_ms=(time.perf_counter() - started) * 1000,
        )
    )
    run.pending = None
    run.event(PlannerEventType.STEP_COMPLETE, step=pending.step, extra={"ok": error is None})


async def _join(run: Run, pending: PendingStep) -> tuple[Any, str | None, dict[str, Any] | None]:
    """Run the join with the branch outcomes injected; it may pause like a branch."""
    assert pending.join is not None
    if pending.join_branch is None:
        spec = run.tools.get(pending.join["node"])
        if spec is None:  # gone from the catalog since the pause
            return None, f"join {pending.join['node']!r} is not in the catalog any more", None
        args = inject(pending)
        try:
            spec.args_model.model_validate(args)
        except ValidationError as exc:
            return (
                None,
                f"invalid args for join {spec.name!r}",
                {"validation_errors": json_errors(exc)},
            )
        pending.join_branch = Branch(len(pending.branches), spec.name, args)
    join = PendingStep(pending.step, pending.action, [pending.join_branch], None, parallel=False)
    await run_branches(run, join)
    if join.interrupts():
        pauses = run.planner._pauses  # pyright: ignore[reportPrivateUsage]
        raise Finished(await pauses.pause(run, pending))
    return step_outcome(join)
