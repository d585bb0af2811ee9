"""A small OAuth2 authorization server (code + PKCE S256, refresh) as a Starlette app.

``/authorize`` answers 302 to the redirect URI with a code (the test names the user with a
``login`` parameter, standing in for the login page); ``/token`` checks the client, the
redirect URI and the PKCE verifier, issues ``at-{user}-{n}`` / ``rt-{user}-{n}``, and refreshes.
"""

import base64
import hashlib
import threading
import time
from collections.abc import Generator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

CLIENT_ID = "penguiflow-test"


@dataclass
class Idp:
    """The server's state, readable by the tests."""

    url: str = ""
    expires_in: int = 3600
    codes: dict[str, dict[str, str]] = field(default_factory=dict[str, dict[str, str]])
    refresh_tokens: dict[str, str] = field(default_factory=dict[str, str])
    issued: int = 0
    token_requests: list[str] = field(default_factory=list[str])
    authorize_queries: list[dict[str, str]] = field(default_factory=list[dict[str, str]])

    def _issue(self, user: str) -> dict[str, Any]:
        self.issued += 1
        refresh = f"rt-{user}-{self.issued}"
        self.refresh_tokens[refresh] = user
        return {
            "access_token": f"at-{user}-{self.issued}",
            "refresh_token": refresh,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": "read",
        }

    async def authorize(self, request: Request) -> Response:
        query = dict(request.query_params)
        self.authorize_queries.append(query)
        if query.get("client_id") != CLIENT_ID or query.get("code_challenge_method") != "S256":
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        code = f"code-{len(self.codes) + 1}-{time.monotonic_ns()}"
        self.codes[code] = {
            "user": query["login"],
            "challenge": query["code_challenge"],
            "redirect_uri": query["redirect_uri"],
        }
        target = f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query['state']})}"
        return RedirectResponse(target, status_code=302)

    async def token(self, request: Request) -> Response:
        form = dict(await request.form())
        grant = str(form.get("grant_type"))
        self.token_requests.append(grant)
        if form.get("client_id") != CLIENT_ID:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        if grant == "authorization_code":
            entry = self.codes.pop(str(form.get("code")), None)  # single use
            if entry is None or entry["redirect_uri"] != form.get("redirect_uri"):
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            verifier = str(form.get("code_verifier", "")).encode()
            digest = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=")
            if digest.decode() != entry["challenge"]:
                return JSONResponse({"error": "invalid_grant", "why": "pkce"}, status_code=400)
            return JSONResponse(self._issue(entry["user"]))
        if grant == "refresh_token":
            user = self.refresh_tokens.pop(str(form.get("refresh_token")), None)
            if user is None:
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            return JSONResponse(self._issue(user))
        return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/authorize", self.authorize, methods=["GET"]),
                Route("/token", self.token, methods=["POST"]),
            ]
        )


@contextmanager
def running_idp() -> Generator[Idp]:
    """The IdP under uvicorn on 127.0.0.1 (a free port), in a thread."""
    idp = Idp()
    server = uvicorn.Server(
        uvicorn.Config(idp.app(), host="127.0.0.1", port=0, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    idp.url = f"http://127.0.0.1:{port}"
    try:
        yield idp
    finally:
        server.should_exit = True
        thread.join(timeout=20)
