"""A ReactPlanner calls a remote MCP tool through penguiflow-tools' NodeSpecs."""

import json
import sys
from pathlib import Path
from typing import Any, cast

import anyio

from penguiflow.planner import PlannerFinish, ReactPlanner
from penguiflow.testkit import ScriptedLLM
from penguiflow.tools import ExternalToolConfig, ToolNode, TransportType

SERVER = (
    Path(__file__).resolve().parents[1]
    / "packages"
    / "penguiflow-tools"
    / "tests"
    / "support"
    / "mcp_server.py"
)


def act(node: str, **args: Any) -> dict[str, Any]:
    return {"thought": "", "next_node": node, "args": args}


async def test_the_planner_calls_a_remote_mcp_tool() -> None:
    config = ExternalToolConfig(
        name="calc",
        transport=TransportType.MCP,
        connection=[sys.executable, str(SERVER)],
        tool_filter=["add", "create_item"],
        connect_timeout_s=20,
    )
    llm = ScriptedLLM(
        [
            act("calc.add", a=2, b=40),
            act("calc.create_item", item={"name": "pen"}, mode="fast"),
            act("final_response", answer="42"),
        ]
    )
    with anyio.fail_after(60):
        async with ToolNode(config) as node:
            planner = ReactPlanner(llm, catalog=list(node.specs))
            result = await planner.run("what is 2 + 40?")
            stats = node.statistics()
    assert isinstance(result, PlannerFinish)
    finish = cast(PlannerFinish[Any], result)
    assert finish.output == "42"
    steps = finish.trajectory.steps
    assert [s.action["next_node"] for s in steps] == [
        "calc.add",
        "calc.create_item",
        "final_response",
    ]
    assert steps[0].error is None
    assert json.loads(json.dumps(steps[0].observation))["result"] == {"result": 42}
    assert steps[1].observation["result"]["note"] == "none"  # omitted optional not sent
    assert stats.calls == 2 and stats.failures == 0
    llm.assert_exhausted()
