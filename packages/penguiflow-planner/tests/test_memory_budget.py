"""Truncation, the memory message, budgets and overflow policies."""

import json
from collections.abc import Callable
from typing import Any

import pytest

from penguiflow.planner import CharCounter, MemoryBudgetExceeded
from penguiflow.planner.memory import (
    ConversationTurn,
    MemoryBudget,
    MemoryHealth,
    MemoryKey,
    ShortTermMemory,
    TrajectoryDigest,
)

MakeMemory = Callable[..., ShortTermMemory]


def turn(n: int) -> ConversationTurn:
    return ConversationTurn(f"q{n}", f"a{n}", ts=float(n))


KEY = MemoryKey("acme", "u1", "s1")


def content(message: Any) -> dict[str, Any]:
    assert message is not None and message["role"] == "system"
    return json.loads(message["content"])["conversation_memory"]


async def test_empty_memory_loads_nothing(make_memory: MakeMemory) -> None:
    assert await make_memory().load(KEY) is None


async def test_strategy_none_neither_reads_nor_writes(make_memory: MakeMemory, store: Any) -> None:
    memory = make_memory("none")
    await memory.record(KEY, turn(1))
    assert await memory.load(KEY) is None
    assert await store.get("planner.memory", "acme/u1/s1") is None
    snapshot = await memory.snapshot(KEY)
    assert (snapshot.turns, snapshot.summary, snapshot.health) == ((), "", MemoryHealth.HEALTHY)


async def test_truncation_keeps_the_last_full_zone_turns_in_order(make_memory: MakeMemory) -> None:
    memory = make_memory(budget=MemoryBudget(full_zone_turns=3))
    for n in range(1, 7):
        await memory.record(KEY, turn(n))
    memory_view = content(await memory.load(KEY))
    assert [t["user"] for t in memory_view["recent_turns"]] == ["q4", "q5", "q6"]
    assert memory_view["summary"] == "" and memory_view["pending_turns"] == []
    snapshot = await memory.snapshot(KEY)
    assert [t.ts for t in snapshot.turns] == [4.0, 5.0, 6.0]
    assert snapshot.pending_turns == ()


async def test_zero_full_zone_keeps_nothing(make_memory: MakeMemory) -> None:
    memory = make_memory(budget=MemoryBudget(full_zone_turns=0))
    await memory.record(KEY, turn(1))
    assert await memory.load(KEY) is None


async def test_turns_are_stamped_and_digests_shown_when_asked(make_memory: MakeMemory) -> None:
    digest = TrajectoryDigest(("search",), "3 hits", "looked it up", ("art-1",))
    a_turn = ConversationTurn("q", "a", digest, artifacts_shown={"table": [1, 2]})
    memory = make_memory()
    await memory.record(KEY, a_turn)
    (stored,) = (await memory.snapshot(KEY)).turns
    assert stored.ts is not None and stored.trajectory_digest == digest
    (shown,) = content(await memory.load(KEY))["recent_turns"]
    assert shown["trajectory_digest"]["tools_invoked"] == ["search"]
    assert shown["artifacts_shown"] == {"table": [1, 2]}

    hidden = make_memory(include_trajectory_digest=False)
    (shown,) = content(await hidden.load(KEY))["recent_turns"]
    assert "trajectory_digest" not in shown


async def test_the_message_is_deterministic(make_memory: MakeMemory) -> None:
    memory = make_memory()
    await memory.record(KEY, turn(1))
    assert await memory.load(KEY) == await memory.load(KEY)


def tokens(message: Any) -> int:
    return CharCounter().count_messages([message])


async def test_total_budget_truncate_oldest_drops_the_oldest_turns(
    make_memory: MakeMemory,
) -> None:
    unlimited = make_memory(budget=MemoryBudget(full_zone_turns=10, total_max_tokens=None))
    for n in range(1, 11):
        await unlimited.record(KEY, ConversationTurn(f"question {n} " * 10, f"answer {n} " * 10))
    whole = await unlimited.load(KEY)
    limit = tokens(whole) // 2
    limited = make_memory(budget=MemoryBudget(full_zone_turns=10, total_max_tokens=limit))
    message = await limited.load(KEY)
    assert tokens(message) <= limit
    kept = [t["user"] for t in content(message)["recent_turns"]]
    assert 0 < len(kept) < 10
    assert kept[-1].startswith("question 10 ")  # the newest survive
    # the store keeps everything: the budget shapes what a run sees
    assert len((await limited.snapshot(KEY)).turns) == 10


async def test_error_policy_raises_memory_budget_exceeded(make_memory: MakeMemory) -> None:
    writer = make_memory()
    await writer.record(KEY, ConversationTurn("x" * 400, "y" * 400))
    strict = make_memory(budget=MemoryBudget(total_max_tokens=50, overflow_policy="error"))
    with pytest.raises(MemoryBudgetExceeded, match="total_max_tokens=50"):
        await strict.load(KEY)


async def test_a_budget_nothing_fits_in_loads_nothing(make_memory: MakeMemory) -> None:
    writer = make_memory()
    await writer.record(KEY, turn(1))
    tiny = make_memory(budget=MemoryBudget(total_max_tokens=3))
    assert await tiny.load(KEY) is None
