"""The next action of a run: one planning LLM call, its reply parsed, bad replies repaired.

``Run._next_action`` calls ``next_action``: the reply is parsed as a ``PlannerAction`` (a final
answer validated at once), and a bad reply is sent back with the error up to the planner's
``repair_attempts`` times before the run finishes with ``no_path``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from ._events import PlannerEventType
from ._final import validate_answer
from ._llm import LLMMessage
from ._llmcall import Finished, call_llm
from ._prompts import FINAL, parse_action
from ._stream import AnswerStream
from ._types import PlannerAction

if TYPE_CHECKING:
    from ._run import Run

__all__ = ["next_action"]


async def next_action(run: Run) -> PlannerAction:
    """Ask for the next action; repair bad replies up to ``repair_attempts`` times."""
    planner = run.planner
    extra, run.extra_messages = run.extra_messages, []
    repairs: list[LLMMessage] = []

    def rebuild() -> list[LLMMessage]:  # after a compaction for context length
        run.extra_messages = extra
        try:
            return [*run.messages(), *repairs]
        finally:
            run.extra_messages = []

    messages = rebuild()
    step = len(run.trajectory.steps)
    run.event(PlannerEventType.STEP_START, step=step)
    problem = "no reply"
    for attempt in range(planner.repair_attempts + 1):
        stream = AnswerStream(run, step) if planner.stream_final_response else None
        text = await call_llm(
            run,
            messages,
            "planner_action",
            planner.action_format,
            stream=stream,
            rebuild=rebuild,
        )
        try:
            action = parse_action(text)
            if action.next_node == FINAL:
                validate_answer(run, action)  # now, so a bad answer is repaired too
            return action
        except ValueError as exc:
            problem = str(exc)
        if attempt == planner.repair_attempts:
            break
        run.event(
            PlannerEventType.REPAIR_ATTEMPT,
            step=step,
            error=problem,
            extra={"attempt": attempt + 1},
        )
        repair: LLMMessage = {
            "role": "user",
            "content": json.dumps(
                {"error": problem, "fix": "reply with one valid planner_action JSON object"}
            ),
        }
        said: LLMMessage = {"role": "assistant", "content": text}
        repairs += [said, repair]
        messages = rebuild()
    raise Finished(run.finish("no_path", error=f"no valid action after repairs: {problem}"))
