"""Streaming LLM tokens over SSE and WebSocket: a real uvicorn server and two real clients.

Run it with ``uv run python examples/streaming_llm/main.py``. It starts the app from ``app.py`` with
uvicorn on a free loopback port, asks one question over Server-Sent Events (httpx) and one over a
WebSocket (the ``websockets`` package), prints the tokens as they arrive, and shuts the server down.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import uvicorn
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent))

from app import create_app  # noqa: E402  (the example's own module, next to this file)


@asynccontextmanager
async def serving() -> AsyncGenerator[int]:
    """Run the app with uvicorn on a free port of 127.0.0.1 for the block; yields the port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # port 0: the OS picks a free one
    port: int = sock.getsockname()[1]
    config = uvicorn.Config(create_app(), log_level="warning", ws="websockets-sansio")
    server = uvicorn.Server(config)
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        with anyio.fail_after(5):
            for _ in range(1000):  # uvicorn offers a flag, not an event
                if server.started:
                    break
                await anyio.sleep(0.005)
        try:
            yield port
        finally:
            server.should_exit = True  # graceful: lifespan shutdown stops the flow
    sock.close()


async def ask_over_sse(port: int, question: str) -> str:
    """GET /stream and read the event stream, printing each token as it arrives."""
    text: list[str] = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        async with client.stream("GET", "/stream", params={"q": question}) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                # The data is the chunk as JSON: always one line (JSON escapes line breaks).
                if line.startswith("data: "):
                    chunk = json.loads(line.removeprefix("data: "))
                    print(chunk["text"], end="", flush=True)
                    text.append(chunk["text"])
    print()
    return "".join(text)


async def ask_over_websocket(port: int, question: str) -> str:
    """Send the question over /ws and print each JSON frame's token until the done frame."""
    text: list[str] = []
    async with connect(f"ws://127.0.0.1:{port}/ws") as ws:
        await ws.send(json.dumps({"q": question}))
        async for frame in ws:
            chunk = json.loads(frame)
            print(chunk["text"], end="", flush=True)
            text.append(chunk["text"])
            if chunk["done"]:
                break
    print()
    return "".join(text)


async def main() -> None:
    async with serving() as port:
        print(f"serving on http://127.0.0.1:{port}")
        print("SSE:       ", end="")
        over_sse = await ask_over_sse(port, "why do penguins huddle")
        print("WebSocket: ", end="")
        over_ws = await ask_over_websocket(port, "how cold is the antarctic winter")
    left = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    print(f"server stopped, flow stopped, tasks left: {len(left)}")
    assert not left, left
    assert over_sse == "Echo: why do penguins huddle", over_sse
    assert over_ws == "Echo: how cold is the antarctic winter", over_ws
    print("streamed via SSE and WebSocket")


if __name__ == "__main__":
    anyio.run(main)
