"""Subscriptions: filters, bounded queues, critical updates never dropped, cursors, list_updates."""

import anyio
import pytest

from penguiflow.sessions import (
    CRITICAL_UPDATE_TYPES,
    SessionClosed,
    SessionError,
    SessionLimits,
    StateUpdate,
    StreamingSession,
    SubscriberLagged,
    TaskRuntime,
    UnknownCursor,
    UpdateBroker,
    UpdateType,
)


class Emitter:
    """A pipeline that hands the test its runtime and runs until told to finish."""

    def __init__(self) -> None:
        self.runtime: TaskRuntime | None = None
        self.ready = anyio.Event()
        self.finish = anyio.Event()

    async def __call__(self, runtime: TaskRuntime) -> str:
        self.runtime = runtime
        self.ready.set()
        await self.finish.wait()
        return "done"


async def drain(
    sub: anyio.abc.ObjectReceiveStream[StateUpdate] | object, n: int
) -> list[StateUpdate]:
    out: list[StateUpdate] = []
    for _ in range(n):
        out.append(await anext(sub))  # type: ignore[call-overload]
    return out


async def test_a_subscriber_gets_every_update_published_after_entry_in_order() -> None:
    async def emit(runtime: TaskRuntime) -> None:
        for i in range(5):
            runtime.emit_update(UpdateType.PROGRESS, {"i": i})

    async with StreamingSession("s1") as session:
        async with session.subscribe() as sub:
            with anyio.fail_after(5):
                tid = await session.spawn_task(emit)
                await session.wait_task(tid)
            await session.aclose()
            with anyio.fail_after(5):
                got = [u async for u in sub]
        assert [u.seq for u in got] == list(range(1, len(got) + 1))
        assert [u.content for u in got if u.update_type is UpdateType.PROGRESS] == [
            {"i": i} for i in range(5)
        ]
        assert got[-1].content["status"] == "COMPLETE"  # type: ignore[index,call-overload]
        assert sub.last_id == got[-1].update_id and sub.dropped == 0


async def test_filters_by_task_and_type_apply_to_live_and_replay() -> None:
    async def emit(runtime: TaskRuntime) -> None:
        runtime.emit_update(UpdateType.THINKING, "t")
        runtime.emit_update(UpdateType.PROGRESS, {"p": 1})

    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            a = await session.spawn_task(emit, task_id="a")
            await session.wait_task(a)
            async with session.subscribe(
                task_ids=["a", "b"], update_types=["PROGRESS"], since_id="0"
            ) as sub:
                b = await session.spawn_task(emit, task_id="b")
                c = await session.spawn_task(emit, task_id="c")
                await session.wait_task(b)
                await session.wait_task(c)
                await session.aclose()
                got = [u async for u in sub]
    assert [(u.task_id, u.content) for u in got] == [("a", {"p": 1}), ("b", {"p": 1})]


async def test_a_full_queue_drops_non_critical_updates_and_counts_them() -> None:
    emitter = Emitter()
    async with StreamingSession("s1") as session:
        async with (
            session.subscribe(queue_size=3, task_ids=["e"]) as slow,
            session.subscribe() as fast,
        ):
            with anyio.fail_after(5):
                await session.spawn_task(emitter, task_id="e")
                await emitter.ready.wait()
                # PENDING, RUNNING already queued for slow (2 of 3)
                assert emitter.runtime is not None
                for i in range(5):
                    emitter.runtime.emit_update(UpdateType.STREAM, f"tok{i}")
                assert slow.dropped == 4
                got_fast = await drain(fast, 7)
                assert [u.content for u in got_fast[2:]] == [f"tok{i}" for i in range(5)]
                got_slow = await drain(slow, 3)
                assert [u.content for u in got_slow][2] == "tok0"
                stats = session.statistics()
                assert stats.updates_dropped == 4 and stats.subscribers == 2
                emitter.finish.set()


async def test_a_critical_update_evicts_the_oldest_non_critical_one() -> None:
    emitter = Emitter()
    async with StreamingSession("s1") as session:
        async with session.subscribe(queue_size=4, task_ids=["e"]) as sub:
            with anyio.fail_after(5):
                await session.spawn_task(emitter, task_id="e")
                await emitter.ready.wait()
                assert emitter.runtime is not None
                emitter.runtime.emit_update(UpdateType.STREAM, "a")
                emitter.runtime.emit_update(UpdateType.STREAM, "b")  # queue full: 2 critical + a, b
                emitter.runtime.emit_update(UpdateType.ERROR, {"soft": 1})  # evicts "a"
                assert sub.dropped == 1
                got = await drain(sub, 4)
    assert [u.update_type for u in got] == [
        UpdateType.STATUS_CHANGE,
        UpdateType.STATUS_CHANGE,
        UpdateType.STREAM,
        UpdateType.ERROR,
    ]
    assert got[2].content == "b"


async def test_a_subscriber_full_of_critical_updates_continues_from_the_log_losslessly() -> None:
    emitter = Emitter()
    async with StreamingSession("s1") as session:
        async with session.subscribe(queue_size=2) as sub:
            with anyio.fail_after(5):
                await session.spawn_task(emitter, task_id="e")
                await emitter.ready.wait()
                assert emitter.runtime is not None
                for i in range(10):
                    emitter.runtime.emit_update(UpdateType.ERROR, {"i": i})
                    emitter.runtime.emit_update(UpdateType.STREAM, i)
                emitter.finish.set()
                await session.wait_task("e")
                await session.aclose()
                got = [u async for u in sub]
    assert [u.seq for u in got] == list(range(1, len(got) + 1))  # no gap, no duplicate
    errors = [u.content for u in got if u.update_type is UpdateType.ERROR]
    assert errors == [{"i": i} for i in range(10)]


async def test_a_lagging_subscriber_past_the_replay_buffer_raises_subscriber_lagged() -> None:
    emitter = Emitter()
    limits = SessionLimits(replay_buffer_size=5)
    async with StreamingSession("s1", limits=limits) as session:
        async with session.subscribe(queue_size=2) as sub:
            with anyio.fail_after(5):
                await session.spawn_task(emitter, task_id="e")
                await emitter.ready.wait()
                first = await anext(sub)
                assert emitter.runtime is not None
                for i in range(10):
                    emitter.runtime.emit_update(UpdateType.ERROR, {"i": i})
                with pytest.raises(SubscriberLagged) as lagged:
                    await anext(sub)
                assert lagged.value.resume_from == first.update_id
                emitter.finish.set()


async def test_a_stalled_subscriber_never_slows_the_emitter_or_the_others() -> None:
    async def flood(runtime: TaskRuntime) -> None:
        for i in range(2000):
            runtime.emit_update(UpdateType.PROGRESS, {"i": i})

    async with StreamingSession("s1", limits=SessionLimits(replay_buffer_size=None)) as session:
        async with (
            session.subscribe(queue_size=10) as stalled,
            session.subscribe(queue_size=5000) as reader,
        ):
            with anyio.fail_after(5):
                tid = await session.spawn_task(flood)
                await session.wait_task(tid)  # completes although `stalled` never read
                got = await drain(reader, 2004)
            assert [u.seq for u in got] == list(range(1, 2005))
            assert stalled.dropped > 0
            assert stalled.last_id is None


async def test_since_id_replays_then_goes_live_without_gap_or_duplicate() -> None:
    emitter = Emitter()
    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            await session.spawn_task(emitter, task_id="e")
            await emitter.ready.wait()
            assert emitter.runtime is not None
            for i in range(5):
                emitter.runtime.emit_update(UpdateType.PROGRESS, {"i": i})  # seqs 3..7
            async with session.subscribe(since_id="4") as sub:
                emitter.runtime.emit_update(UpdateType.PROGRESS, {"i": 5})  # seq 8
                got = await drain(sub, 4)
                emitter.runtime.emit_update(UpdateType.PROGRESS, {"i": 6})
                got += await drain(sub, 1)
            async with session.subscribe(since_id="0") as everything:
                assert [u.seq for u in await drain(everything, 9)] == list(range(1, 10))
            head = (await session.list_updates())[-1].update_id
            async with session.subscribe(since_id=head) as at_head:
                emitter.runtime.emit_update(UpdateType.PROGRESS, {"i": 7})
                assert (await anext(at_head)).seq == int(head) + 1
            emitter.finish.set()
    assert [u.seq for u in got] == [5, 6, 7, 8, 9]


@pytest.mark.parametrize("cursor", ["abc", "-1", "1.5", "", "99", "4 "])
async def test_unknown_cursors_raise_on_entry(cursor: str) -> None:
    async def emit(runtime: TaskRuntime) -> None:
        runtime.emit_update(UpdateType.PROGRESS, {})

    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            await session.wait_task(await session.spawn_task(emit))
            sub = session.subscribe(since_id=cursor)
            with pytest.raises(UnknownCursor) as unknown:
                async with sub:
                    pass  # pragma: no cover
            assert unknown.value.head == "5"
            with pytest.raises(UnknownCursor):
                await session.list_updates(since_id=cursor)


async def test_a_cursor_no_longer_retained_is_unknown() -> None:
    async def emit(runtime: TaskRuntime) -> None:
        for i in range(10):
            runtime.emit_update(UpdateType.PROGRESS, {"i": i})

    async with StreamingSession("s1", limits=SessionLimits(replay_buffer_size=4)) as session:
        with anyio.fail_after(5):
            await session.wait_task(await session.spawn_task(emit))  # 14 updates, 11..14 kept
            for stale in ("0", "9"):
                with pytest.raises(UnknownCursor, match="no longer retained"):
                    async with session.subscribe(since_id=stale):
                        pass  # pragma: no cover
            async with session.subscribe(since_id="10") as sub:
                assert [u.seq for u in await drain(sub, 4)] == [11, 12, 13, 14]
            assert [u.seq for u in await session.list_updates()] == [11, 12, 13, 14]


async def test_list_updates_returns_the_first_limit_after_the_cursor() -> None:
    async def emit(runtime: TaskRuntime) -> None:
        for i in range(10):
            runtime.emit_update(UpdateType.PROGRESS, {"i": i})

    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            a = await session.spawn_task(emit)
            await session.wait_task(a)
            await session.wait_task(await session.spawn_task(emit))
        assert [u.seq for u in await session.list_updates(limit=3)] == [1, 2, 3]
        assert [u.seq for u in await session.list_updates(since_id="5", limit=2)] == [6, 7]
        assert len(await session.list_updates(task_id=a)) == 14
        assert await session.list_updates(since_id="28") == []
        with pytest.raises(ValueError):
            await session.list_updates(limit=0)


async def test_subscriptions_end_when_the_session_closes_and_refuse_new_ones() -> None:
    async with StreamingSession("s1") as session:
        sub = session.subscribe()
        with pytest.raises(SessionError, match="async with"):
            await anext(sub)
        async with sub:
            async with anyio.create_task_group() as tg:

                async def read() -> None:
                    with anyio.fail_after(5):
                        assert [u async for u in sub] == []

                tg.start_soon(read)
                await anyio.lowlevel.checkpoint()
                await session.aclose()
        with pytest.raises(SessionClosed):
            session.subscribe()
        assert session.statistics().subscribers == 0


async def test_the_broker_fans_out_with_the_same_rules_and_lags_without_a_log() -> None:
    broker = UpdateBroker(max_queue_size=2)

    def update(seq: int, kind: UpdateType, task: str = "t") -> StateUpdate:
        return StateUpdate(session_id="s", seq=seq, update_type=kind, task_id=task)

    async with broker.subscribe() as sub, broker.subscribe(task_ids=["other"]) as other:
        with anyio.fail_after(5):
            broker.publish(update(1, UpdateType.STREAM))
            broker.publish(update(2, UpdateType.STREAM))
            broker.publish(update(3, UpdateType.STREAM))  # dropped
            broker.publish(update(4, UpdateType.RESULT))  # evicts 1
            assert sub.dropped == 2
            broker.publish(update(5, UpdateType.STATUS_CHANGE))  # evicts 2
            broker.publish(update(6, UpdateType.NOTIFICATION))  # only critical queued: lagged
            assert [u.seq for u in await drain(sub, 2)] == [4, 5]
            with pytest.raises(SubscriberLagged) as lagged:
                await anext(sub)
            assert lagged.value.resume_from == "5"
            stats = broker.statistics()
            assert (stats.subscribers, stats.published, stats.dropped) == (2, 6, 3)
            assert other.dropped == 0 and other.last_id is None
    assert broker.statistics().subscribers == 0
    with pytest.raises(ValueError):
        UpdateBroker(max_queue_size=0)
    assert UpdateType.NOTIFICATION in CRITICAL_UPDATE_TYPES


def _update(seq: int) -> StateUpdate:
    return StateUpdate(session_id="b", seq=seq, update_type=UpdateType.PROGRESS, content=seq)


async def test_a_reader_cancelled_while_waiting_loses_no_update() -> None:
    broker = UpdateBroker()
    async with broker.subscribe() as sub:
        with anyio.fail_after(5):
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(anext, sub)  # waits: nothing is queued
                    await anyio.wait_all_tasks_blocked()
                    scope.cancel()
            assert scope.cancelled_caught
            broker.publish(_update(1))
            assert (await anext(sub)).seq == 1


async def test_queued_updates_are_handed_over_in_a_cancelled_scope_and_the_wait_is_cancelled() -> (
    None
):
    broker = UpdateBroker()
    async with broker.subscribe() as sub:
        for seq in (1, 2):
            broker.publish(_update(seq))
        got: list[int] = []
        with anyio.fail_after(5):
            with anyio.CancelScope() as scope:
                scope.cancel()
                async for update in sub:  # the queued ones return without awaiting
                    got.append(update.seq)
            assert scope.cancelled_caught  # the wait for a third was the cancellation point
            assert got == [1, 2]
            broker.publish(_update(3))
            assert (await anext(sub)).seq == 3  # nothing lost, still usable
        assert sub.last_id == "3"


async def test_a_session_subscriber_reads_replayed_updates_equal_to_the_live_ones() -> None:
    async def emit(runtime: TaskRuntime) -> None:
        for i in range(3):
            runtime.emit_update(UpdateType.PROGRESS, {"i": i})

    async with StreamingSession("s1") as session:
        async with session.subscribe() as live:
            with anyio.fail_after(5):
                await session.run_task(emit)
                seen = await drain(live, 7)  # PENDING, RUNNING, 3 PROGRESS, RESULT, COMPLETE
        async with session.subscribe(since_id="0") as replay:
            with anyio.fail_after(5):
                again = await drain(replay, 7)
    assert again == seen
    assert [u.model_dump_json() for u in again] == [u.model_dump_json() for u in seen]


async def test_a_cancelled_reader_of_a_shared_subscription_leaves_the_other_waiting() -> None:
    broker = UpdateBroker()
    async with broker.subscribe() as sub:
        got: list[int] = []

        async def read_one() -> None:
            got.append((await anext(sub)).seq)

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(read_one)
                with anyio.CancelScope() as cancelled:
                    async with anyio.create_task_group() as inner:
                        inner.start_soon(read_one)
                        await anyio.wait_all_tasks_blocked()
                        cancelled.cancel()  # the second reader gives up; the first still waits
                await anyio.wait_all_tasks_blocked()
                broker.publish(_update(1))
        assert got == [1]
