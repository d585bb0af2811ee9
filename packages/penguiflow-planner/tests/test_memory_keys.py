"""Fail-closed keying and isolation of short-term memory."""

import json
from collections.abc import Callable

import pytest

from penguiflow.core import InMemoryDurableStore, Scope
from penguiflow.planner import PlannerUsageError
from penguiflow.planner.memory import ConversationTurn, MemoryIsolation, MemoryKey, ShortTermMemory

MakeMemory = Callable[..., ShortTermMemory]


def turn(n: int) -> ConversationTurn:
    return ConversationTurn(f"q{n}", f"a{n}", ts=float(n))


KEY = MemoryKey("acme", "u1", "s1")


def test_no_key_means_no_memory(make_memory: MakeMemory) -> None:
    memory = make_memory()
    assert memory.resolve_key(None, None) is None
    full = {"tenant_id": "acme", "user_id": "u1", "session_id": "s1"}
    # require_explicit_key=True (the default): a complete tool_context is not enough.
    assert memory.resolve_key(None, full) is None


def test_explicit_key_wins(make_memory: MakeMemory) -> None:
    memory = make_memory(isolation=MemoryIsolation(require_explicit_key=False))
    other = {"tenant_id": "x", "user_id": "y", "session_id": "z"}
    assert memory.resolve_key(KEY, other) == KEY
    as_mapping = {"tenant_id": "acme", "user_id": "u1", "session_id": "s1"}
    assert memory.resolve_key(as_mapping, None) == KEY


@pytest.mark.parametrize(
    "bad",
    [{"tenant_id": "acme", "user_id": "u1"}, {"tenant_id": "", "user_id": "u", "session_id": "s"}],
)
def test_an_incomplete_explicit_key_is_a_usage_error(make_memory: MakeMemory, bad: object) -> None:
    with pytest.raises(PlannerUsageError, match="MemoryKey"):
        make_memory().resolve_key(bad, None)  # type: ignore[arg-type]
    with pytest.raises(PlannerUsageError):
        make_memory().resolve_key("acme:u1:s1", None)  # type: ignore[arg-type]


def test_tool_context_key_needs_opt_in_and_all_three_parts(make_memory: MakeMemory) -> None:
    isolation = MemoryIsolation(
        require_explicit_key=False, tenant_key="org", user_key="uid", session_key="sid"
    )
    memory = make_memory(isolation=isolation)
    assert memory.resolve_key(None, {"org": "acme", "uid": "u1", "sid": "s1"}) == KEY
    assert memory.resolve_key(None, {"org": "acme", "uid": "u1"}) is None
    assert memory.resolve_key(None, {"org": "acme", "uid": "u1", "sid": ""}) is None
    assert memory.resolve_key(None, {"org": "acme", "uid": 7, "sid": "s1"}) is None
    assert memory.resolve_key(None, None) is None


async def test_no_tenant_user_or_session_sees_another(make_memory: MakeMemory) -> None:
    memory = make_memory()
    keys = [
        KEY,
        MemoryKey("other", "u1", "s1"),
        MemoryKey("acme", "u2", "s1"),
        MemoryKey("acme", "u1", "s2"),
    ]
    for n, key in enumerate(keys):
        await memory.record(key, turn(n))
    for n, key in enumerate(keys):
        snapshot = await memory.snapshot(key)
        assert [t.user_message for t in snapshot.turns] == [f"q{n}"]
        message = await memory.load(key)
        assert message is not None
        seen = json.loads(message["content"])["conversation_memory"]["recent_turns"]
        assert seen == [{"user": f"q{n}", "assistant": f"a{n}"}]


async def test_separators_in_ids_never_merge_two_keys(make_memory: MakeMemory) -> None:
    memory = make_memory()
    await memory.record(MemoryKey("a/b", "c", "s"), turn(1))
    await memory.record(MemoryKey("a", "b/c", "s"), turn(2))
    first = await memory.snapshot(MemoryKey("a/b", "c", "s"))
    second = await memory.snapshot(MemoryKey("a", "b/c", "s"))
    assert [t.user_message for t in first.turns] == ["q1"]
    assert [t.user_message for t in second.turns] == ["q2"]


async def test_records_use_the_spec_namespace_key_and_scope(
    make_memory: MakeMemory, store: InMemoryDurableStore
) -> None:
    memory = make_memory()
    await memory.record(KEY, turn(1))
    record = await store.get("planner.memory", "acme/u1/s1")
    assert record is not None
    assert record.scope == Scope("acme", "u1", "s1")
    assert json.loads(record.value)["v"] == 1
    assert await store.get("planner.memory", "acme/u1/s1", scope=Scope("other")) is None


async def test_erasing_the_tenant_erases_its_memory(
    make_memory: MakeMemory, store: InMemoryDurableStore
) -> None:
    memory = make_memory()
    await memory.record(KEY, turn(1))
    await memory.record(MemoryKey("other", "u1", "s1"), turn(2))
    await store.erase("acme")
    assert await memory.load(KEY) is None
    assert await memory.load(MemoryKey("other", "u1", "s1")) is not None
