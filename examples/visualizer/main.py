"""Visualiser: draw a flow as Mermaid (in a Markdown file) and as Graphviz DOT.

Run it with ``uv run python examples/visualizer/main.py [--out DIR]``. Without ``--out`` the files
go to a fresh temporary directory (printed), so running the example never touches the repository.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from penguiflow.core import (
    WM,
    Context,
    FinalAnswer,
    Message,
    Node,
    PenguiFlow,
    calls_playbooks,
    create,
    flow_to_dot,
    flow_to_mermaid,
    predicate_router,
)


def triage(msg: Message) -> str:
    """Research questions go to the controller loop, lookups to the retrieval answerer."""
    return "research" if str(msg.payload).startswith("why") else "lookup"


async def research(msg: Message, ctx: Context) -> Message:
    """A controller loop: returning WM takes another hop round the self-edge."""
    wm: WM = msg.payload
    if wm.hops >= 2:
        return msg.with_payload(FinalAnswer(text=f"researched {wm.query!r}"))
    return msg.with_payload(wm.model_copy(update={"facts": [*wm.facts, f"fact {wm.hops}"]}))


@calls_playbooks("retrieval")  # the visualiser draws this node's subflow
async def lookup(msg: Message, ctx: Context) -> Message:
    return msg.with_payload(FinalAnswer(text=f"looked up {msg.payload!r}"))


async def respond(msg: Message, ctx: Context) -> Message:
    return msg


def build_flow() -> PenguiFlow:
    router = predicate_router("triage", triage)
    research_node = Node(research, allow_cycle=True)
    lookup_node = Node(lookup)
    respond_node = Node(respond)
    return create(
        router.to(research_node, lookup_node),
        research_node.to(research_node, respond_node),
        lookup_node.to(respond_node),
        respond_node.to(),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="directory to write into (default: a temp dir)")
    args = parser.parse_args()
    out: Path = args.out or Path(tempfile.mkdtemp(prefix="penguiflow-visualizer-"))
    out.mkdir(parents=True, exist_ok=True)

    flow = build_flow()
    mermaid = flow_to_mermaid(flow, direction="LR")
    markdown = f"# Support flow\n\n```mermaid\n{mermaid}```\n"
    (out / "flow.md").write_text(markdown, encoding="utf-8")
    (out / "flow.dot").write_text(flow_to_dot(flow, rankdir="LR"), encoding="utf-8")

    print(mermaid, end="")
    print(f"markdown: {out / 'flow.md'}")
    print(f"dot:      {out / 'flow.dot'}  (render: dot -Tsvg flow.dot -o flow.svg)")
    print("wrote flow.md and flow.dot")


if __name__ == "__main__":
    main()
