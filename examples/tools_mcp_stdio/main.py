"""An MCP server over stdio as catalog entries: specs, calls, an artifact, errors.

Run it with ``uv run python examples/tools_mcp_stdio/main.py``. Offline: ``server.py`` (an mcp
SDK ``MCPServer``) is spawned by the connector over stdio.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from penguiflow.tools import (
    ArtifactScope,
    ExternalToolConfig,
    ToolArgumentsError,
    ToolCallContext,
    ToolClientError,
    ToolNode,
    TransportType,
)

SERVER = Path(__file__).with_name("server.py")


async def main() -> None:
    config = ExternalToolConfig(
        name="colony",
        transport=TransportType.MCP,
        connection=[sys.executable, str(SERVER)],  # an argv list: stdio
        max_concurrency=4,
        expose_resources=False,  # MCPServer always advertises resources and prompts
        expose_prompts=False,
    )
    async with ToolNode(config) as node:
        for spec in node.specs:
            print(f"spec {spec.name} side_effects={spec.side_effects}")
        census = await node.call("colony.census", {"place": {"colony": "Cape Adare"}})
        print("census ->", census.result)  # the omitted optionals were not sent

        ctx = ToolCallContext(tool_context={"user_id": "ada", "tenant": "acme"})
        report = await node.call("survey_report", {"colony": "Cape Adare"}, ctx=ctx)
        ref = report.artifacts[0]
        print(
            f"artifact: {ref.mime_type}, {ref.size_bytes} bytes, in place of the base64: "
            f"{report.result['result'] == ref}"
        )
        data = await node.artifacts.get(ref.id, scope=ArtifactScope(tenant="acme", user_id="ada"))
        print("artifact bytes start with:", data[:8] if data else None)
        other = await node.artifacts.get(ref.id, scope=ArtifactScope(tenant="acme", user_id="bo"))
        print("another user's scope gets:", other)

        try:
            await node.call("census", {"place": {"region": "no colony"}})
        except ToolArgumentsError as exc:
            print("bad arguments (nothing sent):", exc.errors[0]["loc"], exc.errors[0]["msg"])
        try:
            await node.call("fail", {"reason": "ice too thin"})
        except ToolClientError as exc:
            print("tool error:", type(exc).__name__, exc.message)
        stats = node.statistics()
        print(f"calls={stats.calls} failures={stats.failures} breaker={stats.breaker}")
    print("tools_mcp_stdio done")


if __name__ == "__main__":
    asyncio.run(main())
