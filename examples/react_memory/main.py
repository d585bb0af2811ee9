"""ReactPlanner with short-term memory: rolling summaries in the background, two tenants apart.

Run it with ``uv run python examples/react_memory/main.py``. No key, no server: ``FunctionLLM``
plays the model. It answers from what the conversation memory shows it, and writes the summary
when the planner asks for a ``memory_summary``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from penguiflow.planner import (
    LLMMessage,
    MemoryBudget,
    MemoryKey,
    PlannerFinish,
    ReactPlanner,
    ShortTermMemoryConfig,
)
from penguiflow.testkit import FunctionLLM, LLMCallInfo


def model(messages: list[LLMMessage], info: LLMCallInfo) -> dict[str, Any]:
    """A pretend model: summarises when asked, else answers with what it remembers."""
    if info.schema_name == "memory_summary":
        turns = json.loads(messages[-1]["content"])
        return {"summary": f"earlier: {len(json.dumps(turns))} chars of conversation"}
    memory: dict[str, Any] = {}
    for message in messages:
        if message["role"] == "system" and "conversation_memory" in message["content"]:
            memory = json.loads(message["content"])["conversation_memory"]
    query = next(json.loads(m["content"])["query"] for m in messages if '"query"' in m["content"])
    recent = memory.get("recent_turns", [])
    answer = f"you said {query!r}; I remember {len(recent)} recent turns"
    if memory.get("summary"):
        answer += " and a summary"
    return {"thought": "", "next_node": "final_response", "args": {"answer": answer}}


async def main() -> None:
    config = ShortTermMemoryConfig(
        strategy="rolling_summary", budget=MemoryBudget(full_zone_turns=2)
    )
    async with ReactPlanner(FunctionLLM(model), memory=config) as planner:
        acme = MemoryKey("acme", "ana", "s1")
        globex = MemoryKey("globex", "bo", "s1")
        for i in range(4):
            result = await planner.run(f"acme question {i}", memory_key=acme)
            assert isinstance(result, PlannerFinish)
            print(f"acme run {i}: {result.output}")
        other = await planner.run("globex question", memory_key=globex)
        assert isinstance(other, PlannerFinish)
        print(f"globex run: {other.output}")
        assert planner.memory is not None
        await planner.memory.flush()  # wait for the background summaries
        snapshot = await planner.memory.snapshot(acme)
        print(f"acme memory: {len(snapshot.turns)} recent turns, summary={snapshot.summary!r}")
        globex_snapshot = await planner.memory.snapshot(globex)
        apart = all("acme" not in turn.user_message for turn in globex_snapshot.turns)
        print(f"globex memory: {len(globex_snapshot.turns)} recent turns, no acme turn: {apart}")
    print("react_memory done")


if __name__ == "__main__":
    asyncio.run(main())
