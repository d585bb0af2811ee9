"""Durable state: the journal's cost per step and its write amplification, next to LangGraph.

Run ``uv run --group bench python tools/bench/persistence.py`` (``--runs N`` per batch,
``--reps N``, ``--quick``). The scenario is ``shared/bench/checkpoint_overhead.py``'s: a 10-node
chain whose state is a counter and a ~25 KB list (100 dicts with 200-character strings; 23.7 KB
as compact JSON) that the nodes never touch; each node increments the counter. Runs go one at a
time. Each figure: 10 warm-up runs, then the median of 5 timed batches. Every variant is measured
once per repetition, the variants interleaved (the order rotates), and the table shows the median
of the repetitions with the load average taken at each measurement.

In one run: penguiflow without a journal and with ``Journal(SQLiteDurableStore)`` sync at
``synchronous`` NORMAL and FULL; LangGraph without a checkpointer and with ``AsyncSqliteSaver``
(``durability="sync"``) at its default and with ``PRAGMA synchronous=NORMAL`` on its connection;
Postgres and Redis journals when ``PENGUIFLOW_TEST_POSTGRES_URL`` / ``PENGUIFLOW_TEST_REDIS_URL``
are set, next to one single-row autocommit ``INSERT`` and one ``XADD`` measured the same way.

* per persisted step = (run - the same framework's run without persistence) / 10;
* bytes per run = growth of the database + WAL files (each after ``PRAGMA
  wal_checkpoint(TRUNCATE)``) over the timed runs, divided by their number;
* changed bytes = compact JSON of the initial state + the compact JSON of each step's changed
  fields (``{"counter": n}``), the same for both frameworks; write amplification = bytes per run /
  changed bytes.

The group-commit figure (64 concurrent appends at FULL vs sequential ones) comes from
``sqlite_store.py``'s measurement. Results are also written as JSON to ``tools/bench/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

sys.path.insert(0, str(Path(__file__).parent))

import sqlite_store  # noqa: E402

from penguiflow.core import (  # noqa: E402
    Context,
    Headers,
    Journal,
    Message,
    Node,
    PenguiFlow,
    SQLiteDurableStore,
    create,
)

RESULTS = Path(__file__).parent / "results"
N = 10
WARMUP = 10
BATCHES = 5
BLOB: list[dict[str, Any]] = [{"role": "user", "content": "x" * 200, "i": i} for i in range(100)]
HEADERS = Headers(tenant="bench")


def compact(value: Any) -> int:
    """Length of ``value``'s compact JSON."""
    return len(json.dumps(value, separators=(",", ":")).encode())


CHANGED_BYTES = compact({"counter": 0, "blob": BLOB}) + sum(
    compact({"counter": i}) for i in range(1, N + 1)
)
"""What a run changes: the initial state, then one counter per step."""


# ------------------------------------------------------------------------------ the scenario
class State(BaseModel):
    """The chain's state: the counter the nodes bump and the list they never touch."""

    counter: int
    blob: list[dict[str, Any]]


STATE0 = State(counter=0, blob=BLOB)


async def bump(msg: Message, ctx: Context) -> Message:
    """One node: the counter + 1, the list untouched."""
    state: State = msg.payload
    return msg.with_payload(state.model_copy(update={"counter": state.counter + 1}))


def chain(journal: Journal | None) -> PenguiFlow:
    """The 10-node chain, journaled or not."""
    nodes = [Node(bump, name=f"n{i}") for i in range(N)]
    return create(
        *(a.to(b) for a, b in zip(nodes, nodes[1:], strict=False)), nodes[-1].to(), journal=journal
    )


@dataclass
class Setup:
    """A variant ready to run: one run of the chain, and how big its files are."""

    run: Callable[[], Awaitable[Any]]
    files: Path | None = None
    """The SQLite database whose growth is measured (None: not a file store)."""


Factory = Callable[[Path], AbstractAsyncContextManager[Setup]]


def pf_variant(open_store: Callable[[Path], AbstractAsyncContextManager[Any]] | None) -> Factory:
    """Penguiflow's chain, with a sync journal on the store ``open_store`` gives (None: none)."""

    @asynccontextmanager
    async def factory(tmp: Path) -> AsyncIterator[Setup]:
        async with _maybe(open_store, tmp) as store:
            flow = chain(None if store is None else Journal(store, durability="sync"))

            async def run() -> None:
                msg = Message(payload=STATE0, headers=HEADERS)
                await flow.emit(msg)
                result = await flow.fetch(trace_id=msg.trace_id)
                assert result.payload.counter == N

            async with flow.running():
                path = tmp / "pf.db"
                yield Setup(run, path if path.exists() else None)

    return factory


@asynccontextmanager
async def _maybe(
    open_store: Callable[[Path], AbstractAsyncContextManager[Any]] | None, tmp: Path
) -> AsyncIterator[Any]:
    if open_store is None:
        yield None
        return
    async with open_store(tmp) as store:
        yield store


def sqlite_journal(synchronous: Literal["NORMAL", "FULL"]) -> Factory:
    """Penguiflow with ``Journal(SQLiteDurableStore)`` at ``synchronous``."""
    return pf_variant(lambda tmp: SQLiteDurableStore.open(tmp / "pf.db", synchronous=synchronous))


def postgres_journal(dsn: str) -> Factory:
    """Penguiflow with a journal on PostgreSQL (a fresh schema)."""
    from penguiflow.core import PostgresDurableStore

    return pf_variant(
        lambda tmp: PostgresDurableStore.open(dsn, schema=f"bench_{uuid.uuid4().hex[:8]}")
    )


def redis_journal(url: str) -> Factory:
    """Penguiflow with a journal on Redis (a fresh prefix)."""
    from penguiflow.core import RedisDurableStore

    return pf_variant(
        lambda tmp: RedisDurableStore.open(url, prefix=f"bench{uuid.uuid4().hex[:8]}")
    )


def langgraph_variant(saver: Literal["none", "default", "NORMAL"]) -> Factory:
    """LangGraph's chain: no checkpointer, or ``AsyncSqliteSaver`` with ``durability="sync"``."""
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
    from langgraph.graph import END, START, StateGraph  # pyright: ignore[reportMissingTypeStubs]
    from typing_extensions import TypedDict

    class S(TypedDict):
        counter: int
        blob: list[dict[str, Any]]

    async def node(s: S) -> dict[str, Any]:
        return {"counter": s["counter"] + 1}

    def build(checkpointer: Any) -> Any:
        graph: Any = StateGraph(S)
        names = [f"n{i}" for i in range(N)]
        for name in names:
            graph.add_node(name, node)
        graph.add_edge(START, names[0])
        for a, b in zip(names, names[1:], strict=False):
            graph.add_edge(a, b)
        graph.add_edge(names[-1], END)
        return graph.compile(checkpointer=checkpointer)

    @asynccontextmanager
    async def factory(tmp: Path) -> AsyncIterator[Setup]:
        if saver == "none":
            graph = build(None)

            async def run_plain() -> None:
                out = await graph.ainvoke({"counter": 0, "blob": BLOB})
                assert out["counter"] == N

            yield Setup(run_plain)
            return
        path = tmp / "lg.db"
        async with AsyncSqliteSaver.from_conn_string(str(path)) as cp:
            await cp.setup()
            if saver == "NORMAL":
                await cp.conn.execute("PRAGMA synchronous=NORMAL")
            async with cp.conn.execute("PRAGMA synchronous") as cursor:
                row = await cursor.fetchone()
            assert row is not None and row[0] == (1 if saver == "NORMAL" else 2), row
            graph = build(cp)

            async def run() -> None:
                config = {"configurable": {"thread_id": uuid.uuid4().hex}}
                out = await graph.ainvoke({"counter": 0, "blob": BLOB}, config, durability="sync")
                assert out["counter"] == N

            yield Setup(run, path)

    return factory


# ------------------------------------------------------------------- single-write baselines
def pg_insert(dsn: str) -> Factory:
    """One single-row autocommit ``INSERT`` of a journal-entry-sized row, per "run"."""

    @asynccontextmanager
    async def factory(tmp: Path) -> AsyncIterator[Setup]:
        import asyncpg

        conn = await asyncpg.connect(dsn)
        table = f"bench_{uuid.uuid4().hex[:8]}"
        await conn.execute(f"CREATE TABLE {table} (seq bigserial PRIMARY KEY, value bytea)")
        value = b"x" * ENTRY_BYTES
        try:

            async def run() -> None:
                await conn.execute(f"INSERT INTO {table} (value) VALUES ($1)", value)

            yield Setup(run)
        finally:
            await conn.execute(f"DROP TABLE {table}")
            await conn.close()

    return factory


def redis_xadd(url: str) -> Factory:
    """One ``XADD`` of a journal-entry-sized field, per "run"."""

    @asynccontextmanager
    async def factory(tmp: Path) -> AsyncIterator[Setup]:
        from redis.asyncio import Redis

        client: Any = Redis.from_url(url)  # pyright: ignore[reportUnknownMemberType]
        stream = f"bench:{uuid.uuid4().hex[:8]}"
        value = b"x" * ENTRY_BYTES
        try:

            async def run() -> None:
                await client.xadd(stream, {"v": value})

            yield Setup(run)
        finally:
            await client.delete(stream)
            await client.aclose()

    return factory


LOAD_NOTE = "(measured at load >= 1; the target is for load < 1)"
ENTRY_BYTES = 200
"""Size of a baseline row: about one step's journal entry (a counter patch and its framing)."""


# ------------------------------------------------------------------------------ measuring
def file_bytes(db: Path) -> int:
    """Size of ``db`` and its WAL after ``PRAGMA wal_checkpoint(TRUNCATE)``."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        busy = 1
        for _ in range(50):
            busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            if not busy:
                break
            time.sleep(0.02)
        if busy:
            raise RuntimeError(f"could not checkpoint {db}")
    finally:
        conn.close()
    wal = db.with_name(db.name + "-wal")
    return db.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


@dataclass
class Sample:
    """One measurement of one variant."""

    us_per_run: float
    bytes_per_run: float | None
    load: float


async def measure_once(factory: Factory, runs: int) -> Sample:
    """10 warm-up runs, then the median of 5 batches of ``runs`` runs (a fresh directory)."""
    with tempfile.TemporaryDirectory(prefix="pf_persist_") as tmp:
        async with factory(Path(tmp)) as setup:
            for _ in range(WARMUP):
                await setup.run()
            before = None if setup.files is None else file_bytes(setup.files)
            batches: list[float] = []
            for _ in range(BATCHES):
                gc.collect()
                started = time.perf_counter()
                for _ in range(runs):
                    await setup.run()
                batches.append((time.perf_counter() - started) / runs * 1e6)
            growth = None
            if setup.files is not None and before is not None:
                growth = (file_bytes(setup.files) - before) / (BATCHES * runs)
    return Sample(statistics.median(batches), growth, os.getloadavg()[0])


@dataclass
class Variant:
    """A named variant and its samples over the repetitions."""

    name: str
    factory: Factory
    runs: int
    samples: list[Sample] = field(default_factory=list[Sample])

    @property
    def us(self) -> float:
        return statistics.median(s.us_per_run for s in self.samples)

    @property
    def bytes(self) -> float | None:
        sizes = [s.bytes_per_run for s in self.samples if s.bytes_per_run is not None]
        return statistics.median(sizes) if sizes else None

    @property
    def load(self) -> float:
        return statistics.median(s.load for s in self.samples)


def group_commit(reps: int, ops: int) -> dict[str, float]:
    """``sqlite_store.py``'s figure: µs per append at FULL, sequential and 64 concurrent."""

    def on_store(concurrency: int) -> Callable[[Path], float]:
        return lambda path: asyncio.run(sqlite_store.store_run(path, "FULL", ops, concurrency))

    sequential = sqlite_store.median(reps, on_store(1))
    concurrent = sqlite_store.median(reps, on_store(64))
    return {"sequential_us": sequential, "concurrent_us": concurrent, "load": os.getloadavg()[0]}


# ------------------------------------------------------------------------------- printing
@dataclass
class Line:
    """A printed figure next to its baseline."""

    label: str
    value: float
    unit: str
    baseline: float | None
    baseline_label: str
    load: float
    target: float | None = None
    """Maximum of ``value / baseline`` (or of ``value`` when ``absolute``)."""
    absolute: bool = False
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or not self.baseline:
            return None
        return self.value / self.baseline

    @property
    def ok(self) -> bool | None:
        if self.target is None:
            return None
        checked = self.value if self.absolute else self.ratio
        return None if checked is None else checked <= self.target


def print_lines(title: str, lines: list[Line]) -> None:
    """One table: figure, baseline, ratio, target and verdict, with the load average."""
    print(f"\n{title}")
    header = (
        f"{'figure':<44} {'value':>12} {'baseline':>12} {'ratio':>8} {'target':>9} {'ok':>2}"
        f" {'load':>5}  baseline is"
    )
    print(header)
    print("-" * len(header))
    for line in lines:
        base = "-" if line.baseline is None else f"{line.baseline:.2f}"
        ratio = "-" if line.ratio is None else f"{line.ratio:.2f}x"
        if line.target is None:
            target = "-"
        elif line.absolute:
            target = f"<={line.target:g}"
        else:
            target = f"<={line.target:g}x"
        ok = {None: "", True: "✓", False: "✗"}[line.ok]
        value = f"{line.value:.2f} {line.unit}"
        print(
            f"{line.label:<44} {value:>12} {base:>12} {ratio:>8} {target:>9} {ok:>2}"
            f" {line.load:>5.2f}  {line.baseline_label}{line.note}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=40, help="runs per timed batch")
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions (median)")
    parser.add_argument("--quick", action="store_true", help="5 runs per batch, 1 repetition")
    parser.add_argument("--ops", type=int, default=1280, help="appends per group-commit batch")
    parser.add_argument("--json", type=Path, default=None, help="where to write the JSON results")
    args = parser.parse_args()
    try:
        import langgraph.checkpoint.sqlite  # noqa: F401  # pyright: ignore[reportUnusedImport]
    except ImportError:
        parser.exit(
            2,
            "LangGraph is not installed; run: uv run --group bench python "
            "tools/bench/persistence.py\n",
        )
    runs, reps = (5, 1) if args.quick else (args.runs, args.reps)
    started = time.perf_counter()
    load_start = os.getloadavg()
    dsn = os.environ.get("PENGUIFLOW_TEST_POSTGRES_URL")
    url = os.environ.get("PENGUIFLOW_TEST_REDIS_URL")

    variants = [
        Variant("penguiflow, no journal", pf_variant(None), runs),
        Variant("penguiflow, SQLite journal NORMAL", sqlite_journal("NORMAL"), runs),
        Variant("penguiflow, SQLite journal FULL", sqlite_journal("FULL"), runs),
        Variant("LangGraph, no checkpointer", langgraph_variant("none"), runs),
        Variant("LangGraph, AsyncSqliteSaver default", langgraph_variant("default"), runs),
        Variant("LangGraph, AsyncSqliteSaver NORMAL", langgraph_variant("NORMAL"), runs),
    ]
    if dsn:
        variants.append(Variant("penguiflow, Postgres journal", postgres_journal(dsn), runs))
        variants.append(Variant("Postgres, one autocommit INSERT", pg_insert(dsn), runs * N))
    if url:
        variants.append(Variant("penguiflow, Redis journal", redis_journal(url), runs))
        variants.append(Variant("Redis, one XADD", redis_xadd(url), runs * N))
    for rep in range(reps):
        shift = rep % len(variants)
        for variant in variants[shift:] + variants[:shift]:
            print(f"rep {rep + 1}/{reps}: {variant.name} ...", file=sys.stderr, flush=True)
            gc.collect()
            variant.samples.append(asyncio.run(measure_once(variant.factory, variant.runs)))
    print("group commit (sqlite_store.py, FULL) ...", file=sys.stderr, flush=True)
    gc_figures = group_commit(BATCHES, args.ops)
    by = {v.name: v for v in variants}

    def per_step(name: str, base: str) -> float:
        return (by[name].us - by[base].us) / N / 1000

    pf0, lg0 = "penguiflow, no journal", "LangGraph, no checkpointer"
    pf_normal = per_step("penguiflow, SQLite journal NORMAL", pf0)
    pf_full = per_step("penguiflow, SQLite journal FULL", pf0)
    lg_default = per_step("LangGraph, AsyncSqliteSaver default", lg0)
    lg_normal = per_step("LangGraph, AsyncSqliteSaver NORMAL", lg0)
    normal_load = by["penguiflow, SQLite journal NORMAL"].load
    runs_lines = [
        Line(v.name, v.us / 1000, "ms", None, "", v.load)
        for v in variants
        if v.runs == runs  # the single-write baselines are per op, below
    ]
    step_lines = [
        Line(
            "penguiflow SQLite NORMAL, per step",
            pf_normal,
            "ms",
            lg_normal,
            "LangGraph AsyncSqliteSaver NORMAL",
            normal_load,
            target=0.2,
        ),
        Line(
            "penguiflow SQLite NORMAL, per step (absolute)",
            pf_normal,
            "ms",
            None,
            "",
            normal_load,
            target=0.3,  # ms
            absolute=True,
            note=LOAD_NOTE if normal_load >= 1 else "",
        ),
        Line(
            "penguiflow SQLite FULL, per step",
            pf_full,
            "ms",
            lg_default,
            "LangGraph AsyncSqliteSaver default (FULL)",
            by["penguiflow, SQLite journal FULL"].load,
        ),
        Line(
            "LangGraph AsyncSqliteSaver default, per step",
            lg_default,
            "ms",
            None,
            "",
            by["LangGraph, AsyncSqliteSaver default"].load,
        ),
        Line(
            "LangGraph AsyncSqliteSaver NORMAL, per step",
            lg_normal,
            "ms",
            None,
            "",
            by["LangGraph, AsyncSqliteSaver NORMAL"].load,
        ),
    ]
    single: dict[str, float] = {}
    for name, base, label in (
        ("penguiflow, Postgres journal", "Postgres, one autocommit INSERT", "one INSERT"),
        ("penguiflow, Redis journal", "Redis, one XADD", "one XADD"),
    ):
        if name in by:
            single[base] = by[base].us / 1000
            step_lines.append(
                Line(
                    f"{name.removeprefix('penguiflow, ')}, per step",
                    per_step(name, pf0),
                    "ms",
                    single[base],
                    f"{label} ({ENTRY_BYTES} B, autocommit)",
                    by[name].load,
                    target=2.0,
                )
            )
    bytes_lines: list[Line] = []
    for name in (
        "penguiflow, SQLite journal NORMAL",
        "penguiflow, SQLite journal FULL",
        "LangGraph, AsyncSqliteSaver default",
        "LangGraph, AsyncSqliteSaver NORMAL",
    ):
        size = by[name].bytes
        if size is not None:
            bytes_lines.append(
                Line(
                    f"{name}, bytes/run",
                    size,
                    "B",
                    CHANGED_BYTES,
                    "changed bytes (write amplification)",
                    by[name].load,
                    target=1.5 if name.startswith("penguiflow") else None,
                )
            )
    gc_line = Line(
        "SQLite store FULL, 64 concurrent appends",
        gc_figures["concurrent_us"],
        "µs",
        gc_figures["sequential_us"],
        "sequential appends (µs per append)",
        gc_figures["load"],
        target=0.25,
    )

    print()
    print(
        f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; "
        f"langgraph {_version('langgraph')}, langgraph-checkpoint-sqlite "
        f"{_version('langgraph-checkpoint-sqlite')}; {reps} repetitions x {BATCHES} batches x "
        f"{runs} runs (medians), {WARMUP} warm-up; {time.strftime('%Y-%m-%d %H:%M')}, "
        f"{time.perf_counter() - started:.0f}s; load average at start "
        f"{load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}"
    )
    print(f"changed bytes per run: {CHANGED_BYTES} (initial state + {N} counters)")
    print_lines("one run of the 10-node chain (ms)", runs_lines)
    print_lines("per persisted step = (run - run without persistence) / 10", step_lines)
    print_lines("bytes per run (db + WAL after wal_checkpoint(TRUNCATE))", bytes_lines)
    print_lines("group commit", [gc_line])
    lines = runs_lines + step_lines + bytes_lines + [gc_line]
    out = args.json or RESULTS / f"persistence-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "python": platform.python_version(),
                "machine": platform.machine(),
                "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "load_average_start": list(load_start),
                "reps": reps,
                "batches": BATCHES,
                "runs_per_batch": runs,
                "warmup": WARMUP,
                "changed_bytes": CHANGED_BYTES,
                "versions": {
                    name: _version(name)
                    for name in ("penguiflow-core", "langgraph", "langgraph-checkpoint-sqlite")
                },
                "variants": [
                    {
                        "name": v.name,
                        "us_per_run_median": v.us,
                        "bytes_per_run_median": v.bytes,
                        "samples": [s.__dict__ for s in v.samples],
                    }
                    for v in variants
                ],
                "group_commit": gc_figures,
                "lines": [
                    {
                        "figure": line.label,
                        "value": line.value,
                        "unit": line.unit,
                        "baseline": line.baseline,
                        "baseline_is": line.baseline_label,
                        "ratio": line.ratio,
                        "target": line.target,
                        "ok": line.ok,
                        "load": line.load,
                    }
                    for line in lines
                ],
            },
            indent=2,
        )
    )
    print(f"\nJSON: {out}")


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


if __name__ == "__main__":
    main()
