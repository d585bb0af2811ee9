"""Restarts (§9 hydrate, §14): a real child process dies by ``os._exit`` mid-task."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import anyio

from penguiflow.core import SQLiteDurableStore
from penguiflow.sessions import (
    CheckpointAnswer,
    CheckpointInfo,
    SteeringEvent,
    SteeringEventType,
    SteeringOutcome,
    StreamingSession,
    TaskErrorCode,
    TaskRuntime,
    TaskStatus,
    UpdateType,
)

CHILD = """
import os, sys
import anyio
from penguiflow.core import SQLiteDurableStore
from penguiflow.sessions import SessionLimits, StreamingSession, UpdateType

async def works(runtime):
    runtime.emit_update(UpdateType.PROGRESS, {"step": 1})
    await anyio.sleep_forever()

async def main(path):
    async with SQLiteDurableStore.open(path) as store:
        limits = SessionLimits(max_concurrent_tasks=1)
        async with StreamingSession("s1", store=store, limits=limits) as session:
            async with session.subscribe() as sub:
                tid = await session.spawn_task(works, task_type="BACKGROUND", query="q")
                async for update in sub:
                    if update.update_type is UpdateType.PROGRESS:
                        break  # stored, so durable: the task is RUNNING in the file
                queued = await session.spawn_task(works, task_type="BACKGROUND")  # PENDING
            print(tid, queued, update.update_id, flush=True)
            os._exit(3)  # no cleanup, no aclose: the process just dies

anyio.run(main, sys.argv[1])
"""


async def test_a_task_live_in_a_killed_process_is_interrupted_on_hydrate(tmp_path: Path) -> None:
    path = tmp_path / "sessions.db"
    with anyio.fail_after(60):
        child = await anyio.run_process([sys.executable, "-c", CHILD, str(path)], check=False)
    assert child.returncode == 3, child.stderr.decode()
    tid, queued, last_id = child.stdout.decode().split()
    with anyio.fail_after(10):
        async with SQLiteDurableStore.open(path) as store:
            tasks_before = len(asyncio.all_tasks())
            async with StreamingSession("s1", store=store) as session:
                task = session.get_task(tid)
                assert task is not None and task.status is TaskStatus.FAILED
                assert task.error is not None and task.error.code is TaskErrorCode.INTERRUPTED
                assert task.query == "q"
                pending = session.get_task(queued)
                assert pending is not None and pending.status is TaskStatus.FAILED
                async with session.subscribe(since_id=last_id, task_ids=[tid]) as sub:
                    after = [await anext(sub) for _ in range(3)]
                first_new = int(last_id) + 2  # after the queued task's stored PENDING
                assert after[0].seq >= first_new  # seq continues past the old process
                assert [u.seq for u in after] == [after[0].seq + i for i in range(3)]
                assert [u.update_type for u in after] == [
                    UpdateType.ERROR,
                    UpdateType.NOTIFICATION,
                    UpdateType.STATUS_CHANGE,
                ]
                assert isinstance(after[0].content, dict)
                assert after[0].content["code"] == "INTERRUPTED"
                assert after[2].content == {
                    "status": "FAILED",
                    "previous": "RUNNING",
                    "reason": "interrupted",
                    "task_type": "BACKGROUND",
                }
                assert session.statistics().live_tasks == 0
            assert len(asyncio.all_tasks()) == tasks_before
        # A third process sees it FAILED once: hydrating again interrupts nothing more.
        async with SQLiteDurableStore.open(path) as store:
            async with StreamingSession("s1", store=store) as session:
                updates = await session.list_updates(since_id=last_id)
                assert len(updates) == 7  # PENDING of the queued task, then 3 per interrupted
                assert [u for u in updates if u.task_id == queued][-1].content == {
                    "status": "FAILED",
                    "previous": "PENDING",
                    "reason": "interrupted",
                    "task_type": "BACKGROUND",
                }
                state = session.get_task(tid)
                assert state is not None and state.status is TaskStatus.FAILED


PARKS = """
import os, sys
import anyio
from penguiflow.core import SQLiteDurableStore
from penguiflow.sessions import StreamingSession, UpdateType

class Refund:
    name = "refund"

    async def __call__(self, runtime):
        await runtime.checkpoint("Refund 42 EUR?", data={"amount": 42})
        return {"by": "first process"}

    async def resume(self, runtime, checkpoint, answer):
        raise AssertionError("not in this process")

async def main(path):
    async with SQLiteDurableStore.open(path) as store:
        pipeline = Refund()
        async with StreamingSession("s1", store=store, pipelines=[pipeline]) as session:
            async with session.subscribe() as sub:
                tid = await session.spawn_task(pipeline, task_type="BACKGROUND")
                async for update in sub:
                    if update.content.get("status") == "PAUSED":
                        break
            token = session.get_task(tid).checkpoint.resume_token
            print(tid, token, update.update_id, flush=True)
            os._exit(3)

anyio.run(main, sys.argv[1])
"""


class Refund:
    name = "refund"

    async def __call__(self, runtime: TaskRuntime) -> dict[str, object]:
        raise AssertionError("a resumed task does not run from the start")

    async def resume(
        self, runtime: TaskRuntime, checkpoint: CheckpointInfo, answer: CheckpointAnswer
    ) -> dict[str, object]:
        assert isinstance(checkpoint.data, dict)
        return {"refunded": checkpoint.data["amount"], "decision": answer.decision}


async def test_a_checkpoint_of_a_killed_process_is_answered_in_the_next(tmp_path: Path) -> None:
    path = tmp_path / "sessions.db"
    with anyio.fail_after(60):
        child = await anyio.run_process([sys.executable, "-c", PARKS, str(path)], check=False)
    assert child.returncode == 3, child.stderr.decode()
    tid, token, last_id = child.stdout.decode().split()
    with anyio.fail_after(10):
        async with SQLiteDurableStore.open(path) as store:
            async with StreamingSession("s1", store=store, pipelines=[Refund()]) as session:
                task = session.get_task(tid)
                assert task is not None and task.status is TaskStatus.PAUSED
                event = SteeringEvent(
                    session_id="s1",
                    task_id=tid,
                    event_type=SteeringEventType.APPROVE,
                    payload={"resume_token": token},
                )
                assert (await session.steer(event)).outcome is SteeringOutcome.APPLIED
                done = await session.wait_task(tid)
                assert done.status is TaskStatus.COMPLETE
                assert done.result == {"refunded": 42, "decision": "approve"}
                updates = await session.list_updates(since_id=last_id)
                assert updates[0].seq == int(last_id) + 1
