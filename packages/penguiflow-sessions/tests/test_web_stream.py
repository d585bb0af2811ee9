"""SSE and WebSocket endpoints on a real uvicorn server: cursors, resets, steering, auth."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import HTTPConnection
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from penguiflow.core import SQLiteDurableStore
from penguiflow.sessions import (
    NotificationPayload,
    SessionLimits,
    SessionManager,
    TaskRuntime,
    TaskStatus,
    UpdateType,
)
from penguiflow.sessions.web import create_app

Serve = Callable[[Starlette], AbstractAsyncContextManager[str]]


@dataclass
class SseEvent:
    """One server-sent event."""

    event: str | None = None
    id: str | None = None
    data: str = ""
    fields: dict[str, str] = field(default_factory=dict[str, str])

    @property
    def json(self) -> Any:
        return json.loads(self.data)


async def sse_events(response: httpx.Response) -> AsyncIterator[SseEvent]:
    """The events of a streaming SSE response (comments and pings skipped)."""
    current = SseEvent()
    async for line in response.aiter_lines():
        if not line:
            if current.event is not None or current.data:
                yield current
            current = SseEvent()
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            current.event = value
        elif name == "id":
            current.id = value
        elif name == "data":
            current.data = f"{current.data}\n{value}" if current.data else value
        else:
            current.fields[name] = value


async def take(events: AsyncIterator[SseEvent], n: int) -> list[SseEvent]:
    out: list[SseEvent] = []
    async for event in events:
        out.append(event)
        if len(out) == n:
            break
    return out


class Steps:
    """A pipeline emitting ``n`` PROGRESS updates, then waiting for ``release``."""

    name = "steps"

    def __init__(self, n: int = 3) -> None:
        self.n = n
        self.release = anyio.Event()

    async def __call__(self, runtime: TaskRuntime) -> dict[str, int]:
        for i in range(self.n):
            runtime.emit_update(UpdateType.PROGRESS, {"i": i})
        await self.release.wait()
        return {"steps": self.n}


async def echo(runtime: TaskRuntime) -> dict[str, str | None]:
    """A pipeline answering its query at once."""
    return {"echo": runtime.query}


def ws_url(base: str, path: str) -> str:
    return base.replace("http://", "ws://") + path


async def test_sse_streams_updates_with_id_event_and_state_update_json(serve: Serve) -> None:
    manager = SessionManager()
    app = create_app(manager, pipelines={"echo": echo})
    with anyio.fail_after(20):
        async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
            async with client.stream("GET", "/sessions/s1/events") as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                created = await client.post(
                    "/sessions/s1/tasks", json={"pipeline": "echo", "query": "hi"}
                )
                assert created.status_code == 201
                task_id = created.json()["task_id"]
                events = await take(sse_events(response), 4)
    # PENDING, RUNNING, RESULT, COMPLETE in order; ids are the update ids
    assert [e.id for e in events] == ["1", "2", "3", "4"]
    assert [e.event for e in events] == [
        "STATUS_CHANGE",
        "STATUS_CHANGE",
        "RESULT",
        "STATUS_CHANGE",
    ]
    assert events[0].event == "STATUS_CHANGE" and events[0].json["content"]["status"] == "PENDING"
    result = next(e for e in events if e.event == "RESULT")
    assert result.json["task_id"] == task_id
    assert result.json["content"]["payload"] == {"echo": "hi"}
    assert result.json["update_id"] == result.id


async def test_sse_reconnect_with_last_event_id_resumes_without_gap_or_duplicate(
    serve: Serve,
) -> None:
    manager = SessionManager()
    steps = Steps(6)
    app = create_app(manager, pipelines={"steps": steps})
    with anyio.fail_after(20):
        async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
            async with client.stream("GET", "/sessions/s1/events") as response:
                await client.post("/sessions/s1/tasks", json={"pipeline": "steps"})
                first = await take(sse_events(response), 4)
            last = first[-1].id
            assert last == "4"
            headers = {"Last-Event-ID": last}
            # Last-Event-ID wins over since_id
            async with client.stream(
                "GET", "/sessions/s1/events?since_id=1", headers=headers
            ) as response:
                steps.release.set()
                rest = await take(sse_events(response), 6)
    ids = [int(e.id or 0) for e in first + rest]
    assert ids == list(range(1, 11))


async def test_sse_unknown_cursor_yields_one_reset_with_the_head_then_live_updates(
    serve: Serve,
) -> None:
    manager = SessionManager()
    app = create_app(manager, pipelines={"echo": echo})
    with anyio.fail_after(20):
        async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
            await client.post("/sessions/s1/tasks", json={"pipeline": "echo"})
            session = manager.get("s1")
            assert session is not None
            head = session.statistics().last_update_id
            async with client.stream("GET", "/sessions/s1/events?since_id=999") as response:
                await client.post("/sessions/s1/tasks", json={"pipeline": "echo"})
                events = await take(sse_events(response), 2)
    assert events[0].event == "reset"
    assert events[0].json == {"reason": "unknown_cursor", "head": head}
    assert events[1].id == str(int(head or 0) + 1)


async def test_sse_filters_by_update_type_and_task_id(serve: Serve) -> None:
    manager = SessionManager()
    app = create_app(manager, pipelines={"echo": echo})
    with anyio.fail_after(20):
        async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
            query = "update_type=RESULT&update_type=ERROR"
            async with client.stream("GET", f"/sessions/s1/events?{query}") as response:
                await client.post("/sessions/s1/tasks", json={"pipeline": "echo", "query": "a"})
                await client.post("/sessions/s1/tasks", json={"pipeline": "echo", "query": "b"})
                events = await take(sse_events(response), 2)
            bad = await client.get("/sessions/s1/events?update_type=NOPE")
    assert [e.event for e in events] == ["RESULT", "RESULT"]
    assert [e.json["content"]["payload"]["echo"] for e in events] == ["a", "b"]
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "invalid"


async def test_websocket_sends_update_frames_and_answers_steer_frames_with_receipts(
    serve: Serve,
) -> None:
    manager = SessionManager()
    steps = Steps(1)
    app = create_app(manager, pipelines={"steps": steps})
    with anyio.fail_after(20):
        async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
            async with connect(ws_url(base, "/sessions/s1/ws?since_id=0")) as ws:
                created = await client.post("/sessions/s1/tasks", json={"pipeline": "steps"})
                task_id = created.json()["task_id"]
                frames = [json.loads(await ws.recv()) for _ in range(3)]
                assert all(f["type"] == "update" for f in frames)
                assert frames[2]["update"]["update_type"] == "PROGRESS"
                await ws.send(json.dumps({"type": "nonsense"}))
                problem = json.loads(await ws.recv())
                assert problem["type"] == "error" and problem["error"]["code"] == "invalid"
                await ws.send(
                    json.dumps(
                        {
                            "type": "steer",
                            "event": {
                                "task_id": task_id,
                                "event_type": "CANCEL",
                                "source": "agent",  # a client is always the user
                            },
                        }
                    )
                )
                seen: list[dict[str, object]] = []
                while not any(f["type"] == "receipt" for f in seen):
                    seen.append(json.loads(await ws.recv()))
            receipt = next(f for f in seen if f["type"] == "receipt")["receipt"]
    assert isinstance(receipt, dict) and receipt["outcome"] == "APPLIED"
    session = manager.get("s1")
    assert session is None  # the manager closed with the server
    # the task was cancelled by the user's CANCEL, not parked as an agent's would be


async def test_websocket_resumes_from_since_id_and_resets_on_an_unknown_cursor(
    serve: Serve,
) -> None:
    manager = SessionManager()
    app = create_app(manager, pipelines={"echo": echo})
    with anyio.fail_after(20):
        async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
            await client.post("/sessions/s1/tasks", json={"pipeline": "echo"})
            async with connect(ws_url(base, "/sessions/s1/ws?since_id=2")) as ws:
                replay = json.loads(await ws.recv())
            async with connect(ws_url(base, "/sessions/s1/ws?since_id=abc")) as ws:
                reset = json.loads(await ws.recv())
                await client.post("/sessions/s1/tasks", json={"pipeline": "echo"})
                live = json.loads(await ws.recv())
    assert replay["update"]["update_id"] == "3"
    assert reset == {"type": "reset", "reason": "unknown_cursor", "head": "4"}
    assert live["update"]["update_id"] == "5"


async def test_authorize_false_answers_403_and_closes_a_websocket_with_1008(serve: Serve) -> None:
    async def authorize(conn: HTTPConnection, session_id: str) -> bool:
        return session_id != "secret"

    manager = SessionManager()
    app = create_app(manager, authorize=authorize)
    with anyio.fail_after(20):
        async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
            denied = await client.get("/sessions/secret/tasks")
            allowed = await client.get("/sessions/open/tasks")
            async with connect(ws_url(base, "/sessions/secret/ws")) as ws:
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.recv()
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "forbidden"
    assert allowed.status_code == 200 and allowed.json() == []
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_the_app_uses_a_manager_that_is_already_running(serve: Serve) -> None:
    async with SessionManager() as manager:
        app = create_app(manager, pipelines={"echo": echo})
        with anyio.fail_after(20):
            async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
                await client.post("/sessions/s1/tasks", json={"pipeline": "echo"})
        session = manager.get("s1")  # still open: the server did not own the manager
        assert session is not None
        (task,) = session.list_tasks()
        assert task.status is TaskStatus.COMPLETE


async def test_clients_resume_from_their_cursor_across_a_server_restart_on_one_sqlite_file(
    serve: Serve, tmp_path: Path
) -> None:
    path = tmp_path / "sessions.db"
    steps = Steps(3)
    seen: list[SseEvent] = []
    ws_seen: list[dict[str, Any]] = []
    four = anyio.Event()

    async def follow(base: str) -> None:
        """An SSE client that stays connected until the server goes away."""
        try:
            async with httpx.AsyncClient(base_url=base, timeout=None) as client:
                async with client.stream("GET", "/sessions/s1/events?since_id=0") as response:
                    async for event in sse_events(response):
                        seen.append(event)
                        if len(seen) == 4:
                            four.set()
        except httpx.HTTPError:
            pass  # the server went away mid-stream

    with anyio.fail_after(30):
        # first server process: a task runs, an SSE client and a WS client read part of it
        async with SQLiteDurableStore.open(path) as store:
            app = create_app(SessionManager(store=store), pipelines={"steps": steps})
            async with anyio.create_task_group() as tg:
                async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
                    tg.start_soon(follow, base)
                    await client.post("/sessions/s1/tasks", json={"pipeline": "steps"})
                    await four.wait()
                    async with connect(ws_url(base, "/sessions/s1/ws?since_id=0")) as ws:
                        ws_seen += [json.loads(await ws.recv())["update"] for _ in range(2)]
                # the server stopped with the SSE stream open; the task was cancelled at
                # shutdown (not resumable), after the client was cut off
        last_sse, last_ws = seen[-1].id, str(ws_seen[-1]["update_id"])
        # second server process on the same file
        async with SQLiteDurableStore.open(path) as store:
            app = create_app(SessionManager(store=store), pipelines={"echo": echo})
            async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
                headers = {"Last-Event-ID": last_sse or ""}
                async with client.stream("GET", "/sessions/s1/events", headers=headers) as resp:
                    events = sse_events(resp)
                    rest: list[SseEvent] = []
                    async for event in events:  # the rest of the first run, up to CANCELLED
                        rest.append(event)
                        if event.event == "STATUS_CHANGE" and event.json["content"]["status"] in (
                            "CANCELLED",
                            "COMPLETE",
                        ):
                            break
                    await client.post("/sessions/s1/tasks", json={"pipeline": "echo"})
                    live = await take(events, 4)  # then a new task, live
                url = ws_url(base, f"/sessions/s1/ws?since_id={last_ws}")
                async with connect(url) as ws:
                    ws_rest = json.loads(await ws.recv())["update"]
    ids = [int(e.id or 0) for e in seen + rest + live]
    assert ids == list(range(1, len(ids) + 1))  # no gap, no duplicate across the restart
    assert rest[-1].json["content"]["status"] == "CANCELLED"
    assert rest[-1].json["content"]["reason"] == "session_closed"
    assert live[-1].event == "STATUS_CHANGE" and live[-1].json["content"]["status"] == "COMPLETE"
    assert ws_rest["update_id"] == str(int(last_ws) + 1)


async def test_an_sse_client_that_lagged_past_the_log_gets_a_reset_then_live_updates(
    serve: Serve,
) -> None:
    async def burst(runtime: TaskRuntime) -> None:
        for i in range(10):  # critical updates, faster than the queue and the log hold
            runtime.notify(NotificationPayload(title=f"n{i}"))

    limits = SessionLimits(update_queue_size=2, replay_buffer_size=3)
    app = create_app(SessionManager(limits=limits), pipelines={"burst": burst, "echo": echo})
    with anyio.fail_after(20):
        async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
            async with client.stream("GET", "/sessions/s1/events") as response:
                events = sse_events(response)
                await client.post("/sessions/s1/tasks", json={"pipeline": "burst"})
                got: list[SseEvent] = []
                async for event in events:
                    got.append(event)
                    if event.event == "reset":
                        break
                head = int(got[-1].json["head"])
                await client.post("/sessions/s1/tasks", json={"pipeline": "echo"})
                live = await take(events, 4)
    assert got[-1].json["reason"] == "unknown_cursor"
    assert [int(e.id or 0) for e in live] == list(range(head + 1, head + 5))


async def test_websocket_filters_by_update_type_and_a_sync_authorize_may_allow(
    serve: Serve,
) -> None:
    def authorize(conn: HTTPConnection, session_id: str) -> bool:
        return True

    app = create_app(SessionManager(), pipelines={"echo": echo}, authorize=authorize)
    with anyio.fail_after(20):
        async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
            url = ws_url(base, "/sessions/s1/ws?since_id=0&update_type=RESULT")
            async with connect(url) as ws:
                await client.post("/sessions/s1/tasks", json={"pipeline": "echo", "query": "a"})
                await client.post("/sessions/s1/tasks", json={"pipeline": "echo", "query": "b"})
                frames = [json.loads(await ws.recv()) for _ in range(2)]
    assert [f["update"]["update_type"] for f in frames] == ["RESULT", "RESULT"]
    assert [f["update"]["content"]["payload"]["echo"] for f in frames] == ["a", "b"]


async def test_sse_sends_keep_alive_pings_every_ping_s(serve: Serve) -> None:
    app = create_app(SessionManager(), ping_s=0.05)
    with anyio.fail_after(20):
        async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
            async with client.stream("GET", "/sessions/s1/events") as response:
                pings = 0
                async for line in response.aiter_lines():
                    if line.startswith(":"):
                        pings += 1
                        if pings == 2:
                            break
    assert pings == 2
