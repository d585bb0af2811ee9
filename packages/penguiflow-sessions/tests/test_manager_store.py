"""SessionManager with a store: rehydrate after eviction, erase, tenants, resumable pauses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from penguiflow.core import DurableStore, InMemoryDurableStore, SQLiteDurableStore
from penguiflow.sessions import (
    CheckpointAnswer,
    CheckpointInfo,
    SessionManager,
    SessionTenantMismatch,
    SteeringEvent,
    SteeringEventType,
    StreamingSession,
    TaskRuntime,
    TaskStatus,
    TaskType,
)


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[DurableStore]:
    if request.param == "memory":
        async with InMemoryDurableStore() as memory:
            yield memory
    else:
        async with SQLiteDurableStore.open(tmp_path / "sessions.db") as sqlite:
            yield sqlite


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Ask:
    """Parks at a checkpoint; ``resume`` finishes it after a restart or an eviction."""

    name = "ask"

    async def __call__(self, runtime: TaskRuntime) -> str:
        answer = await runtime.checkpoint("Go on?", token="tok-1", data={"step": 1})
        return f"live {answer.decision}"

    async def resume(
        self, runtime: TaskRuntime, checkpoint: CheckpointInfo, answer: CheckpointAnswer
    ) -> str:
        return f"resumed {answer.decision} at step {checkpoint.data}"


async def echo(runtime: TaskRuntime) -> str:
    return f"echo {runtime.query}"


async def parked(session: StreamingSession, task_id: str) -> None:
    async with session.subscribe(task_ids=[task_id], since_id="0") as sub:
        async for update in sub:
            if isinstance(update.content, dict) and update.content.get("status") == "PAUSED":
                return


async def test_an_evicted_session_rehydrates_from_the_store(store: DurableStore) -> None:
    clock = Clock()
    async with SessionManager(store=store, clock=clock, sweep_interval_s=None) as manager:
        first = await manager.get_or_create("s1", tenant="acme")
        with anyio.fail_after(10):
            await first.run_task(echo, query="hi", task_id="t1")
        head = first.statistics().last_update_id
        assert await manager.evict_idle() == []  # the run is activity, noticed by this sweep
        clock.now += 3600
        assert await manager.evict_idle() == ["s1"]
        again = await manager.get_or_create("s1", tenant="acme")
        assert again is not first
        task = again.get_task("t1")
        assert task is not None and task.status is TaskStatus.COMPLETE
        assert task.result == "echo hi"
        assert again.statistics().last_update_id == head  # the seq continues from the store
        assert manager.statistics().created == 2


async def test_erase_removes_what_the_store_held_for_the_session(store: DurableStore) -> None:
    async with SessionManager(store=store, sweep_interval_s=None) as manager:
        session = await manager.get_or_create("s1", tenant="acme")
        with anyio.fail_after(10):
            await session.run_task(echo, query="x", task_id="t1")
        removed = await manager.erase("s1")
        assert removed > 0
        assert await store.read("sessions.updates/s1") == []
        assert await store.get("sessions.tasks", "s1/t1") is None
        fresh = await manager.get_or_create("s1", tenant="acme")
        assert fresh.list_tasks() == []


async def test_another_tenants_stored_session_is_refused_and_not_kept(store: DurableStore) -> None:
    async with SessionManager(store=store, sweep_interval_s=None) as manager:
        await manager.get_or_create("s1", tenant="acme")
        await manager.drop("s1")
        with pytest.raises(SessionTenantMismatch):
            await manager.get_or_create("s1", tenant="globex")
        assert manager.statistics().sessions == 0
        assert (await manager.get_or_create("s1", tenant="acme")).tenant == "acme"


async def test_a_task_parked_at_a_resumable_checkpoint_lets_its_session_be_evicted(
    store: DurableStore,
) -> None:
    clock = Clock()
    manager = SessionManager(store=store, pipelines=[Ask()], clock=clock, sweep_interval_s=None)
    async with manager:
        session = await manager.get_or_create("s1")
        tid = await session.spawn_task(Ask(), task_type=TaskType.BACKGROUND)
        with anyio.fail_after(10):
            await parked(session, tid)
        assert await manager.evict_idle() == []
        clock.now += 3600
        assert await manager.evict_idle() == ["s1"]
        back = await manager.get_or_create("s1")
        task = back.get_task(tid)
        assert task is not None and task.status is TaskStatus.PAUSED
        receipt = await back.steer(
            SteeringEvent(
                session_id="s1",
                task_id=tid,
                event_type=SteeringEventType.APPROVE,
                payload={"resume_token": "tok-1"},
            )
        )
        assert receipt
        with anyio.fail_after(10):
            done = await back.wait_task(tid)
    assert done.status is TaskStatus.COMPLETE
    assert done.result == "resumed approve at step {'step': 1}"


async def test_a_paused_task_of_an_unlisted_pipeline_keeps_its_session_open(
    store: DurableStore,
) -> None:
    clock = Clock()
    async with SessionManager(store=store, clock=clock, sweep_interval_s=None) as manager:
        session = await manager.get_or_create("s1")
        tid = await session.spawn_task(Ask(), task_type=TaskType.BACKGROUND)
        with anyio.fail_after(10):
            await parked(session, tid)
        assert await manager.evict_idle() == []
        clock.now += 3600
        assert await manager.evict_idle() == []  # closing would lose it (INTERRUPTED)
        await session.cancel_task(tid)


async def test_concurrent_get_or_create_hydrates_a_stored_session_once(store: DurableStore) -> None:
    async with SessionManager(store=store, sweep_interval_s=None) as manager:
        session = await manager.get_or_create("s1")
        with anyio.fail_after(10):
            await session.run_task(echo, query="x", task_id="t1")
        await manager.drop("s1")
        got: list[StreamingSession] = []

        async def one() -> None:
            got.append(await manager.get_or_create("s1"))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for _ in range(4):
                    tg.start_soon(one)
        assert len({id(s) for s in got}) == 1
        assert manager.statistics().created == 2  # the first open and one hydrate
        assert got[0].get_task("t1") is not None
