"""Per-trace cancellation: cancel one of several running traces; the others finish untouched.

Run it with ``uv run python examples/trace_cancel/main.py``.
"""

from __future__ import annotations

import asyncio

import anyio

from penguiflow.core import Context, Headers, Message, Node, TraceCancelled, create

STEPS = 4
VICTIM = "trace-b"


async def main() -> None:
    reached_step_2 = asyncio.Event()
    seen: dict[str, str] = {}

    async def work(msg: Message, ctx: Context) -> Message:
        """A long-running job: four steps of 20 ms each."""
        try:
            for step in range(STEPS):
                if msg.trace_id == VICTIM and step == 2:
                    reached_step_2.set()
                await anyio.sleep(0.02)
        except asyncio.CancelledError:
            seen[msg.trace_id] = f"cancelled during step {step}"  # clean up here, then re-raise
            raise
        return msg.with_payload(f"{msg.payload} finished {STEPS} steps")

    work_node = Node(work)
    flow = create(work_node.to())
    outcomes: dict[str, str] = {}

    async def wait_for(trace_id: str) -> None:
        try:
            result: Message = await flow.fetch(trace_id=trace_id)
            outcomes[trace_id] = result.payload
        except TraceCancelled as exc:  # a waiting fetch of a cancelled trace is woken
            outcomes[trace_id] = f"TraceCancelled: {exc}"

    tasks_before = len(asyncio.all_tasks())
    async with flow.running():
        trace_ids = ["trace-a", VICTIM, "trace-c"]
        for trace_id in trace_ids:
            headers = Headers(tenant="demo")
            await flow.emit(Message(payload=f"job {trace_id}", headers=headers, trace_id=trace_id))
        async with anyio.create_task_group() as tg:
            for trace_id in trace_ids:
                tg.start_soon(wait_for, trace_id)
            await reached_step_2.wait()
            print(f"cancel({VICTIM!r}) ->", await flow.cancel(VICTIM))
            print(f"cancel({VICTIM!r}) again ->", await flow.cancel(VICTIM))
        print("live traces after the others finished:", flow.statistics().live_traces)
    for trace_id in trace_ids:
        print(f"{trace_id}: {outcomes[trace_id]}")
    print(f"node code saw: {seen}")
    print(f"tasks before: {tasks_before}, after stop: {len(asyncio.all_tasks())}")
    print("trace_cancel done")


if __name__ == "__main__":
    asyncio.run(main())
