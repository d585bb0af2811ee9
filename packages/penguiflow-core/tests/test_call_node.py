"""flow.call_node and ctx.call_node: one invocation of a node under its policy, in the caller."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from penguiflow.core import (
    Context,
    FlowError,
    FlowErrorCode,
    FlowEvent,
    FlowStopped,
    Headers,
    Message,
    ModelRegistry,
    Node,
    NodePolicy,
    PenguiFlow,
    TraceCancelled,
    create,
)
from penguiflow.core._flow import runtime_of
from penguiflow.core._invoke import KEEP_IDLE

FAST = 0.001
"""Retry delays short enough not to slow the suite."""


class Recorder:
    def __init__(self) -> None:
        self.events: list[FlowEvent] = []

    def __call__(self, event: FlowEvent) -> None:
        self.events.append(event)

    def kinds(self, node: str | None = None) -> list[tuple[str, int]]:
        return [
            (e.event_type.value, e.attempt)
            for e in self.events
            if node is None or e.node_name == node
        ]


async def _echo(message: Any, ctx: Context) -> Any:
    return message


def _flow(**kwargs: Any) -> PenguiFlow:
    return create(Node(_echo).to(), **kwargs)


def _live_tasks() -> set[asyncio.Task[Any]]:
    return {task for task in asyncio.all_tasks() if not task.done()}


def _idle(flow: PenguiFlow) -> bool:
    """No invocation holds or waits for a turn (the per-node bound leaked nothing)."""
    entries = runtime_of(flow).invocations.values()
    return all(entry.active == 0 and not entry.waiters for entry in entries)


def _msg(payload: Any, **kwargs: Any) -> Message:
    return Message(payload=payload, headers=Headers(tenant="t"), **kwargs)


# --------------------------------------------------------------------------- basics


async def test_call_node_returns_what_a_node_outside_the_graph_returns() -> None:
    seen: list[tuple[Any, Any]] = []

    async def double(x: int, ctx: Context) -> int:
        seen.append((x, ctx))
        return x * 2

    flow = _flow()
    with anyio.fail_after(5):
        assert await flow.call_node(Node(double), 21) == 42  # idle flow: no workers needed
        async with flow.running():
            assert await flow.call_node(Node(double), 4) == 8
    [(_, ctx), _] = seen
    assert isinstance(ctx, Context)
    assert ctx.runtime is flow
    assert _idle(flow)


async def test_per_node_bookkeeping_stays_bounded_when_callers_build_nodes_per_call() -> None:
    async def func(x: int, ctx: Context) -> int:
        return x

    flow = _flow()
    with anyio.fail_after(5):
        for i in range(3 * KEEP_IDLE):
            assert await flow.call_node(Node(func, name=f"n{i}"), i) == i
    assert len(runtime_of(flow).invocations) <= KEEP_IDLE


async def test_call_node_hands_the_given_context_to_the_function() -> None:
    received: list[object] = []

    async def func(x: int, ctx: Any) -> None:
        received.append(ctx)

    marker = object()
    with anyio.fail_after(5):
        assert await _flow().call_node(Node(func), 1, marker) is None
    assert received == [marker]


async def test_call_node_runs_a_graph_node_too() -> None:
    node = Node(_echo)
    flow = create(node.to())
    with anyio.fail_after(5):
        async with flow.running():
            assert await flow.call_node(node, "direct") == "direct"
            await flow.emit(_msg("through the graph"))
            assert (await flow.fetch()).payload == "through the graph"


async def test_events_carry_extra_and_invoked_and_reach_hooks_and_middlewares() -> None:
    hook = Recorder()
    delivered: list[FlowEvent] = []

    async def middleware(event: FlowEvent) -> None:
        delivered.append(event)

    node = Node(_echo, name="tool_x")
    flow = _flow(on_event=hook, middlewares=[middleware])
    with anyio.fail_after(5):
        async with flow.running():
            await flow.call_node(node, 1, trace_id="t1", extra={"tool_call": 7})
    assert hook.kinds() == [("node_start", 0), ("node_success", 0)]
    assert [e.event_type.value for e in delivered] == ["node_start", "node_success"]
    for event in delivered:
        assert (event.node_name, event.node_id, event.trace_id) == ("tool_x", node.node_id, "t1")
        assert dict(event.extra) == {"tool_call": 7, "invoked": True}
    assert delivered[1].latency_ms is not None


async def test_call_node_rejects_a_non_node_and_a_stopped_flow() -> None:
    flow = _flow()
    with pytest.raises(TypeError, match=r"wrap an async function as Node\(func"):
        await flow.call_node(_echo, 1)  # type: ignore[arg-type]
    async with flow.running():
        pass
    with pytest.raises(RuntimeError, match="the flow has stopped"):
        await flow.call_node(Node(_echo), 1)


# ---------------------------------------------------------------- retries, failures


async def test_failures_are_retried_with_backoff_under_the_node_policy() -> None:
    calls = 0

    async def flaky(x: int, ctx: Context) -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError(f"down {calls}")
        return "up"

    events = Recorder()
    policy = NodePolicy(max_retries=3, backoff_base=FAST, backoff_mult=2.0, jitter=0.0)
    with anyio.fail_after(5):
        result = await _flow(on_event=events).call_node(Node(flaky, policy=policy), 0)
    assert (result, calls) == ("up", 3)
    assert events.kinds() == [
        ("node_start", 0),
        ("node_error", 0),
        ("node_retry", 1),
        ("node_start", 1),
        ("node_error", 1),
        ("node_retry", 2),
        ("node_start", 2),
        ("node_success", 2),
    ]
    retries = [e for e in events.events if e.event_type == "node_retry"]
    assert [e.extra["sleep_s"] for e in retries] == [0.001, 0.002]
    assert all(e.extra["invoked"] is True for e in events.events)
    assert "down 1" in events.events[1].extra["exception"]


async def test_exhausted_retries_raise_one_flow_error_and_report_node_failed() -> None:
    calls = 0

    async def broken(x: int, ctx: Context) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError(f"boom {calls}")

    events = Recorder()
    node = Node(broken, policy=NodePolicy(max_retries=2, backoff_base=0.0))
    with anyio.fail_after(5), pytest.raises(FlowError) as caught:
        await _flow(on_event=events).call_node(node, 0, trace_id="t", extra={"k": "v"})
    error = caught.value
    assert calls == 3
    assert error.code is FlowErrorCode.NODE_EXCEPTION
    assert (error.trace_id, error.node_name, error.node_id) == ("t", "broken", node.node_id)
    assert isinstance(error.original_exc, RuntimeError)
    assert str(error.original_exc) == "boom 3"
    assert error.metadata["attempt"] == 2
    [failed] = [e for e in events.events if e.event_type == "node_failed"]
    assert failed.attempt == 2
    assert failed.extra["flow_error"] == error.to_payload()
    assert (failed.extra["k"], failed.extra["invoked"]) == ("v", True)


async def test_retry_on_types_and_predicates_decide_what_is_retried() -> None:
    calls: list[str] = []

    async def fails_with(kind: str, ctx: Context) -> None:
        calls.append(kind)
        raise KeyError(kind) if kind == "key" else ValueError(kind)

    flow = _flow()
    only_key = Node(
        fails_with, policy=NodePolicy(max_retries=2, backoff_base=0.0, retry_on=(KeyError,))
    )
    with anyio.fail_after(5):
        with pytest.raises(FlowError):
            await flow.call_node(only_key, "value")
        assert calls == ["value"]  # not retried
        with pytest.raises(FlowError):
            await flow.call_node(only_key, "key")
        assert calls == ["value", "key", "key", "key"]
        calls.clear()
        predicate = NodePolicy(max_retries=5, backoff_base=0.0, retry_on=lambda exc: len(calls) < 2)
        with pytest.raises(FlowError):
            await flow.call_node(Node(fails_with, policy=predicate), "value")
        assert calls == ["value", "value"]


async def test_a_timeout_bounds_each_attempt() -> None:
    calls = 0
    cancelled: list[bool] = []

    async def slow_then_fast(x: int, ctx: Context) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            try:
                await anyio.sleep_forever()
            finally:
                cancelled.append(True)
        return "fast"

    events = Recorder()
    policy = NodePolicy(timeout_s=0.02, max_retries=1, backoff_base=0.0)
    flow = _flow(on_event=events)
    with anyio.fail_after(5):
        assert await flow.call_node(Node(slow_then_fast, policy=policy), 0) == "fast"
    assert cancelled == [True]
    assert events.kinds() == [
        ("node_start", 0),
        ("node_timeout", 0),
        ("node_retry", 1),
        ("node_start", 1),
        ("node_success", 1),
    ]

    async def stuck(x: int, ctx: Context) -> None:
        await anyio.sleep_forever()

    with anyio.fail_after(5), pytest.raises(FlowError) as caught:
        await flow.call_node(Node(stuck, policy=NodePolicy(timeout_s=0.01)), 0)
    assert caught.value.code is FlowErrorCode.NODE_TIMEOUT
    assert caught.value.metadata["timeout_s"] == 0.01
    assert isinstance(caught.value.original_exc, TimeoutError)


async def test_a_base_exception_propagates_unchanged_and_is_never_retried() -> None:
    calls = 0

    async def interrupted(x: int, ctx: Context) -> None:
        nonlocal calls
        calls += 1
        raise KeyboardInterrupt

    flow = _flow()
    node = Node(interrupted, policy=NodePolicy(max_retries=3, backoff_base=0.0))
    with anyio.fail_after(5):
        async with flow.running():
            with pytest.raises(KeyboardInterrupt):
                await flow.call_node(node, 0, trace_id="t")
            assert calls == 1
            assert flow.running_now  # the caller's task raised it, not a worker of the flow
            assert flow.statistics().live_traces == 0


async def test_an_outer_cancellation_propagates_as_itself() -> None:
    started = anyio.Event()

    async def hang(x: int, ctx: Context) -> None:
        started.set()
        await anyio.sleep_forever()

    flow = _flow()
    node = Node(hang, policy=NodePolicy(max_retries=3))
    with anyio.fail_after(5):
        async with flow.running():
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(flow.call_node, node, 0, None)
                    await started.wait()
                    scope.cancel()
            assert scope.cancelled_caught
            assert _idle(flow)


# ------------------------------------------------------------------------ validation


class In(BaseModel):
    n: int


class Out(BaseModel):
    doubled: int


async def test_registry_validation_applies_where_the_flow_registry_has_the_node() -> None:
    calls: list[Any] = []

    async def double(x: In, ctx: Context) -> Any:
        calls.append(x)
        return {"doubled": x.n * 2} if x.n >= 0 else {"wrong": True}

    registry = ModelRegistry()
    registry.register("_echo", Any, Any)
    registry.register("double", In, Out)
    flow = _flow()
    node = Node(double, policy=NodePolicy(max_retries=3, backoff_base=0.0))
    with anyio.fail_after(5):
        async with flow.running(registry=registry):
            assert await flow.call_node(node, {"n": 2}) == Out(doubled=4)
            assert calls == [In(n=2)]  # the input was validated into the model
            with pytest.raises(FlowError) as caught:
                await flow.call_node(node, {"n": "two"})
            assert caught.value.code is FlowErrorCode.VALIDATION_ERROR
            assert len(calls) == 1  # never ran, never retried
            with pytest.raises(FlowError) as caught:
                await flow.call_node(node, In(n=-1))
            assert caught.value.code is FlowErrorCode.VALIDATION_ERROR
            assert len(calls) == 2  # output validation failed once: not retried
            # the registry does not have this one: nothing is validated
            unregistered = Node(double, name="other")
            assert await flow.call_node(unregistered, In(n=-1)) == {"wrong": True}
            unvalidated = Node(double, policy=NodePolicy(validate="none"))
            assert await flow.call_node(unvalidated, In(n=-1)) == {"wrong": True}


# ------------------------------------------------------------------------- deadlines


async def test_a_passed_deadline_fails_before_start() -> None:
    calls = 0

    async def func(x: Any, ctx: Context) -> None:
        nonlocal calls
        calls += 1

    events = Recorder()
    flow = _flow(on_event=events)
    node = Node(func)
    with anyio.fail_after(5):
        with pytest.raises(FlowError) as caught:
            await flow.call_node(node, 0, deadline_s=time.time() - 1, extra={"k": 1})
        assert caught.value.code is FlowErrorCode.DEADLINE_EXCEEDED
        with pytest.raises(FlowError):  # a Message payload brings its own deadline
            await flow.call_node(node, _msg(0, deadline_s=time.time() - 1))
        assert await flow.call_node(node, 0, deadline_s=time.time() + 60) is None
    assert calls == 1
    assert events.kinds()[:2] == [("deadline_skip", 0), ("node_failed", 0)]
    assert events.events[0].extra["k"] == 1


async def test_interrupt_on_deadline_cancels_a_running_attempt() -> None:
    cancelled: list[bool] = []

    async def slow(x: Any, ctx: Context) -> None:
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.append(True)

    node = Node(slow, policy=NodePolicy(interrupt_on_deadline=True, max_retries=2))
    with anyio.fail_after(5), pytest.raises(FlowError) as caught:
        await _flow().call_node(node, 0, deadline_s=time.time() + 0.02)
    assert caught.value.code is FlowErrorCode.DEADLINE_EXCEEDED
    assert cancelled == [True]  # not retried


# ---------------------------------------------------------------------- cancellation


async def test_flow_cancel_interrupts_an_invocation_of_a_trace_not_yet_live() -> None:
    started = anyio.Event()
    cancelled: list[bool] = []

    async def hang(x: Any, ctx: Context) -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.append(True)

    events = Recorder()
    flow = _flow(on_event=events)
    outcome: list[BaseException] = []

    async def call() -> None:
        try:
            await flow.call_node(Node(hang, policy=NodePolicy(max_retries=3)), 0, trace_id="t")
        except TraceCancelled as exc:
            outcome.append(exc)

    before = _live_tasks()
    with anyio.fail_after(5):
        async with flow.running():
            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                await started.wait()
                assert flow.statistics().live_traces == 1  # the invocation holds the trace
                assert await flow.cancel("t") is True
            assert await flow.cancel("t") is False
            assert flow.statistics().live_traces == 0
            with pytest.raises(TraceCancelled):
                await flow.fetch(trace_id="t")  # the trace's ending is remembered
    assert _live_tasks() == before
    assert [type(exc) for exc in outcome] == [TraceCancelled]
    assert cancelled == [True]
    assert "node_trace_cancelled" in [kind for kind, _ in events.kinds("hang")]


async def test_cancelling_during_the_backoff_stops_the_retries() -> None:
    calls = 0
    failed = anyio.Event()

    async def fails(x: Any, ctx: Context) -> None:
        nonlocal calls
        calls += 1
        failed.set()
        raise ConnectionError("down")

    flow = _flow()
    node = Node(fails, policy=NodePolicy(max_retries=5, backoff_base=30.0))
    with anyio.fail_after(5):
        async with flow.running(), anyio.create_task_group() as tg:

            async def call() -> None:
                with pytest.raises(TraceCancelled):
                    await flow.call_node(node, 0, trace_id="t")

            tg.start_soon(call)
            await failed.wait()
            assert await flow.cancel("t")
    assert calls == 1


async def test_an_invocation_of_a_cancelled_trace_never_starts() -> None:
    started = anyio.Event()
    release = anyio.Event()

    async def hang(message: Any, ctx: Context) -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):  # keeps the cancelled trace live meanwhile
                await release.wait()

    calls = 0

    async def func(x: Any, ctx: Context) -> None:
        nonlocal calls
        calls += 1

    flow = create(Node(hang).to())
    with anyio.fail_after(5):
        async with flow.running(), anyio.create_task_group() as tg:
            await flow.emit(_msg(0, trace_id="t"))
            await started.wait()
            tg.start_soon(flow.cancel, "t")
            await anyio.wait_all_tasks_blocked()
            with pytest.raises(TraceCancelled):
                await flow.call_node(Node(func), 0, trace_id="t")
            release.set()
    assert calls == 0


async def test_stopping_the_flow_ends_a_traced_invocation_with_flow_stopped() -> None:
    started = anyio.Event()

    async def hang(x: Any, ctx: Context) -> None:
        started.set()
        await anyio.sleep_forever()

    flow = _flow()
    caught: list[BaseException] = []

    async def call() -> None:
        try:
            await flow.call_node(Node(hang), 0, trace_id="t")
        except FlowStopped as exc:
            caught.append(exc)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            async with flow.running():
                tg.start_soon(call)
                await started.wait()
    assert [type(exc) for exc in caught] == [FlowStopped]


# ----------------------------------------------------------------- max_concurrency


async def test_max_concurrency_bounds_invocations_across_callers() -> None:
    inflight = peak = 0
    release = anyio.Event()

    async def held(x: int, ctx: Context) -> int:
        nonlocal inflight, peak
        inflight += 1
        peak = max(peak, inflight)
        await release.wait()
        inflight -= 1
        return x

    node = Node(held, policy=NodePolicy(max_concurrency=2))
    flow = _flow()
    results: list[int] = []

    async def call(i: int) -> None:
        results.append(await flow.call_node(node, i, trace_id=f"t{i % 3}"))

    with anyio.fail_after(5):
        async with flow.running(), anyio.create_task_group() as tg:
            for i in range(6):
                tg.start_soon(call, i)
            await anyio.wait_all_tasks_blocked()
            assert (inflight, peak) == (2, 2)
            release.set()
    assert sorted(results) == list(range(6))
    assert peak == 2
    assert _idle(flow)


async def _concurrency_scenario(limit: int, callers: int, rng: random.Random) -> None:
    inflight = peak = 0
    delays = [rng.randrange(4) for _ in range(callers)]
    fail = {i for i in range(callers) if rng.random() < 0.2}

    async def tool_body(i: int, ctx: Context) -> int:
        nonlocal inflight, peak
        inflight += 1
        peak = max(peak, inflight)
        try:
            for _ in range(delays[i]):
                await anyio.lowlevel.checkpoint()
            if i in fail:
                raise ValueError(i)
            return i
        finally:
            inflight -= 1

    tool_node = Node(tool_body, policy=NodePolicy(max_concurrency=limit))

    async def caller(message: Message, ctx: Context) -> int:
        try:
            return await ctx.call_node(tool_node, message.payload)
        except FlowError:
            return -1

    flow = create(Node(caller).to())
    results: dict[int, int] = {}

    async def direct(i: int) -> None:
        try:
            results[i] = await flow.call_node(tool_node, i, trace_id=f"d{i % 4}")
        except FlowError:
            results[i] = -1

    with anyio.fail_after(10):
        async with flow.running(), anyio.create_task_group() as tg:
            via_ctx = [i for i in range(callers) if i % 2]
            for i in range(callers):
                if i % 2 == 0:
                    tg.start_soon(direct, i)
            for i in via_ctx:
                await flow.emit(_msg(i))
            for _ in via_ctx:
                item = await flow.fetch()
                results[len(results) + callers] = item
    assert peak <= limit
    assert inflight == 0
    assert _idle(flow)
    expected = [-1 if i in fail else i for i in range(callers)]
    assert sorted(results.values()) == sorted(expected)


@settings(max_examples=40, deadline=None)
@given(limit=st.integers(1, 4), callers=st.integers(1, 24), seed=st.integers(0, 2**32))
def test_call_node_never_exceeds_max_concurrency(limit: int, callers: int, seed: int) -> None:
    anyio.run(_concurrency_scenario, limit, callers, random.Random(seed))


async def _retry_scenario(failures: int, max_retries: int, retry_on_value: bool) -> None:
    calls = 0

    async def flaky(x: int, ctx: Context) -> str:
        nonlocal calls
        calls += 1
        if calls <= failures:
            raise ValueError(calls) if retry_on_value else KeyError(calls)
        return "ok"

    events = Recorder()
    policy = NodePolicy(max_retries=max_retries, backoff_base=0.0, retry_on=(ValueError,))
    flow = _flow(on_event=events)
    outcome: Any
    with anyio.fail_after(5):
        try:
            outcome = await flow.call_node(Node(flaky, policy=policy), 0)
        except FlowError as error:
            outcome = error
    retried = min(failures, max_retries) if retry_on_value else 0
    kinds = [kind for kind, _ in events.kinds()]
    assert kinds.count("node_retry") == retried
    assert kinds.count("node_start") == calls == retried + 1
    if failures <= retried:
        assert outcome == "ok"
        assert "node_failed" not in kinds
    else:
        assert isinstance(outcome, FlowError)
        assert outcome.metadata["attempt"] == retried
        assert kinds.count("node_failed") == 1
        assert kinds.count("node_error") == calls


@settings(max_examples=60, deadline=None)
@given(failures=st.integers(0, 5), max_retries=st.integers(0, 5), retry_on_value=st.booleans())
def test_retries_are_accounted_exactly(
    failures: int, max_retries: int, retry_on_value: bool
) -> None:
    anyio.run(_retry_scenario, failures, max_retries, retry_on_value)


# --------------------------------------------------------------------- ctx.call_node


async def test_ctx_call_node_belongs_to_the_current_trace() -> None:
    events = Recorder()

    async def inner(x: int, ctx: Context) -> int:
        return x + 1

    inner_node = Node(inner)

    async def outer(message: Message, ctx: Context) -> int:
        return await ctx.call_node(inner_node, message.payload, extra={"step": 1})

    flow = create(Node(outer).to(), on_event=events)
    message = _msg(1)
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(message)
            assert await flow.fetch() == 2
    invoked = [e for e in events.events if e.node_name == "inner"]
    assert [e.event_type.value for e in invoked] == ["node_start", "node_success"]
    assert {e.trace_id for e in invoked} == {message.trace_id}
    assert all(dict(e.extra) == {"step": 1, "invoked": True} for e in invoked)


async def test_ctx_call_node_inherits_the_message_deadline() -> None:
    calls = 0

    async def inner(x: int, ctx: Context) -> None:
        nonlocal calls
        calls += 1

    inner_node = Node(inner)

    async def outer(message: Message, ctx: Context) -> str:
        await ctx.call_node(inner_node, 0)  # before the deadline: runs
        await anyio.sleep(max(message.deadline_s - time.time(), 0) + 0.01)  # type: ignore[operator]
        try:
            await ctx.call_node(inner_node, 0)
        except FlowError as error:
            return error.code.value
        return "ran"

    flow = create(Node(outer).to())
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(_msg(0, deadline_s=time.time() + 0.05))
            assert await flow.fetch() == "DEADLINE_EXCEEDED"
    assert calls == 1


async def test_ctx_call_node_is_cancelled_with_the_trace() -> None:
    started = anyio.Event()
    cancelled: list[bool] = []

    async def hang(x: Any, ctx: Context) -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.append(True)

    hang_node = Node(hang)

    async def outer(message: Message, ctx: Context) -> None:
        await ctx.call_node(hang_node, 0)

    flow = create(Node(outer).to())
    before = _live_tasks()
    message = _msg(0)
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(message)
            await started.wait()
            assert await flow.cancel(message.trace_id)
            with pytest.raises(TraceCancelled):
                await flow.fetch(trace_id=message.trace_id)
            assert flow.statistics().live_traces == 0
    assert cancelled == [True]
    assert _live_tasks() == before


async def test_ctx_call_node_needs_a_context_of_a_running_flow() -> None:
    with pytest.raises(RuntimeError, match="built by hand"):
        await Context(Node(_echo)).call_node(Node(_echo), 1)
