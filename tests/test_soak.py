"""Soak: many traces with fan-out, joins, retries, timeouts, failures and cancellations through one
long-lived flow. Every trace ends in exactly one terminal outcome, per-trace bookkeeping returns to
zero, and resident memory stays flat.

CI runs a small scale; run the full one with ``uv run pytest tests/test_soak.py --soak-traces 100000
-s`` (``-s`` shows the memory figures).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import random
from collections import Counter
from dataclasses import dataclass
from typing import cast

import anyio
import anyio.lowlevel
import pytest

from penguiflow.core import (
    Context,
    FlowError,
    FlowErrorCode,
    Headers,
    Message,
    Node,
    NodePolicy,
    PenguiFlow,
    create,
    join_k,
)

KINDS = ("ok", "ok", "ok", "ok", "flaky", "slow_once", "fails", "cancelled")
"""Per-trace behaviour, chosen from the payload: most succeed, the rest exercise every path."""
WINDOW = 256
"""Traces in flight at once."""


@dataclass
class Job:
    index: int
    kind: str
    attempts: int = 0


def build_flow() -> PenguiFlow:
    async def split(msg: Message, ctx: Context) -> Message:
        return msg

    async def steady(msg: Message, ctx: Context) -> Message:
        await anyio.lowlevel.checkpoint()
        return msg.with_payload("steady")

    async def risky(msg: Message, ctx: Context) -> Message:
        job: Job = msg.payload
        job.attempts += 1
        if job.kind == "flaky" and job.attempts < 3:
            raise ConnectionError("transient")
        if job.kind == "slow_once" and job.attempts == 1:
            await anyio.sleep(1)  # longer than the timeout: the first attempt times out
        if job.kind == "fails":
            raise ValueError("permanent")
        if job.kind == "cancelled":
            await anyio.sleep_forever()
        return msg.with_payload("risky")

    async def finish(msg: Message, ctx: Context) -> Message:
        return msg.with_payload(sorted(msg.payload))

    split_node, steady_a, steady_b = Node(split), Node(steady, name="a"), Node(steady, name="b")
    risky_node = Node(
        risky,
        policy=NodePolicy(max_retries=2, timeout_s=0.05, backoff_base=0.001, max_backoff=0.002),
    )
    join, finish_node = join_k("join", 3), Node(finish)
    return create(
        split_node.to(steady_a, steady_b, risky_node),
        steady_a.to(join),
        steady_b.to(join),
        risky_node.to(join),
        join.to(finish_node),
        finish_node.to(),
        emit_errors_to_rookery=True,
        queue_maxsize=64,
    )


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def slope(points: list[tuple[int, int]]) -> float:
    """Least-squares slope of (traces, bytes): bytes of growth per trace."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    num = sum((x - mean_x) * (y - mean_y) for x, y in points)
    den = sum((x - mean_x) ** 2 for x, _ in points)
    return num / den if den else 0.0


@dataclass
class SoakReport:
    outcomes: Counter[str]
    per_trace: bytearray
    """Terminal outcomes seen per trace index (kept compact so the test itself does not grow)."""
    memory: list[tuple[int, int]]
    slope_bytes_per_trace: float


async def soak(traces: int, seed: int = 7) -> SoakReport:
    rng = random.Random(seed)
    flow = build_flow()
    per_trace = bytearray(traces)
    outcomes: Counter[str] = Counter()
    memory: list[tuple[int, int]] = []
    window = anyio.Semaphore(WINDOW)
    checkpoints = max(traces // 20, 1)
    done = anyio.Event()
    finished = 0

    async def consume() -> None:
        nonlocal finished
        while finished < traces:
            item = await flow.fetch()
            if isinstance(item, FlowError):
                assert item.trace_id is not None
                kind = f"error:{item.code.value}"
                trace_id = item.trace_id
            else:
                assert isinstance(item, Message)
                assert item.payload == ["risky", "steady", "steady"]
                kind, trace_id = "result", item.trace_id
            per_trace[int(trace_id)] += 1
            outcomes[kind] += 1
            finished += 1
            window.release()
            if finished % checkpoints == 0:
                gc.collect()
                memory.append((finished, rss_bytes()))
        done.set()

    async with flow.running(), anyio.create_task_group() as tg:
        tg.start_soon(consume)
        for index in range(traces):
            await window.acquire()
            kind = rng.choice(KINDS)
            msg = Message(
                payload=Job(index, kind), headers=Headers(tenant="soak"), trace_id=str(index)
            )
            await flow.emit(msg)
            if kind == "cancelled":
                assert await flow.cancel(msg.trace_id)
        with anyio.fail_after(60):
            await done.wait()
        stats = flow.statistics()
        assert stats.live_traces == 0
        assert stats.queued == 0
        assert stats.lanes == 0
        assert stats.rookery_buffered == 0
        assert stats.streams == 0
        assert not flow.node("join").func.buckets  # type: ignore[attr-defined]
    after = flow.statistics()
    assert after.workers == 0 and after.rookery_keys == 0
    tail = memory[len(memory) // 4 :]
    return SoakReport(outcomes, per_trace, memory, slope(tail))


@pytest.fixture
def soak_traces(request: pytest.FixtureRequest) -> int:
    return cast(int, request.config.getoption("--soak-traces"))


async def test_soak_every_trace_ends_once_bookkeeping_is_freed_and_memory_is_flat(
    soak_traces: int, caplog: pytest.LogCaptureFixture
) -> None:
    # Failures are logged at ERROR; pytest would keep every record and the test would measure that.
    caplog.set_level(logging.CRITICAL, logger="penguiflow.core")
    tasks_before = len(asyncio.all_tasks())
    report = await soak(soak_traces)
    assert len(asyncio.all_tasks()) == tasks_before
    assert 0 not in report.per_trace, "a trace got no terminal outcome"
    assert set(report.per_trace) == {1}, "a trace got more than one terminal outcome"
    assert set(report.outcomes) == {
        "result",
        f"error:{FlowErrorCode.NODE_EXCEPTION.value}",
        f"error:{FlowErrorCode.TRACE_CANCELLED.value}",
    }
    growth = report.memory[-1][1] - report.memory[len(report.memory) // 4][1]
    print(
        f"\nsoak: {soak_traces} traces, outcomes {dict(report.outcomes)}; "
        f"RSS {report.memory[0][1] / 2**20:.1f} -> {report.memory[-1][1] / 2**20:.1f} MiB, "
        f"slope {report.slope_bytes_per_trace:.2f} B/trace over the last 75%"
    )
    # Flat: well under one small object per trace (a leak of any per-trace record is >100 B).
    assert report.slope_bytes_per_trace < 16, report.memory
    assert growth < 8 * 2**20, report.memory
