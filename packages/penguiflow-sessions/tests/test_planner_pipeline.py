"""PlannerTaskPipeline: a ReactPlanner as a task, its interrupts as the task's checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from penguiflow.core import SQLiteDurableStore, tool
from penguiflow.planner import MemoryKey, ReactPlanner, ToolContext
from penguiflow.sessions import (
    ContextPatch,
    PlannerTaskPipeline,
    StateUpdate,
    SteeringEvent,
    SteeringEventType,
    StreamingSession,
    Subscription,
    TaskResult,
    TaskRuntime,
    TaskStatus,
    TaskType,
    UpdateType,
    task_tools,
)
from penguiflow.testkit import ScriptedLLM

S = SteeringEventType


class Order(BaseModel):
    """An order to refund."""

    order: str


class Refunded(BaseModel):
    """A refund's outcome."""

    order: str
    ok: bool


RAN: list[str] = []


@tool(desc="Refund an order (a human approves it first).", needs_approval=True)
async def refund(args: Order, ctx: ToolContext) -> Refunded:
    RAN.append(args.order)
    return Refunded(order=args.order, ok=True)


class Question(BaseModel):
    """What to ask the user."""

    question: str


class Reply(BaseModel):
    """What the user said."""

    text: str


@tool(desc="Ask the user something.")
async def ask(args: Question, ctx: ToolContext) -> Reply:
    answer = await ctx.pause("await_input", {"prompt": args.question})
    return Reply(text=str(answer))


class Empty(BaseModel):
    """No arguments."""


class Where(BaseModel):
    """Where the tool ran."""

    session_id: str
    task_id: str
    has_runtime: bool


@tool(desc="Say where the tool runs.")
async def where(args: Empty, ctx: ToolContext) -> Where:
    tc = ctx.tool_context
    return Where(
        session_id=tc["session_id"],
        task_id=tc["task_id"],
        has_runtime=isinstance(tc["task_runtime"], TaskRuntime),
    )


def call(node: str, **args: Any) -> dict[str, Any]:
    return {"thought": f"call {node}", "next_node": node, "args": args}


def answer(text: str) -> dict[str, Any]:
    return {"thought": "done", "next_node": "final_response", "args": {"answer": text}}


def content(update: StateUpdate) -> dict[str, Any]:
    assert isinstance(update.content, dict)
    return dict(update.content)


async def next_of(sub: Subscription, kind: UpdateType, **values: object) -> StateUpdate:
    async for update in sub:
        if update.update_type is kind and all(
            content(update).get(k) == v for k, v in values.items()
        ):
            return update
    raise AssertionError(f"no {kind} {values}")


async def test_a_planner_answer_completes_the_task_with_its_result_and_progress() -> None:
    planner = ReactPlanner(ScriptedLLM([call("where"), answer("all good")]), nodes=[where])
    pipeline = PlannerTaskPipeline(planner)
    async with StreamingSession("s1") as session, session.subscribe() as sub:
        with anyio.fail_after(10):
            result = await session.run_task(pipeline, query="check")
        await session.aclose()
        updates = [u async for u in sub]
    assert result.payload == {
        "reason": "answer_complete",
        "output": "all good",
        "answer": "all good",
        "exhausted": None,
        "error": None,
    }
    assert result.digest == ["all good"]
    assert result.metadata["run_id"]
    kinds = [u.update_type for u in updates]
    assert UpdateType.PROGRESS in kinds and UpdateType.RESULT in kinds
    tool_calls = [content(u) for u in updates if u.update_type is UpdateType.TOOL_CALL]
    assert [(c["phase"], c["tool_name"]) for c in tool_calls] == [
        ("start", "where"),
        ("end", "where"),
    ]
    assert tool_calls[1]["ok"] is True
    progress = [u for u in updates if u.update_type is UpdateType.PROGRESS]
    assert all(u.step_index is not None for u in progress)
    (task,) = session.list_tasks()
    assert task.pipeline == "planner" and task.status is TaskStatus.COMPLETE


async def test_tools_get_the_session_ids_and_the_task_runtime_in_tool_context() -> None:
    llm = ScriptedLLM([call("where"), answer("ok")])
    planner = ReactPlanner(llm, nodes=[where])
    async with StreamingSession("s1") as session:
        with anyio.fail_after(10):
            await session.run_task(PlannerTaskPipeline(planner), query="q", task_id="t1")
    # the observation the model saw next is what the tool found in tool_context
    seen = " ".join(m["content"] for m in llm.calls[1].messages)
    assert '"session_id": "s1"' in seen or '"session_id":"s1"' in seen
    assert "t1" in seen and "has_runtime" in seen and "true" in seen


async def test_an_approval_interrupt_is_a_checkpoint_that_approve_answers() -> None:
    RAN.clear()
    planner = ReactPlanner(
        ScriptedLLM([call("refund", order="A-1"), answer("refunded A-1")]), nodes=[refund]
    )
    async with StreamingSession("s1") as session, session.subscribe() as sub:
        tid = await session.spawn_task(PlannerTaskPipeline(planner), query="refund A-1")
        with anyio.fail_after(10):
            checkpoint = await next_of(sub, UpdateType.CHECKPOINT)
            await next_of(sub, UpdateType.STATUS_CHANGE, status="PAUSED")
        body = content(checkpoint)
        assert body["kind"] == "approval_required"
        assert body["payload"]["tool"] == "refund"
        assert body["payload"]["args"] == {"order": "A-1"}
        assert body["resume_token"] == body["payload"]["interrupt_id"]
        assert RAN == []
        receipt = await session.steer(
            SteeringEvent(
                session_id="s1",
                task_id=tid,
                event_type=S.APPROVE,
                payload={"resume_token": body["resume_token"]},
            )
        )
        assert receipt
        with anyio.fail_after(10):
            state = await session.wait_task(tid)
    assert state.status is TaskStatus.COMPLETE
    assert RAN == ["A-1"]
    assert isinstance(state.result, dict) and state.result["answer"] == "refunded A-1"


async def test_reject_skips_the_tool_and_the_planner_finishes_gracefully() -> None:
    RAN.clear()
    planner = ReactPlanner(
        ScriptedLLM([call("refund", order="B-2"), answer("not refunded")]), nodes=[refund]
    )
    async with StreamingSession("s1") as session, session.subscribe() as sub:
        tid = await session.spawn_task(PlannerTaskPipeline(planner), query="refund B-2")
        with anyio.fail_after(10):
            checkpoint = content(await next_of(sub, UpdateType.CHECKPOINT))
        await session.steer(
            SteeringEvent(
                session_id="s1",
                task_id=tid,
                event_type=S.REJECT,
                payload={"resume_token": checkpoint["resume_token"], "reason": "too much"},
            )
        )
        with anyio.fail_after(10):
            state = await session.wait_task(tid)
    assert state.status is TaskStatus.COMPLETE  # not cancelled (fix)
    assert RAN == []
    assert isinstance(state.result, dict) and state.result["answer"] == "not refunded"


async def test_a_user_message_answers_an_await_input_checkpoint_with_its_text() -> None:
    llm = ScriptedLLM([call("ask", question="Which colour?"), answer("blue it is")])
    planner = ReactPlanner(llm, nodes=[ask])
    async with StreamingSession("s1") as session, session.subscribe() as sub:
        tid = await session.spawn_task(PlannerTaskPipeline(planner), query="paint")
        with anyio.fail_after(10):
            checkpoint = content(await next_of(sub, UpdateType.CHECKPOINT))
            await next_of(sub, UpdateType.STATUS_CHANGE, status="PAUSED")
        assert checkpoint["kind"] == "await_input"
        assert checkpoint["prompt"] == "Which colour?"
        receipt = await session.steer(
            SteeringEvent(
                session_id="s1", task_id=tid, event_type=S.USER_MESSAGE, payload={"text": "blue"}
            )
        )
        assert receipt
        with anyio.fail_after(10):
            state = await session.wait_task(tid)
    assert state.status is TaskStatus.COMPLETE
    # the tool's observation (the user's text) went to the model's second call
    assert any("blue" in m["content"] for m in llm.calls[1].messages)


async def test_memory_key_callable_is_asked_with_the_runtime() -> None:
    seen: list[str] = []

    def key(runtime: TaskRuntime) -> MemoryKey:
        seen.append(runtime.task_id)
        return MemoryKey(tenant_id="acme", user_id="u1", session_id=runtime.session_id)

    planner = ReactPlanner(ScriptedLLM([answer("hi")]))
    async with StreamingSession("s1") as session:
        with anyio.fail_after(10):
            await session.run_task(PlannerTaskPipeline(planner, memory_key=key), task_id="t1")
    assert seen == ["t1"]


async def test_a_planner_factory_is_called_once_and_must_make_a_planner() -> None:
    made: list[int] = []

    def factory() -> ReactPlanner[str]:
        made.append(1)
        return ReactPlanner(ScriptedLLM([answer("a"), answer("b")]))

    pipeline = PlannerTaskPipeline(factory, name="factory")
    async with StreamingSession("s1") as session:
        with anyio.fail_after(10):
            await session.run_task(pipeline)
            await session.run_task(pipeline)
        bad = PlannerTaskPipeline(lambda: object())  # type: ignore[arg-type,return-value]
        state = await session.wait_task(await session.spawn_task(bad))
    assert made == [1]
    assert state.status is TaskStatus.FAILED
    assert state.error is not None and "ReactPlanner" in state.error.message
    with pytest.raises(ValueError, match="name"):
        PlannerTaskPipeline(factory, name="")


async def test_task_tools_let_a_foreground_planner_spawn_list_and_ask_to_cancel() -> None:
    release = anyio.Event()

    async def crawl(runtime: TaskRuntime) -> str:
        await release.wait()
        return "crawled"

    # tool names contain a dot; the catalog keeps them as they are
    llm = ScriptedLLM(
        [
            call("tasks.spawn", pipeline="crawl", query="the web", description="crawl"),
            call("tasks.list"),
            answer("started"),
        ]
    )
    planner = ReactPlanner(llm, catalog=task_tools({"crawl": crawl}))
    async with StreamingSession("s1") as session:
        with anyio.fail_after(10):
            await session.run_task(PlannerTaskPipeline(planner), query="crawl please")
        (background,) = session.list_tasks(task_type=TaskType.BACKGROUND)
        assert background.description == "crawl" and background.query == "the web"
        assert background.status is TaskStatus.RUNNING  # it outlives the planner's turn
        # the second model call saw tasks.list's observation naming the crawl task
        assert any(background.task_id in m["content"] for m in llm.calls[2].messages)

        cancel_llm = ScriptedLLM(
            [call("tasks.cancel", task_id=background.task_id, reason="enough"), answer("asked")]
        )
        canceller = ReactPlanner(cancel_llm, catalog=task_tools({"crawl": crawl}))
        with anyio.fail_after(10):
            await session.run_task(PlannerTaskPipeline(canceller), query="stop it")
        # an agent's cancel is parked until the user confirms it
        assert any("PARKED" in m["content"] for m in cancel_llm.calls[1].messages)
        assert session.get_task(background.task_id).status is TaskStatus.RUNNING  # type: ignore[union-attr]
        release.set()


def test_task_tools_refuse_no_pipelines_or_a_sync_one() -> None:
    def sync(runtime: TaskRuntime) -> None:
        return None

    with pytest.raises(ValueError, match="at least one pipeline"):
        task_tools({})
    with pytest.raises(TypeError, match="not async"):
        task_tools({"sync": sync})  # type: ignore[dict-item]
    names = [
        spec.name for spec in task_tools({"x": PlannerTaskPipeline(ReactPlanner(ScriptedLLM([])))})
    ]
    assert names == ["tasks.spawn", "tasks.list", "tasks.get", "tasks.cancel"]


GATE: list[anyio.Event] = []


@tool(desc="Wait for the test.")
async def slow(args: Empty, ctx: ToolContext) -> Reply:
    await GATE[0].wait()
    return Reply(text="slow done")


async def test_pause_and_resume_during_a_planner_run_show_paused_then_running() -> None:
    GATE[:] = [anyio.Event()]
    planner = ReactPlanner(ScriptedLLM([call("slow"), answer("resumed fine")]), nodes=[slow])
    async with StreamingSession("s1") as session, session.subscribe() as sub:
        tid = await session.spawn_task(PlannerTaskPipeline(planner), query="go")
        with anyio.fail_after(10):
            await next_of(sub, UpdateType.TOOL_CALL, phase="start")
            pause = SteeringEvent(session_id="s1", task_id=tid, event_type=S.PAUSE)
            assert await session.steer(pause)
            GATE[0].set()  # the planner sees the PAUSE between steps and holds
            await next_of(sub, UpdateType.STATUS_CHANGE, status="PAUSED", reason="paused")
            resume = SteeringEvent(session_id="s1", task_id=tid, event_type=S.RESUME)
            assert await session.steer(resume)
            await next_of(sub, UpdateType.STATUS_CHANGE, status="RUNNING", reason="resumed")
            state = await session.wait_task(tid)
    assert state.status is TaskStatus.COMPLETE
    assert isinstance(state.result, dict) and state.result["answer"] == "resumed fine"


async def test_streamed_answer_text_becomes_stream_updates() -> None:
    planner = ReactPlanner(
        ScriptedLLM([answer("a streamed answer")], chunk_size=4), stream_final_response=True
    )
    async with StreamingSession("s1") as session, session.subscribe() as sub:
        with anyio.fail_after(10):
            await session.run_task(PlannerTaskPipeline(planner))
        await session.aclose()
        streamed = [content(u)["text"] async for u in sub if u.update_type is UpdateType.STREAM]
    assert "".join(streamed) == "a streamed answer"


async def test_a_cancel_during_a_planner_run_ends_the_task_cancelled() -> None:
    GATE[:] = [anyio.Event()]
    planner = ReactPlanner(ScriptedLLM([call("slow"), answer("never")]), nodes=[slow])
    async with StreamingSession("s1") as session, session.subscribe() as sub:
        tid = await session.spawn_task(PlannerTaskPipeline(planner), query="go")
        with anyio.fail_after(10):
            await next_of(sub, UpdateType.TOOL_CALL, phase="start")
            cancel = SteeringEvent(
                session_id="s1", task_id=tid, event_type=S.CANCEL, payload={"reason": "stop"}
            )
            assert await session.steer(cancel)
            state = await session.wait_task(tid)
    assert state.status is TaskStatus.CANCELLED
    assert state.cancel_reason == "stop"


async def test_a_planner_checkpoint_answered_after_a_restart_resumes_the_planner(
    tmp_path: Path,
) -> None:
    RAN.clear()
    path = tmp_path / "sessions.db"
    with anyio.fail_after(20):
        async with SQLiteDurableStore.open(path) as store:
            planner = ReactPlanner(
                ScriptedLLM([call("refund", order="C-3")]), nodes=[refund], store=store
            )
            pipeline = PlannerTaskPipeline(planner)
            async with StreamingSession("s1", store=store, pipelines=[pipeline]) as first:
                async with first.subscribe() as sub:
                    tid = await first.spawn_task(pipeline, query="refund C-3")
                    token = content(await next_of(sub, UpdateType.CHECKPOINT))["resume_token"]
                    await next_of(sub, UpdateType.STATUS_CHANGE, status="PAUSED")
            # the process is gone; the task was left PAUSED in the store
        async with SQLiteDurableStore.open(path) as store:
            planner = ReactPlanner(
                ScriptedLLM([answer("refunded C-3 after the restart")]), nodes=[refund], store=store
            )
            pipeline = PlannerTaskPipeline(planner)
            async with StreamingSession("s1", store=store, pipelines=[pipeline]) as second:
                task = second.get_task(tid)
                assert task is not None and task.status is TaskStatus.PAUSED
                receipt = await second.steer(
                    SteeringEvent(
                        session_id="s1",
                        task_id=tid,
                        event_type=S.APPROVE,
                        payload={"resume_token": token},
                    )
                )
                assert receipt
                state = await second.wait_task(tid)
    assert state.status is TaskStatus.COMPLETE
    assert RAN == ["C-3"]
    assert isinstance(state.result, dict)
    assert state.result["answer"] == "refunded C-3 after the restart"


async def test_parallel_interrupts_become_checkpoints_one_after_another_in_order() -> None:
    RAN.clear()
    plan = {
        "thought": "both",
        "next_node": "parallel",
        "args": {
            "steps": [
                {"node": "refund", "args": {"order": "P-1"}},
                {"node": "refund", "args": {"order": "P-2"}},
            ]
        },
    }
    planner = ReactPlanner(ScriptedLLM([plan, answer("one of two")]), nodes=[refund])
    async with StreamingSession("s1") as session, session.subscribe() as sub:
        tid = await session.spawn_task(PlannerTaskPipeline(planner), query="refund both")
        seen: list[dict[str, Any]] = []
        for decision in (S.APPROVE, S.REJECT):
            with anyio.fail_after(10):
                checkpoint = content(await next_of(sub, UpdateType.CHECKPOINT))
            seen.append(checkpoint)
            await session.steer(
                SteeringEvent(
                    session_id="s1",
                    task_id=tid,
                    event_type=decision,
                    payload={"resume_token": checkpoint["resume_token"]},
                )
            )
        with anyio.fail_after(10):
            state = await session.wait_task(tid)
    assert [c["payload"]["args"]["order"] for c in seen] == ["P-1", "P-2"]
    assert [c["resume_token"] for c in seen] == [c["payload"]["interrupt_id"] for c in seen]
    assert RAN == ["P-1"]
    assert state.status is TaskStatus.COMPLETE


@tool(desc="Stream two pieces.")
async def chatty(args: Empty, ctx: ToolContext) -> Reply:
    await ctx.emit_chunk(text="hel")
    await ctx.emit_chunk(text="lo", done=True)
    return Reply(text="hello")


async def test_tool_stream_chunks_become_stream_updates_naming_the_tool() -> None:
    planner = ReactPlanner(ScriptedLLM([call("chatty"), answer("ok")]), nodes=[chatty])
    async with StreamingSession("s1") as session, session.subscribe() as sub:
        with anyio.fail_after(10):
            await session.run_task(PlannerTaskPipeline(planner))
        await session.aclose()
        chunks = [content(u) async for u in sub if u.update_type is UpdateType.STREAM]
    assert [(c["tool_name"], c["text"]) for c in chunks] == [("chatty", "hel"), ("chatty", "lo")]


async def test_steering_reaches_the_planner_run_through_the_task_inbox() -> None:
    GATE[:] = [anyio.Event()]
    llm = ScriptedLLM([call("slow"), answer("metric it is")])
    planner = ReactPlanner(llm, nodes=[slow])
    async with StreamingSession("s1") as session, session.subscribe() as sub:
        tid = await session.spawn_task(PlannerTaskPipeline(planner), query="weigh it")
        with anyio.fail_after(10):
            await next_of(sub, UpdateType.TOOL_CALL, phase="start")
            receipt = await session.steer(
                SteeringEvent(
                    session_id="s1",
                    task_id=tid,
                    event_type=S.INJECT_CONTEXT,
                    payload={"text": "use metric units"},
                )
            )
            assert receipt
            GATE[0].set()
            await session.wait_task(tid)
    assert any("use metric units" in m["content"] for m in llm.calls[1].messages)


async def test_the_planner_sees_the_sessions_context_and_unconsumed_background_results() -> None:
    async def background(runtime: TaskRuntime) -> TaskResult:
        return TaskResult(
            payload="found", context_patch=ContextPatch(digest=["krill are small"], facts={})
        )

    llm = ScriptedLLM([answer("noted")])
    planner = ReactPlanner(llm)
    async with StreamingSession("s1") as session:
        await session.update_context(llm_context={"user": "Ada"})
        with anyio.fail_after(10):
            await session.run_task(background, task_type=TaskType.BACKGROUND)
            await session.run_task(PlannerTaskPipeline(planner), query="what do we know?")
    first = " ".join(m["content"] for m in llm.calls[0].messages)
    assert "Ada" in first
    assert "background_results" in first and "krill are small" in first
