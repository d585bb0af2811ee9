"""A ReactPlanner as a session task, its approval pause answered through steering.

Run ``uv run python examples/sessions_planner_hitl/main.py``. ``PlannerTaskPipeline`` runs the
planner (played by ``ScriptedLLM``) as a foreground task. The ``refund`` tool needs approval, so
the planner pauses; the session turns that interrupt into a ``CHECKPOINT`` update and shows the
task PAUSED. The user approves the first refund (APPROVE with the checkpoint's ``resume_token``)
and rejects the second (REJECT with a reason): the rejected tool never runs and the planner still
finishes with an answer. Planner events arrive as PROGRESS and TOOL_CALL updates.
"""

from __future__ import annotations

import anyio
from pydantic import BaseModel, JsonValue

from penguiflow.core import tool
from penguiflow.planner import ReactPlanner, ToolContext
from penguiflow.sessions import (
    PlannerTaskPipeline,
    SteeringEvent,
    SteeringEventType,
    StreamingSession,
    UpdateType,
)
from penguiflow.testkit import ScriptedLLM


class Refund(BaseModel):
    """A refund to issue."""

    order: str
    amount: float


class Receipt(BaseModel):
    """What the payment system returned."""

    order: str
    refunded: float


REFUNDED: list[str] = []


@tool(
    desc="Refund an order (a human approves it first).", side_effects="write", needs_approval=True
)
async def refund(args: Refund, ctx: ToolContext) -> Receipt:
    """Runs only once approved."""
    REFUNDED.append(args.order)
    return Receipt(order=args.order, refunded=args.amount)


def step(order: str, amount: float) -> dict[str, object]:
    return {
        "thought": f"refund {order}",
        "next_node": "refund",
        "args": {"order": order, "amount": amount},
    }


SCRIPT = [
    step("A-1", 40.0),
    step("B-2", 900.0),
    {
        "thought": "done",
        "next_node": "final_response",
        "args": {"answer": "Refunded A-1 (40.0); B-2 was rejected by the reviewer."},
    },
]


async def main() -> None:
    planner = ReactPlanner(ScriptedLLM(SCRIPT), nodes=[refund])
    pipeline = PlannerTaskPipeline(planner)
    decisions: dict[str, tuple[SteeringEventType, dict[str, JsonValue]]] = {
        "A-1": (SteeringEventType.APPROVE, {}),
        "B-2": (SteeringEventType.REJECT, {"reason": "over the limit"}),
    }
    async with StreamingSession("s-hitl") as session, session.subscribe() as sub:
        tid = await session.spawn_task(pipeline, query="Refund orders A-1 and B-2")
        with anyio.fail_after(20):
            async for update in sub:
                data = update.content if isinstance(update.content, dict) else {}
                if update.update_type is UpdateType.TOOL_CALL:
                    print(f"tool call {data['phase']}: {data['tool_name']} ok={data['ok']}")
                elif update.update_type is UpdateType.STATUS_CHANGE:
                    print(f"status: {data['status']} ({data['reason']})")
                    if data["status"] in ("COMPLETE", "FAILED", "CANCELLED"):
                        break
                elif update.update_type is UpdateType.CHECKPOINT:
                    payload = data["payload"]
                    assert isinstance(payload, dict) and isinstance(payload["args"], dict)
                    order = str(payload["args"]["order"])
                    print(f"checkpoint {data['kind']}: {payload['tool']} {payload['args']}")
                    kind, extra = decisions[order]
                    receipt = await session.steer(
                        SteeringEvent(
                            session_id="s-hitl",
                            task_id=tid,
                            event_type=kind,
                            payload={"resume_token": data["resume_token"], **extra},
                        )
                    )
                    print(f"  user {kind.value}s {order} -> {receipt.outcome}")
        state = await session.wait_task(tid)
    assert isinstance(state.result, dict)
    print(f"task {state.status}: {state.result['answer']}")
    print(f"refund tool ran for: {REFUNDED}")
    print("sessions_planner_hitl done")


if __name__ == "__main__":
    anyio.run(main)
