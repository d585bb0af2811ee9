"""A worker process for tests/test_workers*.py: ``python _worker_proc.py '<json config>'``.

The flow is ``prepare -> slow``. ``prepare`` counts its runs and performs a keyed side effect
through ``idempotent()`` (journal and records in Redis); ``slow`` notes that this worker holds the
trace, sleeps ``slow_s`` (a payload ``{"sleep": s}`` overrides it), notes a cancellation when it
is cancelled, and doubles the payload's ``n``. Counters live in plain Redis keys under
``{app}:`` so that the test process reads them. The worker sets ``{app}:ready:{consumer}`` once
it runs, and exits when it receives SIGTERM (draining) or is killed.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import sys
from typing import Any, cast

import anyio
import redis.asyncio as aioredis

from penguiflow.core import (
    Journal,
    Message,
    Node,
    RedisDurableStore,
    create,
    current_step_id,
    idempotent,
)
from penguiflow.core.distributed import RedisStreamsBus, Worker


async def main(config: dict[str, Any]) -> None:
    url: str = config["url"]
    app: str = config["app"]
    consumer: str = config["consumer"]
    slow_s: float = float(config.get("slow_s", 1.0))
    raw: Any = cast(Any, aioredis).Redis.from_url(url)

    async def prepare(msg: Message, ctx: object) -> Message:
        await raw.incr(f"{app}:runs:prepare:{msg.trace_id}")

        async def charge() -> int:
            return int(await raw.incr(f"{app}:effects:{msg.trace_id}"))

        await idempotent(f"{msg.trace_id}:{current_step_id()}", charge)
        return msg

    async def slow(msg: Message, ctx: object) -> Message:
        await raw.incr(f"{app}:runs:slow:{msg.trace_id}")
        await raw.sadd(f"{app}:slow:{consumer}", msg.trace_id)
        payload: dict[str, Any] = dict(msg.payload)
        try:
            await anyio.sleep(float(payload.get("sleep", slow_s)))
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await raw.set(f"{app}:cancelled:{msg.trace_id}", consumer)
            raise
        return msg.with_payload({"n": int(payload["n"]) * 2})

    prepare_node = Node(prepare, name="prepare")
    slow_node = Node(slow, name="slow")
    async with (
        RedisDurableStore.open(url, prefix=f"{app}-store") as store,
        RedisStreamsBus.open(url, app=app, block_s=0.2) as bus,
    ):
        flow = create(prepare_node.to(slow_node), slow_node.to(), journal=Journal(store))
        worker = Worker(
            flow,
            bus=bus,
            consumer=consumer,
            max_inflight=int(config.get("max_inflight", 4)),
            claim_idle_s=float(config.get("claim_idle_s", 1.0)),
            heartbeat_s=float(config.get("heartbeat_s", 0.25)),
            drain_timeout_s=float(config.get("drain_timeout_s", 5.0)),
        )
        async with worker.running():
            await raw.set(f"{app}:ready:{consumer}", "1")
            with anyio.open_signal_receiver(signal.SIGTERM) as signals:
                async for _ in signals:
                    break
        stats = worker.statistics()
        await raw.set(f"{app}:stats:{consumer}", json.dumps(dataclasses.asdict(stats)))
    await raw.aclose()


if __name__ == "__main__":
    anyio.run(main, json.loads(sys.argv[1]))
