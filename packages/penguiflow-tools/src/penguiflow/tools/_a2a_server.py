"""Serving an agent over A2A: a Starlette app on a2a-sdk's request handler, and uvicorn."""

from __future__ import annotations

import socket
from collections.abc import AsyncGenerator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import anyio
import uvicorn
from a2a.server.request_handlers import DefaultRequestHandlerV2
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes, create_rest_routes
from a2a.server.tasks import InMemoryTaskStore, TaskStore
from a2a.types import AgentCard
from anyio import CancelScope
from starlette.applications import Starlette
from starlette.routing import BaseRoute

from ._a2a_agents import FlowAgent, PlannerAgent, executor_for
from ._a2a_card import with_url

__all__ = ["A2AServer", "create_a2a_app", "serve_a2a"]


def create_a2a_app(
    agent: FlowAgent | PlannerAgent,
    *,
    card: AgentCard,
    task_store: TaskStore | None = None,
) -> Starlette:
    """A Starlette app serving ``agent`` over A2A 1.0.

    The card is at ``/.well-known/agent-card.json``, JSON-RPC at ``/`` (``SendMessage``,
    ``SendStreamingMessage`` over SSE, ``GetTask``, ``CancelTask``, ``SubscribeToTask``) and
    HTTP+JSON at ``/message:send``, ``/message:stream``, ``/tasks/{id}``, ``/tasks/{id}:cancel``.
    The app's lifespan starts a flow that is not running and stops what it started.

    Raises:
        TypeError: ``agent`` was not built by ``flow_agent`` or ``planner_agent``.
        ValueError: ``card`` lists no skills.
    """
    executor = executor_for(agent)
    if not card.skills:
        raise ValueError("the agent card lists no skills: build it with agent_card(skills=[...])")
    handler = DefaultRequestHandlerV2(executor, task_store or InMemoryTaskStore(), card)
    routes: list[BaseRoute] = [
        *create_agent_card_routes(card),
        *create_jsonrpc_routes(handler, "/"),
        *create_rest_routes(handler),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncGenerator[None]:
        async with AsyncExitStack() as stack:
            if isinstance(agent, FlowAgent) and not agent.flow.running_now:
                await stack.enter_async_context(agent.flow.running())
            try:
                yield
            finally:
                with CancelScope(shield=True):
                    await handler.aclose()

    return Starlette(routes=routes, lifespan=lifespan)


@dataclass(frozen=True, slots=True)
class A2AServer:
    """A running A2A server (from ``serve_a2a``)."""

    url: str
    """The agent's base URL (``http://host:port``), also on the served card."""
    card: AgentCard
    """The card as served."""
    app: Starlette
    """The ASGI app."""


class _Server(uvicorn.Server):
    """uvicorn in someone else's loop: no signal handlers, a ready event."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = anyio.Event()

    def install_signal_handlers(self) -> None:  # uvicorn < 0.29
        return

    def capture_signals(self) -> _NoSignals:  # type: ignore[override]
        return _NoSignals()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets=sockets)
        finally:
            self.ready.set()


class _NoSignals:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


@asynccontextmanager
async def serve_a2a(
    agent: FlowAgent | PlannerAgent,
    *,
    card: AgentCard,
    host: str = "127.0.0.1",
    port: int = 0,
    task_store: TaskStore | None = None,
) -> AsyncGenerator[A2AServer]:
    """Serve ``agent`` with uvicorn in the current event loop for the duration of the block.

    ``port=0`` picks a free port; the served card carries the resulting URL. Leaving the block
    stops the server (and a flow its lifespan started).

    Raises:
        RuntimeError: The server did not start (its lifespan failed).
    """
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    bound = sock.getsockname()[1]
    url = f"http://[{host}]:{bound}" if ":" in host else f"http://{host}:{bound}"
    served = with_url(card, url)
    app = create_a2a_app(agent, card=served, task_store=task_store)
    config = uvicorn.Config(
        app, lifespan="on", log_level="warning", access_log=False, timeout_graceful_shutdown=5
    )
    server = _Server(config)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            await server.ready.wait()
            if not server.started:
                raise RuntimeError(f"the A2A server at {url} did not start (see the log)")
            try:
                yield A2AServer(url=url, card=served, app=app)
            finally:
                server.should_exit = True
    finally:
        sock.close()
