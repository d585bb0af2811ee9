"""The task state machine: one STATUS_CHANGE per transition, one RESULT, one CANCELLED."""

from typing import Any

import anyio
import pytest
from pydantic import BaseModel, ValidationError

from penguiflow.sessions import (
    NotificationPayload,
    SessionError,
    StateUpdate,
    StreamingSession,
    TaskCancelled,
    TaskErrorCode,
    TaskFailed,
    TaskResult,
    TaskRuntime,
    TaskStatus,
    TaskType,
    UpdateType,
)


async def answer(runtime: TaskRuntime) -> dict[str, str]:
    return {"answer": "42"}


def of_task(updates: list[StateUpdate], task_id: str) -> list[StateUpdate]:
    return [u for u in updates if u.task_id == task_id]


def status_changes(updates: list[StateUpdate]) -> list[dict[str, Any]]:
    return [u.content for u in updates if u.update_type is UpdateType.STATUS_CHANGE]  # type: ignore[misc]


async def test_a_completed_task_publishes_pending_running_result_complete_in_order() -> None:
    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            tid = await session.spawn_task(answer, query="q", trace_id="t1")
            state = await session.wait_task(tid)
        updates = of_task(await session.list_updates(), tid)
    assert [u.update_type for u in updates] == [
        UpdateType.STATUS_CHANGE,
        UpdateType.STATUS_CHANGE,
        UpdateType.RESULT,
        UpdateType.STATUS_CHANGE,
    ]
    assert status_changes(updates) == [
        {"status": "PENDING", "previous": None, "reason": "created", "task_type": "FOREGROUND"},
        {
            "status": "RUNNING",
            "previous": "PENDING",
            "reason": "started",
            "task_type": "FOREGROUND",
        },
        {
            "status": "COMPLETE",
            "previous": "RUNNING",
            "reason": "completed",
            "task_type": "FOREGROUND",
        },
    ]
    assert updates[2].content == {
        "payload": {"answer": "42"},
        "digest": [],
        "artifacts": [],
        "sources": [],
        "patch_id": None,
    }
    assert [u.seq for u in updates] == [1, 2, 3, 4]
    assert all(u.trace_id == "t1" for u in updates)
    assert state.status is TaskStatus.COMPLETE
    assert state.result == {"answer": "42"}
    assert state.query == "q"
    assert state.pipeline == "answer"
    assert state.started_at is not None and state.finished_at is not None


async def test_pending_is_published_before_spawn_returns() -> None:
    release = anyio.Event()

    async def blocked(runtime: TaskRuntime) -> None:
        await release.wait()

    async with StreamingSession("s1") as session:
        tid = await session.spawn_task(blocked)
        first = (await session.list_updates())[0]
        assert first.task_id == tid
        assert first.content == {
            "status": "PENDING",
            "previous": None,
            "reason": "created",
            "task_type": "FOREGROUND",
        }
        release.set()
        with anyio.fail_after(5):
            await session.wait_task(tid)


async def test_a_raising_pipeline_fails_with_an_error_update_first() -> None:
    async def boom(runtime: TaskRuntime) -> None:
        raise LookupError("no such row")

    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            tid = await session.spawn_task(boom)
            state = await session.wait_task(tid)
        updates = of_task(await session.list_updates(), tid)
    assert [u.update_type for u in updates][-2:] == [UpdateType.ERROR, UpdateType.STATUS_CHANGE]
    assert updates[-2].content == {
        "code": "PIPELINE_EXCEPTION",
        "message": "no such row",
        "error_type": "LookupError",
    }
    assert status_changes(updates)[-1]["reason"] == "failed"
    assert not any(u.update_type is UpdateType.RESULT for u in updates)
    assert state.status is TaskStatus.FAILED
    assert state.error is not None and state.error.code is TaskErrorCode.PIPELINE_EXCEPTION


async def test_a_non_json_payload_fails_with_invalid_result() -> None:
    async def opaque(runtime: TaskRuntime) -> object:
        return object()

    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            state = await session.wait_task(await session.spawn_task(opaque))
    assert state.status is TaskStatus.FAILED
    assert state.error is not None and state.error.code is TaskErrorCode.INVALID_RESULT


async def test_returned_values_become_task_results() -> None:
    class Out(BaseModel):
        n: int

    async def model(runtime: TaskRuntime) -> Out:
        return Out(n=3)

    async def full(runtime: TaskRuntime) -> TaskResult:
        return TaskResult(payload=Out(n=4), digest=["four"], sources=[{"url": "u"}])

    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            assert (await session.run_task(model)).payload == Out(n=3)
            result = await session.run_task(full)
            none = await session.run_task(lambda_none)
        results = [u for u in await session.list_updates() if u.update_type is UpdateType.RESULT]
    assert result.digest == ["four"]
    assert none.payload is None
    assert [u.content["payload"] for u in results] == [{"n": 3}, {"n": 4}, None]  # type: ignore[index,call-overload]
    assert results[1].content["digest"] == ["four"]  # type: ignore[index,call-overload]


async def lambda_none(runtime: TaskRuntime) -> None:
    return None


def test_a_task_result_refuses_a_non_json_payload_at_construction() -> None:
    with pytest.raises(ValidationError):
        TaskResult(payload=object())  # type: ignore[arg-type]


async def test_run_task_raises_task_failed_and_task_cancelled() -> None:
    async def boom(runtime: TaskRuntime) -> None:
        raise RuntimeError("bad")

    started = anyio.Event()

    async def forever(runtime: TaskRuntime) -> None:
        started.set()
        await anyio.sleep_forever()

    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            with pytest.raises(TaskFailed) as failed:
                await session.run_task(boom)
            assert failed.value.code is TaskErrorCode.PIPELINE_EXCEPTION
            assert failed.value.task.status is TaskStatus.FAILED

            async def cancel_when_started() -> None:
                await started.wait()
                (task,) = session.list_tasks(status=TaskStatus.RUNNING)
                await session.cancel_task(task.task_id, reason="user_stop")

            async with anyio.create_task_group() as tg:
                tg.start_soon(cancel_when_started)
                with pytest.raises(TaskCancelled) as cancelled:
                    await session.run_task(forever)
                assert cancelled.value.reason == "user_stop"
                assert cancelled.value.task.cancel_reason == "user_stop"


async def test_a_cancelled_caller_cancels_its_task_and_its_cancellation_propagates() -> None:
    started = anyio.Event()

    async def forever(runtime: TaskRuntime) -> None:
        started.set()
        await anyio.sleep_forever()

    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            with anyio.CancelScope() as outer:

                async def cancel_outer() -> None:
                    await started.wait()
                    outer.cancel()

                async with anyio.create_task_group() as tg:
                    tg.start_soon(cancel_outer)
                    await session.run_task(forever)
                pytest.fail("the caller's cancellation did not propagate")  # pragma: no cover
            assert outer.cancelled_caught
            (state,) = session.list_tasks()
        assert state.status is TaskStatus.CANCELLED
        assert state.cancel_reason == "caller_cancelled"


async def test_cancelled_is_published_once_after_the_pipelines_cleanup_ran() -> None:
    started = anyio.Event()

    async def with_cleanup(runtime: TaskRuntime) -> None:
        try:
            started.set()
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.lowlevel.checkpoint()
                runtime.emit_update(UpdateType.THINKING, "cleaning up")

    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            tid = await session.spawn_task(with_cleanup)
            await started.wait()
            assert await session.cancel_task(tid) is True
            assert await session.cancel_task(tid) is False
        updates = of_task(await session.list_updates(), tid)
    cancelled = [c for c in status_changes(updates) if c["status"] == "CANCELLED"]
    assert cancelled == [
        {
            "status": "CANCELLED",
            "previous": "RUNNING",
            "reason": "cancelled",
            "task_type": "FOREGROUND",
        }
    ]
    assert [u.update_type for u in updates[-2:]] == [UpdateType.THINKING, UpdateType.STATUS_CHANGE]


async def test_background_tasks_notify_on_complete_failure_and_cancellation() -> None:
    async def boom(runtime: TaskRuntime) -> None:
        raise ValueError("x")

    async def custom(runtime: TaskRuntime) -> TaskResult:
        return TaskResult(payload=1, notification=NotificationPayload(title="custom"))

    gate = anyio.Event()

    async def gated(runtime: TaskRuntime) -> None:
        await gate.wait()

    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            ok = await session.spawn_task(answer, task_type="BACKGROUND", description="lookup")
            quiet = await session.spawn_task(
                answer, task_type="BACKGROUND", notify_on_complete=False
            )
            bad = await session.spawn_task(boom, task_type=TaskType.BACKGROUND)
            own = await session.spawn_task(custom, task_type=TaskType.BACKGROUND)
            for tid in (ok, quiet, bad, own):
                await session.wait_task(tid)
            stopped = await session.spawn_task(gated, task_type=TaskType.BACKGROUND)
            await session.cancel_task(stopped)
            fg = await session.spawn_task(answer)
            await session.wait_task(fg)
        updates = await session.list_updates()

    def notes(tid: str) -> list[Any]:
        return [
            u.content for u in of_task(updates, tid) if u.update_type is UpdateType.NOTIFICATION
        ]

    assert [n["title"] for n in notes(ok)] == ["Background task completed: lookup"]
    assert notes(quiet) == []
    assert [n["severity"] for n in notes(bad)] == ["error"]
    assert [n["title"] for n in notes(own)] == ["custom"]
    assert [n["severity"] for n in notes(stopped)] == ["warning"]
    assert notes(fg) == []
    # the notification precedes the terminal status change
    ok_updates = of_task(updates, ok)
    assert [u.update_type for u in ok_updates[-3:]] == [
        UpdateType.RESULT,
        UpdateType.NOTIFICATION,
        UpdateType.STATUS_CHANGE,
    ]


async def test_task_states_are_frozen_snapshots_in_spawn_order() -> None:
    async with StreamingSession("s1", tenant="acme") as session:
        with anyio.fail_after(5):
            first = await session.spawn_task(answer, task_id="a")
            second = await session.spawn_task(answer, task_type="BACKGROUND", task_id="b")
            snapshot = session.get_task(first)
            await session.wait_task(first)
            await session.wait_task(second)
        assert [t.task_id for t in session.list_tasks()] == ["a", "b"]
        assert [t.task_id for t in session.list_tasks(task_type="BACKGROUND")] == ["b"]
        assert [t.task_id for t in session.list_tasks(status="COMPLETE")] == ["a", "b"]
        assert session.get_task("missing") is None
        final = session.get_task(first)
    assert snapshot is not None and snapshot.status is TaskStatus.RUNNING  # unchanged snapshot
    assert final is not None and final.status is TaskStatus.COMPLETE and final.tenant == "acme"
    with pytest.raises(ValidationError):
        final.status = TaskStatus.FAILED
    assert final.model_dump(mode="json")["task_type"] == "FOREGROUND"


async def test_emit_update_after_the_task_ended_raises_session_error() -> None:
    kept: list[TaskRuntime] = []

    async def keep(runtime: TaskRuntime) -> None:
        kept.append(runtime)

    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            await session.run_task(keep)
        with pytest.raises(SessionError, match="has ended"):
            kept[0].emit_update(UpdateType.PROGRESS, {"late": True})
        with pytest.raises(SessionError):
            kept[0].notify(NotificationPayload(title="late"))
