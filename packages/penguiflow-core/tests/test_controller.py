"""Controller loops: a node with a self-edge loops on WM until it returns a FinalAnswer."""

from __future__ import annotations

from collections import Counter
from typing import Any

import anyio

from penguiflow.core import (
    WM,
    Context,
    FinalAnswer,
    FlowError,
    FlowErrorCode,
    Headers,
    Message,
    Node,
    create,
)


def _query(text: str = "q", *, trace_id: str | None = None, **wm: Any) -> Message:
    payload = WM(query=text, **wm)
    if trace_id is None:
        return Message(payload=payload, headers=Headers(tenant="t"))
    return Message(payload=payload, headers=Headers(tenant="t"), trace_id=trace_id)


async def test_controller_loops_until_it_returns_a_final_answer() -> None:
    seen_hops: list[int] = []

    async def controller(msg: Message, ctx: Context) -> Message:
        wm: WM = msg.payload
        seen_hops.append(wm.hops)
        if len(wm.facts) == 3:
            return msg.with_payload(FinalAnswer(text=" ".join(wm.facts)))
        facts = [*wm.facts, f"fact{len(wm.facts)}"]
        return msg.with_payload(wm.model_copy(update={"facts": facts}))

    node = Node(controller, allow_cycle=True)
    flow = create(node.to(node))
    query = _query(budget_hops=10)
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(query)
            result = await flow.fetch()
    assert result.trace_id == query.trace_id
    assert result.payload == FinalAnswer(text="fact0 fact1 fact2")
    assert seen_hops == [0, 1, 2, 3]


async def test_controller_is_never_invoked_again_after_its_final_answer() -> None:
    # The reference re-invoked a controller after its FinalAnswer until Rookery filled up.
    calls: Counter[str] = Counter()
    traces = [f"trace-{i}" for i in range(10)]

    async def controller(msg: Message, ctx: Context) -> Message:
        calls[msg.trace_id] += 1
        wm: WM = msg.payload
        if wm.hops == 2:
            return msg.with_payload(FinalAnswer(text=f"done {msg.trace_id}"))
        return msg

    node = Node(controller, allow_cycle=True)
    flow = create(node.to(node), queue_maxsize=2)
    with anyio.fail_after(5):
        async with flow.running():
            for tid in traces:
                await flow.emit(_query(trace_id=tid))
            results = [await flow.fetch(trace_id=tid) for tid in traces]
            await anyio.wait_all_tasks_blocked()
            assert flow.statistics().live_traces == 0
            assert flow.statistics().rookery_buffered == 0
    assert [r.payload.text for r in results] == [f"done {tid}" for tid in traces]
    assert calls == dict.fromkeys(traces, 3)


async def test_single_trace_controller_stops_after_final_answer_with_tight_queues() -> None:
    calls = 0

    async def controller(msg: Message, ctx: Context) -> Message:
        nonlocal calls
        calls += 1
        return msg.with_payload(FinalAnswer(text="at once"))

    node = Node(controller, allow_cycle=True)
    flow = create(node.to(node), queue_maxsize=2)
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(_query())
            result = await flow.fetch()
            await anyio.wait_all_tasks_blocked()
            assert flow.statistics().rookery_buffered == 0
    assert result.payload.text == "at once"
    assert calls == 1


async def test_final_answer_goes_to_the_other_successor_not_back_to_the_controller() -> None:
    controller_calls = 0
    delivered: list[Any] = []

    async def controller(msg: Message, ctx: Context) -> Message:
        nonlocal controller_calls
        controller_calls += 1
        wm: WM = msg.payload
        if wm.hops < 2:
            return msg
        return msg.with_payload(FinalAnswer(text="answer"))

    async def sink(msg: Message, ctx: Context) -> Message:
        delivered.append(msg.payload)
        return msg.with_payload(f"sink got {msg.payload.text}")

    loop, out = Node(controller, allow_cycle=True), Node(sink)
    flow = create(loop.to(loop, out), out.to())
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(_query())
            result = await flow.fetch(from_="sink")
            await anyio.wait_all_tasks_blocked()
            assert flow.statistics().rookery_buffered == 0
    assert result.payload == "sink got answer"
    assert delivered == [FinalAnswer(text="answer")]
    assert controller_calls == 3


async def test_wm_returned_by_a_node_without_self_edge_fails_with_a_hint() -> None:
    # No return annotation, so create() cannot see it; the runtime must explain the fix.
    async def planner(msg: Message, ctx: Context):  # deliberately unannotated
        return msg.with_payload(WM(query="q"))

    flow = create(Node(planner).to(), emit_errors_to_rookery=True)
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(_query())
            error = await flow.fetch()
    assert isinstance(error, FlowError)
    assert error.node_name == "planner"
    assert "planner.to(planner)" in error.message
    assert "allow_cycle=True" in error.message


async def test_wm_without_self_edge_raises_in_a_trace_scoped_fetch() -> None:
    async def planner(msg: Message, ctx: Context):  # deliberately unannotated
        return WM(query="q")  # bare WM is re-wrapped in the input envelope

    flow = create(Node(planner).to())
    query = _query()
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(query)
            try:
                await flow.fetch(trace_id=query.trace_id)
            except FlowError as error:
                caught = error
            else:
                raise AssertionError("expected a FlowError")
    assert caught.code is FlowErrorCode.NODE_EXCEPTION
    assert "planner.to(planner)" in str(caught)


async def test_controller_hops_are_counted_by_the_runtime() -> None:
    hops: list[int] = []

    async def controller(msg: Message, ctx: Context) -> Message:
        wm: WM = msg.payload
        hops.append(wm.hops)
        if wm.hops >= 4:
            return msg.with_payload(FinalAnswer(text="ok"))
        return msg  # returned unchanged: the runtime still advances hops

    node = Node(controller, allow_cycle=True)
    flow = create(node.to(node))
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(_query(budget_hops=None))
            await flow.fetch()
    assert hops == [0, 1, 2, 3, 4]
