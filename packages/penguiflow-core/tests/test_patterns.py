"""Patterns: map_concurrent (bounded, ordered) and join_k (per-trace buckets, freed at the end)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from penguiflow.core import (
    Context,
    FlowError,
    FlowErrorCode,
    FlowEvent,
    Headers,
    Message,
    Node,
    NodePolicy,
    PenguiFlow,
    create,
    current_trace_id,
    join_k,
    map_concurrent,
)

# ------------------------------------------------------------------------ map_concurrent


class InFlight:
    """A worker that counts how many of its calls run at once."""

    def __init__(self, yields: int = 3) -> None:
        self.yields = yields
        self.now = 0
        self.peak = 0
        self.started: list[int] = []

    async def __call__(self, item: int) -> int:
        self.started.append(item)
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            for _ in range(self.yields):
                await anyio.lowlevel.checkpoint()
            return item * 10
        finally:
            self.now -= 1


async def test_map_concurrent_preserves_input_order_when_calls_finish_out_of_order() -> None:
    finished: list[int] = []

    async def worker(item: int) -> str:
        for _ in range(10 - item):  # later items finish first
            await anyio.lowlevel.checkpoint()
        finished.append(item)
        return f"r{item}"

    with anyio.fail_after(5):
        results = await map_concurrent(range(10), worker, max_concurrency=10)
    assert results == [f"r{i}" for i in range(10)]
    assert finished == list(reversed(range(10)))


async def test_map_concurrent_never_exceeds_its_bound_and_reaches_it() -> None:
    worker = InFlight()
    with anyio.fail_after(5):
        results = await map_concurrent(range(20), worker, max_concurrency=4)
    assert results == [i * 10 for i in range(20)]
    assert worker.peak == 4
    assert sorted(worker.started) == list(range(20))


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(min_value=0, max_value=30),
    limit=st.integers(min_value=1, max_value=10),
    yields=st.integers(min_value=1, max_value=4),
)
def test_map_concurrent_order_and_bound_hold_for_any_size(n: int, limit: int, yields: int) -> None:
    worker = InFlight(yields)

    async def scenario() -> list[int]:
        with anyio.fail_after(5):
            return await map_concurrent(range(n), worker, max_concurrency=limit)

    assert anyio.run(scenario) == [i * 10 for i in range(n)]
    assert worker.peak == min(limit, n)
    assert worker.now == 0


async def test_map_concurrent_default_bound_is_eight() -> None:
    worker = InFlight()
    with anyio.fail_after(5):
        await map_concurrent(range(30), worker)
    assert worker.peak == 8


@pytest.mark.parametrize("limit", [0, -1])
async def test_map_concurrent_rejects_bound_below_one(limit: int) -> None:
    called: list[int] = []

    async def worker(item: int) -> int:
        called.append(item)
        return item

    with pytest.raises(ValueError, match=f"max_concurrency must be >= 1, got {limit}"):
        await map_concurrent([1, 2], worker, max_concurrency=limit)
    assert called == []


async def test_map_concurrent_of_nothing_is_an_empty_list() -> None:
    worker = InFlight()
    assert await map_concurrent([], worker) == []
    assert worker.started == []


async def test_map_concurrent_accepts_any_iterable_once() -> None:
    worker = InFlight()
    with anyio.fail_after(5):
        results = await map_concurrent((i for i in range(5)), worker, max_concurrency=2)
    assert results == [0, 10, 20, 30, 40]


async def test_map_concurrent_first_exception_propagates_as_itself_and_cancels_the_rest() -> None:
    boom = ValueError("item 3 failed")
    blocked = anyio.Event()  # never set: the other calls can only end by cancellation
    cancelled: list[int] = []
    started: list[int] = []
    in_flight = 0
    all_started = anyio.Event()

    async def worker(item: int) -> int:
        nonlocal in_flight
        started.append(item)
        in_flight += 1
        if in_flight == 4:
            all_started.set()
        if item == 3:
            await all_started.wait()
            raise boom
        try:
            await blocked.wait()
        except anyio.get_cancelled_exc_class():
            cancelled.append(item)
            raise
        return item

    with anyio.fail_after(5), pytest.raises(ValueError) as info:
        await map_concurrent(range(10), worker, max_concurrency=4)
    assert info.value is boom
    assert sorted(cancelled) == [0, 1, 2]
    assert sorted(started) == [0, 1, 2, 3]  # items 4..9 never started


async def test_map_concurrent_outer_cancellation_propagates() -> None:
    started = 0
    scope = anyio.CancelScope()

    async def worker(item: int) -> int:
        nonlocal started
        started += 1
        if started == 3:
            scope.cancel()
        await anyio.sleep_forever()
        return item

    with anyio.fail_after(5):
        with scope:
            await map_concurrent(range(10), worker, max_concurrency=3)
    assert scope.cancelled_caught
    assert started == 3


async def test_map_concurrent_inside_a_node() -> None:
    worker = InFlight()

    async def enrich(message: Message, ctx: Context) -> Message:
        return message.with_payload(
            await map_concurrent(message.payload, worker, max_concurrency=2)
        )

    node = Node(enrich, policy=NodePolicy(validate="none"))
    flow = create(node.to())
    async with flow.running():
        message = Message(payload=[3, 1, 2], headers=Headers(tenant="t"))
        await flow.emit(message)
        with anyio.fail_after(5):
            result = await flow.fetch(trace_id=message.trace_id)
    assert result.payload == [30, 10, 20]
    assert worker.peak == 2


# -------------------------------------------------------------------------------- join_k


@pytest.mark.parametrize("k", [0, -3])
def test_join_k_rejects_k_below_one(k: int) -> None:
    with pytest.raises(ValueError, match=rf"join_k\('j'\): k must be positive \(>= 1\), got {k}"):
        join_k("j", k)


@pytest.mark.parametrize("timeout_s", [0, -1.0])
def test_join_k_rejects_non_positive_timeout(timeout_s: float) -> None:
    with pytest.raises(ValueError, match=r"join_k\('j'\): timeout_s must be > 0"):
        join_k("j", 2, timeout_s=timeout_s)


def test_join_k_is_a_node_with_its_name_and_no_validation() -> None:
    node = join_k("gather", 2)
    assert node.name == "gather"
    assert node.policy.validate == "none"


def buckets_of(join: Node) -> dict[str | None, list[Any]]:
    """The join node's open buckets (internal state, observed to prove it is freed)."""
    func: Any = join.func
    return func.buckets


def timers_of(join: Node) -> dict[str | None, Any]:
    """The join node's pending timeout timers (internal state)."""
    func: Any = join.func
    return func._timers


async def until(condition: Callable[[], bool]) -> None:
    """Yield to the event loop until ``condition()`` holds (callers bound it with fail_after)."""
    while not condition():
        await anyio.lowlevel.checkpoint()


class GatedFanout:
    """``source → b0..b(n-1) → join → collect``; each branch waits for a gate per trace.

    An event hook counts finished join invocations per trace, so a test can wait for a half-full
    bucket without sleeping.
    """

    def __init__(
        self,
        k: int,
        *,
        branches: int | None = None,
        timeout_s: float | None = None,
        fail_branch: int | None = None,
        **create_kwargs: Any,
    ) -> None:
        self.gates: dict[tuple[str | None, int], anyio.Event] = {}
        self.join_successes: dict[str | None, int] = {}
        self.failed: list[str | None] = []
        self.changed = asyncio.Event()
        self.failure = asyncio.Event()
        self.branch_cancelled: list[tuple[str | None, int]] = []

        async def source(message: Any, ctx: Context) -> Any:
            return message

        def branch(index: int) -> Node:
            async def work(message: Any, ctx: Context) -> Any:
                trace = message.trace_id if isinstance(message, Message) else current_trace_id()
                try:
                    await self.gate(trace, index).wait()
                except anyio.get_cancelled_exc_class():
                    self.branch_cancelled.append((trace, index))
                    raise
                if index == fail_branch:
                    raise RuntimeError(f"branch {index} failed")
                if isinstance(message, Message):
                    return message.with_payload(index).with_meta(
                        **{f"b{index}": True, "last": index}
                    )
                return index

            return Node(work, name=f"b{index}", policy=NodePolicy(validate="none"))

        async def collect(message: Any, ctx: Context) -> Any:
            return message

        def on_event(event: FlowEvent) -> None:
            if event.node_name != "join":
                return
            if event.event_type == "node_success":
                trace = event.trace_id
                self.join_successes[trace] = self.join_successes.get(trace, 0) + 1
                self.changed.set()
            elif event.event_type == "node_failed":
                self.failed.append(event.trace_id)
                self.failure.set()

        none = NodePolicy(validate="none")
        self.source = Node(source, policy=none)
        self.branches = [branch(i) for i in range(branches or k)]
        self.join = join_k("join", k, timeout_s=timeout_s)
        self.collect = Node(collect, policy=none)
        self.flow: PenguiFlow = create(
            self.source.to(*self.branches),
            *(b.to(self.join) for b in self.branches),
            self.join.to(self.collect),
            self.collect.to(),
            on_event=on_event,
            **create_kwargs,
        )

    def gate(self, trace: str | None, index: int) -> anyio.Event:
        return self.gates.setdefault((trace, index), anyio.Event())

    def open(self, trace: str, *indexes: int) -> None:
        for index in indexes:
            self.gate(trace, index).set()

    async def joined(self, trace: str, count: int) -> None:
        """Wait until the join has taken ``count`` messages of ``trace``."""
        while self.join_successes.get(trace, 0) < count:
            self.changed.clear()
            await self.changed.wait()

    async def open_in_order(self, trace: str, indexes: Sequence[int]) -> None:
        """Open gates one at a time, each after the join has taken the previous branch."""
        base = self.join_successes.get(trace, 0)
        for done, index in enumerate(indexes, start=1):
            self.open(trace, index)
            await self.joined(trace, base + done)


def message(trace_id: str = "t1", **meta: Any) -> Message:
    return Message(payload="in", headers=Headers(tenant="acme"), trace_id=trace_id, meta=meta)


async def test_join_k_emits_only_after_exactly_k_messages() -> None:
    fan = GatedFanout(3)
    flow = fan.flow
    async with flow.running():
        await flow.emit(message())
        with anyio.fail_after(5):
            fan.open("t1", 0, 1)
            await fan.joined("t1", 2)
            assert len(buckets_of(fan.join)["t1"]) == 2
            assert flow.statistics().rookery_buffered == 0
            fan.open("t1", 2)
            result = await flow.fetch(trace_id="t1")
    assert isinstance(result, Message)
    assert sorted(result.payload) == [0, 1, 2]
    assert fan.join_successes == {"t1": 3}
    assert buckets_of(fan.join) == {}
    assert flow.statistics().live_traces == 0


async def test_join_k_payload_and_meta_follow_arrival_order_last_write_wins() -> None:
    fan = GatedFanout(3)
    flow = fan.flow
    async with flow.running():
        await flow.emit(message(origin="caller", last="caller"))
        with anyio.fail_after(5):
            await fan.open_in_order("t1", [2, 0, 1])
            result = await flow.fetch(trace_id="t1")
    assert isinstance(result, Message)
    assert result.payload == [2, 0, 1]
    assert result.meta == {"origin": "caller", "last": 1, "b0": True, "b1": True, "b2": True}
    assert result.trace_id == "t1"
    assert result.headers == Headers(tenant="acme")


async def test_join_k_keeps_one_bucket_per_trace() -> None:
    fan = GatedFanout(2)
    flow = fan.flow
    async with flow.running():
        await flow.emit(message("ta"))
        await flow.emit(message("tb"))
        with anyio.fail_after(5):
            await fan.open_in_order("ta", [0])
            await fan.open_in_order("tb", [1])
            assert {k: len(v) for k, v in buckets_of(fan.join).items()} == {"ta": 1, "tb": 1}
            assert flow.statistics().rookery_buffered == 0
            fan.open("tb", 0)
            second = await flow.fetch(trace_id="tb")
            assert list(buckets_of(fan.join)) == ["ta"]
            fan.open("ta", 1)
            first = await flow.fetch(trace_id="ta")
    assert (first.trace_id, first.payload) == ("ta", [0, 1])
    assert (second.trace_id, second.payload) == ("tb", [1, 0])
    assert buckets_of(fan.join) == {}


async def test_join_k_emits_once_per_k_even_when_more_arrive() -> None:
    fan = GatedFanout(2, branches=4)
    flow = fan.flow
    async with flow.running():
        await flow.emit(message())
        with anyio.fail_after(5):
            await fan.open_in_order("t1", [0, 1, 2, 3])
            first = await flow.fetch(trace_id="t1")
            second = await flow.fetch(trace_id="t1")
    assert (first.payload, second.payload) == ([0, 1], [2, 3])
    assert buckets_of(fan.join) == {}


async def test_join_k_of_bare_payloads_emits_the_list() -> None:
    fan = GatedFanout(2)
    flow = fan.flow
    async with flow.running():
        await flow.emit("bare", trace_id="t-bare")
        with anyio.fail_after(5):
            await fan.open_in_order("t-bare", [1, 0])
            result = await flow.fetch(trace_id="t-bare")
    assert result == [1, 0]
    assert buckets_of(fan.join) == {}


async def test_join_k_timeout_delivers_node_timeout_error_and_frees_the_bucket() -> None:
    fan = GatedFanout(2, timeout_s=0.05, emit_errors_to_rookery=True)
    flow = fan.flow
    async with flow.running():
        await flow.emit(message())
        with anyio.fail_after(5):
            fan.open("t1", 0)  # branch 1 has not arrived when the timeout fires
            error = await flow.fetch(trace_id="t1")
        assert isinstance(error, FlowError)
        assert error.code is FlowErrorCode.NODE_TIMEOUT
        assert error.trace_id == "t1"
        assert error.node_name == "join"
        assert error.node_id == fan.join.node_id
        assert error.metadata["received"] == 1
        assert error.metadata["expected"] == 2
        assert error.metadata["timeout_s"] == 0.05
        assert "1 of 2" in error.message
        assert fan.failed == ["t1"]
        assert buckets_of(fan.join) == {}
        assert timers_of(fan.join) == {}
        # The late branch does not complete the discarded bucket; the trace just ends.
        fan.open("t1", 1)
        with anyio.fail_after(5):
            await fan.joined("t1", 2)
            await until(lambda: flow.statistics().live_traces == 0)
        assert buckets_of(fan.join) == {}
        assert timers_of(fan.join) == {}
        assert flow.statistics().rookery_buffered == 0
        assert fan.failed == ["t1"]


async def test_join_k_timeout_without_rookery_errors_fails_the_waiting_fetch() -> None:
    fan = GatedFanout(2, timeout_s=0.05)
    flow = fan.flow
    async with flow.running():
        await flow.emit(message())
        fan.open("t1", 0)
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:

                async def release_late_branch() -> None:
                    await fan.failure.wait()
                    fan.open("t1", 1)  # the trace can end now, which answers the fetch

                tg.start_soon(release_late_branch)
                with pytest.raises(FlowError) as info:
                    await flow.fetch(trace_id="t1")
                assert info.value.code is FlowErrorCode.NODE_TIMEOUT
                assert info.value.node_name == "join"
    assert buckets_of(fan.join) == {}


async def test_join_k_completed_bucket_never_times_out_later() -> None:
    fan = GatedFanout(2, timeout_s=0.05, emit_errors_to_rookery=True)
    flow = fan.flow
    async with flow.running():
        await flow.emit(message("t1"))
        with anyio.fail_after(5):
            fan.open("t1", 0, 1)
            result = await flow.fetch(trace_id="t1")
            assert isinstance(result, Message)
            assert timers_of(fan.join) == {}
            # t2's timer starts after t1's would have, so once t2 times out t1's would have too.
            await flow.emit(message("t2"))
            fan.open("t2", 0)
            timeout_error = await flow.fetch(trace_id="t2")
    assert isinstance(timeout_error, FlowError)
    assert timeout_error.trace_id == "t2"
    assert fan.failed == ["t2"]
    assert flow.statistics().rookery_buffered == 0


async def test_join_k_bucket_and_timer_are_freed_when_its_trace_is_cancelled() -> None:
    fan = GatedFanout(3, timeout_s=30)
    flow = fan.flow
    async with flow.running():
        await flow.emit(message())
        with anyio.fail_after(5):
            fan.open("t1", 0, 1)
            await fan.joined("t1", 2)
            assert len(buckets_of(fan.join)["t1"]) == 2
            assert list(timers_of(fan.join)) == ["t1"]
            assert await flow.cancel("t1") is True
        assert buckets_of(fan.join) == {}
        assert timers_of(fan.join) == {}
        assert fan.branch_cancelled == [("t1", 2)]
        stats = flow.statistics()
        assert (stats.live_traces, stats.lanes, stats.queued) == (0, 0, 0)


async def test_join_k_bucket_is_freed_when_a_branch_fails() -> None:
    fan = GatedFanout(2, timeout_s=30, fail_branch=1, emit_errors_to_rookery=True)
    flow = fan.flow
    async with flow.running():
        await flow.emit(message())
        with anyio.fail_after(5):
            await fan.open_in_order("t1", [0])
            assert len(buckets_of(fan.join)["t1"]) == 1
            fan.open("t1", 1)
            error = await flow.fetch(trace_id="t1")
            assert isinstance(error, FlowError)
            assert error.node_name == "b1"
            await until(lambda: flow.statistics().live_traces == 0)
        assert buckets_of(fan.join) == {}
        assert timers_of(fan.join) == {}
        assert flow.statistics().rookery_buffered == 0
