"""ReactPlanner on an OpenAI-compatible endpoint, through the official SDK.

Run it with ``uv run python examples/react_openai/main.py``. With ``OPENAI_API_KEY`` and/or
``OPENAI_BASE_URL`` set it talks to that endpoint (OpenAI, or vLLM ``http://host:8000/v1``, Ollama
``http://host:11434/v1``, LM Studio ``http://host:1234/v1``; model from ``OPENAI_MODEL``, default
``gpt-4o-mini``; ``OPENAI_JSON_MODE`` = schema | object | off). Without them it starts a
``ProviderServer`` — a loopback server speaking OpenAI's wire format — and scripts its replies, so
the same code path (SDK, HTTP, SSE streaming, usage, cost) runs with no key.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any, Literal, cast

from pydantic import BaseModel

from penguiflow.core import tool
from penguiflow.planner import (
    ModelPrice,
    OpenAIJSONClient,
    PlannerEventType,
    PlannerFinish,
    ReactPlanner,
    ToolContext,
)
from penguiflow.testkit import ProviderServer

QUESTION = "What is 17 multiplied by 23? Use the multiply tool, then answer in one sentence."


class Factors(BaseModel):
    """Two numbers to multiply."""

    a: int
    b: int


class Product(BaseModel):
    """Their product."""

    product: int


@tool(desc="Multiply two integers exactly.")
async def multiply(args: Factors, ctx: ToolContext) -> Product:
    """Exact integer multiplication."""
    return Product(product=args.a * args.b)


async def solve(client: OpenAIJSONClient) -> PlannerFinish[Any]:
    streamed: list[str] = []

    def on_event(event: Any) -> None:
        if event.event_type is PlannerEventType.LLM_STREAM_CHUNK:
            streamed.append(event.extra["text"])

    planner = ReactPlanner(
        client, nodes=[multiply], stream_final_response=True, event_callback=on_event
    )
    result = await planner.run(QUESTION)
    assert isinstance(result, PlannerFinish), result
    usage = result.usage
    print(f"reason: {result.reason}")
    print(f"answer: {result.output}")
    print(
        f"streamed deltas: {len(streamed)}, joined == answer: {''.join(streamed) == result.output}"
    )
    tools = [s.action["next_node"] for s in result.trajectory.steps]
    print(f"steps: {tools}")
    print(
        f"usage: {usage.llm_calls} LLM calls, {usage.prompt_tokens} prompt + "
        f"{usage.completion_tokens} completion tokens, estimated={usage.estimated}, "
        f"cost_usd={usage.cost_usd}"
    )
    return result


async def live() -> None:
    model = os.environ.get("OPENAI_MODEL", "gpt-4o-mini")
    mode = cast(Literal["schema", "object", "off"], os.environ.get("OPENAI_JSON_MODE", "schema"))
    print(f"endpoint: {os.environ.get('OPENAI_BASE_URL', 'https://api.openai.com/v1')} ({model})")
    async with OpenAIJSONClient(model, json_mode=mode, pricing=ModelPrice(0.15, 0.60)) as client:
        await solve(client)


async def offline() -> None:
    call = {"thought": "multiply first", "next_node": "multiply", "args": {"a": 17, "b": 23}}
    answer = {
        "thought": "I have the product",
        "next_node": "final_response",
        "args": {"answer": "17 multiplied by 23 is 391."},
    }
    async with ProviderServer() as server:
        server.reply(text=json.dumps(call), usage=(420, 24))
        server.reply(text=json.dumps(answer), usage=(470, 21))
        print(
            f"endpoint: ProviderServer at {server.openai_base_url} "
            "(no OPENAI_API_KEY / OPENAI_BASE_URL)"
        )
        async with OpenAIJSONClient(
            "gpt-4o-mini",
            base_url=server.openai_base_url,
            api_key="not-needed",
            pricing=ModelPrice(input_per_mtok=0.15, output_per_mtok=0.60),
        ) as client:
            result = await solve(client)
        first = server.requests[0].json
        schema = first["response_format"]["json_schema"]
        print(
            f"request 1: model={first['model']} stream={first['stream']} "
            f"response_format={schema['name']}"
        )
        print(f"observation sent back: {server.requests[1].json['messages'][-1]['content']}")
        assert result.output == "17 multiplied by 23 is 391."


async def main() -> None:
    if os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL"):
        await live()
    else:
        await offline()
    print("react_openai done")


if __name__ == "__main__":
    asyncio.run(main())
