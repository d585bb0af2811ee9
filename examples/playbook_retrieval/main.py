"""Subflows: a node runs a retrieval playbook (a child flow) for its message and uses the result.

Run it with ``uv run python examples/playbook_retrieval/main.py``.
"""

from __future__ import annotations

import asyncio

from penguiflow.core import (
    Context,
    FinalAnswer,
    Headers,
    Message,
    Node,
    PenguiFlow,
    calls_playbooks,
    create,
)

CORPUS = {
    "krill": "Adelie penguins eat mostly krill.",
    "huddle": "Emperor penguins huddle against the cold.",
    "swim": "Gentoo penguins swim up to 36 km/h.",
}


# --- the retrieval playbook: rewrite -> search -> rank ---------------------------------------
async def rewrite(msg: Message, ctx: Context) -> Message:
    words = str(msg.payload).lower().replace("?", "").split()
    return msg.with_payload(words).with_meta(rewritten=True)


async def search(msg: Message, ctx: Context) -> Message:
    words: list[str] = msg.payload
    hits = [(key, text) for key, text in CORPUS.items() if any(w in key for w in words)]
    return msg.with_payload(hits).with_meta(hits=len(hits))


async def rank(msg: Message, ctx: Context) -> Message:
    hits: list[tuple[str, str]] = msg.payload
    return msg.with_payload(sorted(hits)).with_meta(ranked_by="key")


def build_retrieval() -> PenguiFlow:
    """A playbook factory: a fresh child flow for every call."""
    rewrite_node, search_node, rank_node = Node(rewrite), Node(search), Node(rank)
    return create(rewrite_node.to(search_node), search_node.to(rank_node), rank_node.to())


# --- the parent flow ------------------------------------------------------------------------
@calls_playbooks("retrieval")  # lets visualisers draw the subflow
async def answer(msg: Message, ctx: Context) -> Message:
    # The child runs inside this message's trace: cancelling the trace cancels it too. Its final
    # meta is merged into msg.meta (last write wins).
    hits: list[tuple[str, str]] = await ctx.call_playbook(build_retrieval, msg, timeout=5)
    text = " ".join(text for _, text in hits) or "I found nothing."
    return msg.with_payload(FinalAnswer(text=text, citations=[key for key, _ in hits]))


async def main() -> None:
    answer_node = Node(answer)
    print(f"node {answer_node.name!r} calls playbooks {answer_node.subflows}")
    flow = create(answer_node.to())
    async with flow.running():
        questions = ["Do penguins eat krill?", "How do they huddle and swim?", "Can they fly?"]
        messages = [Message(payload=q, headers=Headers(tenant="demo")) for q in questions]
        for msg in messages:
            await flow.emit(msg)
        for msg in messages:
            result: Message = await flow.fetch(trace_id=msg.trace_id)
            final: FinalAnswer = result.payload
            print(f"{msg.payload} -> {final.text} {final.citations}")
            print(f"    meta from the subflow: {result.meta}")
    print("playbook_retrieval done")


if __name__ == "__main__":
    asyncio.run(main())
