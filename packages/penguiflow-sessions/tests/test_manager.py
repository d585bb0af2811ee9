"""SessionManager: shared sessions, tenants, drop/erase, idle eviction by an injected clock."""

import asyncio
import gc
import weakref

import anyio
import pytest

from penguiflow.sessions import (
    SessionClosed,
    SessionLimitExceeded,
    SessionManager,
    SessionTenantMismatch,
    StateUpdate,
    SteeringEvent,
    SteeringEventType,
    StreamingSession,
    TaskRuntime,
    TaskStatus,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def manager(clock: Clock, **kw: object) -> SessionManager:
    return SessionManager(clock=clock, idle_timeout_s=60, sweep_interval_s=None, **kw)  # type: ignore[arg-type]


def content(update: StateUpdate) -> dict[str, object]:
    assert isinstance(update.content, dict)
    return dict(update.content)


class Gate:
    def __init__(self) -> None:
        self.release = anyio.Event()
        self.paused = anyio.Event()

    async def __call__(self, runtime: TaskRuntime) -> str:
        while not self.release.is_set():
            await runtime.pause_point()
            with anyio.move_on_after(0.01):
                await self.release.wait()
        return "ok"


async def test_concurrent_get_or_create_share_one_session() -> None:
    clock = Clock()
    async with manager(clock) as m:
        got: list[StreamingSession] = []

        async def one() -> None:
            got.append(await m.get_or_create("s1"))

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                for _ in range(5):
                    tg.start_soon(one)
        assert len({id(s) for s in got}) == 1
        assert m.statistics().created == 1
        assert m.get("s1") is got[0]


async def test_another_tenants_session_is_refused() -> None:
    async with manager(Clock()) as m:
        await m.get_or_create("s1", tenant="acme")
        with pytest.raises(SessionTenantMismatch, match="another tenant"):
            await m.get_or_create("s1", tenant="globex")
        assert (await m.get_or_create("s1", tenant="acme")).tenant == "acme"


async def test_drop_closes_and_forgets_the_session() -> None:
    async with manager(Clock()) as m:
        session = await m.get_or_create("s1")
        assert await m.drop("s1") is True
        assert await m.drop("s1") is False
        assert m.get("s1") is None
        with pytest.raises(SessionClosed):
            session.subscribe()
        again = await m.get_or_create("s1")
        assert again is not session
        assert m.statistics().created == 2


async def test_erase_without_a_store_drops_the_session() -> None:
    async with manager(Clock()) as m:
        await m.get_or_create("s1")
        assert await m.erase("s1") == 0
        assert m.statistics().sessions == 0


async def test_nothing_kept_per_session_id_outlives_its_session() -> None:
    async with manager(Clock()) as m:
        ref = weakref.ref(await m.get_or_create("s1"))
        await m.drop("s1")
        gc.collect()
        assert ref() is None
        assert m.statistics().sessions == 0


async def test_a_session_closed_by_its_user_is_forgotten() -> None:
    async with manager(Clock()) as m:
        session = await m.get_or_create("s1")
        await session.aclose()
        with anyio.fail_after(5):
            while m.get("s1") is not None:  # noqa: ASYNC110 - the host task forgets it
                await anyio.sleep(0.001)
        assert m.statistics().sessions == 0


async def test_evict_idle_closes_only_sessions_idle_for_the_timeout() -> None:
    clock = Clock()
    async with manager(clock) as m:
        await m.get_or_create("idle")
        clock.now += 59
        assert await m.evict_idle() == []
        clock.now += 1
        assert await m.evict_idle() == ["idle"]
        assert m.get("idle") is None
        assert m.statistics().evicted == 1


async def test_a_running_task_or_a_subscriber_keeps_a_session_open() -> None:
    clock = Clock()
    gate = Gate()
    async with manager(clock) as m:
        busy = await m.get_or_create("busy")
        watched = await m.get_or_create("watched")
        tid = await busy.spawn_task(gate)
        async with watched.subscribe():
            clock.now += 3600
            assert await m.evict_idle() == []
        gate.release.set()
        with anyio.fail_after(5):
            await busy.wait_task(tid)
        assert await m.evict_idle() == []  # its end and the subscriber leaving
        clock.now += 3600
        assert sorted(await m.evict_idle()) == ["busy", "watched"]


async def test_a_paused_task_without_a_store_keeps_its_session_open() -> None:
    clock = Clock()
    gate = Gate()
    async with manager(clock) as m:
        session = await m.get_or_create("s1")
        async with session.subscribe(update_types=["STATUS_CHANGE"]) as sub:
            tid = await session.spawn_task(gate)
            await session.steer(
                SteeringEvent(session_id="s1", task_id=tid, event_type=SteeringEventType.PAUSE)
            )
            with anyio.fail_after(5):
                async for update in sub:
                    if update.content == {**content(update), "status": "PAUSED"}:
                        break
        assert session.get_task(tid).status is TaskStatus.PAUSED  # type: ignore[union-attr]
        clock.now += 3600
        assert await m.evict_idle() == []
        await session.cancel_task(tid)


async def test_activity_restarts_the_idle_clock() -> None:
    clock = Clock()
    async with manager(clock) as m:
        session = await m.get_or_create("s1")
        clock.now += 50
        await session.steer(
            SteeringEvent(session_id="s1", task_id="nope", event_type=SteeringEventType.PAUSE)
        )
        assert await m.evict_idle() == []  # saw the steering: active at 50
        clock.now += 50
        assert await m.evict_idle() == []
        clock.now += 10
        assert await m.evict_idle() == ["s1"]


async def test_the_sweep_runs_evict_idle_every_interval() -> None:
    clock = Clock()
    m = SessionManager(clock=clock, idle_timeout_s=60, sweep_interval_s=0.01)
    async with m:
        await m.get_or_create("s1")
        clock.now += 61
        with anyio.fail_after(5):
            while m.statistics().evicted == 0:  # noqa: ASYNC110 - the sweep is on a timer
                await anyio.sleep(0.01)
        assert m.get("s1") is None


async def test_at_max_sessions_the_least_recently_used_idle_session_makes_room() -> None:
    clock = Clock()
    async with manager(clock, max_sessions=2) as m:
        await m.get_or_create("a")
        clock.now += 1
        await m.get_or_create("b")
        clock.now += 1
        m.get("a")  # a is now the most recently used
        await m.get_or_create("c")
        assert m.get("b") is None
        assert m.get("a") is not None and m.get("c") is not None
        assert m.statistics().evicted == 1


async def test_at_max_sessions_with_none_idle_get_or_create_raises() -> None:
    gate = Gate()
    async with manager(Clock(), max_sessions=1) as m:
        session = await m.get_or_create("a")
        tid = await session.spawn_task(gate)
        with pytest.raises(SessionLimitExceeded) as caught:
            await m.get_or_create("b")
        assert (caught.value.limit, caught.value.value, caught.value.current) == (
            "max_sessions",
            1,
            1,
        )
        await session.cancel_task(tid)


async def test_leaving_the_manager_closes_every_session_and_leaves_no_task() -> None:
    before = len(asyncio.all_tasks())
    gate = Gate()
    async with SessionManager() as m:
        s1 = await m.get_or_create("s1")
        await s1.spawn_task(gate)
        await m.get_or_create("s2")
    assert len(asyncio.all_tasks()) == before
    assert m.statistics().sessions == 0
    with pytest.raises(SessionClosed):
        s1.subscribe()
    with pytest.raises(SessionClosed, match="closed"):
        await m.get_or_create("s3")


async def test_a_manager_not_entered_or_misconfigured_says_what_to_do() -> None:
    with pytest.raises(SessionClosed, match="async with manager"):
        await SessionManager().get_or_create("s1")
    with pytest.raises(ValueError, match="idle_timeout_s"):
        SessionManager(idle_timeout_s=0)
    with pytest.raises(ValueError, match="max_sessions"):
        SessionManager(max_sessions=0)


async def test_get_or_create_right_after_a_session_closed_itself_opens_a_new_one() -> None:
    async with manager(Clock()) as m:
        session = await m.get_or_create("s1")
        await session.aclose()
        with anyio.fail_after(5):
            again = await m.get_or_create("s1")
        assert again is not session
        again.subscribe()  # open: no SessionClosed


async def test_a_session_being_dropped_is_no_longer_handed_out() -> None:
    cleanup = anyio.Event()

    async def slow_cleanup(runtime: TaskRuntime) -> None:
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await cleanup.wait()

    async with manager(Clock()) as m:
        session = await m.get_or_create("s1")
        await session.spawn_task(slow_cleanup)
        async with anyio.create_task_group() as tg:
            tg.start_soon(m.drop, "s1")
            with anyio.fail_after(5):
                await anyio.wait_all_tasks_blocked()
            assert m.get("s1") is None  # closing: not handed out
            cleanup.set()
        assert m.statistics().sessions == 0


async def test_an_error_in_the_manager_block_is_raised_as_is_after_closing_every_session() -> None:
    before = len(asyncio.all_tasks())
    opened: list[StreamingSession] = []
    with pytest.raises(LookupError, match="boom"):
        async with SessionManager() as m:
            opened.append(await m.get_or_create("s1"))
            raise LookupError("boom")
    assert len(asyncio.all_tasks()) == before
    with pytest.raises(SessionClosed):
        opened[0].subscribe()
