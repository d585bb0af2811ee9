"""PlannerEvents of the step loop, and streaming the final answer."""

import json
from typing import Any, cast

import anyio
import pytest
from pydantic import BaseModel

from penguiflow.core import tool
from penguiflow.planner import (
    CompactionConfig,
    LLMError,
    LLMErrorType,
    LLMRetryPolicy,
    PlannerBudget,
    PlannerEvent,
    PlannerEventType,
    PlannerFinish,
    ReactPlanner,
    ReflectionConfig,
)
from penguiflow.planner._events import deliver
from penguiflow.testkit import ScriptedLLM


class AddArgs(BaseModel):
    a: int
    b: int


class AddOut(BaseModel):
    total: int


SEEN: list[str] = []


@tool(desc="Add two integers.")
async def add(args: AddArgs, ctx: Any) -> AddOut:
    await anyio.sleep(0.02)
    SEEN.append("tool returned")
    return AddOut(total=args.a + args.b)


def act(node: str, **args: Any) -> dict[str, Any]:
    return {"thought": "", "next_node": node, "args": args}


def answer(value: Any) -> dict[str, Any]:
    return act("final_response", answer=value)


def finished(result: object) -> PlannerFinish[Any]:
    assert isinstance(result, PlannerFinish)
    return cast(PlannerFinish[Any], result)


def kinds(events: list[PlannerEvent]) -> list[str]:
    return [e.event_type.value for e in events]


async def test_the_loop_emits_its_events_in_order() -> None:
    llm = ScriptedLLM([act("add", a=1, b=2), "oops", answer("3")])
    events: list[PlannerEvent] = []
    planner = ReactPlanner(llm, nodes=[add], event_callback=events.append)
    result = finished(await planner.run("q", trace_id="trace-1"))
    assert kinds(events) == [
        "step_start",
        "llm_call",
        "tool_call_start",
        "tool_call_end",
        "step_complete",
        "step_start",
        "llm_call",
        "repair_attempt",
        "llm_call",
        "step_complete",
        "finish",
    ]
    assert {e.run_id for e in events} == {result.run_id}
    assert {e.trace_id for e in events} == {"trace-1"}
    assert [e.step for e in events if e.event_type == "step_start"] == [0, 1]
    assert events[-1].extra["reason"] == "answer_complete"
    assert all(e.extra["purpose"] == "planner_action" for e in events if e.event_type == "llm_call")


async def test_tool_call_end_comes_after_the_tool_returns() -> None:
    # regression: tool_call_end was emitted right after tool_call_start
    SEEN.clear()
    llm = ScriptedLLM([act("add", a=1, b=2), answer("3")])

    def listen(event: PlannerEvent) -> None:
        if event.event_type in ("tool_call_start", "tool_call_end"):
            SEEN.append(event.event_type.value)

    finished(await ReactPlanner(llm, nodes=[add], event_callback=listen).run("q"))
    assert SEEN == ["tool_call_start", "tool returned", "tool_call_end"]


async def test_tool_call_end_carries_latency_and_ok() -> None:
    class Fail(BaseModel):
        n: int

    @tool(desc="Always fails.")
    async def broken(args: Fail, ctx: Any) -> AddOut:
        raise RuntimeError("kaput")

    llm = ScriptedLLM([act("add", a=1, b=2), act("broken", n=1), answer("x")])
    events: list[PlannerEvent] = []
    planner = ReactPlanner(llm, nodes=[add, broken], event_callback=events.append)
    result = finished(await planner.run("q"))
    ends = [e for e in events if e.event_type == "tool_call_end"]
    assert [e.node_name for e in ends] == ["add", "broken"]
    assert [e.extra["ok"] for e in ends] == [True, False]
    assert ends[0].latency_ms is not None and ends[0].latency_ms >= 15
    completes = [e.extra["ok"] for e in events if e.event_type == "step_complete"]
    assert completes == [True, False, True]
    assert result.trajectory.steps[1].error is not None


async def test_retry_reflection_compaction_events_and_finish_last() -> None:
    llm = ScriptedLLM(
        [
            act("add", a=1, b=1),
            LLMError("busy", error_type=LLMErrorType.RATE_LIMIT),
            {"summary": "one addition"},
            answer("2"),
            {"score": 0.95, "passed": True, "feedback": "fine"},
        ]
    )
    events: list[PlannerEvent] = []
    planner = ReactPlanner(
        llm,
        nodes=[add],
        reflection=ReflectionConfig(),
        compaction=CompactionConfig(max_prompt_tokens=1, keep_last_steps=0),
        llm_retry=LLMRetryPolicy(backoff_base=0.0, jitter=0.0),
        event_callback=events.append,
    )
    result = finished(await planner.run("q"))
    assert result.output == "2"
    seen = kinds(events)
    for kind in ("llm_retry", "compaction", "reflection_critique", "finish"):
        assert kind in seen
    assert seen[-1] == "finish" and seen.count("finish") == 1
    purposes = [e.extra["purpose"] for e in events if e.event_type == "llm_call"]
    assert purposes == [
        "planner_action",
        "trajectory_summary",
        "trajectory_summary",
        "planner_action",
        "reflection_critique",
    ]
    compaction = next(e for e in events if e.event_type == "compaction")
    assert compaction.extra["steps"] == 1


@pytest.mark.parametrize(
    "budget",
    [PlannerBudget(max_iters=1), PlannerBudget(deadline_s=0)],
)
async def test_finish_is_emitted_for_every_outcome(budget: PlannerBudget) -> None:
    llm = ScriptedLLM([act("add", a=1, b=1)])
    events: list[PlannerEvent] = []
    planner = ReactPlanner(llm, nodes=[add], budget=budget, event_callback=events.append)
    result = finished(await planner.run("q"))
    assert kinds(events)[-1] == "finish"
    assert events[-1].extra["reason"] == result.reason
    assert events[-1].extra["exhausted"] == result.exhausted


async def test_per_run_listener_adds_to_the_planners() -> None:
    mine: list[PlannerEvent] = []
    theirs: list[PlannerEvent] = []
    planner = ReactPlanner(ScriptedLLM([answer("a"), answer("b")]), event_callback=theirs.append)
    finished(await planner.run("q", event_callback=mine.append))
    finished(await planner.run("q"))
    assert kinds(mine) == ["step_start", "llm_call", "step_complete", "finish"]
    assert len(theirs) == 8


async def test_events_are_built_only_when_someone_listens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import penguiflow.planner._run as run_module

    built: list[Any] = []

    class Spy(PlannerEvent):
        __slots__ = ()

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            built.append(kwargs["event_type"])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(run_module, "PlannerEvent", Spy)
    llm = ScriptedLLM([act("add", a=1, b=1), answer("2")])
    finished(await ReactPlanner(llm, nodes=[add]).run("q"))
    assert built == []
    llm = ScriptedLLM([act("add", a=1, b=1), answer("2")])
    finished(await ReactPlanner(llm, nodes=[add], event_callback=lambda e: None).run("q"))
    assert PlannerEventType.FINISH in built


async def test_a_failing_listener_does_not_stop_the_run() -> None:
    def bad(event: PlannerEvent) -> None:
        raise RuntimeError("listener bug")

    result = finished(await ReactPlanner(ScriptedLLM([answer("ok")]), event_callback=bad).run("q"))
    assert result.output == "ok"


def test_event_type_members_and_payload() -> None:
    assert PlannerEventType.LLM_CALL == "llm_call"
    assert all(member.name == member.name.upper() for member in PlannerEventType)
    event = PlannerEvent(PlannerEventType.FINISH, 1.0, "r", "t", extra={"reason": "x"})
    payload = event.to_payload()
    assert payload["event_type"] == "finish" and payload["extra"] == {"reason": "x"}
    json.dumps(payload)
    with pytest.raises(AttributeError):
        event.step = 3  # type: ignore[misc]
    got: list[PlannerEvent] = []
    deliver((got.append,), event)
    assert got == [event]


# ------------------------------------------------------------------ streaming

TRICKY = 'He said "hi"\nthen left \\ caf\u00e9 \U0001f427 done'


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 7])
async def test_streamed_answer_deltas_concatenate_to_the_answer(chunk_size: int) -> None:
    llm = ScriptedLLM(
        [act("add", a=1, b=1), {"thought": "t", **answer(TRICKY)}], chunk_size=chunk_size
    )
    events: list[PlannerEvent] = []
    planner = ReactPlanner(
        llm, nodes=[add], stream_final_response=True, event_callback=events.append
    )
    result = finished(await planner.run("q"))
    assert result.output == TRICKY
    chunks = [e for e in events if e.event_type == "llm_stream_chunk"]
    assert len(chunks) > 1
    assert "".join(e.extra["text"] for e in chunks) == TRICKY
    assert {e.step for e in chunks} == {1}  # nothing from the tool step
    assert all(call.stream for call in llm.calls)


async def test_only_the_answer_streams_not_the_tool_args() -> None:
    llm = ScriptedLLM(
        [
            '{"thought": "x", "args": {"answer": "not this"}, "next_node": "add"}',
            '{"args": {"answer": "early args"}, "next_node": "final_response"}',
        ],
        chunk_size=4,
    )

    class AnswerArgs(BaseModel):
        answer: str

    @tool(desc="Takes an answer.")
    async def add(args: AnswerArgs, ctx: Any) -> AddOut:
        return AddOut(total=0)

    events: list[PlannerEvent] = []
    planner = ReactPlanner(
        llm, nodes=[add], stream_final_response=True, event_callback=events.append
    )
    result = finished(await planner.run("q"))
    assert result.output == "early args"
    text = "".join(e.extra["text"] for e in events if e.event_type == "llm_stream_chunk")
    assert text == "early args"


async def test_no_streaming_without_the_flag() -> None:
    llm = ScriptedLLM([answer("plain")])
    events: list[PlannerEvent] = []
    finished(await ReactPlanner(llm, event_callback=events.append).run("q"))
    assert not [e for e in events if e.event_type == "llm_stream_chunk"]
    assert llm.calls[0].stream is False


async def test_a_malformed_escape_stops_streaming_but_not_the_run() -> None:
    llm = ScriptedLLM(
        ['{"next_node": "final_response", "args": {"answer": "ab\\uZZZZ"}}', answer("fine")],
        chunk_size=3,
    )
    events: list[PlannerEvent] = []
    planner = ReactPlanner(llm, stream_final_response=True, event_callback=events.append)
    result = finished(await planner.run("q"))
    assert result.output == "fine"
    assert [e.extra["attempt"] for e in events if e.event_type == "repair_attempt"] == [1]


async def test_streaming_through_the_native_openai_client() -> None:
    from penguiflow.planner import OpenAIJSONClient
    from penguiflow.testkit import ProviderServer

    async with ProviderServer(chunk_size=3) as server:
        server.reply(json.dumps({"thought": "t", **answer(TRICKY)}))
        async with OpenAIJSONClient("m", base_url=server.openai_base_url, api_key="x") as llm:
            events: list[PlannerEvent] = []
            planner = ReactPlanner(llm, stream_final_response=True, event_callback=events.append)
            with anyio.fail_after(20):
                result = finished(await planner.run("q"))
    assert result.output == TRICKY
    chunks = [e.extra["text"] for e in events if e.event_type == "llm_stream_chunk"]
    assert len(chunks) > 1 and "".join(chunks) == TRICKY
    assert server.requests[0].json["stream"] is True


class SlowArgs(BaseModel):
    seconds: float


@tool(desc="sleep")
async def slow(args: SlowArgs, ctx: Any) -> AddOut:
    await anyio.sleep(args.seconds)
    return AddOut(total=0)


async def test_a_cancelled_tool_call_still_gets_its_end_event() -> None:
    events: list[PlannerEvent] = []
    planner = ReactPlanner(
        ScriptedLLM([act("slow", seconds=30)]),
        nodes=[slow],
        event_callback=events.append,
        budget=PlannerBudget(deadline_s=0.2),
    )
    with anyio.fail_after(5):
        result = finished(await planner.run("wait"))
    assert result.exhausted == "deadline"
    ends = [e for e in events if e.event_type is PlannerEventType.TOOL_CALL_END]
    assert len(ends) == 1
    assert ends[0].extra["ok"] is False and ends[0].extra["cancelled"] is True
    assert kinds(events)[-1] == "finish"
