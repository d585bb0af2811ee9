"""A plain a2a-sdk agent (no PenguiFlow on the serving side), called by ``A2ATransport`` under a
core ``RemoteNode`` and listed by an A2A ``ToolNode``: the client half speaks A2A, not only to
our own server."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager

import anyio
from a2a.helpers.proto_helpers import get_data_parts, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandlerV2
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    Task,
    TaskState,
    TaskStatus,
)
from starlette.applications import Starlette

from penguiflow.core import Headers, Message, RemoteNode, create
from penguiflow.tools import A2ATransport, ExternalToolConfig, ToolNode, TransportType
from penguiflow.tools._uvicorn import bind, serving


class Reverser(AgentExecutor):
    """Answers with the reversed text (an artifact named ``answer``), or counts a data part."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        task_id, context_id = context.task_id or "", context.context_id or ""
        if context.current_task is None:
            await event_queue.enqueue_event(
                Task(
                    id=task_id,
                    context_id=context_id,
                    status=TaskStatus(state=TaskState.TASK_STATE_SUBMITTED),
                )
            )
        updater = TaskUpdater(event_queue, task_id, context_id)
        await updater.start_work()
        parts = list(context.message.parts) if context.message is not None else []
        texts = [p.text for p in parts if p.HasField("text")]
        data = get_data_parts(parts)
        reply = "".join(texts)[::-1] + (f" +{len(data[0])} keys" if data else "")
        await updater.add_artifact([new_text_part(reply)], name="answer")
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        return None


def card(url: str) -> AgentCard:
    return AgentCard(
        name="reverser",
        description="Reverses text",
        version="0.1.0",
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        supported_interfaces=[
            AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="1.0")
        ],
        skills=[
            AgentSkill(id="reverse", name="Reverse", description="Reverses text", tags=["text"])
        ],
    )


@asynccontextmanager
async def plain_agent() -> AsyncGenerator[str]:
    sock, url = bind("127.0.0.1", 0)
    served = card(url)
    handler = DefaultRequestHandlerV2(Reverser(), InMemoryTaskStore(), served)
    app = Starlette(
        routes=[*create_agent_card_routes(served), *create_jsonrpc_routes(handler, "/")]
    )
    async with serving(app, sock, "plain a2a-sdk agent"):
        yield url


async def test_a_remote_node_calls_a_plain_a2a_sdk_agent() -> None:
    with anyio.fail_after(30):
        async with plain_agent() as url, A2ATransport() as transport:
            node = RemoteNode(transport=transport, skill="reverse", agent_url=url, name="r")
            flow = create(node.to())
            async with flow.running():
                out = await flow.call_node(
                    node, Message(payload="abc", headers=Headers(tenant="t"))
                )
            # no artifact named "result": the last artifact is the answer
            assert (out.payload if isinstance(out, Message) else out) == "cba"


async def test_a_tool_node_lists_and_calls_a_plain_a2a_sdk_agents_skills() -> None:
    with anyio.fail_after(30):
        async with plain_agent() as url:
            config = ExternalToolConfig(name="rev", transport=TransportType.A2A, connection=url)
            async with ToolNode(config) as node:
                assert [s.name for s in node.specs] == ["rev.reverse"]
                assert (await node.call("rev.reverse", {"message": "penguin"})).result == (
                    "niugnep"
                )
                both = await node.call("reverse", {"message": "ab", "data": {"x": 1, "y": 2}})
                assert both.result == "ba +2 keys"
