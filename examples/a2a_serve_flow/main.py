"""A streaming flow served as an A2A agent, called three ways; one call cancelled.

Run it with ``uv run python examples/a2a_serve_flow/main.py``. Offline: ``serve_a2a`` runs uvicorn
on 127.0.0.1 (a free port) in this event loop.

1. a local flow's ``RemoteNode`` + ``A2ATransport`` streams the remote chunks into the local trace;
2. the official a2a-sdk client sends a message and reads the task's events;
3. a ``ToolNode`` turns the card's skills into catalog specs (what a planner would call);
4. cancelling the local trace cancels the remote task (its node sees the cancellation).
"""

from __future__ import annotations

import asyncio
import uuid
from contextlib import aclosing
from typing import Any

import anyio
from a2a.client import ClientConfig, create_client
from a2a.types import GetTaskRequest, Part, Role, SendMessageRequest, TaskState
from a2a.types import Message as A2AMessage

from penguiflow.core import (
    Context,
    Headers,
    Message,
    Node,
    RemoteNode,
    StreamChunk,
    create,
    stream_flow,
)
from penguiflow.tools import (
    A2ASkill,
    A2ATransport,
    ExternalToolConfig,
    ToolNode,
    TransportType,
    agent_card,
    flow_agent,
    serve_a2a,
)

STARTED = anyio.Event()
CANCELLED = anyio.Event()


async def narrate(msg: Message, ctx: Context) -> Any:
    """The served flow: streams a few words, then answers; ``"wait"`` blocks until cancelled."""
    text = str(msg.payload)
    if text == "wait":
        STARTED.set()
        try:
            await anyio.Event().wait()
        except anyio.get_cancelled_exc_class():
            CANCELLED.set()
            raise
    words = text.split()
    for i, word in enumerate(words):
        await ctx.emit_chunk(parent=msg, text=word, done=i == len(words) - 1)
    return {"words": len(words), "upper": text.upper()}


CARD = agent_card(
    "narrator",
    "Streams the words of a sentence, then counts them",
    skills=[A2ASkill("narrate", "Narrate", "Streams words, returns a count", tags=("text",))],
)


async def main() -> None:
    served = create(Node(narrate, name="narrate").to())
    async with serve_a2a(flow_agent(served), card=CARD) as server:
        print("card at", server.url + "/.well-known/agent-card.json:", server.card.name)
        async with A2ATransport() as transport:
            remote = RemoteNode(
                transport=transport,
                skill="narrate",
                agent_url=server.url,
                name="remote",
                streaming=True,
            )
            local = create(remote.to())
            async with local.running():
                message = Message(payload="penguins huddle in winter", headers=Headers(tenant="t"))
                async with aclosing(stream_flow(local, message, include_final=True)) as items:
                    async for item in items:
                        if isinstance(item, StreamChunk):
                            print(f"  chunk {item.seq}: {item.text}")
                        else:
                            print("remote node result:", item)

                # a cancel: the local trace's cancellation reaches the remote task
                waiting = Message(payload="wait", headers=Headers(tenant="t"))
                with anyio.fail_after(10):
                    await local.emit(waiting)
                    await STARTED.wait()
                    await local.cancel(waiting.trace_id)
                    await CANCELLED.wait()
                print("cancelled: the served node saw the cancellation:", CANCELLED.is_set())

        client = await create_client(server.url, ClientConfig(streaming=False))
        try:
            request = SendMessageRequest(
                message=A2AMessage(
                    message_id=uuid.uuid4().hex, role=Role.ROLE_USER, parts=[Part(text="one two")]
                )
            )
            task_id = ""
            async for event in client.send_message(request):
                if event.HasField("task"):
                    task_id = event.task.id
            task = await client.get_task(GetTaskRequest(id=task_id))
            result = next(a for a in task.artifacts if a.artifact_id == "result")
            words = result.parts[0].data.struct_value.fields["words"].number_value
            print("a2a-sdk client:", TaskState.Name(task.status.state), f"words={words:.0f}")
        finally:
            await client.close()

        config = ExternalToolConfig(
            name="narrator", transport=TransportType.A2A, connection=server.url
        )
        async with ToolNode(config) as node:
            print("tool specs:", [f"{s.name}({s.side_effects})" for s in node.specs])
            answer = await node.call("narrator.narrate", {"message": "ice and sea"})
            print("tool call ->", answer.result)
    print("a2a_serve_flow done")


if __name__ == "__main__":
    asyncio.run(main())
