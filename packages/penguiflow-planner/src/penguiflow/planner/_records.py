"""What a run leaves behind: its memory turn, trajectory and events in the planner's store."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ._events import PlannerEvent
from ._pause import scope_of_key
from ._run import Run
from ._types import PlannerFinish

if TYPE_CHECKING:
    from ._memory import ShortTermMemory
    from ._react import ReactPlanner

__all__ = ["load_memory", "logged", "persist", "record_memory"]

logger = logging.getLogger("penguiflow.planner")


def persist(
    planner: ReactPlanner[Any], run: Run, trajectory: bool, events: list[PlannerEvent]
) -> Callable[[], Awaitable[None]]:
    """The run's records (``planner.trajectory``, ``planner.events.{run_id}``) as one write."""
    scope, _ = scope_of_key(run.memory_key)
    data = run.trajectory.to_json().encode() if trajectory else None
    segment = uuid.uuid4().hex[:8]  # a resumed run continues the same stream

    async def write() -> None:
        try:
            if data is not None:
                await planner.store.put("planner.trajectory", run.run_id, data, scope=scope)
            stream = f"planner.events.{run.run_id}"
            for seq, event in enumerate(events, 1):
                await planner.store.append(
                    stream,
                    json.dumps(event.to_payload(), default=str).encode(),
                    scope=scope,
                    idempotency_key=f"{run.run_id}:{segment}:{seq}",
                )
        except Exception:
            logger.exception("could not persist the records of run %s", run.run_id)

    return write


async def load_memory(memory: ShortTermMemory, run: Run) -> None:
    key = memory.resolve_key(run.memory_key, run.tool_context)
    run.memory_resolved = key
    if key is not None:
        run.memory_message = await memory.load(key)


async def record_memory(memory: ShortTermMemory, run: Run, result: PlannerFinish[Any]) -> None:
    key = run.memory_resolved
    if key is None or result.reason != "answer_complete":
        return
    answer = result.payload.raw_answer if result.payload is not None else None
    from ._memory_types import ConversationTurn

    turn = ConversationTurn(
        user_message=run.trajectory.query,
        assistant_response=answer if isinstance(answer, str) else json.dumps(answer, default=str),
    )
    await memory.record(key, turn)


async def logged(func: Callable[[], Awaitable[None]], what: str) -> None:
    try:
        await func()
    except Exception:
        logger.exception("planner background work (%s) failed", what)
