"""Pauses: durable, single-use, tenant-scoped resume records in a ``DurableStore``.

A record holds everything a process with the same catalog and store needs to resume the run —
never ``tool_context`` (pass it again). It is taken atomically on resume (single use) and put
back when the answers are unusable, so the token stays valid.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from penguiflow.core import DurableStore, Scope

from ._errors import InterruptAnswerError, ResumeTokenInvalid
from ._events import PlannerEventType
from ._steps import PendingStep
from ._trajectory import Trajectory
from ._types import Approval, Interrupt, PlannerBudget, PlannerPause

if TYPE_CHECKING:
    from ._run import Run

__all__ = ["MISSING", "PauseBook", "scope_of_key"]

NAMESPACE = "planner.pause"
MISSING: Any = object()


def scope_of_key(memory_key: Any) -> tuple[Scope, str]:
    """``(scope, key prefix)`` of a memory key: records live under its tenant and session."""
    tenant = _field(memory_key, "tenant_id") or "-"
    user = _field(memory_key, "user_id")
    session = _field(memory_key, "session_id")
    return Scope(tenant, user, session), f"{tenant}/{session or '-'}"


def _field(key: Any, name: str) -> str | None:
    if key is None:
        return None
    value: object = (
        cast(Mapping[str, Any], key).get(name)
        if isinstance(key, Mapping)
        else getattr(key, name, None)
    )
    return value if isinstance(value, str) and value else None


class PauseBook:
    """Writes and takes a planner's pause records."""

    def __init__(self, store: DurableStore, ttl_s: float, time_source: Any) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.time_source = time_source

    async def pause(self, run: Run, pending: PendingStep) -> PlannerPause:
        """Record the run (durable before this returns) and describe its pause."""
        token = secrets.token_urlsafe(24)
        expires_at = run.planner.time_source() + self.ttl_s
        interrupts = tuple(pending.interrupts())
        record = {
            "v": 1,
            "run_id": run.run_id,
            "trace_id": run.trace_id,
            "query": run.trajectory.query,
            "llm_context": run.trajectory.llm_context,
            "interrupts": [i.interrupt_id for i in interrupts],
            "trajectory": json.loads(run.trajectory.to_json()),
            "pending": pending.to_json(),
            "budget": {
                "max_iters": run.budget.max_iters,
                "max_hops": run.budget.max_hops,
                "max_tokens": run.budget.max_tokens,
                "max_cost_usd": run.budget.max_cost_usd,
                "deadline_left_s": run.remaining_s(),
            },
            "used": {
                "iters": run.iters,
                "hops": run.hops,
                "tool_calls": run.tool_calls,
                "llm_calls": run.llm_calls,
                "prompt_tokens": run.prompt_tokens,
                "completion_tokens": run.completion_tokens,
                "cost": run.cost,
                "estimated": run.estimated,
                "by_purpose": dict(run.by_purpose),
                "arg_failures": run.arg_failures,
                "revisions": run.revisions,
            },
            "expires_at": expires_at,
        }
        scope, prefix = scope_of_key(run.memory_key)
        await self.store.put(
            NAMESPACE,
            f"{prefix}/{token}",
            json.dumps(record).encode(),
            scope=scope,
            ttl_s=self.ttl_s,
        )
        run.planner.counters["pauses_issued"] += 1
        first = interrupts[0]
        run.event(
            PlannerEventType.PAUSE,
            step=pending.step,
            extra={"interrupts": [i.interrupt_id for i in interrupts], "reason": first.reason},
        )
        return PlannerPause(
            reason=first.reason,
            payload=first.payload,
            resume_token=token,
            interrupts=interrupts,
            run_id=run.run_id,
            trace_id=run.trace_id,
            usage=run.usage(),
            expires_at=expires_at,
        )

    async def take(self, token: str, memory_key: Any) -> tuple[dict[str, Any], str, Scope]:
        """The record of ``token`` (taken: single use); ``ResumeTokenInvalid`` when unusable."""
        scope, prefix = scope_of_key(memory_key)
        key = f"{prefix}/{token}"
        record = None
        if token and "/" not in token:
            record = await self.store.take(NAMESPACE, key, scope=scope)
        if record is None:
            raise ResumeTokenInvalid(
                "unknown, used or expired resume token (or one of another tenant or session)"
            )
        data: dict[str, Any] = json.loads(record.value)
        if data.get("v") != 1:
            raise ResumeTokenInvalid(f"unsupported pause record version {data.get('v')!r}")
        if data.get("expires_at", 0) <= self.time_source():
            raise ResumeTokenInvalid("the resume token has expired")
        return data, key, scope

    async def put_back(self, data: dict[str, Any], key: str, scope: Scope) -> None:
        """Return an untouched record (its token stays valid until it expires)."""
        left = data["expires_at"] - self.time_source()
        if left > 0:
            await self.store.put(NAMESPACE, key, json.dumps(data).encode(), scope=scope, ttl_s=left)


def apply_answers(pending: PendingStep, answer: Any, answers: Mapping[str, Any] | None) -> None:
    """Give each answered interrupt's branch its answer (``InterruptAnswerError`` if unusable)."""
    open_ = {
        i.interrupt_id: (branch, i) for branch in pending.all_branches() for i in branch.interrupts
    }
    if answer is not MISSING and answers is not None:
        raise InterruptAnswerError(
            "pass answer= (one pending interrupt) or answers={id: value}, not both"
        )
    if answer is not MISSING:
        if len(open_) != 1:
            raise InterruptAnswerError(
                f"{len(open_)} interrupts are pending ({sorted(open_)}); answer them with "
                "answers={interrupt_id: value}"
            )
        answers = {next(iter(open_)): answer}
    if not answers:
        raise InterruptAnswerError(f"no answer given; pending interrupts: {sorted(open_)}")
    unknown = sorted(set(answers) - set(open_))
    if unknown:
        raise InterruptAnswerError(f"unknown interrupt ids {unknown}; pending: {sorted(open_)}")
    for interrupt_id, value in answers.items():
        _check_json(interrupt_id, value)
        if open_[interrupt_id][1].reason == "approval_required":
            _check_approval(interrupt_id, value)
    for interrupt_id, value in answers.items():
        branch, interrupt = open_[interrupt_id]
        n = int(interrupt_id.rsplit(":", 1)[1])
        branch.answers[n] = _stored(value)
        branch.interrupts.remove(interrupt)


def _check_json(interrupt_id: str, value: Any) -> None:
    if isinstance(value, Approval):
        return
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        raise InterruptAnswerError(
            f"the answer to {interrupt_id!r} must be JSON-serialisable, got {type(value).__name__}"
        ) from None


def _check_approval(interrupt_id: str, value: Any) -> None:
    """An approval is an ``Approval``, a bool, or ``{"approved": bool, "reason": ...}``.

    Anything else is refused: ``"no"`` is truthy, so guessing would run a rejected tool.
    """
    if isinstance(value, Approval | bool):
        return
    if isinstance(value, Mapping):
        data = cast(Mapping[str, Any], value)
        reason = data.get("reason")
        if isinstance(data.get("approved"), bool) and (reason is None or isinstance(reason, str)):
            return
    raise InterruptAnswerError(
        f"{interrupt_id!r} asks for approval: answer Approval(approved, reason=None) or a bool, "
        f"got {value!r}"
    )


def _stored(value: Any) -> Any:
    if isinstance(value, Approval):
        return {"approved": value.approved, "reason": value.reason}
    return value


def restore(run: Run, data: dict[str, Any]) -> None:
    """Put a record's state back into a fresh ``Run``."""
    run.trajectory = Trajectory.from_json(data["trajectory"])
    run.pending = PendingStep.from_json(data["pending"])
    used = data["used"]
    run.iters = used["iters"]
    run.hops = used["hops"]
    run.tool_calls = used["tool_calls"]
    run.llm_calls = used["llm_calls"]
    run.prompt_tokens = used["prompt_tokens"]
    run.completion_tokens = used["completion_tokens"]
    run.cost = used["cost"]
    run.estimated = used["estimated"]
    run.by_purpose.update(used["by_purpose"])
    run.arg_failures = used["arg_failures"]
    run.revisions = used["revisions"]


def budget_of(data: dict[str, Any]) -> tuple[PlannerBudget, float | None]:
    """The record's budget and its remaining deadline in seconds."""
    budget = data["budget"]
    return (
        PlannerBudget(
            max_iters=budget["max_iters"],
            max_hops=budget["max_hops"],
            max_tokens=budget["max_tokens"],
            max_cost_usd=budget["max_cost_usd"],
        ),
        budget["deadline_left_s"],
    )


def interrupt_ids(pending: PendingStep) -> list[str]:
    """The ids still pending in a step."""
    return [i.interrupt_id for i in pending.interrupts()]


__all__ += ["Interrupt", "apply_answers", "budget_of", "interrupt_ids", "restore"]
