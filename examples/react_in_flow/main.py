"""The planner as a flow node, its answer streamed over Server-Sent Events.

Run it with ``uv run python examples/react_in_flow/main.py``. A Starlette app runs one PenguiFlow
whose node is ``planner.as_node()`` (``stream_final_response=True``); ``GET /ask?q=...`` emits a
``Message`` and streams the trace's ``StreamChunk``s with ``stream_flow`` + ``format_sse_event``,
then the outcome as a last ``result`` event. uvicorn serves it on a free port of 127.0.0.1; an
httpx client reads the stream and prints the answer as it arrives. The planner's tool calls go
through the flow (``ctx.call_node``): its listeners see them with the request's trace id.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import uvicorn
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from penguiflow.core import (
    FlowEvent,
    Headers,
    Message,
    StreamChunk,
    create,
    format_sse_event,
    stream_flow,
    tool,
)
from penguiflow.planner import PlannerFinish, ReactPlanner, ToolContext
from penguiflow.testkit import FunctionLLM, LLMCallInfo

ANSWER = (
    "Emperor penguins huddle to survive -40 °C winds:\n"
    "the colony rotates so each bird takes turns outside."
)
tool_events: list[tuple[str, str]] = []


class Topic(BaseModel):
    """What to look up."""

    topic: str


class Notes(BaseModel):
    """What was found."""

    notes: str


@tool(desc="Look a topic up in the field notes.", side_effects="read")
async def field_notes(args: Topic, ctx: ToolContext) -> Notes:
    """A fixed note here."""
    return Notes(notes=f"{args.topic}: huddles of up to 5,000 birds, rotating")


def model(messages: list[Any], info: LLMCallInfo) -> Any:
    """Look the topic up, then answer (streamed: ``FunctionLLM`` feeds the deltas)."""
    if any(m["role"] == "user" and m["content"].startswith('{"observation"') for m in messages):
        return {"thought": "answer", "next_node": "final_response", "args": {"answer": ANSWER}}
    return {"thought": "look it up", "next_node": "field_notes", "args": {"topic": "huddling"}}


def record(event: FlowEvent) -> None:
    if event.node_name == "field_notes" and event.trace_id is not None:
        tool_events.append((event.event_type.value, event.trace_id))


def create_app() -> Starlette:
    planner = ReactPlanner(
        FunctionLLM(model, chunk_size=6), nodes=[field_notes], stream_final_response=True
    )
    flow = create(planner.as_node().to(), on_event=record)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with planner, flow.running():  # one flow for every request; each is a trace
            yield

    async def ask(request: Request) -> StreamingResponse:
        msg = Message(payload=request.query_params["q"], headers=Headers(tenant="demo"))

        async def events() -> AsyncGenerator[str]:
            yield f"event: trace\ndata: {msg.trace_id}\n\n"
            async for item in stream_flow(flow, msg, include_final=True):
                if isinstance(item, StreamChunk):
                    yield format_sse_event(item, data="json")
                elif isinstance(item, PlannerFinish):
                    outcome = {"reason": item.reason, "tool_calls": item.usage.tool_calls}
                    yield f"event: result\ndata: {json.dumps(outcome)}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/ask", ask)], lifespan=lifespan)


@asynccontextmanager
async def serving() -> AsyncGenerator[int]:
    """Run the app with uvicorn on a free port of 127.0.0.1 for the block; yields the port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(), log_level="warning"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        with anyio.fail_after(10):
            for _ in range(2000):  # uvicorn offers a flag, not an event
                if server.started:
                    break
                await anyio.sleep(0.005)
        try:
            yield port
        finally:
            server.should_exit = True
    sock.close()


async def ask(port: int, question: str) -> None:
    text: list[str] = []
    event = ""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        async with client.stream("GET", "/ask", params={"q": question}) as response:
            response.raise_for_status()
            print(f"content-type: {response.headers['content-type']}")
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    data = line.removeprefix("data: ")
                    if event == "trace":
                        trace_id = data
                    elif event in ("chunk", "done"):
                        chunk = json.loads(data)
                        text.append(chunk["text"])
                        if chunk["done"]:
                            print(f"\n[done chunk, seq {chunk['seq']}]")
                        else:
                            print(chunk["text"], end="", flush=True)
                    elif event == "result":
                        print(f"result event: {data}")
    print(f"streamed answer == the planner's answer: {''.join(text) == ANSWER}")
    seen = sorted({kind for kind, trace in tool_events if trace == trace_id})
    print(f"the flow's listener saw the tool call with the request's trace id: {seen}")


async def main() -> None:
    before = len(asyncio.all_tasks())
    async with serving() as port:
        await ask(port, "Why do emperor penguins huddle?")
    print(f"tasks left: {len(asyncio.all_tasks()) - before}")
    print("react_in_flow done")


if __name__ == "__main__":
    asyncio.run(main())
