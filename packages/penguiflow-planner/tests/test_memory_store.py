"""Memory in a shared DurableStore: SQLite across instances and reopens, concurrency, TTL."""

import json
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from penguiflow.core import DurableStore, InMemoryDurableStore, SQLiteDurableStore
from penguiflow.planner import CharCounter, LLMMessage
from penguiflow.planner.memory import (
    ConversationTurn,
    MemoryBudget,
    MemoryKey,
    ShortTermMemory,
    ShortTermMemoryConfig,
)
from penguiflow.testkit import FunctionLLM, LLMCallInfo, ScriptedLLM
from penguiflow.testkit.stores import ManualClock

KEY = MemoryKey("acme", "u1", "s1")


def turn(n: int) -> ConversationTurn:
    return ConversationTurn(f"q{n}", f"a{n}", ts=float(n))


def manager(store: DurableStore, strategy: str = "truncation", **options: Any) -> ShortTermMemory:
    llm = options.pop("llm", None)
    budget = options.pop("budget", MemoryBudget(full_zone_turns=1000, total_max_tokens=None))
    config = ShortTermMemoryConfig(
        strategy=strategy,  # type: ignore[arg-type]
        budget=budget,
        retry_backoff_base_s=0.0,
        **options,
    )
    return ShortTermMemory(config, store=store, llm=llm, token_counter=CharCounter())


async def users(memory: ShortTermMemory, key: MemoryKey = KEY) -> list[str]:
    return [t.user_message for t in (await memory.snapshot(key)).turns]


async def test_two_instances_on_one_sqlite_file_share_memory_and_it_survives_a_reopen(
    tmp_path: Path,
) -> None:
    path = tmp_path / "memory.db"
    with anyio.fail_after(20):
        async with SQLiteDurableStore.open(path) as one, SQLiteDurableStore.open(path) as two:
            first, second = manager(one), manager(two)
            await first.record(KEY, turn(1))
            assert await users(second) == ["q1"]  # read-through: no cache in between
            await second.record(KEY, turn(2))
            await first.record(KEY, turn(3))
            assert await users(first) == await users(second) == ["q1", "q2", "q3"]
            message = await second.load(KEY)
            assert message is not None and '"q3"' in message["content"]
        async with SQLiteDurableStore.open(path) as reopened:
            assert await users(manager(reopened)) == ["q1", "q2", "q3"]


async def test_a_summary_written_by_one_instance_is_seen_by_another(tmp_path: Path) -> None:
    path = tmp_path / "memory.db"
    budget = MemoryBudget(full_zone_turns=1)
    with anyio.fail_after(20):
        async with SQLiteDurableStore.open(path) as one, SQLiteDurableStore.open(path) as two:
            writer = manager(
                one, "rolling_summary", llm=ScriptedLLM([{"summary": "S"}]), budget=budget
            )
            reader = manager(two, "rolling_summary", llm=ScriptedLLM([]), budget=budget)
            await writer.record(KEY, turn(1))
            await writer.record(KEY, turn(2))
            message = await reader.load(KEY)
    assert message is not None
    memory = json.loads(message["content"])["conversation_memory"]
    assert memory["summary"] == "S" and memory["pending_turns"] == []


async def test_concurrent_records_on_one_key_lose_nothing_in_memory() -> None:
    memory = manager(InMemoryDurableStore())
    with anyio.fail_after(20):
        async with anyio.create_task_group() as group:
            for n in range(60):
                group.start_soon(memory.record, KEY, turn(n))
    recorded = await users(memory)
    assert sorted(recorded) == sorted(f"q{n}" for n in range(60))
    assert len(recorded) == 60


async def test_concurrent_records_from_two_instances_on_sqlite_lose_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "memory.db"
    with anyio.fail_after(60):
        async with SQLiteDurableStore.open(path) as one, SQLiteDurableStore.open(path) as two:
            managers = [manager(one), manager(two)]
            async with anyio.create_task_group() as group:
                for n in range(30):
                    group.start_soon(managers[n % 2].record, KEY, turn(n))
            recorded = await users(managers[0])
    assert sorted(recorded) == sorted(f"q{n}" for n in range(30))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=0, max_value=2), min_size=1, max_size=12))
def test_concurrent_writers_keep_every_turn_and_each_writers_order(writers: list[int]) -> None:
    async def scenario() -> None:
        store = InMemoryDurableStore()
        managers = [manager(store) for _ in range(3)]
        by_writer: dict[int, list[str]] = {0: [], 1: [], 2: []}
        for n, w in enumerate(writers):
            by_writer[w].append(f"q{n}")

        async def write(w: int) -> None:
            for name in by_writer[w]:
                await managers[w].record(KEY, ConversationTurn(name, "a"))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                for w in by_writer:
                    group.start_soon(write, w)
        recorded = await users(managers[0])
        assert sorted(recorded) == sorted(f"q{n}" for n in range(len(writers)))
        for names in by_writer.values():  # each writer's turns in the order it recorded them
            assert [r for r in recorded if r in names] == names

    anyio.run(scenario)


async def test_rolling_summaries_under_concurrent_records_fold_every_turn_once() -> None:
    store = InMemoryDurableStore()

    async def fold(messages: list[LLMMessage], info: LLMCallInfo) -> dict[str, str]:
        await anyio.lowlevel.checkpoint()
        request = json.loads(messages[-1]["content"])
        parts = [request["previous_summary"], *(t["user"] for t in request["turns"])]
        return {"summary": " ".join(p for p in parts if p)}

    budget = MemoryBudget(full_zone_turns=2, summary_max_tokens=None, total_max_tokens=None)
    managers = [
        manager(store, "rolling_summary", llm=FunctionLLM(fold), budget=budget) for _ in range(2)
    ]
    with anyio.fail_after(20):
        async with managers[0].running(), managers[1].running():
            async with anyio.create_task_group() as group:
                for n in range(20):
                    group.start_soon(managers[n % 2].record, KEY, turn(n))
            await managers[0].flush()
            await managers[1].flush()
            await managers[0].flush(KEY)  # folds whatever a discarded pass left pending
    snapshot = await managers[0].snapshot(KEY)
    folded = snapshot.summary.split()
    kept = [t.user_message for t in (*snapshot.pending_turns, *snapshot.turns)]
    assert snapshot.pending_turns == ()
    assert sorted(folded + kept) == sorted(f"q{n}" for n in range(20))
    assert len(set(folded)) == len(folded)  # no turn folded twice


async def test_memory_expires_by_the_stores_clock_and_each_write_renews_it() -> None:
    clock = ManualClock(1_000.0)
    store = InMemoryDurableStore(clock=clock)
    memory = manager(store, ttl_s=60)
    await memory.record(KEY, turn(1))
    clock.advance(59)
    assert await users(memory) == ["q1"]
    await memory.record(KEY, turn(2))  # renews the TTL
    clock.advance(59)
    assert await users(memory) == ["q1", "q2"]
    clock.advance(2)
    assert await memory.load(KEY) is None
    await memory.record(KEY, turn(3))  # a fresh start after expiry
    assert await users(memory) == ["q3"]


async def test_ttl_none_never_expires() -> None:
    clock = ManualClock(0.0)
    memory = manager(InMemoryDurableStore(clock=clock), ttl_s=None)
    await memory.record(KEY, turn(1))
    clock.advance(10 * 365 * 86_400)
    assert await users(memory) == ["q1"]


async def test_a_record_of_an_unknown_version_is_never_overwritten() -> None:
    store = InMemoryDurableStore()
    memory = manager(store)
    await memory.record(KEY, turn(1))
    record = await store.get("planner.memory", "acme/u1/s1")
    assert record is not None
    document = json.loads(record.value)
    document["v"] = 2
    await store.put(
        "planner.memory", "acme/u1/s1", json.dumps(document).encode(), scope=record.scope
    )
    with pytest.raises(ValueError, match="version 2"):
        await memory.record(KEY, turn(2))
    with pytest.raises(ValueError, match="version 2"):
        await memory.load(KEY)
