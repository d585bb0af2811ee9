"""Visualisation: Mermaid and DOT output match the graph, agree with each other and are stable."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from penguiflow.core import (
    Context,
    Node,
    PenguiFlow,
    calls_playbooks,
    create,
    predicate_router,
)
from penguiflow.core._viz import flow_to_dot, flow_to_mermaid, to_dot, to_mermaid

# A vertex as the picture shows it: ("endpoint" | "node" | "playbook", name).
Ref = tuple[str, str]
Edge = tuple[Ref, Ref, str]


@dataclass
class Picture:
    """What a rendered diagram says, read back out of its text."""

    vertices: dict[str, Ref]
    """Generated id -> vertex, in declaration order."""
    edges: list[tuple[str, str, str]]
    """(source id, target id, kind) with kind "flow", "loop" or "calls", in text order."""
    classes: dict[str, set[str]]
    """Generated id -> its style classes."""

    def named_edges(self) -> Counter[Edge]:
        return Counter((self.vertices[s], self.vertices[t], kind) for s, t, kind in self.edges)

    def classes_of(self, ref: Ref) -> set[str]:
        (vid,) = [vid for vid, v in self.vertices.items() if v == ref]
        return self.classes.get(vid, set())


# ------------------------------------------------------------------------- parsing Mermaid
_MM_VERTEX = re.compile(r'^    (\w+)(\(\[|\[\[|\[)"([^"\n]*)"(\]\)|\]\]|\])$')
_MM_EDGE = re.compile(r"^    (\w+) (-->|-->\|loop\||-\.->\|calls\|) (\w+)$")
_MM_CLASS = re.compile(r"^    class ([\w,]+) (\w+)$")
_MM_SHAPES = {("([", "])"): "endpoint", ("[", "]"): "node", ("[[", "]]"): "playbook"}
_MM_ARROWS = {"-->": "flow", "-->|loop|": "loop", "-.->|calls|": "calls"}


def _mermaid_unescape(label: str) -> str:
    def one(match: re.Match[str]) -> str:
        return "\n" if match.group(0) == "<br/>" else chr(int(match.group(1)))

    return re.sub(r"<br/>|#(\d+);", one, label)


def parse_mermaid(text: str) -> Picture:
    lines = text.splitlines()
    assert re.fullmatch(r"flowchart (TD|TB|BT|LR|RL)", lines[0])
    picture = Picture({}, [], {})
    for line in lines[1:]:
        if match := _MM_VERTEX.match(line):
            vid, start, label, end = match.groups()
            assert vid not in picture.vertices, f"{vid} declared twice"
            shape = _MM_SHAPES[(start, end)]
            picture.vertices[vid] = (shape, _strip_playbook(shape, _mermaid_unescape(label)))
        elif match := _MM_EDGE.match(line):
            source, arrow, target = match.groups()
            picture.edges.append((source, target, _MM_ARROWS[arrow]))
        elif match := _MM_CLASS.match(line):
            for vid in match.group(1).split(","):
                picture.classes.setdefault(vid, set()).add(match.group(2))
        else:
            assert line.startswith("    classDef "), f"unexpected Mermaid line: {line!r}"
    return picture


# ----------------------------------------------------------------------------- parsing DOT
_DOT_VERTEX = re.compile(r'^    (\w+) \[label="((?:[^"\\]|\\.)*)"(.*)\];$')
_DOT_EDGE = re.compile(r"^    (\w+) -> (\w+)(?: \[(.*)\])?;$")
_DOT_CLASS = re.compile(r'class="([^"]*)"')


def _dot_unescape(label: str) -> str:
    def one(match: re.Match[str]) -> str:
        escaped = match.group(1)
        if escaped is None:
            return "&"
        return "\n" if escaped == "n" else escaped

    return re.sub(r"\\(.)|&amp;", one, label)


def _dot_shape(attrs: str) -> str:
    if "shape=oval" in attrs:
        return "endpoint"
    if "shape=component" in attrs:
        return "playbook"
    return "node"


def parse_dot(text: str) -> Picture:
    lines = text.splitlines()
    assert lines[0] == "digraph penguiflow {" and lines[-1] == "}"
    picture = Picture({}, [], {})
    for line in lines[1:-1]:
        if match := _DOT_VERTEX.match(line):
            vid, label, attrs = match.groups()
            assert vid not in picture.vertices, f"{vid} declared twice"
            shape = _dot_shape(attrs)
            picture.vertices[vid] = (shape, _strip_playbook(shape, _dot_unescape(label)))
            if found := _DOT_CLASS.search(attrs):
                picture.classes[vid] = set(found.group(1).split())
        elif match := _DOT_EDGE.match(line):
            source, target, attrs = match.groups()
            kind = "flow"
            if attrs and 'label="loop"' in attrs:
                kind = "loop"
            elif attrs and 'label="calls"' in attrs:
                assert "style=dashed" in attrs
                kind = "calls"
            picture.edges.append((source, target, kind))
        else:
            assert re.match(r"^    (rankdir=\w+|node \[|edge \[)", line), f"unexpected: {line!r}"
    return picture


def _strip_playbook(shape: str, label: str) -> str:
    if shape == "playbook":
        assert label.startswith("playbook: ")
        return label.removeprefix("playbook: ")
    return label


# -------------------------------------------------------------------------------- expected
def expected_edges(flow: PenguiFlow) -> Counter[Edge]:
    """The edges the picture must show, computed from the graph itself."""
    graph = flow.graph
    edges: list[Edge] = [(("endpoint", "OpenSea"), ("node", n.name), "flow") for n in graph.ingress]
    for node in graph.nodes:
        for succ in graph.successors[node]:
            kind = "loop" if succ is node else "flow"
            edges.append((("node", node.name), ("node", succ.name), kind))
        edges.extend((("node", node.name), ("playbook", p), "calls") for p in set(node.subflows))
    edges.extend((("node", n.name), ("endpoint", "Rookery"), "flow") for n in graph.egress)
    return Counter(edges)


def expected_vertices(flow: PenguiFlow) -> Counter[Ref]:
    nodes = flow.graph.nodes
    playbooks = {p for n in nodes for p in n.subflows}
    return Counter(
        [("endpoint", "OpenSea"), ("endpoint", "Rookery")]
        + [("node", n.name) for n in nodes]
        + [("playbook", p) for p in playbooks]
    )


def both(flow: PenguiFlow) -> tuple[Picture, Picture]:
    return parse_mermaid(flow_to_mermaid(flow)), parse_dot(flow_to_dot(flow))


# ---------------------------------------------------------------------------------- flows
async def step(message: Any, ctx: Context) -> Any:
    return message


@calls_playbooks("retrieval")
async def answer(message: Any, ctx: Context) -> Any:
    return message


@calls_playbooks("retrieval", "billing", "retrieval")
async def invoice(message: Any, ctx: Context) -> Any:
    return message


def build_demo() -> PenguiFlow:
    """Router -> (controller loop | playbook caller | other caller) -> sink."""
    route = predicate_router("route", lambda message: "controller")
    controller = Node(step, name="controller", allow_cycle=True)
    answer_node = Node(answer)
    invoice_node = Node(invoice)
    sink = Node(step, name="sink")
    return create(
        route.to(controller, answer_node, invoice_node),
        controller.to(controller, sink),
        answer_node.to(sink),
        invoice_node.to(sink),
        sink.to(),
    )


def build_distinct_cycle() -> PenguiFlow:
    """A cycle between two distinct nodes (allowed flow-wide) is drawn as plain edges."""
    start, a, b, end = (Node(step, name=n) for n in ("start", "a", "b", "end"))
    return create(start.to(a), a.to(b), b.to(a, end), end.to(), allow_cycles=True)


def build_controller_only() -> PenguiFlow:
    controller = Node(step, name="controller", allow_cycle=True)
    return create(controller.to(controller))


ODD_NAMES = (
    'say "hi"',
    "with space-and-dash",
    "end",
    "graph",
    "a -> b; c",
    "<b>bold</b> & &amp; &lt;tag&gt; #35; %% not a comment",
    "back\\slash \\n \\N",
    "pipe|brackets[]{}()",
    "`tick`",
    "two\nlines",
    "pingüino 🐧",
    "OpenSea",
)


def build_odd_names() -> PenguiFlow:
    nodes = [Node(step, name=name) for name in ODD_NAMES]
    adjacencies = [a.to(b) for a, b in zip(nodes, nodes[1:], strict=False)]
    return create(*adjacencies, nodes[-1].to())


FLOWS = {
    "demo": build_demo,
    "distinct_cycle": build_distinct_cycle,
    "controller_only": build_controller_only,
    "odd_names": build_odd_names,
    "single": lambda: create(Node(step, name="only").to()),
}


# ---------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("name", sorted(FLOWS))
def test_both_formats_show_every_node_and_edge_of_the_graph(name: str) -> None:
    flow = FLOWS[name]()
    for picture in both(flow):
        assert Counter(picture.vertices.values()) == expected_vertices(flow)
        assert picture.named_edges() == expected_edges(flow)


def test_nodes_get_generated_ids_in_graph_order() -> None:
    flow = build_demo()
    for picture in both(flow):
        node_ids = [vid for vid, (shape, _) in picture.vertices.items() if shape == "node"]
        assert node_ids == [f"n{i}" for i in range(len(flow.graph.nodes))]
        assert [picture.vertices[vid][1] for vid in node_ids] == [n.name for n in flow.nodes]


def test_opensea_feeds_ingress_and_egress_feeds_rookery() -> None:
    mermaid, dot = both(build_demo())
    for picture in (mermaid, dot):
        edges = picture.named_edges()
        into = [t for (s, t, _) in edges if s == ("endpoint", "OpenSea")]
        out_of = [s for (s, t, _) in edges if t == ("endpoint", "Rookery")]
        assert into == [("node", "route")]
        assert out_of == [("node", "sink")]


def test_controller_loop_is_annotated_alike_in_both_formats() -> None:
    for picture in both(build_demo()):
        loops = [e for e in picture.named_edges().elements() if e[2] == "loop"]
        assert loops == [(("node", "controller"), ("node", "controller"), "loop")]
        assert "loop" in picture.classes_of(("node", "controller"))
        others = [v for v in picture.vertices.values() if v != ("node", "controller")]
        assert all("loop" not in picture.classes_of(v) for v in others)


def test_controller_only_flow_is_fed_by_opensea_and_feeds_rookery() -> None:
    for picture in both(build_controller_only()):
        assert picture.named_edges() == Counter(
            [
                (("endpoint", "OpenSea"), ("node", "controller"), "flow"),
                (("node", "controller"), ("node", "controller"), "loop"),
                (("node", "controller"), ("endpoint", "Rookery"), "flow"),
            ]
        )


def test_cycle_between_distinct_nodes_is_drawn_without_loop_marks() -> None:
    for picture in both(build_distinct_cycle()):
        edges = picture.named_edges()
        assert (("node", "b"), ("node", "a"), "flow") in edges
        assert all(kind == "flow" for (_, _, kind) in edges)
        assert all("loop" not in classes for classes in picture.classes.values())


def test_subflow_nodes_point_to_each_named_playbook_once() -> None:
    mermaid, dot = both(build_demo())
    for picture in (mermaid, dot):
        calls = sorted(
            (s[1], t[1]) for (s, t, kind) in picture.named_edges().elements() if kind == "calls"
        )
        # invoice declares ("retrieval", "billing", "retrieval"): one edge per distinct playbook.
        assert calls == [("answer", "retrieval"), ("invoice", "billing"), ("invoice", "retrieval")]
        playbooks = [v for v in picture.vertices.values() if v[0] == "playbook"]
        assert sorted(playbooks) == [("playbook", "billing"), ("playbook", "retrieval")]
        assert "subflow" in picture.classes_of(("node", "answer"))
        assert "subflow" in picture.classes_of(("node", "invoice"))
        assert "subflow" not in picture.classes_of(("node", "controller"))
        assert "playbook" in picture.classes_of(("playbook", "retrieval"))
    assert mermaid.classes == dot.classes
    assert mermaid.vertices == dot.vertices
    assert mermaid.edges == dot.edges


@pytest.mark.parametrize("name", sorted(FLOWS))
def test_mermaid_and_dot_draw_the_same_picture(name: str) -> None:
    mermaid, dot = both(FLOWS[name]())
    assert mermaid.vertices == dot.vertices
    assert mermaid.edges == dot.edges
    assert mermaid.classes == dot.classes


@pytest.mark.parametrize("name", sorted(FLOWS))
def test_output_is_deterministic_for_one_flow_and_for_identical_builds(name: str) -> None:
    first, second = FLOWS[name](), FLOWS[name]()
    assert flow_to_mermaid(first) == flow_to_mermaid(first) == flow_to_mermaid(second)
    assert flow_to_dot(first) == flow_to_dot(first) == flow_to_dot(second)


def test_odd_names_are_escaped_and_read_back_exactly() -> None:
    flow = build_odd_names()
    mermaid_text, dot_text = flow_to_mermaid(flow), flow_to_dot(flow)
    for picture in (parse_mermaid(mermaid_text), parse_dot(dot_text)):
        names = [name for (shape, name) in picture.vertices.values() if shape == "node"]
        assert names == list(ODD_NAMES)
        assert all(re.fullmatch(r"opensea|rookery|n\d+", vid) for vid in picture.vertices)
    # A node called "OpenSea" is not confused with the endpoint.
    assert 'n11["OpenSea"]' in mermaid_text
    assert 'opensea(["OpenSea"])' in mermaid_text
    # Mermaid gets entity codes, DOT gets backslash escapes; no raw quote breaks a label.
    assert 'n0["say #34;hi#34;"]' in mermaid_text
    assert 'n0 [label="say \\"hi\\""];' in dot_text
    assert 'n9["two<br/>lines"]' in mermaid_text
    assert 'n9 [label="two\\nlines"];' in dot_text


def test_control_characters_become_spaces_in_dot_and_entities_in_mermaid() -> None:
    flow = create(Node(step, name="tab\there\x00").to())
    assert 'n0["tab#9;here#0;"]' in flow_to_mermaid(flow)
    assert 'n0 [label="tab here "];' in flow_to_dot(flow)


@pytest.mark.parametrize("direction", ["TD", "TB", "BT", "LR", "RL"])
def test_mermaid_direction_is_written_in_the_header(direction: str) -> None:
    assert flow_to_mermaid(build_demo(), direction=direction).startswith(f"flowchart {direction}\n")


@pytest.mark.parametrize("rankdir", ["TB", "BT", "LR", "RL"])
def test_dot_rankdir_is_written_as_a_graph_attribute(rankdir: str) -> None:
    assert f"    rankdir={rankdir};\n" in flow_to_dot(build_demo(), rankdir=rankdir)


@pytest.mark.parametrize("direction", ["td", "DT", "", "LR ", "up"])
def test_invalid_mermaid_direction_raises_value_error(direction: str) -> None:
    with pytest.raises(ValueError, match=r"direction must be one of TD, TB, BT, LR, RL, got"):
        flow_to_mermaid(build_demo(), direction=direction)


@pytest.mark.parametrize("rankdir", ["TD", "tb", "", "sideways"])
def test_invalid_dot_rankdir_raises_value_error(rankdir: str) -> None:
    with pytest.raises(ValueError, match=r"rankdir must be one of TB, BT, LR, RL, got"):
        flow_to_dot(build_demo(), rankdir=rankdir)


def test_something_that_is_not_a_flow_raises_type_error() -> None:
    not_a_flow: Any = Node(step, name="lonely")
    with pytest.raises(TypeError, match="expected a flow built with create"):
        flow_to_mermaid(not_a_flow)
    with pytest.raises(TypeError, match="expected a flow built with create"):
        flow_to_dot(not_a_flow)


def test_aliases_are_the_same_functions() -> None:
    assert to_mermaid is flow_to_mermaid
    assert to_dot is flow_to_dot


def test_rendering_does_not_need_a_running_flow_and_leaves_it_idle() -> None:
    flow = build_demo()
    flow_to_mermaid(flow)
    flow_to_dot(flow)
    assert "phase='idle'" in repr(flow)


_NAME_CHARS = st.one_of(
    st.characters(blacklist_categories=("Cs", "Cc", "Cn", "Co")), st.sampled_from('\n"\\&#%<>`')
)


@st.composite
def random_flows(draw: st.DrawFn) -> PenguiFlow:
    """A random DAG (edges only go forward) with random self-loops and playbook calls."""
    names = draw(
        st.lists(st.text(_NAME_CHARS, min_size=1, max_size=6), min_size=1, max_size=7, unique=True)
    )
    loops = draw(st.lists(st.booleans(), min_size=len(names), max_size=len(names)))
    nodes: list[Node] = []
    for name, loop in zip(names, loops, strict=True):

        async def func(message: Any, ctx: Context) -> Any:
            return message

        playbooks = draw(st.lists(st.sampled_from(["retrieval", "billing", "a b"]), max_size=2))
        if playbooks:
            func = calls_playbooks(*playbooks)(func)
        nodes.append(Node(func, name=name, allow_cycle=loop))
    adjacencies: list[tuple[Node, tuple[Node, ...]]] = []
    for i, node in enumerate(nodes):
        later = draw(
            st.lists(st.sampled_from(nodes[i + 1 :]), unique=True)
            if nodes[i + 1 :]
            else st.just([])
        )
        self_edge = (node,) if node.allow_cycle else ()
        adjacencies.append(node.to(*self_edge, *later))
    return create(*adjacencies)


@settings(max_examples=60, deadline=None)
@given(random_flows())
def test_random_flows_round_trip_through_both_formats(flow: PenguiFlow) -> None:
    mermaid, dot = both(flow)
    for picture in (mermaid, dot):
        assert Counter(picture.vertices.values()) == expected_vertices(flow)
        assert picture.named_edges() == expected_edges(flow)
    assert mermaid.vertices == dot.vertices
    assert mermaid.edges == dot.edges
    assert mermaid.classes == dot.classes


# ------------------------------------------------------------------------------- Graphviz
_SVG = "{http://www.w3.org/2000/svg}"


def _drawn(svg: str) -> tuple[dict[str, str], Counter[tuple[str, str]]]:
    """Node texts and edges exactly as Graphviz drew them in ``svg``."""
    root = ElementTree.fromstring(svg)
    texts: dict[str, str] = {}
    edges: Counter[tuple[str, str]] = Counter()
    for group in root.iter(f"{_SVG}g"):
        kind = group.get("class", "").split()
        title = group.findtext(f"{_SVG}title") or ""
        if kind[:1] == ["node"]:
            texts[title] = "\n".join(t.text or "" for t in group.iter(f"{_SVG}text"))
        elif kind[:1] == ["edge"]:
            source, target = title.split("->")
            edges[(source, target)] += 1
    return texts, edges


def test_dot_output_renders_with_graphviz() -> None:
    dot = shutil.which("dot")
    if dot is None:
        pytest.skip("Graphviz `dot` is not installed (CI installs Debian's graphviz)")
    for name, build in sorted(FLOWS.items()):
        flow = build()
        for rankdir in ("TB", "LR"):
            text = flow_to_dot(flow, rankdir=rankdir)
            done = subprocess.run(
                [dot, "-Tsvg"], input=text, capture_output=True, text=True, timeout=30
            )
            assert done.returncode == 0, f"{name}: {done.stderr}"
            assert done.stderr.strip() == "", f"{name}: {done.stderr}"
            picture = parse_dot(text)
            texts, edges = _drawn(done.stdout)
            assert edges == Counter((s, t) for s, t, _ in picture.edges), name
            # Labels are drawn verbatim (quotes, backslashes, entities, line breaks and all).
            assert texts == {
                vid: (f"playbook: {label}" if shape == "playbook" else label)
                for vid, (shape, label) in picture.vertices.items()
            }, name
    drawn, _ = _drawn(
        subprocess.run(
            [dot, "-Tsvg"],
            input=flow_to_dot(build_odd_names()),
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    )
    assert [drawn[f"n{i}"] for i in range(len(ODD_NAMES))] == list(ODD_NAMES)
