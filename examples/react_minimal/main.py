"""ReactPlanner, minimal: one tool, a scripted model, one run.

Run it with ``uv run python examples/react_minimal/main.py``. No key, no server: ``ScriptedLLM``
plays the model (it asks for ``get_weather``, then answers).
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

from penguiflow.core import tool
from penguiflow.planner import PlannerFinish, ReactPlanner, ToolContext
from penguiflow.testkit import ScriptedLLM


class City(BaseModel):
    """Which city."""

    city: str


class Weather(BaseModel):
    """Its weather."""

    city: str
    celsius: float
    sky: str


@tool(desc="Current weather of a city.", side_effects="read")
async def get_weather(args: City, ctx: ToolContext) -> Weather:
    """Look up the weather (a fixed table here)."""
    return Weather(city=args.city, celsius=-18.5, sky="clear")


async def main() -> None:
    llm = ScriptedLLM(
        [
            {
                "thought": "I need the weather",
                "next_node": "get_weather",
                "args": {"city": "McMurdo"},
            },
            {
                "thought": "I can answer",
                "next_node": "final_response",
                "args": {"answer": "McMurdo: -18.5 °C under a clear sky.", "confidence": 0.9},
            },
        ]
    )
    planner = ReactPlanner(llm, nodes=[get_weather])
    print("tools the model sees:", sorted(planner.visible_tools))
    result = await planner.run("What's the weather at McMurdo?")
    assert isinstance(result, PlannerFinish)
    print(f"reason: {result.reason}")
    print(f"answer: {result.output}")
    for step in result.trajectory.steps:
        print(f"  step {step.index}: {step.action['next_node']} -> {step.observation}")
    usage = result.usage
    print(
        f"usage: {usage.llm_calls} LLM calls, {usage.tool_calls} tool call, "
        f"{usage.total_tokens} tokens"
    )
    print("system prompt starts:", llm.calls[0].messages[0]["content"].splitlines()[0])
    llm.assert_exhausted()
    print("react_minimal done")


if __name__ == "__main__":
    asyncio.run(main())
