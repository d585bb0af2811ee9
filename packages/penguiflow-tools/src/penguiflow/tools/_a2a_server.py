"""Serving an agent over A2A: a Starlette app on a2a-sdk's request handler, and uvicorn."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from a2a.server.request_handlers import DefaultRequestHandlerV2
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes, create_rest_routes
from a2a.server.tasks import InMemoryTaskStore, TaskStore
from a2a.types import AgentCard
from anyio import CancelScope
from starlette.applications import Starlette
from starlette.routing import BaseRoute

from ._a2a_agents import FlowAgent, PlannerAgent, executor_for
from ._a2a_card import with_url
from ._uvicorn import bind, serving

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
    sock, url = bind(host, port)
    served = with_url(card, url)
    app = create_a2a_app(agent, card=served, task_store=task_store)
    async with serving(app, sock, f"the A2A server at {url}"):
        yield A2AServer(url=url, card=served, app=app)
