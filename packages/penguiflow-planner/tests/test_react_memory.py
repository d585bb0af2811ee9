"""The planner with short-term memory: turns recorded per key, shown to later runs, isolated."""

from __future__ import annotations

import json
from typing import Any

import anyio

from penguiflow.planner import LLMMessage, MemoryKey, ReactPlanner, ShortTermMemoryConfig
from penguiflow.testkit import FunctionLLM


def _memory_of(messages: list[LLMMessage]) -> dict[str, Any] | None:
    for message in messages:
        if message["role"] == "system" and "conversation_memory" in message["content"]:
            return json.loads(message["content"])["conversation_memory"]
    return None


def _answer_with_query(messages: list[LLMMessage], info: Any) -> dict[str, Any]:
    query = next(json.loads(m["content"])["query"] for m in messages if '"query"' in m["content"])
    return {"thought": "", "next_node": "final_response", "args": {"answer": f"re: {query}"}}


async def test_a_later_run_with_the_same_key_sees_the_earlier_turn() -> None:
    llm = FunctionLLM(_answer_with_query)
    planner = ReactPlanner(llm, memory=ShortTermMemoryConfig(strategy="truncation"))
    key = MemoryKey("acme", "u1", "s1")
    first = await planner.run("first question", memory_key=key)
    assert first.reason == "answer_complete"
    await planner.run("second question", memory_key=key)
    assert _memory_of(llm.calls[0].messages) is None
    memory = _memory_of(llm.calls[1].messages)
    assert memory is not None
    assert "first question" in json.dumps(memory) and "re: first question" in json.dumps(memory)


async def test_without_a_key_memory_is_neither_read_nor_written() -> None:
    llm = FunctionLLM(_answer_with_query)
    planner = ReactPlanner(llm, memory=ShortTermMemoryConfig(strategy="truncation"))
    await planner.run("no key here")
    await planner.run("still no key")
    assert all(_memory_of(call.messages) is None for call in llm.calls)
    assert planner.memory is not None
    snapshot = await planner.memory.snapshot(MemoryKey("acme", "u1", "s1"))
    assert snapshot.turns == ()


async def test_two_tenants_never_see_each_others_memory_under_concurrency() -> None:
    llm = FunctionLLM(_answer_with_query)
    planner = ReactPlanner(llm, memory=ShortTermMemoryConfig(strategy="truncation"))
    keys = {tenant: MemoryKey(tenant, "u", "s") for tenant in ("alpha", "beta")}

    async def talk(tenant: str, i: int) -> None:
        await planner.run(f"{tenant}-secret-{i}", memory_key=keys[tenant])

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for i in range(10):
                for tenant in keys:
                    tg.start_soon(talk, tenant, i)
    for call in llm.calls:
        query = next(
            json.loads(m["content"])["query"] for m in call.messages if '"query"' in m["content"]
        )
        memory = json.dumps(_memory_of(call.messages) or {})
        other = "beta" if query.startswith("alpha") else "alpha"
        assert f"{other}-secret" not in memory
    assert planner.memory is not None
    for tenant, key in keys.items():
        turns = (await planner.memory.snapshot(key)).turns
        assert turns and all(t.user_message.startswith(tenant) for t in turns)


async def test_trajectories_and_events_are_persisted_under_the_keys_scope() -> None:
    from penguiflow.core import InMemoryDurableStore, Scope

    store = InMemoryDurableStore()
    planner = ReactPlanner(FunctionLLM(_answer_with_query), store=store, persist_events=True)
    key = MemoryKey("acme", "u1", "s1")
    result = await planner.run("hello", memory_key=key)
    scope = Scope("acme", "u1", "s1")
    record = await store.get("planner.trajectory", result.run_id, scope=scope)
    assert record is not None and json.loads(record.value)["query"] == "hello"
    assert await store.get("planner.trajectory", result.run_id, scope=Scope("other")) is None
    events = [json.loads(e.value) for e in await store.read(f"planner.events.{result.run_id}")]
    assert [e["event_type"] for e in events][-1] == "finish"
    assert await store.erase("acme") >= 2  # erasing the tenant erases its planner records
    assert await store.read(f"planner.events.{result.run_id}") == []
