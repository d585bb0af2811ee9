"""Durability (§9, §4 "order and durability"): records, logs, outbox, hydrate, cursors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import anyio
import anyio.lowlevel
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from penguiflow.core import (
    DurableStore,
    InMemoryDurableStore,
    LogEntry,
    Record,
    Scope,
    SQLiteDurableStore,
    StoreUnavailable,
)
from penguiflow.sessions import (
    ContextPatch,
    MergeStrategy,
    SessionError,
    SessionLimits,
    SessionTenantMismatch,
    StateUpdate,
    SteeringEvent,
    SteeringEventType,
    SteeringOutcome,
    StreamingSession,
    TaskRuntime,
    UnknownCursor,
    UpdateType,
)

SID = "s1"
UPDATES = f"sessions.updates/{SID}"


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[DurableStore]:
    if request.param == "memory":
        async with InMemoryDurableStore() as memory:
            yield memory
    else:
        async with SQLiteDurableStore.open(tmp_path / "sessions.db") as sqlite:
            yield sqlite


class FlakyStore:
    """A real store whose next ``fail`` writes raise ``StoreUnavailable``.

    With ``after_write=True`` the write is applied first and then reported failed (a lost
    acknowledgement), so only the idempotency key keeps a retry from writing it twice.
    """

    def __init__(self, inner: DurableStore, *, fail: int = 0, after_write: bool = False) -> None:
        self.inner = inner
        self.fail = fail
        self.after_write = after_write
        self.gate: anyio.Event | None = None  # when set: writes wait for it

    async def _gated(self) -> None:
        if self.gate is not None:
            await self.gate.wait()

    def _should_fail(self) -> bool:
        if self.fail > 0:
            self.fail -= 1
            return True
        return False

    async def put(self, namespace: str, key: str, value: bytes, **kw: Any) -> int:
        await self._gated()
        if self._should_fail():
            raise StoreUnavailable("put failed (test)")
        return await self.inner.put(namespace, key, value, **kw)

    async def get(self, namespace: str, key: str, **kw: Any) -> Record | None:
        return await self.inner.get(namespace, key, **kw)

    async def take(self, namespace: str, key: str, **kw: Any) -> Record | None:
        return await self.inner.take(namespace, key, **kw)

    async def delete(self, namespace: str, key: str, **kw: Any) -> bool:
        return await self.inner.delete(namespace, key, **kw)

    async def scan(self, namespace: str, prefix: str = "", **kw: Any) -> list[Record]:
        return await self.inner.scan(namespace, prefix, **kw)

    async def append(self, stream: str, value: bytes, **kw: Any) -> int:
        await self._gated()
        if self._should_fail():
            if self.after_write:
                await self.inner.append(stream, value, **kw)
            raise StoreUnavailable("append failed (test)")
        return await self.inner.append(stream, value, **kw)

    async def read(self, stream: str, after: int = 0, **kw: Any) -> list[LogEntry]:
        return await self.inner.read(stream, after, **kw)

    async def trim(self, stream: str, *, before: int) -> int:
        return await self.inner.trim(stream, before=before)

    async def erase(self, tenant: str, **kw: Any) -> int:
        return await self.inner.erase(tenant, **kw)

    async def purge_expired(self) -> int:
        return await self.inner.purge_expired()

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


async def emit_n(runtime: TaskRuntime, n: int) -> str:
    for i in range(n):
        runtime.emit_update(UpdateType.PROGRESS, {"i": i})
    return "done"


async def stored_updates(store: DurableStore, stream: str = UPDATES) -> list[StateUpdate]:
    entries = await store.read(stream, 0, limit=1000)
    for entry in entries:
        assert entry.idempotency_key == f"u{entry.seq}"
    updates = [StateUpdate.model_validate_json(e.value) for e in entries]
    assert [u.seq for u in updates] == [e.seq for e in entries]
    return updates


async def test_every_update_is_stored_before_a_subscriber_sees_it(store: DurableStore) -> None:
    with anyio.fail_after(10):
        async with StreamingSession(SID, store=store) as session:
            seen: list[int] = []
            async with session.subscribe() as sub:
                tid = await session.spawn_task(partial(emit_n, n=20))
                async for update in sub:
                    entries = await store.read(UPDATES, update.seq - 1, limit=1)
                    assert entries and entries[0].seq == update.seq  # already durable
                    seen.append(update.seq)
                    if update.update_type is UpdateType.STATUS_CHANGE and update.content == {
                        "status": "COMPLETE",
                        "previous": "RUNNING",
                        "reason": "completed",
                        "task_type": "FOREGROUND",
                    }:
                        break
            await session.wait_task(tid)
        assert seen == list(range(1, len(seen) + 1))
        assert [u.seq for u in await stored_updates(store)] == seen


async def test_records_follow_the_layout_under_the_sessions_scope(store: DurableStore) -> None:
    with anyio.fail_after(10):
        async with StreamingSession(SID, tenant="acme", store=store) as session:
            tid = await session.spawn_task(partial(emit_n, n=2), query="q")
            await session.wait_task(tid)
            await session.update_context(llm_context={"topic": "tides"})
        scope = Scope("acme", session=SID)
        meta = await store.get("sessions.meta", SID, scope=scope)
        assert meta is not None and json.loads(meta.value)["tenant"] == "acme"
        task = await store.get("sessions.tasks", f"{SID}/{tid}", scope=scope)
        assert task is not None
        assert json.loads(task.value)["state"]["status"] == "COMPLETE"
        context = await store.get("sessions.context", SID, scope=scope)
        assert context is not None
        assert json.loads(context.value)["llm_context"] == {"topic": "tides"}
        updates = await stored_updates(store)
        assert [u.update_type for u in updates][-2:] == [
            UpdateType.RESULT,
            UpdateType.STATUS_CHANGE,
        ]
        assert await store.erase("acme", session=SID) > 0
        assert await store.read(UPDATES, 0) == []
        assert await store.get("sessions.tasks", f"{SID}/{tid}") is None


async def test_tool_context_is_never_written(store: DurableStore) -> None:
    with anyio.fail_after(10):
        async with StreamingSession(SID, store=store) as session:
            await session.update_context(
                llm_context={"a": 1}, tool_context={"client": "sk-SECRET-TOKEN"}
            )
            await session.run_task(partial(emit_n, n=1))
        blobs = [r.value for r in await store.scan("sessions.context", "")]
        blobs += [r.value for r in await store.scan("sessions.tasks", "")]
        blobs += [e.value for e in await store.read(UPDATES, 0)]
        assert blobs and not any(b"sk-SECRET-TOKEN" in blob for blob in blobs)


async def test_seq_continues_and_a_cursor_resumes_across_a_restart(store: DurableStore) -> None:
    with anyio.fail_after(10):
        async with StreamingSession(SID, store=store) as first:
            await first.run_task(partial(emit_n, n=5))
            old = await first.list_updates()
        cursor = old[2].update_id  # the client saw three updates, then the process went away
        async with StreamingSession(SID, store=store) as second:
            async with second.subscribe(since_id=cursor) as sub:
                await second.spawn_task(partial(emit_n, n=1))
                got: list[StateUpdate] = []
                async for update in sub:
                    got.append(update)
                    if (
                        update.content
                        == {
                            "status": "COMPLETE",
                            "previous": "RUNNING",
                            "reason": "completed",
                            "task_type": "FOREGROUND",
                        }
                        and update.seq > old[-1].seq
                    ):
                        break
        assert [u.seq for u in got] == list(range(old[2].seq + 1, got[-1].seq + 1))
        assert [u.update_id for u in got[: len(old) - 3]] == [u.update_id for u in old[3:]]
        assert got[len(old) - 3].seq == old[-1].seq + 1  # the new process continues the seq


async def test_list_updates_reads_older_updates_from_the_store(store: DurableStore) -> None:
    with anyio.fail_after(10):
        limits = SessionLimits(replay_buffer_size=5)
        async with StreamingSession(SID, store=store, limits=limits) as session:
            await session.run_task(partial(emit_n, n=20))
            page = await session.list_updates(since_id="0", limit=500)
            assert [u.seq for u in page] == list(range(1, 25))
            assert [u.seq for u in await session.list_updates(since_id="3", limit=4)] == [
                4,
                5,
                6,
                7,
            ]
            async with session.subscribe(since_id="0") as sub:
                first = [await anext(sub) for _ in range(24)]
            assert [u.seq for u in first] == list(range(1, 25))


async def test_a_cursor_older_than_the_trimmed_log_is_unknown(store: DurableStore) -> None:
    with anyio.fail_after(10):
        async with StreamingSession(SID, store=store) as session:
            await session.run_task(partial(emit_n, n=6))
        await store.trim(UPDATES, before=5)
        async with StreamingSession(SID, store=store) as session:
            with pytest.raises(UnknownCursor, match="no longer retained"):
                async with session.subscribe(since_id="2"):
                    pass
            with pytest.raises(UnknownCursor):
                await session.list_updates(since_id="3")
            assert [u.seq for u in await session.list_updates(since_id="4", limit=2)] == [5, 6]
            with pytest.raises(UnknownCursor, match="ahead"):
                await session.list_updates(since_id="999")


async def test_another_tenants_stored_session_is_refused(store: DurableStore) -> None:
    with anyio.fail_after(10):
        async with StreamingSession(SID, tenant="acme", store=store) as session:
            await session.run_task(partial(emit_n, n=1))
        with pytest.raises(SessionTenantMismatch, match="another tenant"):
            async with StreamingSession(SID, tenant="globex", store=store):
                pass


async def test_steering_ids_are_deduplicated_across_a_restart(store: DurableStore) -> None:
    release = anyio.Event()

    async def waits(runtime: TaskRuntime) -> str:
        await release.wait()
        return "ok"

    with anyio.fail_after(10):
        async with StreamingSession(SID, store=store) as first:
            tid = await first.spawn_task(waits)
            event = SteeringEvent(
                session_id=SID,
                task_id=tid,
                event_type=SteeringEventType.INJECT_CONTEXT,
                payload={"text": "more"},
            )
            assert (await first.steer(event)).outcome is SteeringOutcome.DELIVERED
            release.set()
            await first.wait_task(tid)
        entries = await store.read(f"sessions.steering/{SID}", 0)
        assert [e.idempotency_key for e in entries] == [event.event_id]
        assert json.loads(entries[0].value)["outcome"] == "DELIVERED"
        async with StreamingSession(SID, store=store) as second:
            receipt = await second.steer(event)
            assert receipt.outcome is SteeringOutcome.DUPLICATE


async def test_context_and_pending_patches_survive_a_restart(store: DurableStore) -> None:
    with anyio.fail_after(10):
        async with StreamingSession(SID, store=store) as first:
            await first.update_context(llm_context={"city": "Lima"}, memory={"m": 1})
            patch_id = await first.apply_context_patch(
                ContextPatch(digest=["found"], facts={"tide": "high"}),
                strategy=MergeStrategy.HUMAN_GATED,
            )
            assert patch_id is not None
            before = first.get_context()
        async with StreamingSession(SID, store=store) as second:
            after = second.get_context()
            assert (after.version, after.context_hash) == (before.version, before.context_hash)
            assert [p.patch_id for p in second.pending_patches()] == [patch_id]
            context = await second.apply_pending_patch(patch_id)
            assert context.llm_context["tide"] == ["high"]
        assert await store.get("sessions.patches", f"{SID}/{patch_id}") is None
        async with StreamingSession(SID, store=store) as third:
            assert third.pending_patches() == []
            assert third.get_context().llm_context["tide"] == ["high"]


@pytest.mark.parametrize("after_write", [False, True], ids=["refused", "ack_lost"])
async def test_failed_writes_are_counted_and_retried_with_the_same_key(
    after_write: bool,
) -> None:
    async with InMemoryDurableStore() as inner:
        flaky = FlakyStore(inner, fail=3, after_write=after_write)
        with anyio.fail_after(10):
            async with StreamingSession(SID, store=flaky) as session:
                await session.run_task(partial(emit_n, n=3))
                assert session.statistics().store_errors == 3
                published = await session.list_updates()
            stored = await stored_updates(inner)
            assert [u.seq for u in stored] == list(range(1, len(stored) + 1))
            assert [u.update_id for u in stored[: len(published)]] == [
                u.update_id for u in published
            ]


async def test_emitters_never_wait_while_the_store_is_slow() -> None:
    async with InMemoryDurableStore() as inner:
        slow = FlakyStore(inner)
        with anyio.fail_after(10):
            async with StreamingSession(SID, store=slow) as session:
                async with session.subscribe() as sub:
                    go, emitted = anyio.Event(), anyio.Event()

                    async def emits(runtime: TaskRuntime) -> str:
                        await go.wait()
                        for i in range(100):
                            runtime.emit_update(UpdateType.PROGRESS, {"i": i})
                        emitted.set()
                        return "done"

                    tid = await session.spawn_task(emits)  # PENDING, RUNNING are stored
                    gate = slow.gate = anyio.Event()  # the store stalls from here on
                    go.set()
                    await emitted.wait()  # 100 emits returned while no write could finish
                    stats = session.statistics()
                    assert stats.outbox >= 100
                    assert stats.updates_published == 2  # only what the store holds was seen
                    assert [u.seq for u in [await anext(sub) for _ in range(2)]] == [1, 2]
                    gate.set()
                    rest = [await anext(sub) for _ in range(100)]
                    assert [u.content for u in rest] == [{"i": i} for i in range(100)]
                    await session.wait_task(tid)
                assert session.statistics().outbox == 0


# Property: whatever writes fail and however often the process restarts, the stored log holds
# every update exactly once, in emission order, with seq 1, 2, 3 …, and every failure is counted.
Op = tuple[Literal["emit"], int] | tuple[Literal["fail"], int, bool]

ops = st.lists(
    st.one_of(
        st.tuples(st.just("emit"), st.integers(1, 8)),
        st.tuples(st.just("fail"), st.just(1), st.booleans()),
    ),
    max_size=5,
)


class Holder:
    def __init__(self) -> None:
        self.runtime: TaskRuntime | None = None
        self.ready = anyio.Event()
        self.finish = anyio.Event()

    async def __call__(self, runtime: TaskRuntime) -> str:
        self.runtime = runtime
        self.ready.set()
        await self.finish.wait()
        return "done"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(segments=st.lists(ops, min_size=1, max_size=3))
def test_the_log_is_exact_under_failures_and_restarts(segments: list[list[Op]]) -> None:
    async def main() -> None:
        async with InMemoryDurableStore() as inner:
            flaky = FlakyStore(inner)
            injected = errors = 0
            seen: list[StateUpdate] = []
            emitted: list[object] = []
            with anyio.fail_after(30):
                for index, segment in enumerate(segments):
                    async with StreamingSession("s", store=flaky) as session:
                        holder = Holder()
                        tid = await session.spawn_task(holder)
                        await holder.ready.wait()
                        runtime = holder.runtime
                        assert runtime is not None
                        for op in segment:
                            if op[0] == "emit":
                                for i in range(op[1]):
                                    content = {"segment": index, "i": len(emitted), "j": i}
                                    emitted.append(content)
                                    runtime.emit_update(UpdateType.PROGRESS, content)
                            else:
                                flaky.fail += op[1]
                                flaky.after_write = op[2]
                                injected += op[1]
                        holder.finish.set()
                        await session.wait_task(tid)
                        cursor = seen[-1].update_id if seen else "0"
                        seen += await session.list_updates(since_id=cursor, limit=10_000)
                        errors += session.statistics().store_errors
                        injected -= flaky.fail  # failures no write used up yet
                        flaky.fail = 0
            stored = await stored_updates(inner, "sessions.updates/s")
            assert [u.seq for u in stored] == list(range(1, len(stored) + 1))
            assert [u.model_dump() for u in stored] == [u.model_dump() for u in seen]
            progress = [u.content for u in stored if u.update_type is UpdateType.PROGRESS]
            assert progress == emitted
            assert errors == injected

    anyio.run(main)


async def test_a_lagging_subscriber_catches_up_from_the_store_past_the_buffer(
    store: DurableStore,
) -> None:
    go = anyio.Event()

    async def errors(runtime: TaskRuntime) -> str:
        await go.wait()
        for i in range(10):
            runtime.emit_update(UpdateType.ERROR, {"i": i})
        return "done"

    limits = SessionLimits(replay_buffer_size=5)
    with anyio.fail_after(10):
        async with StreamingSession(SID, store=store, limits=limits) as session:
            async with session.subscribe(queue_size=2) as sub:
                tid = await session.spawn_task(errors)
                first = await anext(sub)
                go.set()
                await session.wait_task(tid)  # 10 critical updates while the queue holds 2
                rest = [await anext(sub) for _ in range(13)]
            assert [u.seq for u in rest] == list(range(first.seq + 1, first.seq + 14))
            assert [u.content for u in rest if u.update_type is UpdateType.ERROR] == [
                {"i": i} for i in range(10)
            ]


async def test_aclose_drains_the_outbox_into_the_store() -> None:
    async with InMemoryDurableStore() as inner:
        slow = FlakyStore(inner)
        with anyio.fail_after(10):
            async with StreamingSession(SID, store=slow) as session:
                go = anyio.Event()

                async def emits(runtime: TaskRuntime) -> None:
                    await go.wait()
                    for i in range(50):
                        runtime.emit_update(UpdateType.PROGRESS, {"i": i})
                    await anyio.sleep_forever()

                tid = await session.spawn_task(emits)
                gate = slow.gate = anyio.Event()
                go.set()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(session.aclose)
                    await anyio.wait_all_tasks_blocked()
                    assert session.statistics().outbox > 50  # still queued behind the stall
                    gate.set()
            assert session.statistics().outbox == 0
        stored = await stored_updates(inner)
        assert [u.content for u in stored if u.update_type is UpdateType.PROGRESS] == [
            {"i": i} for i in range(50)
        ]
        assert stored[-1].content == {
            "status": "CANCELLED",
            "previous": "RUNNING",
            "reason": "session_closed",
            "task_type": "FOREGROUND",
        }
        assert stored[-1].task_id == tid


async def test_an_unreadable_stored_task_fails_hydrate_by_name_and_leaves_nothing(
    store: DurableStore,
) -> None:
    with anyio.fail_after(10):
        async with StreamingSession(SID, store=store) as session:
            tid = await session.spawn_task(partial(emit_n, n=1))
            await session.wait_task(tid)
        scope = Scope("default", session=SID)
        stored = await store.get("sessions.tasks", f"{SID}/{tid}")
        assert stored is not None
        data = json.loads(stored.value)
        data["state"]["status"] = "RUNNING"  # as if its process had died while it ran
        await store.put("sessions.tasks", f"{SID}/{tid}", json.dumps(data).encode(), scope=scope)
        await store.put("sessions.tasks", f"{SID}/~zzz", b"not json", scope=scope)
        tasks_before = len(asyncio.all_tasks())
        with pytest.raises(SessionError, match="is not one this package wrote"):
            async with StreamingSession(SID, store=store):
                pass
        assert len(asyncio.all_tasks()) == tasks_before


async def test_a_rejected_steering_event_is_logged_unkeyed_and_may_be_sent_again(
    store: DurableStore,
) -> None:
    release = anyio.Event()

    async def waits(runtime: TaskRuntime) -> str:
        await release.wait()
        return "ok"

    with anyio.fail_after(10):
        async with StreamingSession(SID, store=store) as first:
            early = SteeringEvent(
                session_id=SID,
                task_id="task_later",
                event_type=SteeringEventType.INJECT_CONTEXT,
                payload={"text": "more"},
            )
            assert (await first.steer(early)).reason == "unknown_task"
            await first.spawn_task(waits, task_id="task_later")
            entries = await store.read(f"sessions.steering/{SID}", 0)
            assert [(e.idempotency_key, json.loads(e.value)["outcome"]) for e in entries] == [
                (None, "REJECTED")
            ]
            assert json.loads(entries[0].value)["reason"] == "unknown_task"
            release.set()
        async with StreamingSession(SID, store=store) as second:  # the task is final now
            receipt = await second.steer(early)
            assert receipt.outcome is SteeringOutcome.REJECTED  # not DUPLICATE: never accepted
            assert receipt.reason == "task_finished"


async def test_an_update_the_store_refuses_for_good_leaves_a_stand_in_and_the_log_goes_on() -> None:
    async def big(runtime: TaskRuntime) -> str:
        runtime.emit_update(UpdateType.PROGRESS, {"blob": "x" * 5000})
        runtime.emit_update(UpdateType.PROGRESS, {"after": True})
        return "done"

    async with InMemoryDurableStore(max_value_bytes=2048) as store:
        with anyio.fail_after(10):
            async with StreamingSession(SID, store=store) as session:
                await session.run_task(big)
                assert session.statistics().store_errors == 1  # refused once, not retried
            stored = await stored_updates(store)
            assert [u.seq for u in stored] == list(range(1, len(stored) + 1))
            progress = [u.content for u in stored if u.update_type is UpdateType.PROGRESS]
            assert isinstance(progress[0], dict) and "not_stored" in progress[0]
            assert "ValueError" in str(progress[0]["not_stored"])
            assert progress[1] == {"after": True}


async def test_a_stored_task_is_never_behind_its_stored_updates(store: DurableStore) -> None:
    rank = {"PENDING": 0, "RUNNING": 1, "PAUSED": 1, "COMPLETE": 2, "FAILED": 2, "CANCELLED": 2}

    async def steps(runtime: TaskRuntime) -> str:
        for i in range(5):
            runtime.emit_update(UpdateType.PROGRESS, {"i": i})
            await anyio.lowlevel.checkpoint()
        return "done"

    with anyio.fail_after(10):
        async with StreamingSession(SID, store=store) as session:
            async with session.subscribe() as sub:
                tids = [await session.spawn_task(steps, task_type="BACKGROUND") for _ in range(3)]
                finals = 0
                async for update in sub:  # each update seen here is stored
                    content = update.content
                    if update.update_type is not UpdateType.STATUS_CHANGE:
                        continue
                    assert isinstance(content, dict) and isinstance(content["status"], str)
                    stored = await store.get("sessions.tasks", f"{SID}/{update.task_id}")
                    assert stored is not None, "an update is stored before its task"
                    status = json.loads(stored.value)["state"]["status"]
                    assert rank[status] >= rank[content["status"]]
                    finals += rank[content["status"]] == 2
                    if finals == len(tids):
                        break


async def test_an_outer_cancellation_ends_a_stored_session_without_hanging(
    store: DurableStore,
) -> None:
    started = anyio.Event()

    async def forever(runtime: TaskRuntime) -> None:
        started.set()
        await anyio.sleep_forever()

    session = StreamingSession(SID, store=store)
    with anyio.fail_after(10):
        with anyio.CancelScope() as outer:
            async with session:
                for _ in range(3):
                    await session.spawn_task(forever, task_type="BACKGROUND")
                await started.wait()
                outer.cancel()
                await anyio.sleep_forever()
        assert outer.cancelled_caught
        assert session.statistics().live_tasks == 0


async def test_a_waiting_reader_gets_every_stored_update_of_a_burst_while_the_task_still_runs(
    store: DurableStore,
) -> None:
    # The writer wakes subscribers every few appends through a backlog and once it is
    # written: a burst whose size is no multiple of that still reaches a waiting reader whole.
    release = anyio.Event()

    async def burst(runtime: TaskRuntime) -> None:
        for i in range(21):
            runtime.emit_update(UpdateType.PROGRESS, {"i": i})
        await release.wait()

    got: list[StateUpdate] = []
    with anyio.fail_after(10):
        async with StreamingSession(SID, store=store) as session:
            async with session.subscribe() as sub:

                async def read() -> None:
                    async for update in sub:
                        got.append(update)
                        if update.content == {"i": 20}:
                            return

                async with anyio.create_task_group() as tg:
                    tg.start_soon(read)
                    await anyio.wait_all_tasks_blocked()  # the reader waits
                    await session.spawn_task(burst)
                # the task is still running: nothing after the burst has been published
                assert session.statistics().updates_published == 23  # PENDING, RUNNING, 21
                release.set()
    assert [u.seq for u in got] == list(range(1, 24))
    assert [u.content for u in got[2:]] == [{"i": i} for i in range(21)]


async def _bursts_through_a_store(bursts: list[int], filtered: bool) -> list[StateUpdate]:
    async with InMemoryDurableStore() as memory, StreamingSession(SID, store=memory) as session:
        types = ["PROGRESS"] if filtered else None
        async with session.subscribe(update_types=types) as sub:
            got: list[StateUpdate] = []
            total = sum(bursts)

            async def read() -> None:
                async for update in sub:
                    got.append(update)
                    if update.update_type is UpdateType.PROGRESS and update.content == total - 1:
                        return

            async def emit(runtime: TaskRuntime) -> None:
                i = 0
                for size in bursts:
                    for _ in range(size):
                        runtime.emit_update(UpdateType.PROGRESS, i)
                        i += 1
                    await anyio.lowlevel.checkpoint()  # the writer may start on a backlog
                await anyio.sleep_forever()

            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(read)
                    await session.spawn_task(emit)
            return got


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bursts=st.lists(st.integers(1, 40), min_size=1, max_size=6), filtered=st.booleans())
def test_a_reader_of_a_stored_session_gets_every_burst_whole_and_in_order(
    bursts: list[int], filtered: bool
) -> None:
    got = anyio.run(_bursts_through_a_store, bursts, filtered)
    progress = [u.content for u in got if u.update_type is UpdateType.PROGRESS]
    assert progress == list(range(sum(bursts)))  # nothing missing, duplicated or reordered
    seqs = [u.seq for u in got]
    assert seqs == sorted(set(seqs))
    if not filtered:
        assert seqs == list(range(1, len(seqs) + 1))
