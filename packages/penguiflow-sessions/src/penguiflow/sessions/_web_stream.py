"""The streaming routes: SSE with Last-Event-ID resume, and a WebSocket over session.connect.

Both start from the client's cursor; an unknown one (malformed, ahead of the log, or no longer
retained) gives the client one ``reset`` carrying the session's head, then live updates. A
subscriber that lags past what the log retains is moved on the same way.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Any, cast

import anyio
from pydantic import ValidationError
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from ._broker import Subscription
from ._errors import SessionClosed, SubscriberLagged, UnknownCursor
from ._session import StreamingSession
from ._steering import SteeringEvent, SteeringReceipt
from ._updates import StateUpdate, UpdateType
from ._web_common import WebState, error, steering_event

__all__ = ["sse_endpoint", "ws_endpoint"]

_POLICY_VIOLATION = 1008


class _Filters:
    """The stream's query: cursor, task ids, update types (validated)."""

    def __init__(self, conn: Request | WebSocket) -> None:
        query = conn.query_params
        header = conn.headers.get("last-event-id")
        self.cursor: str | None = header or query.get("since_id") or None
        task_ids = query.getlist("task_id")
        self.task_ids: list[str] | None = task_ids or None
        kinds = query.getlist("update_type")
        self.update_types: list[UpdateType] | None = [UpdateType(k) for k in kinds] or None

    def subscribe(self, session: StreamingSession, cursor: str | None) -> Subscription:
        return session.subscribe(
            task_ids=self.task_ids, update_types=self.update_types, since_id=cursor
        )


def _reset(head: str) -> dict[str, str]:
    return {"reason": "unknown_cursor", "head": head}


async def _open(
    session: StreamingSession, filters: _Filters, cursor: str | None
) -> tuple[Subscription, str | None]:
    """An entered subscription from ``cursor``, else from now on with the head to reset to."""
    subscription = filters.subscribe(session, cursor)
    try:
        await subscription.__aenter__()
        return subscription, None
    except UnknownCursor as exc:
        subscription = filters.subscribe(session, None)
        await subscription.__aenter__()
        return subscription, exc.head


async def _follow(
    session: StreamingSession, filters: _Filters, first: Subscription
) -> AsyncGenerator[StateUpdate | str]:
    """Updates of ``first``, then of a re-opened subscription after a lag; str: a reset head."""
    subscription = first
    while True:
        try:
            async for update in subscription:
                yield update
            return
        except SubscriberLagged as exc:
            cursor = exc.resume_from or "0"  # catch up from the log, or reset if it is gone
        finally:
            await subscription.__aexit__(None, None, None)
        subscription, head = await _open(session, filters, cursor)
        if head is not None:
            yield head


def sse_endpoint(state: WebState) -> Callable[[Request], Awaitable[Response]]:
    """``GET /sessions/{sid}/events``."""

    async def events(request: Request) -> Response:
        try:
            filters = _Filters(request)
        except ValueError as exc:
            return error(422, "invalid", f"update_type: {exc}")
        session, failed = await state.session(request)
        if session is None:
            assert failed is not None
            return failed

        # Registered before the response starts: nothing published from here on is missed.
        try:
            first, head = await _open(session, filters, filters.cursor)
        except SessionClosed as exc:
            return error(503, "unavailable", str(exc))

        async def release() -> None:  # also when the stream never started
            await first.__aexit__(None, None, None)

        async def stream() -> AsyncIterator[ServerSentEvent]:
            if head is not None:
                yield ServerSentEvent(event="reset", data=json.dumps(_reset(head)))
            try:
                async with aclosing(_follow(session, filters, first)) as items:
                    async for item in items:
                        if isinstance(item, str):
                            yield ServerSentEvent(event="reset", data=json.dumps(_reset(item)))
                            continue
                        yield ServerSentEvent(
                            id=item.update_id,
                            event=item.update_type.value,
                            data=item.model_dump_json(),
                        )
            except SessionClosed:
                return

        return EventSourceResponse(stream(), ping=state.ping_s, background=BackgroundTask(release))

    return events


class _WebSocketTransport:
    """A :class:`Transport` over one accepted WebSocket (frames in the module docstring)."""

    def __init__(self, websocket: WebSocket, session_id: str) -> None:
        self._ws = websocket
        self._session_id = session_id
        self._lock = anyio.Lock()

    async def send_frame(self, frame: dict[str, Any]) -> None:
        async with self._lock:
            await self._ws.send_text(json.dumps(frame))

    async def send(self, update: StateUpdate) -> None:
        async with self._lock:
            await self._ws.send_text('{"type":"update","update":' + update.model_dump_json() + "}")

    async def send_receipt(self, receipt: SteeringReceipt) -> None:
        await self.send_frame({"type": "receipt", "receipt": receipt.model_dump(mode="json")})

    async def receive(self) -> SteeringEvent | None:
        while True:
            try:
                text = await self._ws.receive_text()
            except (WebSocketDisconnect, RuntimeError):
                return None
            event = await self._parse(text)
            if event is not None:
                return event

    async def _parse(self, text: str) -> SteeringEvent | None:
        try:
            frame = json.loads(text)
        except ValueError:
            return await self._bad("the frame is not JSON")
        if not isinstance(frame, dict) or cast(dict[str, Any], frame).get("type") != "steer":
            return await self._bad('send {"type": "steer", "event": {...}}')
        fields = cast(dict[str, Any], frame).get("event")
        if not isinstance(fields, dict):
            return await self._bad('"event" must be an object of the event\'s fields')
        try:
            return steering_event(self._session_id, cast(dict[str, Any], fields))
        except (ValidationError, TypeError) as exc:
            return await self._bad(f"not a steering event: {exc}")

    async def _bad(self, message: str) -> None:
        await self.send_frame({"type": "error", "error": {"code": "invalid", "message": message}})

    async def aclose(self) -> None:
        if self._ws.application_state is WebSocketState.CONNECTED:
            try:
                await self._ws.close()
            except (RuntimeError, WebSocketDisconnect):  # the peer closed first
                pass


def ws_endpoint(state: WebState) -> Callable[[WebSocket], Awaitable[None]]:
    """``WS /sessions/{sid}/ws``."""

    async def socket(websocket: WebSocket) -> None:
        session_id = cast(str, websocket.path_params["sid"])
        await websocket.accept()
        if not await state.allowed(websocket, session_id):
            await websocket.close(code=_POLICY_VIOLATION, reason="not allowed")
            return
        try:
            filters = _Filters(websocket)
        except ValueError as exc:
            await websocket.close(code=_POLICY_VIOLATION, reason=f"update_type: {exc}")
            return
        session, failed = await state.session(websocket)
        if session is None:
            assert failed is not None
            await websocket.close(code=_POLICY_VIOLATION, reason=bytes(failed.body).decode())
            return
        transport = _WebSocketTransport(websocket, session_id)
        cursor = filters.cursor
        while True:
            try:
                async with session.connect(
                    transport,
                    since_id=cursor,
                    task_ids=filters.task_ids,
                    update_types=filters.update_types,
                    on_receipt=transport.send_receipt,
                ) as connection:
                    # Ends when the peer goes, the session closes, or the subscriber lagged
                    # past the log (the client reconnects from its last id and gets a reset).
                    await connection.wait_closed()
                return
            except UnknownCursor as exc:
                await transport.send_frame({"type": "reset", **_reset(exc.head)})
                cursor = None
            except SessionClosed:
                await transport.aclose()
                return

    return socket
