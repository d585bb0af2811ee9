"""Per-user OAuth consent as a planner pause: pause → the user consents → resume with the token.

Run it with ``uv run python examples/tools_oauth_consent/main.py``. Offline: one Starlette app on
127.0.0.1 plays three parts — an OAuth2 authorization server (``/authorize``, ``/token``, PKCE
S256), the protected API (an UTCP manual and its ``/sightings`` endpoint, which checks the bearer
token) and this application's redirect target (``oauth_callback_route``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import socket
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from penguiflow.core import InMemoryDurableStore
from penguiflow.planner import PlannerFinish, PlannerPause, ReactPlanner
from penguiflow.testkit import ScriptedLLM
from penguiflow.tools import (
    AuthType,
    ConsentResult,
    DurableTokenStore,
    ExternalToolConfig,
    OAuthManager,
    OAuthProviderConfig,
    ToolNode,
    TransportType,
    oauth_callback_route,
)

CODES: dict[str, tuple[str, str]] = {}  # code -> (user, PKCE challenge)
TOKENS: dict[str, str] = {}  # access token -> user
SEEN: list[str | None] = []  # Authorization headers the API received


async def authorize(request: Request) -> Response:
    """The IdP's login + consent page, reduced to a redirect (``login`` names the user)."""
    q = request.query_params
    code = f"code-{len(CODES) + 1}"
    CODES[code] = (q["login"], q["code_challenge"])
    return RedirectResponse(
        f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q['state']})}", 302
    )


async def token(request: Request) -> Response:
    form = await request.form()
    user, challenge = CODES.pop(str(form["code"]), ("", ""))  # a code works once
    verifier = str(form.get("code_verifier", "")).encode()
    digest = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=").decode()
    if not user or digest != challenge:
        return JSONResponse({"error": "invalid_grant"}, status_code=400)
    access = f"at-{user}-{len(TOKENS) + 1}"
    TOKENS[access] = user
    return JSONResponse({"access_token": access, "token_type": "Bearer", "expires_in": 3600})


def manual(base: str) -> dict[str, Any]:
    auth = {
        "auth_type": "api_key",
        "api_key": "Bearer ${AUTH_TOKEN}",  # the calling user's token, per call
        "var_name": "Authorization",
        "location": "header",
    }
    template = {
        "call_template_type": "http",
        "name": "s",
        "url": base + "/sightings",
        "http_method": "GET",
        "auth": auth,
    }
    tool: dict[str, Any] = {
        "name": "my_sightings",
        "description": "The calling ranger's sightings.",
        "inputs": {"type": "object", "properties": {}},
        "tool_call_template": template,
    }
    return {"utcp_version": "1.0.1", "manual_version": "1.0.0", "tools": [tool]}


def app(base: str, manager: OAuthManager) -> Starlette:
    async def manual_json(request: Request) -> Response:
        return JSONResponse(manual(base))

    async def sightings(request: Request) -> Response:
        header = request.headers.get("authorization")
        SEEN.append(header)
        user = TOKENS.get((header or "").removeprefix("Bearer "))
        if user is None:
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        return JSONResponse({"ranger": user, "sightings": 3})

    def done(result: ConsentResult) -> None:
        print(f"callback: token stored for {result.user_id} ({result.tenant}) at {result.provider}")

    routes: list[BaseRoute] = [
        Route("/authorize", authorize),
        Route("/token", token, methods=["POST"]),
        Route("/utcp.json", manual_json),
        Route("/sightings", sightings),
        oauth_callback_route(manager, on_complete=done),
    ]
    return Starlette(routes=routes)


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
    sock, url = free_socket()  # the URL is known before the app is built
    provider = OAuthProviderConfig(
        name="rangers",
        auth_url=url + "/authorize",
        token_url=url + "/token",
        client_id="penguiflow-example",
        redirect_uri=url + "/oauth/callback",
        display_name="Ranger Service",
    )
    store = DurableTokenStore(InMemoryDurableStore())  # states and tokens in a DurableStore
    manager = OAuthManager([provider], token_store=store)
    async with serving(app(url, manager), sock):
        config = ExternalToolConfig(
            name="rangers",
            transport=TransportType.UTCP,
            connection=url + "/utcp.json",
            auth_type=AuthType.OAUTH2_USER,
            auth_config={"provider": "rangers"},
        )
        context = {"user_id": "ada", "tenant": "acme"}
        llm = ScriptedLLM(
            [
                {"next_node": "rangers.my_sightings", "args": {}},
                {"next_node": "final_response", "args": {"answer": "Ada logged 3 sightings."}},
            ]
        )
        async with ToolNode(config, oauth=manager) as node:
            planner = ReactPlanner(llm, catalog=list(node.specs))
            paused = await planner.run("How many sightings did I log?", tool_context=context)
            assert isinstance(paused, PlannerPause)
            consent: dict[str, Any] = dict(paused.payload)
            where = urlsplit(str(consent["auth_url"]))
            print(f"paused: {paused.reason}, kind={consent['kind']}, at {consent['display_name']}")
            print("auth_url has PKCE S256:", "code_challenge_method=S256" in where.query)
            print("requests sent to the API before consent:", len(SEEN))

            # The user opens auth_url, logs in and consents; the IdP redirects to the callback.
            async with httpx.AsyncClient(follow_redirects=True) as browser:
                page = await browser.get(consent["auth_url"] + "&login=ada")
                print("browser lands on:", page.text)
                replay = await browser.get(str(page.url))  # the same state again
                print("replaying the callback:", replay.status_code, replay.text.split(";")[0])

            done = await planner.resume(paused.resume_token, "consented", tool_context=context)
            assert isinstance(done, PlannerFinish)
            print("resumed:", done.reason, "->", done.output)
            print("the API saw:", SEEN)
    llm.assert_exhausted()
    print("tools_oauth_consent done")


if __name__ == "__main__":
    asyncio.run(main())
