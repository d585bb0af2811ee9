"""Distributed workers: throughput over 1, 2 and 3 worker processes, and per-trace overhead.

Run ``uv run python tools/bench/workers.py`` (``--reps N``, ``--traces N``, ``--quick``). It starts
its own ``redis-server`` on a unix socket (a temporary directory; no persistence). The flow is two
nodes that each ``await anyio.sleep(0.05)``, journaled on Redis (a ``Worker`` needs a journal).

* **Scaling:** ``Worker(max_inflight=8)`` in 1, 2 and 3 processes; 480 traces are emitted after
  every worker signalled ready; traces/s = traces / (first emit .. last outcome), printed next to
  the ideal (processes x 8 / 0.1 s) and as the ratio to 1 process (target at 3: >= 2.5x).
* **Per-trace overhead:** one trace at a time (20, median): emit -> outcome through one worker
  process, next to the same flow in this process (``emit`` -> ``fetch``) without and with the
  same Redis journal, all in the same run.

Each figure is the median of ``--reps`` repetitions; the load average is printed with it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, cast

import anyio

from penguiflow.core import Headers, Journal, Message, Node, PenguiFlow, RedisDurableStore, create

STEP_S = 0.05
INFLIGHT = 8
HEADERS = Headers(tenant="bench")


async def step(msg: Message, ctx: object) -> Message:
    """One node: 50 ms of waiting (an LLM or API call)."""
    await anyio.sleep(STEP_S)
    return msg


def build(journal: Journal | None) -> PenguiFlow:
    """The benchmark's two-node flow."""
    first, second = Node(step, name="first"), Node(step, name="second")
    return create(first.to(second), second.to(), journal=journal)


# ------------------------------------------------------------------------- worker processes
async def worker_main(url: str, app: str, name: str) -> None:
    """A worker process: serves until SIGTERM; sets ``bench:{app}:ready:{name}`` once running."""
    import redis.asyncio as aioredis

    from penguiflow.core.distributed import RedisStreamsBus, Worker

    raw: Any = cast(Any, aioredis).Redis.from_url(url)
    async with (
        RedisDurableStore.open(url, prefix=f"bench-{app}") as store,
        RedisStreamsBus.open(url, app=app) as bus,
    ):
        worker = Worker(build(Journal(store)), bus=bus, max_inflight=INFLIGHT, consumer=name)
        async with worker.running():
            await raw.set(f"bench:{app}:ready:{name}", "1")
            with anyio.open_signal_receiver(signal.SIGTERM) as signals:
                async for _ in signals:
                    break
    await raw.aclose()


def spawn(url: str, app: str, count: int) -> list[subprocess.Popen[bytes]]:
    """Start ``count`` worker processes of ``app``."""
    return [
        subprocess.Popen([sys.executable, __file__, "--worker", json.dumps([url, app, f"w{i}"])])
        for i in range(count)
    ]


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """Stop the worker processes (SIGTERM, then SIGKILL after 10 s)."""
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def until_ready(url: str, app: str, count: int) -> None:
    """Wait until ``count`` workers of ``app`` signalled ready."""
    import redis.asyncio as aioredis

    raw: Any = cast(Any, aioredis).Redis.from_url(url)
    try:
        with anyio.fail_after(60):
            while True:
                ready = sum([await raw.exists(f"bench:{app}:ready:w{i}") for i in range(count)])
                if ready == count:
                    return
                await anyio.sleep(0.02)
    finally:
        await raw.aclose()


# ---------------------------------------------------------------------------- measurements
async def scaling(url: str, processes: int, traces: int) -> float:
    """Traces/s through ``processes`` workers: first emit to last outcome."""
    from penguiflow.core.distributed import FlowClient, RedisStreamsBus

    app = f"b{uuid.uuid4().hex[:8]}"
    procs = spawn(url, app, processes)
    try:
        await until_ready(url, app, processes)
        async with RedisStreamsBus.open(url, app=app) as bus:
            client = FlowClient(bus)
            with anyio.fail_after(600):
                start = time.perf_counter()
                ids = [
                    await client.emit(Message(payload=i, headers=HEADERS)) for i in range(traces)
                ]
                outcomes = [await client.wait(trace_id) for trace_id in ids]
                elapsed = time.perf_counter() - start
        assert {o.status for o in outcomes} == {"completed"}, outcomes[:3]
        return traces / elapsed
    finally:
        stop(procs)


async def distributed_latency(url: str, count: int) -> float:
    """Median ms from emit to outcome of one trace at a time through one worker process."""
    from penguiflow.core.distributed import FlowClient, RedisStreamsBus

    app = f"b{uuid.uuid4().hex[:8]}"
    procs = spawn(url, app, 1)
    try:
        await until_ready(url, app, 1)
        async with RedisStreamsBus.open(url, app=app) as bus:
            client = FlowClient(bus)
            times: list[float] = []
            with anyio.fail_after(120):
                for i in range(count + 2):
                    start = time.perf_counter()
                    trace_id = await client.emit(Message(payload=i, headers=HEADERS))
                    await client.fetch(trace_id)
                    if i >= 2:  # two warm-up traces
                        times.append(time.perf_counter() - start)
        return statistics.median(times) * 1000
    finally:
        stop(procs)


async def local_latency(url: str | None, count: int) -> float:
    """Median ms from emit to fetch of one trace at a time in this process (journal on Redis
    when ``url`` is given)."""
    store_cm = RedisDurableStore.open(url, prefix=f"bench-{uuid.uuid4().hex[:8]}") if url else None
    store = await store_cm.__aenter__() if store_cm is not None else None
    try:
        flow = build(None if store is None else Journal(store))
        times: list[float] = []
        async with flow.running():
            for i in range(count + 2):
                start = time.perf_counter()
                msg = Message(payload=i, headers=HEADERS)
                await flow.emit(msg)
                await flow.fetch(trace_id=msg.trace_id)
                if i >= 2:
                    times.append(time.perf_counter() - start)
        return statistics.median(times) * 1000
    finally:
        if store_cm is not None:
            await store_cm.__aexit__(None, None, None)


# ---------------------------------------------------------------------------------- driver
def start_redis(work: str) -> str:
    """A redis-server on a unix socket in ``work``; its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed: apt-get install redis-server")
    sock = os.path.join(work, "redis.sock")
    subprocess.run(
        [binary, "--port", "0", "--unixsocket", sock, "--unixsocketperm", "700", "--save", "",
         "--appendonly", "no", "--daemonize", "yes", "--pidfile", os.path.join(work, "redis.pid"),
         "--dir", work],
        check=True,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(200):
        if os.path.exists(sock):
            break
        time.sleep(0.02)
    return f"unix://{sock}"


async def bench(url: str, reps: int, traces: int, count: int) -> dict[str, Any]:
    """Every figure, ``reps`` times (interleaved), as medians."""
    rates: dict[int, list[float]] = {1: [], 2: [], 3: []}
    lat: dict[str, list[float]] = {"local": [], "local+journal": [], "distributed": []}
    loads: list[float] = []
    for _ in range(reps):
        for processes in (1, 2, 3):
            rates[processes].append(await scaling(url, processes, traces))
            loads.append(os.getloadavg()[0])
        lat["local"].append(await local_latency(None, count))
        lat["local+journal"].append(await local_latency(url, count))
        lat["distributed"].append(await distributed_latency(url, count))
    return {
        "traces": traces,
        "reps": reps,
        "throughput": {str(p): statistics.median(r) for p, r in rates.items()},
        "runs": {str(p): r for p, r in rates.items()},
        "latency_ms": {k: statistics.median(v) for k, v in lat.items()},
        "load_avg": statistics.median(loads),
    }


def report(result: dict[str, Any]) -> None:
    """Print the table."""
    one = result["throughput"]["1"]
    print(f"\n{result['traces']} traces, 2 nodes x {STEP_S * 1000:.0f} ms, max_inflight={INFLIGHT}")
    print(f"median of {result['reps']} runs, load average {result['load_avg']:.1f}\n")
    print("| processes | traces/s | ideal | of ideal | vs 1 process |")
    print("|---:|---:|---:|---:|---:|")
    for processes in ("1", "2", "3"):
        rate = result["throughput"][processes]
        ideal = int(processes) * INFLIGHT / (2 * STEP_S)
        print(
            f"| {processes} | {rate:.1f} | {ideal:.0f} | {rate / ideal:.2f} | {rate / one:.2f}x |"
        )
    lat = result["latency_ms"]
    print("\n| one trace at a time | ms per trace | overhead vs in-process |")
    print("|---|---:|---:|")
    print(f"| in-process, no journal | {lat['local']:.1f} | - |")
    print(
        f"| in-process, Redis journal | {lat['local+journal']:.1f} | "
        f"{lat['local+journal'] - lat['local']:+.1f} ms |"
    )
    print(
        f"| 1 worker process via RedisStreamsBus | {lat['distributed']:.1f} | "
        f"{lat['distributed'] - lat['local']:+.1f} ms "
        f"({lat['distributed'] - lat['local+journal']:+.1f} vs journaled) |"
    )
    target = result["throughput"]["3"] / one
    print(
        f"\n3 processes vs 1: {target:.2f}x (target >= 2.5x {'met' if target >= 2.5 else 'MISSED'})"
    )


def main() -> None:
    """Parse the options and run (or serve as a worker process with ``--worker``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--traces", type=int, default=480)
    parser.add_argument("--quick", action="store_true", help="1 repetition of 96 traces")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        url, app, name = json.loads(args.worker)
        anyio.run(worker_main, url, app, name)
        return
    reps, traces, count = (1, 96, 5) if args.quick else (args.reps, args.traces, 20)
    with tempfile.TemporaryDirectory() as work:
        url = start_redis(work)
        try:
            result = anyio.run(bench, url, reps, traces, count)
        finally:
            with open(os.path.join(work, "redis.pid")) as pid:
                os.kill(int(pid.read()), signal.SIGTERM)
    report(result)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "workers.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
