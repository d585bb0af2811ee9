"""Union routing: validate the payload against a discriminated union, route by its ``kind``.

Run it with ``uv run python examples/routing_union/main.py``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from penguiflow.core import Context, FlowError, Headers, Message, Node, create, union_router


class Search(BaseModel):
    kind: Literal["search"] = "search"
    query: str


class Calculate(BaseModel):
    kind: Literal["calculate"] = "calculate"
    a: float
    b: float


class Chat(BaseModel):
    kind: Literal["chat"] = "chat"
    text: str


Request = Annotated[Search | Calculate | Chat, Field(discriminator="kind")]


async def search(msg: Message, ctx: Context) -> Message:
    request: Search = msg.payload  # the router hands on the validated variant
    return msg.with_payload(f"search results for {request.query!r}")


async def calculate(msg: Message, ctx: Context) -> Message:
    request: Calculate = msg.payload
    return msg.with_payload(f"{request.a} + {request.b} = {request.a + request.b}")


async def chat(msg: Message, ctx: Context) -> Message:
    request: Chat = msg.payload
    return msg.with_payload(f"chat reply to {request.text!r}")


async def main() -> None:
    # The runtime logs each terminal failure at ERROR; this example prints them itself.
    logging.getLogger("penguiflow.core").setLevel(logging.CRITICAL)
    router = union_router("dispatch", Request)  # successors are named after each variant's kind
    search_node, calculate_node, chat_node = Node(search), Node(calculate), Node(chat)
    flow = create(
        router.to(search_node, calculate_node, chat_node),
        search_node.to(),
        calculate_node.to(),
        chat_node.to(),
        emit_errors_to_rookery=True,
    )
    payloads: list[object] = [
        {"kind": "search", "query": "emperor penguins"},
        Calculate(a=2, b=40),  # a model instance works as well as a dict
        {"kind": "chat", "text": "hello"},
        {"kind": "dance", "steps": 3},  # not a variant of the union
    ]
    async with flow.running():
        messages = [Message(payload=p, headers=Headers(tenant="demo")) for p in payloads]
        for msg in messages:
            await flow.emit(msg)
        for msg in messages:
            item = await flow.fetch(trace_id=msg.trace_id)
            if isinstance(item, FlowError):
                print(f"rejected: [{item.code}] at node {item.node_name!r}")
            else:
                print(f"routed: {item.payload}")
    print("routing_union done")


if __name__ == "__main__":
    asyncio.run(main())
