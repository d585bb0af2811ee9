"""The runtime never changes what a node returns; the envelope still travels with bare values."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest

from penguiflow.core import (
    WM,
    BudgetExhausted,
    Context,
    FlowError,
    FlowErrorCode,
    Headers,
    Message,
    ModelRegistry,
    Node,
    NodePolicy,
    PenguiFlow,
    RegistryError,
    create,
    join_k,
)

HEADERS = Headers(tenant="acme", topic="t")


def msg(trace_id: str, payload: Any = "x", **meta: Any) -> Message:
    return Message(payload=payload, headers=HEADERS, trace_id=trace_id, meta=meta)


async def test_a_bare_result_is_fetched_as_returned_and_trace_scoped() -> None:
    async def shout(message: Message, ctx: Context) -> str:
        return str(message.payload).upper()

    flow = create(Node(shout).to())
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(msg("b", "bee"))
            await flow.emit(msg("a", "ay"))
            assert await flow.fetch(trace_id="a") == "AY"
            assert await flow.fetch(trace_id="b") == "BEE"


async def test_a_declared_successor_gets_the_bare_value_in_its_envelope() -> None:
    seen: dict[str, Any] = {}

    async def produce(message: Message, ctx: Context) -> int:
        return 41

    async def declared(message: Message, ctx: Context) -> Message:
        seen["declared"] = message
        return message.with_payload(message.payload + 1)

    async def undeclared(value: Any, ctx: Context) -> Any:
        seen["undeclared"] = value
        return value

    p, d, u = Node(produce), Node(declared), Node(undeclared)
    flow = create(p.to(d, u), d.to(), u.to())
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(msg("t1", "go", request="r1"))
            results = [await flow.fetch(trace_id="t1") for _ in range(2)]
    envelope = seen["declared"]
    assert isinstance(envelope, Message)
    assert (envelope.payload, envelope.trace_id, envelope.headers) == (41, "t1", HEADERS)
    assert envelope.meta == {"request": "r1"}
    assert seen["undeclared"] == 41
    assert sorted(r.payload if isinstance(r, Message) else r for r in results) == [41, 42]


async def test_a_successor_declared_in_the_registry_gets_the_envelope() -> None:
    seen: list[Any] = []

    async def produce(message: Message, ctx: Context) -> str:
        return "v"

    async def consume(message: Any, ctx: Context) -> str:  # annotation says nothing
        seen.append(message)
        return "done"

    p, c = Node(produce), Node(consume)
    registry = ModelRegistry()
    registry.register("produce", Message, str)
    registry.register("consume", Message, str)
    flow = create(p.to(c), c.to())
    with anyio.fail_after(5):
        async with flow.running(registry=registry):
            await flow.emit(msg("t1"))
            assert await flow.fetch(trace_id="t1") == "done"
    assert isinstance(seen[0], Message) and seen[0].payload == "v"


async def test_bare_branches_join_with_their_metas_merged() -> None:
    async def split(message: Message, ctx: Context) -> Message:
        return message

    def branch(name: str) -> Node:
        async def work(message: Message, ctx: Context) -> str:
            return f"{name}:{message.payload}"

        return Node(work, name=name)

    s, left, right = Node(split), branch("left"), branch("right")
    join = join_k("join", 2)
    flow = create(s.to(left, right), left.to(join), right.to(join), join.to())
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(msg("t1", "p", origin="caller"))
            joined = await flow.fetch(trace_id="t1")
    assert isinstance(joined, Message)
    assert sorted(joined.payload) == ["left:p", "right:p"]
    assert (joined.trace_id, joined.meta) == ("t1", {"origin": "caller"})


async def test_a_subflows_meta_travels_with_a_bare_result_and_the_parent_is_untouched() -> None:
    def child() -> PenguiFlow:
        async def answer(message: Message, ctx: Context) -> Message:
            return message.with_payload("answer").with_meta(source="child")

        return create(Node(answer).to())

    given: list[Message] = []
    seen: list[Message] = []

    async def parent(message: Message, ctx: Context) -> Any:
        given.append(message)
        return await ctx.call_playbook(child, message)

    async def after(message: Message, ctx: Context) -> Any:
        seen.append(message)
        return message.payload

    p, a = Node(parent), Node(after)
    flow = create(p.to(a), a.to())
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(msg("t1", "q", asked="yes"))
            assert await flow.fetch(trace_id="t1") == "answer"
    assert given[0].meta == {"asked": "yes"}  # never mutated
    assert seen[0].meta == {"asked": "yes", "source": "child"}


async def test_a_registered_message_output_returning_a_bare_value_warns_without_validation() -> (
    None
):
    async def bare(message: Message, ctx: Context) -> Any:
        return f"{message.payload}!"

    registry = ModelRegistry()
    registry.register("bare", Message, Message)
    flow = create(Node(bare, policy=NodePolicy(validate="none")).to())
    with anyio.fail_after(5), pytest.warns(RuntimeWarning, match="Message -> Message"):
        async with flow.running(registry=registry):
            await flow.emit(msg("t1", "hi"))
            assert await flow.fetch(trace_id="t1") == "hi!"


async def test_a_registered_message_output_returning_a_bare_value_fails_validation() -> None:
    async def bare(message: Message, ctx: Context) -> Any:
        return "not a message"

    registry = ModelRegistry()
    registry.register("bare", Message, Message)
    flow = create(Node(bare).to())
    with anyio.fail_after(5):
        async with flow.running(registry=registry):
            await flow.emit(msg("t1"))
            with pytest.raises(FlowError) as caught:
                await flow.fetch(trace_id="t1")
    assert caught.value.code is FlowErrorCode.VALIDATION_ERROR
    assert "message.with_payload" in caught.value.message


async def test_a_bare_value_whose_deadline_passes_midway_ends_as_a_bare_outcome() -> None:
    async def first(message: Message, ctx: Context) -> str:
        await anyio.sleep(0.05)  # the deadline passes while this runs
        return "value"

    async def second(value: Any, ctx: Context) -> str:
        raise AssertionError("never runs: the deadline passed")

    f, s = Node(first), Node(second)
    flow = create(f.to(s), s.to())
    with anyio.fail_after(5):
        async with flow.running():
            late = Message(
                payload="x", headers=HEADERS, trace_id="t1", deadline_s=time.time() + 0.02
            )
            await flow.emit(late)
            outcome = await flow.fetch(trace_id="t1")
    assert isinstance(outcome, BudgetExhausted)  # bare, as the value that travelled
    assert outcome.code is FlowErrorCode.DEADLINE_EXCEEDED


async def test_a_cancelled_trace_drops_its_bare_values_in_flight() -> None:
    gate = anyio.Event()

    async def first(message: Message, ctx: Context) -> str:
        return "v"

    async def stuck(value: Any, ctx: Context) -> str:
        await gate.wait()
        return value

    f, s = Node(first), Node(stuck)
    flow = create(f.to(s), s.to())
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(msg("t1"))
            await anyio.wait_all_tasks_blocked()
            assert await flow.cancel("t1")
            stats = flow.statistics()
            assert (stats.live_traces, stats.rookery_buffered) == (0, 0)


async def test_emit_with_a_trace_id_restamps_a_copy_of_the_message() -> None:
    async def echo(message: Message, ctx: Context) -> Message:
        return message

    original = msg("old")
    flow = create(Node(echo).to())
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(original, trace_id="new")
            result = await flow.fetch(trace_id="new")
    assert isinstance(result, Message) and result.trace_id == "new"
    assert original.trace_id == "old"


async def test_penguiflow_takes_adjacencies_like_create() -> None:
    async def echo(message: Any, ctx: Context) -> Any:
        return message

    node = Node(echo)
    flow = PenguiFlow(node.to(), queue_maxsize=3)
    assert flow.nodes == (node,)
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit("x", trace_id="t1")
            assert await flow.fetch(trace_id="t1") == "x"


async def test_a_registry_lacking_nodes_is_a_runtime_error_and_a_value_error() -> None:
    async def echo(message: Any, ctx: Context) -> Any:
        return message

    flow = create(Node(echo).to())
    for kind in (RegistryError, RuntimeError, ValueError):
        with pytest.raises(kind, match="missing entries for nodes requiring validation: 'echo'"):
            flow.run(registry=ModelRegistry())
    assert not flow.running_now


async def test_a_controller_that_counts_its_own_hops_is_not_counted_twice() -> None:
    hops: list[int] = []

    async def controller(message: Message, ctx: Context) -> Message:
        wm: WM = message.payload
        hops.append(wm.hops)
        return message.with_payload(wm.model_copy(update={"hops": wm.hops + 1}))

    node = Node(controller, allow_cycle=True)
    flow = create(node.to(node))
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(msg("t1", WM(query="q", budget_hops=4)))
            outcome = await flow.fetch(trace_id="t1")
    assert hops == [0, 1, 2, 3]
    assert isinstance(outcome, Message) and isinstance(outcome.payload, BudgetExhausted)
    assert outcome.payload.code is FlowErrorCode.HOP_BUDGET_EXHAUSTED


async def test_a_bare_wm_controller_loops_and_ends_with_a_bare_outcome() -> None:
    async def controller(message: Any, ctx: Context) -> WM:
        wm: WM = message.payload if isinstance(message, Message) else message
        return wm  # the runtime counts the hop

    node = Node(controller, allow_cycle=True)
    flow = create(node.to(node))
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(msg("t1", WM(query="q", budget_hops=3)))
            outcome = await flow.fetch(trace_id="t1")
    assert isinstance(outcome, BudgetExhausted) and outcome.hops == 3


async def test_an_unbudgeted_loop_hands_every_state_to_rookery() -> None:
    async def controller(message: Message, ctx: Context) -> Message:
        return message

    node = Node(controller, allow_cycle=True)
    flow = create(node.to(node), queue_maxsize=4)
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(msg("t1", WM(query="q", budget_hops=None)))
            states = [await flow.fetch(trace_id="t1") for _ in range(6)]
            assert [s.payload.hops for s in states] == [1, 2, 3, 4, 5, 6]
            await anyio.wait_all_tasks_blocked()
            assert flow.statistics().rookery_buffered == 4  # the loop waits for its reader
            assert await flow.cancel("t1")
