"""Record a ReactPlanner run to a cassette, then replay it without the model or the tools.

Run it with ``uv run python examples/react_replay/main.py``.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from penguiflow.core import build_catalog, tool
from penguiflow.planner import PlannerFinish, ReactPlanner
from penguiflow.testkit import Cassette, ScriptedLLM

TOOL_CALLS: list[str] = []
"""Every time a real tool function runs."""


class Lookup(BaseModel):
    city: str


class Weather(BaseModel):
    city: str
    celsius: float


class Convert(BaseModel):
    celsius: float


class Fahrenheit(BaseModel):
    fahrenheit: float


@tool(desc="Today's temperature in a city.", side_effects="read")
async def weather(args: Lookup, ctx: Any) -> Weather:
    TOOL_CALLS.append("weather")
    return Weather(city=args.city, celsius=-12.5)  # pretend this called a weather service


@tool(desc="Convert Celsius to Fahrenheit.")
async def to_fahrenheit(args: Convert, ctx: Any) -> Fahrenheit:
    TOOL_CALLS.append("to_fahrenheit")
    return Fahrenheit(fahrenheit=args.celsius * 9 / 5 + 32)


QUESTION = "How cold is it in Ushuaia, in Fahrenheit?"
ANSWER = "It is 9.5 degrees Fahrenheit in Ushuaia."
SCRIPT: list[Any] = [  # what a real model would answer; ScriptedLLM stands in for it here
    {"thought": "look it up", "next_node": "weather", "args": {"city": "Ushuaia"}},
    {"thought": "convert", "next_node": "to_fahrenheit", "args": {"celsius": -12.5}},
    {"next_node": "final_response", "args": {"answer": ANSWER}},
]


async def record(path: Path) -> PlannerFinish[str]:
    """Run once against the "real" model and tools, recording every call."""
    cassette = Cassette(path)
    catalog = build_catalog([weather, to_fahrenheit])
    planner = ReactPlanner(
        cassette.record_llm(ScriptedLLM(SCRIPT)), catalog=cassette.record_tools(catalog)
    )
    result = await planner.run(QUESTION)
    cassette.save()
    assert isinstance(result, PlannerFinish)
    return result


async def replay(path: Path) -> PlannerFinish[str]:
    """Run again from the cassette alone: no model, no tool function is called."""
    cassette = Cassette.load(path)
    catalog = build_catalog([weather, to_fahrenheit])
    planner = ReactPlanner(cassette.replay_llm(), catalog=cassette.replay_tools(catalog))
    result = await planner.run(QUESTION)
    assert isinstance(result, PlannerFinish)
    return result


async def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "ushuaia.json"
        recorded = await record(path)
        cassette = Cassette.load(path)
        print(
            f"recorded: {recorded.reason}: {recorded.output!r} "
            f"({cassette.recorded_llm_calls} LLM calls, {cassette.recorded_tool_calls} tool calls, "
            f"{path.stat().st_size} bytes)"
        )
        calls_before = len(TOOL_CALLS)
        replayed = await replay(path)
        print(f"replayed: {replayed.reason}: {replayed.output!r}")
        print(f"outputs match: {replayed.output == recorded.output}")
        print(f"tool calls during the replay: {len(TOOL_CALLS) - calls_before}")
    print("react_replay done")


if __name__ == "__main__":
    asyncio.run(main())
