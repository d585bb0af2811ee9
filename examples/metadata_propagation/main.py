"""Metadata: ``meta`` travels with a message through fan-out, ``join_k`` and a subflow.

Run it with ``uv run python examples/metadata_propagation/main.py``.

The merge rule: at a join, the branches' ``meta`` dicts are merged in arrival order (last write
wins per key) into a copy of the first arrival's envelope; when a subflow returns, its final
``meta`` is merged the same way over the caller's.
"""

from __future__ import annotations

import asyncio

from penguiflow.core import (
    Context,
    Headers,
    Message,
    Node,
    PenguiFlow,
    calls_playbooks,
    create,
    join_k,
    merge_meta,
)


async def tag(msg: Message, ctx: Context) -> Message:
    """with_meta returns a copy; the message the caller emitted is left unchanged."""
    return msg.with_meta(stage="tagged", cost=0)


def branch(name: str, delay_s: float, cost: int) -> Node:
    async def work(msg: Message, ctx: Context) -> Message:
        await asyncio.sleep(delay_s)  # staggered so the arrival order at the join is stable
        return msg.with_meta(**{f"{name}_cost": cost, "stage": f"branch {name}"})

    return Node(work, name=name)


async def total(msg: Message, ctx: Context) -> Message:
    """Inside the subflow: sums the branch costs and overrides ``stage``."""
    cost = sum(v for k, v in msg.meta.items() if k.endswith("_cost"))
    return msg.with_meta(cost=cost, stage="subflow total", subflow="billing")


def build_billing() -> PenguiFlow:
    total_node = Node(total)
    return create(total_node.to())


@calls_playbooks("billing")
async def bill(msg: Message, ctx: Context) -> Message:
    print(f"meta after the join (pricey arrived last): {msg.meta}")
    await ctx.call_playbook(build_billing, msg)  # merges the subflow's final meta into msg.meta
    return msg


async def main() -> None:
    tag_node, bill_node = Node(tag), Node(bill)
    cheap, pricey = branch("cheap", 0.0, 2), branch("pricey", 0.03, 40)
    join = join_k("join", 2)
    flow = create(
        tag_node.to(cheap, pricey),
        cheap.to(join),
        pricey.to(join),
        join.to(bill_node),
        bill_node.to(),
    )
    original = Message(payload="order-17", headers=Headers(tenant="shop"), meta={"user": "ada"})
    async with flow.running():
        await flow.emit(original)
        result: Message = await flow.fetch(trace_id=original.trace_id)
    print(f"emitted meta (unchanged): {original.meta}")
    print(f"final payload: {result.payload}")
    for key, value in sorted(result.meta.items()):
        print(f"final meta: {key} = {value!r}")
    print(f"merge_meta rule: {merge_meta({'a': 1, 'b': 1}, {'b': 2}, {'c': 3})}")
    print("metadata_propagation done")


if __name__ == "__main__":
    asyncio.run(main())
