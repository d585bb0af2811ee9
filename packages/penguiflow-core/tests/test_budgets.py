"""Hop and token budgets and deadlines end a run with one typed outcome."""

from __future__ import annotations

import time
from typing import Any

import anyio

from penguiflow.core import (
    WM,
    BudgetExhausted,
    Context,
    FinalAnswer,
    FlowEvent,
    FlowEventType,
    Headers,
    Message,
    Node,
    NodePolicy,
    PenguiFlow,
    create,
)


def _query(*, deadline_s: float | None = None, **wm: Any) -> Message:
    return Message(payload=WM(query="q", **wm), headers=Headers(tenant="t"), deadline_s=deadline_s)


async def _one_result(flow: PenguiFlow, message: Message) -> Message:
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(message)
            result = await flow.fetch()
            await anyio.wait_all_tasks_blocked()
            assert flow.statistics().rookery_buffered == 0  # the outcome is the only item
            assert flow.statistics().live_traces == 0
    return result


async def test_hop_budget_ends_the_loop_with_a_typed_outcome() -> None:
    calls = 0
    events: list[FlowEvent] = []

    async def never_done(msg: Message, ctx: Context) -> Message:
        nonlocal calls
        calls += 1
        wm: WM = msg.payload
        return msg.with_payload(wm.model_copy(update={"facts": [*wm.facts, calls]}))

    node = Node(never_done, allow_cycle=True)
    flow = create(node.to(node), on_event=events.append)
    query = _query(budget_hops=3)
    result = await _one_result(flow, query)
    outcome = result.payload
    assert isinstance(outcome, BudgetExhausted)
    assert isinstance(outcome, FinalAnswer)
    assert outcome.code == "HOP_BUDGET_EXHAUSTED"
    assert outcome.text == "Hop budget exhausted"
    assert outcome.hops == 3
    assert outcome.facts == [1, 2, 3]
    assert calls == 3
    assert result.trace_id == query.trace_id
    exhausted = [e for e in events if e.event_type is FlowEventType.BUDGET_EXHAUSTED]
    assert len(exhausted) == 1
    assert exhausted[0].extra["code"] == "HOP_BUDGET_EXHAUSTED"
    assert exhausted[0].trace_id == query.trace_id


async def test_token_budget_ends_the_loop_with_a_typed_outcome() -> None:
    calls = 0

    async def spends_tokens(msg: Message, ctx: Context) -> Message:
        nonlocal calls
        calls += 1
        wm: WM = msg.payload
        return msg.with_payload(wm.model_copy(update={"tokens_used": wm.tokens_used + 10}))

    node = Node(spends_tokens, allow_cycle=True)
    flow = create(node.to(node))
    result = await _one_result(flow, _query(budget_hops=None, budget_tokens=25))
    assert isinstance(result.payload, BudgetExhausted)
    assert result.payload.code == "TOKEN_BUDGET_EXHAUSTED"
    assert result.payload.text == "Token budget exhausted"
    assert calls == 3


async def test_final_answer_within_budget_is_not_replaced_by_a_budget_outcome() -> None:
    async def answers_on_last_hop(msg: Message, ctx: Context) -> Message:
        wm: WM = msg.payload
        if wm.hops == 1:
            return msg.with_payload(FinalAnswer(text="just in time"))
        return msg

    node = Node(answers_on_last_hop, allow_cycle=True)
    flow = create(node.to(node))
    result = await _one_result(flow, _query(budget_hops=2))
    assert type(result.payload) is FinalAnswer
    assert result.payload.text == "just in time"


async def test_past_deadline_skips_the_node_and_delivers_deadline_exceeded() -> None:
    calls = 0
    events: list[FlowEvent] = []

    async def expensive(msg: Message, ctx: Context) -> Message:
        nonlocal calls
        calls += 1
        return msg

    async def after(msg: Message, ctx: Context) -> Message:
        nonlocal calls
        calls += 1
        return msg

    first, second = Node(expensive), Node(after)
    flow = create(first.to(second), second.to(), on_event=events.append)
    query = Message(payload="work", headers=Headers(tenant="t"), deadline_s=time.time() - 1)
    result = await _one_result(flow, query)
    assert calls == 0
    assert isinstance(result.payload, BudgetExhausted)
    assert result.payload.code == "DEADLINE_EXCEEDED"
    assert result.payload.text == "Deadline exceeded"
    assert result.trace_id == query.trace_id
    skips = [e for e in events if e.event_type is FlowEventType.DEADLINE_SKIP]
    assert [(e.node_name, e.trace_id) for e in skips] == [("expensive", query.trace_id)]
    assert not any(e.event_type is FlowEventType.NODE_START for e in events)


async def test_deadline_passing_inside_a_controller_loop_ends_it() -> None:
    calls = 0
    events: list[FlowEvent] = []

    async def controller(msg: Message, ctx: Context) -> Message:
        nonlocal calls
        calls += 1
        if calls == 2:  # the run's deadline passes during this hop
            return msg.model_copy(update={"deadline_s": time.time() - 1})
        return msg

    node = Node(controller, allow_cycle=True)
    flow = create(node.to(node), on_event=events.append)
    query = _query(budget_hops=None, deadline_s=time.time() + 60)
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(query)
            # a loop with no hop or token budget hands each intermediate state to Rookery
            progress = await flow.fetch()
            result = await flow.fetch()
            await anyio.wait_all_tasks_blocked()
            assert flow.statistics().rookery_buffered == 0
            assert flow.statistics().live_traces == 0
    assert isinstance(progress, Message)
    assert isinstance(progress.payload, WM)
    assert progress.payload.hops == 1
    assert progress.trace_id == query.trace_id
    assert isinstance(result, Message)
    assert isinstance(result.payload, BudgetExhausted)
    assert result.payload.code == "DEADLINE_EXCEEDED"
    assert result.trace_id == query.trace_id
    assert calls == 2
    assert any(e.event_type is FlowEventType.DEADLINE_SKIP for e in events)


async def test_interrupt_on_deadline_cancels_a_running_node() -> None:
    saw_cancel: list[bool] = []
    entered = anyio.Event()

    async def slow(msg: Message, ctx: Context) -> Message:
        entered.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            saw_cancel.append(True)
            raise
        return msg

    node = Node(slow, policy=NodePolicy(interrupt_on_deadline=True))
    events: list[FlowEvent] = []
    flow = create(node.to(), on_event=events.append)
    query = Message(payload="x", headers=Headers(tenant="t"), deadline_s=time.time() + 0.05)
    result = await _one_result(flow, query)
    assert entered.is_set()
    assert saw_cancel == [True]
    assert isinstance(result.payload, BudgetExhausted)
    assert result.payload.code == "DEADLINE_EXCEEDED"
    assert [e.event_type.value for e in events if e.node_name == "slow"] == [
        "node_start",
        "deadline_skip",
    ]


async def test_without_interrupt_on_deadline_a_running_node_finishes() -> None:
    release = anyio.Event()

    async def slow(msg: Message, ctx: Context) -> str:
        await release.wait()
        return "finished"

    flow = create(Node(slow).to())
    deadline = time.time() + 0.01
    query = Message(payload="x", headers=Headers(tenant="t"), deadline_s=deadline)
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(query)
            await anyio.wait_all_tasks_blocked()
            await anyio.sleep(deadline - time.time() + 0.005)  # the deadline passes mid-run
            assert time.time() > deadline
            release.set()
            result = await flow.fetch()
    assert result == "finished"
