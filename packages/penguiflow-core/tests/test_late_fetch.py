"""A trace-scoped fetch that arrives after its trace ended badly is answered, not left waiting."""

from __future__ import annotations

import anyio
import pytest

from penguiflow.core import Context, FlowError, Headers, Message, Node, TraceCancelled, create


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
    assert isinstance(caught.value.unwrap(), ValueError)


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
    assert result.payload == "ok"
    assert calls == ["fail", "ok"]


async def test_remembered_endings_are_bounded() -> None:
    async def boom(message: Message, ctx: Context) -> None:
        raise ValueError("no")

    flow = create(Node(boom).to())
    flow.traces.keep_endings = 10
    with anyio.fail_after(5):
        async with flow.running():
            for i in range(50):
                await flow.emit(msg(f"t{i}"))
            await anyio.wait_all_tasks_blocked()
            assert flow.statistics().live_traces == 0
    assert len(flow.traces.endings) == 10
    assert list(flow.traces.endings) == [f"t{i}" for i in range(40, 50)]
