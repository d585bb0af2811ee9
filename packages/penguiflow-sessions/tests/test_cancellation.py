"""Cancellation and close: cancel scopes, cascades, aclose() that leaves no task behind."""

import asyncio

import anyio
import pytest

from penguiflow.sessions import (
    SessionClosed,
    SessionLimits,
    StreamingSession,
    TaskRuntime,
    TaskStatus,
    TaskType,
    UpdateType,
)


class Forever:
    """A pipeline that parks until cancelled and records that its cleanup ran."""

    def __init__(self) -> None:
        self.running = anyio.Event()
        self.cleaned = False

    async def __call__(self, runtime: TaskRuntime) -> None:
        try:
            self.running.set()
            await anyio.sleep_forever()
        finally:
            self.cleaned = True


async def test_cancel_task_cancels_a_pending_task_without_running_it() -> None:
    first, second = Forever(), Forever()
    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            await session.spawn_task(first)
            queued = await session.spawn_task(second)
            await first.running.wait()
            assert await session.cancel_task(queued, reason="not_needed") is True
            state = session.get_task(queued)
            assert state is not None and state.status is TaskStatus.CANCELLED
            assert state.started_at is None and not second.running.is_set()
            changes = [
                u.content
                for u in await session.list_updates(task_id=queued)
                if u.update_type is UpdateType.STATUS_CHANGE
            ]
    assert changes[-1] == {
        "status": "CANCELLED",
        "previous": "PENDING",
        "reason": "not_needed",
        "task_type": "FOREGROUND",
    }


async def test_cancel_cascades_to_cascade_children_and_spares_isolated_ones() -> None:
    child_pipelines = {"cascade": Forever(), "isolate": Forever(), "grandchild": Forever()}
    ids: dict[str, str] = {}
    spawned = anyio.Event()

    async def grand_parent(runtime: TaskRuntime) -> None:
        ids["cascade"] = await runtime.spawn_task(
            child_pipelines["cascade"], task_type="BACKGROUND"
        )
        ids["isolate"] = await runtime.spawn_task(
            child_pipelines["isolate"], task_type="BACKGROUND", propagate_on_cancel="isolate"
        )
        spawned.set()
        await anyio.sleep_forever()

    async def cascade_with_child(runtime: TaskRuntime) -> None:
        ids["grandchild"] = await runtime.spawn_task(
            child_pipelines["grandchild"], task_type="BACKGROUND"
        )
        await anyio.sleep_forever()

    async with StreamingSession("s1", limits=SessionLimits(max_concurrent_tasks=None)) as session:
        with anyio.fail_after(5):
            parent = await session.spawn_task(grand_parent)
            await spawned.wait()
            for name in ("cascade", "isolate"):
                await child_pipelines[name].running.wait()
            # a grandchild under the cascading child
            mid = await session.spawn_task(
                cascade_with_child, task_type=TaskType.BACKGROUND, parent_task_id=ids["cascade"]
            )
            await child_pipelines["grandchild"].running.wait()
            assert await session.cancel_task(parent) is True
            # returns after the cascaded children stopped
            for tid, reason in (
                (parent, "cancelled"),
                (ids["cascade"], "parent_cancelled"),
                (mid, "parent_cancelled"),
                (ids["grandchild"], "parent_cancelled"),
            ):
                state = session.get_task(tid)
                assert state is not None and state.status is TaskStatus.CANCELLED, tid
                assert state.cancel_reason == reason
            isolated = session.get_task(ids["isolate"])
            assert isolated is not None and isolated.status is TaskStatus.RUNNING
            assert child_pipelines["cascade"].cleaned and not child_pipelines["isolate"].cleaned


async def test_completion_never_touches_children() -> None:
    child = Forever()
    ids: list[str] = []

    async def parent(runtime: TaskRuntime) -> str:
        ids.append(await runtime.spawn_task(child, task_type="BACKGROUND"))
        return "done"

    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            await session.run_task(parent)
            await child.running.wait()
            state = session.get_task(ids[0])
            assert state is not None and state.status is TaskStatus.RUNNING


async def test_aclose_cancels_every_live_task_and_leaves_no_task_behind() -> None:
    before = len(asyncio.all_tasks())
    pipelines = [Forever() for _ in range(5)]
    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            fg = await session.spawn_task(pipelines[0])
            queued_fg = await session.spawn_task(pipelines[1])
            bg = [await session.spawn_task(p, task_type="BACKGROUND") for p in pipelines[2:]]
            await pipelines[0].running.wait()
            for p in pipelines[2:]:
                await p.running.wait()
            assert len(asyncio.all_tasks()) > before
            async with session.subscribe() as sub:
                await session.aclose()
                await session.aclose()  # idempotent
                tail = [u async for u in sub]
    assert len(asyncio.all_tasks()) == before
    states = {t.task_id: t for t in session.list_tasks()}
    for tid in (fg, queued_fg, *bg):
        assert states[tid].status is TaskStatus.CANCELLED
        assert states[tid].cancel_reason == "session_closed"
    assert all(p.cleaned for p in (pipelines[0], *pipelines[2:]))
    cancelled = [
        str(u.task_id)
        for u in tail
        if u.update_type is UpdateType.STATUS_CHANGE and u.content["status"] == "CANCELLED"  # type: ignore[index,call-overload]
    ]
    assert sorted(cancelled) == sorted([fg, queued_fg, *bg])
    with pytest.raises(SessionClosed, match="closed"):
        await session.spawn_task(Forever())
    with pytest.raises(SessionClosed):
        session.subscribe()


async def test_leaving_the_block_closes_the_session() -> None:
    pipeline = Forever()
    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            tid = await session.spawn_task(pipeline, task_type="BACKGROUND")
            await pipeline.running.wait()
    state = session.get_task(tid)
    assert state is not None and state.cancel_reason == "session_closed"
    with pytest.raises(RuntimeError, match="entered once"):
        async with session:
            pass  # pragma: no cover


async def test_an_outer_cancellation_propagates_and_the_tasks_still_end() -> None:
    pipeline = Forever()
    session = StreamingSession("s1")
    tid = ""
    with anyio.fail_after(5):
        with anyio.CancelScope() as outer:
            async with session:
                tid = await session.spawn_task(pipeline)
                await pipeline.running.wait()
                outer.cancel()
                await anyio.sleep_forever()
    assert outer.cancelled_caught
    state = session.get_task(tid)
    assert state is not None and state.status is TaskStatus.CANCELLED
    assert pipeline.cleaned


async def test_a_pipeline_that_swallows_its_cancellation_still_ends_cancelled() -> None:
    running = anyio.Event()

    async def stubborn(runtime: TaskRuntime) -> str:
        try:
            running.set()
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            return "ignored"  # noqa: B012 - the point of the test
        return "unreachable"  # pragma: no cover

    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            tid = await session.spawn_task(stubborn)
            await running.wait()
            await session.cancel_task(tid)
            updates = await session.list_updates(task_id=tid)
    assert not any(u.update_type is UpdateType.RESULT for u in updates)
    assert updates[-1].content["status"] == "CANCELLED"  # type: ignore[index,call-overload]


async def test_an_error_in_the_session_block_comes_out_as_itself_after_closing() -> None:
    before = len(asyncio.all_tasks())
    pipeline = Forever()
    session = StreamingSession("s1")
    tid = ""
    with pytest.raises(LookupError, match="boom") as caught:
        async with session:
            with anyio.fail_after(5):
                tid = await session.spawn_task(pipeline, task_type="BACKGROUND")
                await pipeline.running.wait()
            raise LookupError("boom")
    assert type(caught.value) is LookupError  # not an ExceptionGroup around it
    assert len(asyncio.all_tasks()) == before
    state = session.get_task(tid)
    assert state is not None and state.cancel_reason == "session_closed"
    assert pipeline.cleaned


async def test_a_done_flag_waited_on_after_it_is_set_is_still_a_checkpoint() -> None:
    from penguiflow.sessions._flag import Flag

    flag = Flag()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(flag.wait)
            await anyio.wait_all_tasks_blocked()
            flag.set()  # wakes the waiter
        assert flag.is_set()
        with anyio.CancelScope() as scope:
            scope.cancel()
            await flag.wait()
        assert scope.cancelled_caught
