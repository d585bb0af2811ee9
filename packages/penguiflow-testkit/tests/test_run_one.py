"""run_one: one message in, that trace's first result out; failures and timeouts are explained."""

import anyio
import pytest
from pydantic import BaseModel

from penguiflow.core import (
    Context,
    FlowError,
    FlowErrorCode,
    Headers,
    Message,
    ModelRegistry,
    Node,
    NodePolicy,
    create,
)
from penguiflow.testkit import EventRecorder, FlowTestTimeout, NoResult, run_one


def make(payload: object = "hi") -> Message:
    return Message(payload=payload, headers=Headers(tenant="t"))


async def double(msg: Message, ctx: Context) -> int:
    return int(msg.payload) * 2


async def explode(msg: Message, ctx: Context) -> str:
    raise ValueError("bad input")


async def swallow(msg: Message, ctx: Context) -> None:
    return None


async def hang(msg: Message, ctx: Context) -> str:
    await anyio.Event().wait()
    return "never"


async def test_run_one_returns_the_rookery_result_as_returned_and_stops_the_flow() -> None:
    flow = create(Node(double).to())
    result = await run_one(flow, make(21))
    assert result == 42
    stats = flow.statistics()
    assert (stats.running, stats.workers, stats.live_traces) == (False, 0, 0)


async def test_run_one_returns_a_message_the_node_returned_of_the_messages_trace() -> None:
    async def double_in_envelope(msg: Message, ctx: Context) -> Message:
        return msg.with_payload(int(msg.payload) * 2)

    flow = create(Node(double_in_envelope).to())
    msg = make(21)
    result = await run_one(flow, msg)
    assert isinstance(result, Message)
    assert (result.payload, result.trace_id) == (42, msg.trace_id)


async def test_run_one_attaches_one_recorder_and_reuses_an_attached_one() -> None:
    flow = create(Node(double).to())
    recorder = EventRecorder().attach(flow)
    msg = make(1)
    await run_one(flow, msg)
    assert flow.event_hooks == (recorder,)
    assert recorder.node_sequence(msg.trace_id) == ["double"]


async def test_run_one_tracks_a_bare_payload_under_the_given_trace_id() -> None:
    async def bare_double(value: int, ctx: Context) -> int:
        return value * 2

    flow = create(Node(bare_double).to())
    assert await run_one(flow, 5, trace_id="bare-1") == 10
    assert EventRecorder.for_flow(flow).node_sequence("bare-1") == ["bare_double"]


async def test_run_one_raises_the_trace_flow_error_when_errors_are_not_delivered() -> None:
    flow = create(Node(explode).to())
    msg = make()
    with pytest.raises(FlowError) as info:
        await run_one(flow, msg)
    assert (info.value.code, info.value.trace_id) == (FlowErrorCode.NODE_EXCEPTION, msg.trace_id)
    assert isinstance(info.value.unwrap(), ValueError)


async def test_run_one_returns_a_flow_error_delivered_to_rookery() -> None:
    flow = create(Node(explode).to(), emit_errors_to_rookery=True)
    result = await run_one(flow, make())
    assert isinstance(result, FlowError)
    assert result.code is FlowErrorCode.NODE_EXCEPTION
    assert result.node_name == "explode"


async def test_run_one_validates_with_the_registry_it_is_given() -> None:
    class Number(BaseModel):
        value: int

    async def parse(msg: Message, ctx: Context) -> Message:
        return msg

    registry = ModelRegistry()
    registry.register("parse", Message, Message)
    flow = create(Node(parse).to())
    result = await run_one(flow, make(Number(value=3)), registry=registry)
    assert result.payload == Number(value=3)

    bad = ModelRegistry()
    bad.register("parse", Number, Number)
    with pytest.raises(FlowError) as info:
        await run_one(create(Node(parse).to()), make(), registry=bad)
    assert info.value.code is FlowErrorCode.VALIDATION_ERROR


async def test_run_one_on_a_running_flow_only_emits_and_fetches() -> None:
    flow = create(Node(double).to())
    async with flow.running():
        first = await run_one(flow, make(1))
        second = await run_one(flow, make(2))
        assert flow.running_now
    assert (first, second) == (2, 4)


async def test_run_one_refuses_a_registry_for_a_flow_that_is_already_running() -> None:
    flow = create(Node(double).to())
    async with flow.running():
        with pytest.raises(ValueError, match="already running"):
            await run_one(flow, make(1), registry=ModelRegistry())


@pytest.mark.parametrize("timeout_s", [0, -1.0, float("nan"), float("inf")])
async def test_run_one_rejects_a_timeout_that_is_not_a_positive_number(timeout_s: float) -> None:
    with pytest.raises(ValueError, match="timeout_s must be a positive number"):
        await run_one(create(Node(double).to()), make(1), timeout_s=timeout_s)


async def test_a_dropped_message_ends_with_no_result_naming_the_trace_and_the_sequence() -> None:
    double_node, swallow_node = Node(double), Node(swallow)
    flow = create(double_node.to(swallow_node), swallow_node.to())
    msg = make(1)
    with anyio.fail_after(5), pytest.raises(NoResult) as info:
        await run_one(flow, msg, timeout_s=3)  # answered when the trace ends, not at the timeout
    text = str(info.value)
    assert f"trace {msg.trace_id!r} ended without a result" in text
    assert "node sequence: ['double', 'swallow']" in text
    assert "a node returned None (which drops the message)" in text
    assert f"events of trace {msg.trace_id!r} (5):" in text
    assert [line.split()[2] for line in text.splitlines()[-5:]] == [
        "emit",
        "node_start",
        "node_success",
        "node_start",
        "node_success",
    ]
    assert info.value.trace_id == msg.trace_id
    assert isinstance(info.value, AssertionError)


async def test_timeout_none_waits_for_the_result_without_a_bound() -> None:
    async def slow(msg: Message, ctx: Context) -> str:
        await anyio.sleep(0.05)
        return "late"

    with anyio.fail_after(5):
        assert await run_one(create(Node(slow).to()), make(), timeout_s=None) == "late"


async def test_timeout_none_still_answers_a_trace_that_ends_without_result() -> None:
    with anyio.fail_after(5), pytest.raises(NoResult):
        await run_one(create(Node(swallow).to()), make(), timeout_s=None)


async def test_a_timeout_is_also_a_timeout_error_as_in_3x() -> None:
    with anyio.fail_after(5), pytest.raises(TimeoutError) as info:
        await run_one(create(Node(hang).to()), make(), timeout_s=0.05)
    assert isinstance(info.value, FlowTestTimeout) and isinstance(info.value, AssertionError)
    assert str(info.value).startswith("no result for trace")


async def test_timeout_message_points_at_the_node_that_never_returned() -> None:
    flow = create(Node(hang).to())
    with anyio.fail_after(5):
        with pytest.raises(FlowTestTimeout) as info:
            await run_one(flow, make(), timeout_s=0.2)
    assert "node(s) ['hang'] started and had not returned after 0.2s" in str(info.value)
    assert flow.statistics().workers == 0


async def test_timeout_message_points_at_a_retry_backoff_that_is_too_long() -> None:
    flaky = Node(explode, policy=NodePolicy(max_retries=1, backoff_base=30.0))
    with anyio.fail_after(5):
        with pytest.raises(FlowTestTimeout) as info:
            await run_one(create(flaky.to()), make(), timeout_s=0.2)
    text = str(info.value)
    assert "node(s) ['explode'] were waiting to retry" in text
    assert "NodePolicy.backoff_base" in text
    assert "node_retry" in text and "ValueError('bad input')" in text
