"""Postgres and Redis stores: µs per sequential append, next to one raw single-row write.

Run ``uv run --group bench python tools/bench/store_appends.py`` with
``PENGUIFLOW_TEST_POSTGRES_URL`` and/or ``PENGUIFLOW_TEST_REDIS_URL`` set (``--ops N``,
``--reps N``). Each variant appends 200-byte values one at a time (each awaited):

- ``journal-shaped``: what a journal does, an idempotency key per append and a new stream every
  11 appends (one run of the 10-node chain);
- ``plain``: no idempotency key, one stream.

Next to them, in the same repetition: ``PostgresDurableStore.append`` against one autocommit
``INSERT`` through a plain asyncpg connection, and ``RedisDurableStore.append`` against one
``XADD`` through a redis-py client. Every repetition runs every variant (rotating which goes
first) with a fresh schema / prefix, and each figure is the median over the repetitions; the
1-minute load average is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from penguiflow.core import PostgresDurableStore, RedisDurableStore, Scope

VALUE = b"x" * 200
SCOPE = Scope("bench")
PER_STREAM = 11  # entries one journaled run of the 10-node chain writes

type Append = Callable[[int], Awaitable[object]]


async def timed(append: Append, ops: int) -> float:
    for i in range(20):  # warm up: connections, statement caches, scripts
        await append(-1 - i)
    start = time.perf_counter()
    for i in range(ops):
        await append(i)
    return (time.perf_counter() - start) / ops * 1e6


async def pg_insert(dsn: str, ops: int) -> float:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    table = f"bench_{uuid.uuid4().hex[:8]}"
    await conn.execute(f"CREATE TABLE {table} (seq bigserial PRIMARY KEY, value bytea)")
    try:
        sql = f"INSERT INTO {table} (value) VALUES ($1)"
        return await timed(lambda i: conn.execute(sql, VALUE), ops)
    finally:
        await conn.execute(f"DROP TABLE {table}")
        await conn.close()


def journal_shaped(store: Any) -> Append:
    def append(i: int) -> Awaitable[int]:
        return store.append(
            f"pf.journal/{i // PER_STREAM}", VALUE, scope=SCOPE, idempotency_key=f"step-{i}"
        )

    return append


def plain(store: Any) -> Append:
    return lambda i: store.append("log", VALUE, scope=SCOPE)


async def pg_store(dsn: str, ops: int, shape: Callable[[Any], Append]) -> float:
    import asyncpg

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    try:
        async with PostgresDurableStore.open(dsn, schema=schema) as store:
            return await timed(shape(store), ops)
    finally:
        conn = await asyncpg.connect(dsn)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()


async def redis_xadd(url: str, ops: int) -> float:
    from redis.asyncio import Redis

    client: Any = Redis.from_url(url)  # pyright: ignore[reportUnknownMemberType]
    stream = f"bench:{uuid.uuid4().hex[:8]}"
    try:
        return await timed(lambda i: client.xadd(stream, {"v": VALUE}), ops)
    finally:
        await client.delete(stream)
        await client.aclose()


async def redis_store(url: str, ops: int, shape: Callable[[Any], Append]) -> float:
    from redis.asyncio import Redis

    prefix = f"bench{uuid.uuid4().hex[:8]}"
    try:
        async with RedisDurableStore.open(url, prefix=prefix) as store:
            return await timed(shape(store), ops)
    finally:
        client: Any = Redis.from_url(url)  # pyright: ignore[reportUnknownMemberType]
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ops", type=int, default=1000, help="appends per figure")
    parser.add_argument("--reps", type=int, default=7, help="repetitions (median)")
    args = parser.parse_args()
    logging.getLogger("penguiflow.core").setLevel(logging.ERROR)  # appendonly warnings
    ops: int = args.ops
    dsn = os.environ.get("PENGUIFLOW_TEST_POSTGRES_URL")
    url = os.environ.get("PENGUIFLOW_TEST_REDIS_URL")
    variants: dict[str, Callable[[], Coroutine[Any, Any, float]]] = {}
    groups: list[tuple[str, str, str]] = []
    if dsn:
        variants["pg INSERT"] = lambda: pg_insert(dsn, ops)
        variants["pg store, journal-shaped"] = lambda: pg_store(dsn, ops, journal_shaped)
        variants["pg store, plain"] = lambda: pg_store(dsn, ops, plain)
        groups += [
            ("Postgres, journal-shaped", "pg store, journal-shaped", "pg INSERT"),
            ("Postgres, plain", "pg store, plain", "pg INSERT"),
        ]
    if url:
        variants["redis XADD"] = lambda: redis_xadd(url, ops)
        variants["redis store, journal-shaped"] = lambda: redis_store(url, ops, journal_shaped)
        variants["redis store, plain"] = lambda: redis_store(url, ops, plain)
        groups += [
            ("Redis, journal-shaped", "redis store, journal-shaped", "redis XADD"),
            ("Redis, plain", "redis store, plain", "redis XADD"),
        ]
    if not variants:
        raise SystemExit("set PENGUIFLOW_TEST_POSTGRES_URL and/or PENGUIFLOW_TEST_REDIS_URL")
    names = list(variants)
    figures: dict[str, list[float]] = {name: [] for name in names}
    loads: list[float] = []
    print(f"load average at start {' / '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for rep in range(args.reps):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for name in order:
            figures[name].append(asyncio.run(variants[name]()))
        loads.append(os.getloadavg()[0])
    print(f"{ops} sequential appends per figure, median of {args.reps} repetitions")
    print(f"median 1-minute load average over the repetitions: {statistics.median(loads):.2f}")
    print(f"{'':<28}{'store µs':>10}{'raw µs':>9}{'ratio':>8}")
    for label, store, raw in groups:
        s, r = statistics.median(figures[store]), statistics.median(figures[raw])
        print(f"{label:<28}{s:>10.1f}{r:>9.1f}{s / r:>7.2f}×")


if __name__ == "__main__":
    main()
