"""A local catalog served over MCP (stdio subprocess, streamable HTTP under uvicorn), called by
the mcp SDK's client and by ToolNode; a ToolNode's specs re-served as a gateway."""

import importlib.util
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import mcp
import pytest
import uvicorn
from mcp.client.stdio import StdioServerParameters
from mcp.server.lowlevel import Server

from penguiflow.core import build_catalog
from penguiflow.tools import (
    ExternalToolConfig,
    ToolClientError,
    ToolNode,
    TransportType,
    create_mcp_server,
    mcp_http_app,
    serve_mcp,
)

CATALOG_SCRIPT = Path(__file__).parent / "support" / "catalog_server.py"
Make = Callable[..., ExternalToolConfig]


def _load_catalog() -> ModuleType:
    spec = importlib.util.spec_from_file_location("penguiflow_tools_test_catalog", CATALOG_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def catalog() -> ModuleType:
    return _load_catalog()


def _stdio_params() -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=[str(CATALOG_SCRIPT)])


def _text(result: Any) -> str:
    return "\n".join(getattr(block, "text", "") for block in result.content)


async def test_the_sdk_client_lists_and_calls_a_catalog_served_over_stdio() -> None:
    with anyio.fail_after(60):
        async with mcp.Client(_stdio_params()) as client:
            listed = {t.name: t for t in (await client.list_tools()).tools}
            added = await client.call_tool("add", {"a": 2, "b": 40})
            invalid = await client.call_tool("add", {"a": "x"})
            boom = await client.call_tool("boom", {})
            ask = await client.call_tool("ask", {})
            flaky = await client.call_tool("flaky", {})
            unknown = await client.call_tool("nope", {})
    assert set(listed) == {"add", "split", "sleepy", "boom", "ask", "flaky"}
    add = listed["add"]
    assert add.description == "Add two integers."
    assert add.input_schema["required"] == ["a", "b"]
    assert add.input_schema["properties"]["b"]["description"] == "The second term."
    assert add.output_schema is not None and add.output_schema["required"] == ["total"]
    assert add.annotations is not None
    assert add.annotations.read_only_hint is True and add.annotations.idempotent_hint is True
    boom_tool = listed["boom"].annotations
    assert boom_tool is not None and boom_tool.destructive_hint is True
    assert listed["ask"].annotations is None  # "external": no hints
    assert added.is_error is False
    assert added.structured_content == {"total": 42}
    assert _text(added) == '{"total": 42}'
    assert invalid.is_error is True
    assert _text(invalid).startswith("ToolArgumentsError: invalid arguments for add: [")
    assert '"loc": ["a"]' in _text(invalid) and '"loc": ["b"]' in _text(invalid)
    assert boom.is_error is True and _text(boom) == "RuntimeError: the tool broke"
    assert "Traceback" not in _text(boom)
    assert ask.is_error is True and "needs human input" in _text(ask)
    assert _text(ask).startswith("ToolClientError: ")
    assert flaky.is_error is False  # the node's NodePolicy(max_retries=1) applied
    assert flaky.structured_content == {"text": "attempt 2"}
    assert unknown.is_error is True and _text(unknown).startswith("ToolNotFoundError: ")


async def test_a_tool_node_connects_to_a_catalog_served_over_stdio() -> None:
    config = ExternalToolConfig(
        name="local",
        transport=TransportType.MCP,
        connection=[sys.executable, str(CATALOG_SCRIPT)],
        connect_timeout_s=20,
    )
    with anyio.fail_after(60):
        async with ToolNode(config) as node:
            specs = {spec.name: spec for spec in node.specs}
            added = await node.call("local.add", {"a": 1, "b": 2})
            split = await node.call("local.split", {"text": "a b", "upper": True})
            with pytest.raises(ToolClientError) as failed:
                await node.call("local.boom", {})
    assert set(specs) == {f"local.{n}" for n in ("add", "split", "sleepy", "boom", "ask", "flaky")}
    assert specs["local.add"].side_effects == "read"
    assert specs["local.boom"].side_effects == "write"
    assert specs["local.ask"].side_effects == "external"
    assert added.result == {"total": 3}
    assert split.result == {"words": ["A", "B"]}
    assert "RuntimeError: the tool broke" in str(failed.value)


async def test_serve_mcp_over_http_for_the_sdk_client_and_a_tool_node(
    catalog: ModuleType,
) -> None:
    with anyio.fail_after(60):
        async with serve_mcp(catalog.SPECS, name="local-catalog") as server:
            assert server.url.startswith("http://127.0.0.1:") and server.url.endswith("/mcp")
            async with mcp.Client(server.url) as client:
                names = [t.name for t in (await client.list_tools()).tools]
                added = await client.call_tool("add", {"a": 5, "b": 6})
            config = ExternalToolConfig(
                name="web", transport=TransportType.MCP, connection=server.url
            )
            async with ToolNode(config) as node:
                via_node = await node.call("web.add", {"a": 7, "b": 8})
    assert names == ["add", "split", "sleepy", "boom", "ask", "flaky"]
    assert added.structured_content == {"total": 11}
    assert via_node.result == {"total": 15}


async def test_a_cancelled_request_cancels_the_node(catalog: ModuleType) -> None:
    catalog.CANCELLED["count"] = catalog.STARTED["count"] = 0
    started, cancelled = anyio.Event(), anyio.Event()
    catalog.SIGNALS.update(started=started, cancelled=cancelled)
    with anyio.fail_after(60):
        async with serve_mcp(catalog.SPECS) as server:
            config = ExternalToolConfig(
                name="web", transport=TransportType.MCP, connection=server.url
            )
            async with ToolNode(config) as node:
                with anyio.move_on_after(30) as scope:
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(node.call, "web.sleepy", {"seconds": 30})
                        await started.wait()
                        tg.cancel_scope.cancel()
                assert not scope.cancelled_caught
                await cancelled.wait()  # bounded by fail_after
                after = await node.call("web.add", {"a": 1, "b": 1})  # session still usable
    catalog.SIGNALS.clear()
    assert catalog.CANCELLED["count"] == 1
    assert after.result == {"total": 2}


async def test_a_tool_node_is_re_served_as_a_gateway(stdio: Make) -> None:
    with anyio.fail_after(60):
        async with ToolNode(
            stdio(
                tool_filter=["add", "create_item", "fail"],
                expose_resources=False,
                expose_prompts=False,
            )
        ) as upstream:
            async with serve_mcp(upstream.specs, name="gateway") as server:
                async with mcp.Client(server.url) as client:
                    listed = {t.name: t for t in (await client.list_tools()).tools}
                    direct = await client.call_tool("t.add", {"a": 2, "b": 3})
                config = ExternalToolConfig(
                    name="gw", transport=TransportType.MCP, connection=server.url
                )
                async with ToolNode(config) as gateway:
                    item = await gateway.call(
                        "gw.t.create_item", {"item": {"name": "pen"}, "mode": "fast"}
                    )
                    with pytest.raises(ToolClientError) as failed:
                        await gateway.call("gw.t.fail", {"message": "nope"})
                    bad = await client_call_invalid(server.url)
            stats = upstream.statistics()
    assert set(listed) == {"t.add", "t.create_item", "t.fail"}
    add_annotations = listed["t.add"].annotations
    assert add_annotations is not None and add_annotations.read_only_hint is True
    create_annotations = listed["t.create_item"].annotations
    assert create_annotations is not None and create_annotations.destructive_hint is True
    assert direct.structured_content == {"result": {"result": 5}, "artifacts": []}
    assert item.result["result"] == {
        "name": "pen",
        "tags": [],
        "mode": "fast",
        "note": "none",  # the omitted optional was not sent upstream
    }
    assert "ToolClientError" in str(failed.value) and "nope" in str(failed.value)
    assert bad.is_error is True and "ToolArgumentsError" in _text(bad)
    assert stats.calls == 3  # the invalid call never reached the upstream server


async def client_call_invalid(url: str) -> Any:
    async with mcp.Client(url) as client:
        return await client.call_tool("t.create_item", {"item": {"tags": "x"}, "mode": "slow"})


@pytest.fixture
def threaded_app(catalog: ModuleType) -> Iterator[str]:
    app = mcp_http_app(catalog.SPECS, path="/tools")
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/tools"
    server.should_exit = True
    thread.join(timeout=20)


async def test_mcp_http_app_under_uvicorn_in_a_thread(threaded_app: str) -> None:
    with anyio.fail_after(60):
        async with mcp.Client(threaded_app) as client:
            result = await client.call_tool("split", {"text": "x y z"})
    assert result.structured_content == {"words": ["x", "y", "z"]}


def test_create_mcp_server_is_an_sdk_server_and_rejects_duplicate_names(
    catalog: ModuleType,
) -> None:
    server = create_mcp_server(catalog.SPECS, name="n", version="9.9", instructions="use add")
    assert isinstance(server, Server)
    assert server.name == "n" and server.version == "9.9" and server.instructions == "use add"
    with pytest.raises(ValueError, match="two specs are named 'add'"):
        create_mcp_server([*catalog.SPECS, *build_catalog([catalog.add])])
