"""Durable emit rate: updates per second on one session with a SQLite store on a file.

Run ``uv run python tools/bench/sessions_durable_emit.py`` (``--updates N``, ``--reps N``).

In each repetition, on fresh files in a temporary directory (``synchronous="NORMAL"``):

- **baseline**: the store's own sequential ``append`` rate — ``SQLiteDurableStore.append`` of
  the stored JSON of N ``PROGRESS`` updates (the same bytes a session writes), each awaited, each
  with an idempotency key, to one stream;
- **session**: one task of a ``StreamingSession(store=…)`` emits N ``PROGRESS`` updates (the
  emitter never waits; it yields every 100); the time runs from the spawn until the task's
  terminal update is stored (``wait_task``), and every update counts (N plus PENDING, RUNNING,
  RESULT, COMPLETE);
- **session + subscriber**: the same with one subscriber reading every update as it is stored.

The variants rotate which goes first; each figure is the median over the repetitions,
printed with the 1-minute load average. Target (sessions.md §15): session ≥ 0.8× baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import anyio

from penguiflow.core import Scope, SQLiteDurableStore
from penguiflow.sessions import StateUpdate, StreamingSession, TaskRuntime, UpdateType


async def baseline(path: Path, n: int) -> float:
    values = [
        StateUpdate(
            session_id="bench",
            seq=i + 1,
            update_type=UpdateType.PROGRESS,
            task_id="t",
            content={"i": i},
        )
        .model_dump_json()
        .encode()
        for i in range(n)
    ]
    scope = Scope("default", session="bench")
    async with SQLiteDurableStore.open(path) as store:
        await store.append("warmup", b"x", scope=scope)
        start = time.perf_counter()
        for i, value in enumerate(values):
            await store.append(
                "sessions.updates/bench", value, scope=scope, idempotency_key=f"u{i}"
            )
        elapsed = time.perf_counter() - start
    return n / elapsed


async def session_rate(path: Path, n: int, *, subscriber: bool) -> float:
    async def emits(runtime: TaskRuntime) -> str:
        for i in range(n):
            runtime.emit_update(UpdateType.PROGRESS, {"i": i})
            if i % 100 == 99:
                await anyio.lowlevel.checkpoint()
        return "done"

    published, elapsed = 0, float("nan")
    async with SQLiteDurableStore.open(path) as store:
        await store.append("warmup", b"x", scope=Scope("default"))
        async with StreamingSession("bench", store=store) as session:
            async with session.subscribe() as sub, anyio.create_task_group() as tg:
                if subscriber:

                    async def read() -> None:
                        async for _ in sub:
                            pass

                    tg.start_soon(read)
                start = time.perf_counter()
                tid = await session.spawn_task(emits)
                await session.wait_task(tid)
                elapsed = time.perf_counter() - start
                published = session.statistics().updates_published
                tg.cancel_scope.cancel()
    assert published == n + 4, published
    return (n + 4) / elapsed


async def main(n: int, reps: int) -> None:
    variants = {
        "base": baseline,
        "session": partial(session_rate, subscriber=False),
        "session+sub": partial(session_rate, subscriber=True),
    }
    rates: dict[str, list[float]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(reps):
            names = list(variants)
            names = names[rep % len(names) :] + names[: rep % len(names)]  # rotate who goes first
            for name in names:
                rates[name].append(await variants[name](Path(tmp) / f"{name}-{rep}.db", n))
    median = {name: statistics.median(values) for name, values in rates.items()}
    b = median["base"]
    load = os.getloadavg()[0]
    print(f"updates per repetition: {n}, repetitions: {reps}, load average: {load:.2f}")
    print(f"store sequential append          : {b:8.0f} /s ({1e6 / b:6.1f} µs each)")
    for name, label in (
        ("session", "session durable emit"),
        ("session+sub", "  … with one subscriber"),
    ):
        s = median[name]
        verdict = "✓" if s / b >= 0.8 else "✗"
        print(
            f"{label:<33}: {s:8.0f} /s ({1e6 / s:6.1f} µs each)  "
            f"{s / b:.2f}× the store (target ≥ 0.8× {verdict})"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--updates", type=int, default=2000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.updates, args.reps))
