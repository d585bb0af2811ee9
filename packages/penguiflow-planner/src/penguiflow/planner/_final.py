"""The final answer: validation into ``output_type``, reflection, and the ``FinalPayload``."""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter, ValidationError

from ._events import PlannerEventType
from ._llm import LLMMessage
from ._llmcall import call_llm
from ._prompts import json_errors
from ._trajectory import TrajectoryStep
from ._types import FinalPayload, PlannerAction, PlannerFinish, ReflectionCritique

if TYPE_CHECKING:
    from ._run import Run

__all__ = ["final", "validate_answer"]


def validate_answer(run: Run, action: PlannerAction) -> Any:
    """``args.answer`` validated into ``output_type`` (``ValueError`` saying why not)."""
    if "answer" not in action.args:
        raise ValueError("final_response needs args.answer")
    raw = action.args["answer"]
    output_type = run.planner.output_type
    if output_type is str:
        if not isinstance(raw, str):
            raise ValueError(f"the answer must be a string, got {type(raw).__name__}")
        return raw
    adapter: TypeAdapter[Any] = run.planner.output_adapter
    try:
        return adapter.validate_json(raw) if isinstance(raw, str) else adapter.validate_python(raw)
    except ValidationError as exc:
        raise ValueError(
            f"the answer does not match the output schema: {json_errors(exc)}"
        ) from None


async def final(run: Run, action: PlannerAction) -> PlannerFinish[Any] | None:
    """Finish with the answer, or None when reflection sent it back for a revision."""
    output = validate_answer(run, action)
    args = action.args
    step = TrajectoryStep(index=len(run.trajectory.steps), action=action.model_dump(mode="json"))
    run.record(step)
    followup = False
    reflection = run.planner.reflection
    if reflection is not None:
        critique = await _critique(run, args["answer"])
        run.event(
            PlannerEventType.REFLECTION_CRITIQUE,
            step=step.index,
            extra=critique.model_dump(mode="json"),
        )
        if not critique.passed or critique.score < reflection.quality_threshold:
            if run.revisions < reflection.max_revisions:
                run.revisions += 1
                step.observation = {
                    "reflection": critique.model_dump(mode="json"),
                    "revise": "improve the answer with this critique, then answer again",
                }
                run.event(PlannerEventType.STEP_COMPLETE, step=step.index, extra={"ok": False})
                return None
            followup = True
    run.event(PlannerEventType.STEP_COMPLETE, step=step.index, extra={"ok": True})
    payload = FinalPayload(
        raw_answer=args["answer"],
        sources=tuple(args.get("sources") or ()),
        confidence=args.get("confidence"),
        suggested_actions=tuple(args.get("suggested_actions") or ()),
        requires_followup=followup or bool(args.get("requires_followup")),
        warnings=tuple(args.get("warnings") or ()),
        language=args.get("language"),
        extra={k: v for k, v in args.items() if k not in _PAYLOAD_KEYS},
    )
    return run.finish("answer_complete", output=output, payload=payload)


async def _critique(run: Run, answer: Any) -> ReflectionCritique:
    reflection = run.planner.reflection
    assert reflection is not None
    criteria = reflection.criteria
    messages: list[LLMMessage] = [
        {
            "role": "system",
            "content": _CRITIC
            + json.dumps(
                {
                    "completeness": criteria.completeness,
                    "accuracy": criteria.accuracy,
                    "clarity": criteria.clarity,
                }
            ),
        },
        {
            "role": "user",
            "content": json.dumps({"query": run.trajectory.query, "answer": answer}, default=str),
        },
    ]
    text = await call_llm(
        run, messages, "reflection_critique", _critique_format(), client=reflection.llm
    )
    try:
        return ReflectionCritique.model_validate_json(text)
    except ValidationError:
        return ReflectionCritique(score=1.0, passed=True, feedback="unparseable critique ignored")


_CRITIC = (
    'Critique the answer to the query. Reply with JSON: {"score": 0..1, "passed": bool, '
    '"feedback": str, "issues": [str], "suggestions": [str]}. Criteria: '
)
_PAYLOAD_KEYS = frozenset(
    (
        "answer",
        "sources",
        "confidence",
        "suggested_actions",
        "requires_followup",
        "warnings",
        "language",
    )
)


@functools.cache
def _critique_format() -> dict[str, Any]:
    """The ``reflection_critique`` response format (built on first use)."""
    return {
        "type": "json_schema",
        "json_schema": {
            "name": "reflection_critique",
            "schema": ReflectionCritique.model_json_schema(),
            "strict": False,
        },
    }
