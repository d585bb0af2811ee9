"""create(): the graph is checked eagerly, and a flow refuses to be used before or twice."""

from __future__ import annotations

from typing import Any, cast

import anyio
import pytest

from penguiflow.core import (
    OPEN_SEA,
    ROOKERY,
    WM,
    Context,
    CycleError,
    DictRoutingPolicy,
    GraphError,
    Headers,
    Message,
    Node,
    PenguiFlowError,
    create,
    predicate_router,
)


async def echo(message: Any, ctx: Context) -> Any:
    return message


def node(name: str, *, allow_cycle: bool = False) -> Node:
    return Node(echo, name=name, allow_cycle=allow_cycle)


def drop(message: Any) -> None:
    return None


def names(nodes: tuple[Node, ...]) -> set[str]:
    return {n.name for n in nodes}


# ------------------------------------------------------------------ endpoints


def test_endpoints_are_named_open_sea_and_rookery() -> None:
    assert repr(OPEN_SEA) == "OpenSea"
    assert repr(ROOKERY) == "Rookery"


def test_ingress_and_egress_of_a_diamond() -> None:
    a, b, c, d = node("a"), node("b"), node("c"), node("d")
    flow = create(a.to(b, c), b.to(d), c.to(d), d.to())
    assert names(flow.graph.ingress) == {"a"}
    assert names(flow.graph.egress) == {"d"}


def test_several_ingress_and_egress_nodes() -> None:
    a, b, c, d = node("a"), node("b"), node("c"), node("d")
    flow = create(a.to(c), b.to(c, d), c.to(), d.to())
    assert names(flow.graph.ingress) == {"a", "b"}
    assert names(flow.graph.egress) == {"c", "d"}


def test_node_with_only_a_self_edge_is_both_ingress_and_egress() -> None:
    loop = node("loop", allow_cycle=True)
    flow = create(loop.to(loop))
    assert names(flow.graph.ingress) == {"loop"}
    assert names(flow.graph.egress) == {"loop"}


def test_self_looping_node_with_successor_is_not_egress() -> None:
    loop, out = node("loop", allow_cycle=True), node("out")
    flow = create(loop.to(loop, out), out.to())
    assert names(flow.graph.ingress) == {"loop"}
    assert names(flow.graph.egress) == {"out"}


async def test_emit_without_target_broadcasts_to_every_ingress_node() -> None:
    a, b = node("a"), node("b")
    flow = create(a.to(), b.to())
    async with flow.running():
        with anyio.fail_after(5):
            await flow.emit(Message(payload="x", headers=Headers(tenant="t")))
            first = await flow.fetch()
            second = await flow.fetch()
    assert isinstance(first, Message) and isinstance(second, Message)
    assert first.payload == second.payload == "x"
    assert first.meta is not second.meta


# ------------------------------------------------------------------ cycles


def test_cycle_error_names_the_nodes_on_the_cycle() -> None:
    """**fix**: CycleError says which nodes form the cycle (attribute and message)."""
    entry, a, b, c, out = node("entry"), node("a"), node("b"), node("c"), node("out")
    with pytest.raises(CycleError) as info:
        create(entry.to(a), a.to(b), b.to(c), c.to(a, out), out.to())
    cycle = info.value.cycle
    assert sorted(cycle) == ["a", "b", "c"]
    start = cycle.index("a")
    assert cycle[start:] + cycle[:start] == ["a", "b", "c"]
    assert "a -> b -> c -> a" in str(info.value)
    assert "allow_cycles=True" in str(info.value)


def test_cycle_error_does_not_name_nodes_off_the_cycle() -> None:
    entry, a, b, out = node("entry"), node("a"), node("b"), node("out")
    with pytest.raises(CycleError) as info:
        create(entry.to(a), a.to(b), b.to(a, out), out.to())
    assert sorted(info.value.cycle) == ["a", "b"]
    assert "entry" not in str(info.value)
    assert "out" not in str(info.value)


def test_self_edge_without_allow_cycle_is_a_cycle_error() -> None:
    loop = node("loop")
    with pytest.raises(CycleError) as info:
        create(loop.to(loop))
    assert info.value.cycle == ["loop"]
    assert "allow_cycle=True" in str(info.value)


def test_self_edge_with_allow_cycle_is_accepted() -> None:
    loop = node("loop", allow_cycle=True)
    flow = create(loop.to(loop))
    assert flow.graph.has_self_edge(loop)


def test_allow_cycles_permits_a_cycle_between_nodes() -> None:
    entry, a, b = node("entry"), node("a"), node("b")
    flow = create(entry.to(a), a.to(b), b.to(a), allow_cycles=True)
    assert names(flow.graph.successors[b]) == {"a"}


def test_allow_cycles_permits_self_edges_too() -> None:
    loop = node("loop")
    flow = create(loop.to(loop), allow_cycles=True)
    assert flow.graph.has_self_edge(loop)


def test_cycle_error_is_a_graph_error_and_value_error() -> None:
    assert issubclass(CycleError, GraphError)
    assert issubclass(CycleError, ValueError)
    assert issubclass(CycleError, PenguiFlowError)


# ------------------------------------------------------------------ other graph errors


def test_duplicate_node_names_are_a_graph_error() -> None:
    first, second = node("same"), node("same")
    with pytest.raises(GraphError, match=r"two different nodes are named 'same'"):
        create(first.to(second), second.to())


def test_reusing_the_same_node_object_is_fine() -> None:
    a, b = node("a"), node("b")
    flow = create(a.to(b), b.to(), a.to(b))
    assert names(flow.graph.successors[a]) == {"b"}


def test_create_without_nodes_is_a_graph_error() -> None:
    with pytest.raises(GraphError, match="at least one node"):
        create()


def test_create_rejects_things_that_are_not_adjacencies() -> None:
    with pytest.raises(TypeError, match=r"node\.to\("):
        create(cast(Any, "a"))


async def returns_working_memory(message: Message, ctx: Context) -> WM:
    return WM(query="q")


def test_wm_returning_node_without_self_edge_fails_at_create() -> None:
    controller = Node(returns_working_memory, name="controller")
    with pytest.raises(GraphError) as info:
        create(controller.to())
    assert "'controller'" in str(info.value)
    assert "controller.to(controller)" in str(info.value)


def test_wm_returning_node_with_self_edge_is_accepted() -> None:
    controller = Node(returns_working_memory, name="controller", allow_cycle=True)
    flow = create(controller.to(controller))
    assert flow.node("controller") is controller


def test_router_policy_naming_a_non_successor_fails_at_create() -> None:
    policy = DictRoutingPolicy({"acme": "fast", "globex": "nowhere"})
    router = predicate_router("router", drop, policy=policy)
    fast, slow = node("fast"), node("slow")
    with pytest.raises(GraphError) as info:
        create(router.to(fast, slow), fast.to(), slow.to())
    message = str(info.value)
    assert "'router'" in message
    assert "nowhere" in message
    assert "fast" in message and "slow" in message


def test_router_policy_default_naming_a_non_successor_fails_at_create() -> None:
    policy = DictRoutingPolicy({"acme": "fast"}, default="ghost")
    router = predicate_router("router", drop, policy=policy)
    fast = node("fast")
    with pytest.raises(GraphError, match="ghost"):
        create(router.to(fast), fast.to())


def test_router_policy_with_known_targets_is_accepted() -> None:
    policy = DictRoutingPolicy({"acme": "fast", "globex": ["fast", "slow"]})
    router = predicate_router("router", drop, policy=policy)
    fast, slow = node("fast"), node("slow")
    flow = create(router.to(fast, slow), fast.to(), slow.to())
    assert names(flow.graph.successors[router]) == {"fast", "slow"}


# ------------------------------------------------------------------ lookup and lifecycle


def test_node_lookup_by_name() -> None:
    a, b = node("a"), node("b")
    flow = create(a.to(b), b.to())
    assert flow.node("b") is b
    assert flow.nodes == (a, b)


def test_unknown_node_lookup_lists_the_names() -> None:
    flow = create(node("alpha").to(), node("beta").to())
    with pytest.raises(KeyError) as info:
        flow.node("gamma")
    message = str(info.value)
    assert "gamma" in message
    assert "alpha" in message and "beta" in message


async def test_emit_before_run_says_to_start_the_flow() -> None:
    flow = create(node("a").to())
    with pytest.raises(RuntimeError, match=r"not running yet.*flow\.run\(\)"):
        await flow.emit(Message(payload=1, headers=Headers(tenant="t")))
    with pytest.raises(RuntimeError, match=r"flow\.run\(\)"):
        flow.emit_nowait(Message(payload=1, headers=Headers(tenant="t")))


async def test_emit_after_stop_says_the_flow_stopped() -> None:
    flow = create(node("a").to())
    async with flow.running():
        pass
    with pytest.raises(RuntimeError, match="has stopped"):
        await flow.emit(Message(payload=1, headers=Headers(tenant="t")))


async def test_run_twice_raises() -> None:
    flow = create(node("a").to())
    flow.run()
    try:
        with pytest.raises(RuntimeError, match="already started"):
            flow.run()
    finally:
        with anyio.fail_after(5):
            await flow.stop()


async def test_running_after_stop_raises() -> None:
    flow = create(node("a").to())
    async with flow.running():
        pass
    with pytest.raises(RuntimeError, match="already started"):
        async with flow.running():
            pass


def test_run_without_an_event_loop_raises() -> None:
    flow = create(node("a").to())
    with pytest.raises(RuntimeError, match="running event loop"):
        flow.run()
    assert not flow.running_now


async def test_stop_is_idempotent_and_stops_the_workers() -> None:
    flow = create(node("a").to())
    flow.run()
    with anyio.fail_after(5):
        await flow.stop()
        await flow.stop()
    stats = flow.statistics()
    assert not stats.running
    assert stats.workers == 0
