"""The web app's routes over a SessionManager: JSON endpoints, errors, authorisation."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Mapping
from contextlib import asynccontextmanager
from typing import Any, cast

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from ._errors import (
    ForegroundBusy,
    SessionError,
    SessionLimitExceeded,
    UnknownCursor,
)
from ._manager import SessionManager
from ._records import is_async_callable
from ._runtime import TaskPipeline
from ._steering import SteeringOutcome
from ._tasks import TaskType
from ._web_common import Authorize, WebState, error, steering_event
from ._web_stream import sse_endpoint, ws_endpoint

__all__ = ["build_app"]

_SPAWN_FIELDS = frozenset(
    {
        "pipeline",
        "query",
        "task_type",
        "priority",
        "merge_strategy",
        "group_id",
        "description",
        "if_busy",
    }
)


async def _json_body(request: Request) -> dict[str, Any] | JSONResponse:
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError as exc:
        return error(422, "invalid", f"the body is not JSON: {exc}")
    if not isinstance(body, dict):
        return error(422, "invalid", "the body must be a JSON object")
    return cast(dict[str, Any], body)


_STEER_STATUS = {
    SteeringOutcome.DELIVERED: 202,
    SteeringOutcome.APPLIED: 202,
    SteeringOutcome.PARKED: 202,
    SteeringOutcome.DUPLICATE: 200,
    SteeringOutcome.REJECTED: 409,
}


def _invalid(exc: Exception) -> JSONResponse:
    if isinstance(exc, ValidationError):
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        return error(422, "invalid", detail)
    return error(422, "invalid", str(exc))


def _routes(state: WebState) -> list[BaseRoute]:
    async def steer(request: Request) -> Response:
        session, failed = await state.session(request)
        if session is None:
            assert failed is not None
            return failed
        body = await _json_body(request)
        if isinstance(body, JSONResponse):
            return body
        try:
            event = steering_event(session.session_id, body)
        except (ValidationError, TypeError) as exc:
            return _invalid(exc)
        receipt = await session.steer(event)
        return JSONResponse(
            receipt.model_dump(mode="json"), status_code=_STEER_STATUS[receipt.outcome]
        )

    async def spawn(request: Request) -> Response:
        session, failed = await state.session(request)
        if session is None:
            assert failed is not None
            return failed
        body = await _json_body(request)
        if isinstance(body, JSONResponse):
            return body
        unknown = sorted(set(body) - _SPAWN_FIELDS)
        if unknown:
            return error(422, "invalid", f"unknown fields {unknown}; use {sorted(_SPAWN_FIELDS)}")
        name = body.get("pipeline")
        pipeline = state.pipelines.get(name) if isinstance(name, str) else None
        if pipeline is None:
            names = ", ".join(sorted(state.pipelines)) or "none configured"
            return error(404, "unknown_pipeline", f"no pipeline {name!r}; known: {names}")
        try:
            task_id = await session.spawn_task(
                pipeline,
                task_type=TaskType(body.get("task_type", "FOREGROUND")),
                query=_opt_str(body, "query"),
                description=_opt_str(body, "description"),
                priority=body.get("priority", 0),
                if_busy=body.get("if_busy", "queue"),
                merge_strategy=body.get("merge_strategy", "append"),
                group_id=_opt_str(body, "group_id"),
            )
        except SessionLimitExceeded as exc:
            return error(429, "session_limit", str(exc))
        except ForegroundBusy as exc:
            return error(409, "foreground_busy", str(exc))
        except KeyError as exc:  # GroupNotFound
            return error(404, "not_found", str(exc))
        except SessionError as exc:  # GroupSealed, SessionClosed
            return error(409, "conflict", str(exc))
        except (TypeError, ValueError) as exc:
            return error(422, "invalid", str(exc))
        return JSONResponse({"task_id": task_id}, status_code=201)

    async def list_tasks(request: Request) -> Response:
        session, failed = await state.session(request)
        if session is None:
            assert failed is not None
            return failed
        return JSONResponse([t.model_dump(mode="json") for t in session.list_tasks()])

    async def get_task(request: Request) -> Response:
        session, failed = await state.session(request)
        if session is None:
            assert failed is not None
            return failed
        task_id = cast(str, request.path_params["tid"])
        task = session.get_task(task_id)
        if task is None:
            return error(404, "unknown_task", f"session has no task {task_id!r}")
        return JSONResponse(task.model_dump(mode="json"))

    async def updates(request: Request) -> Response:
        session, failed = await state.session(request)
        if session is None:
            assert failed is not None
            return failed
        query = request.query_params
        try:
            limit = int(query.get("limit", "500"))
            page = await session.list_updates(
                since_id=query.get("since_id"), task_id=query.get("task_id"), limit=limit
            )
        except UnknownCursor as exc:
            return error(409, "unknown_cursor", str(exc))
        except ValueError as exc:
            return error(422, "invalid", f"limit must be a positive int: {exc}")
        return JSONResponse([u.to_payload() for u in page])

    return [
        Route("/sessions/{sid}/events", sse_endpoint(state), methods=["GET"]),
        WebSocketRoute("/sessions/{sid}/ws", ws_endpoint(state)),
        Route("/sessions/{sid}/steer", steer, methods=["POST"]),
        Route("/sessions/{sid}/tasks", spawn, methods=["POST"]),
        Route("/sessions/{sid}/tasks", list_tasks, methods=["GET"]),
        Route("/sessions/{sid}/tasks/{tid}", get_task, methods=["GET"]),
        Route("/sessions/{sid}/updates", updates, methods=["GET"]),
    ]


def _opt_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{key} must be a string")
    return value


def build_app(
    manager: SessionManager,
    *,
    pipelines: Mapping[str, TaskPipeline],
    authorize: Authorize | None,
    ping_s: float,
) -> Starlette:
    """The app of ``create_app`` (arguments checked here)."""
    if not ping_s > 0:
        raise ValueError(f"ping_s must be a positive number of seconds, not {ping_s!r}")
    for name, pipeline in pipelines.items():
        if not is_async_callable(pipeline):
            raise TypeError(f"pipeline {name!r} is not async: pass `async def pipeline(runtime)`")
    state = WebState(manager, pipelines, authorize, ping_s)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncGenerator[None]:
        if manager.is_running:
            yield
            return
        async with manager:
            yield

    app = Starlette(routes=_routes(state), lifespan=lifespan)
    app.state.sessions = state
    return app
