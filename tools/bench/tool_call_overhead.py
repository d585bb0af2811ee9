"""MCP tool-call overhead: ``ToolNode.call`` next to the bare ``mcp.Client.call_tool``, same run.

Run ``uv run python tools/bench/tool_call_overhead.py`` (``--calls N`` per batch, ``--batches
N``; default 10 x 200 = 2 000 calls per way and transport). One loopback MCP server per
transport, an SDK ``MCPServer`` with a trivial ``echo`` tool:

* stdio: this script re-run as ``--serve-stdio`` (spawned once by each client);
* streamable HTTP: ``streamable_http_app()`` under uvicorn in a thread of this process.

Interleaved batches of sequential calls (the order rotates per batch), each way once per batch:

* ``sdk``: ``mcp.Client.call_tool("echo", ...)`` on one connected client (the baseline);
* ``tool_node``: ``ToolNode.call("b.echo", ...)`` (validation, breaker, limiter, timeout,
  result mapping) on one connected node;
* ``spec_node``: ``flow.call_node(spec.node, args)`` — the catalog path a planner takes.

A last block serves a one-tool core catalog with ``mcp_http_app`` (penguiflow's MCP serving)
and times the bare SDK client against it next to the same client against ``MCPServer``.

Prints the median µs per call over the batches, the ratios to ``sdk`` (the spec's bounds:
``tool_node`` ≤ 1.2×, ``spec_node`` ≤ 1.25×) and the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Generator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mcp
import uvicorn
from mcp.client.stdio import StdioServerParameters
from pydantic import BaseModel

from penguiflow.core import Node, build_catalog, create, tool
from penguiflow.tools import ExternalToolConfig, ToolNode, TransportType, mcp_http_app

_SELF = str(Path(__file__).resolve())
"""This script, re-run as the stdio server."""


def _sdk_server() -> Any:
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("bench")

    @server.tool()
    def echo(text: str) -> str:
        """Return the text."""
        return text

    return server


class EchoArgs(BaseModel):
    text: str


class EchoOut(BaseModel):
    text: str


@tool(desc="Return the text.")
async def echo(args: EchoArgs, ctx: Any) -> EchoOut:
    return EchoOut(text=args.text)


@contextmanager
def _threaded(app: Any, path: str) -> Generator[str]:
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}{path}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


async def _time(calls: int, one: Callable[[], Awaitable[Any]]) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        await one()
    return (time.perf_counter() - start) / calls * 1e6


async def _interleave(
    ways: dict[str, Callable[[], Awaitable[Any]]], calls: int, batches: int
) -> dict[str, float]:
    for one in ways.values():  # warm-up: connections, caches, first-call imports
        await _time(50, one)
    samples: dict[str, list[float]] = {name: [] for name in ways}
    for batch in range(batches):
        names = list(ways)
        names = names[batch % len(names) :] + names[: batch % len(names)]
        for name in names:
            samples[name].append(await _time(calls, ways[name]))
    return {name: statistics.median(values) for name, values in samples.items()}


async def _transport(server: Any, connection: Any, calls: int, batches: int) -> dict[str, float]:
    config = ExternalToolConfig(
        name="b", transport=TransportType.MCP, connection=connection, connect_timeout_s=30
    )
    async with mcp.Client(server) as client, ToolNode(config) as node:
        spec = node.spec("b.echo")
        flow = create(Node(_sink, name="sink").to())
        args = spec.args_model.model_validate({"text": "hi"})

        async def via_sdk() -> None:
            await client.call_tool("echo", {"text": "hi"})

        async def via_node() -> None:
            await node.call("b.echo", {"text": "hi"})

        async def via_spec() -> None:
            await flow.call_node(spec.node, args)

        return await _interleave(
            {"sdk": via_sdk, "tool_node": via_node, "spec_node": via_spec}, calls, batches
        )


async def _sink(message: object, ctx: object) -> object:
    return message


async def _served(sdk_url: str, served_url: str, calls: int, batches: int) -> dict[str, float]:
    async with mcp.Client(sdk_url) as sdk, mcp.Client(served_url) as served:

        async def via_sdk() -> None:
            await sdk.call_tool("echo", {"text": "hi"})

        async def via_served() -> None:
            await served.call_tool("echo", {"text": "hi"})

        return await _interleave({"sdk": via_sdk, "served": via_served}, calls, batches)


def _report(title: str, medians: dict[str, float], bounds: dict[str, float]) -> None:
    print(title)
    base = medians["sdk"]
    for name, value in medians.items():
        ratio = "" if name == "sdk" else f"  {value / base:5.2f}x"
        bound = f" (bound {bounds[name]}x)" if name in bounds else ""
        print(f"  {name:10s} {value:8.0f} us/call{ratio}{bound}")


async def main(calls: int, batches: int) -> None:
    argv = [sys.executable, _SELF, "--serve-stdio"]
    stdio = await _transport(
        StdioServerParameters(command=argv[0], args=argv[1:]), argv, calls, batches
    )
    sdk_app = _sdk_server().streamable_http_app()
    logging.getLogger().setLevel(logging.WARNING)  # MCPServer sets up INFO logging
    with _threaded(sdk_app, "/mcp") as url:
        http = await _transport(url, url, calls, batches)
        with _threaded(mcp_http_app(build_catalog([echo])), "/mcp") as served_url:
            served = await _served(url, served_url, calls, batches)
    load = os.getloadavg()[0]
    print(f"MCP tool call, {batches} batches x {calls} sequential calls, load {load:.2f}")
    bounds = {"tool_node": 1.2, "spec_node": 1.25}
    _report("stdio", stdio, bounds)
    _report("streamable HTTP", http, bounds)
    _report("serving (bare SDK client; MCPServer vs mcp_http_app of a core catalog)", served, {})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--serve-stdio", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_stdio:
        _sdk_server().run()
    else:
        asyncio.run(main(args.calls, args.batches))
