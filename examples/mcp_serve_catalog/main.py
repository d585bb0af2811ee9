"""Serving local tools over MCP (stdio and streamable HTTP), connected back with ToolNode.

Run it with ``uv run python examples/mcp_serve_catalog/main.py``. Offline: the stdio server is
this script re-run with ``--serve-stdio``; the HTTP server is uvicorn on 127.0.0.1 (a free port).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import mcp
from pydantic import BaseModel

from penguiflow.core import NodePolicy, build_catalog, tool
from penguiflow.tools import (
    ExternalToolConfig,
    ToolClientError,
    ToolNode,
    TransportType,
    serve_mcp,
    serve_mcp_stdio,
)


class Pair(BaseModel):
    a: int
    b: int


class Total(BaseModel):
    total: int


class Reading(BaseModel):
    station: str


class Forecast(BaseModel):
    station: str
    celsius: float


@tool(desc="Add two integers.", side_effects="pure")
async def add(args: Pair, ctx: Any) -> Total:
    return Total(total=args.a + args.b)


@tool(
    desc="The temperature at a station.",
    side_effects="read",
    policy=NodePolicy(timeout_s=2.0),  # applies when served: calls go through flow.call_node
)
async def temperature(args: Reading, ctx: Any) -> Forecast:
    if args.station != "McMurdo":
        raise LookupError(f"unknown station {args.station!r}")
    return Forecast(station=args.station, celsius=-18.5)


SPECS = build_catalog([add, temperature])


async def over_stdio() -> None:
    config = ExternalToolConfig(
        name="local",
        transport=TransportType.MCP,
        connection=[sys.executable, __file__, "--serve-stdio"],
    )
    async with ToolNode(config) as node:
        print("stdio specs:", [f"{s.name}({s.side_effects})" for s in node.specs])
        result = await node.call("local.add", {"a": 2, "b": 40})
        print("stdio local.add ->", result.result)
        try:
            await node.call("local.temperature", {"station": "Vostok"})
        except ToolClientError as exc:
            print("stdio error ->", type(exc).__name__, str(exc).split("\n")[0])


async def over_http() -> None:
    async with serve_mcp(SPECS, name="weather") as server:
        print("serving on", server.url.rsplit(":", 1)[0] + ":<port>/mcp")
        async with mcp.Client(server.url) as client:  # the mcp SDK's own client
            tools = await client.list_tools()
            print("sdk client sees:", [t.name for t in tools.tools])
            reply = await client.call_tool("temperature", {"station": "McMurdo"})
            print("sdk client temperature ->", reply.structured_content)
            bad = await client.call_tool("add", {"a": "two"})
            print("sdk client bad args -> is_error", bad.is_error)
        config = ExternalToolConfig(name="web", transport=TransportType.MCP, connection=server.url)
        async with ToolNode(config) as node:
            result = await node.call("web.temperature", {"station": "McMurdo"})
            print("http web.temperature ->", result.result)


async def main() -> None:
    await over_stdio()
    await over_http()
    print("mcp_serve_catalog done")


if __name__ == "__main__":
    if "--serve-stdio" in sys.argv:
        asyncio.run(serve_mcp_stdio(SPECS, name="local-tools"))
    else:
        asyncio.run(main())
