"""An HTTP API as tools through UTCP: an OpenAPI document and a UTCP manual with bearer auth.

Run it with ``uv run python examples/tools_utcp_http/main.py``. Offline: the API is a Starlette
app under uvicorn on 127.0.0.1 (a free port), in this process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from penguiflow.tools import AuthType, ExternalToolConfig, RetryPolicy, ToolNode, TransportType

COLONIES = {"cape-adare": 338_231, "cape-crozier": 272_340}
HITS: dict[str, int] = {}
FAIL_NEXT: list[int] = []  # statuses the next colony read answers with


def openapi(base: str) -> dict[str, Any]:
    colony = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    body = {"type": "object", "properties": {"count": {"type": "integer"}}, "required": ["count"]}
    return {
        "openapi": "3.0.3",
        "info": {"title": "colonies", "version": "1.0.0"},
        "servers": [{"url": base}],
        "paths": {
            "/colonies/{name}": {
                "get": {
                    "operationId": "get_colony",
                    "summary": "Breeding pairs at a colony.",
                    "parameters": [colony],
                    "responses": {"200": {"description": "the colony"}},
                }
            },
            "/sightings": {
                "post": {
                    "operationId": "log_sighting",
                    "summary": "Record a sighting.",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": body}},
                    },
                    "responses": {"200": {"description": "recorded"}},
                }
            },
        },
    }


def manual(base: str) -> dict[str, Any]:
    return {
        "utcp_version": "1.0.1",
        "manual_version": "1.0.0",
        "tools": [
            {
                "name": "whoami",
                "description": "Who the API thinks is calling.",
                "inputs": {"type": "object", "properties": {}},
                "outputs": {"type": "object"},
                "tool_call_template": {
                    "call_template_type": "http",
                    "name": "me",
                    "url": base + "/me",
                    "http_method": "GET",
                    "auth": {  # ${AUTH_TOKEN} is resolved per call by the connector
                        "auth_type": "api_key",
                        "api_key": "Bearer ${AUTH_TOKEN}",
                        "var_name": "Authorization",
                        "location": "header",
                    },
                },
            }
        ],
    }


def app(base: str) -> Starlette:
    async def get_colony(request: Request) -> Response:
        HITS["get_colony"] = HITS.get("get_colony", 0) + 1
        if FAIL_NEXT:
            return PlainTextResponse("busy", status_code=FAIL_NEXT.pop(0))
        name = request.path_params["name"]
        return JSONResponse({"colony": name, "pairs": COLONIES[name]})

    async def log_sighting(request: Request) -> Response:
        HITS["log_sighting"] = HITS.get("log_sighting", 0) + 1
        return JSONResponse({"logged": (await request.json())["count"]})

    async def me(request: Request) -> Response:
        token = request.headers.get("authorization", "")
        return JSONResponse({"user": "ranger-7" if token == "Bearer ranger-token" else None})

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(openapi(base))

    async def manual_json(request: Request) -> Response:
        return JSONResponse(manual(base))

    return Starlette(
        routes=[
            Route("/openapi.json", openapi_json),
            Route("/utcp.json", manual_json),
            Route("/colonies/{name}", get_colony),
            Route("/sightings", log_sighting, methods=["POST"]),
            Route("/me", me),
        ]
    )


class _Server(uvicorn.Server):
    """uvicorn in this event loop, with an event for "listening"."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.ready.set()


@asynccontextmanager
async def serving(app: Starlette, sock: socket.socket) -> AsyncGenerator[None]:
    """Serve ``app`` on ``sock`` for the duration of the block."""
    server = _Server(uvicorn.Config(app, log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await server.ready.wait()
    try:
        yield
    finally:
        server.should_exit = True
        await task


def free_socket() -> tuple[socket.socket, str]:
    """A socket bound to a free port on 127.0.0.1, and its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}"


async def main() -> None:
    for name in ("utcp", "utcp_http"):  # they log every failed attempt
        logging.getLogger(name).setLevel(logging.CRITICAL)
    sock, url = free_socket()
    async with serving(app(url), sock):
        api = ExternalToolConfig(
            name="colonies",
            transport=TransportType.UTCP,
            connection=url + "/openapi.json",  # utcp-http converts the OpenAPI document
            retry_policy=RetryPolicy(wait_exponential_min_s=0.01, wait_exponential_max_s=0.05),
        )
        async with ToolNode(api) as node:
            for spec in node.specs:
                print(f"spec {spec.name} side_effects={spec.side_effects}")
            print("get ->", (await node.call("get_colony", {"name": "cape-adare"})).result)
            FAIL_NEXT.append(503)
            again = await node.call("get_colony", {"name": "cape-crozier"})
            print("get after a 503 ->", again.result, f"(retries={node.statistics().retries})")
            logged = await node.call("log_sighting", {"body": {"count": 12}})
            print("post ->", logged.result, "hits:", dict(sorted(HITS.items())))

        os.environ.setdefault("RANGER_TOKEN", "ranger-token")
        me = ExternalToolConfig(
            name="me",
            transport=TransportType.UTCP,
            connection=url + "/utcp.json",
            auth_type=AuthType.BEARER,
            auth_config={"token": "${RANGER_TOKEN}"},  # substituted at connect
        )
        print("the config hides the token:", "ranger-token" not in repr(me))
        async with ToolNode(me) as node:
            print("whoami ->", (await node.call("whoami", {})).result)
    print("tools_utcp_http done")


if __name__ == "__main__":
    asyncio.run(main())
