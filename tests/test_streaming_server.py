"""The streaming_llm example served by a real uvicorn server on a free loopback port.

Two SSE clients (httpx) and a WebSocket client (websockets) stream at the same time from one shared
flow: each gets only its own trace's tokens, in order, ending with ``done``; a client that stops
reading stalls only its own stream.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import socket
import sys
from collections.abc import AsyncGenerator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import anyio
import httpx
import uvicorn
from starlette.applications import Starlette
from websockets.asyncio.client import connect

from penguiflow.core import PenguiFlow
from penguiflow.core._flow import runtime_of


def _load_example_app() -> ModuleType:
    # The example is a folder of scripts, not a package: load its app.py under a unique name.
    path = Path(__file__).resolve().parents[1] / "examples" / "streaming_llm" / "app.py"
    spec = importlib.util.spec_from_file_location("streaming_llm_app", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the models' annotations through it
    spec.loader.exec_module(module)
    return module


_app = _load_example_app()
build_flow = cast(Callable[..., PenguiFlow], _app.build_flow)
create_app = cast(Callable[[PenguiFlow], Starlette], _app.create_app)

QUEUE_MAXSIZE = 4


@dataclass
class Served:
    """A running server: its base URLs and the flow behind it."""

    http: str
    ws: str
    flow: PenguiFlow


@asynccontextmanager
async def serving(flow: PenguiFlow) -> AsyncGenerator[Served]:
    """Run the example app with uvicorn on a free port of 127.0.0.1 for the block."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    config = uvicorn.Config(create_app(flow), log_level="warning", ws="websockets-sansio")
    server = uvicorn.Server(config)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            with anyio.fail_after(5):
                for _ in range(1000):  # uvicorn offers a flag, not an event
                    if server.started:
                        break
                    await anyio.sleep(0.005)
            assert server.started, "uvicorn did not start"
            try:
                yield Served(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", flow)
            finally:
                server.should_exit = True  # graceful: the lifespan's shutdown stops the flow
                tg.cancel_scope.deadline = anyio.current_time() + 5  # bounded all the same
    finally:
        sock.close()


def _sse_events(lines: list[str]) -> list[tuple[str, str, dict[str, Any]]]:
    """(event, id, data as JSON) for each event of an event stream given as lines."""
    events: list[tuple[str, str, dict[str, Any]]] = []
    event, event_id = "message", ""
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                events.append((event, event_id, json.loads("\n".join(data))))
            event, data = "message", []
        elif line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("id: "):
            event_id = line.removeprefix("id: ")
        elif line.startswith("data: "):
            data.append(line.removeprefix("data: "))
    return events


def _expected_tokens(question: str, max_tokens: int | None = None) -> list[str]:
    tokens = ["Echo:", *(f" {word}" for word in question.split())]
    count = max_tokens or len(tokens)
    return [tokens[i % len(tokens)] for i in range(count)]


def _assert_own_stream(chunks: list[dict[str, Any]], trace_id: str, tokens: list[str]) -> None:
    assert {c["stream_id"] for c in chunks} == {trace_id}
    assert [c["seq"] for c in chunks] == list(range(len(tokens) + 1))
    assert [c["text"] for c in chunks[:-1]] == tokens
    assert [c["done"] for c in chunks] == [False] * len(tokens) + [True]
    assert chunks[-1]["meta"] == {"model": "fake-parrot"}


async def _wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 5) -> None:
    """Poll ``condition()`` (server-side state offers no event to wait on); bounded."""
    with anyio.fail_after(timeout_s):
        for _ in range(100_000):
            if condition():
                return
            await anyio.sleep(0.005)
    raise AssertionError(f"timed out waiting until {what}")


async def test_two_sse_clients_and_a_websocket_client_at_once_each_get_only_their_own_tokens() -> (
    None
):
    flow = build_flow(token_delay_s=0.001, queue_maxsize=QUEUE_MAXSIZE)
    questions = {
        "sse-1": "why do emperor penguins huddle in winter",
        "sse-2": "how deep can a penguin dive " * 3,
        "ws": "what do krill eat",
    }
    first_seen = 0
    all_started = anyio.Event()
    results: dict[str, tuple[str, list[dict[str, Any]]]] = {}

    async def started() -> None:
        # Each client waits here after its first token until all three have one: the streams
        # are provably in flight at the same time.
        nonlocal first_seen
        first_seen += 1
        if first_seen == len(questions):
            all_started.set()
        await all_started.wait()

    async def sse_client(served: Served, name: str) -> None:
        lines: list[str] = []
        async with httpx.AsyncClient(base_url=served.http) as client:
            params = {"q": questions[name]}
            async with client.stream("GET", "/stream", params=params) as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                trace_id = response.headers["x-trace-id"]
                async for line in response.aiter_lines():
                    lines.append(line)
                    if line == "" and len(_sse_events(lines)) == 1:
                        await started()
        events = _sse_events(lines)
        assert [e[0] for e in events] == ["chunk"] * (len(events) - 1) + ["done"]
        assert [e[1] for e in events] == [f"{trace_id}:{i}" for i in range(len(events))]
        results[name] = (trace_id, [e[2] for e in events])

    async def ws_client(served: Served) -> None:
        chunks: list[dict[str, Any]] = []
        async with connect(f"{served.ws}/ws") as ws:
            await ws.send(json.dumps({"q": questions["ws"]}))
            async for frame in ws:  # the server closes after the done frame
                chunks.append(json.loads(frame))
                if len(chunks) == 1:
                    await started()
        assert {c["type"] for c in chunks} == {"chunk"}
        results["ws"] = (chunks[0]["stream_id"], chunks)

    async with serving(flow) as served:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(sse_client, served, "sse-1")
                tg.start_soon(sse_client, served, "sse-2")
                tg.start_soon(ws_client, served)
        await _wait_until(lambda: flow.statistics().live_traces == 0, "every trace ended")
        stats = flow.statistics()
        assert (stats.rookery_buffered, stats.rookery_keys, stats.streams) == (0, 0, 0)
    assert len({trace_id for trace_id, _ in results.values()}) == 3
    for name, (trace_id, chunks) in results.items():
        _assert_own_stream(chunks, trace_id, _expected_tokens(questions[name]))
    assert not flow.statistics().running


async def test_a_stalled_sse_client_does_not_delay_another_and_is_cleaned_up_on_disconnect() -> (
    None
):
    flow = build_flow(token_delay_s=0, queue_maxsize=QUEUE_MAXSIZE)
    # ~80 MB if it ran to the end: more than the socket buffers between client and server can
    # ever hold (Linux allows at most 32 MiB + 4 MiB), so once the stalled client stops reading,
    # its generation must block.
    big_word = "x" * 8192
    stalled_tokens = 20_000

    async with serving(flow) as served, httpx.AsyncClient(base_url=served.http) as client:
        params = {"q": big_word, "max_tokens": str(stalled_tokens)}
        async with client.stream("GET", "/stream", params=params) as stalled:
            trace_a = stalled.headers["x-trace-id"]
            lines = stalled.aiter_lines()
            with anyio.fail_after(5):
                assert (await anext(lines)).startswith("event: chunk")
            # Stop reading. The server fills the socket buffers, then trace A's Rookery buffer;
            # then A's generation waits for a reader that does not come.
            await _wait_until(
                lambda: runtime_of(flow).rookery.depth(trace_a) == QUEUE_MAXSIZE,
                "trace A is stalled",
            )

            other: list[str] = []
            with anyio.fail_after(5):
                response = await client.get("/stream", params={"q": "still fast"})
            other = response.text.splitlines()
            chunks = [data for _, _, data in _sse_events(other)]
            _assert_own_stream(chunks, response.headers["x-trace-id"], ["Echo:", " still", " fast"])

            # A is still alive and still stuck where it was: nobody read it.
            assert runtime_of(flow).traces.get(trace_a) is not None
            assert runtime_of(flow).rookery.depth(trace_a) == QUEUE_MAXSIZE
            stats = (await client.get("/stats")).json()
            assert stats["live_traces"] == 1
        # The stalled client hung up: its stream is closed and its trace cancelled and freed.
        await _wait_until(lambda: flow.statistics().live_traces == 0, "trace A was cancelled")
        await _wait_until(lambda: flow.statistics().rookery_keys == 0, "A's buffer was freed")
        assert flow.statistics().streams == 0


async def test_sse_endpoint_rejects_a_request_without_a_question() -> None:
    flow = build_flow(token_delay_s=0)
    async with serving(flow) as served, httpx.AsyncClient(base_url=served.http) as client:
        with anyio.fail_after(5):
            response = await client.get("/stream")
        assert response.status_code == 400
        assert response.json()["error"][0]["loc"] == ["q"]
        assert flow.statistics().live_traces == 0


async def test_the_server_shuts_down_cleanly_leaving_no_task_behind() -> None:
    before = {task for task in asyncio.all_tasks() if not task.done()}
    flow = build_flow(token_delay_s=0)
    async with serving(flow) as served:
        async with connect(f"{served.ws}/ws") as ws:
            await ws.send("plain text question")
            with anyio.fail_after(5):
                frames = [json.loads(frame) async for frame in ws]
        assert "".join(f["text"] for f in frames) == "Echo: plain text question"
    after = {task for task in asyncio.all_tasks() if not task.done()}
    assert after <= before
    assert not flow.statistics().running
