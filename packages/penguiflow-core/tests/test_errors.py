"""FlowError: its shape, how node failures map onto it, and that every FlowErrorCode is produced."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from penguiflow.core import (
    WM,
    BudgetExhausted,
    Context,
    CycleError,
    FlowError,
    FlowErrorCode,
    FlowEvent,
    FlowEventType,
    FlowStopped,
    GraphError,
    Headers,
    Message,
    ModelRegistry,
    Node,
    NodePolicy,
    PenguiFlow,
    PenguiFlowError,
    TraceCancelled,
    create,
)


def message(payload: Any = "p", **kwargs: Any) -> Message:
    return Message(payload=payload, headers=Headers(tenant="acme"), **kwargs)


async def boom(msg: Any, ctx: Context) -> Any:
    raise ValueError("boom")


# ------------------------------------------------------------------ the FlowError object


def sample_error() -> FlowError:
    return FlowError.from_exception(
        KeyError("missing"),
        trace_id="t1",
        node_name="lookup",
        node_id="lookup#1",
        metadata={"attempt": 2, "latency_ms": 1.5, "opaque": object(), "nested": {"k": (1, 2)}},
    )


def test_str_reads_code_message_trace_and_node() -> None:
    error = FlowError(
        trace_id="t1", node_name="n", code=FlowErrorCode.NODE_TIMEOUT, message="too slow"
    )
    assert str(error) == "[NODE_TIMEOUT] too slow trace=t1 node=n"


def test_from_exception_wraps_and_chains_the_original() -> None:
    error = sample_error()
    assert error.code is FlowErrorCode.NODE_EXCEPTION
    assert isinstance(error.original_exc, KeyError)
    assert error.__cause__ is error.original_exc
    assert error.unwrap() is error.original_exc
    assert error.metadata["exception_type"] == "KeyError"
    assert error.metadata["attempt"] == 2
    assert str(error).startswith("[NODE_EXCEPTION] KeyError: 'missing' trace=t1 node=lookup")


def test_from_exception_returns_a_flow_error_unchanged() -> None:
    error = sample_error()
    assert FlowError.from_exception(error, trace_id="other", node_name="other") is error


def test_unwrap_without_original_is_none() -> None:
    error = FlowError(trace_id=None, node_name=None, code="NODE_EXCEPTION", message="m")
    assert error.unwrap() is None
    assert error.code is FlowErrorCode.NODE_EXCEPTION


def test_to_payload_is_json_serialisable() -> None:
    payload = sample_error().to_payload()
    decoded = json.loads(json.dumps(payload))
    assert decoded["code"] == "NODE_EXCEPTION"
    assert decoded["trace_id"] == "t1"
    assert decoded["node_name"] == "lookup"
    assert decoded["node_id"] == "lookup#1"
    assert decoded["original_exc"] == "KeyError"
    assert decoded["metadata"]["attempt"] == 2
    assert decoded["metadata"]["nested"] == {"k": [1, 2]}
    assert decoded["metadata"]["opaque"].startswith("<object object")


def test_exception_tree() -> None:
    for exc_type in (FlowError, TraceCancelled, CycleError, GraphError, FlowStopped):
        assert issubclass(exc_type, PenguiFlowError)
    assert issubclass(CycleError, GraphError)
    assert issubclass(CycleError, ValueError)
    assert issubclass(PenguiFlowError, Exception)
    assert TraceCancelled("t9").trace_id == "t9"


# ------------------------------------------------------------------ node failures


async def test_node_exception_surfaces_to_a_waiting_trace_fetch() -> None:
    fetching = anyio.Event()

    async def failing(msg: Message, ctx: Context) -> Any:
        await fetching.wait()
        raise ValueError("bad input")

    node = Node(failing)
    flow = create(node.to())
    msg = message()
    caught: list[BaseException] = []

    async def fetch() -> None:
        fetching.set()
        try:
            await flow.fetch(trace_id=msg.trace_id)
        except FlowError as exc:
            caught.append(exc)

    async with flow.running(), anyio.create_task_group() as tg:
        with anyio.fail_after(5):
            await flow.emit(msg)
            tg.start_soon(fetch)
    assert len(caught) == 1
    error = caught[0]
    assert isinstance(error, FlowError)
    assert error.code is FlowErrorCode.NODE_EXCEPTION
    assert (error.trace_id, error.node_name, error.node_id) == (
        msg.trace_id,
        "failing",
        node.node_id,
    )
    assert isinstance(error.unwrap(), ValueError)
    assert isinstance(error.__cause__, ValueError)


async def test_timeout_becomes_node_timeout() -> None:
    never = anyio.Event()

    async def stuck(msg: Message, ctx: Context) -> Any:
        await never.wait()

    flow = create(Node(stuck, policy=NodePolicy(timeout_s=0.05)).to(), emit_errors_to_rookery=True)
    error = await first_result(flow, message())
    assert isinstance(error, FlowError)
    assert error.code is FlowErrorCode.NODE_TIMEOUT
    assert error.metadata["timeout_s"] == 0.05
    assert error.node_name == "stuck"


async def test_exhausted_retries_map_to_exactly_one_final_error() -> None:
    calls = 0
    events: list[FlowEvent] = []

    async def flaky(msg: Message, ctx: Context) -> Any:
        nonlocal calls
        calls += 1
        raise ConnectionError(f"attempt {calls}")

    policy = NodePolicy(max_retries=2, backoff_base=0.0)
    flow = create(
        Node(flaky, policy=policy).to(), emit_errors_to_rookery=True, on_event=events.append
    )
    msg = message()
    async with flow.running():
        with anyio.fail_after(5):
            await flow.emit(msg)
            error = await flow.fetch(trace_id=msg.trace_id)
        with pytest.raises(asyncio.QueueEmpty):
            flow.fetch_nowait()  # nothing else was delivered
    assert isinstance(error, FlowError)
    assert error.code is FlowErrorCode.NODE_EXCEPTION
    assert error.metadata["attempt"] == 2
    assert str(error.unwrap()) == "attempt 3"
    assert calls == 3
    kinds = [e.event_type for e in events]
    assert kinds.count(FlowEventType.NODE_RETRY) == 2
    assert kinds.count(FlowEventType.NODE_FAILED) == 1


async def test_trace_cancelled_raised_inside_a_node_is_not_retried() -> None:
    """Cancellation is never retried, even when the node surfaces it as ``TraceCancelled``."""
    calls = 0

    async def cancelled(msg: Message, ctx: Context) -> Any:
        nonlocal calls
        calls += 1
        raise TraceCancelled("elsewhere")

    policy = NodePolicy(max_retries=3, backoff_base=0.0)
    flow = create(Node(cancelled, policy=policy).to(), emit_errors_to_rookery=True)
    result = await first_result(flow, message())
    assert isinstance(result, FlowError)
    assert result.code is FlowErrorCode.TRACE_CANCELLED
    assert calls == 1


async def test_exception_in_running_block_propagates_unwrapped() -> None:
    """Errors raised in ``async with flow.running()`` reach the caller as themselves.

    Wrapping them in an ExceptionGroup would also turn ``call_playbook``'s ``TimeoutError`` and a
    child trace's ``TraceCancelled`` into ExceptionGroups.
    """
    flow = create(Node(boom).to())
    with pytest.raises(KeyError, match="from the body"):
        async with flow.running():
            raise KeyError("from the body")


async def test_errors_to_rookery_cover_failed_bare_payloads() -> None:
    """**fix**: with emit_errors_to_rookery a failed bare payload still yields a FlowError."""
    flow = create(Node(boom).to(), emit_errors_to_rookery=True)
    async with flow.running():
        with anyio.fail_after(5):
            await flow.emit({"bare": True})
            untraced = await flow.fetch()
            await flow.emit({"bare": True}, trace_id="bare-1")
            traced = await flow.fetch(trace_id="bare-1")
    assert isinstance(untraced, FlowError)
    assert untraced.code is FlowErrorCode.NODE_EXCEPTION
    assert untraced.node_name == "boom"
    assert isinstance(traced, FlowError)
    assert traced.trace_id == "bare-1"


# ------------------------------------------------------------------ every code is produced


async def first_result(flow: PenguiFlow, msg: Any, registry: ModelRegistry | None = None) -> Any:
    async with flow.running(registry=registry):
        with anyio.fail_after(5):
            await flow.emit(msg)
            return await flow.fetch()


def code_of(item: Any) -> FlowErrorCode:
    if isinstance(item, FlowError):
        return item.code
    assert isinstance(item, Message) and isinstance(item.payload, BudgetExhausted), item
    return item.payload.code


async def produce_node_timeout() -> Any:
    never = anyio.Event()

    async def stuck(msg: Message, ctx: Context) -> Any:
        await never.wait()

    flow = create(Node(stuck, policy=NodePolicy(timeout_s=0.01)).to(), emit_errors_to_rookery=True)
    return await first_result(flow, message())


async def produce_node_exception() -> Any:
    return await first_result(create(Node(boom).to(), emit_errors_to_rookery=True), message())


class Strict(BaseModel):
    number: int


async def produce_validation_error() -> Any:
    async def typed(msg: Strict, ctx: Context) -> Strict:
        return msg

    flow = create(Node(typed).to(), emit_errors_to_rookery=True)
    return await first_result(
        flow, {"number": "not a number"}, ModelRegistry.from_annotations(flow)
    )


async def produce_trace_cancelled() -> Any:
    """A subflow whose trace is cancelled: the parent node's failure is a cancellation."""
    children: list[PenguiFlow] = []
    started = anyio.Event()
    never = anyio.Event()

    async def child_work(msg: Message, ctx: Context) -> Any:
        started.set()
        await never.wait()

    def child() -> PenguiFlow:
        children.append(create(Node(child_work).to()))
        return children[-1]

    async def parent(msg: Message, ctx: Context) -> Any:
        return await ctx.call_playbook(child, msg)

    flow = create(Node(parent).to(), emit_errors_to_rookery=True)
    msg = message()
    async with flow.running():
        with anyio.fail_after(5):
            await flow.emit(msg)
            await started.wait()
            assert await children[0].cancel(msg.trace_id)
            return await flow.fetch()


async def produce_deadline_exceeded() -> Any:
    flow = create(Node(boom).to(), emit_errors_to_rookery=True)
    return await first_result(flow, message(deadline_s=time.time() - 1))


async def controller(msg: Message, ctx: Context) -> Message:
    wm: WM = msg.payload
    return msg.with_payload(wm.model_copy(update={"tokens_used": wm.tokens_used + 4}))


async def produce_hop_budget() -> Any:
    node = Node(controller, allow_cycle=True)
    return await first_result(create(node.to(node)), message(WM(query="q", budget_hops=2)))


async def produce_token_budget() -> Any:
    node = Node(controller, allow_cycle=True)
    wm = WM(query="q", budget_hops=None, budget_tokens=10)
    return await first_result(create(node.to(node)), message(wm))


PRODUCERS: dict[FlowErrorCode, Callable[[], Awaitable[Any]]] = {
    FlowErrorCode.NODE_TIMEOUT: produce_node_timeout,
    FlowErrorCode.NODE_EXCEPTION: produce_node_exception,
    FlowErrorCode.VALIDATION_ERROR: produce_validation_error,
    FlowErrorCode.TRACE_CANCELLED: produce_trace_cancelled,
    FlowErrorCode.DEADLINE_EXCEEDED: produce_deadline_exceeded,
    FlowErrorCode.HOP_BUDGET_EXHAUSTED: produce_hop_budget,
    FlowErrorCode.TOKEN_BUDGET_EXHAUSTED: produce_token_budget,
}


# Produced by a distributed Worker on a real Redis server: tests/test_workers_bus.py (poison trace).
ELSEWHERE = {FlowErrorCode.DELIVERIES_EXHAUSTED}


def test_every_code_has_a_producer() -> None:
    assert set(PRODUCERS) | ELSEWHERE == set(FlowErrorCode)


@pytest.mark.parametrize("code", list(PRODUCERS))
async def test_every_flow_error_code_is_produced(code: FlowErrorCode) -> None:
    """**fix**: the reference produced only two of the codes."""
    assert code_of(await PRODUCERS[code]()) is code


# ------------------------------------------------------------------ the documented error list


def test_module_docstring_lists_the_builtin_errors_and_where_they_appear() -> None:
    import penguiflow.core._errors as errors_module

    doc = errors_module.__doc__ or ""
    for phrase in (
        "TypeError",
        "ValueError",
        "KeyError",
        "RuntimeError",
        "asyncio.QueueFull",
        "emit_nowait",
        "asyncio.QueueEmpty",
        "fetch_nowait",
        "FlowStopped",
        "__cause__",
        "call_playbook",
        "NODE_TIMEOUT",
    ):
        assert phrase in doc, phrase


async def test_the_documented_builtin_errors_are_the_ones_raised() -> None:
    async def hold(msg: Any, ctx: Context) -> Any:
        await anyio.sleep_forever()

    node = Node(hold)
    flow = create(node.to(), queue_maxsize=1)
    with pytest.raises(RuntimeError, match="not running"):
        await flow.emit(message())
    async with flow.running():
        with pytest.raises(KeyError, match="not an ingress node"):
            await flow.emit(message(), to="nowhere")
        with pytest.raises(ValueError, match="either from_ or trace_id"):
            await flow.fetch(from_=node, trace_id="t")
        with pytest.raises(asyncio.QueueEmpty):
            flow.fetch_nowait()
        with pytest.raises(asyncio.QueueFull):
            for _ in range(10):  # the worker takes at most one; the floe holds one
                flow.emit_nowait(message())
    with pytest.raises(RuntimeError, match="already started"):
        flow.run()
