"""flow.call(message) and flow.run_sync(message): one message in, its trace's result out."""

from __future__ import annotations

import anyio
import pytest

from penguiflow.core import (
    Context,
    FlowError,
    Headers,
    InMemoryDurableStore,
    Journal,
    Message,
    ModelRegistry,
    Node,
    PenguiFlow,
    TraceCancelled,
    TraceEnded,
    create,
)


def msg(payload: object, trace_id: str | None = None) -> Message:
    if trace_id is None:
        return Message(payload=payload, headers=Headers(tenant="t"))
    return Message(payload=payload, headers=Headers(tenant="t"), trace_id=trace_id)


async def shout(message: Message, ctx: Context) -> str:
    return str(message.payload).upper()


def shout_flow() -> PenguiFlow:
    return create(Node(shout).to())


async def test_call_starts_a_stopped_flow_returns_the_result_and_stops_it() -> None:
    flow = shout_flow()
    with anyio.fail_after(5):
        assert await flow.call(msg("hi")) == "HI"
    assert not flow.running_now
    assert flow.statistics().live_traces == 0


async def test_call_on_a_running_flow_uses_it_and_leaves_it_running() -> None:
    flow = shout_flow()
    with anyio.fail_after(5):
        async with flow.running():
            assert await flow.call(msg("a")) == "A"
            assert await flow.call(msg("b")) == "B"
            assert flow.running_now
            assert flow.statistics().live_traces == 0


async def test_call_with_a_bare_payload_traces_it_on_its_own() -> None:
    async def double(value: int, ctx: Context) -> int:
        return value * 2

    flow = create(Node(double).to())
    with anyio.fail_after(5):
        async with flow.running():
            results = [0, 0, 0]

            async def one(i: int) -> None:
                results[i] = await flow.call(i + 1)

            async with anyio.create_task_group() as tg:
                for i in range(3):
                    tg.start_soon(one, i)
    assert results == [2, 4, 6]


async def test_call_is_trace_scoped_among_concurrent_traces() -> None:
    release = anyio.Event()

    async def slow_for_a(message: Message, ctx: Context) -> str:
        if message.payload == "a":
            await release.wait()
        return f"done {message.payload}"

    flow = create(Node(slow_for_a).to())
    got: dict[str, object] = {}
    with anyio.fail_after(5):
        async with flow.running():
            async with anyio.create_task_group() as tg:

                async def run(name: str) -> None:
                    got[name] = await flow.call(msg(name, trace_id=f"trace-{name}"))

                tg.start_soon(run, "a")
                await flow.call(msg("b", trace_id="trace-b"))  # not blocked behind trace-a
                release.set()
            assert got == {"a": "done a"}


async def test_call_raises_the_trace_flow_error() -> None:
    async def boom(message: Message, ctx: Context) -> None:
        raise ValueError("bad input")

    flow = create(Node(boom).to())
    with anyio.fail_after(5), pytest.raises(FlowError) as caught:
        await flow.call(msg("x"))
    assert caught.value.node_name == "boom"
    assert caught.value.code == "NODE_EXCEPTION"


async def test_call_raises_the_flow_error_delivered_to_rookery() -> None:
    async def boom(message: Message, ctx: Context) -> None:
        raise ValueError("bad input")

    flow = create(Node(boom).to(), emit_errors_to_rookery=True)
    with anyio.fail_after(5), pytest.raises(FlowError) as caught:
        await flow.call(msg("x"))
    assert caught.value.node_name == "boom"


async def test_call_raises_trace_ended_when_nothing_is_delivered() -> None:
    async def drop(message: Message, ctx: Context) -> None:
        return None

    flow = create(Node(drop).to())
    with anyio.fail_after(5), pytest.raises(TraceEnded):
        await flow.call(msg("x", trace_id="dropped"))


async def test_call_raises_trace_cancelled_when_its_trace_is_cancelled() -> None:
    entered = anyio.Event()

    async def forever(message: Message, ctx: Context) -> None:
        entered.set()
        await anyio.sleep_forever()

    flow = create(Node(forever).to())
    with anyio.fail_after(5):
        async with flow.running():

            async def cancel_when_entered() -> None:
                await entered.wait()
                await flow.cancel("victim")

            async with anyio.create_task_group() as tg:
                tg.start_soon(cancel_when_entered)
                with pytest.raises(TraceCancelled):
                    await flow.call(msg("x", trace_id="victim"))


async def test_call_timeout_raises_timeout_error_and_cancels_the_trace() -> None:
    async def forever(message: Message, ctx: Context) -> None:
        await anyio.sleep_forever()

    flow = create(Node(forever).to())
    with anyio.fail_after(5):
        async with flow.running():
            with pytest.raises(TimeoutError, match="slow"):
                await flow.call(msg("x", trace_id="slow"), timeout_s=0.05)
            assert flow.statistics().live_traces == 0


async def test_a_cancelled_caller_cancels_its_trace() -> None:
    entered = anyio.Event()

    async def forever(message: Message, ctx: Context) -> None:
        entered.set()
        await anyio.sleep_forever()

    flow = create(Node(forever).to())
    with anyio.fail_after(5):
        async with flow.running():
            async with anyio.create_task_group() as tg:

                async def caller() -> None:
                    await flow.call(msg("x", trace_id="abandoned"))

                tg.start_soon(caller)
                await entered.wait()
                tg.cancel_scope.cancel()
            assert flow.statistics().live_traces == 0


@pytest.mark.parametrize("bad", [0, -1.0, float("inf"), float("nan")])
async def test_call_rejects_a_bad_timeout(bad: float) -> None:
    with pytest.raises(ValueError, match="timeout_s must be a positive number"):
        await shout_flow().call(msg("x"), timeout_s=bad)


async def test_call_rejects_a_registry_for_a_running_flow() -> None:
    flow = shout_flow()
    with anyio.fail_after(5):
        async with flow.running():
            with pytest.raises(ValueError, match="already running"):
                await flow.call(msg("x"), registry=ModelRegistry())


async def test_call_validates_with_the_registry_it_starts_the_flow_with() -> None:
    flow = shout_flow()
    registry = ModelRegistry.from_annotations(flow)
    with anyio.fail_after(5):
        assert await flow.call(msg("ok"), registry=registry) == "OK"


def test_run_sync_runs_one_message_from_sync_code() -> None:
    flow = shout_flow()
    assert flow.run_sync(msg("script"), timeout_s=5) == "SCRIPT"
    assert not flow.running_now


def test_run_sync_raises_the_trace_flow_error() -> None:
    async def boom(message: Message, ctx: Context) -> None:
        raise ValueError("bad input")

    with pytest.raises(FlowError):
        create(Node(boom).to(), log_failures=None).run_sync(msg("x"), timeout_s=5)


async def test_run_sync_inside_an_event_loop_says_to_await_call() -> None:
    with pytest.raises(RuntimeError, match=r"await flow\.call"):
        shout_flow().run_sync(msg("x"))


def test_run_sync_on_a_flow_that_ran_says_a_flow_runs_once() -> None:
    flow = shout_flow()
    flow.run_sync(msg("x"), timeout_s=5)
    with pytest.raises(RuntimeError, match="runs once"):
        flow.run_sync(msg("y"), timeout_s=5)


@pytest.mark.parametrize("durability", ["sync", "async"])
def test_run_sync_runs_a_journaled_flow_built_outside_an_event_loop(durability: str) -> None:
    """A script builds its flow before any loop runs (anyio 4.0 has no Event outside one)."""
    journal = Journal(InMemoryDurableStore(), durability=durability)  # pyright: ignore[reportArgumentType]
    flow = create(Node(shout).to(), journal=journal)
    assert flow.run_sync(msg("kept", trace_id="journaled"), timeout_s=5) == "KEPT"


async def test_call_rejects_a_timeout_that_is_not_a_number() -> None:
    with pytest.raises(TypeError, match="timeout_s must be a number of seconds"):
        await shout_flow().call(msg("x"), timeout_s="5")  # pyright: ignore[reportArgumentType]


async def test_call_returns_the_first_result_and_leaves_the_others_for_fetch() -> None:
    async def twice(message: Message, ctx: Context) -> None:
        await ctx.emit(message.with_payload("first"))
        await ctx.emit(message.with_payload("second"))

    async def sink(message: Message, ctx: Context) -> str:
        return str(message.payload)

    twice_node, sink_node = Node(twice), Node(sink)
    flow = create(twice_node.to(sink_node), sink_node.to())
    with anyio.fail_after(5):
        async with flow.running():
            assert await flow.call(msg("x", trace_id="two")) == "first"
            assert await flow.fetch(trace_id="two") == "second"
            assert flow.statistics().live_traces == 0
