"""Distributed workers on Redis Streams: three worker processes, one killed, nothing lost.

Starts its own ``redis-server`` on a unix socket (when it is installed; otherwise it says how to
install it and exits 0), three worker processes, and a client that emits 20 orders. Once worker
``w0`` holds three orders in the slow ``ship`` step it is killed (SIGKILL); the other workers
take its orders over after ``claim_idle_s``, resume them from the journal (``charge`` is not run
again) and every order completes. Run: ``uv run python examples/redis_workers/main.py``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, cast

import anyio
import redis.asyncio as aioredis

from penguiflow.core import (
    Headers,
    Journal,
    Message,
    Node,
    RedisDurableStore,
    TraceEnded,
    create,
    current_step_id,
    idempotent,
)
from penguiflow.core.distributed import FlowClient, RedisStreamsBus, Worker

APP = "orders"
ORDERS = 20


def build_flow(store: RedisDurableStore, raw: Any, name: str) -> Any:
    """``charge -> ship``: a keyed payment (once per order, whoever runs it), then a slow step."""

    async def charge(msg: Message, ctx: object) -> Message:
        async def pay() -> int:  # the side effect: counted in Redis
            return int(await raw.incr(f"demo:charged:{msg.payload['order']}"))

        await idempotent(f"{msg.trace_id}:{current_step_id()}", pay)
        return msg

    async def ship(msg: Message, ctx: object) -> Message:
        await raw.sadd(f"demo:shipping:{name}", msg.payload["order"])
        await anyio.sleep(0.6)  # a slow call: w0 dies in here
        return msg.with_payload({**msg.payload, "shipped_by": name})

    charge_node, ship_node = Node(charge, name="charge"), Node(ship, name="ship")
    return create(charge_node.to(ship_node), ship_node.to(), journal=Journal(store))


async def serve(url: str, name: str) -> None:
    """One worker process: runs orders until SIGTERM (or until it is killed)."""
    raw: Any = cast(Any, aioredis).Redis.from_url(url, decode_responses=True)
    async with (
        RedisDurableStore.open(url, prefix="demo-journal") as store,
        RedisStreamsBus.open(url, app=APP, block_s=0.2) as bus,
    ):
        worker = Worker(
            build_flow(store, raw, name),
            bus=bus,
            consumer=name,
            max_inflight=3,
            claim_idle_s=1.0,  # a dead worker's orders are taken over after 1 s
        )
        async with worker.running():
            await raw.set(f"demo:ready:{name}", "1")
            with anyio.open_signal_receiver(signal.SIGTERM) as signals:
                async for _ in signals:
                    break
    await raw.aclose()


async def count(value: Awaitable[Any]) -> int:
    """An awaited Redis reply as an int."""
    return int(await value)


async def poll(read: Callable[[], Awaitable[int]], at_least: int) -> None:
    """Wait until ``read()`` reaches ``at_least`` (a plain poll of a Redis counter)."""
    while True:
        if await read() >= at_least:
            return
        await anyio.sleep(0.01)


async def client(url: str, workers: dict[str, subprocess.Popen[bytes]]) -> None:
    """Emit the orders, kill w0 mid-flight, print every outcome."""
    raw: Any = cast(Any, aioredis).Redis.from_url(url, decode_responses=True)
    async with RedisStreamsBus.open(url, app=APP, block_s=0.2) as bus:
        flows = FlowClient(bus)
        with anyio.fail_after(30):
            await poll(lambda: count(raw.exists(*(f"demo:ready:{name}" for name in workers))), 3)
        print(f"3 workers ready: {sorted(workers)}")
        ids: list[str] = []
        for n in range(ORDERS):
            order = f"order-{n:02d}"
            msg = Message(payload={"order": order}, headers=Headers(tenant="shop"))
            ids.append(await flows.emit(msg))
        print(f"emitted {ORDERS} orders")
        with anyio.fail_after(30):
            await poll(lambda: count(raw.scard("demo:shipping:w0")), 3)
        held = sorted(await raw.smembers("demo:shipping:w0"))
        os.kill(workers["w0"].pid, signal.SIGKILL)
        workers["w0"].wait()
        print(f"worker w0 killed while holding {len(held)} orders in ship: {', '.join(held)}")

        with anyio.fail_after(60):
            outcomes = [await flows.wait(trace_id) for trace_id in ids]
            results = [await flows.fetch(trace_id) for trace_id in ids]
            once = True
            for trace_id in ids:
                try:
                    await flows.fetch(trace_id)
                    once = False
                except TraceEnded:
                    pass
        for outcome, result in zip(outcomes, results, strict=True):
            order = result.payload["order"]
            print(
                f"{order}: {outcome.status} by {outcome.worker} "
                f"after {outcome.attempts} attempt{'s' if outcome.attempts > 1 else ''}"
            )
        statuses = Counter(o.status for o in outcomes)
        attempts = Counter(o.attempts for o in outcomes)
        charged = [await raw.get(f"demo:charged:order-{n:02d}") for n in range(ORDERS)]
        print(f"{statuses['completed']} of {ORDERS} orders completed")
        print(f"attempts: {dict(sorted(attempts.items()))}")
        taken = {
            r.payload["order"] for r, o in zip(results, outcomes, strict=True) if o.attempts > 1
        }
        print(f"w0's orders finished by the others: {taken == set(held)}")
        print(f"charged once per order: {charged == ['1'] * ORDERS}")
        print(f"each result fetched once: {once}")
    await raw.aclose()


def start_redis(work: str) -> str | None:
    """A redis-server on a unix socket in ``work`` (its URL), or None when not installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    sock = os.path.join(work, "redis.sock")
    subprocess.run(
        [binary, "--port", "0", "--unixsocket", sock, "--unixsocketperm", "700", "--save", "",
         "--appendonly", "no", "--daemonize", "yes", "--pidfile", os.path.join(work, "redis.pid"),
         "--dir", work, "--loglevel", "warning"],
        check=True,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(200):
        if os.path.exists(sock):
            break
        time.sleep(0.02)
    return f"unix://{sock}"


def main() -> None:
    """Run the demo (or, with ``--worker URL NAME``, one worker process)."""
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        anyio.run(serve, sys.argv[2], sys.argv[3])
        return
    with tempfile.TemporaryDirectory() as work:
        url = start_redis(work)
        if url is None:
            print(
                "redis-server is not installed: apt-get install redis-server "
                "(or brew install redis), then run this example again"
            )
            print("redis_workers done")
            return
        workers: dict[str, subprocess.Popen[bytes]] = {}
        try:
            for name in ("w0", "w1", "w2"):
                workers[name] = subprocess.Popen([sys.executable, __file__, "--worker", url, name])
            anyio.run(client, url, workers)
        finally:
            for proc in workers.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in workers.values():
                proc.wait(timeout=30)
            with open(os.path.join(work, "redis.pid")) as pid:
                os.kill(int(pid.read()), signal.SIGTERM)
    print("redis_workers done")


if __name__ == "__main__":
    main()
