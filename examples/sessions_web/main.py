"""Smoke-drive the session server of app.py: start it on a free port, use SSE, WS and the page.

Run ``uv run python examples/sessions_web/main.py``. It starts ``python app.py --port N`` on a
free port of 127.0.0.1, fetches the HTML client, follows the session's updates over SSE, starts a
countdown, pauses and resumes it over the WebSocket, reconnects the SSE stream with
``Last-Event-ID`` (no gap, no duplicate), then stops the server.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
from websockets.asyncio.client import connect

HERE = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def sse(response: httpx.Response) -> AsyncIterator[dict[str, str]]:
    """The events of an SSE response as {"id", "event", "data"}."""
    event: dict[str, str] = {}
    async for line in response.aiter_lines():
        if not line:
            if event:
                yield event
            event = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            event[name] = value.removeprefix(" ")


async def drive(base: str) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        page = await client.get("/")
        print(f"page: {page.status_code}, has EventSource: {'EventSource' in page.text}")
        seen: list[dict[str, str]] = []
        async with client.stream("GET", "/sessions/demo/events?since_id=0") as stream:
            events = sse(stream)
            created = await client.post(
                "/sessions/demo/tasks",
                json={"pipeline": "countdown", "query": "3", "task_type": "BACKGROUND"},
            )
            task_id = created.json()["task_id"]
            print(f"POST /tasks -> {created.status_code}")
            async with connect(base.replace("http", "ws") + "/sessions/demo/ws") as ws:
                for event_type, status in (("pause", "PAUSED"), ("resume", "COMPLETE")):
                    event = {"task_id": task_id, "event_type": event_type}
                    await ws.send(json.dumps({"type": "steer", "event": event}))
                    while (reply := json.loads(await ws.recv()))["type"] != "receipt":
                        pass
                    print(f"ws {event_type} -> {reply['receipt']['outcome']}")
                    async for update in events:  # follow SSE until the task shows `status`
                        seen.append(update)
                        if status_of(update) == status:
                            break
        print("sse events: " + " ".join(f"{e['id']}:{e['event']}" for e in seen))
        print(f"statuses: {[s for e in seen if (s := status_of(e))]}")
        # reconnect from the middle: the server resumes after that id
        middle = seen[len(seen) // 2]["id"]
        async with client.stream(
            "GET", "/sessions/demo/events", headers={"Last-Event-ID": middle}
        ) as stream:
            resumed = [e async for e in _until_complete(sse(stream))]
        ids = [int(e["id"]) for e in resumed]
        print(
            f"resumed after {middle}: ids {ids[0]}..{ids[-1]}, contiguous: "
            f"{ids == list(range(int(middle) + 1, ids[-1] + 1))}"
        )
        tasks = (await client.get("/sessions/demo/tasks")).json()
        print(f"task: {tasks[0]['status']} result={tasks[0]['result']}")


def status_of(event: dict[str, str]) -> str | None:
    """The status a STATUS_CHANGE event reports (None for other events)."""
    if event["event"] != "STATUS_CHANGE":
        return None
    return str(json.loads(event["data"])["content"]["status"])


async def _until_complete(events: AsyncIterator[dict[str, str]]) -> AsyncIterator[dict[str, str]]:
    async for event in events:
        yield event
        if status_of(event) == "COMPLETE":
            return


def main() -> None:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(HERE / "app.py"), "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(base + "/", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("app.py did not start") from None
                time.sleep(0.1)
        print("server up on a free port")
        anyio.run(drive, base)
    finally:
        server.terminate()
        server.wait(timeout=10)
    print("sessions_web done")


if __name__ == "__main__":
    main()
