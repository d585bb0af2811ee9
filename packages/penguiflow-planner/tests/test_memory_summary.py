"""Rolling summaries: in the background, inline when not running, retries, DEGRADED, recovery."""

import asyncio
import json
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from penguiflow.planner import CharCounter, LLMMessage, PlannerUsageError
from penguiflow.planner.memory import (
    ConversationTurn,
    MemoryBudget,
    MemoryHealth,
    MemoryKey,
    ShortTermMemory,
    ShortTermMemoryConfig,
)
from penguiflow.testkit import FunctionLLM, LLMCallInfo, ScriptedLLM, ScriptExhausted

MakeMemory = Callable[..., ShortTermMemory]
Events = list[tuple[str, dict[str, Any]]]
KEY = MemoryKey("acme", "u1", "s1")
ZONE2 = MemoryBudget(full_zone_turns=2)


def turn(n: int) -> ConversationTurn:
    return ConversationTurn(f"q{n}", f"a{n}", ts=float(n))


def view(message: LLMMessage | None) -> dict[str, Any]:
    assert message is not None
    return json.loads(message["content"])["conversation_memory"]


def users(turns: list[dict[str, Any]]) -> list[str]:
    return [t["user"] for t in turns]


def health_changes(events: Events) -> list[tuple[str, str]]:
    assert all(kind == "memory_health" for kind, _ in events)
    return [(extra["previous"], extra["health"]) for _, extra in events]


async def test_the_run_does_not_wait_for_the_summary_and_flush_does(
    make_memory: MakeMemory,
) -> None:
    release = anyio.Event()

    async def summarise(messages: list[LLMMessage], info: LLMCallInfo) -> dict[str, str]:
        await release.wait()
        request = json.loads(messages[-1]["content"])
        return {"summary": "S:" + ",".join(t["user"] for t in request["turns"])}

    llm = FunctionLLM(summarise)
    memory = make_memory("rolling_summary", llm=llm, budget=ZONE2)
    with anyio.fail_after(5):
        async with memory.running():
            for n in (1, 2, 3):
                await memory.record(KEY, turn(n))  # returns with the summary still blocked
            shown = view(await memory.load(KEY))
            assert users(shown["recent_turns"]) == ["q2", "q3"]
            assert users(shown["pending_turns"]) == ["q1"]  # left the zone, still verbatim
            assert shown["summary"] == ""
            while not llm.calls:  # the summary has started, and waits
                await anyio.lowlevel.checkpoint()
            assert shown["summary"] == ""
            release.set()
            await memory.flush(KEY)
            shown = view(await memory.load(KEY))
            assert shown["summary"] == "S:q1"
            assert shown["pending_turns"] == []
    (call,) = llm.calls
    assert call.response_format is not None
    schema = call.response_format["json_schema"]
    assert schema["name"] == "memory_summary"
    assert schema["schema"]["properties"] == {"summary": {"type": "string"}}
    assert memory.health(KEY) is MemoryHealth.HEALTHY


async def test_turns_recorded_during_a_summary_are_folded_by_the_next_pass(
    make_memory: MakeMemory,
) -> None:
    gate = anyio.Event()

    async def summarise(messages: list[LLMMessage], info: LLMCallInfo) -> dict[str, str]:
        if info.call_index == 0:
            await gate.wait()
        request = json.loads(messages[-1]["content"])
        folded = [request["previous_summary"], *(t["user"] for t in request["turns"])]
        return {"summary": " ".join(p for p in folded if p)}

    memory = make_memory("rolling_summary", llm=FunctionLLM(summarise), budget=ZONE2)
    with anyio.fail_after(5):
        async with memory.running():
            for n in (1, 2, 3, 4, 5):
                await memory.record(KEY, turn(n))
            gate.set()
            await memory.flush()
    snapshot = await memory.snapshot(KEY)
    assert snapshot.summary == "q1 q2 q3"
    assert snapshot.pending_turns == ()
    assert [t.user_message for t in snapshot.turns] == ["q4", "q5"]


async def test_not_running_the_summary_runs_inline_at_the_end_of_record(
    make_memory: MakeMemory,
) -> None:
    llm = ScriptedLLM([{"summary": "first"}, '```json\n{"summary": "second"}\n```'])
    memory = make_memory("rolling_summary", llm=llm, budget=ZONE2)
    with anyio.fail_after(5):
        for n in (1, 2, 3):
            await memory.record(KEY, turn(n))
        assert (await memory.snapshot(KEY)).summary == "first"
        await memory.record(KEY, turn(4))
    assert (await memory.snapshot(KEY)).summary == "second"  # fenced JSON is tolerated
    llm.assert_exhausted()
    previous = json.loads(llm.calls[1].messages[-1]["content"])["previous_summary"]
    assert previous == "first"


async def test_failures_retry_then_degrade_with_an_event_then_recover(
    make_memory: MakeMemory, events: Events
) -> None:
    down = RuntimeError("down")
    llm = ScriptedLLM([down, down, down, "not json", {"summary": "back"}])
    memory = make_memory("rolling_summary", llm=llm, budget=ZONE2, retry_attempts=2)
    with anyio.fail_after(5):
        async with memory.running():
            for n in (1, 2, 3):
                await memory.record(KEY, turn(n))
            await memory.flush()
            assert len(llm.calls) == 3  # the first attempt and two retries
            assert memory.health(KEY) is MemoryHealth.DEGRADED
            assert health_changes(events) == [("healthy", "retry"), ("retry", "degraded")]
            assert events[-1][1]["memory_key"] == "acme:u1:s1"
            assert "RuntimeError: down" in events[-1][1]["error"]
            shown = view(await memory.load(KEY))  # truncation: pending kept, not shown
            assert users(shown["recent_turns"]) == ["q2", "q3"]
            assert shown["pending_turns"] == []
            snapshot = await memory.snapshot(KEY)
            assert [t.user_message for t in snapshot.pending_turns] == ["q1"]
            assert snapshot.health is MemoryHealth.DEGRADED

            await memory.record(KEY, turn(4))  # a recovery attempt: fails ("not json")
            await memory.flush()
            assert memory.health(KEY) is MemoryHealth.DEGRADED
            await memory.record(KEY, turn(5))  # a recovery attempt: succeeds
            await memory.flush()
    assert health_changes(events)[2:] == [
        ("degraded", "recovering"),
        ("recovering", "degraded"),
        ("degraded", "recovering"),
        ("recovering", "healthy"),
    ]
    assert memory.health(KEY) is MemoryHealth.HEALTHY
    snapshot = await memory.snapshot(KEY)
    assert (snapshot.summary, snapshot.pending_turns) == ("back", ())
    assert [t.user_message for t in snapshot.turns] == ["q4", "q5"]
    folded = json.loads(llm.calls[-1].messages[-1]["content"])["turns"]
    assert users(folded) == ["q1", "q2", "q3"]  # nothing lost while degraded
    llm.assert_exhausted()


async def test_a_degraded_key_waits_before_trying_again(store: Any, events: Events) -> None:
    now = [1000.0]
    llm = ScriptedLLM([RuntimeError("down"), {"summary": "ok"}])
    memory = ShortTermMemory(
        ShortTermMemoryConfig(
            strategy="rolling_summary",
            budget=MemoryBudget(full_zone_turns=1),
            retry_attempts=0,
            retry_backoff_base_s=30.0,
        ),
        store=store,
        llm=llm,
        token_counter=CharCounter(),
        time_source=lambda: now[0],
    )
    with anyio.fail_after(5):
        await memory.record(KEY, turn(1))
        await memory.record(KEY, turn(2))  # fails at once (no retries): DEGRADED
        assert memory.health(KEY) is MemoryHealth.DEGRADED
        await memory.record(KEY, turn(3))  # too soon: no call
        assert len(llm.calls) == 1
        now[0] += 31
        await memory.record(KEY, turn(4))
    assert memory.health(KEY) is MemoryHealth.HEALTHY
    assert (await memory.snapshot(KEY)).summary == "ok"


async def test_the_summary_is_clipped_to_its_budget(make_memory: MakeMemory) -> None:
    long = "old news. " * 50 + "latest fact"
    budget = MemoryBudget(full_zone_turns=1, summary_max_tokens=10)
    memory = make_memory("rolling_summary", llm=ScriptedLLM([{"summary": long}]), budget=budget)
    await memory.record(KEY, turn(1))
    await memory.record(KEY, turn(2))
    summary = (await memory.snapshot(KEY)).summary
    assert CharCounter().count(summary) <= 10
    assert summary and long.endswith(summary)  # the most recent part is kept


@pytest.mark.parametrize(
    ("policy", "keeps_turns", "keeps_summary"),
    [("truncate_summary", True, False), ("truncate_oldest", False, True)],
)
async def test_overflow_policies_choose_what_goes_first(
    make_memory: MakeMemory, policy: str, keeps_turns: bool, keeps_summary: bool
) -> None:
    summary = "s" * 200
    writer = make_memory(
        "rolling_summary",
        llm=ScriptedLLM([{"summary": summary}]),
        budget=MemoryBudget(full_zone_turns=1, summary_max_tokens=None, total_max_tokens=None),
    )
    for n in (1, 2):
        await writer.record(KEY, ConversationTurn(f"q{n}" * 40, f"a{n}" * 40))
    budget = MemoryBudget(
        full_zone_turns=1,
        total_max_tokens=80,
        overflow_policy=policy,  # type: ignore[arg-type]
    )
    reader = make_memory("rolling_summary", llm=ScriptedLLM([]), budget=budget)
    shown = view(await reader.load(KEY))
    assert CharCounter().count_messages([{"role": "system", "content": json.dumps(shown)}]) <= 90
    assert bool(shown["recent_turns"]) is keeps_turns
    assert (shown["summary"] == summary) is keeps_summary
    if policy == "truncate_summary":
        assert summary.endswith(shown["summary"])


async def test_running_leaves_no_task_behind_and_pending_turns_survive(
    make_memory: MakeMemory,
) -> None:
    never = anyio.Event()

    async def stuck(messages: list[LLMMessage], info: LLMCallInfo) -> dict[str, str]:
        if info.call_index == 0:
            await never.wait()
        return {"summary": "later"}

    memory = make_memory("rolling_summary", llm=FunctionLLM(stuck), budget=ZONE2)
    before = len(asyncio.all_tasks())
    with anyio.fail_after(5):
        async with memory.running(drain_timeout_s=0.05):
            for n in (1, 2, 3):
                await memory.record(KEY, turn(n))
            assert len(asyncio.all_tasks()) > before
        assert len(asyncio.all_tasks()) == before
        pending = (await memory.snapshot(KEY)).pending_turns
        assert [t.user_message for t in pending] == ["q1"]
        async with memory.running():
            await memory.flush(KEY)  # starts the summary the cancelled one left
        assert len(asyncio.all_tasks()) == before
    assert (await memory.snapshot(KEY)).summary == "later"


async def test_running_twice_at_once_is_a_usage_error(make_memory: MakeMemory) -> None:
    memory = make_memory()
    with anyio.fail_after(5):
        async with memory.running():
            with pytest.raises(PlannerUsageError, match="already running"):
                async with memory.running():
                    pass


async def test_an_error_in_the_block_propagates_and_cancels_summaries(
    make_memory: MakeMemory,
) -> None:
    never = anyio.Event()

    async def stuck(messages: list[LLMMessage], info: LLMCallInfo) -> dict[str, str]:
        await never.wait()
        return {"summary": ""}

    memory = make_memory("rolling_summary", llm=FunctionLLM(stuck), budget=ZONE2)
    before = len(asyncio.all_tasks())
    with anyio.fail_after(5), pytest.raises(KeyError):
        async with memory.running():
            for n in (1, 2, 3):
                await memory.record(KEY, turn(n))
            raise KeyError("boom")
    assert len(asyncio.all_tasks()) == before


async def test_a_test_doubles_complaint_reaches_the_test(make_memory: MakeMemory) -> None:
    memory = make_memory("rolling_summary", llm=ScriptedLLM([]), budget=ZONE2)
    for n in (1, 2):
        await memory.record(KEY, turn(n))
    with anyio.fail_after(5), pytest.raises(ScriptExhausted):
        await memory.record(KEY, turn(3))


def test_rolling_summary_needs_a_summariser(store: Any) -> None:
    config = ShortTermMemoryConfig(strategy="rolling_summary")
    with pytest.raises(PlannerUsageError, match="summarizer"):
        ShortTermMemory(config, store=store, llm=None, token_counter=CharCounter())
    with pytest.raises(TypeError, match="complete"):
        ShortTermMemory(config, store=store, llm=object(), token_counter=CharCounter())  # type: ignore[arg-type]


async def test_the_configured_summarizer_wins_over_the_planners_client(store: Any) -> None:
    own = ScriptedLLM([{"summary": "own"}])
    planners = ScriptedLLM([])
    config = ShortTermMemoryConfig(
        strategy="rolling_summary", budget=MemoryBudget(full_zone_turns=1), summarizer=own
    )
    memory = ShortTermMemory(config, store=store, llm=planners, token_counter=CharCounter())
    await memory.record(KEY, turn(1))
    await memory.record(KEY, turn(2))
    assert (await memory.snapshot(KEY)).summary == "own"
    assert planners.calls == []


async def test_clear_forgets_a_key_and_discards_its_summary_in_flight(
    make_memory: MakeMemory,
) -> None:
    gate = anyio.Event()

    async def summarise(messages: list[LLMMessage], info: LLMCallInfo) -> dict[str, str]:
        await gate.wait()
        return {"summary": "stale"}

    memory = make_memory("rolling_summary", llm=FunctionLLM(summarise), budget=ZONE2)
    with anyio.fail_after(5):
        async with memory.running():
            for n in (1, 2, 3):
                await memory.record(KEY, turn(n))
            await memory.clear(KEY)
            gate.set()
            await memory.flush()
    assert await memory.load(KEY) is None
    snapshot = await memory.snapshot(KEY)
    assert (snapshot.turns, snapshot.summary) == ((), "")
