"""Resumable checkpoints across restarts (§9 hydrate, §3 ResumablePipeline)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from penguiflow.core import DurableStore, InMemoryDurableStore, SQLiteDurableStore
from penguiflow.sessions import (
    CheckpointAnswer,
    CheckpointInfo,
    ContextPatch,
    ForegroundBusy,
    GroupStatus,
    ResumablePipeline,
    SteeringEvent,
    SteeringEventType,
    SteeringOutcome,
    StreamingSession,
    TaskErrorCode,
    TaskResult,
    TaskRuntime,
    TaskStatus,
    UpdateType,
)

SID = "s1"


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[DurableStore]:
    if request.param == "memory":
        async with InMemoryDurableStore() as memory:
            yield memory
    else:
        async with SQLiteDurableStore.open(tmp_path / "sessions.db") as sqlite:
            yield sqlite


class Refund:
    """Asks before refunding; after a restart ``resume`` finishes from the checkpoint's data."""

    name = "refund"

    def __init__(self) -> None:
        self.resumed: list[tuple[CheckpointInfo, CheckpointAnswer]] = []

    async def __call__(self, runtime: TaskRuntime) -> dict[str, object]:
        runtime.emit_update(UpdateType.PROGRESS, {"step": "checking"})
        answer = await runtime.checkpoint(
            "Refund 42 EUR?", payload={"amount": 42}, token="tok-1", data={"amount": 42}
        )
        return {"refunded": 42 if answer.decision == "approve" else 0, "by": "first process"}

    async def resume(
        self, runtime: TaskRuntime, checkpoint: CheckpointInfo, answer: CheckpointAnswer
    ) -> dict[str, object]:
        self.resumed.append((checkpoint, answer))
        runtime.emit_update(UpdateType.PROGRESS, {"step": "refunding"})
        data = checkpoint.data
        assert isinstance(data, dict)
        amount = data["amount"] if answer.decision != "reject" else 0
        return {"refunded": amount, "input": answer.input, "by": "resume"}


async def wait_paused(session: StreamingSession) -> str:
    """Wait until a task of ``session`` shows PAUSED; that update's id."""
    async with session.subscribe() as sub:
        async for update in sub:
            content = update.content
            if isinstance(content, dict) and content.get("status") == "PAUSED":
                return update.update_id
    raise AssertionError("the session closed before the task parked")


async def park_and_leave(store: DurableStore, *, task_type: str = "BACKGROUND") -> tuple[str, str]:
    """First process: the task parks at its checkpoint, then the session closes."""
    ids: list[str] = []
    tid = ""
    async with StreamingSession(SID, store=store, pipelines=[Refund()]) as first:
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                ids.append(await wait_paused(first))

            tg.start_soon(watch)
            await anyio.wait_all_tasks_blocked()
            tid = await first.spawn_task(Refund(), task_type=task_type, query="refund order 7")
    return tid, ids[0]


def approve(tid: str, **payload: object) -> SteeringEvent:
    return SteeringEvent(
        session_id=SID,
        task_id=tid,
        event_type=SteeringEventType.APPROVE,
        payload={"resume_token": "tok-1", **payload},  # type: ignore[dict-item]
    )


async def test_a_checkpoint_answered_after_a_restart_runs_resume(store: DurableStore) -> None:
    with anyio.fail_after(10):
        tid, last = await park_and_leave(store)
        stored = await store.get("sessions.tasks", f"{SID}/{tid}")
        assert stored is not None
        state = json.loads(stored.value)["state"]
        assert state["status"] == "PAUSED"  # aclose left it PAUSED, not CANCELLED
        assert state["checkpoint"]["data"] == {"amount": 42}
        refund = Refund()
        async with StreamingSession(SID, store=store, pipelines=[refund]) as second:
            task = second.get_task(tid)
            assert task is not None and task.status is TaskStatus.PAUSED
            assert task.checkpoint is not None and task.checkpoint.resume_token == "tok-1"
            assert (await second.list_updates(since_id=last)) == []  # nothing of the close
            async with second.subscribe(since_id=last) as sub:
                receipt = await second.steer(approve(tid, input="ok"))
                assert receipt.outcome is SteeringOutcome.APPLIED
                done = await second.wait_task(tid)
                after = [await anext(sub) for _ in range(5)]
        assert done.status is TaskStatus.COMPLETE
        assert done.result == {"refunded": 42, "input": "ok", "by": "resume"}
        assert done.checkpoint is None
        ((info, answer),) = refund.resumed
        assert (info.resume_token, info.kind, answer.decision) == (
            "tok-1",
            "approval_required",
            "approve",
        )
        assert [u.seq for u in after] == [int(last) + i for i in range(1, 6)]
        assert after[0].content == {
            "status": "RUNNING",
            "previous": "PAUSED",
            "reason": "checkpoint_answered",
            "task_type": "BACKGROUND",
        }
        assert [u.update_type for u in after[1:]] == [
            UpdateType.PROGRESS,
            UpdateType.RESULT,
            UpdateType.NOTIFICATION,
            UpdateType.STATUS_CHANGE,
        ]


async def test_a_user_message_answers_a_restored_checkpoint(store: DurableStore) -> None:
    with anyio.fail_after(10):
        tid, _ = await park_and_leave(store, task_type="FOREGROUND")
        refund = Refund()
        async with StreamingSession(SID, store=store, pipelines=[refund]) as second:
            with pytest.raises(ForegroundBusy):  # the parked turn is still the foreground
                await second.spawn_task(Refund(), if_busy="reject")
            message = SteeringEvent(
                session_id=SID,
                task_id=tid,
                event_type=SteeringEventType.USER_MESSAGE,
                payload={"text": "only half, please"},
            )
            assert (await second.steer(message)).outcome is SteeringOutcome.APPLIED
            done = await second.wait_task(tid)
        assert done.result == {"refunded": 42, "input": "only half, please", "by": "resume"}
        assert refund.resumed[0][1].decision == "message"


async def test_without_its_pipeline_a_parked_task_is_interrupted(store: DurableStore) -> None:
    with anyio.fail_after(10):
        tid, last = await park_and_leave(store)
        async with StreamingSession(SID, store=store) as second:  # no pipelines=
            task = second.get_task(tid)
            assert task is not None and task.status is TaskStatus.FAILED
            assert task.error is not None and task.error.code is TaskErrorCode.INTERRUPTED
            updates = await second.list_updates(since_id=last)
            assert updates[-1].content == {
                "status": "FAILED",
                "previous": "PAUSED",
                "reason": "interrupted",
                "task_type": "BACKGROUND",
            }
            receipt = await second.steer(approve(tid))
            assert receipt.outcome is SteeringOutcome.REJECTED


async def test_a_restored_checkpoint_can_be_cancelled(store: DurableStore) -> None:
    with anyio.fail_after(10):
        tid, _ = await park_and_leave(store)
        async with StreamingSession(SID, store=store, pipelines=[Refund()]) as second:
            assert await second.cancel_task(tid)
            task = second.get_task(tid)
            assert task is not None and task.status is TaskStatus.CANCELLED
        async with StreamingSession(SID, store=store, pipelines=[Refund()]) as third:
            task = third.get_task(tid)
            assert task is not None and task.status is TaskStatus.CANCELLED


async def test_a_checkpoint_of_a_pipeline_not_passed_is_cancelled_at_close(
    store: DurableStore,
) -> None:
    with anyio.fail_after(10):
        tid = ""
        async with StreamingSession(SID, store=store) as first:  # Refund not in pipelines
            async with anyio.create_task_group() as tg:
                tg.start_soon(wait_paused, first)
                await anyio.wait_all_tasks_blocked()
                tid = await first.spawn_task(Refund(), task_type="BACKGROUND")
        async with StreamingSession(SID, store=store, pipelines=[Refund()]) as second:
            task = second.get_task(tid)
            assert task is not None and task.status is TaskStatus.CANCELLED
            assert task.cancel_reason == "session_closed"


def test_pipelines_must_be_resumable_and_uniquely_named() -> None:
    class NoResume:
        name = "x"

        async def __call__(self, runtime: TaskRuntime) -> None:
            return None

    with pytest.raises(TypeError, match="resume"):
        StreamingSession(SID, pipelines=[NoResume()])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="unique"):
        StreamingSession(SID, pipelines=[Refund(), Refund()])
    assert isinstance(Refund(), ResumablePipeline)


async def test_a_group_and_its_waiting_patches_survive_a_restart(store: DurableStore) -> None:
    async def finds(runtime: TaskRuntime) -> TaskResult:
        return TaskResult(payload="ok", context_patch=ContextPatch(facts={"tide": "high"}))

    with anyio.fail_after(10):
        async with StreamingSession(SID, store=store) as first:
            group = await first.create_group("research")
            tid = await first.spawn_task(finds, task_type="BACKGROUND", group_id=group.group_id)
            await first.wait_task(tid)
            assert "tide" not in first.get_context().llm_context  # waits for the group's end
        stored = await store.get("sessions.groups", f"{SID}/{group.group_id}")
        assert stored is not None
        async with StreamingSession(SID, store=store) as second:
            restored = second.get_group(group.group_id)
            assert restored is not None
            assert (restored.status, restored.completed_task_ids) == (GroupStatus.OPEN, [tid])
            await second.seal_group(group.group_id)
            ended = await second.wait_group(group.group_id)
            assert ended.status is GroupStatus.COMPLETE
            assert second.get_context().llm_context["tide"] == ["high"]
        async with StreamingSession(SID, store=store) as third:
            final = third.get_group(group.group_id)
            assert final is not None and final.status is GroupStatus.COMPLETE
            assert third.get_context().llm_context["tide"] == ["high"]
