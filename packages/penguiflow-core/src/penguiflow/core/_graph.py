"""Graph construction: endpoints, adjacency checks and cycle detection (all at ``create()``)."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ._errors import CycleError, GraphError
from ._node import Node
from ._types import WM

__all__ = ["OPEN_SEA", "ROOKERY", "Endpoint", "Graph", "build_graph"]


class Endpoint:
    """A flow's boundary: ``OPEN_SEA`` feeds every ingress node, ``ROOKERY`` collects results."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name: str = name

    def __repr__(self) -> str:
        return self.name


OPEN_SEA = Endpoint("OpenSea")
"""Where ``flow.emit`` puts messages: the parents of every node with no other parent."""
ROOKERY = Endpoint("Rookery")
"""Where results land for ``flow.fetch``: the successor of every node with no other successor."""

Adjacency = tuple[Node, Sequence[Node]]


@dataclass(frozen=True, slots=True)
class Graph:
    """The checked topology of a flow."""

    nodes: tuple[Node, ...]
    """Every node, in first-seen order."""
    successors: dict[Node, tuple[Node, ...]]
    """Outgoing edges of each node (self-edges included)."""
    predecessors: dict[Node, tuple[Node, ...]]
    """Incoming edges of each node (self-edges included)."""
    ingress: tuple[Node, ...]
    """Nodes fed by OpenSea: no parent other than themselves."""
    egress: tuple[Node, ...]
    """Nodes feeding Rookery: no successor other than themselves."""

    def has_self_edge(self, node: Node) -> bool:
        """Whether ``node`` loops to itself."""
        return node in self.successors[node]


def build_graph(adjacencies: Iterable[Adjacency | Node], *, allow_cycles: bool) -> Graph:
    """Check ``adjacencies`` and return the graph; raises at the first problem found."""
    successors: dict[Node, list[Node]] = {}
    by_name: dict[str, Node] = {}

    def add(node: Any) -> Node:
        if not isinstance(node, Node):
            raise TypeError(
                f"create() takes adjacencies built with node.to(...), got {type(node).__name__}: "
                f"{node!r}"
            )
        other = by_name.setdefault(node.name, node)
        if other is not node:
            raise GraphError(
                f"two different nodes are named {node.name!r}; give each node a unique name"
            )
        return node

    for adjacency in adjacencies:
        if isinstance(adjacency, Node):
            adjacency = (adjacency, ())
        if not isinstance(adjacency, tuple) or len(adjacency) != 2:  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(
                f"create() takes adjacencies built with node.to(...), got {adjacency!r}"
            )
        node, succs = adjacency
        out = successors.setdefault(add(node), [])
        for succ in succs:
            successors.setdefault(add(succ), [])
            if succ not in out:
                out.append(succ)

    if not successors:
        raise GraphError("create() needs at least one node: create(a.to(b), b.to())")

    for node, out in successors.items():
        if node in out and not (node.allow_cycle or allow_cycles):
            raise CycleError([node.name])
    if not allow_cycles:
        cycle = _find_cycle(successors)
        if cycle:
            raise CycleError([n.name for n in cycle])

    predecessors: dict[Node, list[Node]] = {node: [] for node in successors}
    for node, out in successors.items():
        for succ in out:
            predecessors[succ].append(node)

    nodes = tuple(successors)
    ingress = tuple(n for n in nodes if all(p is n for p in predecessors[n]))
    egress = tuple(n for n in nodes if all(s is n for s in successors[n]))
    if not ingress:
        raise GraphError(
            "the flow has no ingress node (every node has a parent), so OpenSea cannot feed it"
        )
    graph = Graph(
        nodes=nodes,
        successors={n: tuple(s) for n, s in successors.items()},
        predecessors={n: tuple(p) for n, p in predecessors.items()},
        ingress=ingress,
        egress=egress,
    )
    for node in nodes:
        _check_static_targets(node, graph.successors[node])
        if not graph.has_self_edge(node) and _returns_wm(node):
            raise GraphError(
                f"node {node.name!r} returns WM (a controller loop) but has no self-edge; "
                f"add {node.name}.to({node.name}) and Node(..., allow_cycle=True)"
            )
    return graph


def _check_static_targets(node: Node, successors: tuple[Node, ...]) -> None:
    """Routers declare the successor names they can pick; check them before anything runs."""
    static = getattr(node.func, "static_targets", None)
    if not callable(static):
        return
    valid = {s.name for s in successors}
    unknown = set(typing.cast(set[str], static())) - valid
    if unknown:
        raise GraphError(
            f"router {node.name!r} can route to {sorted(unknown)}, which are not its successors "
            f"(valid successors: {sorted(valid)}); add them with {node.name}.to(...) or fix the "
            "routing table"
        )


def _find_cycle(successors: dict[Node, list[Node]]) -> list[Node] | None:
    """A cycle among distinct nodes (self-edges are checked separately), or None."""
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(successors, white)
    for root in successors:
        if colour[root] != white:
            continue
        path: list[Node] = [root]
        stack: list[Iterable[Node]] = [iter(successors[root])]
        colour[root] = grey
        while stack:
            for succ in stack[-1]:
                if succ is path[-1]:
                    continue
                if colour[succ] == grey:
                    return path[path.index(succ) :]
                if colour[succ] == white:
                    colour[succ] = grey
                    path.append(succ)
                    stack.append(iter(successors[succ]))
                    break
            else:
                colour[path.pop()] = black
                stack.pop()
    return None


def _returns_wm(node: Node) -> bool:
    func: Any = node.func
    target = func if inspect.isfunction(func) or inspect.ismethod(func) else func.__call__
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # noqa: BLE001 - unresolvable annotations: nothing to check statically
        return False
    returned = hints.get("return")
    if returned is None:
        return False
    candidates = typing.get_args(returned) or (returned,)
    return any(c is WM for c in candidates)
