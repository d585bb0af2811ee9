"""A session server: SSE, WebSocket and a one-page HTML client on 127.0.0.1.

Run ``uv run python examples/sessions_web/app.py`` (``--port N``, default 8000) and open
http://127.0.0.1:8000/. The page follows ``/sessions/demo/events`` over SSE (a reload resumes from
the browser's Last-Event-ID), starts tasks with ``POST /sessions/demo/tasks`` and steers them over
the WebSocket ``/sessions/demo/ws``.
"""

from __future__ import annotations

import argparse

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse

from penguiflow.sessions import SessionManager, TaskRuntime, UpdateType
from penguiflow.sessions.web import create_app


async def countdown(runtime: TaskRuntime) -> dict[str, object]:
    """Counts down from the query's number (default 5), one PROGRESS per second; pausable."""
    start = int(runtime.query) if runtime.query and runtime.query.isdigit() else 5
    for left in range(start, 0, -1):
        await runtime.pause_point()
        runtime.emit_update(UpdateType.PROGRESS, {"left": left}, step_index=start - left)
        await anyio.sleep(1)
    return {"done": True, "from": start}


async def shout(runtime: TaskRuntime) -> str:
    """Answers at once with the query in capitals."""
    return (runtime.query or "").upper()


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>penguiflow sessions</title>
<style>body{font:14px system-ui;margin:2em}#log{font:12px monospace;white-space:pre-wrap}</style>
</head><body>
<h1>Session <code>demo</code></h1>
<p><input id="query" value="5"> <button id="countdown">countdown</button>
<button id="shout">shout</button>
<button id="pause">pause last</button> <button id="resume">resume last</button>
<button id="cancel">cancel last</button></p>
<div id="log"></div>
<script>
const sid = "demo";
let last = null;
const log = (line) => { document.getElementById("log").textContent = line + "\\n" +
  document.getElementById("log").textContent; };
const events = new EventSource(`/sessions/${sid}/events?since_id=0`);
for (const kind of ["STATUS_CHANGE","PROGRESS","RESULT","ERROR","CHECKPOINT","NOTIFICATION",
                    "STREAM","THINKING","TOOL_CALL","reset"]) {
  events.addEventListener(kind, (e) => log(`sse ${e.lastEventId || "-"} ${kind} ${e.data}`));
}
const ws = new WebSocket(`ws://${location.host}/sessions/${sid}/ws`);
ws.onmessage = (m) => { const f = JSON.parse(m.data); if (f.type !== "update")
  log(`ws ${f.type} ${JSON.stringify(f.receipt || f.error || f)}`); };
async function spawn(pipeline) {
  const r = await fetch(`/sessions/${sid}/tasks`, {method: "POST",
    headers: {"content-type": "application/json"},
    body: JSON.stringify({pipeline, query: document.getElementById("query").value,
                          task_type: "BACKGROUND"})});
  last = (await r.json()).task_id; log(`spawned ${last}`);
}
const steer = (event_type) => ws.send(JSON.stringify({type: "steer",
  event: {task_id: last, event_type, payload: {}}}));
document.getElementById("countdown").onclick = () => spawn("countdown");
document.getElementById("shout").onclick = () => spawn("shout");
document.getElementById("pause").onclick = () => steer("pause");
document.getElementById("resume").onclick = () => steer("resume");
document.getElementById("cancel").onclick = () => steer("cancel");
</script></body></html>
"""


async def index(request: Request) -> HTMLResponse:
    """The one-page client."""
    return HTMLResponse(PAGE)


def build() -> Starlette:
    """The app: the session routes plus the page at ``/``."""
    app = create_app(
        SessionManager(idle_timeout_s=600), pipelines={"countdown": countdown, "shout": shout}
    )
    app.add_route("/", index, methods=["GET"])
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    print(f"serving http://127.0.0.1:{args.port}/", flush=True)
    uvicorn.run(
        build(),
        host="127.0.0.1",
        port=args.port,
        ws="websockets-sansio",
        log_level="warning",
    )


if __name__ == "__main__":
    main()
