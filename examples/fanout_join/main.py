"""Fan-out and join: one message goes to three branches; ``join_k`` waits for all three.

Run it with ``uv run python examples/fanout_join/main.py``.
"""

from __future__ import annotations

import asyncio

from penguiflow.core import Context, Headers, Message, Node, create, join_k


async def split(msg: Message, ctx: Context) -> Message:
    """Every successor of a node gets the message (each its own copy of ``meta``)."""
    return msg.with_meta(split_at="split")


def branch(name: str, delay_s: float) -> Node:
    async def work(msg: Message, ctx: Context) -> Message:
        await asyncio.sleep(delay_s)  # staggered so the arrival order at the join is stable
        out = msg.with_payload(f"{name}({msg.payload})")
        # Each branch writes its own key plus a shared one: the last arrival wins the shared key.
        return out.with_meta(**{f"{name}_ms": int(delay_s * 1000), "last_branch": name})

    return Node(work, name=name)


async def summarize(msg: Message, ctx: Context) -> Message:
    parts: list[str] = msg.payload  # join_k's payload: the branches' payloads in arrival order
    return msg.with_payload(" + ".join(parts))


async def main() -> None:
    split_node, summarize_node = Node(split), Node(summarize)
    fast, medium, slow = branch("fast", 0.0), branch("medium", 0.03), branch("slow", 0.06)
    join = join_k("join", 3)
    flow = create(
        split_node.to(fast, medium, slow),
        fast.to(join),
        medium.to(join),
        slow.to(join),
        join.to(summarize_node),
        summarize_node.to(),
    )
    async with flow.running():
        # Two traces in flight at once: join_k keeps one bucket per trace.
        messages = [
            Message(payload=q, headers=Headers(tenant="demo"), meta={"request": q})
            for q in ("q1", "q2")
        ]
        for msg in messages:
            await flow.emit(msg)
        for msg in messages:
            result: Message = await flow.fetch(trace_id=msg.trace_id)
            print(f"{msg.payload}: {result.payload}")
            print(f"    merged meta: {result.meta}")
    stats = flow.statistics()
    print(f"fanout_join done: live_traces={stats.live_traces} queued={stats.queued}")


if __name__ == "__main__":
    asyncio.run(main())
