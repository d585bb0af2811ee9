"""Quickstart: a typed three-node flow with validation, fan-out of traces and clean shutdown.

Run it with ``uv run python examples/quickstart/main.py``.
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

from penguiflow.core import Context, Headers, Message, ModelRegistry, Node, create


class Question(BaseModel):
    text: str


class Draft(BaseModel):
    text: str
    words: int


async def parse(msg: Message, ctx: Context) -> Message:
    """Turn raw text into a Question (a node may return a new payload in the same envelope)."""
    return msg.with_payload(Question(text=str(msg.payload).strip()))


async def draft(msg: Message, ctx: Context) -> Message:
    """Pretend to think for a moment, then answer."""
    await asyncio.sleep(0.01)
    question: Question = msg.payload
    answer = f"You asked: {question.text!r}"
    return msg.with_payload(Draft(text=answer, words=len(answer.split())))


async def sign(msg: Message, ctx: Context) -> Message:
    """Add a signature and record which node signed it in the message's meta."""
    reply: Draft = msg.payload
    signed = msg.with_payload(reply.model_copy(update={"text": reply.text + " -- PenguiFlow"}))
    return signed.with_meta(signed_by=ctx.owner.name)


async def main() -> None:
    parse_node, draft_node, sign_node = Node(parse), Node(draft), Node(sign)
    flow = create(parse_node.to(draft_node), draft_node.to(sign_node), sign_node.to())
    registry = ModelRegistry.from_annotations(flow)  # validates every hop against the annotations

    questions = ["What is a floe?", "Who lives in the rookery?", "Why bounded queues?"]
    async with flow.running(registry=registry):
        messages = [Message(payload=q, headers=Headers(tenant="demo")) for q in questions]
        for msg in messages:  # three traces run through the flow concurrently
            await flow.emit(msg)
        for msg in messages:  # trace-scoped fetch: each caller gets its own answer
            result: Message = await flow.fetch(trace_id=msg.trace_id)
            print(f"{result.payload.text}  [words={result.payload.words}, meta={result.meta}]")
    print("flow stopped:", flow.statistics())


if __name__ == "__main__":
    asyncio.run(main())
