"""Steering a run (inject, redirect, pause/resume, cancel mid-call) and the ToolContext a tool
gets (read-only llm_context, tool_context, ids, streamed chunks)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, cast

import anyio
import pytest
from pydantic import BaseModel

from penguiflow.core import tool
from penguiflow.planner import (
    LLMMessage,
    PlannerBudget,
    PlannerEvent,
    PlannerEventType,
    PlannerFinish,
    ReactPlanner,
    SteeringEvent,
    SteeringEventType,
    SteeringInbox,
    ToolContext,
)
from penguiflow.testkit import FunctionLLM, LLMCallInfo, ScriptedLLM


class Num(BaseModel):
    x: int


class Out(BaseModel):
    y: int


def _call(node: str, **args: Any) -> dict[str, Any]:
    return {"next_node": node, "args": args}


def _final(answer: str = "done") -> dict[str, Any]:
    return {"next_node": "final_response", "args": {"answer": answer}}


def _finish(result: object) -> PlannerFinish[Any]:
    assert isinstance(result, PlannerFinish), result
    return cast("PlannerFinish[Any]", result)


def _event(kind: SteeringEventType, **payload: Any) -> SteeringEvent:
    return SteeringEvent(kind, payload=payload)


def _contents(messages: Sequence[LLMMessage]) -> list[str]:
    return [m["content"] for m in messages]


# ---------------------------------------------------------------------------- the inbox


def test_push_nowait_is_false_when_full_but_cancel_always_gets_through() -> None:
    inbox = SteeringInbox(maxsize=2)
    first = _event(SteeringEventType.INJECT_CONTEXT, n=1)
    assert inbox.push_nowait(first)
    assert inbox.push_nowait(_event(SteeringEventType.USER_MESSAGE, n=2))
    assert not inbox.push_nowait(_event(SteeringEventType.REDIRECT, goal="x"))
    assert len(inbox) == 2 and not inbox.cancelled
    assert inbox.push_nowait(_event(SteeringEventType.CANCEL))
    assert inbox.cancelled
    drained = inbox.drain()
    assert [e.event_type for e in drained] == [
        SteeringEventType.INJECT_CONTEXT,
        SteeringEventType.USER_MESSAGE,
        SteeringEventType.CANCEL,
    ]
    assert drained[0] is first
    assert inbox.drain() == [] and len(inbox) == 0
    assert inbox.cancelled  # a cancel stays
    with pytest.raises(ValueError):
        SteeringInbox(maxsize=0)


def test_steering_event_defaults() -> None:
    a = SteeringEvent(SteeringEventType.PAUSE)
    b = SteeringEvent(SteeringEventType.PAUSE)
    assert a.payload == {} and a.source == "user" and a.event_id != b.event_id
    assert a.created_at > 0
    assert {t.value for t in SteeringEventType} == {
        "inject_context",
        "user_message",
        "redirect",
        "cancel",
        "pause",
        "resume",
        "prioritize",
        "approve",
        "reject",
    }


# ----------------------------------------------------------------- applied between steps


async def test_inject_and_user_message_reach_the_next_llm_call_only() -> None:
    inbox = SteeringInbox()
    events: list[PlannerEvent] = []

    @tool()
    async def step(args: Num, ctx: Any) -> Out:
        if args.x == 1:
            inbox.push_nowait(_event(SteeringEventType.USER_MESSAGE, text="also this"))
        return Out(y=args.x)

    inbox.push_nowait(_event(SteeringEventType.INJECT_CONTEXT, fact="sky is blue"))
    llm = ScriptedLLM([_call("step", x=1), _call("step", x=2), _final()])
    planner = ReactPlanner(llm, nodes=[step])
    done = _finish(await planner.run("q", steering=inbox, event_callback=events.append))
    assert done.reason == "answer_complete"
    inject = json.dumps({"inject_context": {"fact": "sky is blue"}})
    message = json.dumps({"user_message": {"text": "also this"}})
    assert _contents(llm.calls[0].messages)[-1] == inject
    assert llm.calls[0].messages[-1]["role"] == "user"
    assert _contents(llm.calls[1].messages)[-1] == message
    assert inject not in _contents(llm.calls[1].messages)
    assert message not in _contents(llm.calls[2].messages)
    received = [e for e in events if e.event_type is PlannerEventType.STEERING_RECEIVED]
    assert [e.extra["event_type"] for e in received] == ["inject_context", "user_message"]
    assert [s["event_type"] for s in done.trajectory.steering_inputs] == [
        "inject_context",
        "user_message",
    ]
    assert done.trajectory.steering_inputs[0]["payload"] == {"fact": "sky is blue"}


async def test_redirect_replaces_the_goal() -> None:
    inbox = SteeringInbox()
    inbox.push_nowait(_event(SteeringEventType.REDIRECT, goal="the new goal"))
    llm = ScriptedLLM([_final()])
    done = _finish(await ReactPlanner(llm).run("the old goal", steering=inbox))
    assert done.trajectory.query == "the new goal"
    shown = "\n".join(_contents(llm.calls[0].messages))
    assert "the new goal" in shown and "the old goal" not in shown


async def test_other_types_are_recorded_only() -> None:
    inbox = SteeringInbox()
    events: list[PlannerEvent] = []
    for kind in (
        SteeringEventType.PRIORITIZE,
        SteeringEventType.APPROVE,
        SteeringEventType.REJECT,
    ):
        inbox.push_nowait(_event(kind, why="x"))
    llm = ScriptedLLM([_final()])
    done = _finish(await ReactPlanner(llm).run("q", steering=inbox, event_callback=events.append))
    assert [s["event_type"] for s in done.trajectory.steering_inputs] == [
        "prioritize",
        "approve",
        "reject",
    ]
    assert not [e for e in events if e.event_type is PlannerEventType.STEERING_RECEIVED]
    assert len(llm.calls[0].messages) == 2  # system + query: nothing added


async def test_pause_holds_the_run_until_resume() -> None:
    inbox = SteeringInbox()
    paused_in_tool = anyio.Event()

    @tool()
    async def work(args: Num, ctx: Any) -> Out:
        inbox.push_nowait(_event(SteeringEventType.PAUSE))
        paused_in_tool.set()
        return Out(y=1)

    llm = ScriptedLLM([_call("work", x=1), _final()])
    planner = ReactPlanner(llm, nodes=[work])
    outcome: list[PlannerFinish[Any]] = []
    events: list[PlannerEvent] = []

    async def go() -> None:
        outcome.append(
            _finish(await planner.run("q", steering=inbox, event_callback=events.append))
        )

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(go)
            await paused_in_tool.wait()
            await anyio.sleep(0.05)
            assert len(llm.calls) == 1 and not outcome  # held
            inbox.push_nowait(_event(SteeringEventType.INJECT_CONTEXT, note="while held"))
            await anyio.sleep(0.02)
            assert len(llm.calls) == 1 and not outcome  # still held
            inbox.push_nowait(_event(SteeringEventType.RESUME))
    assert outcome[0].reason == "answer_complete"
    assert len(llm.calls) == 2
    assert _contents(llm.calls[1].messages)[-1] == json.dumps(
        {"inject_context": {"note": "while held"}}
    )
    kinds = [
        e.extra["event_type"] for e in events if e.event_type is PlannerEventType.STEERING_RECEIVED
    ]
    assert kinds == ["pause", "inject_context", "resume"]


async def test_the_deadline_keeps_running_while_held() -> None:
    inbox = SteeringInbox()
    inbox.push_nowait(_event(SteeringEventType.PAUSE))
    llm = ScriptedLLM([])
    planner = ReactPlanner(llm, budget=PlannerBudget(deadline_s=0.1))
    with anyio.fail_after(5):
        done = _finish(await planner.run("q", steering=inbox))
    assert done.reason == "budget_exhausted" and done.exhausted == "deadline"
    assert llm.calls == []


# ------------------------------------------------------------------- cancel during calls


async def test_cancel_during_an_llm_call_cancels_it_at_once() -> None:
    inbox = SteeringInbox()
    in_call = anyio.Event()
    left = anyio.Event()

    async def hang(messages: list[LLMMessage], info: LLMCallInfo) -> str:
        in_call.set()
        try:
            await anyio.sleep_forever()
        finally:
            left.set()
        raise AssertionError("unreachable")

    planner = ReactPlanner(FunctionLLM(hang))
    outcome: list[PlannerFinish[Any]] = []

    async def go() -> None:
        outcome.append(_finish(await planner.run("q", steering=inbox)))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(go)
            await in_call.wait()
            inbox.push_nowait(_event(SteeringEventType.CANCEL))
    assert left.is_set()
    assert outcome[0].reason == "cancelled"
    assert outcome[0].trajectory.steering_inputs == []


async def test_cancel_during_a_tool_call_cancels_it_at_once() -> None:
    inbox = SteeringInbox()
    in_tool = anyio.Event()
    left = anyio.Event()
    events: list[PlannerEvent] = []

    @tool()
    async def hang(args: Num, ctx: Any) -> Out:
        in_tool.set()
        try:
            await anyio.sleep_forever()
        finally:
            left.set()
        raise AssertionError("unreachable")

    llm = ScriptedLLM([_call("hang", x=1)])
    planner = ReactPlanner(llm, nodes=[hang])
    outcome: list[PlannerFinish[Any]] = []

    async def go() -> None:
        outcome.append(
            _finish(await planner.run("q", steering=inbox, event_callback=events.append))
        )

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(go)
            await in_tool.wait()
            inbox.push_nowait(_event(SteeringEventType.CANCEL))
    assert left.is_set()
    assert outcome[0].reason == "cancelled"
    assert events[-1].event_type is PlannerEventType.FINISH
    assert events[-1].extra["reason"] == "cancelled"


async def test_a_cancel_queued_before_the_run_makes_no_call() -> None:
    inbox = SteeringInbox()
    inbox.push_nowait(_event(SteeringEventType.CANCEL))
    llm = ScriptedLLM([])
    done = _finish(await ReactPlanner(llm).run("q", steering=inbox))
    assert done.reason == "cancelled" and llm.calls == []


# ----------------------------------------------------------------------------- ToolContext


def _recording_tool(seen: list[ToolContext]) -> Callable[..., Any]:
    @tool()
    async def look(args: Num, ctx: Any) -> Out:
        seen.append(ctx)
        return Out(y=args.x)

    return look


async def test_tool_context_ids_and_contexts() -> None:
    seen: list[ToolContext] = []
    client = object()
    llm = ScriptedLLM(
        [
            _call("look", x=1),
            {
                "next_node": "parallel",
                "args": {
                    "steps": [
                        {"node": "look", "args": {"x": 2}},
                        {"node": "look", "args": {"x": 3}},
                    ]
                },
            },
            _final(),
        ]
    )
    planner = ReactPlanner(llm, nodes=[_recording_tool(seen)])
    key = {"tenant_id": "t", "session_id": "s"}
    done = _finish(
        await planner.run(
            "q",
            llm_context={"lang": "en"},
            tool_context={"client": client},
            memory_key=key,
            trace_id="trace-1",
        )
    )
    assert len(seen) == 3
    rid = done.run_id
    assert sorted(c.call_id for c in seen) == [f"{rid}:0:0", f"{rid}:1:0", f"{rid}:1:1"]
    for ctx in seen:
        assert isinstance(ctx, ToolContext)
        assert ctx.run_id == rid and ctx.trace_id == "trace-1"
        assert ctx.tool_context["client"] is client
        assert ctx.memory_key == key
        assert ctx.flow_context is None
        assert dict(ctx.llm_context) == {"lang": "en"}
    assert len({id(c) for c in seen}) == 3  # one per call
    assert "client" not in json.dumps(done.trajectory.to_json())


async def test_llm_context_is_read_only_to_tools() -> None:
    @tool()
    async def meddle(args: Num, ctx: Any) -> Out:
        with pytest.raises(TypeError):
            ctx.llm_context["lang"] = "fr"
        ctx.llm_context["nested"]["k"] = "changed"  # a copy: never reaches the model
        ctx.llm_context["items"].append(99)
        return Out(y=1)

    llm = ScriptedLLM([_call("meddle", x=1), _final()])
    context = {"lang": "en", "nested": {"k": "v"}, "items": [1]}
    done = _finish(await ReactPlanner(llm, nodes=[meddle]).run("q", llm_context=context))
    assert done.trajectory.steps[0].error is None
    assert done.trajectory.llm_context == {"lang": "en", "nested": {"k": "v"}, "items": [1]}
    assert context == {"lang": "en", "nested": {"k": "v"}, "items": [1]}
    assert "changed" not in llm.calls[1].messages[1]["content"]


async def test_emit_chunk_becomes_tool_stream_chunk_events() -> None:
    @tool()
    async def talk(args: Num, ctx: Any) -> Out:
        await ctx.emit_chunk(text="a")
        await ctx.emit_chunk(text="b", meta={"k": 1})
        await ctx.emit_chunk(text="", done=True)
        await ctx.emit_chunk(text="again")
        await ctx.emit_chunk(text="side", stream_id="other")
        await ctx.emit_chunk(text="jump", seq=10)
        await ctx.emit_chunk(text="next")
        return Out(y=1)

    events: list[PlannerEvent] = []
    llm = ScriptedLLM([_call("talk", x=1), _final()])
    planner = ReactPlanner(llm, nodes=[talk], event_callback=events.append)
    done = _finish(await planner.run("q"))
    chunks = [e for e in events if e.event_type is PlannerEventType.TOOL_STREAM_CHUNK]
    call_id = f"{done.run_id}:0:0"
    got = [(c.extra["stream_id"], c.extra["seq"], c.extra["text"], c.extra["done"]) for c in chunks]
    assert got == [
        (call_id, 0, "a", False),
        (call_id, 1, "b", False),
        (call_id, 2, "", True),
        (call_id, 0, "again", False),  # done resets the count
        ("other", 0, "side", False),  # per stream
        (call_id, 10, "jump", False),
        (call_id, 11, "next", False),
    ]
    assert chunks[1].extra["meta"] == {"k": 1} and chunks[0].extra["meta"] == {}
    assert all(c.node_name == "talk" and c.step == 0 for c in chunks)
    assert all(c.extra["call_id"] == call_id for c in chunks)
    starts = [i for i, e in enumerate(events) if e.event_type is PlannerEventType.TOOL_CALL_START]
    ends = [i for i, e in enumerate(events) if e.event_type is PlannerEventType.TOOL_CALL_END]
    positions = [events.index(c) for c in chunks]
    assert starts[0] < min(positions) and max(positions) < ends[0]


async def test_cancel_while_held_by_pause() -> None:
    inbox = SteeringInbox()
    inbox.push_nowait(_event(SteeringEventType.PAUSE))
    llm = ScriptedLLM([])
    planner = ReactPlanner(llm)
    outcome: list[PlannerFinish[Any]] = []

    async def go() -> None:
        outcome.append(_finish(await planner.run("q", steering=inbox)))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(go)
            await anyio.sleep(0.02)
            assert not outcome
            inbox.push_nowait(_event(SteeringEventType.CANCEL))
    assert outcome[0].reason == "cancelled" and llm.calls == []
