"""Property tests: cursors replay then go live with no gap or duplicate; the task state machine."""

from dataclasses import dataclass, field
from typing import Any, Literal, cast

import anyio
import anyio.lowlevel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from penguiflow.sessions import (
    CRITICAL_UPDATE_TYPES,
    NotificationPayload,
    SessionLimits,
    StateUpdate,
    StreamingSession,
    Subscription,
    TaskRuntime,
    TaskStatus,
    TaskType,
    UpdateType,
)

SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
EMITTABLE = [
    UpdateType.PROGRESS,
    UpdateType.STREAM,
    UpdateType.THINKING,
    UpdateType.ERROR,
    UpdateType.NOTIFICATION,
]


class Holder:
    def __init__(self) -> None:
        self.runtime: TaskRuntime | None = None
        self.ready = anyio.Event()
        self.finish = anyio.Event()

    async def __call__(self, runtime: TaskRuntime) -> None:
        self.runtime = runtime
        self.ready.set()
        await self.finish.wait()


Op = (
    tuple[Literal["emit"], UpdateType]
    | tuple[Literal["subscribe"], int, int]
    | tuple[Literal["read"], int, int]
)

ops_strategy = st.lists(
    st.one_of(
        st.tuples(st.just("emit"), st.sampled_from(EMITTABLE)),
        st.tuples(st.just("subscribe"), st.integers(-1, 30), st.integers(1, 6)),
        st.tuples(st.just("read"), st.integers(0, 10), st.integers(1, 5)),
    ),
    max_size=60,
)


@dataclass
class Reader:
    sub: Subscription
    start: int  # seqs after this one are owed
    queue_size: int
    got: list[StateUpdate] = field(default_factory=list[StateUpdate])


async def read_what_is_there(reader: Reader, n: int) -> None:
    """Read up to ``n`` updates, stopping once the reader would wait (all tasks blocked)."""

    async def read(scope: anyio.CancelScope) -> None:
        for _ in range(n):
            reader.got.append(await anext(reader.sub))
        scope.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(read, tg.cancel_scope)
        await anyio.wait_all_tasks_blocked()
        tg.cancel_scope.cancel()


async def run_cursor_script(ops: list[Any]) -> tuple[list[StateUpdate], list[Reader]]:
    holder = Holder()
    readers: list[Reader] = []
    limits = SessionLimits(
        replay_buffer_size=None, max_tasks_per_session=None, max_background_tasks=None
    )
    async with StreamingSession("s", limits=limits) as session:
        with anyio.fail_after(3):
            await session.spawn_task(holder)
            await holder.ready.wait()
            runtime = holder.runtime
            assert runtime is not None
            for op in ops:
                if op[0] == "emit":
                    if op[1] is UpdateType.NOTIFICATION:
                        runtime.notify(NotificationPayload(title="n"))
                    else:
                        runtime.emit_update(op[1], {"k": op[1].value})
                elif op[0] == "subscribe":
                    head = len(await session.list_updates(limit=10_000))
                    cursor = None if op[1] < 0 else min(op[1], head)
                    sub = session.subscribe(
                        since_id=None if cursor is None else str(cursor), queue_size=op[2]
                    )
                    await sub.__aenter__()
                    readers.append(
                        Reader(sub, head if cursor is None else cursor, queue_size=op[2])
                    )
                elif readers:
                    index: int = op[1]
                    await read_what_is_there(readers[index % len(readers)], op[2])
            holder.finish.set()
            await session.aclose()
            for reader in readers:
                reader.got.extend([u async for u in reader.sub])
                await reader.sub.__aexit__(None, None, None)
            log = await session.list_updates(limit=10_000)
    return log, readers


@SETTINGS
@given(ops=ops_strategy)
def test_every_subscriber_gets_an_ordered_duplicate_free_stream_with_every_critical_update(
    ops: list[Any],
) -> None:
    log, readers = anyio.run(run_cursor_script, ops)
    assert [u.seq for u in log] == list(range(1, len(log) + 1))
    for reader in readers:
        seqs = [u.seq for u in reader.got]
        assert seqs == sorted(set(seqs)), "out of order or duplicated"
        assert all(s > reader.start for s in seqs), "replayed an update before the cursor"
        owed = [u.seq for u in log if u.seq > reader.start]
        critical = [
            u.seq for u in log if u.seq > reader.start and u.update_type in CRITICAL_UPDATE_TYPES
        ]
        assert set(critical) <= set(seqs), "a critical update went missing"
        assert set(seqs) <= set(owed)
        assert reader.sub.dropped == len(owed) - len(seqs)
        # every update is the one in the log (same object content)
        by_seq = {u.seq: u for u in log}
        assert all(by_seq[u.seq] == u for u in reader.got)


@SETTINGS
@given(ops=ops_strategy.filter(lambda ops: all(op[0] != "read" for op in ops)))
def test_a_subscriber_with_room_gets_exactly_the_log_after_its_cursor(ops: list[Any]) -> None:
    big = [(op[0], op[1], 1000) if op[0] == "subscribe" else op for op in ops]
    log, readers = anyio.run(run_cursor_script, big)
    for reader in readers:
        assert [u.seq for u in reader.got] == [u.seq for u in log if u.seq > reader.start]
        assert reader.sub.dropped == 0


# ----------------------------------------------------------------------- state machine
Behaviour = Literal["complete", "fail", "invalid", "hang"]


class Controlled:
    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.release = anyio.Event()

    async def __call__(self, runtime: TaskRuntime) -> object:
        runtime.emit_update(UpdateType.PROGRESS, {"b": self.behaviour})
        if self.behaviour == "hang":
            await anyio.sleep_forever()
        await self.release.wait()
        if self.behaviour == "fail":
            raise RuntimeError("planned")
        if self.behaviour == "invalid":
            return object()
        return {"ok": True}


task_strategy = st.tuples(
    st.sampled_from([TaskType.FOREGROUND, TaskType.BACKGROUND]),
    st.sampled_from(["complete", "fail", "invalid", "hang"]),
    st.sampled_from(["queue", "interrupt"]),
    st.integers(-2, 2),
)
machine_strategy = st.tuples(
    st.lists(task_strategy, min_size=1, max_size=8),
    st.lists(st.tuples(st.sampled_from(["release", "cancel", "yield"]), st.integers(0, 7))),
    st.integers(1, 3),
)

ALLOWED = {
    None: {"PENDING"},
    "PENDING": {"RUNNING", "CANCELLED"},
    "RUNNING": {"PAUSED", "COMPLETE", "FAILED", "CANCELLED"},
    "PAUSED": {"RUNNING", "FAILED", "CANCELLED"},
}


async def run_machine(
    tasks: list[Any], ops: list[Any], slots: int
) -> tuple[list[StateUpdate], list[str]]:
    pipelines: list[Controlled] = []
    ids: list[str] = []
    async with StreamingSession(
        "s",
        limits=SessionLimits(
            max_concurrent_tasks=slots,
            replay_buffer_size=None,
            max_tasks_per_session=None,
            max_background_tasks=None,
        ),
    ) as session:
        with anyio.fail_after(3):
            for task_type, behaviour, if_busy, priority in tasks:
                pipeline = Controlled(behaviour)
                pipelines.append(pipeline)
                ids.append(
                    await session.spawn_task(
                        pipeline, task_type=task_type, if_busy=if_busy, priority=priority
                    )
                )
            for kind, raw_index in cast(list[tuple[str, int]], ops):
                index = raw_index % len(ids)
                if kind == "release":
                    pipelines[index].release.set()
                elif kind == "cancel":
                    await session.cancel_task(ids[index])
                else:
                    await anyio.lowlevel.checkpoint()
            await session.aclose()
            for tid in ids:
                assert session.get_task(tid).status in (  # type: ignore[union-attr]
                    TaskStatus.COMPLETE,
                    TaskStatus.FAILED,
                    TaskStatus.CANCELLED,
                )
            log = await session.list_updates(limit=100_000)
    return log, ids


@SETTINGS
@given(machine=machine_strategy)
def test_every_task_follows_the_state_machine(machine: tuple[list[Any], list[Any], int]) -> None:
    tasks, ops, slots = machine
    log, ids = anyio.run(run_machine, tasks, ops, slots)
    assert [u.seq for u in log] == list(range(1, len(log) + 1))
    running_fg: set[str] = set()
    running_bg: set[str] = set()
    for update in log:
        if update.update_type is not UpdateType.STATUS_CHANGE:
            continue
        content: Any = update.content
        tid = update.task_id
        assert tid is not None
        (running_fg if content["task_type"] == "FOREGROUND" else running_bg).discard(tid)
        if content["status"] == "RUNNING":
            (running_fg if content["task_type"] == "FOREGROUND" else running_bg).add(tid)
        assert len(running_fg) <= 1, "two foreground tasks running at once"
        assert len(running_bg) <= slots, "more background tasks running than slots"
    for tid in ids:
        mine = [u for u in log if u.task_id == tid]
        changes: list[Any] = [u.content for u in mine if u.update_type is UpdateType.STATUS_CHANGE]
        previous = None
        for change in changes:
            assert change["previous"] == previous
            assert change["status"] in ALLOWED[previous]
            previous = change["status"]
        final = changes[-1]["status"]
        assert final in ("COMPLETE", "FAILED", "CANCELLED")
        assert mine[-1].update_type is UpdateType.STATUS_CHANGE, "terminal update is not last"
        results = [i for i, u in enumerate(mine) if u.update_type is UpdateType.RESULT]
        if final == "COMPLETE":
            assert len(results) == 1 and results[0] < len(mine) - 1
        else:
            assert results == []
        if final == "FAILED":
            assert any(u.update_type is UpdateType.ERROR for u in mine)
        assert sum(1 for c in changes if c["status"] == "CANCELLED") <= 1
