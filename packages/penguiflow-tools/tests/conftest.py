"""Real MCP servers for the connector tests: the support server over stdio and over HTTP.

The HTTP server runs the same ``MCPServer`` under uvicorn in a thread, behind an ASGI gate
that counts ``tools/call`` requests per tool, records the credentials each JSON-RPC request
arrived with, and can force HTTP statuses in front of a tool.
"""

import importlib.util
import json
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import pytest
import uvicorn

from penguiflow.tools import ExternalToolConfig, TransportType

SERVER_SCRIPT = Path(__file__).parent / "support" / "mcp_server.py"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def stdio_config(**overrides: Any) -> ExternalToolConfig:
    values: dict[str, Any] = {
        "name": "t",
        "transport": TransportType.MCP,
        "connection": [sys.executable, str(SERVER_SCRIPT)],
        "connect_timeout_s": 20.0,
    }
    values.update(overrides)
    return ExternalToolConfig(**values)


@pytest.fixture
def stdio() -> Callable[..., ExternalToolConfig]:
    return stdio_config


def _load_server_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("penguiflow_tools_test_server", SERVER_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Seen:
    """One JSON-RPC request as the server received it."""

    method: str
    tool: str | None
    arguments: dict[str, Any]
    authorization: str | None
    api_key: str | None


@dataclass
class Gate:
    """Counts tool calls reaching the server and forces statuses in front of tools."""

    app: Any
    calls: dict[str, int] = field(default_factory=dict[str, int])
    forced: dict[str, list[tuple[int, dict[str, str]]]] = field(
        default_factory=dict[str, list[tuple[int, dict[str, str]]]]
    )
    url: str = ""
    seen: list[Seen] = field(default_factory=list[Seen])

    def force(self, tool: str, *statuses: int, retry_after: str | None = None) -> None:
        headers = {"retry-after": retry_after} if retry_after is not None else {}
        self.forced.setdefault(tool, []).extend((s, headers) for s in statuses)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        tool: str | None = None
        try:
            parsed: Any = json.loads(body)
            if isinstance(parsed, dict) and parsed.get("method") == "tools/call":  # pyright: ignore[reportUnknownMemberType]
                tool = str(parsed["params"]["name"])  # pyright: ignore[reportUnknownArgumentType]
        except (ValueError, KeyError, TypeError):
            parsed = None
        if isinstance(parsed, dict):
            request = cast(dict[str, Any], parsed)
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            params: Any = request.get("params")
            arguments: Any = params.get("arguments") if isinstance(params, dict) else None  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
            self.seen.append(
                Seen(
                    method=str(request.get("method")),
                    tool=tool,
                    arguments=cast(dict[str, Any], arguments)
                    if isinstance(arguments, dict)
                    else {},
                    authorization=headers.get("authorization"),
                    api_key=headers.get("x-api-key"),
                )
            )
        if tool is not None:
            self.calls[tool] = self.calls.get(tool, 0) + 1
            pending = self.forced.get(tool)
            if pending:
                status, headers = pending.pop(0)
                raw = [(k.encode(), v.encode()) for k, v in headers.items()]
                raw.append((b"content-type", b"text/plain"))
                await send({"type": "http.response.start", "status": status, "headers": raw})
                await send({"type": "http.response.body", "body": b"forced"})
                return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


@pytest.fixture(scope="session")
def http_server() -> Iterator[tuple[Gate, ModuleType]]:
    module = _load_server_module()
    gate = Gate(module.server.streamable_http_app())
    config = uvicorn.Config(gate, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    gate.url = f"http://127.0.0.1:{port}/mcp"
    yield gate, module
    server.should_exit = True
    thread.join(timeout=20)


@pytest.fixture(scope="session")
def sse_url() -> Iterator[str]:
    module = _load_server_module()
    config = uvicorn.Config(
        module.server.sse_app(), host="127.0.0.1", port=0, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/sse"
    server.should_exit = True
    thread.join(timeout=20)


@pytest.fixture
def gate(http_server: tuple[Gate, ModuleType]) -> Gate:
    gate, _ = http_server
    gate.calls.clear()
    gate.forced.clear()
    gate.seen.clear()
    return gate


@pytest.fixture
def http_config(gate: Gate) -> Callable[..., ExternalToolConfig]:
    def make(**overrides: Any) -> ExternalToolConfig:
        values: dict[str, Any] = {
            "name": "h",
            "transport": TransportType.MCP,
            "connection": gate.url,
            "retry_policy": {"wait_exponential_min_s": 0.0, "wait_exponential_max_s": 0.0},
        }
        values.update(overrides)
        return ExternalToolConfig(**values)

    return make
