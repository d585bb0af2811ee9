"""Benchmark scenarios: each pairs a penguiflow flow with a hand-written raw-asyncio equivalent.

The raw baseline is what a careful engineer writes without a framework: worker tasks joined by
bounded ``asyncio.Queue`` objects, running the same node bodies on the same ``Message`` objects.
Two baselines take the cheapest equivalent instead: the stream baseline passes plain slotted
dataclass chunks (no pydantic validation, no ``Message``), and the slow-node baseline runs one task
per request while penguiflow runs at its default settings.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from penguiflow.core import (
    Context,
    Headers,
    Message,
    Node,
    NodePolicy,
    create,
    join_k,
)

Variant = Callable[[], Coroutine[Any, Any, dict[str, float]]]
QUEUE = 64
HEADERS = Headers(tenant="bench")


@dataclass(frozen=True)
class Metric:
    """How to read one figure."""

    unit: str
    target: float | None = None
    """Maximum ratio penguiflow / baseline (None: informational)."""
    higher_is_better: bool = False


@dataclass(frozen=True)
class Scenario:
    """A named pair of variants and the metrics both report."""

    name: str
    metrics: dict[str, Metric]
    build: Callable[[bool], tuple[Variant, Variant]]
    label: str = ""
    """What the row measures and against what, for the legend under the table."""


def messages(n: int) -> list[Message]:
    """``n`` messages, each its own trace."""
    return [Message(payload=i, headers=HEADERS) for i in range(n)]


async def identity(msg: Message, ctx: Context) -> Message:
    """The cheapest node body: pass the message on."""
    return msg


async def pump(
    put: Callable[[Message], Awaitable[None]],
    get: Callable[[], Awaitable[Any]],
    batch: list[Message],
) -> float:
    """Feed ``batch`` from one task while taking as many results; returns the seconds taken."""
    started = time.perf_counter()

    async def feed() -> None:
        for msg in batch:
            await put(msg)

    feeder = asyncio.create_task(feed())
    for _ in batch:
        await get()
    elapsed = time.perf_counter() - started
    await feeder
    return elapsed


async def raw_pipeline(
    bodies: list[Callable[[Any], Awaitable[Any]]],
    workers_per_stage: int = 1,
) -> tuple[asyncio.Queue[Any], asyncio.Queue[Any], list[asyncio.Task[None]]]:
    """Stages joined by bounded queues; returns (ingress, egress, tasks)."""
    queues: list[asyncio.Queue[Any]] = [asyncio.Queue(QUEUE) for _ in range(len(bodies) + 1)]

    async def stage(
        body: Callable[[Any], Awaitable[Any]], inq: asyncio.Queue[Any], outq: Any
    ) -> None:
        while True:
            item = await inq.get()
            await outq.put(await body(item))

    tasks = [
        asyncio.create_task(stage(body, queues[i], queues[i + 1]))
        for i, body in enumerate(bodies)
        for _ in range(workers_per_stage)
    ]
    return queues[0], queues[-1], tasks


async def stop(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel and await the baseline's tasks."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def raw_identity(item: Any) -> Any:
    """The baseline's node body (same work as :func:`identity`)."""
    return item


# ----------------------------------------------------------------------------- 5-node chain
def chain(quick: bool) -> tuple[Variant, Variant]:
    """Throughput of a 5-node chain, many messages in flight."""
    n, hops = (2_000 if quick else 20_000), 5

    async def pf() -> dict[str, float]:
        nodes = [Node(identity, name=f"n{i}") for i in range(hops)]
        flow = create(*(a.to(b) for a, b in zip(nodes, nodes[1:], strict=False)), nodes[-1].to())
        batch = messages(n)
        async with flow.running():
            elapsed = await pump(flow.emit, flow.fetch, batch)
        return {"msgs_per_s": n / elapsed, "us_per_hop": elapsed / (n * hops) * 1e6}

    async def base() -> dict[str, float]:
        inq, outq, tasks = await raw_pipeline([raw_identity] * hops)
        batch = messages(n)
        elapsed = await pump(inq.put, outq.get, batch)
        await stop(tasks)
        return {"msgs_per_s": n / elapsed, "us_per_hop": elapsed / (n * hops) * 1e6}

    return pf, base


# ------------------------------------------------------------------- one message at a time
def latency(quick: bool) -> tuple[Variant, Variant]:
    """Round-trip latency of one message at a time through the 5-node chain."""
    n, hops = (300 if quick else 3_000), 5

    def summary(samples: list[float]) -> dict[str, float]:
        samples.sort()
        return {
            "p50_us_per_hop": statistics.median(samples) / hops * 1e6,
            "p99_us_per_hop": samples[int(len(samples) * 0.99) - 1] / hops * 1e6,
        }

    async def pf() -> dict[str, float]:
        nodes = [Node(identity, name=f"n{i}") for i in range(hops)]
        flow = create(*(a.to(b) for a, b in zip(nodes, nodes[1:], strict=False)), nodes[-1].to())
        samples: list[float] = []
        async with flow.running():
            for msg in messages(n):
                started = time.perf_counter()
                await flow.emit(msg)
                await flow.fetch(trace_id=msg.trace_id)
                samples.append(time.perf_counter() - started)
        return summary(samples)

    async def base() -> dict[str, float]:
        inq, outq, tasks = await raw_pipeline([raw_identity] * hops)
        samples: list[float] = []
        for msg in messages(n):
            started = time.perf_counter()
            await inq.put(msg)
            await outq.get()
            samples.append(time.perf_counter() - started)
        await stop(tasks)
        return summary(samples)

    return pf, base


# ------------------------------------------------------------- 100 traces through a slow node
def slow_node(quick: bool) -> tuple[Variant, Variant]:
    """100 traces through one node that awaits 10 ms: wall time (concurrency across traces).

    Penguiflow runs at its default settings (``Node(work)``, ``NodePolicy()``, default queue
    bound); the baseline is what a careful engineer writes for 100 concurrent requests: one task
    per request, all awaited together.
    """
    traces, delay = 100, 0.010

    async def work(msg: Message, ctx: Context) -> Message:
        await asyncio.sleep(delay)
        return msg

    async def raw_work(item: Any) -> Any:
        await asyncio.sleep(delay)
        return item

    async def pf() -> dict[str, float]:
        flow = create(Node(work).to())
        async with flow.running():
            batch = messages(traces)
            started = time.perf_counter()
            for msg in batch:
                await flow.emit(msg)
            for msg in batch:
                await flow.fetch(trace_id=msg.trace_id)
            elapsed = time.perf_counter() - started
        return {"wall_ms": elapsed * 1000}

    async def base() -> dict[str, float]:
        batch = messages(traces)
        started = time.perf_counter()
        tasks = [asyncio.create_task(raw_work(msg)) for msg in batch]
        for task in tasks:
            await task
        elapsed = time.perf_counter() - started
        return {"wall_ms": elapsed * 1000}

    return pf, base


# ------------------------------------------------------------------- events on vs events off
def events(quick: bool) -> tuple[Variant, Variant]:
    """The 5-node chain with one cheap sync event hook, against the same chain with none.

    Here the "baseline" column is penguiflow itself with events off: the ratio is the cost of
    observability, not of the framework.
    """
    n, hops = (2_000 if quick else 20_000), 5

    async def run(listen: bool) -> dict[str, float]:
        seen = [0]

        def hook(event: object) -> None:
            seen[0] += 1

        nodes = [Node(identity, name=f"n{i}") for i in range(hops)]
        flow = create(
            *(a.to(b) for a, b in zip(nodes, nodes[1:], strict=False)),
            nodes[-1].to(),
            on_event=hook if listen else None,
        )
        batch = messages(n)
        async with flow.running():
            elapsed = await pump(flow.emit, flow.fetch, batch)
        assert not listen or seen[0] >= n * hops * 2
        return {"us_per_hop": elapsed / (n * hops) * 1e6}

    async def on() -> dict[str, float]:
        return await run(True)

    async def off() -> dict[str, float]:
        return await run(False)

    return on, off


# ----------------------------------------------------------------------- fan-out 8 + join
def fanout(quick: bool) -> tuple[Variant, Variant]:
    """Each message fans out to 8 branches and is joined back: µs per message."""
    n, width = (1_000 if quick else 10_000), 8

    async def pf() -> dict[str, float]:
        split = Node(identity, name="split")
        branches = [Node(identity, name=f"b{i}") for i in range(width)]
        join = join_k("join", width)
        flow = create(split.to(*branches), *(b.to(join) for b in branches), join.to())
        batch = messages(n)
        async with flow.running():
            elapsed = await pump(flow.emit, flow.fetch, batch)
        return {"us_per_msg": elapsed / n * 1e6}

    async def base() -> dict[str, float]:
        inq: asyncio.Queue[Message] = asyncio.Queue(QUEUE)
        branch_qs: list[asyncio.Queue[Message]] = [asyncio.Queue(QUEUE) for _ in range(width)]
        join_q: asyncio.Queue[Message] = asyncio.Queue(QUEUE)
        outq: asyncio.Queue[Message] = asyncio.Queue(QUEUE)

        async def splitter() -> None:
            while True:
                msg = await raw_identity(await inq.get())
                for q in branch_qs:
                    await q.put(msg)

        async def branch(q: asyncio.Queue[Message]) -> None:
            while True:
                await join_q.put(await raw_identity(await q.get()))

        async def joiner() -> None:
            buckets: dict[str, list[Message]] = {}
            while True:
                msg = await join_q.get()
                bucket = buckets.setdefault(msg.trace_id, [])
                bucket.append(msg)
                if len(bucket) == width:
                    del buckets[msg.trace_id]
                    await outq.put(msg.model_copy(update={"payload": [m.payload for m in bucket]}))

        tasks = [
            asyncio.create_task(splitter()),
            asyncio.create_task(joiner()),
            *(asyncio.create_task(branch(q)) for q in branch_qs),
        ]
        batch = messages(n)
        elapsed = await pump(inq.put, outq.get, batch)
        await stop(tasks)
        return {"us_per_msg": elapsed / n * 1e6}

    return pf, base


# --------------------------------------------------------------------------- stream chunks
@dataclass(slots=True)
class RawChunk:
    """The stream baseline's chunk: a plain slotted dataclass, no validation."""

    stream_id: str
    seq: int
    text: str
    done: bool


def stream(quick: bool) -> tuple[Variant, Variant]:
    """One node streams 100 000 chunks to a trace-scoped reader: µs per chunk.

    The baseline is the cheapest equivalent: a producer task puts plain :class:`RawChunk` objects
    on a bounded queue and the consumer takes them until ``done``.
    """
    chunks = 10_000 if quick else 100_000
    tokens = [f"tok{i % 97}" for i in range(chunks)]

    async def pf() -> dict[str, float]:
        async def speak(msg: Message, ctx: Context) -> None:
            last = len(tokens) - 1
            for i, token in enumerate(tokens):
                await ctx.emit_chunk(parent=msg, text=token, done=i == last)

        flow = create(Node(speak).to())
        parent = Message(payload="go", headers=HEADERS)
        async with flow.running():
            started = time.perf_counter()
            await flow.emit(parent)
            while True:
                item = await flow.fetch(trace_id=parent.trace_id)
                if item.payload.done:
                    break
            elapsed = time.perf_counter() - started
        return {"us_per_chunk": elapsed / chunks * 1e6}

    async def base() -> dict[str, float]:
        queue: asyncio.Queue[RawChunk] = asyncio.Queue(QUEUE)
        parent = Message(payload="go", headers=HEADERS)

        async def speak() -> None:
            last = len(tokens) - 1
            stream_id = parent.trace_id
            for i, token in enumerate(tokens):
                await queue.put(RawChunk(stream_id, i, token, i == last))

        started = time.perf_counter()
        producer = asyncio.create_task(speak())
        while True:
            item = await queue.get()
            if item.done:
                break
        elapsed = time.perf_counter() - started
        await producer
        return {"us_per_chunk": elapsed / chunks * 1e6}

    return pf, base


# ------------------------------------------------------------- memory per in-flight message
def memory(quick: bool) -> tuple[Variant, Variant]:
    """10 000 messages (each its own trace) parked in front of a busy node: bytes per message."""
    n = 2_000 if quick else 10_000

    async def pf() -> dict[str, float]:
        gate = asyncio.Event()

        async def busy(msg: Message, ctx: Context) -> Message:
            await gate.wait()
            return msg

        flow = create(Node(busy, policy=NodePolicy(max_concurrency=1)).to(), queue_maxsize=0)
        async with flow.running():
            gc.collect()
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            for i in range(n):
                await flow.emit(Message(payload=i, headers=HEADERS))
            held = tracemalloc.get_traced_memory()[0] - before
            tracemalloc.stop()
            gate.set()
            for _ in range(n):
                await flow.fetch()
        return {"bytes_per_msg": held / n}

    async def base() -> dict[str, float]:
        gate = asyncio.Event()
        inq, outq, tasks = await raw_pipeline([raw_identity])
        queue: asyncio.Queue[Message] = asyncio.Queue()

        async def busy() -> None:
            await gate.wait()
            while True:
                await outq.put(await queue.get())

        worker = asyncio.create_task(busy())
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for i in range(n):
            await queue.put(Message(payload=i, headers=HEADERS))
        held = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        gate.set()
        for _ in range(n):
            await outq.get()
        await stop([*tasks, worker])
        del inq
        return {"bytes_per_msg": held / n}

    return pf, base


# --------------------------------------------------------------------------- cancel latency
def cancel(quick: bool) -> tuple[Variant, Variant]:
    """Cancel each of 100 live traces (each blocked in a node): µs per cancellation."""
    live = 100

    async def pf() -> dict[str, float]:
        entered = 0
        all_in = asyncio.Event()

        async def stuck(msg: Message, ctx: Context) -> None:
            nonlocal entered
            entered += 1
            if entered == live:
                all_in.set()
            await asyncio.sleep(3600)

        flow = create(Node(stuck, policy=NodePolicy(max_concurrency=live)).to())
        batch = messages(live)
        samples: list[float] = []
        async with flow.running():
            for msg in batch:
                await flow.emit(msg)
            await all_in.wait()
            for msg in batch:
                started = time.perf_counter()
                assert await flow.cancel(msg.trace_id)
                samples.append(time.perf_counter() - started)
        return {"p50_us": statistics.median(samples) * 1e6}

    async def base() -> dict[str, float]:
        entered = 0
        all_in = asyncio.Event()

        async def stuck() -> None:
            nonlocal entered
            entered += 1
            if entered == live:
                all_in.set()
            await asyncio.sleep(3600)

        tasks = [asyncio.create_task(stuck()) for _ in range(live)]
        await all_in.wait()
        samples: list[float] = []
        for task in tasks:
            started = time.perf_counter()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            samples.append(time.perf_counter() - started)
        return {"p50_us": statistics.median(samples) * 1e6}

    return pf, base


SCENARIOS = [
    Scenario(
        "chain_5",
        {
            "msgs_per_s": Metric("msg/s", target=3.0, higher_is_better=True),
            "us_per_hop": Metric("us", target=3.0),
        },
        chain,
        "5-node chain, 20 000 messages in flight (baseline: one worker per stage)",
    ),
    Scenario(
        "latency_5",
        {"p50_us_per_hop": Metric("us", target=2.0), "p99_us_per_hop": Metric("us")},
        latency,
        "one message at a time through 5 nodes (baseline: one worker per stage)",
    ),
    Scenario(
        "slow_node_100x10ms",
        {"wall_ms": Metric("ms", target=2.0)},
        slow_node,
        "100 traces x node awaiting 10 ms, at default settings (Node(work), NodePolicy()); "
        "baseline: one task per request",
    ),
    Scenario(
        "fanout_8_join",
        {"us_per_msg": Metric("us", target=4.0)},
        fanout,
        "fan-out to 8 branches + join_k (baseline: hand-written splitter, branches, joiner)",
    ),
    Scenario(
        "stream_chunks",
        {"us_per_chunk": Metric("us", target=2.0)},
        stream,
        "100 000 stream chunks, ctx.emit_chunk to a trace-scoped reader; baseline: producer "
        "task, bounded queue of slotted-dataclass chunks",
    ),
    Scenario(
        "inflight_memory",
        {"bytes_per_msg": Metric("B", target=2.0)},
        memory,
        "10 000 messages parked before a busy node (baseline: Messages in an unbounded queue)",
    ),
    Scenario(
        "cancel_100_live",
        {"p50_us": Metric("us")},
        cancel,
        "cancel one of 100 live traces (baseline: task.cancel() and await)",
    ),
    Scenario(
        "events_on_vs_off",
        {"us_per_hop": Metric("us", target=1.25)},
        events,
        "5-node chain, one cheap sync event hook vs none (baseline: penguiflow, events off)",
    ),
]
