"""What the web routes share: the app state, authorisation, the error body, client events."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast

from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse

from ._errors import SessionError, SessionLimitExceeded, SessionTenantMismatch
from ._manager import SessionManager
from ._runtime import TaskPipeline
from ._session import StreamingSession
from ._steering import SteeringEvent, SteeringEventType

__all__ = ["Authorize", "WebState", "error", "steering_event"]

Authorize = Callable[[HTTPConnection, str], "bool | Awaitable[bool]"]
"""``authorize(conn, session_id)``: may this request or WebSocket use the session?"""


def error(status: int, code: str, message: str) -> JSONResponse:
    """The error body every route uses: ``{"error": {"code", "message"}}``."""
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


class WebState:
    """What every route needs: the manager, the pipelines, the authoriser."""

    def __init__(
        self,
        manager: SessionManager,
        pipelines: Mapping[str, TaskPipeline],
        authorize: Authorize | None,
        ping_s: float,
    ) -> None:
        self.manager = manager
        self.pipelines = dict(pipelines)
        self.authorize = authorize
        self.ping_s = ping_s

    async def allowed(self, conn: HTTPConnection, session_id: str) -> bool:
        """Whether ``authorize`` lets ``conn`` use the session (True without one)."""
        if self.authorize is None:
            return True
        verdict = self.authorize(conn, session_id)
        if inspect.isawaitable(verdict):
            verdict = await verdict
        return bool(verdict)

    async def session(
        self, conn: HTTPConnection
    ) -> tuple[StreamingSession | None, JSONResponse | None]:
        """The request's session, or the error response to send instead."""
        session_id = cast(str, conn.path_params["sid"])
        if not await self.allowed(conn, session_id):
            return None, error(403, "forbidden", f"not allowed to use session {session_id!r}")
        try:
            return await self.manager.get_or_create(session_id), None
        except SessionTenantMismatch as exc:
            return None, error(403, "tenant_mismatch", str(exc))
        except SessionLimitExceeded as exc:
            return None, error(429, "session_limit", str(exc))
        except SessionError as exc:
            return None, error(503, "unavailable", str(exc))


def steering_event(session_id: str, fields: dict[str, Any]) -> SteeringEvent:
    """A client's event (``session_id`` defaults to the path's; always the user's).

    Raises:
        ValidationError: the fields do not make a steering event.
        TypeError: unknown fields.
    """
    fields = {**fields, "source": "user"}
    fields.setdefault("session_id", session_id)
    kind = fields.get("event_type")
    if isinstance(kind, str) and kind in SteeringEventType.__members__:
        fields["event_type"] = SteeringEventType[kind]  # "CANCEL" as well as "cancel"
    return SteeringEvent(**fields)
