"""Metadata propagation: envelopes are kept, fan-out copies meta, join and subflows merge it.

The merge rule (core.md §3): branch metas are merged in arrival order, last write wins per key,
into a copy of the first arrival's envelope; a subflow's final meta is merged into the caller's.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from penguiflow.core import Context, Headers, Message, Node, PenguiFlow, create, join_k


def message(**meta: Any) -> Message:
    return Message(
        payload="start",
        headers=Headers(tenant="acme", topic="origin", priority=2),
        deadline_s=4_000_000_000.0,
        meta=dict(meta),
    )


async def run_one(flow: PenguiFlow, msg: Message) -> Message:
    async with flow.running():
        with anyio.fail_after(5):
            await flow.emit(msg)
            result = await flow.fetch(trace_id=msg.trace_id)
    assert isinstance(result, Message)
    return result


# ------------------------------------------------------------------ single path


async def test_bare_payload_result_is_fetched_as_returned_within_its_trace() -> None:
    async def bare(msg: Message, ctx: Context) -> str:
        return f"{msg.payload}+bare"

    original = message(request_id="r1")
    flow = create(Node(bare).to())
    async with flow.running():
        with anyio.fail_after(5):
            await flow.emit(original)
            result = await flow.fetch(trace_id=original.trace_id)
    assert result == "start+bare"


async def test_bare_payload_result_travels_on_in_the_input_envelope() -> None:
    async def bare(msg: Message, ctx: Context) -> str:
        return f"{msg.payload}+bare"

    async def sink(msg: Message, ctx: Context) -> Message:
        return msg  # declares a Message input: gets the bare value in the last envelope

    original = message(request_id="r1")
    first, second = Node(bare), Node(sink)
    result = await run_one(create(first.to(second), second.to()), original)
    assert result.payload == "start+bare"
    assert result.headers == original.headers
    assert result.trace_id == original.trace_id
    assert result.deadline_s == original.deadline_s
    assert result.meta == {"request_id": "r1"}


async def test_meta_set_upstream_reaches_downstream_through_bare_payload_nodes() -> None:
    seen: list[dict[str, Any]] = []

    async def tag(msg: Message, ctx: Context) -> Message:
        return msg.with_meta(cost=1.5)

    async def bare(msg: Message, ctx: Context) -> str:
        return "bare"

    async def sink(msg: Message, ctx: Context) -> Message:
        seen.append(dict(msg.meta))
        return msg.with_meta(done=True)

    tag_node, bare_node, sink_node = Node(tag), Node(bare), Node(sink)
    flow = create(tag_node.to(bare_node), bare_node.to(sink_node), sink_node.to())
    result = await run_one(flow, message(request_id="r1"))
    assert seen == [{"request_id": "r1", "cost": 1.5}]
    assert result.meta == {"request_id": "r1", "cost": 1.5, "done": True}
    assert result.payload == "bare"


# ------------------------------------------------------------------ fan-out and join


def fan_out_join(first: str) -> tuple[PenguiFlow, list[str]]:
    """source -> (left, right) -> join_k(2) -> sink, where branch ``first`` reaches the join first.

    The first branch emits explicitly and then releases the other, so the join's arrival order is
    fixed regardless of scheduling.
    """
    released = anyio.Event()
    order: list[str] = []

    async def source(msg: Message, ctx: Context) -> Message:
        return msg.with_meta(stage="source", shared="source")

    def branch(name: str) -> Node:
        async def run(msg: Message, ctx: Context) -> None:
            if name != first:
                await released.wait()
            out = Message(
                payload=f"from-{name}",
                headers=msg.headers.model_copy(update={"topic": name}),
                trace_id=msg.trace_id,
                deadline_s=msg.deadline_s,
                meta={**msg.meta, "shared": name, f"only_{name}": True},
            )
            order.append(name)
            await ctx.emit(out)
            if name == first:
                released.set()

        return Node(run, name=name)

    async def sink(msg: Message, ctx: Context) -> Message:
        return msg

    source_node, left, right = Node(source), branch("left"), branch("right")
    join, sink_node = join_k("join", 2), Node(sink)
    flow = create(
        source_node.to(left, right),
        left.to(join),
        right.to(join),
        join.to(sink_node),
        sink_node.to(),
    )
    return flow, order


@pytest.mark.parametrize(("first", "second"), [("left", "right"), ("right", "left")])
async def test_join_merges_branch_meta_in_arrival_order(first: str, second: str) -> None:
    flow, order = fan_out_join(first)
    original = message(request_id="r1")
    result = await run_one(flow, original)
    assert order == [first, second]
    assert result.payload == [f"from-{first}", f"from-{second}"]
    assert result.meta == {
        "request_id": "r1",
        "stage": "source",
        "shared": second,  # last write wins
        f"only_{first}": True,
        f"only_{second}": True,
    }
    assert result.headers.topic == first  # envelope of the first arrival
    assert result.headers.tenant == "acme"
    assert result.trace_id == original.trace_id
    assert result.deadline_s == original.deadline_s


async def test_fan_out_branches_get_independent_meta_dicts() -> None:
    mutated = anyio.Event()
    seen_by_right: list[dict[str, Any]] = []

    async def source(msg: Message, ctx: Context) -> Message:
        return msg.with_meta(source=True)

    async def left(msg: Message, ctx: Context) -> Message:
        msg.meta["touched_by"] = "left"  # in place, on purpose
        mutated.set()
        return msg

    async def right(msg: Message, ctx: Context) -> Message:
        await mutated.wait()
        seen_by_right.append(dict(msg.meta))
        return msg

    source_node, left_node, right_node = Node(source), Node(left), Node(right)
    flow = create(source_node.to(left_node, right_node), left_node.to(), right_node.to())
    original = message(request_id="r1")
    async with flow.running():
        with anyio.fail_after(5):
            await flow.emit(original)
            results = [await flow.fetch(trace_id=original.trace_id) for _ in range(2)]
    assert seen_by_right == [{"request_id": "r1", "source": True}]
    metas = sorted((r.meta for r in results if isinstance(r, Message)), key=len)
    assert metas == [
        {"request_id": "r1", "source": True},
        {"request_id": "r1", "source": True, "touched_by": "left"},
    ]


# ------------------------------------------------------------------ subflows


def child_flow() -> PenguiFlow:
    async def enrich(msg: Message, ctx: Context) -> Message:
        return msg.with_meta(child_step=1, shared="child")

    async def finish(msg: Message, ctx: Context) -> Message:
        return msg.with_payload(f"{msg.payload}+child").with_meta(child_done=True)

    enrich_node, finish_node = Node(enrich), Node(finish)
    return create(enrich_node.to(finish_node), finish_node.to())


async def test_subflow_meta_is_merged_into_the_caller_last_write_wins() -> None:
    async def parent(msg: Message, ctx: Context) -> Message:
        msg = msg.with_meta(shared="parent", parent_step=1)
        result = await ctx.call_playbook(child_flow, msg)
        return msg.with_payload(result)

    original = message(request_id="r1")
    result = await run_one(create(Node(parent).to()), original)
    assert result.payload == "start+child"
    assert result.meta == {
        "request_id": "r1",
        "parent_step": 1,
        "shared": "child",
        "child_step": 1,
        "child_done": True,
    }
    assert result.trace_id == original.trace_id
    assert result.headers == original.headers
