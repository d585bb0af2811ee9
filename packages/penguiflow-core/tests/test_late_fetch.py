"""A trace-scoped fetch that arrives after its trace ended badly is answered, not left waiting."""

from __future__ import annotations

import anyio
import pytest

from penguiflow.core import (
    Context,
    FlowError,
    Headers,
    Message,
    Node,
    TraceCancelled,
    TraceEnded,
    create,
    predicate_router,
)
from penguiflow.core._flow import runtime_of


def msg(trace_id: str, payload: object = "x") -> Message:
    return Message(payload=payload, headers=Headers(tenant="t"), trace_id=trace_id)


async def test_fetch_after_cancel_finished_raises_trace_cancelled() -> None:
    entered = anyio.Event()

    async def forever(message: Message, ctx: Context) -> None:
        entered.set()
        await anyio.sleep_forever()

    flow = create(Node(forever).to())
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(msg("gone"))
            await entered.wait()
            assert await flow.cancel("gone")
            assert flow.statistics().live_traces == 0
            with pytest.raises(TraceCancelled):
                await flow.fetch(trace_id="gone")


async def test_fetch_after_failure_raises_the_flow_error() -> None:
    async def boom(message: Message, ctx: Context) -> None:
        raise ValueError("bad input")

    flow = create(Node(boom).to())
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(msg("failed"))
            await anyio.wait_all_tasks_blocked()
            assert flow.statistics().live_traces == 0
            with pytest.raises(FlowError) as caught:
                await flow.fetch(trace_id="failed")
    assert caught.value.node_name == "boom"
    # Remembered endings are detached: the cause's type and text, not the exception and its frames.
    assert caught.value.unwrap() is None
    assert caught.value.metadata["exception_type"] == "ValueError"
    assert "bad input" in caught.value.metadata["exception_repr"]


async def test_a_reused_trace_id_forgets_its_old_ending() -> None:
    calls: list[object] = []

    async def flaky(message: Message, ctx: Context) -> object:
        calls.append(message.payload)
        if message.payload == "fail":
            raise ValueError("first run fails")
        return message.payload

    flow = create(Node(flaky).to())
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(msg("again", "fail"))
            with pytest.raises(FlowError):
                await flow.fetch(trace_id="again")
            await flow.emit(msg("again", "ok"))
            result = await flow.fetch(trace_id="again")
    assert result == "ok"
    assert calls == ["fail", "ok"]


async def test_remembered_endings_are_bounded() -> None:
    async def boom(message: Message, ctx: Context) -> None:
        raise ValueError("no")

    flow = create(Node(boom).to())
    runtime_of(flow).traces.keep_endings = 10
    with anyio.fail_after(5):
        async with flow.running():
            for i in range(50):
                await flow.emit(msg(f"t{i}"))
            await anyio.wait_all_tasks_blocked()
            assert flow.statistics().live_traces == 0
    assert len(runtime_of(flow).traces.endings) == 10
    assert list(runtime_of(flow).traces.endings) == [f"t{i}" for i in range(40, 50)]


async def test_a_waiting_fetch_is_answered_when_its_trace_ends_without_a_result() -> None:
    async def swallow(message: Message, ctx: Context) -> None:
        return None  # drops the message: the trace ends with nothing in Rookery

    flow = create(Node(swallow).to())
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(msg("dropped"))
            with pytest.raises(TraceEnded) as caught:
                await flow.fetch(trace_id="dropped")
    assert caught.value.trace_id == "dropped"


async def test_a_router_that_drops_answers_the_waiting_fetch_after_earlier_results() -> None:
    second_half = anyio.Event()

    async def split(message: Message, ctx: Context) -> None:
        await ctx.emit(message.with_payload("kept"))
        await second_half.wait()  # the test is waiting on the trace again by then
        await ctx.emit(message.with_payload("dropped"))

    keep_some = predicate_router("keep", lambda m: "out" if m.payload == "kept" else None)

    async def out(message: Message, ctx: Context) -> Message:
        return message

    split_node, out_node = Node(split), Node(out)
    flow = create(split_node.to(keep_some), keep_some.to(out_node), out_node.to())
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(msg("mixed"))
            assert (await flow.fetch(trace_id="mixed")).payload == "kept"
            second_half.set()
            with pytest.raises(TraceEnded):
                await flow.fetch(trace_id="mixed")


async def test_fetch_after_every_result_was_taken_raises_trace_ended() -> None:
    async def echo(message: Message, ctx: Context) -> object:
        return message.payload

    flow = create(Node(echo).to())
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(msg("done", "answer"))
            assert await flow.fetch(trace_id="done") == "answer"
            await anyio.wait_all_tasks_blocked()
            assert flow.statistics().live_traces == 0
            # The trace delivered its result and ended: asking again is answered, not left waiting.
            with pytest.raises(TraceEnded):
                await flow.fetch(trace_id="done")


async def test_results_buffered_before_a_late_fetch_come_before_trace_ended() -> None:
    async def echo(message: Message, ctx: Context) -> object:
        return message.payload

    flow = create(Node(echo).to())
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(msg("buffered", "kept"))
            await anyio.wait_all_tasks_blocked()
            assert flow.statistics().live_traces == 0
            assert await flow.fetch(trace_id="buffered") == "kept"
            with pytest.raises(TraceEnded):
                await flow.fetch(trace_id="buffered")


async def test_many_completed_traces_never_evict_a_failures_answer() -> None:
    async def work(message: Message, ctx: Context) -> object:
        if message.payload == "fail":
            raise ValueError("remember me")
        return message.payload

    flow = create(Node(work).to())
    keep = runtime_of(flow).traces.keep_endings
    with anyio.fail_after(20):
        async with flow.running():
            await flow.emit(msg("failed", "fail"))
            await anyio.wait_all_tasks_blocked()
            for index in range(keep + 10):  # more completions than the table keeps
                await flow.emit(msg(f"ok-{index}", index))
                assert await flow.fetch(trace_id=f"ok-{index}") == index
            with pytest.raises(FlowError):
                await flow.fetch(trace_id="failed")
            with pytest.raises(TraceEnded):  # the newest completions are still answered
                await flow.fetch(trace_id=f"ok-{keep + 9}")
