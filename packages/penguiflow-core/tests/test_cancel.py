"""Per-trace cancellation: one trace stops and its bookkeeping goes; every other trace runs on."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from penguiflow.core import (
    Context,
    FlowError,
    FlowEvent,
    FlowEventType,
    Headers,
    Message,
    Node,
    NodePolicy,
    PenguiFlow,
    StreamChunk,
    TraceCancelled,
    create,
    join_k,
)


def _msg(payload: Any, trace_id: str) -> Message:
    return Message(payload=payload, headers=Headers(tenant="t"), trace_id=trace_id)


def _live_tasks() -> set[asyncio.Task[Any]]:
    return {task for task in asyncio.all_tasks() if not task.done()}


def _assert_no_trace_records(flow: PenguiFlow) -> None:
    stats = flow.statistics()
    assert stats.live_traces == 0
    assert stats.lanes == 0
    assert stats.queued == 0
    assert stats.rookery_buffered == 0
    assert stats.rookery_keys == 0
    assert stats.streams == 0


async def test_running_trace_is_cancelled_mid_stream_and_others_complete() -> None:
    stopped_streams: list[str] = []
    chunks_sent: dict[str, int] = {}

    async def streamer(msg: Message, ctx: Context) -> None:
        total: int | None = msg.payload
        index = 0
        try:
            while total is None or index < total:
                done = total is not None and index == total - 1
                await ctx.emit_chunk(parent=msg, text=f"tok{index}", done=done)
                chunks_sent[msg.trace_id] = index + 1
                index += 1
                await anyio.lowlevel.checkpoint()
        except anyio.get_cancelled_exc_class():
            stopped_streams.append(msg.trace_id)
            raise

    events: list[FlowEvent] = []
    before = _live_tasks()
    flow = create(Node(streamer).to(), queue_maxsize=4, on_event=events.append)
    others = [f"other-{i}" for i in range(5)]
    received: dict[str, list[StreamChunk]] = {}

    async def read_stream(tid: str) -> None:
        chunks: list[StreamChunk] = []
        while not chunks or not chunks[-1].done:
            chunks.append((await flow.fetch(trace_id=tid)).payload)
        received[tid] = chunks

    with anyio.fail_after(5):
        flow.run()
        await flow.emit(_msg(None, "endless"))  # streams until cancelled
        first = [(await flow.fetch(trace_id="endless")).payload for _ in range(3)]
        assert [c.seq for c in first] == [0, 1, 2]
        async with anyio.create_task_group() as tg:
            for tid in others:
                tg.start_soon(read_stream, tid)
                await flow.emit(_msg(20, tid))
            assert await flow.cancel("endless")
        sent_at_cancel = chunks_sent["endless"]
        await anyio.wait_all_tasks_blocked()
        assert chunks_sent["endless"] == sent_at_cancel  # nothing more was produced
        _assert_no_trace_records(flow)
        await flow.stop()
    assert _live_tasks() == before
    assert stopped_streams == ["endless"]
    for tid in others:
        assert [c.seq for c in received[tid]] == list(range(20))
        assert {c.stream_id for c in received[tid]} == {tid}
    cancelled = [e for e in events if e.event_type is FlowEventType.NODE_TRACE_CANCELLED]
    assert [(e.node_name, e.trace_id) for e in cancelled] == [("streamer", "endless")]


async def test_cancel_returns_true_once_then_false() -> None:
    entered = anyio.Event()

    async def hang(msg: Message, ctx: Context) -> None:
        entered.set()
        await anyio.sleep_forever()

    flow = create(Node(hang).to())
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(_msg(1, "t1"))
            await entered.wait()
            assert await flow.cancel("t1") is True
            assert await flow.cancel("t1") is False
            assert await flow.cancel("never-seen") is False
            _assert_no_trace_records(flow)


async def test_cancel_of_a_finished_trace_returns_false() -> None:
    async def echo(msg: Message, ctx: Context) -> Message:
        return msg

    flow = create(Node(echo).to())
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(_msg(1, "done"))
            await flow.fetch(trace_id="done")
            await anyio.wait_all_tasks_blocked()
            assert await flow.cancel("done") is False


async def test_cancel_concurrent_calls_agree_on_one_true() -> None:
    entered = anyio.Event()

    async def hang(msg: Message, ctx: Context) -> None:
        entered.set()
        await anyio.sleep_forever()

    flow = create(Node(hang).to())
    answers: list[bool] = []

    async def cancel_it() -> None:
        answers.append(await flow.cancel("t"))

    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(_msg(1, "t"))
            await entered.wait()
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(cancel_it)
    assert sorted(answers) == [False, False, True]


async def test_waiting_trace_scoped_fetch_raises_trace_cancelled_promptly() -> None:
    # The reference left this fetch waiting forever.
    entered = anyio.Event()

    async def hang(msg: Message, ctx: Context) -> None:
        entered.set()
        await anyio.sleep_forever()

    flow = create(Node(hang).to())
    outcome: list[BaseException] = []
    answered = anyio.Event()

    async def wait_for_it() -> None:
        try:
            await flow.fetch(trace_id="t")
        except TraceCancelled as exc:
            outcome.append(exc)
        answered.set()

    with anyio.fail_after(5):
        async with flow.running(), anyio.create_task_group() as tg:
            tg.start_soon(wait_for_it)
            await flow.emit(_msg(1, "t"))
            await entered.wait()
            await anyio.wait_all_tasks_blocked()
            assert await flow.cancel("t")
            with anyio.fail_after(0.5):
                await answered.wait()
    assert len(outcome) == 1
    assert isinstance(outcome[0], TraceCancelled)
    assert outcome[0].trace_id == "t"


async def test_fetch_after_cancel_started_raises_trace_cancelled() -> None:
    release = anyio.Event()
    entered = anyio.Event()

    async def stubborn(msg: Message, ctx: Context) -> None:
        entered.set()
        with anyio.CancelScope(shield=True):  # keeps the trace alive while cancel() waits
            await release.wait()

    flow = create(Node(stubborn).to())
    with anyio.fail_after(5):
        async with flow.running(), anyio.create_task_group() as tg:
            await flow.emit(_msg(1, "t"))
            await entered.wait()
            tg.start_soon(flow.cancel, "t")
            await anyio.wait_all_tasks_blocked()
            with pytest.raises(TraceCancelled):
                await flow.fetch(trace_id="t")
            with pytest.raises(TraceCancelled):
                await flow.emit(_msg(2, "t"))
            release.set()


async def test_trace_cancellation_respects_a_shielded_cleanup_in_the_node() -> None:
    # Nodes clean up under CancelScope(shield=True); cancelling their trace must not cut that short.
    release = anyio.Event()
    entered = anyio.Event()
    cleanup_finished: list[bool] = []

    async def careful(msg: Message, ctx: Context) -> None:
        try:
            entered.set()
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await release.wait()
                cleanup_finished.append(True)

    flow = create(Node(careful).to())
    with anyio.fail_after(5):
        async with flow.running(), anyio.create_task_group() as tg:
            await flow.emit(_msg(1, "t"))
            await entered.wait()
            tg.start_soon(flow.cancel, "t")
            await anyio.wait_all_tasks_blocked()
            assert cleanup_finished == []
            assert flow.statistics().live_traces == 1  # cancel() waits for the cleanup
            release.set()
    assert cleanup_finished == [True]


async def test_trace_cancellation_does_not_pierce_a_shielded_section() -> None:
    # A node inside CancelScope(shield=True) when its trace is cancelled finishes that section;
    # the cancellation lands at its next unshielded checkpoint.
    release = anyio.Event()
    entered = anyio.Event()
    progress: list[str] = []

    async def committing(msg: Message, ctx: Context) -> None:
        with anyio.CancelScope(shield=True):
            entered.set()
            await release.wait()
            progress.append("committed")
        await anyio.sleep_forever()

    flow = create(Node(committing).to())
    with anyio.fail_after(5):
        async with flow.running(), anyio.create_task_group() as tg:
            await flow.emit(_msg(1, "t"))
            await entered.wait()
            tg.start_soon(flow.cancel, "t")
            await anyio.wait_all_tasks_blocked()
            assert flow.statistics().live_traces == 1  # cancel() waits for the section
            release.set()
    assert progress == ["committed"]


async def test_cancel_drops_queued_messages_of_the_trace_only() -> None:
    release = anyio.Event()
    entered = anyio.Event()
    processed: list[str] = []

    async def gated(msg: Message, ctx: Context) -> Message:
        entered.set()
        await release.wait()
        processed.append(msg.trace_id)
        return msg

    events: list[FlowEvent] = []
    flow = create(Node(gated, policy=NodePolicy(max_concurrency=1)).to(), on_event=events.append)
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(_msg(0, "blocker"))
            await entered.wait()
            for i in range(3):
                await flow.emit(_msg(i, "victim"))
            await flow.emit(_msg(0, "bystander"))
            assert flow.statistics().queued == 4
            assert await flow.cancel("victim")
            assert flow.statistics().queued == 1
            release.set()
            results = [await flow.fetch() for _ in range(2)]
            await anyio.wait_all_tasks_blocked()
            _assert_no_trace_records(flow)
    assert sorted(m.trace_id for m in results) == ["blocker", "bystander"]
    assert "victim" not in processed
    kinds = [e.event_type.value for e in events if e.trace_id == "victim"]
    assert kinds[-3:] == ["trace_cancel_start", "trace_cancel_drop", "trace_cancel_finish"]
    drop = next(e for e in events if e.event_type is FlowEventType.TRACE_CANCEL_DROP)
    assert drop.extra["dropped"] == 3


async def test_cancel_releases_messages_parked_behind_the_running_one() -> None:
    entered = anyio.Event()
    calls: list[int] = []

    async def hang(msg: Message, ctx: Context) -> None:
        calls.append(msg.payload)
        entered.set()
        await anyio.sleep_forever()

    flow = create(Node(hang).to())
    with anyio.fail_after(5):
        async with flow.running():
            for i in range(4):  # same trace: one runs, the others park behind it in order
                await flow.emit(_msg(i, "t"))
            await entered.wait()
            await anyio.wait_all_tasks_blocked()
            assert await flow.cancel("t")
            await anyio.wait_all_tasks_blocked()
            _assert_no_trace_records(flow)
    assert calls == [0]


async def test_cancel_of_a_running_trace_emits_start_node_trace_cancelled_and_finish() -> None:
    entered = anyio.Event()

    async def hang(msg: Message, ctx: Context) -> None:
        entered.set()
        await anyio.sleep_forever()

    events: list[FlowEvent] = []
    flow = create(Node(hang).to(), on_event=events.append)
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(_msg(1, "t"))
            await entered.wait()
            assert await flow.cancel("t")
    kinds = [e.event_type.value for e in events if e.trace_id == "t" and e.event_type != "emit"]
    # nothing was queued behind the running message, so there is no drop event
    assert kinds == [
        "node_start",
        "trace_cancel_start",
        "node_trace_cancelled",
        "trace_cancel_finish",
    ]
    start = next(e for e in events if e.event_type is FlowEventType.TRACE_CANCEL_START)
    assert start.trace_cancelled
    assert start.node_name == "OpenSea"
    finish = next(e for e in events if e.event_type is FlowEventType.TRACE_CANCEL_FINISH)
    assert finish.node_name == "Rookery"
    assert finish.trace_pending == 0


async def test_cancelled_trace_frees_join_bucket() -> None:
    # The reference kept every unfinished join_k bucket forever.
    release_slow = anyio.Event()
    fast_arrived = anyio.Event()

    async def split(msg: Message, ctx: Context) -> Message:
        return msg

    async def fast(msg: Message, ctx: Context) -> Message:
        return msg

    async def slow(msg: Message, ctx: Context) -> Message:
        await release_slow.wait()
        return msg

    async def after_join(msg: Message, ctx: Context) -> Message:
        return msg

    def watch(event: FlowEvent) -> None:
        if event.event_type is FlowEventType.NODE_SUCCESS and event.node_name == "join":
            fast_arrived.set()

    a, b, c = Node(split), Node(fast), Node(slow)
    join = join_k("join", 2)
    sink = Node(after_join)
    flow = create(a.to(b, c), b.to(join), c.to(join), join.to(sink), sink.to(), on_event=watch)
    buckets: dict[Any, Any] = join.func.buckets  # type: ignore[attr-defined]
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(_msg("x", "t"))
            await fast_arrived.wait()
            assert list(buckets) == ["t"]
            assert await flow.cancel("t")
            assert buckets == {}
            release_slow.set()
            await anyio.wait_all_tasks_blocked()
            _assert_no_trace_records(flow)


async def test_failed_trace_frees_join_bucket() -> None:
    async def split(msg: Message, ctx: Context) -> Message:
        return msg

    async def ok(msg: Message, ctx: Context) -> Message:
        return msg

    async def broken(msg: Message, ctx: Context) -> Message:
        raise RuntimeError("branch failed")

    a, b, c = Node(split), Node(ok), Node(broken)
    join = join_k("join", 2)
    flow = create(a.to(b, c), b.to(join), c.to(join), join.to(), emit_errors_to_rookery=True)
    buckets: dict[Any, Any] = join.func.buckets  # type: ignore[attr-defined]
    with anyio.fail_after(5):
        async with flow.running():
            for i in range(5):
                await flow.emit(_msg(i, f"t{i}"))
            errors = [await flow.fetch() for _ in range(5)]
            await anyio.wait_all_tasks_blocked()
            _assert_no_trace_records(flow)
    assert all(isinstance(e, FlowError) and e.node_name == "broken" for e in errors)
    assert buckets == {}


async def test_cancel_interrupts_an_emit_blocked_on_backpressure() -> None:
    release = anyio.Event()
    entered = anyio.Event()

    async def gated(msg: Message, ctx: Context) -> Message:
        entered.set()
        await release.wait()
        return msg

    flow = create(Node(gated, policy=NodePolicy(max_concurrency=1)).to(), queue_maxsize=1)
    outcome: list[BaseException] = []

    async def blocked_emit() -> None:
        try:
            await flow.emit(_msg(2, "victim"))
        except TraceCancelled as exc:
            outcome.append(exc)

    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(_msg(0, "blocker"))
            await entered.wait()
            await flow.emit(_msg(1, "victim"))  # fills the floe
            async with anyio.create_task_group() as tg:
                tg.start_soon(blocked_emit)
                await anyio.wait_all_tasks_blocked()
                assert await flow.cancel("victim")
            assert len(outcome) == 1
            release.set()
            assert (await flow.fetch()).trace_id == "blocker"
            await anyio.wait_all_tasks_blocked()
            _assert_no_trace_records(flow)


async def test_cancel_stops_a_message_blocked_between_nodes() -> None:
    # victim#1 waits in the full floe a -> b while a is blocked sending victim#2 behind it.
    # Dropping victim#1 frees the floe; victim#2 must not slip through into b afterwards.
    release = anyio.Event()
    b_busy = anyio.Event()
    seen_by_b: list[tuple[str, int]] = []

    async def forward(msg: Message, ctx: Context) -> Message:
        return msg

    async def gated(msg: Message, ctx: Context) -> Message:
        seen_by_b.append((msg.trace_id, msg.payload))
        b_busy.set()
        await release.wait()
        return msg

    a = Node(forward)
    b = Node(gated, policy=NodePolicy(max_concurrency=1))
    flow = create(a.to(b), b.to(), queue_maxsize=1)
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(_msg(0, "blocker"))
            await b_busy.wait()
            await flow.emit(_msg(1, "victim"))
            await flow.emit(_msg(2, "victim"))
            await anyio.wait_all_tasks_blocked()
            assert flow.statistics().queued == 1  # victim#1 in a -> b; victim#2 held by a
            with anyio.fail_after(1):
                assert await flow.cancel("victim")
            release.set()
            assert (await flow.fetch()).trace_id == "blocker"
            await anyio.wait_all_tasks_blocked()
            _assert_no_trace_records(flow)
    assert seen_by_b == [("blocker", 0)]


async def test_cancel_discards_a_result_blocked_on_a_full_rookery() -> None:
    # The node is blocked delivering part 1 (the trace's Rookery buffer holds part 0). Taking
    # part 0 wakes it, and the cancel that follows at once must still keep part 1 out.
    async def parts(msg: Message, ctx: Context) -> None:
        for part in range(3):
            await ctx.emit(msg.with_payload(part))

    flow = create(Node(parts).to(), queue_maxsize=1)
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(_msg(None, "t"))
            await anyio.wait_all_tasks_blocked()
            assert flow.statistics().rookery_buffered == 1
            assert (await flow.fetch(trace_id="t")).payload == 0
            assert await flow.cancel("t")
            await anyio.wait_all_tasks_blocked()
            _assert_no_trace_records(flow)
            with pytest.raises(TraceCancelled):
                await flow.fetch(trace_id="t")


async def test_parent_cancellation_cancels_its_subflow() -> None:
    child_entered = anyio.Event()
    child_cancelled: list[bool] = []
    children: list[PenguiFlow] = []

    async def child_work(msg: Message, ctx: Context) -> None:
        child_entered.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            child_cancelled.append(True)
            raise

    def build_child() -> PenguiFlow:
        child = create(Node(child_work).to())
        children.append(child)
        return child

    parent_saw: list[BaseException] = []

    async def parent(msg: Message, ctx: Context) -> Any:
        try:
            return await ctx.call_playbook(build_child, msg)
        except BaseException as exc:
            parent_saw.append(exc)
            raise

    before = _live_tasks()
    flow = create(Node(parent).to())
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(_msg("q", "t"))
            await child_entered.wait()
            assert children[0].statistics().running
            assert await flow.cancel("t")
            _assert_no_trace_records(flow)
    assert child_cancelled == [True]
    assert not children[0].statistics().running
    assert children[0].statistics().workers == 0
    assert len(parent_saw) == 1
    assert isinstance(parent_saw[0], anyio.get_cancelled_exc_class())
    assert _live_tasks() == before


async def test_outer_cancellation_of_fetch_is_not_trace_cancelled() -> None:
    entered = anyio.Event()
    release = anyio.Event()

    async def gated(msg: Message, ctx: Context) -> Message:
        entered.set()
        await release.wait()
        return msg

    flow = create(Node(gated).to())
    seen: list[BaseException] = []

    async def fetch_then_get_cancelled() -> None:
        try:
            await flow.fetch(trace_id="t")
        except BaseException as exc:
            seen.append(exc)
            raise

    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(_msg(1, "t"))
            await entered.wait()
            async with anyio.create_task_group() as tg:
                tg.start_soon(fetch_then_get_cancelled)
                await anyio.wait_all_tasks_blocked()
                tg.cancel_scope.cancel()
            assert len(seen) == 1
            assert isinstance(seen[0], anyio.get_cancelled_exc_class())
            assert not isinstance(seen[0], TraceCancelled)
            # The trace itself is untouched: it still completes and can be fetched.
            release.set()
            assert (await flow.fetch(trace_id="t")).payload == 1
            await anyio.wait_all_tasks_blocked()
            _assert_no_trace_records(flow)


async def test_cancel_scope_around_fetch_leaves_the_trace_cancellable() -> None:
    entered = anyio.Event()

    async def hang(msg: Message, ctx: Context) -> None:
        entered.set()
        await anyio.sleep_forever()

    flow = create(Node(hang).to())
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(_msg(1, "t"))
            await entered.wait()
            with anyio.move_on_after(0.01) as scope:
                await flow.fetch(trace_id="t")
            assert scope.cancelled_caught
            assert flow.statistics().rookery_keys == 0  # the abandoned waiter is forgotten
            assert await flow.cancel("t")
            _assert_no_trace_records(flow)
