"""Benchmark scenarios: each pairs a penguiflow flow with a hand-written raw-asyncio equivalent.

The raw baseline is what a careful engineer writes without a framework: worker tasks joined by
bounded ``asyncio.Queue`` objects, running the same node bodies on the same ``Message`` objects.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from penguiflow.core import Context, Headers, Message, Node, NodePolicy, create

Variant = Callable[[], Awaitable[dict[str, float]]]
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


def messages(n: int) -> list[Message]:
    """``n`` messages, each its own trace."""
    return [Message(payload=i, headers=HEADERS) for i in range(n)]


async def identity(msg: Message, ctx: Context) -> Message:
    """The cheapest node body: pass the message on."""
    return msg


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
            started = time.perf_counter()

            async def feed() -> None:
                for msg in batch:
                    await flow.emit(msg)

            feeder = asyncio.create_task(feed())
            for _ in range(n):
                await flow.fetch()
            elapsed = time.perf_counter() - started
            await feeder
        return {"msgs_per_s": n / elapsed, "us_per_hop": elapsed / (n * hops) * 1e6}

    async def base() -> dict[str, float]:
        inq, outq, tasks = await raw_pipeline([raw_identity] * hops)
        batch = messages(n)
        started = time.perf_counter()

        async def feed() -> None:
            for msg in batch:
                await inq.put(msg)

        feeder = asyncio.create_task(feed())
        for _ in range(n):
            await outq.get()
        elapsed = time.perf_counter() - started
        await feeder
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
    """100 traces through one node that awaits 10 ms: wall time (concurrency across traces)."""
    traces, delay, width = 100, 0.010, 128

    async def work(msg: Message, ctx: Context) -> Message:
        await asyncio.sleep(delay)
        return msg

    async def raw_work(item: Any) -> Any:
        await asyncio.sleep(delay)
        return item

    async def pf() -> dict[str, float]:
        node = Node(work, policy=NodePolicy(max_concurrency=width))
        flow = create(node.to(), queue_maxsize=traces)
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
        inq, outq, tasks = await raw_pipeline([raw_work], workers_per_stage=width)
        batch = messages(traces)
        started = time.perf_counter()
        for msg in batch:
            await inq.put(msg)
        for _ in batch:
            await outq.get()
        elapsed = time.perf_counter() - started
        await stop(tasks)
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
            started = time.perf_counter()

            async def feed() -> None:
                for msg in batch:
                    await flow.emit(msg)

            feeder = asyncio.create_task(feed())
            for _ in range(n):
                await flow.fetch()
            elapsed = time.perf_counter() - started
            await feeder
        assert not listen or seen[0] >= n * hops * 2
        return {"us_per_hop": elapsed / (n * hops) * 1e6}

    async def on() -> dict[str, float]:
        return await run(True)

    async def off() -> dict[str, float]:
        return await run(False)

    return on, off


SCENARIOS = [
    Scenario(
        "chain_5",
        {
            "msgs_per_s": Metric("msg/s", target=3.0, higher_is_better=True),
            "us_per_hop": Metric("us", target=3.0),
        },
        chain,
    ),
    Scenario(
        "latency_5",
        {"p50_us_per_hop": Metric("us", target=2.0), "p99_us_per_hop": Metric("us")},
        latency,
    ),
    Scenario("slow_node_100x10ms", {"wall_ms": Metric("ms", target=2.0)}, slow_node),
    Scenario("events_on_vs_off", {"us_per_hop": Metric("us", target=1.25)}, events),
]
