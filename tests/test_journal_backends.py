"""The journal and idempotent() on real PostgreSQL and Redis servers, across two "processes".

Each side opens its own store (its own connections) on the same server, as two processes would.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any, cast

import anyio
import asyncpg
import pytest
import redis
from pydantic import BaseModel

from penguiflow.core import (
    DurableStore,
    Headers,
    Journal,
    Message,
    Node,
    PostgresDurableStore,
    RedisDurableStore,
    Scope,
    create,
    idempotent,
)

Opener = Callable[[], AbstractAsyncContextManager[DurableStore]]


@pytest.fixture(params=["postgres", "redis"])
def open_store(request: pytest.FixtureRequest) -> Iterator[Opener]:
    """Opens the same fresh storage on a real server each time it is called."""
    name = f"pfj_{uuid.uuid4().hex[:12]}"
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        yield lambda: PostgresDurableStore.open(url, schema=name)

        async def drop() -> None:
            conn = await asyncpg.connect(url)
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
            finally:
                await conn.close()

        asyncio.run(drop())
    else:
        url = request.getfixturevalue("redis_url")
        yield lambda: RedisDurableStore.open(url, prefix=name)
        client = cast(Any, redis).Redis.from_url(url)
        try:
            keys = list(client.scan_iter(match=f"{name}:*", count=1000))
            if keys:
                client.delete(*keys)
        finally:
            client.close()


class State(BaseModel):
    counter: int


def pipeline(runs: Counter[str], blocked: anyio.Event | None, journal: Journal) -> Any:
    def make(name: str) -> Node:
        async def step(msg: Message, ctx: Any) -> Message:
            runs[name] += 1
            if name == "c" and blocked is not None:
                blocked.set()
                await anyio.sleep_forever()  # the first process dies here
            return msg.with_payload(State(counter=msg.payload.counter + 1))

        return Node(step, name=name)

    a, b, c = make("a"), make("b"), make("c")
    return create(a.to(b), b.to(c), c.to(), journal=journal)


async def test_a_trace_stopped_in_one_process_resumes_in_another(open_store: Opener) -> None:
    runs: Counter[str] = Counter()
    msg = Message(payload=State(counter=0), headers=Headers(tenant="acme"))
    blocked = anyio.Event()
    async with open_store() as store:
        flow = pipeline(runs, blocked, Journal(store))
        async with flow.running():
            await flow.emit(msg)
            with anyio.fail_after(10):
                await blocked.wait()
    async with open_store() as store:
        journal = Journal(store)
        flow = pipeline(runs, None, journal)
        async with flow.running():
            await journal.resume(flow, msg.trace_id)
            with anyio.fail_after(10):
                result = await flow.fetch()
        steps = await journal.replay(msg.trace_id)
    assert runs == Counter(a=1, b=1, c=2)
    assert result.payload == State(counter=3)
    assert [s.node for s in steps] == [None, "a", "b", "c"]
    assert [s.message.payload["counter"] for s in steps] == [0, 1, 2, 3]


async def test_idempotent_runs_once_across_two_processes(open_store: Opener) -> None:
    calls = 0

    async def effect() -> str:
        nonlocal calls
        calls += 1
        await anyio.sleep(0.05)
        return "charged"

    results: list[str] = []
    async with open_store() as one, open_store() as two:

        async def call(store: DurableStore) -> None:
            results.append(await idempotent("charge:1", effect, store=store, scope=Scope("acme")))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for store in (one, two, one, two):
                    tg.start_soon(call, store)
    assert calls == 1
    assert results == ["charged"] * 4
