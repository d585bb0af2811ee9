"""A ReactPlanner calling the tools of an MCP server, like local tools.

Run it with ``uv run python examples/tools_mcp_planner/main.py``. Offline: ``server.py`` (an mcp
SDK server) is spawned over stdio by a ``ToolNode``, and ``ScriptedLLM`` plays the model.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from penguiflow.planner import PlannerFinish, ReactPlanner
from penguiflow.testkit import ScriptedLLM
from penguiflow.tools import ExternalToolConfig, ToolNode, TransportType

SERVER = Path(__file__).with_name("server.py")


async def main() -> None:
    config = ExternalToolConfig(
        name="colony",  # spec names are "colony.<remote tool>"
        transport=TransportType.MCP,
        connection=[sys.executable, str(SERVER)],  # stdio
        max_concurrency=4,
        expose_resources=False,  # MCPServer advertises resources and prompts; keep tools only
        expose_prompts=False,
    )
    llm = ScriptedLLM(
        [
            {
                "thought": "look it up",
                "next_node": "colony.colony_size",
                "args": {"colony": "Cape Adare"},
            },
            {
                "thought": "record it",
                "next_node": "colony.log_sighting",
                "args": {"colony": "Cape Adare", "count": 338231},
            },
            {
                "thought": "done",
                "next_node": "final_response",
                "args": {"answer": "Cape Adare has 338231 breeding pairs."},
            },
        ]
    )
    async with ToolNode(config) as node:
        for spec in node.specs:
            print(f"spec {spec.name} side_effects={spec.side_effects}")
        planner = ReactPlanner(llm, catalog=list(node.specs))
        result = await planner.run("How many Adélie pairs breed at Cape Adare? Log it.")
        stats = node.statistics()
    assert isinstance(result, PlannerFinish)
    for step in result.trajectory.steps:
        print(f"step {step.index}: {step.action['next_node']} -> {step.observation}")
    print(f"answer: {result.output}")
    print(f"calls={stats.calls} failures={stats.failures}")
    llm.assert_exhausted()
    print("tools_mcp_planner done")


if __name__ == "__main__":
    asyncio.run(main())
