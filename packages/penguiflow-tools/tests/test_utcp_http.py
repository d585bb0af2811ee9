"""UTCP sources against a real HTTP server on 127.0.0.1 (utcp + utcp-http, no mocks).

A Starlette app under uvicorn in a thread serves an OpenAPI document (converted by utcp-http),
a UTCP manual whose tool declares variables and bearer auth, an empty document, and the
endpoints; it counts requests per operation and can force statuses in front of one.
"""

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.to_thread
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from penguiflow.tools import (
    AuthType,
    ExternalToolConfig,
    InMemoryTokenStore,
    OAuthManager,
    OAuthProviderConfig,
    OAuthToken,
    ToolAuthError,
    ToolAuthRequired,
    ToolCallContext,
    ToolConnectionError,
    ToolNode,
    ToolServerError,
    TransportType,
)


@dataclass
class Api:
    url: str = ""
    hits: dict[str, int] = field(default_factory=dict[str, int])
    forced: dict[str, list[int]] = field(default_factory=dict[str, list[int]])
    seen: list[dict[str, Any]] = field(default_factory=list[dict[str, Any]])
    in_flight: int = 0
    peak: int = 0
    full: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def hit(self, op: str) -> Response | None:
        self.hits[op] = self.hits.get(op, 0) + 1
        pending = self.forced.get(op)
        if pending:
            return PlainTextResponse("forced", status_code=pending.pop(0))
        return None


def _openapi(base: str) -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {"title": "items", "version": "1.0.0"},
        "servers": [{"url": base}],
        "paths": {
            "/items/{item_id}": {
                "get": {
                    "operationId": "get_item",
                    "summary": "Read one item.",
                    "parameters": [
                        {
                            "name": "item_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                        {"name": "verbose", "in": "query", "schema": {"type": "boolean"}},
                    ],
                    "responses": {"200": {"description": "the item"}},
                }
            },
            "/items": {
                "post": {
                    "operationId": "create_item",
                    "summary": "Create an item.",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {"name": {"type": "string"}},
                                    "required": ["name"],
                                }
                            }
                        },
                    },
                    "responses": {"200": {"description": "created"}},
                }
            },
        },
    }


def _manual(base: str) -> dict[str, Any]:
    return {
        "utcp_version": "1.0.1",
        "manual_version": "1.0.0",
        "tools": [
            {
                "name": "whoami",
                "description": "Echo the region, tenant and credentials a call arrived with.",
                "inputs": {"type": "object", "properties": {"q": {"type": "string"}}},
                "outputs": {"type": "object"},
                "tags": ["demo"],
                "tool_call_template": {
                    "call_template_type": "http",
                    "name": "m",
                    "url": base + "/echo/${REGION}",
                    "http_method": "GET",
                    "headers": {"X-Tenant": "${TENANT}"},
                    "auth": {
                        "auth_type": "api_key",
                        "api_key": "Bearer ${AUTH_TOKEN}",
                        "var_name": "Authorization",
                        "location": "header",
                    },
                },
            }
        ],
    }


def _keyed_manual(base: str) -> dict[str, Any]:
    return {
        "utcp_version": "1.0.1",
        "manual_version": "1.0.0",
        "tools": [
            {
                "name": "keyed",
                "description": "Echo the API key a call arrived with.",
                "inputs": {"type": "object", "properties": {}},
                "outputs": {"type": "object"},
                "tool_call_template": {
                    "call_template_type": "http",
                    "name": "k",
                    "url": base + "/keyed",
                    "http_method": "GET",
                    "auth": {
                        "auth_type": "api_key",
                        "api_key": "${API_KEY}",
                        "var_name": "X-API-Key",
                        "location": "header",
                    },
                },
            },
            {
                "name": "plain",
                "description": "Answer with text (JSON) or plain text.",
                "inputs": {"type": "object", "properties": {"json": {"type": "boolean"}}},
                "outputs": {"type": "string"},
                "tool_call_template": {
                    "call_template_type": "http",
                    "name": "p",
                    "url": base + "/plain",
                    "http_method": "GET",
                },
            },
            {
                "name": "hold",
                "description": "Wait until released.",
                "inputs": {"type": "object", "properties": {"limit": {"type": "integer"}}},
                "tool_call_template": {
                    "call_template_type": "http",
                    "name": "h",
                    "url": base + "/hold",
                    "http_method": "GET",
                },
            },
        ],
    }


def _app(api: Api) -> Starlette:
    async def openapi(request: Request) -> Response:
        return JSONResponse(_openapi(api.url))

    async def manual(request: Request) -> Response:
        return JSONResponse(_manual(api.url))

    async def keyed_manual(request: Request) -> Response:
        return JSONResponse(_keyed_manual(api.url))

    async def keyed(request: Request) -> Response:
        forced = api.hit("keyed")
        if forced is not None:
            return forced
        return JSONResponse({"api_key": request.headers.get("x-api-key")})

    async def hold(request: Request) -> Response:
        api.in_flight += 1  # the server's own loop: no lock needed
        api.peak = max(api.peak, api.in_flight)
        if api.in_flight >= int(request.query_params["limit"]):
            api.full.set()
        try:
            await anyio.to_thread.run_sync(api.release.wait, 30)
        finally:
            api.in_flight -= 1
        return JSONResponse({"held": True})

    async def plain(request: Request) -> Response:
        if request.query_params.get("json") == "true":
            return JSONResponse({"n": 3, "items": [1, 2]})
        return PlainTextResponse("hello penguin")

    async def empty(request: Request) -> Response:
        return JSONResponse({"openapi": "3.0.3", "info": {"title": "e", "version": "1"}})

    async def get_item(request: Request) -> Response:
        forced = api.hit("get_item")
        if forced is not None:
            return forced
        api.seen.append(dict(request.headers))
        item_id = request.path_params["item_id"]
        return JSONResponse({"id": item_id, "verbose": request.query_params.get("verbose")})

    async def create_item(request: Request) -> Response:
        forced = api.hit("create_item")
        if forced is not None:
            return forced
        return JSONResponse({"created": await request.json()})

    async def echo(request: Request) -> Response:
        forced = api.hit("whoami")
        if forced is not None:
            return forced
        return JSONResponse(
            {
                "region": request.path_params["region"],
                "tenant": request.headers.get("x-tenant"),
                "authorization": request.headers.get("authorization"),
                "q": request.query_params.get("q"),
            }
        )

    return Starlette(
        routes=[
            Route("/openapi.json", openapi),
            Route("/utcp.json", manual),
            Route("/empty.json", empty),
            Route("/utcp-key.json", keyed_manual),
            Route("/keyed", keyed, methods=["GET"]),
            Route("/plain", plain, methods=["GET"]),
            Route("/hold", hold, methods=["GET"]),
            Route("/items/{item_id}", get_item, methods=["GET"]),
            Route("/items", create_item, methods=["POST"]),
            Route("/echo/{region}", echo, methods=["GET"]),
        ]
    )


@pytest.fixture(scope="module")
def server() -> Iterator[Api]:
    api = Api()
    config = uvicorn.Config(_app(api), host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    api.url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    yield api
    server.should_exit = True
    thread.join(timeout=20)


@pytest.fixture
def api(server: Api) -> Api:
    server.hits.clear()
    server.forced.clear()
    server.seen.clear()
    return server


@pytest.fixture
def utcp_config(api: Api) -> Callable[..., ExternalToolConfig]:
    def make(path: str = "/openapi.json", **overrides: Any) -> ExternalToolConfig:
        values: dict[str, Any] = {
            "name": "my-api",
            "transport": TransportType.UTCP,
            "connection": api.url + path,
            "retry_policy": {"wait_exponential_min_s": 0.0, "wait_exponential_max_s": 0.0},
        }
        values.update(overrides)
        return ExternalToolConfig(**values)

    return make


async def test_openapi_discovery_names_specs_without_the_utcp_manual_prefix(
    utcp_config: Callable[..., ExternalToolConfig],
) -> None:
    async with ToolNode(utcp_config()) as node:
        specs = {s.name: s for s in node.specs}
        assert set(specs) == {"my-api.get_item", "my-api.create_item"}
        get = specs["my-api.get_item"]
        assert get.side_effects == "external"
        assert get.extra["source"] == "utcp"
        assert get.extra["namespace"] == "my-api"
        assert get.extra["remote_name"] == "get_item"
        assert get.tags[:2] == ("utcp", "my-api")
        assert "item_id" in get.args_model.model_fields
        assert node.spec("get_item") is get


async def test_tool_filter_fullmatches_the_remote_name(
    utcp_config: Callable[..., ExternalToolConfig],
) -> None:
    async with ToolNode(utcp_config(tool_filter=["get_item"])) as node:
        assert [s.name for s in node.specs] == ["my-api.get_item"]


async def test_a_get_and_a_post_end_to_end(
    api: Api, utcp_config: Callable[..., ExternalToolConfig]
) -> None:
    async with ToolNode(utcp_config(headers={"X-Extra": "yes"})) as node:
        got = await node.call("my-api.get_item", {"item_id": "42", "verbose": True})
        assert got.result["id"] == "42"
        assert got.result["verbose"] == "true"  # a bool query value (aiohttp refuses bools)
        assert api.seen[-1].get("x-extra") == "yes"  # the config's headers reach tool calls
        created = await node.call("create_item", {"body": {"name": "pen"}})
        assert created.result == {"created": {"name": "pen"}}
        # the spec's node takes the same path
        spec = node.spec("get_item")
        via_node = await spec.node.func({"item_id": "7"}, None)
        assert via_node.result["id"] == "7"
        assert api.hits == {"get_item": 2, "create_item": 1}


@pytest.mark.parametrize(
    "op,args", [("get_item", {"item_id": "1"}), ("create_item", {"body": {"name": "x"}})]
)
async def test_503_is_retried_for_get_and_post(
    api: Api, utcp_config: Callable[..., ExternalToolConfig], op: str, args: dict[str, Any]
) -> None:
    api.forced[op] = [503, 503]
    async with ToolNode(utcp_config()) as node:
        result = await node.call(op, args)
        assert result.result is not None
        assert api.hits[op] == 3
        assert node.statistics().retries == 2


async def test_500_is_retried_for_get_only(
    api: Api, utcp_config: Callable[..., ExternalToolConfig]
) -> None:
    api.forced["get_item"] = [500]
    api.forced["create_item"] = [500]
    async with ToolNode(utcp_config()) as node:
        assert (await node.call("get_item", {"item_id": "1"})).result["id"] == "1"
        assert api.hits["get_item"] == 2
        with pytest.raises(ToolServerError) as caught:
            await node.call("create_item", {"body": {"name": "x"}})
        assert api.hits["create_item"] == 1
        assert caught.value.status_code == 500
        assert caught.value.attempts == 1
        assert caught.value.retryable is False


async def test_exhausted_retries_raise_the_last_error_with_attempts(
    api: Api, utcp_config: Callable[..., ExternalToolConfig]
) -> None:
    api.forced["get_item"] = [503, 503, 503]
    async with ToolNode(utcp_config()) as node:
        with pytest.raises(ToolServerError) as caught:
            await node.call("get_item", {"item_id": "1"})
        assert caught.value.attempts == 3
        assert caught.value.status_code == 503


async def test_variables_and_bearer_token_are_substituted_into_url_and_headers(
    api: Api, utcp_config: Callable[..., ExternalToolConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PF_TEST_UTCP_TOKEN", "tok-1")
    config = utcp_config(
        "/utcp.json",
        name="u",
        variables={"REGION": "${PF_TEST_UTCP_REGION:-eu-west}", "TENANT": "acme"},
        auth_type="bearer",
        auth_config={"token": "${PF_TEST_UTCP_TOKEN}"},
    )
    async with ToolNode(config) as node:
        spec = node.spec("u.whoami")
        assert spec.tags == ("utcp", "u", "demo")
        result = await node.call("whoami", {"q": "hi"})
        assert result.result == {
            "region": "eu-west",
            "tenant": "acme",
            "authorization": "Bearer tok-1",
            "q": "hi",
        }
        assert "tok-1" not in repr(config)


async def test_an_unreachable_or_empty_manual_fails_connect(
    utcp_config: Callable[..., ExternalToolConfig],
) -> None:
    with pytest.raises(ToolConnectionError, match="no tools"):
        await ToolNode(utcp_config("/empty.json")).connect()
    refused = ExternalToolConfig(
        name="gone", transport=TransportType.UTCP, connection="http://127.0.0.1:1/openapi.json"
    )
    with pytest.raises(ToolConnectionError, match="127.0.0.1:1"):
        await ToolNode(refused).connect()


async def test_refresh_loads_the_manual_again(
    utcp_config: Callable[..., ExternalToolConfig],
) -> None:
    async with ToolNode(utcp_config()) as node:
        before = [s.name for s in node.specs]
        after = [s.name for s in await node.refresh()]
        assert before == after
        assert node.statistics().reconnects == 0
        assert (await node.call("get_item", {"item_id": "9"})).result["id"] == "9"


def test_constructing_a_utcp_node_restores_the_root_logger() -> None:
    code = (
        "import json, logging, sys, penguiflow.tools as t; "
        "assert 'utcp' not in sys.modules; "
        "t.ToolNode(t.ExternalToolConfig(name='x', transport='utcp', "
        "connection='http://127.0.0.1:1/m.json')); "
        "root = logging.getLogger(); "
        "print(json.dumps(['utcp' in sys.modules, len(root.handlers), root.level]))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(completed.stdout) == [True, 0, 30]


async def test_api_key_is_resolved_per_call_and_never_in_errors(
    api: Api, utcp_config: Callable[..., ExternalToolConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PF_TEST_UTCP_KEY", "key-s3cret")
    config = utcp_config(
        "/utcp-key.json",
        name="k",
        auth_type=AuthType.API_KEY,
        auth_config={"api_key": "${PF_TEST_UTCP_KEY}"},
    )
    assert "key-s3cret" not in repr(config)
    async with ToolNode(config) as node:
        assert (await node.call("keyed", {})).result == {"api_key": "key-s3cret"}
        api.forced["keyed"] = [401]
        with pytest.raises(ToolAuthError) as caught:
            await node.call("keyed", {})
        assert caught.value.status_code == 401
        assert caught.value.attempts == 1  # auth failures are never retried
        assert "key-s3cret" not in str(caught.value)
        assert "key-s3cret" not in json.dumps(caught.value.to_payload())
        assert "key-s3cret" not in repr(node.statistics())


async def test_each_users_oauth_token_is_resolved_per_call(
    api: Api, utcp_config: Callable[..., ExternalToolConfig]
) -> None:
    store = InMemoryTokenStore()
    idp = "https://idp.invalid"  # never contacted: the tokens do not expire
    oauth = OAuthManager(
        [OAuthProviderConfig("idp", f"{idp}/a", f"{idp}/t", "client", f"{idp}/cb")],
        token_store=store,
    )
    for user in ("ann", "bob", "cy"):
        await store.store(user, "idp", OAuthToken(f"tok-{user}"), tenant="acme")
    config = utcp_config(
        "/utcp.json",
        name="u",
        variables={"REGION": "eu", "TENANT": "acme"},
        auth_type=AuthType.OAUTH2_USER,
        auth_config={"provider": "idp"},
    )
    seen: dict[str, list[str]] = {}

    async def one(user: str) -> None:
        ctx = ToolCallContext(tool_context={"user_id": user, "tenant": "acme"})
        result = await node.call("whoami", {"q": user}, ctx=ctx)
        seen.setdefault(user, []).append(result.result["authorization"])

    with anyio.fail_after(30):
        async with ToolNode(config, oauth=oauth) as node:
            async with anyio.create_task_group() as tg:
                for _ in range(4):
                    for user in ("ann", "bob", "cy"):
                        tg.start_soon(one, user)
            assert seen == {u: [f"Bearer tok-{u}"] * 4 for u in ("ann", "bob", "cy")}
            with pytest.raises(ToolAuthError, match=r"tool_context\['user_id'\]"):
                await node.call("whoami", {"q": "anon"})
            api.forced["whoami"] = [401]
            ann = ToolCallContext(tool_context={"user_id": "ann", "tenant": "acme"})
            with pytest.raises(ToolAuthRequired) as caught:  # dropped; no refresh token
                await node.call("whoami", {"q": "x"}, ctx=ann)
            assert "tok-ann" not in str(caught.value)
            assert await store.get("ann", "idp", tenant="acme") is None


async def test_a_json_answer_is_decoded_and_anything_else_is_text(
    utcp_config: Callable[..., ExternalToolConfig],
) -> None:
    config = utcp_config("/utcp-key.json", name="k", tool_filter=["plain"])
    async with ToolNode(config) as node:
        assert (await node.call("plain", {})).result == "hello penguin"
        assert (await node.call("plain", {"json": True})).result == {"n": 3, "items": [1, 2]}


async def test_max_concurrency_is_exact_at_the_server(
    api: Api, utcp_config: Callable[..., ExternalToolConfig]
) -> None:
    api.full.clear()
    api.release.clear()
    api.peak = 0
    config = utcp_config("/utcp-key.json", name="k", tool_filter=["hold"], max_concurrency=3)
    results: list[Any] = []
    with anyio.fail_after(60):
        async with ToolNode(config) as node:

            async def one() -> None:
                results.append((await node.call("hold", {"limit": 3})).result)

            async with anyio.create_task_group() as tg:
                for _ in range(10):
                    tg.start_soon(one)
                assert await anyio.to_thread.run_sync(api.full.wait, 30)
                api.release.set()
            stats = node.statistics()
    assert results == [{"held": True}] * 10
    assert api.peak == 3
    assert stats.max_in_flight == 3
