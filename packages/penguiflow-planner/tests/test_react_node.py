"""The planner as a node of a real PenguiFlow (spec §6)."""

from __future__ import annotations

import json
import time
from typing import Any, cast

import anyio
import pytest
from pydantic import BaseModel

from penguiflow.core import (
    FlowError,
    FlowEvent,
    FlowEventType,
    Headers,
    InMemoryDurableStore,
    Message,
    PenguiFlow,
    Scope,
    StreamChunk,
    TraceCancelled,
    create,
    current_trace_id,
    format_sse_event,
    stream_flow,
    tool,
)
from penguiflow.planner import (
    LLMError,
    LLMErrorType,
    LLMRetryPolicy,
    PlannerBudget,
    PlannerFinish,
    PlannerPause,
    PlannerRequest,
    PlannerResume,
    ReactPlanner,
)
from penguiflow.testkit import FunctionLLM, LLMCallInfo, ScriptedLLM

# Tools take ``ctx: Any`` here: core's ``tool()``/``Node`` type ``ctx`` as ``Context``, so
# pyright strict rejects ``ctx: ToolContext`` (reported; the runtime passes a ToolContext).


class AddArgs(BaseModel):
    a: int
    b: int


class Sum(BaseModel):
    total: int


@tool(desc="Add two integers.")
async def add(args: AddArgs, ctx: Any) -> Sum:
    return Sum(total=args.a + args.b)


@tool(desc="Send money (needs a human's approval).", side_effects="write", needs_approval=True)
async def transfer(args: AddArgs, ctx: Any) -> Sum:
    return Sum(total=args.a)


def call(node: str, **args: Any) -> dict[str, Any]:
    return {"thought": f"call {node}", "next_node": node, "args": args}


def final(answer: Any) -> dict[str, Any]:
    return {"thought": "done", "next_node": "final_response", "args": {"answer": answer}}


def message(payload: Any, *, tenant: str = "acme", **fields: Any) -> Message:
    return Message(payload=payload, headers=Headers(tenant=tenant), **fields)


def finished(value: Any) -> PlannerFinish[Any]:
    assert isinstance(value, PlannerFinish)
    return cast("PlannerFinish[Any]", value)


async def outcome(flow: PenguiFlow, msg: Message) -> Message:
    await flow.emit(msg)
    result = await flow.fetch(trace_id=msg.trace_id)
    assert isinstance(result, Message)
    return result


# ------------------------------------------------------------------------- envelopes
async def test_a_str_query_comes_back_in_the_same_envelope_with_a_finish() -> None:
    llm = ScriptedLLM([call("add", a=2, b=3), final("2 + 3 = 5")])
    planner = ReactPlanner(llm, nodes=[add])
    flow = create(planner.as_node().to())
    msg = message("what is 2 + 3?", meta={"request": "r-1"})
    async with flow.running():
        out = await outcome(flow, msg)
    assert out.trace_id == msg.trace_id
    assert out.headers == msg.headers
    assert out.meta == {"request": "r-1"}
    result = finished(out.payload)
    assert result.reason == "answer_complete"
    assert result.output == "2 + 3 = 5"
    assert result.trace_id == msg.trace_id
    assert result.usage.tool_calls == 1
    llm.assert_exhausted()


async def test_a_planner_request_carries_context_and_budget() -> None:
    seen: list[str] = []

    def model(messages: list[Any], info: LLMCallInfo) -> Any:
        seen.append(json.dumps(messages))
        return call("add", a=1, b=1)  # never answers: the request's budget ends it

    planner = ReactPlanner(FunctionLLM(model), nodes=[add])
    flow = create(planner.as_node("agent").to())
    request = PlannerRequest(
        query="count", llm_context={"user_tz": "Europe/Lisbon"}, budget=PlannerBudget(max_iters=2)
    )
    async with flow.running():
        out = await outcome(flow, message(request))
    result = out.payload
    assert isinstance(result, PlannerFinish)
    assert (result.reason, result.exhausted) == ("no_path", "max_iters")
    assert result.usage.llm_calls == 2
    assert "Europe/Lisbon" in seen[0]


async def test_a_pause_comes_back_and_a_planner_resume_message_answers_it() -> None:
    llm = ScriptedLLM([call("transfer", a=10, b=0), final("sent 10")])
    planner = ReactPlanner(llm, nodes=[transfer])
    flow = create(planner.as_node().to())
    async with flow.running():
        first = await outcome(flow, message("send 10"))
        pause = first.payload
        assert isinstance(pause, PlannerPause)
        assert pause.reason == "approval_required"
        (interrupt,) = pause.interrupts
        assert interrupt.payload == {"tool": "transfer", "args": {"a": 10, "b": 0}}
        resume = PlannerResume(token=pause.resume_token, answers={interrupt.interrupt_id: True})
        second = await outcome(flow, message(resume))
    result = finished(second.payload)
    assert result.reason == "answer_complete"
    assert result.output == "sent 10"
    assert result.trajectory.steps[0].observation == {"total": 10}
    assert planner.statistics().resumes == 1


async def test_a_resume_from_another_tenant_is_refused() -> None:
    llm = ScriptedLLM([call("transfer", a=1, b=0)])
    planner = ReactPlanner(llm, nodes=[transfer])
    flow = create(planner.as_node().to())
    async with flow.running():
        pause = (await outcome(flow, message("send 1", tenant="acme"))).payload
        assert isinstance(pause, PlannerPause)
        resume = PlannerResume(token=pause.resume_token, answers={})
        msg = message(resume, tenant="globex")
        await flow.emit(msg)
        with pytest.raises(FlowError) as caught:
            await flow.fetch(trace_id=msg.trace_id)
    assert isinstance(caught.value.__cause__, KeyError)  # ResumeTokenInvalid


# -------------------------------------------------------------------- tool events
async def test_tool_calls_go_through_the_outer_flow_with_the_message_trace() -> None:
    events: list[FlowEvent] = []
    own: list[FlowEvent] = []
    llm = ScriptedLLM([call("add", a=1, b=2), final("3")])
    planner = ReactPlanner(llm, nodes=[add], on_flow_event=own.append)
    flow = create(planner.as_node().to(), on_event=events.append)
    msg = message("1 + 2")
    async with flow.running():
        await outcome(flow, msg)
    tool_events = [e for e in events if e.node_name == "add"]
    assert [e.event_type for e in tool_events] == [
        FlowEventType.NODE_START,
        FlowEventType.NODE_SUCCESS,
    ]
    for event in tool_events:
        assert event.trace_id == msg.trace_id
        assert event.extra["invoked"] is True
        assert event.extra["step"] == 0
        assert event.extra["branch"] == 0
        assert str(event.extra["call_id"]).endswith(":0:0")
    assert not own  # as a node, the outer flow's listeners get them, not the private flow's


# ------------------------------------------------------------------- cancellation
async def test_flow_cancel_cancels_the_llm_call() -> None:
    started = anyio.Event()
    cancelled: list[bool] = []

    async def model(messages: list[Any], info: LLMCallInfo) -> Any:
        started.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.append(True)
            raise

    planner = ReactPlanner(FunctionLLM(model), nodes=[add])
    flow = create(planner.as_node().to())
    msg = message("hang")
    async with flow.running():
        await flow.emit(msg)
        await started.wait()
        assert planner.statistics().active_runs == 1
        assert await flow.cancel(msg.trace_id)
        with pytest.raises(TraceCancelled):
            await flow.fetch(trace_id=msg.trace_id)
        assert flow.statistics().live_traces == 0
    assert cancelled == [True]
    assert planner.statistics().active_runs == 0


async def test_flow_cancel_cancels_a_tool_blocked_on_an_event() -> None:
    started = anyio.Event()
    never = anyio.Event()
    cancelled: list[str] = []

    @tool(desc="Wait for a signal.")
    async def wait(args: AddArgs, ctx: Any) -> Sum:
        started.set()
        try:
            await never.wait()
        except anyio.get_cancelled_exc_class():
            cancelled.append(ctx.trace_id)
            raise
        return Sum(total=0)

    llm = ScriptedLLM([{"thought": "", "next_node": "wait", "args": {"a": 0, "b": 0}}])
    planner = ReactPlanner(llm, nodes=[wait])
    flow = create(planner.as_node().to())
    msg = message("wait")
    async with flow.running():
        await flow.emit(msg)
        await started.wait()
        assert await flow.cancel(msg.trace_id)
        with pytest.raises(TraceCancelled):
            await flow.fetch(trace_id=msg.trace_id)
    assert cancelled == [msg.trace_id]
    assert planner.statistics().active_runs == 0


async def test_flow_cancel_cancels_every_parallel_branch() -> None:
    started: list[int] = []
    cancelled: list[int] = []
    both = anyio.Event()

    @tool(desc="Wait for a signal.")
    async def wait(args: AddArgs, ctx: Any) -> Sum:
        started.append(args.a)
        if len(started) == 2:
            both.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.append(args.a)
            raise
        return Sum(total=0)  # pragma: no cover

    plan = {
        "thought": "",
        "next_node": "parallel",
        "args": {
            "steps": [
                {"node": "wait", "args": {"a": 1, "b": 0}},
                {"node": "wait", "args": {"a": 2, "b": 0}},
            ]
        },
    }
    planner = ReactPlanner(ScriptedLLM([plan]), nodes=[wait])
    flow = create(planner.as_node().to())
    msg = message("wait twice")
    async with flow.running():
        await flow.emit(msg)
        await both.wait()
        await flow.cancel(msg.trace_id)
        with pytest.raises(TraceCancelled):
            await flow.fetch(trace_id=msg.trace_id)
    assert sorted(cancelled) == [1, 2]


# ----------------------------------------------------------------------- deadline
async def test_the_message_deadline_caps_the_run() -> None:
    async def slow(messages: list[Any], info: LLMCallInfo) -> Any:
        await anyio.sleep(30)
        return final("too late")  # pragma: no cover

    planner = ReactPlanner(FunctionLLM(slow), budget=PlannerBudget(deadline_s=60))
    flow = create(planner.as_node().to())
    started = time.monotonic()
    async with flow.running():
        out = await outcome(flow, message("hurry", deadline_s=time.time() + 0.3))
    elapsed = time.monotonic() - started
    result = out.payload
    assert isinstance(result, PlannerFinish)
    assert (result.reason, result.exhausted) == ("budget_exhausted", "deadline")
    assert elapsed < 10  # cut at the message's deadline, not the budget's 60 s


async def test_a_tool_runs_in_the_message_trace() -> None:
    seen: list[tuple[str | None, str, Any]] = []

    @tool(desc="Record where it runs.")
    async def probe(args: AddArgs, ctx: Any) -> Sum:
        seen.append((current_trace_id(), ctx.trace_id, ctx.flow_context))
        return Sum(total=0)

    llm = ScriptedLLM([call("probe", a=0, b=0), final("ok")])
    planner = ReactPlanner(llm, nodes=[probe])
    flow = create(planner.as_node().to())
    msg = message("probe", deadline_s=time.time() + 30)
    async with flow.running():
        out = await outcome(flow, msg)
    assert isinstance(out.payload, PlannerFinish)
    ((trace, own, flow_context),) = seen
    assert trace == own == msg.trace_id
    assert flow_context is not None  # the planner node's core Context


# ------------------------------------------------------------------------- tenant
async def test_headers_tenant_tags_the_records_when_no_memory_key_is_given() -> None:
    store = InMemoryDurableStore()
    llm = ScriptedLLM([call("transfer", a=1, b=0), call("add", a=1, b=1), final("2")])
    planner = ReactPlanner(llm, nodes=[transfer, add], store=store)
    flow = create(planner.as_node().to())
    async with flow.running():
        pause = (await outcome(flow, message("pay", tenant="acme"))).payload
        assert isinstance(pause, PlannerPause)
        pauses = await store.scan("planner.pause", scope=Scope("acme"))
        assert [r.key for r in pauses] == [f"acme/-/{pause.resume_token}"]
        assert await store.scan("planner.pause", scope=Scope("globex")) == []
        (interrupt,) = pause.interrupts
        resume = PlannerResume(token=pause.resume_token, answers={interrupt.interrupt_id: False})
        done = (await outcome(flow, message(resume, tenant="acme"))).payload
    assert isinstance(done, PlannerFinish)
    assert done.reason == "answer_complete"
    trajectories = await store.scan("planner.trajectory", scope=Scope("acme"))
    assert [r.key for r in trajectories] == [done.run_id]
    assert await store.scan("planner.trajectory", scope=Scope("globex")) == []


async def test_an_explicit_memory_key_wins_over_the_tenant_header() -> None:
    store = InMemoryDurableStore()
    planner = ReactPlanner(ScriptedLLM([call("transfer", a=1, b=0)]), nodes=[transfer], store=store)
    flow = create(planner.as_node().to())
    key = {"tenant_id": "initech", "user_id": "u1", "session_id": "s1"}
    async with flow.running():
        pause = (await outcome(flow, message(PlannerRequest(query="pay", memory_key=key)))).payload
    assert isinstance(pause, PlannerPause)
    found = await store.scan("planner.pause", scope=Scope("initech"))
    assert [r.key for r in found] == [f"initech/s1/{pause.resume_token}"]
    assert found[0].scope == Scope("initech", "u1", "s1")
    assert await store.scan("planner.pause", scope=Scope("acme")) == []


# ---------------------------------------------------------------------- streaming
def _streaming_planner(answer: str, *, chunk_size: int = 8) -> ReactPlanner[str]:
    llm = ScriptedLLM([call("add", a=2, b=2), final(answer)], chunk_size=chunk_size)
    return ReactPlanner(llm, nodes=[add], stream_final_response=True)


async def test_the_streamed_answer_goes_out_as_stream_chunks() -> None:
    answer = 'Four. "2 + 2" is\n4 — ünïcode and \\ escapes'
    planner = _streaming_planner(answer, chunk_size=3)
    flow = create(planner.as_node().to())
    msg = message("2 + 2?")
    async with flow.running():
        chunks = [chunk async for chunk in stream_flow(flow, msg)]
    assert len(chunks) > 3
    assert "".join(c.text for c in chunks) == answer
    assert [c.seq for c in chunks] == list(range(len(chunks)))
    assert chunks[-1].done and chunks[-1].text == ""
    assert not any(c.done for c in chunks[:-1])
    assert {c.stream_id for c in chunks} == {msg.trace_id}


async def test_stream_flow_with_include_final_yields_the_chunks_then_the_finish() -> None:
    planner = _streaming_planner("four")
    flow = create(planner.as_node().to())
    msg = message("2 + 2?")
    async with flow.running():
        items = [item async for item in stream_flow(flow, msg, include_final=True)]
    *chunks, last = items
    assert all(isinstance(c, StreamChunk) for c in chunks)
    assert "".join(c.text for c in chunks) == "four"
    assert finished(last).output == "four"


async def test_format_sse_event_frames_the_planner_chunks_unchanged() -> None:
    answer = "line one\nline two"
    planner = _streaming_planner(answer, chunk_size=4)
    flow = create(planner.as_node().to())
    msg = message("2 + 2?")
    async with flow.running():
        frames = [format_sse_event(c, data="json") async for c in stream_flow(flow, msg)]
    payloads = [json.loads(f.split("data: ", 1)[1].split("\n", 1)[0]) for f in frames]
    assert "".join(p["text"] for p in payloads) == answer
    assert frames[-1].startswith("event: done\n")
    assert payloads[-1]["done"] is True


async def test_a_long_answer_streams_completely() -> None:
    """Regression: the deltas were queued with a bound of 1,024 and a synchronous put."""
    answer = "".join(f"{i % 10}" for i in range(5000))
    planner = _streaming_planner(answer, chunk_size=1)
    flow = create(planner.as_node().to(), queue_maxsize=4)
    msg = message("count")
    async with flow.running():
        chunks = [chunk async for chunk in stream_flow(flow, msg)]
    assert "".join(c.text for c in chunks) == answer
    assert chunks[-1].done


async def test_an_answer_from_a_client_that_does_not_stream_goes_out_as_one_chunk() -> None:
    class Plain:
        async def complete(self, **kwargs: Any) -> str:
            return json.dumps(final("no deltas here"))  # ignores stream / on_stream_chunk

    planner = ReactPlanner(Plain(), stream_final_response=True)
    flow = create(planner.as_node().to())
    async with flow.running():
        chunks = [c async for c in stream_flow(flow, message("hi"))]
    assert [(c.text, c.done) for c in chunks] == [("no deltas here", False), ("", True)]


async def test_a_run_that_ends_without_an_answer_sends_only_the_done_chunk() -> None:
    llm = ScriptedLLM(["not json"] * 2, chunk_size=4)
    planner = ReactPlanner(llm, stream_final_response=True, repair_attempts=1)
    flow = create(planner.as_node().to())
    msg = message("hi")
    async with flow.running():
        items = [i async for i in stream_flow(flow, msg, include_final=True)]
    assert [(i.text, i.done) for i in items[:-1] if isinstance(i, StreamChunk)] == [("", True)]
    assert isinstance(items[-1], PlannerFinish) and items[-1].reason == "no_path"


@pytest.mark.parametrize("streaming", [False, True])
async def test_an_llm_error_fails_the_trace_with_one_flow_error(streaming: bool) -> None:
    error = LLMError("bad key", error_type=LLMErrorType.AUTHENTICATION)
    planner = ReactPlanner(
        ScriptedLLM([error]),
        stream_final_response=streaming,
        llm_retry=LLMRetryPolicy(max_retries=0),
    )
    flow = create(planner.as_node().to())
    msg = message("hi")
    async with flow.running():
        await flow.emit(msg)
        with pytest.raises(FlowError) as caught:
            await flow.fetch(trace_id=msg.trace_id)
    assert caught.value.node_name == "planner"
    assert isinstance(caught.value.__cause__, LLMError)
    assert planner.statistics().active_runs == 0


async def test_many_traces_share_one_planner_node() -> None:
    def model(messages: list[Any], info: LLMCallInfo) -> Any:
        if any(m["role"] == "user" and m["content"].startswith('{"observation"') for m in messages):
            return final("done")
        return call("add", a=info.call_index, b=1)

    planner = ReactPlanner(FunctionLLM(model), nodes=[add])
    flow = create(planner.as_node(policy=None).to())
    msgs = [message(f"q{i}") for i in range(50)]
    results: dict[str, Any] = {}

    async def one(msg: Message) -> None:
        results[msg.trace_id] = (await outcome(flow, msg)).payload

    async with flow.running():
        async with anyio.create_task_group() as tg:
            for msg in msgs:
                tg.start_soon(one, msg)
    assert len(results) == 50
    for msg in msgs:
        result = results[msg.trace_id]
        assert isinstance(result, PlannerFinish) and result.reason == "answer_complete"
        assert result.trace_id == msg.trace_id
        assert result.usage.tool_calls == 1


async def _paused_then_resumed(
    planner: ReactPlanner[Any], resume_fields: dict[str, Any]
) -> tuple[list[Any], float]:
    flow = create(planner.as_node().to())
    async with flow.running():
        first = [i async for i in stream_flow(flow, message("send 10"), include_final=True)]
        pause = first[-1]  # after a done chunk when streaming: a pause has no answer to stream
        assert isinstance(pause, PlannerPause)
        (interrupt,) = pause.interrupts
        resume = PlannerResume(token=pause.resume_token, answers={interrupt.interrupt_id: True})
        started = time.monotonic()
        items = [
            i async for i in stream_flow(flow, message(resume, **resume_fields), include_final=True)
        ]
    return items, time.monotonic() - started


async def test_a_resumed_answer_goes_out_as_chunks_too() -> None:
    llm = ScriptedLLM([call("transfer", a=10, b=0), final("sent ten")], chunk_size=3)
    planner = ReactPlanner(llm, nodes=[transfer], stream_final_response=True)
    items, _ = await _paused_then_resumed(planner, {})
    *chunks, last = items
    assert "".join(c.text for c in chunks) == "sent ten"
    assert chunks[-1].done
    assert finished(last).output == "sent ten"


async def test_a_resumed_answer_streams_as_the_model_writes_it() -> None:
    llm = ScriptedLLM([call("transfer", a=10, b=0), final("sent ten")], chunk_size=3)
    planner = ReactPlanner(llm, nodes=[transfer], stream_final_response=True)
    items, _ = await _paused_then_resumed(planner, {})
    texts = [c.text for c in items if isinstance(c, StreamChunk) and not c.done]
    assert "".join(texts) == "sent ten"
    assert len(texts) > 1  # the model's deltas, not one chunk at the end


async def test_the_message_deadline_caps_a_resumed_run() -> None:
    answers: list[Any] = [call("transfer", a=10, b=0)]

    async def model(messages: list[Any], info: LLMCallInfo) -> Any:
        if answers:
            return answers.pop(0)
        await anyio.sleep(2)
        return final("late")

    planner = ReactPlanner(FunctionLLM(model), nodes=[transfer])
    items, elapsed = await _paused_then_resumed(planner, {"deadline_s": time.time() + 0.2})
    result = finished(items[-1])
    assert (result.reason, result.exhausted) == ("budget_exhausted", "deadline")
    assert elapsed < 1.5
