"""Property tests: joins, per-trace order and the accounting invariant under random schedules."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.lowlevel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from penguiflow.core import (
    WM,
    BudgetExhausted,
    Context,
    FlowError,
    FlowErrorCode,
    Headers,
    Message,
    Node,
    NodePolicy,
    PenguiFlow,
    TraceCancelled,
    create,
    join_k,
)

FAST_SETTINGS = settings(max_examples=100, deadline=None)
# Each accounting example waits out real (10 ms) timeouts, so it runs fewer examples.
SLOW_SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def _live_tasks() -> set[asyncio.Task[Any]]:
    return {task for task in asyncio.all_tasks() if not task.done()}


def _assert_released(flow: PenguiFlow) -> None:
    stats = flow.statistics()
    assert not stats.running
    assert stats.live_traces == 0
    assert stats.lanes == 0
    assert stats.queued == 0
    assert stats.rookery_keys == 0
    assert stats.workers == 0
    assert stats.streams == 0


async def _yield(times: int) -> None:
    for _ in range(times):
        await anyio.lowlevel.checkpoint()


# --------------------------------------------------------------------------- join_k


async def _join_scenario(width: int, maxsize: int, traces: int, rng: random.Random) -> None:
    async def split(msg: Message, ctx: Context) -> Message:
        return msg

    def branch(index: int) -> Node:
        async def work(msg: Message, ctx: Context) -> Message:
            await _yield(rng.randrange(4))
            return msg.with_payload((index, msg.payload)).with_meta(**{f"b{index}": index})

        return Node(work, name=f"branch{index}")

    async def sink(msg: Message, ctx: Context) -> Message:
        return msg

    head, tail = Node(split), Node(sink)
    branches = [branch(i) for i in range(width)]
    join = join_k("join", width)
    flow = create(
        head.to(*branches),
        *(b.to(join) for b in branches),
        join.to(tail),
        tail.to(),
        queue_maxsize=maxsize,
    )
    before = _live_tasks()
    results: list[Message] = []
    with anyio.fail_after(10):
        async with flow.running(), anyio.create_task_group() as tg:

            async def produce() -> None:
                for n in range(traces):
                    await flow.emit(
                        Message(payload=n, headers=Headers(tenant="t"), trace_id=f"t{n}")
                    )

            tg.start_soon(produce)
            for _ in range(traces):
                results.append(await flow.fetch())
        # Nothing beyond one result per trace may show up.
        assert flow.statistics().rookery_buffered == 0
    assert _live_tasks() == before
    _assert_released(flow)
    assert join.func.buckets == {}  # type: ignore[attr-defined]
    by_trace = {m.trace_id: m for m in results}
    assert len(by_trace) == traces == len(results)
    for n in range(traces):
        joined = by_trace[f"t{n}"]
        assert sorted(joined.payload) == [(i, n) for i in range(width)]
        assert joined.meta == {f"b{i}": i for i in range(width)}


@FAST_SETTINGS
@given(
    width=st.integers(2, 6),
    maxsize=st.integers(1, 3),
    traces=st.integers(1, 15),
    seed=st.integers(0, 2**32),
)
def test_join_k_emits_exactly_one_complete_result_per_trace(
    width: int, maxsize: int, traces: int, seed: int
) -> None:
    anyio.run(_join_scenario, width, maxsize, traces, random.Random(seed))


# ---------------------------------------------------------------------- per-trace FIFO


async def _fifo_scenario(schedule: list[int], maxsize: int, rng: random.Random) -> None:
    seen_at_last: dict[str, list[int]] = {}

    def stage(name: str, record: bool) -> Node:
        async def work(msg: Message, ctx: Context) -> Message:
            await _yield(rng.randrange(5))
            if record:
                seen_at_last.setdefault(msg.trace_id, []).append(msg.payload)
            return msg

        return Node(work, name=name)

    a, b, c = stage("a", False), stage("b", False), stage("c", True)
    flow = create(a.to(b), b.to(c), c.to(), queue_maxsize=maxsize)
    counts: dict[str, int] = {}
    fetched: dict[str, list[int]] = {}
    before = _live_tasks()
    with anyio.fail_after(10):
        async with flow.running(), anyio.create_task_group() as tg:

            async def produce() -> None:
                for trace in schedule:
                    tid = f"t{trace}"
                    seq = counts[tid] = counts.get(tid, -1) + 1
                    await flow.emit(Message(payload=seq, headers=Headers(tenant="t"), trace_id=tid))
                    await _yield(rng.randrange(2))

            tg.start_soon(produce)
            for _ in schedule:
                item = await flow.fetch()
                fetched.setdefault(item.trace_id, []).append(item.payload)
    assert _live_tasks() == before
    _assert_released(flow)
    expected = {tid: list(range(n + 1)) for tid, n in counts.items()}
    assert seen_at_last == expected
    assert fetched == expected


@FAST_SETTINGS
@given(
    schedule=st.lists(st.integers(0, 7), min_size=1, max_size=60),
    maxsize=st.integers(1, 4),
    seed=st.integers(0, 2**32),
)
def test_messages_of_each_trace_stay_in_order_under_random_interleaving(
    schedule: list[int], maxsize: int, seed: int
) -> None:
    anyio.run(_fifo_scenario, schedule, maxsize, random.Random(seed))


# ---------------------------------------------------------------- accounting invariant

BEHAVIOURS = ("ok", "fail", "timeout", "flaky1", "flaky2", "deadline", "loop", "hang")


class _Fatal(Exception):
    """Not retried (see the worker's retry_on)."""


class _Transient(Exception):
    """Retried."""


@dataclass
class _Plan:
    behaviour: str
    cancel: bool
    cancel_after: int
    outcome: list[Any] = field(default_factory=list[Any])
    cancelled: bool | None = None


def _expected(plan: _Plan) -> str:
    return {
        "ok": "result",
        "flaky1": "result",
        "flaky2": "result",
        "fail": FlowErrorCode.NODE_EXCEPTION,
        "timeout": FlowErrorCode.NODE_TIMEOUT,
        "deadline": FlowErrorCode.DEADLINE_EXCEEDED,
        "loop": FlowErrorCode.HOP_BUDGET_EXHAUSTED,
        "hang": "cancelled",
    }[plan.behaviour]


def _classify(outcome: Any) -> str:
    if isinstance(outcome, TraceCancelled):
        return "cancelled"
    if isinstance(outcome, FlowError):
        return outcome.code
    if isinstance(outcome, Message) and isinstance(outcome.payload, BudgetExhausted):
        return outcome.payload.code
    if isinstance(outcome, Message) and outcome.payload == "done":
        return "result"
    return f"unexpected: {outcome!r}"


async def _accounting_scenario(plans: list[_Plan], maxsize: int) -> None:
    attempts: dict[str, int] = {}

    async def entry(msg: Message, ctx: Context) -> Message:
        return msg

    async def worker(msg: Message, ctx: Context) -> Any:
        payload = msg.payload
        if isinstance(payload, WM):  # a controller loop that never answers
            return msg
        behaviour: str = payload
        attempt = attempts[msg.trace_id] = attempts.get(msg.trace_id, 0) + 1
        if behaviour == "fail":
            raise _Fatal("permanent")
        if behaviour in ("timeout", "hang"):
            await anyio.sleep_forever()
        if behaviour.startswith("flaky") and attempt <= int(behaviour[-1]):
            raise _Transient(f"attempt {attempt}")
        if behaviour == "loop":
            return msg.with_payload(WM(query="q", budget_hops=2))
        return msg.with_payload("done")

    async def exit_(msg: Message, ctx: Context) -> Message:
        return msg

    def retry(exc: BaseException) -> bool:
        return not isinstance(exc, _Fatal)

    policy = NodePolicy(
        timeout_s=0.01, max_retries=2, backoff_base=0.001, retry_on=retry, validate="none"
    )
    head = Node(entry)
    work = Node(worker, policy=policy, allow_cycle=True)
    tail = Node(exit_, name="exit")
    flow = create(
        head.to(work),
        work.to(work, tail),
        tail.to(),
        queue_maxsize=maxsize,
        emit_errors_to_rookery=True,
    )

    def message(index: int, plan: _Plan) -> Message:
        deadline = time.time() - 1 if plan.behaviour == "deadline" else None
        return Message(
            payload=plan.behaviour,
            headers=Headers(tenant="t"),
            trace_id=f"t{index}",
            deadline_s=deadline,
        )

    async def consume(tid: str, plan: _Plan) -> None:
        try:
            plan.outcome.append(await flow.fetch(trace_id=tid))
        except TraceCancelled as exc:
            plan.outcome.append(exc)

    async def cancel_later(tid: str, plan: _Plan) -> None:
        await _yield(plan.cancel_after)
        plan.cancelled = await flow.cancel(tid)

    before = _live_tasks()
    with anyio.fail_after(10):
        flow.run()
        async with anyio.create_task_group() as tg:
            for index, plan in enumerate(plans):
                tg.start_soon(consume, f"t{index}", plan)
            await anyio.wait_all_tasks_blocked()  # every consumer waits before anything runs
            for index, plan in enumerate(plans):
                await flow.emit(message(index, plan))
                if plan.cancel:
                    tg.start_soon(cancel_later, f"t{index}", plan)
        await anyio.wait_all_tasks_blocked()
        leftovers: list[Any] = []
        while flow.statistics().rookery_buffered:
            leftovers.append(flow.fetch_nowait())
        await flow.stop()
    assert _live_tasks() == before
    _assert_released(flow)
    assert leftovers == []  # nothing duplicated: one terminal outcome per trace, fetched
    for index, plan in enumerate(plans):
        assert len(plan.outcome) == 1, (index, plan)
        got = _classify(plan.outcome[0])
        if plan.cancelled:
            assert got == "cancelled", (index, plan)
        else:
            assert got == _expected(plan), (index, plan)
        if got not in ("cancelled", "result", FlowErrorCode.DEADLINE_EXCEEDED):
            assert plan.outcome[0].trace_id == f"t{index}"


@st.composite
def _plans(draw: st.DrawFn) -> list[_Plan]:
    count = draw(st.integers(1, 24))
    plans: list[_Plan] = []
    for _ in range(count):
        behaviour = draw(st.sampled_from(BEHAVIOURS))
        cancel = behaviour == "hang" or draw(st.booleans())
        plans.append(_Plan(behaviour, cancel, draw(st.integers(0, 8))))
    return plans


@SLOW_SETTINGS
@given(plans=_plans(), maxsize=st.integers(1, 4))
def test_every_trace_ends_in_exactly_one_terminal_outcome(plans: list[_Plan], maxsize: int) -> None:
    anyio.run(_accounting_scenario, plans, maxsize)
