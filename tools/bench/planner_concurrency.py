"""One ReactPlanner under 1,000 concurrent runs: memory per in-flight run, leaks, wall time.

Run ``uv run python tools/bench/planner_concurrency.py`` (``--runs N`` concurrent runs,
``--reps N``). Three figures, the targets of the planner spec's §11:

* **held per in-flight run**: ``--runs`` runs on one open planner, all parked in their first
  model call (the client awaits one shared event); tracemalloc's traced memory with every run
  parked minus before they started (both after ``gc.collect()``), divided by the runs. The
  figure includes each run's task and the harness's coroutine for it; the model client is a
  minimal one that keeps nothing (``FunctionLLM`` would record every call's messages). Then the
  event is set and every run must finish ``answer_complete``.
* **back to baseline**: after that warm-up round, five more rounds of the same; traced memory
  after each (gc'd) must stay within 64 KiB of the post-warm-up level, and ``statistics()``
  report 0 active runs and 0 background tasks, the event loop's task count unchanged.
* **1,000 runs with a 10 ms tool**: each run asks for one tool call (``await anyio.sleep(0.01)``,
  ``NodePolicy(max_concurrency=1000)``) then answers; wall time of all of them, next to the same
  number of bare tasks each sleeping 10 ms in the same repetition (the floor). Median of
  ``--reps``; each repetition in a fresh event loop.

The load average is printed; results also go as JSON to
``tools/bench/results/planner_concurrency.json``.
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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
from pydantic import BaseModel

from penguiflow.core import Node, NodePolicy, tool
from penguiflow.planner import PlannerFinish, ReactPlanner

RESULTS = Path(__file__).parent / "results"
KIB = 1024
CALL = json.dumps({"thought": "add", "next_node": "add", "args": {"a": 1, "b": 2}})
ANSWER = json.dumps({"thought": "done", "next_node": "final_response", "args": {"answer": "3"}})


class AddArgs(BaseModel):
    """The tool's input."""

    a: int
    b: int


class AddOut(BaseModel):
    """The tool's output."""

    total: int


class Model:
    """A zero-latency model that keeps nothing; ``gate`` parks every call until it is set."""

    def __init__(self, *, use_tool: bool) -> None:
        self.use_tool = use_tool
        self.gate: anyio.Event | None = None
        self.parked = 0
        self.all_parked = anyio.Event()
        self.expected = 0

    async def complete(
        self,
        *,
        messages: Sequence[Mapping[str, str]],
        response_format: Any = None,
        stream: bool = False,
        on_stream_chunk: Any = None,
    ) -> str:
        gate = self.gate
        if gate is not None and not gate.is_set():
            self.parked += 1
            if self.parked == self.expected:
                self.all_parked.set()
            await gate.wait()
        if not self.use_tool:
            return ANSWER
        last = messages[-1]
        if last["role"] == "user" and last["content"].startswith('{"observation"'):
            return ANSWER
        return CALL


def traced() -> int:
    """Traced memory after a full collection."""
    gc.collect()
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


async def parked_round(planner: ReactPlanner[str], model: Model, runs: int) -> int:
    """Run ``runs`` runs parked in their first model call; returns the bytes held meanwhile."""
    results: list[Any] = []
    model.gate = anyio.Event()
    model.parked = 0
    model.expected = runs
    model.all_parked = anyio.Event()
    before = traced()

    async def one() -> None:
        results.append(await planner.run("what is 1+2?"))

    async with anyio.create_task_group() as tg:
        for _ in range(runs):
            tg.start_soon(one)
        await model.all_parked.wait()
        held = traced() - before
        assert planner.statistics().active_runs == runs
        model.gate.set()
    assert len(results) == runs
    assert all(isinstance(r, PlannerFinish) and r.reason == "answer_complete" for r in results)
    model.gate = None
    return held


async def memory(runs: int) -> dict[str, Any]:
    """Held per in-flight run, and the five rounds after the warm-up."""
    tracemalloc.start()
    try:
        model = Model(use_tool=False)
        planner: ReactPlanner[str] = ReactPlanner(model)
        tasks_before = len(asyncio.all_tasks())
        async with planner:
            tasks_open = len(asyncio.all_tasks())
            held = await parked_round(planner, model, runs)  # the warm-up round
            level = traced()
            rounds: list[int] = []
            for _ in range(5):
                await parked_round(planner, model, runs)
                rounds.append(traced() - level)
            stats = planner.statistics()
            tasks_after = len(asyncio.all_tasks())
        tasks_closed = len(asyncio.all_tasks())
    finally:
        tracemalloc.stop()
    return {
        "held_per_run_bytes": held / runs,
        "rounds_delta_bytes": rounds,
        "active_runs": stats.active_runs,
        "background_tasks": stats.background_tasks,
        "tasks": {
            "before": tasks_before,
            "open": tasks_open,
            "after_rounds": tasks_after,
            "after_close": tasks_closed,
        },
    }


def tool_planner() -> ReactPlanner[str]:
    """A planner whose one tool awaits 10 ms, and lets 1,000 invocations run at once."""

    @tool(desc="Add two ints, slowly.")
    async def add(args: AddArgs, ctx: Any) -> AddOut:
        await anyio.sleep(0.01)
        return AddOut(total=args.a + args.b)

    node = Node(add, name="add", policy=NodePolicy(max_concurrency=1000))
    return ReactPlanner(Model(use_tool=True), nodes=[node])


async def tool_wall(runs: int) -> float:
    """Seconds for ``runs`` concurrent runs, each with one 10 ms tool call."""
    planner = tool_planner()
    results: list[Any] = []

    async def one() -> None:
        results.append(await planner.run("what is 1+2?"))

    async with planner:
        await one()  # warm-up: first-call caches
        results.clear()
        gc.collect()
        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(runs):
                tg.start_soon(one)
        elapsed = time.perf_counter() - start
        assert planner.statistics().active_runs == 0
    assert len(results) == runs
    assert all(isinstance(r, PlannerFinish) and r.reason == "answer_complete" for r in results)
    assert all(r.usage.tool_calls == 1 for r in results)
    return elapsed


async def bare_wall(runs: int) -> float:
    """Seconds for ``runs`` bare tasks each sleeping 10 ms (the floor)."""
    gc.collect()
    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(runs):
            tg.start_soon(anyio.sleep, 0.01)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1000, help="concurrent runs")
    parser.add_argument("--reps", type=int, default=7, help="repetitions of the wall-time figure")
    parser.add_argument("--json", type=Path, default=None, help="where to write the JSON results")
    args = parser.parse_args()
    logging.getLogger("penguiflow").setLevel(logging.ERROR)
    runs = args.runs
    mem = asyncio.run(memory(runs))
    load_mem = os.getloadavg()[0]
    ours: list[float] = []
    floor: list[float] = []
    loads: list[float] = []
    for rep in range(args.reps):
        if rep % 2 == 0:
            ours.append(asyncio.run(tool_wall(runs)))
            floor.append(asyncio.run(bare_wall(runs)))
        else:
            floor.append(asyncio.run(bare_wall(runs)))
            ours.append(asyncio.run(tool_wall(runs)))
        loads.append(os.getloadavg()[0])
    held = mem["held_per_run_bytes"]
    worst = max(abs(d) for d in mem["rounds_delta_bytes"])
    wall, base = statistics.median(ours), statistics.median(floor)
    tasks = mem["tasks"]
    back = (
        worst <= 64 * KIB
        and mem["active_runs"] == 0
        and mem["background_tasks"] == 0
        and tasks["after_rounds"] == tasks["open"]
        and tasks["after_close"] == tasks["before"]
    )
    print(f"load average {load_mem:.2f} (memory), {statistics.median(loads):.2f} (wall time)")
    print(
        f"held per in-flight run ({runs} parked in the first model call): {held / KIB:.2f} KiB "
        f"(target <= 8 KiB: {'pass' if held <= 8 * KIB else 'MISS'})"
    )
    print(
        "after the warm-up round, 5 rounds: traced memory vs the post-warm-up level "
        f"{[round(d / KIB, 1) for d in mem['rounds_delta_bytes']]} KiB; "
        f"active_runs={mem['active_runs']} background_tasks={mem['background_tasks']}; "
        f"tasks {tasks} (target within 64 KiB, 0, 0, unchanged: {'pass' if back else 'MISS'})"
    )
    print(
        f"{runs} runs with a 10 ms tool: {wall * 1000:.0f} ms wall (median of {args.reps}; "
        f"min {min(ours) * 1000:.0f}, max {max(ours) * 1000:.0f}); {runs} bare 10 ms sleeps: "
        f"{base * 1000:.0f} ms (target <= 400 ms: {'pass' if wall <= 0.4 else 'MISS'})"
    )
    RESULTS.mkdir(exist_ok=True)
    path = args.json or RESULTS / "planner_concurrency.json"
    path.write_text(
        json.dumps(
            {
                "benchmark": "planner_concurrency",
                "runs": runs,
                "reps": args.reps,
                "load_average": {"memory": load_mem, "wall": loads},
                "memory": mem,
                "tool_10ms_wall_s": ours,
                "bare_10ms_wall_s": floor,
            },
            indent=2,
        )
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
