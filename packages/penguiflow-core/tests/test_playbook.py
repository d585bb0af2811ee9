"""Subflows: ctx.call_playbook runs a child flow inside the caller's trace."""

from __future__ import annotations

from typing import Any

import anyio

from penguiflow.core import (
    Context,
    FlowError,
    FlowErrorCode,
    FlowEvent,
    Headers,
    Message,
    Node,
    PenguiFlow,
    TraceCancelled,
    create,
)


def _msg(payload: Any, trace_id: str = "parent-trace") -> Message:
    return Message(payload=payload, headers=Headers(tenant="t"), trace_id=trace_id)


class _ChildFactory:
    """Builds child flows from one node function and remembers them."""

    def __init__(self, func: Any, **create_kwargs: Any) -> None:
        self.func = func
        self.create_kwargs = create_kwargs
        self.built: list[PenguiFlow] = []

    def __call__(self) -> PenguiFlow:
        flow = create(Node(self.func, name="child_work").to(), **self.create_kwargs)
        self.built.append(flow)
        return flow


async def _run_parent(
    factory: _ChildFactory,
    *,
    timeout: float | None = None,
    envelope: bool = False,
    **create_kwargs: Any,
) -> Any:
    """Run a parent node calling the child; ``envelope`` adds a successor that declares a
    ``Message`` input, so the result comes back in the envelope it travelled in."""

    async def parent(msg: Message, ctx: Context) -> Any:
        return await ctx.call_playbook(factory, msg, timeout=timeout)

    async def enveloped(msg: Message, ctx: Context) -> Message:
        return msg

    node = Node(parent)
    if envelope:
        after = Node(enveloped)
        adjacencies = (node.to(after), after.to())
    else:
        adjacencies = (node.to(),)
    flow = create(*adjacencies, emit_errors_to_rookery=True, **create_kwargs)
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(_msg("question"))
            result = await flow.fetch()
            await anyio.wait_all_tasks_blocked()
            assert flow.statistics().live_traces == 0
    return result


async def test_call_playbook_returns_the_childs_payload() -> None:
    seen_traces: list[str] = []

    async def child(msg: Message, ctx: Context) -> Message:
        seen_traces.append(msg.trace_id)
        return msg.with_payload(f"answer to {msg.payload}").with_meta(source="child")

    factory = _ChildFactory(child)
    result = await _run_parent(factory)
    assert result == "answer to question"  # the parent returned the bare payload: fetched as is
    assert seen_traces == ["parent-trace"]
    enveloped = await _run_parent(factory, envelope=True)
    assert isinstance(enveloped, Message)
    assert enveloped.payload == "answer to question"
    assert enveloped.trace_id == "parent-trace"
    assert enveloped.meta == {"source": "child"}  # the child's final meta merges into the caller's
    assert seen_traces == ["parent-trace", "parent-trace"]
    assert len(factory.built) == 2  # one child flow per call
    for child_flow in factory.built:
        assert not child_flow.statistics().running
        assert child_flow.statistics().workers == 0


async def test_child_failure_fails_the_parent_node() -> None:
    async def child(msg: Message, ctx: Context) -> Message:
        raise ValueError("child broke")

    error = await _run_parent(_ChildFactory(child))
    assert isinstance(error, FlowError)
    assert error.node_name == "parent"
    assert error.trace_id == "parent-trace"
    assert error.code is FlowErrorCode.NODE_EXCEPTION
    cause = error.original_exc
    assert isinstance(cause, FlowError)
    assert cause.node_name == "child_work"
    assert isinstance(cause.original_exc, ValueError)


async def test_child_failure_delivered_to_the_childs_rookery_is_raised_too() -> None:
    async def child(msg: Message, ctx: Context) -> Message:
        raise ValueError("child broke")

    error = await _run_parent(_ChildFactory(child, emit_errors_to_rookery=True))
    assert isinstance(error, FlowError)
    assert error.node_name == "parent"
    assert isinstance(error.original_exc, FlowError)
    assert error.original_exc.node_name == "child_work"


async def test_call_playbook_timeout_stops_the_child() -> None:
    child_cancelled: list[bool] = []

    async def child(msg: Message, ctx: Context) -> Message:
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            child_cancelled.append(True)
            raise
        return msg

    factory = _ChildFactory(child)
    error = await _run_parent(factory, timeout=0.05)
    assert isinstance(error, FlowError)
    assert error.node_name == "parent"
    assert error.code is FlowErrorCode.NODE_TIMEOUT
    timeout = error.original_exc  # call_playbook's own FlowError: never a bare TimeoutError
    assert isinstance(timeout, FlowError) and timeout.code is FlowErrorCode.NODE_TIMEOUT
    assert isinstance(timeout.original_exc, TimeoutError)
    assert child_cancelled == [True]
    assert not factory.built[0].statistics().running


async def test_call_playbook_in_an_already_cancelled_trace_raises_trace_cancelled() -> None:
    entered = anyio.Event()
    outcome: list[BaseException] = []

    async def child(msg: Message, ctx: Context) -> Message:
        return msg

    factory = _ChildFactory(child)

    async def parent(msg: Message, ctx: Context) -> Any:
        try:
            entered.set()
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):  # the trace is being cancelled now
                try:
                    await ctx.call_playbook(factory, msg)
                except TraceCancelled as exc:
                    outcome.append(exc)

    flow = create(Node(parent).to())
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(_msg("q"))
            await entered.wait()
            assert await flow.cancel("parent-trace")
    assert len(outcome) == 1
    assert isinstance(outcome[0], TraceCancelled)
    assert outcome[0].trace_id == "parent-trace"
    assert factory.built == []  # the child flow was never even built


async def test_child_inherits_the_parents_event_hook() -> None:
    events: list[FlowEvent] = []

    async def child(msg: Message, ctx: Context) -> Message:
        return msg

    result = await _run_parent(_ChildFactory(child), on_event=events.append)
    assert result == "question"
    child_events = [(e.event_type.value, e.trace_id) for e in events if e.node_name == "child_work"]
    assert ("node_start", "parent-trace") in child_events
    assert ("node_success", "parent-trace") in child_events


async def test_child_can_opt_out_of_the_parents_observability() -> None:
    events: list[FlowEvent] = []

    async def child(msg: Message, ctx: Context) -> Message:
        return msg

    factory = _ChildFactory(child)

    async def parent(msg: Message, ctx: Context) -> Any:
        return await ctx.call_playbook(factory, msg, inherit_observability=False)

    flow = create(Node(parent).to(), on_event=events.append)
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(_msg("q"))
            await flow.fetch()
    assert any(e.node_name == "parent" for e in events)
    assert not any(e.node_name == "child_work" for e in events)
