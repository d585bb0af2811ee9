"""Foreground and background tasks: if_busy, priorities, slots; the foreground never waits."""

from typing import Any, cast

import anyio
import pytest

from penguiflow.sessions import (
    ForegroundBusy,
    SessionLimits,
    StreamingSession,
    TaskRuntime,
    TaskStatus,
    TaskType,
    UpdateType,
)


class Gate:
    """A pipeline that records its start and waits for its own release."""

    def __init__(self, name: str, started: list[str]) -> None:
        self.name = name
        self.started = started
        self.release = anyio.Event()
        self.running = anyio.Event()

    async def __call__(self, runtime: TaskRuntime) -> str:
        self.started.append(self.name)
        self.running.set()
        await self.release.wait()
        return self.name


async def test_a_queued_foreground_task_starts_after_the_active_one_ends() -> None:
    started: list[str] = []
    first, second = Gate("first", started), Gate("second", started)
    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            a = await session.spawn_task(first)
            b = await session.spawn_task(second, if_busy="queue")
            await first.running.wait()
            assert session.get_task(b).status is TaskStatus.PENDING  # type: ignore[union-attr]
            first.release.set()
            await second.running.wait()
            second.release.set()
            assert (await session.wait_task(a)).status is TaskStatus.COMPLETE
            assert (await session.wait_task(b)).status is TaskStatus.COMPLETE
    assert started == ["first", "second"]


async def test_interrupt_cancels_the_active_foreground_task_first() -> None:
    started: list[str] = []
    first, second = Gate("first", started), Gate("second", started)
    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            a = await session.spawn_task(first)
            await first.running.wait()
            b = await session.spawn_task(second, if_busy="interrupt")
            interrupted = session.get_task(a)
            assert interrupted is not None and interrupted.status is TaskStatus.CANCELLED
            assert interrupted.cancel_reason == "interrupted"
            second.release.set()
            assert (await session.wait_task(b)).status is TaskStatus.COMPLETE
        updates = await session.list_updates()
    # a's CANCELLED precedes b's PENDING
    order: list[tuple[str | None, Any]] = [
        (u.task_id, cast(dict[str, Any], u.content)["status"])
        for u in updates
        if u.update_type is UpdateType.STATUS_CHANGE
    ]
    assert order.index((a, "CANCELLED")) < order.index((b, "PENDING"))


async def test_reject_raises_foreground_busy_and_records_nothing() -> None:
    started: list[str] = []
    first = Gate("first", started)
    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            a = await session.spawn_task(first)
            before = await session.list_updates()
            with pytest.raises(ForegroundBusy) as busy:
                await session.spawn_task(Gate("second", started), if_busy="reject")
            assert busy.value.active_task_id == a
            assert len(session.list_tasks()) == 1
            assert await session.list_updates() == before
            first.release.set()
            await session.wait_task(a)
            # no longer busy
            third = Gate("third", started)
            third.release.set()
            await session.wait_task(await session.spawn_task(third, if_busy="reject"))


async def test_background_tasks_start_by_priority_then_fifo_within_the_slots() -> None:
    started: list[str] = []
    gates = {name: Gate(name, started) for name in ("blocker", "low", "high1", "high2", "mid")}
    limits = SessionLimits(
        max_concurrent_tasks=1, max_tasks_per_session=None, max_background_tasks=None
    )
    async with StreamingSession("s1", limits=limits) as session:
        with anyio.fail_after(5):
            ids = {
                "blocker": await session.spawn_task(gates["blocker"], task_type="BACKGROUND"),
                "low": await session.spawn_task(gates["low"], task_type="BACKGROUND", priority=0),
                "high1": await session.spawn_task(
                    gates["high1"], task_type="BACKGROUND", priority=5
                ),
                "mid": await session.spawn_task(gates["mid"], task_type="BACKGROUND", priority=2),
                "high2": await session.spawn_task(
                    gates["high2"], task_type="BACKGROUND", priority=5
                ),
            }
            for name in ("blocker", "high1", "high2", "mid", "low"):
                await gates[name].running.wait()
                assert session.statistics().running == 1
                gates[name].release.set()
                await session.wait_task(ids[name])
    assert started == ["blocker", "high1", "high2", "mid", "low"]


async def test_the_foreground_task_never_waits_for_a_background_slot() -> None:
    started: list[str] = []
    background = [Gate(f"bg{i}", started) for i in range(2)]
    limits = SessionLimits(max_concurrent_tasks=2)
    async with StreamingSession("s1", limits=limits) as session:
        with anyio.fail_after(5):
            for gate in background:
                await session.spawn_task(gate, task_type=TaskType.BACKGROUND)
            for gate in background:
                await gate.running.wait()
            queued = Gate("bg-queued", started)
            q = await session.spawn_task(queued, task_type=TaskType.BACKGROUND)
            fg = Gate("fg", started)
            f = await session.spawn_task(fg)
            await fg.running.wait()
            assert session.get_task(q).status is TaskStatus.PENDING  # type: ignore[union-attr]
            fg.release.set()
            await session.wait_task(f)
            for gate in (*background, queued):
                gate.release.set()
            await session.wait_task(q)
    assert started.index("fg") < started.index("bg-queued")


async def test_unlimited_concurrency_runs_every_background_task_at_once() -> None:
    started: list[str] = []
    gates = [Gate(str(i), started) for i in range(6)]
    async with StreamingSession(
        "s1",
        limits=SessionLimits(
            max_concurrent_tasks=None, max_tasks_per_session=None, max_background_tasks=None
        ),
    ) as session:
        with anyio.fail_after(5):
            ids = [await session.spawn_task(g, task_type="BACKGROUND") for g in gates]
            for gate in gates:
                await gate.running.wait()
            assert session.statistics().running == 6
            for gate in gates:
                gate.release.set()
            for tid in ids:
                await session.wait_task(tid)


def test_limits_refuse_zero_and_negative_values() -> None:
    for field in ("max_concurrent_tasks", "update_queue_size", "replay_buffer_size"):
        for bad in (0, -1):
            kwargs: dict[str, Any] = {field: bad}
            with pytest.raises(ValueError):
                SessionLimits(**kwargs)
    assert SessionLimits(max_concurrent_tasks=None).max_concurrent_tasks is None
