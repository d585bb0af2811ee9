"""Visualisation: draw a flow's topology as a Mermaid flowchart or a Graphviz DOT digraph.

Both renderers draw the same picture from one layout, so the two formats always agree:

* every node (box, labelled with its name) and every edge, in graph order;
* ``OpenSea`` feeding each ingress node and each egress node feeding ``Rookery`` (stadium/oval);
* a controller loop (a node with a self-edge) gets class ``loop``: an amber border, and its
  self-edge is labelled ``loop`` (``allow_cycle`` alone, without a self-edge, loops nowhere and
  draws nothing extra; a cycle through distinct nodes is drawn as its plain edges);
* a node that calls playbooks (``calls_playbooks(...)``) gets class ``subflow``: a blue fill, and a
  dashed ``calls`` edge to one ``playbook: NAME`` box (class ``playbook``) per playbook it calls.

Node ids are generated (``opensea``, ``rookery``, ``n0``, ``n1`` … in graph order, ``p0`` … per
playbook), and names only ever appear escaped inside quoted labels, so any name renders. The same
flow always yields the same text, and neither output needs network access to render.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Literal

from ._flow import PenguiFlow
from ._graph import OPEN_SEA, ROOKERY

__all__ = ["flow_to_dot", "flow_to_mermaid", "to_dot", "to_mermaid"]

MERMAID_DIRECTIONS = ("TD", "TB", "BT", "LR", "RL")
"""Values ``flow_to_mermaid`` accepts for ``direction``."""
DOT_RANKDIRS = ("TB", "BT", "LR", "RL")
"""Values ``flow_to_dot`` accepts for ``rankdir``."""

_Shape = Literal["endpoint", "node", "playbook"]
_EdgeKind = Literal["flow", "loop", "calls"]

# One palette for both formats: loop styles the border and subflow the fill, so a node that is
# both keeps both marks.
_LOOP_COLOUR = "#d97706"
_SUBFLOW_FILL = "#e0f2fe"
_SUBFLOW_STROKE = "#0284c7"
_ENDPOINT_FILL = "#f1f5f9"
_ENDPOINT_STROKE = "#64748b"


@dataclass(frozen=True, slots=True)
class _Vertex:
    id: str
    label: str
    shape: _Shape
    classes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Edge:
    source: str
    target: str
    kind: _EdgeKind


@dataclass(frozen=True, slots=True)
class _Layout:
    vertices: tuple[_Vertex, ...]
    edges: tuple[_Edge, ...]


def _layout(flow: PenguiFlow) -> _Layout:
    """The format-neutral picture of ``flow``: vertices and edges in a stable order."""
    if not isinstance(flow, PenguiFlow):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError(
            f"expected a flow built with create(...), got {type(flow).__name__}: {flow!r}"
        )
    graph = flow.graph
    ids = {node: f"n{i}" for i, node in enumerate(graph.nodes)}
    playbooks: dict[str, str] = {}
    for node in graph.nodes:
        for name in node.subflows:
            playbooks.setdefault(name, f"p{len(playbooks)}")

    vertices = [
        _Vertex("opensea", OPEN_SEA.name, "endpoint", ("endpoint",)),
        _Vertex("rookery", ROOKERY.name, "endpoint", ("endpoint",)),
    ]
    edges = [_Edge("opensea", ids[node], "flow") for node in graph.ingress]
    egress = set(graph.egress)
    for node in graph.nodes:
        classes: list[str] = []
        if graph.has_self_edge(node):
            classes.append("loop")
        if node.subflows:
            classes.append("subflow")
        vertices.append(_Vertex(ids[node], node.name, "node", tuple(classes)))
        for succ in graph.successors[node]:
            edges.append(_Edge(ids[node], ids[succ], "loop" if succ is node else "flow"))
        if node in egress:
            edges.append(_Edge(ids[node], "rookery", "flow"))
        for name in dict.fromkeys(node.subflows):
            edges.append(_Edge(ids[node], playbooks[name], "calls"))
    vertices.extend(
        _Vertex(pid, f"playbook: {name}", "playbook", ("playbook",))
        for name, pid in playbooks.items()
    )
    return _Layout(tuple(vertices), tuple(edges))


# ------------------------------------------------------------------------------------ Mermaid
_MERMAID_SHAPES: dict[_Shape, tuple[str, str]] = {
    "endpoint": ("([", "])"),
    "node": ("[", "]"),
    "playbook": ("[[", "]]"),
}
_MERMAID_ARROWS: dict[_EdgeKind, str] = {
    "flow": "-->",
    "loop": "-->|loop|",
    "calls": "-.->|calls|",
}
_MERMAID_CLASSDEFS = (
    f"classDef endpoint fill:{_ENDPOINT_FILL},stroke:{_ENDPOINT_STROKE}",
    f"classDef loop stroke:{_LOOP_COLOUR},stroke-width:3px",
    f"classDef subflow fill:{_SUBFLOW_FILL}",
    f"classDef playbook fill:#ffffff,stroke:{_SUBFLOW_STROKE},stroke-dasharray:5 3",
)


def _mermaid_text(text: str) -> str:
    """Escape ``text`` for a quoted Mermaid label (entity codes; newlines become line breaks)."""
    out: list[str] = []
    for char in text:
        if char == "\n":
            out.append("<br/>")
        elif char in '"#%&<>`' or not char.isprintable():
            out.append(f"#{ord(char)};")
        else:
            out.append(char)
    return "".join(out)


def flow_to_mermaid(flow: PenguiFlow, *, direction: str = "TD") -> str:
    """Render ``flow`` as a Mermaid ``flowchart``.

    Args:
        flow: A flow built with :func:`create`.
        direction: Layout direction: ``"TD"`` (same as ``"TB"``), ``"BT"``, ``"LR"`` or ``"RL"``.

    Returns:
        The diagram text (no surrounding Markdown fence), ending with a newline. The same flow
        always gives the same text.

    Raises:
        ValueError: ``direction`` is not one of the values above.
        TypeError: ``flow`` is not a flow.
    """
    if direction not in MERMAID_DIRECTIONS:
        raise ValueError(
            f"direction must be one of {', '.join(MERMAID_DIRECTIONS)}, got {direction!r}"
        )
    layout = _layout(flow)
    lines = [f"flowchart {direction}"]
    for vertex in layout.vertices:
        start, end = _MERMAID_SHAPES[vertex.shape]
        lines.append(f'    {vertex.id}{start}"{_mermaid_text(vertex.label)}"{end}')
    for edge in layout.edges:
        lines.append(f"    {edge.source} {_MERMAID_ARROWS[edge.kind]} {edge.target}")
    lines.extend(f"    {classdef}" for classdef in _MERMAID_CLASSDEFS)
    for name in ("endpoint", "loop", "subflow", "playbook"):
        members = [v.id for v in layout.vertices if name in v.classes]
        if members:
            lines.append(f"    class {','.join(members)} {name}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------- DOT
_DOT_SHAPES: dict[_Shape, str] = {
    "endpoint": f'shape=oval, style=filled, fillcolor="{_ENDPOINT_FILL}", '
    f'color="{_ENDPOINT_STROKE}"',
    "node": "",
    "playbook": f'shape=component, style=dashed, color="{_SUBFLOW_STROKE}"',
}
_DOT_CLASS_STYLES = {
    "loop": f'color="{_LOOP_COLOUR}", penwidth=3',
    "subflow": f'style="rounded,filled", fillcolor="{_SUBFLOW_FILL}"',
}
_DOT_EDGES: dict[_EdgeKind, str] = {
    "flow": "",
    "loop": f'label="loop", class="loop", color="{_LOOP_COLOUR}"',
    "calls": f'label="calls", class="calls", style=dashed, color="{_SUBFLOW_STROKE}"',
}


def _dot_text(text: str) -> str:
    """Escape ``text`` for a double-quoted DOT label (newlines become centred line breaks)."""
    out: list[str] = []
    for char in text:
        if char in '\\"':
            out.append("\\" + char)
        elif char == "&":
            out.append("&amp;")  # Graphviz decodes HTML entities in labels; keep names literal
        elif char == "\n":
            out.append("\\n")
        elif unicodedata.category(char) == "Cc":
            out.append(" ")  # DOT has no escape for control characters, and SVG forbids them
        else:
            out.append(char)
    return "".join(out)


def flow_to_dot(flow: PenguiFlow, *, rankdir: str = "TB") -> str:
    """Render ``flow`` as a Graphviz DOT ``digraph`` (``dot -Tsvg`` draws it).

    Args:
        flow: A flow built with :func:`create`.
        rankdir: Layout direction: ``"TB"``, ``"BT"``, ``"LR"`` or ``"RL"``.

    Returns:
        The DOT source, ending with a newline. The same flow always gives the same text.

    Raises:
        ValueError: ``rankdir`` is not one of the values above.
        TypeError: ``flow`` is not a flow.
    """
    if rankdir not in DOT_RANKDIRS:
        raise ValueError(f"rankdir must be one of {', '.join(DOT_RANKDIRS)}, got {rankdir!r}")
    layout = _layout(flow)
    lines = [
        "digraph penguiflow {",
        f"    rankdir={rankdir};",
        '    node [shape=box, style=rounded, fontname="Helvetica"];',
        '    edge [fontname="Helvetica"];',
    ]
    for vertex in layout.vertices:
        attrs = [f'label="{_dot_text(vertex.label)}"']
        if vertex.classes:
            attrs.append(f'class="{" ".join(vertex.classes)}"')
        if _DOT_SHAPES[vertex.shape]:
            attrs.append(_DOT_SHAPES[vertex.shape])
        attrs.extend(_DOT_CLASS_STYLES[c] for c in vertex.classes if c in _DOT_CLASS_STYLES)
        lines.append(f"    {vertex.id} [{', '.join(attrs)}];")
    for edge in layout.edges:
        attrs = f" [{_DOT_EDGES[edge.kind]}]" if _DOT_EDGES[edge.kind] else ""
        lines.append(f"    {edge.source} -> {edge.target}{attrs};")
    lines.append("}")
    return "\n".join(lines) + "\n"


to_mermaid = flow_to_mermaid
"""Alias of :func:`flow_to_mermaid`."""
to_dot = flow_to_dot
"""Alias of :func:`flow_to_dot`."""
