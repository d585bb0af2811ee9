"""The wiring of a flow: one ``Station`` per node (its inbox and outgoing floes), and OpenSea's.

A station is what the delivery path and ``Context`` need to know about a node: where its messages
come in and where its results go. It holds no behaviour; the runner drives it.
"""

from __future__ import annotations

from typing import Any

from ._floe import Floe, Inbox
from ._graph import OPEN_SEA, Graph
from ._node import Node

__all__ = ["Station", "link"]


class Station:
    """One node's place in one flow: its inbox and the floes to its successors."""

    __slots__ = (
        "envelope_meta",
        "forward",
        "inbox",
        "loop_floe",
        "name",
        "node",
        "node_id",
        "out_by_name",
        "out_floes",
        "out_nodes",
        "single",
    )

    def __init__(self, node: Node) -> None:
        self.node: Node = node
        self.name: str = node.name
        self.node_id: str = node.node_id
        self.inbox: Inbox = Inbox()
        self.out_by_name: dict[str, Floe] = {}
        """Every outgoing floe by successor name (the self-edge included)."""
        self.out_nodes: dict[str, Node] = {}
        """Every successor by name."""
        self.out_floes: tuple[Floe, ...] = ()
        """Every outgoing floe, in successor order."""
        self.forward: tuple[Floe, ...] = ()
        """Floes to non-self successors; empty means results go to Rookery."""
        self.single: Floe | None = None
        """The only forward floe, when there is exactly one (the hand-off's target)."""
        self.loop_floe: Floe | None = None
        """The self-edge of a controller loop."""
        self.envelope_meta: dict[str | None, dict[str, Any]] = {}
        """Meta that subflows of a running invocation returned, by trace: merged into the
        envelope of that invocation's bare result."""


def link(graph: Graph, maxsize: int) -> tuple[dict[Node, Station], dict[str, Floe]]:
    """Build every station and floe of ``graph``; returns the stations and OpenSea's floes."""
    stations = {node: Station(node) for node in graph.nodes}
    ingress = {
        node.name: Floe(OPEN_SEA.name, node.name, stations[node].inbox, maxsize)
        for node in graph.ingress
    }
    for node, station in stations.items():
        for succ in graph.successors[node]:
            floe = Floe(node.name, succ.name, stations[succ].inbox, maxsize)
            station.out_by_name[succ.name] = floe
            station.out_nodes[succ.name] = succ
            if succ is node:
                station.loop_floe = floe
        station.out_floes = tuple(station.out_by_name.values())
        station.forward = tuple(f for n, f in station.out_by_name.items() if n != node.name)
        station.single = station.forward[0] if len(station.forward) == 1 else None
    return stations, ingress
