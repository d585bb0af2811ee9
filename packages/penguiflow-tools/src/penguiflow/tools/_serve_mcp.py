"""Serving a catalog over MCP: core ``NodeSpec``s as the tools of an ``mcp`` SDK server.

Each spec becomes one MCP tool (name, ``desc``, the JSON schemas of ``args_model`` and
``out_model``, annotations from ``side_effects``). A call validates the arguments with the
spec's ``args_model`` and runs the spec's node with ``flow.call_node`` on a private flow, so
the node's ``NodePolicy`` (timeout, retries, concurrency) applies. Served over stdio
(``serve_mcp_stdio``) or streamable HTTP (``mcp_http_app``, ``serve_mcp``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.metadata import version as _dist_version
from typing import Any

import mcp_types as types
from mcp.server.lowlevel import Server
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette

from penguiflow.core import FlowError, Node, NodeSpec, PenguiFlow, create

from ._errors import ToolClientError
from ._types import ToolCallContext
from ._uvicorn import bind, serving

__all__ = ["McpHttpServer", "create_mcp_server", "mcp_http_app", "serve_mcp", "serve_mcp_stdio"]


async def _no_human(reason: str, payload: Mapping[str, Any]) -> Any:
    raise ToolClientError(
        f"the tool needs human input ({reason}), which an MCP client of this server cannot give",
        source="mcp",
    )


async def _sink(message: object, ctx: object) -> object:
    """The private flow's graph (``call_node`` does not use it)."""
    return message


def _annotations(spec: NodeSpec) -> types.ToolAnnotations | None:
    if spec.side_effects in ("pure", "read"):
        return types.ToolAnnotations(read_only_hint=True, idempotent_hint=True)
    if spec.side_effects == "write":
        return types.ToolAnnotations(read_only_hint=False, destructive_hint=True)
    return None


def _tool(spec: NodeSpec) -> types.Tool:
    out_schema = spec.out_schema
    return types.Tool(
        name=spec.name,
        description=spec.desc,
        input_schema=spec.args_schema,
        output_schema=out_schema if out_schema.get("type") == "object" else None,
        annotations=_annotations(spec),
    )


def _error(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=text)], is_error=True)


def _describe(exc: BaseException) -> str:
    """``"Type: message"`` of what failed, without a traceback (a ``FlowError``'s cause)."""
    if isinstance(exc, FlowError) and exc.original_exc is not None:
        exc = exc.original_exc
    return f"{type(exc).__name__}: {exc}"


def _tool_context(ctx: Any) -> dict[str, Any]:
    """The caller's session and request ids, for a node that reads them."""
    context: dict[str, Any] = {}
    session_id: Any = getattr(ctx, "session_id", None)
    if isinstance(session_id, str):
        context["session_id"] = session_id
    request_id: Any = getattr(ctx, "request_id", None)
    if request_id is not None:
        context["mcp_request_id"] = request_id
    return context


def create_mcp_server(
    specs: Sequence[NodeSpec],
    *,
    name: str = "penguiflow",
    version: str | None = None,
    instructions: str | None = None,
) -> Server[Any]:
    """An ``mcp`` SDK low-level server whose tools are ``specs``.

    A call validates its arguments with the spec's ``args_model`` (invalid → an ``isError``
    result carrying the JSON-safe errors; the node is not run), runs the node through
    ``flow.call_node`` on a private flow with a ``ToolCallContext`` whose ``pause`` raises
    ``ToolClientError`` ("needs human input"), and returns the output as JSON in
    ``structured_content`` plus one text block. An exception becomes an ``isError`` result
    ``"Type: message"`` (no traceback). Cancelling the request cancels the node. A
    ``ToolNode``'s specs can be served too (a gateway).

    Args:
        specs: The catalog (e.g. from ``build_catalog``, or ``ToolNode.specs``).
        name: The server name clients see.
        version: The server version (default: penguiflow-tools' version).
        instructions: Instructions for the client's model.

    Raises:
        ValueError: Two specs share a name.
    """
    by_name: dict[str, NodeSpec] = {}
    for spec in specs:
        if spec.name in by_name:
            raise ValueError(f"two specs are named {spec.name!r}; MCP tool names must be unique")
        by_name[spec.name] = spec
    tools = [_tool(spec) for spec in by_name.values()]
    flow: PenguiFlow = create(Node(_sink, name="penguiflow.tools.mcp_sink").to())

    async def list_tools(
        ctx: Any, params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tools)

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        spec = by_name.get(params.name)
        if spec is None:
            return _error(
                f"ToolNotFoundError: no tool named {params.name!r}; tools: {sorted(by_name)}"
            )
        try:
            args = spec.args_model.model_validate(params.arguments or {})
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_context=False, include_input=False)
            return _error(
                f"ToolArgumentsError: invalid arguments for {spec.name}: "
                + json.dumps(json.loads(json.dumps(errors, default=str)))
            )
        call_ctx = ToolCallContext(tool_context=_tool_context(ctx), pause=_no_human)
        try:
            output = await flow.call_node(spec.node, args, call_ctx)
            model: BaseModel = spec.out_model.model_validate(output)
            value: dict[str, Any] = model.model_dump(mode="json", by_alias=True)
        except Exception as exc:
            return _error(_describe(exc))
        return types.CallToolResult(
            content=[types.TextContent(text=json.dumps(value))], structured_content=value
        )

    return Server(
        name,
        version=version or _dist_version("penguiflow-tools"),
        instructions=instructions,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


def _http_app(server: Server[Any], path: str, host: str) -> Starlette:
    return server.streamable_http_app(streamable_http_path=path, host=host)


def mcp_http_app(
    specs: Sequence[NodeSpec],
    *,
    path: str = "/mcp",
    name: str = "penguiflow",
    version: str | None = None,
    instructions: str | None = None,
) -> Starlette:
    """A Starlette app serving ``specs`` over MCP streamable HTTP at ``path``.

    The app's lifespan runs the SDK's session manager: serve it with a lifespan-aware ASGI
    server (uvicorn does). DNS-rebinding protection admits ``127.0.0.1``/``localhost`` hosts.

    Raises:
        ValueError: Two specs share a name.
    """
    server = create_mcp_server(specs, name=name, version=version, instructions=instructions)
    return _http_app(server, path, "127.0.0.1")


async def serve_mcp_stdio(
    specs: Sequence[NodeSpec],
    *,
    name: str = "penguiflow",
    version: str | None = None,
    instructions: str | None = None,
) -> None:
    """Serve ``specs`` over MCP on this process's stdin/stdout until the client disconnects.

    Run it as a process a client spawns (``anyio.run(serve_mcp_stdio, specs)``); while it
    serves, stray prints of the tools go to stderr, not the wire.

    Raises:
        ValueError: Two specs share a name.
    """
    from mcp.server.stdio import stdio_server

    server = create_mcp_server(specs, name=name, version=version, instructions=instructions)
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


@dataclass(frozen=True, slots=True)
class McpHttpServer:
    """A running MCP server over streamable HTTP (from ``serve_mcp``)."""

    url: str
    """The MCP endpoint (``http://host:port/mcp``), the ``connection`` of a ``ToolNode``."""
    app: Starlette
    """The ASGI app."""


@asynccontextmanager
async def serve_mcp(
    specs: Sequence[NodeSpec],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    path: str = "/mcp",
    name: str = "penguiflow",
    version: str | None = None,
    instructions: str | None = None,
) -> AsyncGenerator[McpHttpServer]:
    """Serve ``specs`` over MCP streamable HTTP with uvicorn in the current event loop.

    ``port=0`` picks a free port (``server.url`` has it). Leaving the block stops the server.

    Raises:
        ValueError: Two specs share a name.
        RuntimeError: The server did not start.
    """
    server = create_mcp_server(specs, name=name, version=version, instructions=instructions)
    sock, base = bind(host, port)
    app = _http_app(server, path, host)
    async with serving(app, sock, f"the MCP server at {base}"):
        yield McpHttpServer(url=f"{base}{path}", app=app)
