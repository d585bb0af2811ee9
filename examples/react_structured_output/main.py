"""Structured output: the answer validated into a pydantic model, repaired when it does not fit.

Run it with ``uv run python examples/react_structured_output/main.py``. The model
(``ScriptedLLM``) first answers with a ``Report`` missing a field; the planner sends the
validation errors back (a repair prompt) and the second answer validates.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Literal

from pydantic import BaseModel, Field

from penguiflow.core import tool
from penguiflow.planner import PlannerEventType, PlannerFinish, ReactPlanner, ToolContext
from penguiflow.testkit import ScriptedLLM


class Species(BaseModel):
    """Which species to look up."""

    name: str


class Facts(BaseModel):
    """What the tool knows about it."""

    name: str
    height_cm: int
    status: str


class Report(BaseModel):
    """The shape the answer must have."""

    species: str
    height_cm: int = Field(gt=0)
    status: Literal["least concern", "near threatened", "vulnerable", "endangered"]
    summary: str


@tool(desc="Facts about a penguin species.", side_effects="read")
async def species_facts(args: Species, ctx: ToolContext) -> Facts:
    """A fixed table here."""
    return Facts(name=args.name, height_cm=115, status="near threatened")


def final(answer: dict[str, Any]) -> dict[str, Any]:
    return {"thought": "answer", "next_node": "final_response", "args": {"answer": answer}}


async def main() -> None:
    llm = ScriptedLLM(
        [
            {"thought": "look it up", "next_node": "species_facts", "args": {"name": "emperor"}},
            final({"species": "emperor", "height_cm": 115, "status": "near threatened"}),
            final(
                {
                    "species": "emperor",
                    "height_cm": 115,
                    "status": "near threatened",
                    "summary": "The tallest penguin; breeds in the Antarctic winter.",
                }
            ),
        ]
    )
    repairs: list[str] = []

    def on_event(event: Any) -> None:
        if event.event_type is PlannerEventType.REPAIR_ATTEMPT:
            repairs.append(event.error or "")

    planner = ReactPlanner(llm, nodes=[species_facts], output_type=Report, event_callback=on_event)
    schema = llm_schema(planner.action_format)
    print(f"the planner_action schema asks for the Report fields: {schema}")
    result = await planner.run("Give me a report on emperor penguins")
    assert isinstance(result, PlannerFinish)
    report = result.output
    assert isinstance(report, Report)
    print(
        f"repairs: {len(repairs)} ({'missing summary' if 'summary' in repairs[0] else repairs[0]})"
    )
    print(f"output type: {type(report).__name__}")
    print(
        f"report: species={report.species!r} height_cm={report.height_cm} status={report.status!r}"
    )
    print(f"summary: {report.summary}")
    print(f"as JSON: {report.model_dump_json()}")
    print("react_structured_output done")


def llm_schema(action_format: dict[str, Any]) -> list[str]:
    """The required fields of ``final_response``'s answer in the planner_action schema."""
    text = json.dumps(action_format)
    return sorted(f for f in Report.model_fields if f'"{f}"' in text)


if __name__ == "__main__":
    asyncio.run(main())
