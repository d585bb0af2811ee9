"""SQLiteDurableStore: µs per committed 120-byte append, next to plain sqlite3 doing the same.

Run ``uv run python tools/bench/sqlite_store.py`` (``--ops N``, ``--reps N``). For NORMAL and
FULL: the store's appends one at a time (each awaited) and 64 concurrent callers, next to a plain
``sqlite3`` connection (WAL, same pragma) inserting the same rows inline in autocommit, one
commit each — the cost on the event loop a store without a thread would have. Each figure is the
median of ``--reps`` batches; every batch gets a fresh file. The load average is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from penguiflow.core import Scope, SQLiteDurableStore

VALUE = b"x" * 120
SCOPE = Scope("bench")


def inline(path: Path, synchronous: str, ops: int) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("CREATE TABLE log (seq INTEGER PRIMARY KEY, value BLOB NOT NULL)")
    start = time.perf_counter()
    for _ in range(ops):
        conn.execute("INSERT INTO log (value) VALUES (?)", (VALUE,))
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed / ops * 1e6


async def store_run(path: Path, synchronous: str, ops: int, concurrency: int) -> float:
    sync = "FULL" if synchronous == "FULL" else "NORMAL"
    async with SQLiteDurableStore.open(str(path), synchronous=sync) as store:
        await store.append("warm", VALUE, scope=SCOPE)
        per_worker = ops // concurrency

        async def worker(i: int) -> None:
            stream = f"s{i}"
            for _ in range(per_worker):
                await store.append(stream, VALUE, scope=SCOPE)

        start = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - start
    return elapsed / (per_worker * concurrency) * 1e6


def median(reps: int, run: Callable[[Path], float]) -> float:
    figures: list[float] = []
    for _ in range(reps):
        with tempfile.TemporaryDirectory() as tmp:
            figures.append(run(Path(tmp) / "bench.db"))
    return statistics.median(figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ops", type=int, default=1280, help="appends per batch")
    parser.add_argument("--reps", type=int, default=5, help="batches per figure (median)")
    args = parser.parse_args()
    ops, reps = args.ops, args.reps

    def on_store(sync: str, concurrency: int) -> Callable[[Path], float]:
        def run(path: Path) -> float:
            return asyncio.run(store_run(path, sync, ops, concurrency))

        return run

    print(f"load average {os.getloadavg()[0]:.2f}; {ops} appends per batch, median of {reps}")
    print(
        f"{'synchronous':<12}{'inline sqlite3':>16}{'store seq':>12}{'store 64':>12}{'64/seq':>9}"
    )
    for sync in ("NORMAL", "FULL"):
        base = median(reps, lambda p, s=sync: inline(p, s, ops))
        seq = median(reps, on_store(sync, 1))
        par = median(reps, on_store(sync, 64))
        print(f"{sync:<12}{base:>14.1f}µs{seq:>10.1f}µs{par:>10.1f}µs{par / seq:>9.2f}")


if __name__ == "__main__":
    main()
