"""Bounded concurrent map: fetch many documents at most N at a time, results in input order.

Run it with ``uv run python examples/map_concurrent/main.py``.
"""

from __future__ import annotations

import asyncio

from penguiflow.core import Context, Headers, Message, Node, create, map_concurrent


class InFlight:
    """Counts concurrent calls so the example can show the bound holds."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    async def fetch_doc(self, doc_id: int) -> str:
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            await asyncio.sleep(0.01 * (doc_id % 3))  # uneven latencies: finish order differs
            return f"doc-{doc_id}"
        finally:
            self.now -= 1


async def main() -> None:
    # 1. On its own: ten items, three at a time; the result list keeps the input order.
    counter = InFlight()
    docs = await map_concurrent(range(10), counter.fetch_doc, max_concurrency=3)
    print(f"standalone: {docs}")
    print(f"standalone: peak in flight = {counter.peak} (limit 3)")

    # 2. Inside a node: one message fans out to a bounded batch of calls and back.
    node_counter = InFlight()

    async def enrich(msg: Message, ctx: Context) -> Message:
        ids: list[int] = msg.payload
        return msg.with_payload(
            await map_concurrent(ids, node_counter.fetch_doc, max_concurrency=2)
        )

    enrich_node = Node(enrich)
    flow = create(enrich_node.to())
    async with flow.running():
        msg = Message(payload=[5, 4, 3, 2, 1], headers=Headers(tenant="demo"))
        await flow.emit(msg)
        result: Message = await flow.fetch(trace_id=msg.trace_id)
    print(f"in a node: {result.payload}, peak in flight = {node_counter.peak} (limit 2)")
    print("map_concurrent done")


if __name__ == "__main__":
    asyncio.run(main())
