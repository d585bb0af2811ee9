"""Fixtures of the sessions tests: a real uvicorn server in the test's own event loop."""

from __future__ import annotations

import socket
from collections.abc import AsyncGenerator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import anyio
import pytest
import uvicorn
from starlette.applications import Starlette


@asynccontextmanager
async def _serve(app: Starlette) -> AsyncGenerator[str]:
    """Serve ``app`` on 127.0.0.1 (a socket bound to port 0 here); yields its base URL."""
    config = uvicorn.Config(
        app, ws="websockets-sansio", log_level="warning", lifespan="on", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        with anyio.fail_after(10):
            while not server.started:  # noqa: ASYNC110 - uvicorn offers no started event
                await anyio.sleep(0.01)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
    sock.close()


Serve = Callable[[Starlette], AbstractAsyncContextManager[str]]


@pytest.fixture
def serve() -> Serve:
    """``async with serve(app) as base_url:`` runs ``app`` under uvicorn on 127.0.0.1."""
    return _serve
