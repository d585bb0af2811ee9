"""HTTP, SSE and WebSocket endpoints for a :class:`~penguiflow.sessions.SessionManager`.

Needs the ``web`` extra (``pip install "penguiflow-sessions[web]"``: starlette, uvicorn,
sse-starlette)::

    import uvicorn
    from penguiflow.sessions import SessionManager
    from penguiflow.sessions.web import create_app

    app = create_app(SessionManager(), pipelines={"echo": echo})
    uvicorn.run(app, host="127.0.0.1", port=8000)

Routes (every one ``get_or_create``s its session, so a client reconnecting to a restarted
server with a store resumes from its cursor; errors are ``{"error": {"code", "message"}}``):

* ``GET /sessions/{sid}/events`` — SSE: ``id:`` the ``update_id``, ``event:`` the update type,
  ``data:`` the ``StateUpdate`` JSON. Query ``since_id``, ``task_id`` and ``update_type``
  (both repeatable); a ``Last-Event-ID`` header wins over ``since_id``. An unknown cursor
  yields one ``event: reset`` (``{"reason": "unknown_cursor", "head": id}``), then live updates.
* ``WS /sessions/{sid}/ws`` — the same query; server frames ``{"type": "update", "update"}``,
  ``{"type": "reset", ...}``, ``{"type": "receipt", "receipt"}``, ``{"type": "error", "error"}``;
  client frames ``{"type": "steer", "event": {...}}``.
* ``POST /sessions/{sid}/steer`` — the event's fields; the receipt with 202 (DELIVERED, APPLIED,
  PARKED), 200 (DUPLICATE), 409 (REJECTED) or 422 (malformed).
* ``POST /sessions/{sid}/tasks`` — ``{pipeline, query, task_type, priority, merge_strategy,
  group_id, description}`` → 201 ``{"task_id"}``; 404 unknown pipeline, 429 a session limit,
  409 foreground busy.
* ``GET /sessions/{sid}/tasks``, ``/tasks/{tid}``, ``/updates?since_id=&limit=``.

Clients' steering is always the user's (``source="user"``). ``authorize(conn, session_id)``
returning False (or an awaitable of False) answers 403, or closes a WebSocket with 1008.
"""

from __future__ import annotations

from collections.abc import Mapping

from ._web_requires import require_web_extra

require_web_extra()  # before starlette is imported: the error says what to install

from starlette.applications import Starlette  # noqa: E402

from ._manager import SessionManager  # noqa: E402
from ._runtime import TaskPipeline  # noqa: E402
from ._web_app import build_app  # noqa: E402
from ._web_common import Authorize  # noqa: E402

__all__ = ["Authorize", "create_app"]


def create_app(
    manager: SessionManager,
    *,
    pipelines: Mapping[str, TaskPipeline] | None = None,
    authorize: Authorize | None = None,
    ping_s: float = 15.0,
) -> Starlette:
    """A Starlette app serving ``manager``'s sessions (routes in the module docstring).

    Its lifespan enters ``manager`` unless it is already running. ``pipelines`` are what
    ``POST /sessions/{sid}/tasks`` may start, by name. ``ping_s`` is the SSE keep-alive period.

    Raises:
        ValueError: ``ping_s`` is not positive.
        TypeError: a pipeline is not async.
    """
    return build_app(manager, pipelines=pipelines or {}, authorize=authorize, ping_s=ping_s)
