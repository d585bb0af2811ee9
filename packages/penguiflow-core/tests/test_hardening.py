"""Hardening: a bad message, a bad caller or a crash never leaves anyone waiting or leaking."""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from anyio import CancelScope
from pydantic import BaseModel, field_validator

from penguiflow.core import (
    BusEnvelope,
    Context,
    FlowError,
    FlowErrorCode,
    FlowEvent,
    FlowEventType,
    FlowStopped,
    Headers,
    Message,
    ModelRegistry,
    Node,
    NodePolicy,
    PenguiFlow,
    RemoteCallRequest,
    RemoteCallResult,
    RemoteNode,
    RemoteStreamEvent,
    TraceCancelled,
    TraceEnded,
    call_playbook,
    create,
    join_k,
    map_concurrent,
    predicate_router,
)


def msg(trace_id: str, payload: Any = "x", **meta: Any) -> Message:
    return Message(payload=payload, headers=Headers(tenant="t"), trace_id=trace_id, meta=meta)


def _live_tasks() -> set[asyncio.Task[Any]]:
    return {task for task in asyncio.all_tasks() if not task.done()}


async def _echo(message: Any, ctx: Context) -> Any:
    return message


# ------------------------------------------------- 1. one bad message, one FlowError


class Unprintable(Exception):
    """An exception that cannot be rendered at all."""

    def __str__(self) -> str:
        raise RuntimeError("no str for you")

    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


class Checked(BaseModel):
    value: int

    @field_validator("value")
    @classmethod
    def _non_negative(cls, value: int) -> int:
        if value < 0:
            raise TypeError("a validator that raises TypeError, which pydantic does not wrap")
        return value


async def _checked(message: Checked, ctx: Context) -> Checked:
    return message


async def _unissued_cancel() -> None:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.cancel()
    await future  # a CancelledError that no one issued to this task


def _failing_node(
    fail: Callable[[], Awaitable[None]], policy: NodePolicy | None = None
) -> tuple[Node, list[object]]:
    calls: list[object] = []

    async def work(message: Any, ctx: Context) -> Any:
        payload = message.payload if isinstance(message, Message) else message
        calls.append(payload)
        if payload == "bad":
            await fail()
        return message

    return Node(work, policy=policy or NodePolicy()), calls


async def _raise_value_error() -> None:
    raise ValueError("node failed")


async def _raise_unprintable() -> None:
    raise Unprintable


def _broken_predicate(exc: BaseException) -> bool:
    raise RuntimeError("the predicate itself is broken")


async def _bad_then_good(
    flow: PenguiFlow,
    bad: Any,
    good: Any,
    *,
    registry: ModelRegistry | None = None,
) -> tuple[FlowError, Any]:
    """Send a bad message and a good one through ``flow``; return the bad one's FlowError and
    the good one's result. The flow must still stop normally afterwards."""
    errors: list[FlowError] = []

    async def wait_bad() -> None:
        try:
            item = await flow.fetch(trace_id="bad")
        except FlowError as error:
            errors.append(error)
        else:
            assert isinstance(item, FlowError), f"expected a FlowError item, got {item!r}"
            errors.append(item)

    with anyio.fail_after(5):
        async with flow.running(registry=registry):
            async with anyio.create_task_group() as tg:
                tg.start_soon(wait_bad)  # waiting before the trace fails: the full error
                await anyio.wait_all_tasks_blocked()
                if isinstance(bad, Message):
                    await flow.emit(bad)
                else:
                    await flow.emit(bad, trace_id="bad")
            if isinstance(good, Message):
                await flow.emit(good)
            else:
                await flow.emit(good, trace_id="good")
            result = await flow.fetch(trace_id="good")
            await anyio.wait_all_tasks_blocked()
            assert flow.statistics().live_traces == 0
        assert not flow.running_now
    assert len(errors) == 1
    return errors[0], result


@pytest.mark.parametrize("to_rookery", [False, True], ids=["fetch-raises", "rookery-item"])
@pytest.mark.parametrize(
    "policy",
    [NodePolicy(), NodePolicy(timeout_s=5.0), NodePolicy(max_retries=2, backoff_base=0.0)],
    ids=["inline-attempt", "attempt-loop", "retried"],
)
async def test_unissued_cancelled_error_in_node_code_fails_only_that_message(
    to_rookery: bool, policy: NodePolicy
) -> None:
    node, calls = _failing_node(_unissued_cancel, policy)
    flow = create(node.to(), emit_errors_to_rookery=to_rookery)
    error, result = await _bad_then_good(flow, msg("bad", "bad"), msg("good", "good"))
    assert error.code is FlowErrorCode.NODE_EXCEPTION
    assert error.trace_id == "bad"
    assert isinstance(error.original_exc, asyncio.CancelledError)
    assert result.payload == "good"
    assert calls == ["bad", "good"]  # a cancellation, even a stray one, is never retried


@pytest.mark.parametrize("to_rookery", [False, True], ids=["fetch-raises", "rookery-item"])
async def test_retry_on_predicate_that_raises_fails_only_that_message(to_rookery: bool) -> None:
    policy = NodePolicy(max_retries=3, backoff_base=0.0, retry_on=_broken_predicate)
    node, calls = _failing_node(_raise_value_error, policy)
    flow = create(node.to(), emit_errors_to_rookery=to_rookery)
    error, result = await _bad_then_good(flow, msg("bad", "bad"), msg("good", "good"))
    assert error.code is FlowErrorCode.NODE_EXCEPTION
    assert isinstance(error.original_exc, ValueError)  # the node's exception, not the predicate's
    assert str(error.original_exc) == "node failed"
    assert calls == ["bad", "good"]  # no retry was made on a broken predicate
    assert result.payload == "good"


@pytest.mark.parametrize("to_rookery", [False, True], ids=["fetch-raises", "rookery-item"])
async def test_huge_retry_count_with_capped_backoff_ends_in_one_node_exception(
    to_rookery: bool,
) -> None:
    # backoff_base * 10.0 ** 400 overflows a float: the cap must apply without an OverflowError.
    retries = 400
    policy = NodePolicy(
        max_retries=retries,
        backoff_base=0.0001,
        backoff_mult=10.0,
        max_backoff=0.0001,
        jitter=0.0,
    )
    node, calls = _failing_node(_raise_value_error, policy)
    flow = create(node.to(), emit_errors_to_rookery=to_rookery)
    error, result = await _bad_then_good(flow, msg("bad", "bad"), msg("good", "good"))
    assert error.code is FlowErrorCode.NODE_EXCEPTION
    assert isinstance(error.original_exc, ValueError), repr(error.original_exc)
    assert error.metadata["attempt"] == retries
    assert calls.count("bad") == retries + 1
    assert result.payload == "good"


@pytest.mark.parametrize("observed", [False, True], ids=["no-listener", "on-event"])
@pytest.mark.parametrize("to_rookery", [False, True], ids=["fetch-raises", "rookery-item"])
async def test_exception_that_cannot_be_printed_fails_only_that_message(
    to_rookery: bool, observed: bool
) -> None:
    events: list[FlowEvent] = []
    node, _ = _failing_node(_raise_unprintable)
    flow = create(
        node.to(),
        emit_errors_to_rookery=to_rookery,
        on_event=events.append if observed else None,
    )
    error, result = await _bad_then_good(flow, msg("bad", "bad"), msg("good", "good"))
    assert error.code is FlowErrorCode.NODE_EXCEPTION
    assert isinstance(error.original_exc, Unprintable)
    assert result.payload == "good"
    if observed:
        failed = [e for e in events if e.event_type is FlowEventType.NODE_FAILED]
        assert [e.trace_id for e in failed] == ["bad"]


@pytest.mark.parametrize("to_rookery", [False, True], ids=["fetch-raises", "rookery-item"])
async def test_validator_raising_type_error_is_a_validation_error_for_that_message(
    to_rookery: bool,
) -> None:
    registry = ModelRegistry()
    registry.register("_checked", Checked, Checked)
    flow = create(Node(_checked).to(), emit_errors_to_rookery=to_rookery)
    error, result = await _bad_then_good(flow, {"value": -1}, {"value": 1}, registry=registry)
    assert error.code is FlowErrorCode.VALIDATION_ERROR
    assert isinstance(error.original_exc, TypeError)
    assert error.node_name == "_checked"
    assert result == Checked(value=1)


# ------------------------------------------------- 2. a BaseException ends the flow


class Fatal(BaseException):
    """Not an Exception: ends the whole flow."""


def _fatal_flow(raised: list[Fatal], entered: dict[str, anyio.Event]) -> PenguiFlow:
    """A node that raises Fatal for payload "fatal" and holds every other trace forever."""
    never = anyio.Event()

    async def work(message: Message, ctx: Context) -> Message:
        if message.payload == "fatal":
            error = Fatal("the end")
            raised.append(error)
            raise error
        entered[message.trace_id].set()
        await never.wait()
        return message

    return create(Node(work).to())


async def test_fatal_base_exception_answers_every_other_waiting_fetch_with_flow_stopped() -> None:
    raised: list[Fatal] = []
    entered = {"w1": anyio.Event(), "w2": anyio.Event()}
    flow = _fatal_flow(raised, entered)
    outcomes: dict[str, object] = {}

    async def wait_for(trace_id: str) -> None:
        try:
            outcomes[trace_id] = await flow.fetch(trace_id=trace_id)
        except (FlowStopped, TraceEnded, TraceCancelled, FlowError) as exc:
            outcomes[trace_id] = exc

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            try:
                async with flow.running():
                    for trace_id in entered:
                        tg.start_soon(wait_for, trace_id)
                        await flow.emit(msg(trace_id))
                        await entered[trace_id].wait()
                    await flow.emit(msg("fatal", "fatal"))
                    await anyio.sleep_forever()  # the crash ends this block
            except* Fatal:
                pass  # how it comes out is the next test's business
    assert len(raised) == 1
    assert set(outcomes) == set(entered)
    for trace_id, outcome in outcomes.items():
        assert isinstance(outcome, FlowStopped), f"{trace_id}: {outcome!r}"
        assert outcome.__cause__ is raised[0]


async def test_fatal_base_exception_propagates_out_of_running_as_itself() -> None:
    raised: list[Fatal] = []
    flow = _fatal_flow(raised, {})
    with anyio.fail_after(5), pytest.raises(Fatal) as caught:
        async with flow.running():
            await flow.emit(msg("fatal", "fatal"))
            await anyio.sleep_forever()  # the crash ends this block
    assert caught.value is raised[0]
    assert not flow.running_now


async def test_stop_re_raises_the_fatal_base_exception_as_itself() -> None:
    raised: list[Fatal] = []
    flow = _fatal_flow(raised, {})
    with anyio.fail_after(5):
        flow.run()
        await flow.emit(msg("fatal", "fatal"))
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(Fatal) as caught:
            await flow.stop()
    assert caught.value is raised[0]


# ------------------------------------------------- 3. stop() answers blocked emitters


async def test_stop_makes_every_blocked_bare_payload_emit_raise_flow_stopped() -> None:
    entered = anyio.Event()

    async def hang(message: Any, ctx: Context) -> None:
        entered.set()
        await anyio.sleep_forever()

    flow = create(Node(hang).to(), queue_maxsize=1)
    outcomes: dict[int, str] = {}

    async def emitter(index: int) -> None:
        try:
            await flow.emit("x")
        except FlowStopped:
            outcomes[index] = "FlowStopped"
        else:
            outcomes[index] = "returned"

    with anyio.fail_after(5):
        flow.run()
        await flow.emit("x")
        await entered.wait()
        for _ in range(100):  # fill every buffer in front of the node
            try:
                flow.emit_nowait("x")
            except asyncio.QueueFull:
                break
            await anyio.wait_all_tasks_blocked()
        else:
            pytest.fail("the floe never filled up")
        async with anyio.create_task_group() as tg:
            for index in range(3):
                tg.start_soon(emitter, index)
            await anyio.wait_all_tasks_blocked()
            assert outcomes == {}  # all three are blocked on the full floe
            await flow.stop()
    assert outcomes == {0: "FlowStopped", 1: "FlowStopped", 2: "FlowStopped"}


# ------------------------------------------------- 4. fetch after (or across) stop()


async def test_trace_fetch_after_stop_raises_flow_stopped_while_other_items_are_buffered() -> None:
    flow = create(Node(_echo).to())
    with anyio.fail_after(5):
        flow.run()
        await flow.emit(msg("a"))
        await anyio.wait_all_tasks_blocked()
        assert flow.statistics().rookery_buffered == 1
        await flow.stop()
    with anyio.fail_after(1), pytest.raises(FlowStopped):
        await flow.fetch(trace_id="b")


async def test_fetch_any_after_stop_raises_flow_stopped() -> None:
    flow = create(Node(_echo).to())
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(msg("a"))
            await flow.fetch(trace_id="a")
    with anyio.fail_after(1), pytest.raises(FlowStopped):
        await flow.fetch_any()


async def test_fetch_on_a_flow_that_never_ran_is_answered_by_stop() -> None:
    flow = create(Node(_echo).to())
    outcomes: list[BaseException | object] = []

    async def waiting_fetch() -> None:
        try:
            outcomes.append(await flow.fetch())
        except FlowStopped as exc:
            outcomes.append(exc)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiting_fetch)
            await anyio.wait_all_tasks_blocked()
            await flow.stop()
    assert len(outcomes) == 1
    assert isinstance(outcomes[0], FlowStopped)


# ------------------------------------------------- 5. cancel during a shielded cleanup


async def test_fetch_during_a_shielded_cleanup_of_a_cancelled_trace_gets_one_outcome() -> None:
    entered = anyio.Event()
    cleaning = anyio.Event()
    release = anyio.Event()

    async def careful(message: Message, ctx: Context) -> Message:
        entered.set()
        try:
            await anyio.sleep_forever()
        finally:
            with CancelScope(shield=True):
                cleaning.set()
                await release.wait()
        return message

    flow = create(Node(careful).to(), emit_errors_to_rookery=True)
    cancelled: list[bool] = []
    outcome: object = None

    async def cancel_it() -> None:
        cancelled.append(await flow.cancel("t"))

    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(msg("t"))
            await entered.wait()
            async with anyio.create_task_group() as tg:
                tg.start_soon(cancel_it)
                await cleaning.wait()  # flow.cancel() now waits on the cleanup
                try:
                    outcome = await flow.fetch(trace_id="t")
                except TraceCancelled as exc:
                    outcome = exc
                release.set()
            assert cancelled == [True]
            await anyio.wait_all_tasks_blocked()
            if isinstance(outcome, FlowError):
                assert outcome.code is FlowErrorCode.TRACE_CANCELLED
            else:
                assert isinstance(outcome, TraceCancelled), repr(outcome)
            stats = flow.statistics()
            assert stats.live_traces == 0
            assert stats.rookery_buffered == 0  # no second outcome left behind for the trace
            with pytest.raises(asyncio.QueueEmpty):
                flow.fetch_nowait(trace_id="t")


# ------------------------------------------------- 6. remembered endings drop payloads


class Blob:
    """A big object that a weakref can watch (bytearray itself has no weakref support)."""

    def __init__(self) -> None:
        self.data = bytearray(1_000_000)


async def test_remembered_failures_do_not_keep_the_failed_frames_alive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The error log record holds the FlowError (and pytest keeps records): keep logging out of it.
    monkeypatch.setattr(logging.getLogger("penguiflow.core"), "disabled", True)
    refs: list[weakref.ref[Blob]] = []

    async def heavy(message: Message, ctx: Context) -> None:
        blob = Blob()
        refs.append(weakref.ref(blob))
        raise ValueError(f"could not process {len(blob.data)} bytes")

    flow = create(Node(heavy).to())
    with anyio.fail_after(5):
        async with flow.running():
            for index in range(50):
                await flow.emit(msg(f"t{index}"))
            await anyio.wait_all_tasks_blocked()
            assert flow.statistics().live_traces == 0
            assert len(refs) == 50
            gc.collect()
            alive = sum(ref() is not None for ref in refs)
            assert alive == 0, f"{alive} of 50 blobs are still alive"
            with pytest.raises(FlowError) as caught:
                await flow.fetch(trace_id="t7")
    assert caught.value.code is FlowErrorCode.NODE_EXCEPTION
    assert caught.value.trace_id == "t7"
    assert caught.value.metadata["exception_type"] == "ValueError"


# ------------------------------------------------- 7. late fetch of a trace that ended empty


async def test_late_fetch_of_a_trace_whose_node_returned_none_raises_trace_ended() -> None:
    async def swallow(message: Message, ctx: Context) -> None:
        return None

    flow = create(Node(swallow).to())
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(msg("dropped"))
            await anyio.wait_all_tasks_blocked()
            assert flow.statistics().live_traces == 0
            with anyio.fail_after(1), pytest.raises(TraceEnded) as caught:
                await flow.fetch(trace_id="dropped")
    assert caught.value.trace_id == "dropped"


async def test_late_fetch_of_a_trace_a_router_dropped_raises_trace_ended() -> None:
    router = predicate_router("gate", lambda m: None)
    out = Node(_echo, name="out")
    flow = create(router.to(out), out.to())
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(msg("routed-away"))
            await anyio.wait_all_tasks_blocked()
            assert flow.statistics().live_traces == 0
            with anyio.fail_after(1), pytest.raises(TraceEnded) as caught:
                await flow.fetch(trace_id="routed-away")
    assert caught.value.trace_id == "routed-away"


# ------------------------------------------------- 8. to=[] names nowhere


async def test_flow_emit_to_an_empty_list_raises_value_error_and_sends_nothing() -> None:
    flow = create(Node(_echo).to())
    with anyio.fail_after(5):
        async with flow.running():
            with pytest.raises(ValueError):
                await flow.emit(msg("a"), to=[])
            with pytest.raises(ValueError):
                flow.emit_nowait(msg("b"), to=[])
            await anyio.wait_all_tasks_blocked()
            stats = flow.statistics()
            assert stats.live_traces == 0
            assert stats.queued == 0
            assert stats.rookery_buffered == 0


async def test_ctx_emit_to_an_empty_list_raises_value_error() -> None:
    async def emits_nowhere(message: Message, ctx: Context) -> Message:
        try:
            await ctx.emit(message.with_payload("leaked"), to=[])
        except ValueError:
            return message.with_payload("ValueError")
        return message.with_payload("no error")

    after = Node(_echo, name="after")
    flow = create(Node(emits_nowhere).to(after), after.to())
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(msg("t"))
            result = await flow.fetch(trace_id="t")
            await anyio.wait_all_tasks_blocked()
            assert flow.statistics().rookery_buffered == 0
    assert result.payload == "ValueError"


# ------------------------------------------------- 9. map_concurrent raises plainly


async def test_map_concurrent_with_workers_failing_in_the_same_tick_raises_one_plain_error() -> (
    None
):
    started: list[int] = []

    async def worker(index: int) -> int:
        started.append(index)
        await anyio.lowlevel.checkpoint()
        raise ValueError(index)

    with anyio.fail_after(5), pytest.raises(ValueError) as caught:
        await map_concurrent(range(4), worker, max_concurrency=4)
    assert not isinstance(caught.value, BaseExceptionGroup)
    assert caught.value.args[0] in range(4)
    assert sorted(started) == [0, 1, 2, 3]


# ------------------------------------------------- 10. the bus sees only real crossings


class RecordingBus:
    def __init__(self) -> None:
        self.envelopes: list[BusEnvelope] = []

    async def publish(self, envelope: BusEnvelope) -> None:
        self.envelopes.append(envelope)


async def test_bus_publishes_no_crossing_for_an_emit_cancelled_while_waiting_for_room() -> None:
    bus = RecordingBus()
    entered = anyio.Event()
    release = anyio.Event()

    async def slow(message: Message, ctx: Context) -> Message:
        entered.set()
        await release.wait()
        return message

    node = Node(slow, policy=NodePolicy(max_concurrency=1))
    flow = create(node.to(), queue_maxsize=1, message_bus=bus)
    outcomes: dict[str, str] = {}

    async def blocked_emit(trace_id: str, scope: CancelScope) -> None:
        with scope:
            try:
                await flow.emit(msg(trace_id))
            except TraceCancelled:
                outcomes[trace_id] = "TraceCancelled"
                return
            outcomes[trace_id] = "returned"
        if scope.cancelled_caught:
            outcomes[trace_id] = "scope cancelled"

    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(msg("t1"))
            await entered.wait()
            await flow.emit(msg("t2"))  # fills the floe
            async with anyio.create_task_group() as tg:
                by_scope, by_trace = CancelScope(), CancelScope()
                tg.start_soon(blocked_emit, "t3", by_scope)
                tg.start_soon(blocked_emit, "t4", by_trace)
                await anyio.wait_all_tasks_blocked()
                assert outcomes == {}  # both are waiting for room
                by_scope.cancel()
                assert await flow.cancel("t4")
            release.set()
            assert (await flow.fetch(trace_id="t1")).payload == "x"
            assert (await flow.fetch(trace_id="t2")).payload == "x"
        await flow.stop()  # already stopped; the bus was flushed on the way out
    assert outcomes == {"t3": "scope cancelled", "t4": "TraceCancelled"}
    crossings = sorted((e.trace_id, e.edge) for e in bus.envelopes)
    assert crossings == [
        ("t1", "OpenSea->slow"),
        ("t1", "slow->Rookery"),
        ("t2", "OpenSea->slow"),
        ("t2", "slow->Rookery"),
    ]


# ------------------------------------------------- 11. whose timeout is it


async def test_timeout_error_raised_by_node_code_is_a_node_exception_not_a_node_timeout() -> None:
    async def raises_timeout(message: Message, ctx: Context) -> None:
        raise TimeoutError("the node's own client timed out")

    async def too_slow(message: Message, ctx: Context) -> None:
        await anyio.sleep_forever()

    own = create(Node(raises_timeout).to(), emit_errors_to_rookery=True)
    policed = create(
        Node(too_slow, policy=NodePolicy(timeout_s=0.01)).to(), emit_errors_to_rookery=True
    )
    errors: list[Any] = []
    with anyio.fail_after(5):
        for flow in (own, policed):
            async with flow.running():
                await flow.emit(msg("t"))
                errors.append(await flow.fetch(trace_id="t"))
    own_error, policed_error = errors
    assert isinstance(own_error, FlowError)
    assert own_error.code is FlowErrorCode.NODE_EXCEPTION
    assert isinstance(own_error.original_exc, TimeoutError)
    assert isinstance(policed_error, FlowError)
    assert policed_error.code is FlowErrorCode.NODE_TIMEOUT


# ------------------------------------------------- 12. call_playbook


def _child_flow() -> PenguiFlow:
    async def child(message: Message, ctx: Context) -> Message:
        return message.with_payload(f"child saw {message.payload}").with_meta(source="child")

    return create(Node(child).to())


async def test_call_playbook_leaves_the_parent_message_meta_alone() -> None:
    received: list[Message] = []

    async def parent(message: Message, ctx: Context) -> Any:
        received.append(message)
        return await ctx.call_playbook(_child_flow, message)

    async def after(message: Message, ctx: Context) -> Message:
        return message  # declares a Message: gets the bare result in the envelope it travelled in

    first, second = Node(parent), Node(after)
    flow = create(first.to(second), second.to())
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(msg("p", "question", origin="caller"))
            result = await flow.fetch(trace_id="p")
    assert len(received) == 1
    assert received[0].meta == {"origin": "caller"}  # not mutated by the subflow's return
    assert isinstance(result, Message)
    assert result.payload == "child saw question"
    assert result.meta == {"origin": "caller", "source": "child"}


async def test_call_playbook_outside_a_flow_times_out_with_a_node_timeout_flow_error() -> None:
    def hanging_child() -> PenguiFlow:
        async def hang(message: Message, ctx: Context) -> None:
            await anyio.sleep_forever()

        return create(Node(hang).to())

    parent = msg("p", "question", origin="caller")
    with anyio.fail_after(5), pytest.raises(FlowError) as caught:
        await call_playbook(hanging_child, parent, timeout=0.05)
    assert caught.value.code is FlowErrorCode.NODE_TIMEOUT
    assert parent.meta == {"origin": "caller"}


# ------------------------------------------------- 13. RemoteNode


class ReplyingAgent:
    """An in-process transport whose replies carry meta."""

    def __init__(self) -> None:
        self.requests: list[RemoteCallRequest] = []

    async def send(self, request: RemoteCallRequest) -> RemoteCallResult:
        self.requests.append(request)
        return RemoteCallResult(
            result=str(request.message.payload).upper(), task_id="task-1", meta={"agent": "echo"}
        )

    async def stream(self, request: RemoteCallRequest) -> AsyncIterator[RemoteStreamEvent]:
        raise NotImplementedError("this agent only answers non-streaming calls")
        yield RemoteStreamEvent()  # an async generator, as the protocol asks

    async def cancel(self, *, agent_url: str, task_id: str) -> None:
        return None


async def test_remote_node_does_not_mutate_the_input_message_meta() -> None:
    agent = ReplyingAgent()
    node = RemoteNode(transport=agent, skill="echo", agent_url="inproc://agent", name="remote")
    flow = create(node.to())
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(msg("t", "hello", origin="caller"))
            result = await flow.fetch(trace_id="t")
    assert len(agent.requests) == 1
    assert agent.requests[0].message.meta == {"origin": "caller"}
    assert isinstance(result, Message)
    assert result.payload == "HELLO"
    assert result.meta == {"origin": "caller", "agent": "echo"}


# ------------------------------------------------- 14. join_k timeouts


def _join_flow(
    join_timeout_s: float, release: anyio.Event, *, to_rookery: bool, events: list[FlowEvent]
) -> PenguiFlow:
    """source fans out to fast and slow; both feed a join_k(2). slow holds its branch until
    ``release`` is set, then drops it, so the join's bucket can only time out."""

    async def slow(message: Message, ctx: Context) -> None:
        await release.wait()
        return None

    source, fast, slow_node = Node(_echo, name="source"), Node(_echo, name="fast"), Node(slow)
    join = join_k("join", 2, timeout_s=join_timeout_s)

    def on_event(event: FlowEvent) -> None:
        events.append(event)
        if event.event_type is FlowEventType.NODE_FAILED and event.node_name == "join":
            release.set()  # the bucket timed out: let the slow branch end the trace

    return create(
        source.to(fast, slow_node),
        fast.to(join),
        slow_node.to(join),
        join.to(),
        emit_errors_to_rookery=to_rookery,
        on_event=on_event,
    )


@pytest.mark.parametrize("to_rookery", [False, True], ids=["fetch-raises", "rookery-item"])
async def test_join_bucket_timeout_fails_the_trace_with_node_timeout(to_rookery: bool) -> None:
    events: list[FlowEvent] = []
    flow = _join_flow(0.05, anyio.Event(), to_rookery=to_rookery, events=events)
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(msg("half"))
            try:
                outcome: object = await flow.fetch(trace_id="half")
            except FlowError as error:
                outcome = error
            await anyio.wait_all_tasks_blocked()
            assert flow.statistics().live_traces == 0
    assert isinstance(outcome, FlowError), repr(outcome)
    assert outcome.code is FlowErrorCode.NODE_TIMEOUT
    assert outcome.node_name == "join"
    assert outcome.trace_id == "half"


async def test_cancelling_a_trace_stops_its_join_timer() -> None:
    events: list[FlowEvent] = []
    # Long enough that it cannot expire while the test runs: the timer must be stopped, not fire.
    flow = _join_flow(3.0, anyio.Event(), to_rookery=False, events=events)

    def helpers() -> int:
        """Tasks the flow runs besides its node workers (the join's timers among them)."""
        return len(_live_tasks()) - flow.statistics().workers

    before = _live_tasks()
    with anyio.fail_after(5):
        async with flow.running():
            await anyio.wait_all_tasks_blocked()
            idle = helpers()
            await flow.emit(msg("waiting"))
            await anyio.wait_all_tasks_blocked()
            assert flow.statistics().live_traces == 1  # the slow branch is still in flight
            assert await flow.cancel("waiting")
            await anyio.wait_all_tasks_blocked()
            assert helpers() == idle  # no timer task is left: no timeout error can come later
            stats = flow.statistics()
            assert stats.live_traces == 0
            assert stats.rookery_buffered == 0
            with pytest.raises(TraceCancelled):
                await flow.fetch(trace_id="waiting")
    assert _live_tasks() == before
    assert [e for e in events if e.event_type is FlowEventType.NODE_FAILED] == []


# ------------------------------------------------- 15. the public face


def test_flow_exposes_only_its_documented_api() -> None:
    flow = create(Node(_echo).to())
    public = {name for name in dir(flow) if not name.startswith("_")}
    assert public == {
        "add_event_hook",
        "add_middleware",
        "call",
        "call_node",
        "cancel",
        "emit",
        "emit_chunk",
        "emit_nowait",
        "event_hooks",
        "fetch",
        "fetch_any",
        "fetch_nowait",
        "flush_timeout_s",
        "graph",
        "load_history",
        "middlewares",
        "node",
        "nodes",
        "run",
        "run_sync",
        "running",
        "running_now",
        "state_store",
        "statistics",
        "stop",
    }


# ------------------------------------------------- 16. default concurrency


async def test_default_concurrency_lets_a_hundred_io_bound_traces_wait_together() -> None:
    traces = 100
    inside = 0
    everyone_in = anyio.Event()

    async def work(message: Message, ctx: Context) -> Message:
        nonlocal inside
        inside += 1
        if inside == traces:
            everyone_in.set()  # a barrier: it opens only with all 100 inside at once
        await everyone_in.wait()
        return message

    flow = create(Node(work).to())
    with anyio.fail_after(5):
        async with flow.running():
            for index in range(traces):
                await flow.emit(msg(f"t{index}"))
            for index in range(traces):
                await flow.fetch(trace_id=f"t{index}")
            await anyio.wait_all_tasks_blocked()
            assert flow.statistics().workers <= 4  # the burst's workers retired
    assert inside == traces
