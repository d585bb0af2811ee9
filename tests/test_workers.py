"""Distributed workers as real processes on a real Redis server (see ``_worker_proc.py``).

Three worker processes, one SIGKILLed while it holds traces in a slow node; a cancellation from
this (client) process stopping a trace in a worker process; a live worker whose step outlasts
``claim_idle_s`` keeping its work.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, cast

import anyio
import pytest
import redis.asyncio as aioredis

from penguiflow.core import Headers, Message, TraceEnded
from penguiflow.core.distributed import FlowClient, RedisStreamsBus, TraceNotFound

_PROC = Path(__file__).with_name("_worker_proc.py")


class Workers:
    """Starts worker processes for one app; kills what is left at teardown."""

    def __init__(self, url: str, app: str, logs: Path) -> None:
        self.url = url
        self.app = app
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, consumer: str, **config: Any) -> subprocess.Popen[bytes]:
        args = json.dumps({"url": self.url, "app": self.app, "consumer": consumer, **config})
        with open(self.logs / f"{consumer}.log", "wb") as log:
            proc = subprocess.Popen([sys.executable, str(_PROC), args], stdout=log, stderr=log)
        self.procs[consumer] = proc
        return proc

    def log(self, consumer: str) -> str:
        return (self.logs / f"{consumer}.log").read_text(errors="replace")

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def app(redis_url: str) -> Iterator[str]:
    """A fresh app name; every key of it is deleted afterwards."""
    import redis

    name = f"wt{uuid.uuid4().hex[:10]}"
    yield name
    client: Any = cast(Any, redis).Redis.from_url(redis_url)
    try:
        for pattern in (f"pf:{{{name}}}:*", f"{name}:*", f"{name}-store:*"):
            keys = list(client.scan_iter(match=pattern, count=1000))
            if keys:
                client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def workers(redis_url: str, app: str, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(redis_url, app, tmp_path)
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[Any]:
    client: Any = cast(Any, aioredis).Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def client(redis_url: str, app: str) -> AsyncIterator[FlowClient]:
    async with RedisStreamsBus.open(redis_url, app=app, block_s=0.2) as bus:
        yield FlowClient(bus)


async def _until(condition: Callable[[], Awaitable[bool] | bool]) -> None:
    """Wait (polling) until ``condition()`` holds; bound it with ``anyio.fail_after``."""
    while True:
        value = condition()
        if value if isinstance(value, bool) else await value:
            return
        await anyio.sleep(0.01)


async def _until_ready(raw: Any, app: str, pool: Workers, names: list[str]) -> None:
    with anyio.fail_after(30):
        for name in names:
            proc = pool.procs[name]

            async def ready(name: str = name, proc: Any = proc) -> bool:
                assert proc.poll() is None, pool.log(name)
                return bool(await raw.exists(f"{app}:ready:{name}"))

            await _until(ready)


async def _at_least(count: Awaitable[int], n: int) -> bool:
    return await count >= n


async def _truthy(value: Awaitable[Any]) -> bool:
    return bool(await value)


def _msg(n: int, **extra: Any) -> Message:
    return Message(payload={"n": n, **extra}, headers=Headers(tenant="acme"))


async def _results_published(raw: Any, app: str, trace_id: str) -> int:
    entries = await raw.xrange(f"pf:{{{app}}}:o:{trace_id}")
    return sum(1 for _id, fields in entries if fields["kind"] == "result")


async def test_killed_worker_traces_complete_once_without_rerunning_finished_steps(
    workers: Workers, raw: Any, app: str, client: FlowClient
) -> None:
    names = ["w0", "w1", "w2"]
    for name in names:
        workers.start(name, slow_s=1.5, max_inflight=4)
    await _until_ready(raw, app, workers, names)
    ids = [await client.emit(_msg(i)) for i in range(24)]
    with anyio.fail_after(20):  # the victim holds a full load of traces in the slow node
        await _until(lambda: _at_least(raw.scard(f"{app}:slow:w0"), 4))
    held = set(await raw.smembers(f"{app}:slow:w0"))
    os.kill(workers.procs["w0"].pid, signal.SIGKILL)
    workers.procs["w0"].wait(timeout=10)

    with anyio.fail_after(60):
        outcomes = {t: await client.wait(t) for t in ids}
        results = {t: await client.fetch(t) for t in ids}
    assert {o.status for o in outcomes.values()} == {"completed"}
    assert [results[t].payload for t in ids] == [{"n": 2 * i} for i in range(24)]
    for trace_id in ids:  # each result reaches this client once
        with anyio.fail_after(5), pytest.raises(TraceEnded):
            await client.fetch(trace_id)
        assert await _results_published(raw, app, trace_id) == 1
        assert await raw.get(f"{app}:effects:{trace_id}") == "1"  # the keyed side effect: once
        assert await raw.get(f"{app}:runs:prepare:{trace_id}") == "1"  # finished: not re-run
    assert len(held) == 4
    for trace_id in held:  # the victim's traces: taken over, the unfinished step run again
        assert outcomes[trace_id].attempts == 2
        assert outcomes[trace_id].worker in ("w1", "w2")
        assert await raw.get(f"{app}:runs:slow:{trace_id}") == "2"
    others = set(ids) - held
    assert {outcomes[t].attempts for t in others} == {1}


async def test_cancel_from_a_client_process_stops_the_trace_in_its_worker_process(
    workers: Workers, raw: Any, app: str, client: FlowClient
) -> None:
    workers.start("w0", slow_s=60.0)
    await _until_ready(raw, app, workers, ["w0"])
    trace_id = await client.emit(_msg(1))
    other = await client.emit(_msg(2, sleep=0.1))
    with anyio.fail_after(20):
        await _until(lambda: _truthy(raw.sismember(f"{app}:slow:w0", trace_id)))
    assert await client.cancel(trace_id) is True
    assert await client.cancel(trace_id) is False  # True only the first time
    with anyio.fail_after(10):
        outcome = await client.wait(trace_id)
        assert (await client.wait(other)).status == "completed"
    assert outcome.status == "cancelled"
    assert outcome.worker == "w0"
    assert await raw.get(f"{app}:cancelled:{trace_id}") == "w0"  # the node itself was cancelled
    assert await client.cancel(other) is False  # ended traces are not cancelled
    with pytest.raises(TraceNotFound):
        await client.cancel("no-such-trace")


async def test_a_live_worker_with_a_step_longer_than_claim_idle_is_not_robbed(
    workers: Workers, raw: Any, app: str, client: FlowClient
) -> None:
    workers.start("w0", slow_s=0.1, claim_idle_s=1.0, heartbeat_s=0.25)
    await _until_ready(raw, app, workers, ["w0"])
    trace_id = await client.emit(_msg(3, sleep=4.0))  # 4 x claim_idle_s
    with anyio.fail_after(20):
        await _until(lambda: _truthy(raw.sismember(f"{app}:slow:w0", trace_id)))
    workers.start("w1", slow_s=0.1, claim_idle_s=1.0, heartbeat_s=0.25)  # hungry for work
    await _until_ready(raw, app, workers, ["w1"])
    with anyio.fail_after(20):
        outcome = await client.wait(trace_id)
    assert outcome.status == "completed"
    assert outcome.attempts == 1
    assert outcome.worker == "w0"
    assert await raw.get(f"{app}:runs:slow:{trace_id}") == "1"
    assert await raw.scard(f"{app}:slow:w1") == 0


async def test_stopped_worker_drains_then_reports_statistics(
    workers: Workers, raw: Any, app: str, client: FlowClient
) -> None:
    proc = workers.start("w0", slow_s=0.5, drain_timeout_s=10.0)
    await _until_ready(raw, app, workers, ["w0"])
    ids = [await client.emit(_msg(i)) for i in range(3)]
    with anyio.fail_after(20):
        await _until(lambda: _at_least(raw.scard(f"{app}:slow:w0"), 3))
    proc.send_signal(signal.SIGTERM)  # stop: the held traces finish first
    with anyio.fail_after(20):
        outcomes = [await client.wait(t) for t in ids]
        await _until(lambda: proc.poll() is not None)
    assert [o.status for o in outcomes] == ["completed"] * 3
    stats = json.loads(await raw.get(f"{app}:stats:w0"))
    assert stats == {
        "inflight": 0,
        "completed": 3,
        "failed": 0,
        "cancelled": 0,
        "reclaimed": 0,
        "lost": 0,
        "memo_hits": 0,
        "dead_lettered": 0,
    }
