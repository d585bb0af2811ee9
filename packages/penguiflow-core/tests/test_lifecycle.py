"""Starting and stopping a flow, fetching results, and releasing per-trace bookkeeping."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from penguiflow.core import (
    Context,
    FlowStopped,
    Headers,
    Message,
    Node,
    PenguiFlow,
    StreamChunk,
    create,
    join_k,
)


def _msg(payload: Any, trace_id: str | None = None) -> Message:
    if trace_id is None:
        return Message(payload=payload, headers=Headers(tenant="t"))
    return Message(payload=payload, headers=Headers(tenant="t"), trace_id=trace_id)


def _live_tasks() -> set[asyncio.Task[Any]]:
    return {task for task in asyncio.all_tasks() if not task.done()}


async def _echo(msg: Message, ctx: Context) -> Any:
    return msg.payload


def _echo_flow(**kwargs: Any) -> PenguiFlow:
    return create(Node(_echo, name="echo").to(), **kwargs)


async def test_running_block_starts_and_stops_the_flow() -> None:
    flow = _echo_flow()
    assert not flow.statistics().running
    with anyio.fail_after(5):
        async with flow.running():
            assert flow.statistics().running
            assert flow.statistics().workers >= 1
            await flow.emit(_msg("hi"))
            assert await flow.fetch() == "hi"
    stats = flow.statistics()
    assert not stats.running
    assert stats.workers == 0
    with pytest.raises(RuntimeError, match="stopped"):
        await flow.emit(_msg("late"))


async def test_run_and_stop_start_and_stop_the_flow() -> None:
    flow = _echo_flow()
    with anyio.fail_after(5):
        flow.run()
        try:
            assert flow.statistics().running
            await flow.emit(_msg(1))
            assert await flow.fetch() == 1
        finally:
            await flow.stop()
    assert not flow.statistics().running
    assert flow.statistics().workers == 0


async def test_stop_is_idempotent() -> None:
    flow = _echo_flow()
    with anyio.fail_after(5):
        flow.run()
        await flow.stop()
        await flow.stop()
        async with anyio.create_task_group() as tg:
            tg.start_soon(flow.stop)
            tg.start_soon(flow.stop)
    assert not flow.statistics().running


async def test_stop_before_run_is_harmless_and_the_flow_cannot_start_afterwards() -> None:
    flow = _echo_flow()
    await flow.stop()
    with pytest.raises(RuntimeError):
        flow.run()


async def test_a_flow_runs_once() -> None:
    flow = _echo_flow()
    with anyio.fail_after(5):
        flow.run()
        try:
            with pytest.raises(RuntimeError, match="already started"):
                flow.run()
        finally:
            await flow.stop()
        with pytest.raises(RuntimeError, match="already started"):
            async with flow.running():
                pass


async def test_emit_before_run_says_to_start_the_flow() -> None:
    flow = _echo_flow()
    with pytest.raises(RuntimeError, match="not running yet"):
        await flow.emit(_msg(1))
    with pytest.raises(RuntimeError, match="not running yet"):
        flow.emit_nowait(_msg(1))


async def test_no_task_outlives_stop() -> None:
    blocked = anyio.Event()

    async def hang(msg: Message, ctx: Context) -> None:
        blocked.set()
        await anyio.sleep_forever()

    before = _live_tasks()
    flow = create(Node(hang).to())
    with anyio.fail_after(5):
        flow.run()
        for i in range(10):
            await flow.emit(_msg(i))
        await blocked.wait()
        assert len(_live_tasks()) > len(before)
        await flow.stop()
    assert _live_tasks() == before
    stats = flow.statistics()
    assert (stats.workers, stats.lanes, stats.live_traces) == (0, 0, 0)


async def test_no_task_outlives_the_running_block() -> None:
    before = _live_tasks()
    flow = _echo_flow()
    with anyio.fail_after(5):
        async with flow.running():
            for i in range(40):
                await flow.emit(_msg(i))
            for _ in range(40):
                await flow.fetch()
    assert _live_tasks() == before


@pytest.mark.parametrize("scoped", [False, True])
async def test_waiting_fetch_is_answered_with_flow_stopped(scoped: bool) -> None:
    flow = _echo_flow()
    outcome: list[BaseException] = []

    async def wait_for_result() -> None:
        try:
            await flow.fetch(trace_id="never-emitted" if scoped else None)
        except FlowStopped as exc:
            outcome.append(exc)

    with anyio.fail_after(5):
        flow.run()
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_for_result)
            await anyio.wait_all_tasks_blocked()
            await flow.stop()
    assert len(outcome) == 1
    with pytest.raises(FlowStopped):
        await flow.fetch()


async def test_statistics_return_to_zero_after_many_traces() -> None:
    async def split(msg: Message, ctx: Context) -> Message:
        # Opens a stream that is never marked done: its counter must go when the trace ends.
        await ctx.emit_chunk(parent=msg, text="thinking", to="left")
        return msg

    async def left(msg: Message, ctx: Context) -> Message | None:
        if isinstance(msg.payload, StreamChunk):
            return None
        return msg.with_meta(left=True)

    async def right(msg: Message, ctx: Context) -> Message:
        return msg.with_meta(right=True)

    async def collect(msg: Message, ctx: Context) -> Message:
        return msg

    a, b, c = Node(split), Node(left), Node(right)
    join = join_k("join", 2)
    sink = Node(collect)
    flow = create(a.to(b, c), b.to(join), c.to(join), join.to(sink), sink.to(), queue_maxsize=4)
    results: list[Message] = []
    with anyio.fail_after(10):
        async with flow.running():
            async with anyio.create_task_group() as tg:

                async def produce() -> None:
                    for i in range(200):
                        await flow.emit(_msg(i))

                tg.start_soon(produce)
                for _ in range(200):
                    results.append(await flow.fetch())
            await anyio.wait_all_tasks_blocked()
            stats = flow.statistics()
            assert stats.live_traces == 0
            assert stats.lanes == 0
            assert stats.queued == 0
            assert stats.rookery_buffered == 0
            assert stats.rookery_keys == 0
            assert stats.streams == 0
            assert stats.workers > 0
    assert sorted(m.payload[0] for m in results) == list(range(200))
    assert all(m.meta == {"left": True, "right": True} for m in results)
    stats = flow.statistics()
    assert (stats.live_traces, stats.lanes, stats.queued, stats.workers) == (0, 0, 0, 0)
    assert (stats.rookery_keys, stats.streams) == (0, 0)
    assert join.func.buckets == {}  # type: ignore[attr-defined]


async def test_trace_scoped_fetch_returns_only_that_traces_items() -> None:
    async def three_parts(msg: Message, ctx: Context) -> None:
        for part in range(3):
            for _ in range(hash((msg.trace_id, part)) % 3):
                await anyio.lowlevel.checkpoint()
            await ctx.emit(msg.with_payload((msg.trace_id, part)))

    flow = create(Node(three_parts).to())
    traces = [f"trace-{i}" for i in range(20)]
    got: dict[str, list[Any]] = {}

    async def consume(tid: str) -> None:
        got[tid] = [await flow.fetch(trace_id=tid) for _ in range(3)]

    with anyio.fail_after(5):
        async with flow.running(), anyio.create_task_group() as tg:
            for tid in traces:
                tg.start_soon(consume, tid)
            for tid in traces:
                await flow.emit(_msg(None, tid))
    for tid in traces:
        assert [m.trace_id for m in got[tid]] == [tid] * 3
        assert [m.payload for m in got[tid]] == [(tid, 0), (tid, 1), (tid, 2)]


async def test_fetch_from_filters_by_egress_node() -> None:
    async def route(msg: Message, ctx: Context) -> Message:
        return msg

    async def to_b(msg: Message, ctx: Context) -> str:
        return f"b{msg.payload}"

    async def to_c(msg: Message, ctx: Context) -> str:
        return f"c{msg.payload}"

    a, b, c = Node(route), Node(to_b, name="b"), Node(to_c, name="c")
    flow = create(a.to(b, c), b.to(), c.to())
    with anyio.fail_after(5):
        async with flow.running():
            for i in range(3):
                await flow.emit(_msg(i))
            from_c = [await flow.fetch(from_="c") for _ in range(3)]
            from_b = [await flow.fetch(from_=b) for _ in range(3)]
            with pytest.raises(KeyError, match="egress"):
                await flow.fetch(from_="route")
    assert sorted(from_c) == ["c0", "c1", "c2"]
    assert sorted(from_b) == ["b0", "b1", "b2"]


async def test_emit_to_unknown_node_lists_ingress_nodes() -> None:
    async def second(msg: Message, ctx: Context) -> Message:
        return msg

    a, b = Node(_echo, name="first"), Node(second)
    flow = create(a.to(b), b.to())
    with anyio.fail_after(5):
        async with flow.running():
            with pytest.raises(KeyError, match=r"'nope'.*\['first'\]"):
                await flow.emit(_msg(1), to="nope")
            with pytest.raises(KeyError, match="first"):
                await flow.emit(_msg(1), to="second")  # exists, but is not an ingress node
            with pytest.raises(KeyError, match="first"):
                flow.emit_nowait(_msg(1), to="nope")


async def test_emit_without_target_broadcasts_to_every_ingress_node() -> None:
    async def tag_a(msg: Message, ctx: Context) -> Message:
        msg.meta["seen_by"] = "a"
        return msg

    async def tag_b(msg: Message, ctx: Context) -> Message:
        msg.meta["seen_by"] = "b"
        return msg

    a, b = Node(tag_a, name="a"), Node(tag_b, name="b")
    flow = create(a.to(), b.to())
    original = _msg("x")
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(original)
            results = [await flow.fetch(trace_id=original.trace_id) for _ in range(2)]
            await flow.emit(_msg("only-b"), to="b")
            only_b = await flow.fetch()
    assert sorted(m.meta["seen_by"] for m in results) == ["a", "b"]
    assert {m.payload for m in results} == {"x"}
    assert only_b.meta["seen_by"] == "b"


async def test_emit_with_explicit_trace_id_tracks_a_bare_payload() -> None:
    async def upper(text: str, ctx: Context) -> str:
        return text.upper()

    flow = create(Node(upper).to())
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit("bare", trace_id="tracked")
            assert await flow.fetch(trace_id="tracked") == "BARE"


async def test_emit_with_explicit_trace_id_restamps_a_copy_of_a_message() -> None:
    async def keep(msg: Message, ctx: Context) -> Message:
        return msg

    flow = create(Node(keep).to())
    original = _msg(1, "one")
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(original, trace_id="other")
            result = await flow.fetch(trace_id="other")
            flow.emit_nowait(original, trace_id="again")
            again = await flow.fetch(trace_id="again")
    assert isinstance(result, Message)
    assert (result.trace_id, result.payload) == ("other", 1)
    assert isinstance(again, Message)
    assert (again.trace_id, again.payload) == ("again", 1)
    assert original.trace_id == "one"  # the caller's message is not changed
