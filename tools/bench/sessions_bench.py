"""penguiflow-sessions under load, each figure beside a raw-asyncio baseline of the same run.

Run ``uv run python tools/bench/sessions_bench.py`` (``--reps N``, ``--only a,b``, ``--quick``).
The scenarios of the sessions spec's §15:

* ``sessions_fanout``: one task emits 10 000 PROGRESS updates (yielding every 50) to 100
  subscribers of one session (no store); µs per update per subscriber, from the spawn until every
  subscriber has read every update. Baseline: the same loop ``put_nowait``-ing the same dicts
  into 100 ``asyncio.Queue``s read by 100 tasks.
* ``sessions_fanout_stalled``: the same with a 101st subscriber that never reads (its queue of
  500 fills and then drops); µs per update per reading subscriber, compared with
  ``sessions_fanout`` of the same repetition, and the emitter's own time per update (its clock
  stopped while it yields) compared with its time in ``sessions_fanout`` (it must never wait).
* ``sessions_1000x3``: one ``SessionManager``, 1 000 sessions × 3 background tasks of 10 PROGRESS
  each; µs per task from its spawn to its COMPLETE (all 3 000 in flight together). Baseline: 3 000
  asyncio tasks each appending 10 dicts to a list of its "session", awaited in one
  ``asyncio.gather``.
* ``sessions_memory``: traced memory (tracemalloc, after ``gc.collect()``) with those 1 000
  sessions open after their tasks completed, per session; then all dropped; five rounds, the level
  after each round beside round 1. Baseline per session: the same 45 update dicts in a list.

Every repetition runs in a fresh event loop, variants alternating which goes first; the table
prints medians. Results also go to ``tools/bench/results/sessions.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import statistics
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel

from penguiflow.sessions import (
    SessionLimits,
    SessionManager,
    StreamingSession,
    TaskRuntime,
    TaskType,
    UpdateType,
)

RESULTS = Path(__file__).parent / "results"
KIB = 1024
YIELD_EVERY = 50


# ------------------------------------------------------------------------------ fan-out
async def fanout_session(updates: int, readers: int, stalled: bool) -> tuple[float, float]:
    """(µs per update per reading subscriber, emitter µs per update)."""
    limits = SessionLimits(replay_buffer_size=updates + 100)
    emitter_s = [0.0]

    async def emit(runtime: TaskRuntime) -> None:
        # Only the emitter's own time: the clock stops while it yields to the readers.
        started = time.perf_counter()
        for i in range(updates):
            runtime.emit_update(UpdateType.PROGRESS, {"i": i})
            if i % YIELD_EVERY == YIELD_EVERY - 1:
                emitter_s[0] += time.perf_counter() - started
                await anyio.lowlevel.checkpoint()
                started = time.perf_counter()
        emitter_s[0] += time.perf_counter() - started

    async with StreamingSession("bench", limits=limits) as session:
        got = [0] * readers
        subs = [session.subscribe(update_types=["PROGRESS"]) for _ in range(readers)]
        stuck = session.subscribe(update_types=["PROGRESS"]) if stalled else None
        started = 0.0
        async with AsyncExitStack() as stack:
            for sub in [*subs, *([stuck] if stuck is not None else [])]:
                await stack.enter_async_context(sub)

            async def read(index: int) -> None:
                async for _ in subs[index]:
                    got[index] += 1
                    if got[index] == updates:
                        return

            async with anyio.create_task_group() as tg:
                for index in range(readers):
                    tg.start_soon(read, index)
                await anyio.lowlevel.checkpoint()
                started = time.perf_counter()
                await session.run_task(emit, task_type=TaskType.BACKGROUND)
            elapsed = time.perf_counter() - started
            assert stuck is None or stuck.dropped > 0
        assert all(g == updates for g in got), got
        assert all(sub.dropped == 0 for sub in subs)
    return elapsed / (updates * readers) * 1e6, emitter_s[0] / updates * 1e6


async def fanout_raw(updates: int, readers: int) -> float:
    queues = [asyncio.Queue[dict[str, int]]() for _ in range(readers)]
    got = [0] * readers

    async def read(index: int) -> None:
        queue = queues[index]
        while got[index] < updates:
            await queue.get()
            got[index] += 1

    tasks = [asyncio.create_task(read(i)) for i in range(readers)]
    await asyncio.sleep(0)
    started = time.perf_counter()

    async def emit() -> None:
        for i in range(updates):
            item = {"i": i}
            for queue in queues:
                queue.put_nowait(item)
            if i % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)

    await asyncio.create_task(emit())
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    return elapsed / (updates * readers) * 1e6


# ---------------------------------------------------------------------------- 1000 x 3
async def ten_progress(runtime: TaskRuntime) -> str:
    for i in range(10):
        runtime.emit_update(UpdateType.PROGRESS, {"i": i})
    return "done"


async def many_sessions(sessions: int) -> tuple[float, float]:
    """(µs per task spawn -> COMPLETE, µs per session opened)."""
    async with SessionManager(sweep_interval_s=None) as manager:
        started = time.perf_counter()
        opened = [await manager.get_or_create(f"s{i}") for i in range(sessions)]
        open_s = time.perf_counter() - started
        started = time.perf_counter()
        ids = [
            (s, await s.spawn_task(ten_progress, task_type=TaskType.BACKGROUND))
            for s in opened
            for _ in range(3)
        ]
        for session, tid in ids:
            await session.wait_task(tid)
        elapsed = time.perf_counter() - started
    return elapsed / len(ids) * 1e6, open_s / sessions * 1e6


async def many_raw(sessions: int) -> float:
    logs: list[list[dict[str, int]]] = [[] for _ in range(sessions)]

    async def task(log: list[dict[str, int]]) -> str:
        for i in range(10):
            log.append({"i": i})
        return "done"

    started = time.perf_counter()
    await asyncio.gather(*(task(log) for log in logs for _ in range(3)))
    return (time.perf_counter() - started) / (sessions * 3) * 1e6


# ------------------------------------------------------------------------------ memory
def traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


async def memory_rounds(sessions: int, rounds: int) -> dict[str, Any]:
    levels: list[int] = []
    per_session: list[float] = []
    async with SessionManager(sweep_interval_s=None) as manager:
        for _ in range(rounds):
            before = traced()
            opened = [await manager.get_or_create(f"s{i}") for i in range(sessions)]
            ids = [
                (s, await s.spawn_task(ten_progress, task_type=TaskType.BACKGROUND))
                for s in opened
                for _ in range(3)
            ]
            for session, tid in ids:
                await session.wait_task(tid)
            del ids
            held = traced() - before
            per_session.append(held / sessions / KIB)
            for i in range(sessions):
                await manager.drop(f"s{i}")
            del opened
            levels.append(traced())
    base = traced()
    logs = [
        [{"i": i, "task": t, "kind": "PROGRESS"} for t in range(3) for i in range(15)]
        for _ in range(sessions)
    ]
    raw = (traced() - base) / sessions / KIB
    del logs
    return {
        "kib_per_open_session": per_session,
        "levels_kib_vs_round1": [(lvl - levels[0]) / KIB for lvl in levels],
        "raw_kib_per_session": raw,
    }


# -------------------------------------------------------------------------------- main
def run[T](fn: Callable[[], Awaitable[T]]) -> T:
    gc.collect()  # the previous variant's garbage is not collected on this one's clock
    return anyio.run(fn)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default="")
    args = parser.parse_args()
    logging.getLogger("penguiflow").setLevel(logging.WARNING)
    reps = 2 if args.quick else args.reps
    updates = 1000 if args.quick else 10_000
    sessions = 100 if args.quick else 1000
    only = {s for s in args.only.split(",") if s}

    def wanted(name: str) -> bool:
        return not only or name in only

    results: dict[str, Any] = {"load_before": os.getloadavg()[0]}
    if wanted("sessions_fanout") or wanted("sessions_fanout_stalled"):
        ours: list[float] = []
        raw: list[float] = []
        stall: list[float] = []
        emit_free: list[float] = []
        emit_stalled: list[float] = []
        for rep in range(reps):
            order = [0, 1, 2] if rep % 2 == 0 else [2, 1, 0]
            for which in order:
                if which == 0:
                    per, emitter = run(lambda: fanout_session(updates, 100, False))
                    ours.append(per)
                    emit_free.append(emitter)
                elif which == 1:
                    raw.append(run(lambda: fanout_raw(updates, 100)))
                else:
                    per, emitter = run(lambda: fanout_session(updates, 99, True))
                    stall.append(per)
                    emit_stalled.append(emitter)
        m = statistics.median
        results["sessions_fanout"] = {"us": m(ours), "raw_us": m(raw), "ratio": m(ours) / m(raw)}
        results["sessions_fanout_stalled"] = {
            "us": m(stall),
            "vs_fanout": m(stall) / m(ours),
            "emitter_us": m(emit_stalled),
            "emitter_us_free": m(emit_free),
        }
        f: dict[str, float] = results["sessions_fanout"]
        s: dict[str, float] = results["sessions_fanout_stalled"]
        print(
            f"sessions_fanout: {f['us']:.3f} µs/update/subscriber vs raw {f['raw_us']:.3f} "
            f"-> {f['ratio']:.2f}x (target <= 1.5x)"
        )
        print(
            f"sessions_fanout_stalled: {s['us']:.3f} µs for the 99 readers -> "
            f"{s['vs_fanout']:.2f}x sessions_fanout (target <= 1.10x); emitter "
            f"{s['emitter_us']:.2f} µs/update vs {s['emitter_us_free']:.2f} with no stalled one"
        )
    if wanted("sessions_1000x3"):
        ours: list[float] = []
        raw: list[float] = []
        opens: list[float] = []
        for rep in range(reps):
            pair = [0, 1] if rep % 2 == 0 else [1, 0]
            for which in pair:
                if which == 0:
                    per, per_open = run(lambda: many_sessions(sessions))
                    ours.append(per)
                    opens.append(per_open)
                else:
                    raw.append(run(lambda: many_raw(sessions)))
        m = statistics.median
        results["sessions_1000x3"] = {
            "us_per_task": m(ours),
            "raw_us_per_task": m(raw),
            "ratio": m(ours) / m(raw),
            "us_per_session_open": m(opens),
        }
        r: dict[str, float] = results["sessions_1000x3"]
        print(
            f"sessions_1000x3: {r['us_per_task']:.1f} µs per task spawn->COMPLETE (target <= 250) "
            f"vs raw {r['raw_us_per_task']:.2f} -> {r['ratio']:.0f}x; "
            f"{r['us_per_session_open']:.1f} µs per session opened"
        )
    if wanted("sessions_memory"):
        tracemalloc.start()
        mem = run(lambda: memory_rounds(sessions, 5))
        tracemalloc.stop()
        results["sessions_memory"] = mem
        print(
            "sessions_memory: KiB per open session by round "
            + ", ".join(f"{v:.1f}" for v in mem["kib_per_open_session"])
            + f" (target <= 48) vs raw {mem['raw_kib_per_session']:.1f}; after each round vs "
            "round 1: "
            + ", ".join(f"{v:+.1f}" for v in mem["levels_kib_vs_round1"])
            + " KiB (target <= +1024)"
        )
    results["load_after"] = os.getloadavg()[0]
    print(f"load average {results['load_before']:.1f} -> {results['load_after']:.1f}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sessions.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
