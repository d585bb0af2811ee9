"""A Starlette app that streams a (fake) LLM's tokens from a PenguiFlow over SSE and WebSocket.

One flow serves every request for the app's lifetime: each request is its own trace, and
``stream_flow`` reads only that trace's chunks, so concurrent clients never see each other's
tokens and a client that stops reading stalls only its own stream.

Endpoints:

- ``GET /stream?q=...&max_tokens=...`` -> ``text/event-stream``: one ``chunk`` event per token and a
  final ``done`` event; each event's data is the chunk as JSON (``stream_id, seq, text, done,
  meta``) and its id is ``{stream_id}:{seq}``. The trace id is in the ``X-Trace-Id`` header.
- ``WS /ws``: send ``{"q": "...", "max_tokens": 5}`` (or just the question as text); receive one
  JSON frame per chunk (the same fields plus ``"type": "chunk"``), then the server closes.
- ``GET /stats``: the flow's bookkeeping (live traces, buffered chunks...) as JSON.

Serve it alone with
``uv run uvicorn app:app --app-dir examples/streaming_llm --port 8000 --ws websockets-sansio``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing, asynccontextmanager

import anyio
from pydantic import BaseModel, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from penguiflow.core import (
    Context,
    Headers,
    Message,
    Node,
    PenguiFlow,
    chunk_to_ws_json,
    create,
    emit_stream_events,
    format_sse_event,
    stream_flow,
)

MAX_TOKENS_LIMIT = 20_000


class Prompt(BaseModel):
    """What a client asks for."""

    q: str = Field(min_length=1)
    """The question."""
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS_LIMIT)
    """How many tokens to generate (default: one pass over the answer)."""


async def fake_llm(prompt: Prompt, *, token_delay_s: float) -> AsyncIterator[str]:
    """A deterministic stand-in for an LLM SDK's token stream: it parrots the question back.

    The answer is ``"Echo:"`` followed by the question's words; with ``max_tokens`` larger than
    that it starts over, which makes long streams easy to ask for.
    """
    tokens = ["Echo:", *(f" {word}" for word in prompt.q.split())]
    for index in range(prompt.max_tokens or len(tokens)):
        await anyio.sleep(token_delay_s)
        yield tokens[index % len(tokens)]


def build_flow(*, token_delay_s: float = 0.002, queue_maxsize: int = 8) -> PenguiFlow:
    """A one-node flow: ``llm`` relays the fake model's tokens as chunks of the request's trace.

    ``queue_maxsize`` also bounds each trace's buffer of unread chunks, so a client that stops
    reading holds back its own generation after that many tokens, and nobody else's.
    """

    async def llm(msg: Message, ctx: Context) -> None:
        prompt: Prompt = msg.payload
        tokens = fake_llm(prompt, token_delay_s=token_delay_s)
        await emit_stream_events(tokens, ctx, msg, final_meta={"model": "fake-parrot"})

    node = Node(llm)
    return create(node.to(), queue_maxsize=queue_maxsize)


def create_app(flow: PenguiFlow | None = None) -> Starlette:
    """The Starlette app; it runs ``flow`` (default: ``build_flow()``) for its whole lifetime."""
    flow = flow if flow is not None else build_flow()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncGenerator[None]:
        async with flow.running():
            yield

    async def sse(request: Request) -> Response:
        try:
            prompt = Prompt.model_validate(dict(request.query_params))
        except ValidationError as exc:
            return JSONResponse({"error": exc.errors(include_url=False)}, status_code=400)
        parent = Message(payload=prompt, headers=Headers(tenant="web"))

        async def events() -> AsyncIterator[str]:
            # aclosing: when the client goes away the stream is closed at once, which cancels the
            # trace (its generation stops and its bookkeeping is freed).
            async with aclosing(stream_flow(flow, parent)) as chunks:
                async for chunk in chunks:
                    # The whole chunk as JSON, and an id that names the stream too.
                    yield format_sse_event(chunk, data="json", id=f"{chunk.stream_id}:{chunk.seq}")

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Trace-Id": parent.trace_id},
        )

    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            raw = await websocket.receive_text()
            try:
                prompt = _prompt_from_frame(raw)
            except ValidationError as exc:
                await websocket.send_json({"type": "error", "error": str(exc)})
                await websocket.close(code=1003)
                return
            parent = Message(payload=prompt, headers=Headers(tenant="web"))
            async with aclosing(stream_flow(flow, parent)) as chunks:
                async for chunk in chunks:
                    await websocket.send_text(chunk_to_ws_json(chunk, extra={"type": "chunk"}))
            await websocket.close(code=1000)
        except WebSocketDisconnect:
            pass  # the client left; leaving stream_flow early has cancelled its trace

    async def stats(request: Request) -> Response:
        return JSONResponse(dataclasses.asdict(flow.statistics()))

    app = Starlette(
        routes=[Route("/stream", sse), WebSocketRoute("/ws", ws), Route("/stats", stats)],
        lifespan=lifespan,
    )
    app.state.flow = flow
    return app


def _prompt_from_frame(raw: str) -> Prompt:
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        return Prompt.model_validate(data)
    return Prompt(q=raw)


app = create_app()
"""The app ``uvicorn app:app`` serves."""
