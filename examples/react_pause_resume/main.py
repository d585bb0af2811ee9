"""Two approvals in parallel branches, answered one by one; the last by a second process.

Run it with ``uv run python examples/react_pause_resume/main.py``. The model (``ScriptedLLM``)
plans two ``refund`` calls in parallel; ``refund`` needs approval, so the run pauses with two
interrupts, recorded in a ``SQLiteDurableStore`` file. This process approves the first (a new
pause with one interrupt left, new token, same id), then starts a second Python process (this
script with ``--resume``) that opens the same file, rejects the second and finishes the run.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

import anyio
from pydantic import BaseModel

from penguiflow.core import SQLiteDurableStore, tool
from penguiflow.planner import (
    Approval,
    PlannerFinish,
    PlannerPause,
    ReactPlanner,
    ResumeTokenInvalid,
    ToolContext,
)
from penguiflow.testkit import ScriptedLLM

TENANT = {"tenant_id": "acme", "user_id": "ops-1", "session_id": "s-42"}


class Refund(BaseModel):
    """A refund to issue."""

    order: str
    amount: float


class Receipt(BaseModel):
    """What the payment system returned."""

    order: str
    refunded: float


@tool(
    desc="Refund an order (a human approves it first).", side_effects="write", needs_approval=True
)
async def refund(args: Refund, ctx: ToolContext) -> Receipt:
    """Runs only once approved."""
    return Receipt(order=args.order, refunded=args.amount)


PLAN = {
    "thought": "refund both orders",
    "next_node": "parallel",
    "args": {
        "steps": [
            {"node": "refund", "args": {"order": "A-1", "amount": 40.0}},
            {"node": "refund", "args": {"order": "B-2", "amount": 900.0}},
        ]
    },
}
ANSWER = {
    "thought": "one refund done, one rejected",
    "next_node": "final_response",
    "args": {"answer": "Refunded A-1 (40.0); B-2 was rejected: over the limit."},
}


def planner(llm: ScriptedLLM, store: SQLiteDurableStore) -> ReactPlanner[str]:
    """The same catalog and store in both processes: that is all a resume needs."""
    return ReactPlanner(llm, nodes=[refund], store=store)


async def first_process(path: Path) -> None:
    async with SQLiteDurableStore.open(path) as store:
        agent = planner(ScriptedLLM([PLAN]), store)
        pause = await agent.run("Refund orders A-1 and B-2", memory_key=TENANT)
        assert isinstance(pause, PlannerPause)
        print(f"paused: {len(pause.interrupts)} interrupts ({pause.reason})")
        for interrupt in pause.interrupts:
            print(f"  {interrupt.interrupt_id.split(':', 1)[1]}: {interrupt.payload}")
        first, second = pause.interrupts
        again = await agent.resume(
            pause.resume_token, answers={first.interrupt_id: Approval(True)}, memory_key=TENANT
        )
        assert isinstance(again, PlannerPause)
        (left,) = again.interrupts
        print(
            f"approved A-1; still paused: {len(again.interrupts)} interrupt left, same id: "
            f"{left.interrupt_id == second.interrupt_id}, new token: "
            f"{again.resume_token != pause.resume_token}"
        )
        try:
            await agent.resume(pause.resume_token, answer=True, memory_key=TENANT)
        except ResumeTokenInvalid:
            print("the first token is used up: ResumeTokenInvalid")
    with anyio.fail_after(60):  # a second Python process resumes the last interrupt
        proc = await anyio.run_process(
            [sys.executable, __file__, "--resume", str(path), again.resume_token]
        )
    print(proc.stdout.decode(), end="")


async def second_process(path: Path, token: str) -> None:
    async with SQLiteDurableStore.open(path) as store:
        agent = planner(ScriptedLLM([ANSWER]), store)
        try:
            await agent.resume(token, answer=True, memory_key={**TENANT, "tenant_id": "globex"})
        except ResumeTokenInvalid:
            print("[process 2] another tenant cannot use the token: ResumeTokenInvalid")
        result = await agent.resume(
            token, answer=Approval(False, reason="over the limit"), memory_key=TENANT
        )
        assert isinstance(result, PlannerFinish)
        step = result.trajectory.steps[0]
        print(f"[process 2] resumed from {path.name}: {result.reason}")
        for branch in step.branches or []:
            print(f"[process 2]   {branch['args']['order']}: {branch['output']}")
        print(f"[process 2] answer: {result.output}")


async def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--resume":
        await second_process(Path(sys.argv[2]), sys.argv[3])
        return
    with tempfile.TemporaryDirectory() as tmp:
        await first_process(Path(tmp) / "pauses.db")
    print("react_pause_resume done")


if __name__ == "__main__":
    asyncio.run(main())
