"""The planner's lifecycle (``async with`` / ``aclose``) and one instance under many runs."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from pydantic import BaseModel

from penguiflow.core import FlowEvent, Node, NodePolicy, tool
from penguiflow.planner import (
    PlannerFinish,
    PlannerNotOpen,
    PlannerUsageError,
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


def call(node: str, **args: Any) -> dict[str, Any]:
    return {"thought": f"call {node}", "next_node": node, "args": args}


def final(answer: Any) -> dict[str, Any]:
    return {"thought": "done", "next_node": "final_response", "args": {"answer": answer}}


def one_tool_then_answer(messages: list[Any], info: LLMCallInfo) -> Any:
    if any(m["role"] == "user" and m["content"].startswith('{"observation"') for m in messages):
        return final("done")
    return call("add", a=1, b=2)


async def _middleware(event: FlowEvent) -> None:
    pass


def _tasks() -> set[asyncio.Task[Any]]:
    return asyncio.all_tasks()


# ------------------------------------------------------------------------- opening
async def test_async_with_runs_the_private_tool_flow_and_a_task_group() -> None:
    planner = ReactPlanner(ScriptedLLM([call("add", a=1, b=2), final("3")]), nodes=[add])
    assert not planner.tool_flow.running_now
    async with planner as opened:
        assert opened is planner
        assert planner.tool_flow.running_now
        result = await planner.run("1 + 2")
        assert isinstance(result, PlannerFinish) and result.output == "3"
    assert not planner.tool_flow.running_now


async def test_async_middlewares_need_an_open_planner() -> None:
    planner = ReactPlanner(ScriptedLLM([final("hi")]), middlewares=[_middleware])
    with pytest.raises(PlannerNotOpen, match="async with"):
        await planner.run("hi")
    with pytest.raises(PlannerNotOpen):
        await planner.resume("some-token")
    async with planner:
        result = await planner.run("hi")
    assert isinstance(result, PlannerFinish)


async def test_async_middlewares_get_the_tool_events_while_open() -> None:
    seen: list[FlowEvent] = []

    async def middleware(event: FlowEvent) -> None:
        seen.append(event)

    llm = ScriptedLLM([call("add", a=1, b=2), final("3")])
    planner = ReactPlanner(llm, nodes=[add], middlewares=[middleware])
    async with planner:
        result = await planner.run("1 + 2")
    assert [e.node_name for e in seen] == ["add", "add"]
    assert {e.trace_id for e in seen} == {result.trace_id}


async def test_a_planner_without_middlewares_runs_unopened() -> None:
    planner = ReactPlanner(ScriptedLLM([call("add", a=1, b=2), final("3")]), nodes=[add])
    result = await planner.run("1 + 2")
    assert isinstance(result, PlannerFinish) and result.output == "3"


async def test_a_planner_can_be_opened_again_after_closing() -> None:
    llm = ScriptedLLM([call("add", a=1, b=2), final("3"), call("add", a=2, b=2), final("4")])
    planner = ReactPlanner(llm, nodes=[add])
    async with planner:
        first = await planner.run("1 + 2")
    async with planner:  # a flow runs once: a fresh private tool flow
        second = await planner.run("2 + 2")
    assert isinstance(first, PlannerFinish) and isinstance(second, PlannerFinish)
    assert (first.output, second.output) == ("3", "4")


async def test_opening_an_open_planner_is_refused() -> None:
    planner = ReactPlanner(ScriptedLLM([]))
    async with planner:
        with pytest.raises(PlannerUsageError, match="already open"):
            await planner.__aenter__()
    await planner.aclose()  # idempotent


# ------------------------------------------------------------------ background work
async def test_background_work_is_counted_and_drained_by_aclose() -> None:
    planner = ReactPlanner(ScriptedLLM([]))
    release = anyio.Event()
    done: list[str] = []

    async def work() -> None:
        await release.wait()
        done.append("summary")

    async with planner:
        await planner.spawn(work, what="rolling summary")
        await planner.spawn(work, what="rolling summary")
        assert planner.statistics().background_tasks == 2
        release.set()
        await anyio.lowlevel.checkpoint()
    assert done == ["summary", "summary"]
    assert planner.statistics().background_tasks == 0


async def test_aclose_waits_for_background_work_up_to_its_bound_then_cancels() -> None:
    planner = ReactPlanner(ScriptedLLM([]))
    planner.drain_timeout_s = 0.05
    cancelled: list[bool] = []
    finished: list[bool] = []

    async def stuck() -> None:
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.append(True)
            raise

    async def quick() -> None:
        await anyio.sleep(0.01)
        finished.append(True)

    before = _tasks()
    async with planner:
        await planner.spawn(stuck, what="stuck write")
        await planner.spawn(quick, what="quick write")
    assert (finished, cancelled) == ([True], [True])
    assert planner.statistics().background_tasks == 0
    assert _tasks() == before


async def test_background_failures_are_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    planner = ReactPlanner(ScriptedLLM([]))

    async def broken() -> None:
        raise RuntimeError("store down")

    async with planner:
        await planner.spawn(broken, what="event write")
        await anyio.sleep(0.01)
    assert "planner background work (event write) failed" in caplog.text
    assert planner.statistics().background_tasks == 0


async def test_unopened_background_work_runs_inline_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    planner = ReactPlanner(ScriptedLLM([]))
    done: list[int] = []

    async def work() -> None:
        done.append(1)

    with caplog.at_level(logging.INFO, logger="penguiflow.planner"):
        await planner.spawn(work, what="rolling summary")
        await planner.spawn(work, what="rolling summary")
    assert done == [1, 1]
    assert caplog.text.count("background work (rolling summary) runs inline") == 1


# ------------------------------------------------------------------------ no leaks
async def test_aclose_leaves_no_task() -> None:
    before = _tasks()
    planner = ReactPlanner(FunctionLLM(one_tool_then_answer), nodes=[add])
    async with planner:
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(planner.run, "1 + 2")
        assert len(_tasks()) > len(before)  # the private flow's and the group's tasks
    await anyio.lowlevel.checkpoint()
    assert _tasks() == before
    assert planner.statistics().active_runs == 0


async def test_aclose_with_a_run_cancelled_mid_tool_leaves_no_task() -> None:
    started = anyio.Event()

    @tool(desc="Block.")
    async def block(args: AddArgs, ctx: Any) -> Sum:
        started.set()
        await anyio.sleep_forever()
        return Sum(total=0)  # pragma: no cover

    before = _tasks()
    planner = ReactPlanner(ScriptedLLM([call("block", a=0, b=0)]), nodes=[block])
    async with planner:
        async with anyio.create_task_group() as tg:
            tg.start_soon(planner.run, "block")
            await started.wait()
            assert planner.statistics().active_runs == 1
            tg.cancel_scope.cancel()
    assert _tasks() == before
    assert planner.statistics().active_runs == 0


# --------------------------------------------------------------------- concurrency
async def test_one_instance_serves_a_thousand_concurrent_runs() -> None:
    in_flight = 0
    peak = 0

    async def slow_add(args: AddArgs, ctx: Any) -> Sum:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await anyio.sleep(0.01)
        in_flight -= 1
        return Sum(total=args.a + args.b)

    node = Node(
        tool(desc="Add slowly.")(slow_add), name="add", policy=NodePolicy(max_concurrency=1000)
    )
    llm = FunctionLLM(one_tool_then_answer)
    planner = ReactPlanner(llm, nodes=[node])
    results: list[Any] = []

    async def one(i: int) -> None:
        results.append(await planner.run(f"query {i}"))

    before = _tasks()
    async with planner:
        async with anyio.create_task_group() as tg:
            for i in range(1000):
                tg.start_soon(one, i)
        stats = planner.statistics()
    assert len(results) == 1000
    assert all(isinstance(r, PlannerFinish) and r.reason == "answer_complete" for r in results)
    assert len({r.run_id for r in results}) == 1000
    assert peak > 500  # the runs overlap; nothing serialises them
    assert (stats.active_runs, stats.background_tasks) == (0, 0)
    assert (stats.llm_calls, stats.tool_calls) == (2000, 1000)
    assert _tasks() == before


async def test_max_concurrency_bounds_a_tool_across_runs() -> None:
    in_flight = 0
    peak = 0

    async def slow_add(args: AddArgs, ctx: Any) -> Sum:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await anyio.sleep(0.005)
        in_flight -= 1
        return Sum(total=0)

    node = Node(
        tool(desc="Add slowly.")(slow_add), name="add", policy=NodePolicy(max_concurrency=3)
    )
    planner = ReactPlanner(FunctionLLM(one_tool_then_answer), nodes=[node])
    async with planner, anyio.create_task_group() as tg:
        for i in range(30):
            tg.start_soon(planner.run, f"q{i}")
    assert peak == 3, planner.statistics()
