"""Timeouts bound one attempt; failures retry per policy; every attempt is reported."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from penguiflow.core import (
    Context,
    FlowError,
    FlowErrorCode,
    FlowEvent,
    FlowEventType,
    Headers,
    Message,
    ModelRegistry,
    Node,
    NodePolicy,
    create,
)

# The testkit is not a dependency of core: these tests run in the full run and are skipped in
# core's isolated run, where no sibling package is installed (tests/test_isolation.py).
pytest.importorskip("penguiflow.testkit", reason="needs penguiflow-testkit (the full test run)")
from penguiflow.testkit import (  # noqa: E402
    assert_node_sequence,
    get_recorded_events,
    run_one,
    simulate_error,
)

FAST_BACKOFF = 0.001
"""Retry delays short enough not to slow the suite, long enough to be measurable."""


def _msg(payload: Any) -> Message:
    return Message(payload=payload, headers=Headers(tenant="t"))


class _Recorder:
    def __init__(self) -> None:
        self.events: list[FlowEvent] = []

    def __call__(self, event: FlowEvent) -> None:
        self.events.append(event)

    def node_events(self, node: str) -> list[tuple[str, int]]:
        return [(e.event_type.value, e.attempt) for e in self.events if e.node_name == node]


async def test_timeout_bounds_one_attempt() -> None:
    cancelled: list[bool] = []

    async def stuck(msg: Message, ctx: Context) -> None:
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.append(True)

    events = _Recorder()
    node = Node(stuck, policy=NodePolicy(timeout_s=0.01))
    flow = create(node.to(), emit_errors_to_rookery=True, on_event=events)
    error = await run_one(flow, _msg(1), timeout_s=5)
    assert isinstance(error, FlowError)
    assert error.code is FlowErrorCode.NODE_TIMEOUT
    assert error.node_name == "stuck"
    assert isinstance(error.original_exc, TimeoutError)
    assert error.metadata["timeout_s"] == 0.01
    assert cancelled == [True]
    assert events.node_events("stuck") == [
        ("node_start", 0),
        ("node_timeout", 0),
        ("node_failed", 0),
    ]


async def test_trace_scoped_fetch_raises_the_timeout_error_without_rookery_delivery() -> None:
    async def stuck(msg: Message, ctx: Context) -> None:
        await anyio.sleep_forever()

    flow = create(Node(stuck, policy=NodePolicy(timeout_s=0.01)).to())
    message = _msg(1)
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(message)
            with pytest.raises(FlowError) as caught:
                await flow.fetch(trace_id=message.trace_id)
    assert caught.value.code is FlowErrorCode.NODE_TIMEOUT
    assert caught.value.trace_id == message.trace_id


async def test_timed_out_attempt_is_retried() -> None:
    calls: list[int] = []

    async def slow_then_fast(msg: Message, ctx: Context) -> str:
        calls.append(len(calls))
        if len(calls) == 1:
            await anyio.sleep_forever()
        return "done"

    events = _Recorder()
    policy = NodePolicy(timeout_s=0.02, max_retries=1, backoff_base=FAST_BACKOFF)
    flow = create(Node(slow_then_fast, policy=policy).to(), on_event=events)
    result = await run_one(flow, _msg(1), timeout_s=5)
    assert result == "done"
    assert calls == [0, 1]
    assert events.node_events("slow_then_fast") == [
        ("node_start", 0),
        ("node_timeout", 0),
        ("node_retry", 1),
        ("node_start", 1),
        ("node_success", 1),
    ]


async def test_failures_are_retried_with_backoff_and_report_each_attempt() -> None:
    flaky = simulate_error("flaky", "TRANSIENT", fail_times=2, result="ok")
    policy = NodePolicy(max_retries=3, backoff_base=0.001, backoff_mult=3.0, jitter=0.1)
    flow = create(Node(flaky, policy=policy).to())
    message = _msg(1)
    result = await run_one(flow, message, timeout_s=5)
    assert result == "ok"
    assert (flaky.attempts, flaky.failures) == (3, 2)
    assert_node_sequence(flow, message.trace_id, ["flaky"])  # retries collapse to one entry
    events = get_recorded_events(flow, message.trace_id)
    assert [(e.event_type.value, e.attempt) for e in events] == [
        ("emit", 0),
        ("node_start", 0),
        ("node_error", 0),
        ("node_retry", 1),
        ("node_start", 1),
        ("node_error", 1),
        ("node_retry", 2),
        ("node_start", 2),
        ("node_success", 2),
        ("fetch", 0),
    ]
    sleeps = [e.extra["sleep_s"] for e in events if e.event_type == "node_retry"]
    assert 0.0009 <= sleeps[0] <= 0.0011
    assert 0.0027 <= sleeps[1] <= 0.0033
    errors = [e for e in events if e.event_type is FlowEventType.NODE_ERROR]
    assert "TRANSIENT: simulated failure 1 of 2" in errors[0].extra["exception"]


async def test_max_backoff_caps_each_retry_delay() -> None:
    async def always_fails(msg: Message, ctx: Context) -> None:
        raise ConnectionError("down")

    events = _Recorder()
    policy = NodePolicy(
        max_retries=3, backoff_base=0.001, backoff_mult=10.0, max_backoff=0.002, jitter=0.0
    )
    flow = create(
        Node(always_fails, policy=policy).to(), on_event=events, emit_errors_to_rookery=True
    )
    await run_one(flow, _msg(1), timeout_s=5)
    sleeps = [e.extra["sleep_s"] for e in events.events if e.event_type == "node_retry"]
    assert sleeps == [0.001, 0.002, 0.002]


async def test_exhausted_retries_map_to_one_final_error() -> None:
    calls = 0

    async def broken(msg: Message, ctx: Context) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError(f"boom {calls}")

    events = _Recorder()
    policy = NodePolicy(max_retries=2, backoff_base=FAST_BACKOFF)
    flow = create(Node(broken, policy=policy).to(), on_event=events, emit_errors_to_rookery=True)
    message = _msg(1)
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(message)
            error = await flow.fetch()
            await anyio.wait_all_tasks_blocked()
            assert flow.statistics().rookery_buffered == 0  # exactly one item for the failure
    assert isinstance(error, FlowError)
    assert calls == 3
    assert error.code is FlowErrorCode.NODE_EXCEPTION
    assert error.trace_id == message.trace_id
    assert error.node_name == "broken"
    assert error.metadata["attempt"] == 2
    assert isinstance(error.original_exc, RuntimeError)
    assert str(error.original_exc) == "boom 3"
    assert error.__cause__ is error.original_exc
    failed = [e for e in events.events if e.event_type is FlowEventType.NODE_FAILED]
    assert len(failed) == 1
    assert failed[0].error_payload is not None
    assert failed[0].error_payload["code"] == "NODE_EXCEPTION"
    assert events.node_events("broken")[-2:] == [("node_error", 2), ("node_failed", 2)]


async def test_retry_on_tuple_retries_only_listed_exceptions() -> None:
    calls: list[str] = []

    async def fails(msg: Message, ctx: Context) -> None:
        calls.append(msg.payload)
        if msg.payload == "transient":
            raise ConnectionError("retry me")
        raise ValueError("do not retry me")

    events = _Recorder()
    policy = NodePolicy(max_retries=2, retry_on=(ConnectionError,), backoff_base=FAST_BACKOFF)
    flow = create(Node(fails, policy=policy).to(), on_event=events, emit_errors_to_rookery=True)
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(_msg("fatal"))
            fatal = await flow.fetch()
            assert calls == ["fatal"]
            await flow.emit(_msg("transient"))
            transient = await flow.fetch()
    assert calls == ["fatal", "transient", "transient", "transient"]
    assert isinstance(fatal, FlowError) and isinstance(fatal.original_exc, ValueError)
    assert fatal.metadata["attempt"] == 0
    assert isinstance(transient, FlowError) and transient.metadata["attempt"] == 2
    retries = [e for e in events.events if e.event_type is FlowEventType.NODE_RETRY]
    assert [e.trace_id for e in retries] == [transient.trace_id] * 2


async def test_retry_on_predicate_decides_what_is_retried() -> None:
    calls: list[str] = []

    def is_transient(exc: BaseException) -> bool:
        return "transient" in str(exc)

    async def fails(msg: Message, ctx: Context) -> None:
        calls.append(msg.payload)
        raise RuntimeError(msg.payload)

    policy = NodePolicy(max_retries=1, retry_on=is_transient, backoff_base=FAST_BACKOFF)
    flow = create(Node(fails, policy=policy).to(), emit_errors_to_rookery=True)
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(_msg("permanent"))
            await flow.fetch()
            await flow.emit(_msg("transient"))
            await flow.fetch()
    assert calls == ["permanent", "transient", "transient"]


class _Number(BaseModel):
    value: int


async def test_input_validation_errors_are_not_retried() -> None:
    calls = 0

    async def double(msg: _Number, ctx: Context) -> _Number:
        nonlocal calls
        calls += 1
        return _Number(value=msg.value * 2)

    registry = ModelRegistry()
    registry.register("double", _Number, _Number)
    flow = create(
        Node(double, policy=NodePolicy(max_retries=3, backoff_base=FAST_BACKOFF)).to(),
        emit_errors_to_rookery=True,
    )
    with anyio.fail_after(5):
        async with flow.running(registry=registry):
            await flow.emit({"value": "not a number"}, trace_id="bad")
            error = await flow.fetch()
            await flow.emit({"value": 2}, trace_id="good")
            good = await flow.fetch()
    assert isinstance(error, FlowError)
    assert error.code is FlowErrorCode.VALIDATION_ERROR
    assert error.trace_id == "bad"
    assert calls == 1  # only the valid message reached the node
    assert good == _Number(value=4)


async def test_output_validation_errors_are_not_retried() -> None:
    calls = 0

    async def wrong(msg: _Number, ctx: Context) -> Any:
        nonlocal calls
        calls += 1
        return {"value": "nope"}

    registry = ModelRegistry()
    registry.register("wrong", _Number, _Number)
    flow = create(
        Node(wrong, policy=NodePolicy(max_retries=3, backoff_base=FAST_BACKOFF)).to(),
        emit_errors_to_rookery=True,
    )
    with anyio.fail_after(5):
        async with flow.running(registry=registry):
            await flow.emit({"value": 1}, trace_id="t")
            error = await flow.fetch()
    assert isinstance(error, FlowError)
    assert error.code is FlowErrorCode.VALIDATION_ERROR
    assert calls == 1


async def test_validation_error_raised_inside_a_node_is_not_retried() -> None:
    calls = 0

    async def parses(msg: Message, ctx: Context) -> _Number:
        nonlocal calls
        calls += 1
        return _Number.model_validate({"value": msg.payload})

    flow = create(
        Node(parses, policy=NodePolicy(max_retries=3, backoff_base=FAST_BACKOFF)).to(),
        emit_errors_to_rookery=True,
    )
    error = await run_one(flow, _msg("not a number"), timeout_s=5)
    assert isinstance(error, FlowError)
    assert error.code is FlowErrorCode.VALIDATION_ERROR
    assert calls == 1


async def test_cancellation_is_never_retried() -> None:
    calls = 0
    entered = anyio.Event()

    async def hangs(msg: Message, ctx: Context) -> None:
        nonlocal calls
        calls += 1
        entered.set()
        await anyio.sleep_forever()

    events = _Recorder()
    policy = NodePolicy(max_retries=5, backoff_base=FAST_BACKOFF)
    flow = create(Node(hangs, policy=policy).to(), on_event=events, emit_errors_to_rookery=True)
    message = _msg(1)
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(message)
            await entered.wait()
            assert await flow.cancel(message.trace_id)
            outcome = await flow.fetch()
            await anyio.wait_all_tasks_blocked()
            assert flow.statistics().rookery_buffered == 0
    assert calls == 1
    assert isinstance(outcome, FlowError)
    assert outcome.code is FlowErrorCode.TRACE_CANCELLED
    kinds = [e.event_type.value for e in events.events if e.node_name == "hangs"]
    assert kinds == ["node_start", "node_trace_cancelled"]


async def test_stopping_the_flow_does_not_retry_a_running_attempt() -> None:
    calls = 0
    entered = anyio.Event()

    async def hangs(msg: Message, ctx: Context) -> None:
        nonlocal calls
        calls += 1
        entered.set()
        await anyio.sleep_forever()

    flow = create(Node(hangs, policy=NodePolicy(max_retries=5, backoff_base=FAST_BACKOFF)).to())
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(_msg(1))
            await entered.wait()
    assert calls == 1
