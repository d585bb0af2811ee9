"""Parallel branches and a join: three lookups at most two at a time, then one summary.

Run it with ``uv run python examples/react_parallel_join/main.py``. ``ScriptedLLM`` plays the
model: it plans one ``parallel`` step (three ``colony_size`` branches and a ``total`` join fed with
``$results``), then answers.
"""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
from pydantic import BaseModel

from penguiflow.core import tool
from penguiflow.planner import PlannerEventType, PlannerFinish, ReactPlanner, ToolContext
from penguiflow.testkit import ScriptedLLM

COLONIES = {"Cape Crozier": 270_000, "Cape Adare": 338_000, "Coulman Island": 22_000}
in_flight = 0
peak = 0


class Colony(BaseModel):
    """A colony to look up."""

    name: str


class Size(BaseModel):
    """How many breeding pairs it has."""

    name: str
    pairs: int


class Sizes(BaseModel):
    """The join's input: every branch's output (injected from ``$results``)."""

    sizes: list[Size]


class Total(BaseModel):
    """The join's output."""

    colonies: int
    pairs: int
    largest: str


@tool(desc="Breeding pairs of one penguin colony.", side_effects="read")
async def colony_size(args: Colony, ctx: ToolContext) -> Size:
    """A slow lookup (50 ms), so the branches overlap."""
    global in_flight, peak
    in_flight += 1
    peak = max(peak, in_flight)
    await anyio.sleep(0.05)
    in_flight -= 1
    return Size(name=args.name, pairs=COLONIES[args.name])


@tool(desc="Add up colony sizes.")
async def total(args: Sizes, ctx: ToolContext) -> Total:
    """The join: runs once every branch succeeded."""
    largest = max(args.sizes, key=lambda s: s.pairs)
    return Total(
        colonies=len(args.sizes), pairs=sum(s.pairs for s in args.sizes), largest=largest.name
    )


PLAN = {
    "thought": "look the three colonies up at once, then add them up",
    "next_node": "parallel",
    "args": {
        "steps": [{"node": "colony_size", "args": {"name": name}} for name in COLONIES],
        "join": {"node": "total", "args": {}, "inject": {"sizes": "$results"}},
    },
}


async def main() -> None:
    llm = ScriptedLLM(
        [
            PLAN,
            {
                "thought": "done",
                "next_node": "final_response",
                "args": {"answer": "630,000 pairs in 3 colonies; Cape Adare is the largest."},
            },
        ]
    )
    tool_events: list[str] = []

    def on_event(event: Any) -> None:
        if event.event_type is PlannerEventType.TOOL_CALL_END:
            tool_events.append(f"{event.node_name}#{event.extra['branch']}")

    planner = ReactPlanner(llm, nodes=[colony_size, total], max_parallel=2, event_callback=on_event)
    result = await planner.run("How many breeding pairs in the three Ross Sea colonies?")
    assert isinstance(result, PlannerFinish)
    step = result.trajectory.steps[0]
    for branch in step.branches or []:
        print(
            f"branch {branch['node']}({branch['args']['name']}): "
            f"ok={branch['ok']} -> {branch['output']}"
        )
    print(f"join total -> {step.observation}")
    print(f"peak branches at once = {peak} (max_parallel=2)")
    print(f"tool calls finished: {len(tool_events)} ({result.usage.hops} hops)")
    print(f"answer: {result.output}")
    print("react_parallel_join done")


if __name__ == "__main__":
    asyncio.run(main())
