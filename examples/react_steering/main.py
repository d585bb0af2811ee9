"""Steering a running agent: inject context, redirect the goal, cancel mid-tool.

Run it with ``uv run python examples/react_steering/main.py``. A ``FunctionLLM`` plays the model
(its reply depends on what it is sent, so it shows what steering changed). Events go into a
``SteeringInbox`` from another task while the run works: INJECT_CONTEXT and REDIRECT are applied
between steps (the next LLM call sees them); CANCEL is watched during calls too, so the tool in
flight is cancelled at once and the run ends ``cancelled``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import anyio
from pydantic import BaseModel

from penguiflow.core import tool
from penguiflow.planner import (
    PlannerFinish,
    ReactPlanner,
    SteeringEvent,
    SteeringEventType,
    SteeringInbox,
    ToolContext,
)
from penguiflow.testkit import FunctionLLM, LLMCallInfo

searching = anyio.Event()
cancelled_tools: list[str] = []


class Query(BaseModel):
    """What to search for."""

    q: str


class Hits(BaseModel):
    """What was found."""

    hits: list[str]


@tool(desc="Search the penguin library.", side_effects="read")
async def search(args: Query, ctx: ToolContext) -> Hits:
    """Takes a while (the steering arrives meanwhile); a 'slow' query never finishes."""
    searching.set()
    try:
        await anyio.sleep(3600 if "slow" in args.q else 0.05)
    except anyio.get_cancelled_exc_class():
        cancelled_tools.append(args.q)
        raise
    return Hits(hits=[f"result for {args.q!r}"])


def goal_of(messages: list[Any]) -> str:
    """The query as the model sees it (REDIRECT replaces it)."""
    for message in messages:
        if message["role"] == "user" and message["content"].startswith('{"query"'):
            return json.loads(message["content"])["query"]
    return "?"


def model(messages: list[Any], info: LLMCallInfo) -> Any:
    goal = goal_of(messages)
    observed = any(
        m["role"] == "user" and m["content"].startswith('{"observation"') for m in messages
    )
    if not observed:
        return {"thought": "search first", "next_node": "search", "args": {"q": goal}}
    injected = [m["content"] for m in messages if m["content"].startswith('{"inject_context"')]
    print(f"  model, call {info.call_index}: goal={goal!r}")
    print(f"  model, call {info.call_index}: injected={injected}")
    return {
        "thought": "answer",
        "next_node": "final_response",
        "args": {"answer": f"Answer to {goal!r} (with {len(injected)} injected note)"},
    }


async def inject_and_redirect() -> None:
    inbox = SteeringInbox()
    planner = ReactPlanner(FunctionLLM(model), nodes=[search])
    result: list[Any] = []

    async def run() -> None:
        result.append(await planner.run("Where do emperor penguins breed?", steering=inbox))

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await searching.wait()  # the first step's tool call is running
        inbox.push_nowait(
            SteeringEvent(
                SteeringEventType.INJECT_CONTEXT, {"note": "prefer peer-reviewed sources"}
            )
        )
        inbox.push_nowait(
            SteeringEvent(SteeringEventType.REDIRECT, {"goal": "What do emperor penguins eat?"})
        )
    (finish,) = result
    assert isinstance(finish, PlannerFinish)
    applied = [s["event_type"] for s in finish.trajectory.steering_inputs]
    print(f"steering applied: {applied}")
    print(f"answer: {finish.output}")


async def cancel() -> None:
    inbox = SteeringInbox()
    planner = ReactPlanner(FunctionLLM(model), nodes=[search])
    searching_slow = anyio.Event()
    result: list[Any] = []

    async def run() -> None:
        result.append(await planner.run("slow: everything about krill", steering=inbox))
        searching_slow.set()

    global searching
    searching = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await searching.wait()
        started = anyio.current_time()
        inbox.push_nowait(SteeringEvent(SteeringEventType.CANCEL, {"why": "user closed the tab"}))
        await searching_slow.wait()
        took_ms = (anyio.current_time() - started) * 1000
    (finish,) = result
    assert isinstance(finish, PlannerFinish)
    print(f"cancel: reason={finish.reason} error={finish.error!r}")
    in_flight = cancelled_tools == ["slow: everything about krill"]
    print(f"cancel: the tool in flight was cancelled: {in_flight} ({took_ms:.0f} ms after CANCEL)")


async def main() -> None:
    await inject_and_redirect()
    await cancel()
    print("react_steering done")


if __name__ == "__main__":
    asyncio.run(main())
