"""Per-source concurrency of ``ToolNode`` (spec tools.md §12), beside the bare SDK in the same run.

Run ``uv run python tools/bench/tool_concurrency.py`` (``--reps N``, default 5; ``--import-runs N``
fresh interpreters per kind for the import cost, default 15, 0 to skip).

One loopback SDK ``MCPServer`` (streamable HTTP, uvicorn in a thread of this process) offers a
``slow`` tool that sleeps 50 ms and counts the calls in flight **at the server** (its peak is
read from the server's own counter, not from the client). Per repetition, in alternating order:

* ``tool_node, max_concurrency=8``: 100 concurrent ``ToolNode.call``s on one node: the server's
  peak must be exactly 8, the wall ≤ 1.25 × ⌈100/8⌉ × 50 ms;
* ``bare SDK + Semaphore(8)``: the same 100 calls through one bare ``mcp.Client``, each holding an
  ``asyncio.Semaphore(8)`` slot (the baseline);
* ``tool_node, max_concurrency=100`` and ``bare SDK, no limit``: the server's peak must be 100
  (here the tool holds every call until all 100 are in flight, then sleeps 50 ms: the server
  takes a few ms per request, so without the barrier early calls end before late ones arrive).

Then ``import penguiflow.tools`` on top of ``penguiflow.core`` (bound ≤ 20 ms), by the method of
``tools/import_time.py``: fresh interpreters, interleaved, medians, the difference of the two.
The connector-vs-bare call overhead (stdio and HTTP) is ``tool_call_overhead.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import math
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Generator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mcp
import uvicorn

from penguiflow.tools import ExternalToolConfig, ToolNode, TransportType

CALLS = 100
SLEEP_S = 0.05


@dataclass
class Counter:
    """Calls in flight at the server (touched only by the server's event loop)."""

    in_flight: int = 0
    peak: int = 0
    arrived: asyncio.Event | None = None


COUNTER = Counter()


def _server() -> Any:
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("bench-concurrency")

    @server.tool()
    async def slow(barrier: int = 0) -> int:
        """Sleep 50 ms (after ``barrier`` calls are in flight); count the calls in flight."""
        COUNTER.in_flight += 1
        COUNTER.peak = max(COUNTER.peak, COUNTER.in_flight)
        try:
            if barrier:
                if COUNTER.arrived is None:
                    COUNTER.arrived = asyncio.Event()
                if COUNTER.in_flight >= barrier:
                    COUNTER.arrived.set()
                await asyncio.wait_for(COUNTER.arrived.wait(), timeout=30)
            await asyncio.sleep(SLEEP_S)
        finally:
            COUNTER.in_flight -= 1
        return COUNTER.peak

    return server


@contextmanager
def _threaded(app: Any) -> Generator[str]:
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}/mcp"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


async def _burst(one: Callable[[], Coroutine[Any, Any, Any]]) -> tuple[float, int]:
    """Wall ms of ``CALLS`` concurrent calls, and the server's peak in flight."""
    COUNTER.peak = 0
    COUNTER.arrived = None
    start = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for _ in range(CALLS):
            tg.create_task(one())
    wall = (time.perf_counter() - start) * 1000
    return wall, COUNTER.peak


async def _run(url: str, reps: int) -> dict[str, list[tuple[float, int]]]:
    def config(limit: int) -> ExternalToolConfig:
        return ExternalToolConfig(
            name="c", transport=TransportType.MCP, connection=url, max_concurrency=limit
        )

    async with (
        mcp.Client(url) as client,
        ToolNode(config(8)) as node8,
        ToolNode(config(100)) as node100,
    ):
        gate = asyncio.Semaphore(8)

        async def bare() -> None:
            await client.call_tool("slow", {"barrier": CALLS})

        async def bare8() -> None:
            async with gate:
                await client.call_tool("slow", {})

        async def via8() -> None:
            await node8.call("c.slow", {})

        async def via100() -> None:
            await node100.call("c.slow", {"barrier": CALLS})

        ways: dict[str, Callable[[], Coroutine[Any, Any, Any]]] = {
            "tool_node, max_concurrency=8": via8,
            "bare SDK + Semaphore(8)": bare8,
            "tool_node, max_concurrency=100": via100,
            "bare SDK, no limit": bare,
        }
        for one in ways.values():  # warm-up
            await _burst(one)
        samples: dict[str, list[tuple[float, int]]] = {name: [] for name in ways}
        for rep in range(reps):
            names = list(ways) if rep % 2 == 0 else list(reversed(ways))
            for name in names:
                samples[name].append(await _burst(ways[name]))
        assert node8.statistics().max_in_flight == 8
        return samples


def _import_cost(runs: int) -> tuple[float, float]:
    """Median ms of core alone and of core + tools, fresh interpreters (tools/import_time.py)."""
    path = Path(__file__).resolve().parents[1] / "import_time.py"
    spec = importlib.util.spec_from_file_location("penguiflow_import_time", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    core = str(module.WITH_CORE)
    tools = core + "; import penguiflow.tools"
    time_import: Callable[[str, str], float] = module.time_import
    time_import(sys.executable, core)
    time_import(sys.executable, tools)
    core_s: list[float] = []
    tools_s: list[float] = []
    for i in range(runs):
        pair = [(core_s, core), (tools_s, tools)]
        for into, modules in pair if i % 2 == 0 else reversed(pair):
            into.append(time_import(sys.executable, modules))
    return statistics.median(core_s) * 1000, statistics.median(tools_s) * 1000


def main(reps: int, import_runs: int) -> None:
    logging.getLogger().setLevel(logging.WARNING)
    app = _server().streamable_http_app()
    logging.getLogger().setLevel(logging.WARNING)  # MCPServer sets up INFO logging
    with _threaded(app) as url:
        samples = asyncio.run(_run(url, reps))
    bound = 1.25 * math.ceil(CALLS / 8) * SLEEP_S * 1000
    print(
        f"{CALLS} concurrent calls of a {SLEEP_S * 1000:.0f} ms tool, {reps} reps, "
        f"load {os.getloadavg()[0]:.2f}"
    )
    medians = {name: statistics.median(w for w, _ in s) for name, s in samples.items()}
    peaks = {name: sorted({p for _, p in s}) for name, s in samples.items()}
    pairs = [
        ("tool_node, max_concurrency=8", "bare SDK + Semaphore(8)"),
        ("tool_node, max_concurrency=100", "bare SDK, no limit"),
    ]
    for ours, base in pairs:
        for name in (ours, base):
            print(f"  {name:32s} wall {medians[name]:7.1f} ms  server peaks {peaks[name]}")
        print(f"  {'ratio':32s}      {medians[ours] / medians[base]:5.2f}x")
    ok8 = peaks["tool_node, max_concurrency=8"] == [8]
    ok100 = peaks["tool_node, max_concurrency=100"] == [100]
    wall8 = medians["tool_node, max_concurrency=8"]
    print(
        f"  peak exactly 8: {ok8}; peak 100: {ok100}; "
        f"wall {wall8:.0f} ms <= {bound:.0f} ms: {wall8 <= bound}"
    )
    if import_runs > 0:
        core_ms, tools_ms = _import_cost(import_runs)
        print(f"import, median of {import_runs} fresh interpreters each")
        print(f"  core (+ its deps)            {core_ms:7.1f} ms")
        print(f"  core + penguiflow.tools      {tools_ms:7.1f} ms")
        print(f"  penguiflow.tools on top      {tools_ms - core_ms:7.1f} ms (bound 20 ms)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--import-runs", type=int, default=15)
    args = parser.parse_args()
    main(args.reps, args.import_runs)
