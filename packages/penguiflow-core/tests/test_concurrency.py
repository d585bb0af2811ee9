"""Run-time concurrency: traces overlap at a node, one trace stays ordered, floes push back."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from penguiflow.core import Context, Headers, Message, Node, NodePolicy, create


def _msg(payload: Any, trace_id: str | None = None) -> Message:
    if trace_id is None:
        return Message(payload=payload, headers=Headers(tenant="t"))
    return Message(payload=payload, headers=Headers(tenant="t"), trace_id=trace_id)


class _Gauge:
    """Counts invocations that are inside a node right now and the highest count seen."""

    def __init__(self) -> None:
        self.inside = 0
        self.peak = 0

    def enter(self) -> None:
        self.inside += 1
        self.peak = max(self.peak, self.inside)

    def leave(self) -> None:
        self.inside -= 1


async def test_different_traces_run_concurrently_at_one_node() -> None:
    # Barrier: nobody leaves the node until 32 traces are inside it at once. The reference
    # implementation (one worker per node) deadlocks here, so the fail_after is what would trip.
    gauge = _Gauge()
    barrier = anyio.Event()

    async def wait_for_peers(msg: Message, ctx: Context) -> int:
        gauge.enter()
        if gauge.inside >= 32:
            barrier.set()
        await barrier.wait()
        gauge.leave()
        return msg.payload

    flow = create(Node(wait_for_peers).to())
    with anyio.fail_after(5):
        async with flow.running():
            for i in range(50):
                await flow.emit(_msg(i))
            results = sorted([await flow.fetch() for _ in range(50)])
    assert results == list(range(50))
    assert 32 <= gauge.peak <= NodePolicy().max_concurrency


async def test_max_concurrency_caps_traces_in_flight_at_a_node() -> None:
    gauge = _Gauge()
    four_inside = anyio.Event()
    release = anyio.Event()

    async def gated(msg: Message, ctx: Context) -> int:
        gauge.enter()
        if gauge.inside == 4:
            four_inside.set()
        await release.wait()
        gauge.leave()
        return msg.payload

    flow = create(Node(gated, policy=NodePolicy(max_concurrency=4)).to())
    with anyio.fail_after(5):
        async with flow.running():
            for i in range(12):
                await flow.emit(_msg(i))
            await four_inside.wait()
            await anyio.wait_all_tasks_blocked()
            assert gauge.inside == 4
            assert flow.statistics().queued == 8
            release.set()
            results = sorted([await flow.fetch() for _ in range(12)])
    assert results == list(range(12))
    assert gauge.peak == 4


async def test_messages_of_one_trace_run_one_at_a_time_in_arrival_order() -> None:
    per_trace_inside: dict[str, int] = {}
    overlaps: list[str] = []
    seen: dict[str, list[int]] = {}
    traces = [f"trace-{n}" for n in range(5)]

    async def record(msg: Message, ctx: Context) -> int:
        tid = msg.trace_id
        per_trace_inside[tid] = per_trace_inside.get(tid, 0) + 1
        if per_trace_inside[tid] > 1:
            overlaps.append(tid)
        seen.setdefault(tid, []).append(msg.payload)
        # Yield a varying number of times so that traces interleave inside the node.
        for _ in range(msg.payload % 4):
            await anyio.lowlevel.checkpoint()
        per_trace_inside[tid] -= 1
        return msg.payload

    flow = create(Node(record).to())
    with anyio.fail_after(5):
        async with flow.running():
            for i in range(10):
                for tid in traces:
                    await flow.emit(_msg(i, tid))
            fetched = {tid: [await flow.fetch(trace_id=tid) for _ in range(10)] for tid in traces}
    assert overlaps == []
    assert seen == {tid: list(range(10)) for tid in traces}
    assert fetched == {tid: list(range(10)) for tid in traces}


async def test_same_trace_stays_ordered_across_a_chain_while_traces_overlap() -> None:
    gauge = _Gauge()
    order: dict[str, list[int]] = {}

    async def first(msg: Message, ctx: Context) -> Message:
        gauge.enter()
        for _ in range((msg.payload * 7) % 5):
            await anyio.lowlevel.checkpoint()
        gauge.leave()
        return msg

    async def second(msg: Message, ctx: Context) -> Message:
        order.setdefault(msg.trace_id, []).append(msg.payload)
        return msg

    a, b = Node(first), Node(second)
    flow = create(a.to(b), b.to())
    with anyio.fail_after(5):
        async with flow.running():
            for i in range(8):
                for t in range(6):
                    await flow.emit(_msg(i, f"t{t}"))
            for _ in range(48):
                await flow.fetch()
    assert order == {f"t{t}": list(range(8)) for t in range(6)}
    assert gauge.peak > 1


async def test_bare_payloads_share_one_fifo_lane() -> None:
    gauge = _Gauge()

    async def shuffle_delay(value: int, ctx: Context) -> int:
        gauge.enter()
        for _ in range((value * 5) % 3):
            await anyio.lowlevel.checkpoint()
        gauge.leave()
        return value

    flow = create(Node(shuffle_delay).to())
    with anyio.fail_after(5):
        async with flow.running():
            for i in range(30):
                await flow.emit(i)
            results = [await flow.fetch() for _ in range(30)]
    assert results == list(range(30))
    assert gauge.peak == 1


async def test_emit_blocks_while_the_ingress_floe_is_full() -> None:
    release = anyio.Event()
    started = anyio.Event()

    async def gated(msg: Message, ctx: Context) -> int:
        started.set()
        await release.wait()
        return msg.payload

    flow = create(Node(gated, policy=NodePolicy(max_concurrency=1)), queue_maxsize=1)
    third_emitted = anyio.Event()
    results: list[int] = []

    async def emit_third() -> None:
        await flow.emit(_msg(3))
        third_emitted.set()

    with anyio.fail_after(5):
        async with flow.running(), anyio.create_task_group() as tg:
            await flow.emit(_msg(1))
            await started.wait()  # the only worker holds message 1
            await flow.emit(_msg(2))  # fills the floe (maxsize 1)
            tg.start_soon(emit_third)
            await anyio.wait_all_tasks_blocked()
            assert not third_emitted.is_set()
            with pytest.raises(asyncio.QueueFull):
                flow.emit_nowait(_msg(4))
            assert flow.statistics().queued == 1
            release.set()
            await third_emitted.wait()
            for _ in range(3):
                results.append(await flow.fetch())
    assert sorted(results) == [1, 2, 3]


async def test_emit_nowait_enqueues_when_there_is_room() -> None:
    async def echo(msg: Message, ctx: Context) -> int:
        return msg.payload

    flow = create(Node(echo).to(), queue_maxsize=2)
    with anyio.fail_after(5):
        async with flow.running():
            flow.emit_nowait(_msg(1))
            assert await flow.fetch() == 1


async def test_unfetched_trace_stalls_only_itself_at_rookery() -> None:
    async def fan_out(msg: Message, ctx: Context) -> None:
        count = msg.payload
        for i in range(count):
            await ctx.emit(msg.with_payload(i))

    flow = create(Node(fan_out).to(), queue_maxsize=2)
    slow, fast = "nobody-reads-me", "fast"
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(_msg(6, slow))
            await anyio.wait_all_tasks_blocked()
            stats = flow.statistics()
            assert stats.rookery_buffered == 2  # the stalled trace holds its own bound
            await flow.emit(_msg(3, fast))
            fast_items = [(await flow.fetch(trace_id=fast)).payload for _ in range(3)]
            assert fast_items == [0, 1, 2]
            slow_items = [(await flow.fetch(trace_id=slow)).payload for _ in range(6)]
            assert slow_items == list(range(6))
