"""TaskRuntime: identity, emit_update rules, notifications, the isolated context snapshot."""

from collections.abc import Callable
from functools import partial
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from penguiflow.sessions import (
    NotificationAction,
    NotificationPayload,
    SessionClosed,
    StreamingSession,
    TaskNotFound,
    TaskRuntime,
    TaskStatus,
    TaskType,
    UpdateType,
)


async def run_with(session: StreamingSession, body: Callable[[TaskRuntime], Any], **kw: Any) -> str:
    async def pipeline(runtime: TaskRuntime) -> None:
        body(runtime)

    with anyio.fail_after(5):
        tid = await session.spawn_task(pipeline, **kw)
        await session.wait_task(tid)
    return tid


async def test_the_runtime_knows_its_task() -> None:
    seen: dict[str, Any] = {}

    def look(runtime: TaskRuntime) -> None:
        seen.update(
            task_id=runtime.task_id,
            session_id=runtime.session_id,
            tenant=runtime.tenant,
            task_type=runtime.task_type,
            trace_id=runtime.trace_id,
            query=runtime.query,
        )

    async with StreamingSession("s1", tenant="acme") as session:
        tid = await run_with(
            session, look, task_type="BACKGROUND", query="what?", trace_id="tr", task_id="t-1"
        )
    assert tid == "t-1"
    assert seen == {
        "task_id": "t-1",
        "session_id": "s1",
        "tenant": "acme",
        "task_type": TaskType.BACKGROUND,
        "trace_id": "tr",
        "query": "what?",
    }


async def test_emitted_updates_keep_order_and_progress_sets_task_progress() -> None:
    class Thought(BaseModel):
        text: str

    def emit(runtime: TaskRuntime) -> None:
        runtime.emit_update(UpdateType.THINKING, Thought(text="hmm"))
        runtime.emit_update("PROGRESS", {"done": 1}, step_index=0, total_steps=2)
        runtime.emit_update(UpdateType.TOOL_CALL, {"phase": "start"})
        runtime.emit_update(UpdateType.STREAM, "partial answer")
        runtime.emit_update(UpdateType.PROGRESS, {"done": 2}, step_index=1, total_steps=2)
        runtime.emit_update(UpdateType.ERROR, {"soft": True})

    async with StreamingSession("s1") as session:
        tid = await run_with(session, emit)
        state = session.get_task(tid)
        emitted = [
            u
            for u in await session.list_updates(task_id=tid)
            if u.update_type is not UpdateType.STATUS_CHANGE
            and u.update_type is not UpdateType.RESULT
        ]
    assert [(u.update_type, u.content) for u in emitted] == [
        (UpdateType.THINKING, {"text": "hmm"}),
        (UpdateType.PROGRESS, {"done": 1}),
        (UpdateType.TOOL_CALL, {"phase": "start"}),
        (UpdateType.STREAM, "partial answer"),
        (UpdateType.PROGRESS, {"done": 2}),
        (UpdateType.ERROR, {"soft": True}),
    ]
    assert (emitted[1].step_index, emitted[1].total_steps) == (0, 2)
    assert state is not None and state.progress == {"done": 2}


@pytest.mark.parametrize(
    ("update_type", "hint"),
    [
        (UpdateType.RESULT, "return the result"),
        (UpdateType.STATUS_CHANGE, "publishes status changes"),
        (UpdateType.CHECKPOINT, "runtime.checkpoint"),
    ],
)
async def test_session_owned_update_types_are_refused_with_what_to_use(
    update_type: UpdateType, hint: str
) -> None:
    errors: list[Exception] = []

    def emit(runtime: TaskRuntime) -> None:
        try:
            runtime.emit_update(update_type, {})
        except ValueError as exc:
            errors.append(exc)

    async with StreamingSession("s1") as session:
        await run_with(session, emit)
    assert len(errors) == 1 and hint in str(errors[0])


async def test_non_json_content_is_a_type_error_naming_the_part() -> None:
    errors: list[Exception] = []

    def emit(runtime: TaskRuntime) -> None:
        for bad in ({"a": {1, 2}}, {1: "x"}, float("nan"), object()):
            try:
                runtime.emit_update(UpdateType.PROGRESS, bad)
            except TypeError as exc:
                errors.append(exc)

    async with StreamingSession("s1") as session:
        await run_with(session, emit)
    assert len(errors) == 4
    assert "['a']" in str(errors[0]) and "set" in str(errors[0])


async def test_notify_publishes_a_notification() -> None:
    note = NotificationPayload(
        severity="warning",
        title="Heads up",
        body="details",
        actions=[NotificationAction(id="open", label="Open", payload={"x": 1})],
    )
    async with StreamingSession("s1") as session:
        tid = await run_with(session, lambda rt: rt.notify(note))
        (update,) = [
            u
            for u in await session.list_updates(task_id=tid)
            if u.update_type is UpdateType.NOTIFICATION
        ]
    assert update.content == {
        "severity": "warning",
        "code": None,
        "title": "Heads up",
        "body": "details",
        "actions": [{"id": "open", "label": "Open", "payload": {"x": 1}}],
    }


async def test_the_context_snapshot_is_a_private_copy_per_task() -> None:
    seen: list[dict[str, Any]] = []

    def mutate(runtime: TaskRuntime) -> None:
        ctx = runtime.context
        seen.append(
            {
                "llm": dict(ctx.llm_context),
                "version": ctx.context_version,
                "hash": ctx.context_hash,
                "parent": ctx.parent_task_id,
                "event": ctx.spawned_from_event_id,
            }
        )
        ctx.llm_context["leak"] = True
        ctx.memory["leak"] = True
        ctx.artifacts.append("leak")
        ctx.tool_context["leak"] = True

    async with StreamingSession("s1") as session:
        await run_with(session, mutate, spawned_from_event_id="ev1")
        await run_with(session, mutate)
    assert seen[0]["llm"] == {} and seen[1]["llm"] == {}
    assert seen[0]["hash"] == seen[1]["hash"] and len(seen[0]["hash"]) == 64
    assert seen[0]["event"] == "ev1" and seen[1]["event"] is None
    assert seen[0]["version"] == 0


async def test_a_child_task_records_its_parent() -> None:
    child_ids: list[str] = []

    async def child(runtime: TaskRuntime) -> str:
        return runtime.context.parent_task_id or ""

    async def parent(runtime: TaskRuntime) -> None:
        child_ids.append(await runtime.spawn_task(child, task_type="BACKGROUND"))

    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            pid = await session.spawn_task(parent)
            await session.wait_task(pid)
            state = await session.wait_task(child_ids[0])
    assert state.parent_task_id == pid
    assert state.result == pid


async def test_spawn_validates_before_recording_anything() -> None:
    def sync_pipeline(runtime: TaskRuntime) -> None:
        return None

    async def ok(runtime: TaskRuntime) -> None:
        return None

    class AsyncCallable:
        name = "callable-pipeline"

        async def __call__(self, runtime: TaskRuntime) -> int:
            return 1

    async def with_arg(runtime: TaskRuntime, n: int) -> int:
        return n

    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            with pytest.raises(TypeError, match="not async"):
                await session.spawn_task(sync_pipeline)  # type: ignore[arg-type]
            with pytest.raises(ValueError):
                await session.spawn_task(ok, task_type="SIDEWAYS")
            with pytest.raises(ValueError, match="if_busy"):
                await session.spawn_task(ok, if_busy="later")  # type: ignore[arg-type]
            with pytest.raises(ValueError, match="propagate_on_cancel"):
                await session.spawn_task(ok, propagate_on_cancel="all")  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="priority"):
                await session.spawn_task(ok, priority="high")  # type: ignore[arg-type]
            with pytest.raises(TaskNotFound, match="no task 'ghost'"):
                await session.spawn_task(ok, parent_task_id="ghost")
            assert session.list_tasks() == [] and await session.list_updates() == []
            await session.wait_task(await session.spawn_task(ok, task_id="same"))
            with pytest.raises(ValueError, match="already used"):
                await session.spawn_task(ok, task_id="same")
            named = await session.wait_task(await session.spawn_task(AsyncCallable()))
            partial_state = await session.wait_task(
                await session.spawn_task(partial(with_arg, n=3))
            )
            with pytest.raises(TaskNotFound):
                await session.wait_task("ghost")
            with pytest.raises(TaskNotFound):
                await session.cancel_task("ghost")
    assert named.pipeline == "callable-pipeline" and named.status is TaskStatus.COMPLETE
    assert partial_state.result == 3


async def test_a_session_used_outside_async_with_says_how_to_enter_it() -> None:
    async def ok(runtime: TaskRuntime) -> None:
        return None

    session = StreamingSession("s1")
    with pytest.raises(SessionClosed, match="async with StreamingSession"):
        await session.spawn_task(ok)
    with pytest.raises(SessionClosed, match="async with"):
        session.subscribe()
    with pytest.raises(ValueError):
        StreamingSession("")
