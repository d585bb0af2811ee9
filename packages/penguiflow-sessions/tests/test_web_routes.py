"""The JSON routes of penguiflow.sessions.web on a real uvicorn: statuses and error bodies."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import anyio
import httpx
import pytest
from starlette.applications import Starlette

from penguiflow.sessions import SessionLimits, SessionManager, TaskRuntime, UpdateType
from penguiflow.sessions.web import create_app

Serve = Callable[[Starlette], AbstractAsyncContextManager[str]]


class Waits:
    """A pipeline that emits one PROGRESS, then runs until released."""

    def __init__(self) -> None:
        self.release = anyio.Event()

    async def __call__(self, runtime: TaskRuntime) -> str:
        runtime.emit_update(UpdateType.PROGRESS, {"step": 1})
        await self.release.wait()
        return "done"


async def echo(runtime: TaskRuntime) -> dict[str, str | None]:
    return {"echo": runtime.query}


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]


async def test_post_tasks_spawns_and_refuses_what_it_cannot_run(serve: Serve) -> None:
    waits = Waits()
    app = create_app(SessionManager(), pipelines={"echo": echo, "waits": waits})
    with anyio.fail_after(20):
        async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
            created = await client.post(
                "/sessions/s1/tasks",
                json={"pipeline": "waits", "query": "q", "description": "d", "priority": 2},
            )
            busy = await client.post(
                "/sessions/s1/tasks", json={"pipeline": "echo", "if_busy": "reject"}
            )
            unknown = await client.post("/sessions/s1/tasks", json={"pipeline": "nope"})
            bad_type = await client.post(
                "/sessions/s1/tasks", json={"pipeline": "echo", "task_type": "SIDEWAYS"}
            )
            extra = await client.post("/sessions/s1/tasks", json={"pipeline": "echo", "x": 1})
            not_json = await client.post("/sessions/s1/tasks", content=b"{nope")
            no_group = await client.post(
                "/sessions/s1/tasks",
                json={"pipeline": "echo", "task_type": "BACKGROUND", "group_id": "grp_nope"},
            )
            bad_merge = await client.post(
                "/sessions/s1/tasks", json={"pipeline": "echo", "merge_strategy": "sideways"}
            )
            waits.release.set()
    assert created.status_code == 201 and set(created.json()) == {"task_id"}
    assert_error(busy, 409, "foreground_busy")
    assert_error(unknown, 404, "unknown_pipeline")
    assert "echo, waits" in unknown.json()["error"]["message"]
    assert_error(bad_type, 422, "invalid")
    assert_error(extra, 422, "invalid")
    assert_error(not_json, 422, "invalid")
    assert_error(no_group, 404, "not_found")
    assert_error(bad_merge, 422, "invalid")


async def test_get_tasks_lists_task_state_json_and_404s_an_unknown_task(serve: Serve) -> None:
    app = create_app(SessionManager(), pipelines={"echo": echo})
    with anyio.fail_after(20):
        async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
            task_id = (
                await client.post("/sessions/s1/tasks", json={"pipeline": "echo", "query": "x"})
            ).json()["task_id"]
            listed = await client.get("/sessions/s1/tasks")
            one = await client.get(f"/sessions/s1/tasks/{task_id}")
            missing = await client.get("/sessions/s1/tasks/nope")
    assert [t["task_id"] for t in listed.json()] == [task_id]
    assert one.json()["task_id"] == task_id and one.json()["query"] == "x"
    assert one.json()["pipeline"] == "echo"
    assert_error(missing, 404, "unknown_task")


async def test_get_updates_pages_forward_and_409s_an_unknown_cursor(serve: Serve) -> None:
    app = create_app(SessionManager(), pipelines={"echo": echo})
    with anyio.fail_after(20):
        async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
            await client.post("/sessions/s1/tasks", json={"pipeline": "echo"})
            await client.post("/sessions/s1/tasks", json={"pipeline": "echo"})
            page = await client.get("/sessions/s1/updates?since_id=2&limit=3")
            everything = await client.get("/sessions/s1/updates")
            ahead = await client.get("/sessions/s1/updates?since_id=99")
            bad_limit = await client.get("/sessions/s1/updates?limit=0")
    assert [u["update_id"] for u in page.json()] == ["3", "4", "5"]
    assert len(everything.json()) == 8
    assert_error(ahead, 409, "unknown_cursor")
    assert_error(bad_limit, 422, "invalid")


async def test_post_steer_answers_with_the_receipt_and_its_status(serve: Serve) -> None:
    waits = Waits()
    app = create_app(SessionManager(), pipelines={"waits": waits})
    with anyio.fail_after(20):
        async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
            task_id = (await client.post("/sessions/s1/tasks", json={"pipeline": "waits"})).json()[
                "task_id"
            ]
            event = {
                "task_id": task_id,
                "event_type": "inject_context",
                "payload": {"text": "more"},
                "event_id": "e1",
            }
            delivered = await client.post("/sessions/s1/steer", json=event)
            duplicate = await client.post("/sessions/s1/steer", json=event)
            other = await client.post(
                "/sessions/s1/steer",
                json={**event, "event_id": "e2", "session_id": "s2"},
            )
            invalid = await client.post(
                "/sessions/s1/steer",
                json={"task_id": task_id, "event_type": "USER_MESSAGE", "payload": {}},
            )
            malformed = await client.post(
                "/sessions/s1/steer", json={"task_id": task_id, "event_type": "nope"}
            )
            agent_cancel = await client.post(
                "/sessions/s1/steer",
                json={"task_id": task_id, "event_type": "CANCEL", "source": "agent"},
            )
            tasks = (await client.get("/sessions/s1/tasks")).json()
    assert delivered.status_code == 202 and delivered.json()["outcome"] == "DELIVERED"
    assert duplicate.status_code == 200 and duplicate.json()["outcome"] == "DUPLICATE"
    assert other.status_code == 409 and other.json()["reason"] == "session_mismatch"
    assert invalid.status_code == 409 and invalid.json()["reason"] == "invalid"
    assert invalid.json()["errors"]
    assert_error(malformed, 422, "invalid")
    # a client is the user: its CANCEL applies at once instead of being parked as an agent's
    assert agent_cancel.status_code == 202 and agent_cancel.json()["outcome"] == "APPLIED"
    assert tasks[0]["status"] == "CANCELLED"


def test_create_app_refuses_bad_arguments() -> None:
    def sync_pipeline(runtime: TaskRuntime) -> None:
        return None

    with pytest.raises(ValueError, match="ping_s"):
        create_app(SessionManager(), ping_s=0)
    with pytest.raises(TypeError, match="not async"):
        create_app(SessionManager(), pipelines={"sync": sync_pipeline})  # type: ignore[dict-item]


def test_importing_web_without_the_extra_says_what_to_install() -> None:
    code = (
        "import sys\n"
        "sys.modules['sse_starlette'] = None\n"
        "try:\n"
        "    import penguiflow.sessions.web\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert 'pip install "penguiflow-sessions[web]"' in out


def test_importing_penguiflow_sessions_does_not_load_the_web_stack() -> None:
    code = (
        "import sys, penguiflow.sessions\n"
        "print(sorted(m for m in ('starlette', 'sse_starlette', 'uvicorn') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == "[]"


async def test_post_tasks_beyond_a_session_limit_is_429_and_records_nothing(serve: Serve) -> None:
    waits = Waits()
    manager = SessionManager(limits=SessionLimits(max_background_tasks=1))
    app = create_app(manager, pipelines={"waits": waits})
    with anyio.fail_after(20):
        async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
            body = {"pipeline": "waits", "task_type": "BACKGROUND"}
            first = await client.post("/sessions/s1/tasks", json=body)
            second = await client.post("/sessions/s1/tasks", json=body)
            listed = (await client.get("/sessions/s1/tasks")).json()
            waits.release.set()
    assert first.status_code == 201
    assert_error(second, 429, "session_limit")
    assert "max_background_tasks" in second.json()["error"]["message"]
    assert len(listed) == 1
