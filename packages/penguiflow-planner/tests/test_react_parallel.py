"""Parallel steps: validation before anything starts, throttling, injection into the join, hops,
and cancellation reaching every branch."""

from __future__ import annotations

import datetime
from typing import Any, cast

import anyio
import pytest
from pydantic import BaseModel

from penguiflow.core import TraceCancelled, tool
from penguiflow.planner import (
    PlannerBudget,
    PlannerEvent,
    PlannerEventType,
    PlannerFinish,
    ReactPlanner,
    SteeringEvent,
    SteeringEventType,
    SteeringInbox,
)
from penguiflow.testkit import ScriptedLLM


class Num(BaseModel):
    x: int


class Out(BaseModel):
    y: int


class Gather(BaseModel):
    results: list[Out]
    branches: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    ok: int = 0
    bad: int = 0
    expect: int = 0
    label: str = ""


class When(BaseModel):
    at: datetime.date


class Stamps(BaseModel):
    results: list[dict[str, Any]]


CALLS: list[str] = []
JOINS: list[dict[str, Any]] = []


@tool()
async def double(args: Num, ctx: Any) -> Out:
    CALLS.append(f"double:{args.x}")
    return Out(y=args.x * 2)


@tool()
async def boom(args: Num, ctx: Any) -> Out:
    CALLS.append(f"boom:{args.x}")
    raise RuntimeError(f"boom {args.x}")


@tool()
async def gather(args: Gather, ctx: Any) -> Out:
    JOINS.append(args.model_dump(mode="json"))
    return Out(y=sum(r.y for r in args.results))


@pytest.fixture(autouse=True)
def _clear() -> None:
    CALLS.clear()
    JOINS.clear()


def _parallel(steps: list[dict[str, Any]], join: dict[str, Any] | None = None) -> dict[str, Any]:
    args: dict[str, Any] = {"steps": steps}
    if join is not None:
        args["join"] = join
    return {"next_node": "parallel", "args": args}


def _final(answer: str = "done") -> dict[str, Any]:
    return {"next_node": "final_response", "args": {"answer": answer}}


def _finish(result: object) -> PlannerFinish[Any]:
    assert isinstance(result, PlannerFinish)
    return cast("PlannerFinish[Any]", result)


def _d(x: int, node: str = "double") -> dict[str, Any]:
    return {"node": node, "args": {"x": x}}


# ------------------------------------------------------------------ validated first


async def test_one_invalid_branch_starts_none_and_is_one_error_observation() -> None:
    llm = ScriptedLLM([_parallel([_d(1), {"node": "double", "args": {"x": "nope"}}]), _final()])
    planner = ReactPlanner(llm, nodes=[double, gather])
    result = _finish(await planner.run("q"))
    assert result.reason == "answer_complete"
    assert CALLS == []
    step = result.trajectory.steps[0]
    assert step.error is not None and "double" in step.error
    assert step.failure is not None and step.failure["validation_errors"][0]["loc"] == ["x"]
    assert result.usage.hops == 0 and result.usage.tool_calls == 0
    # the error went back to the model as one observation
    assert '"error"' in llm.calls[1].messages[-1]["content"]


async def test_unknown_node_in_a_branch_starts_none() -> None:
    llm = ScriptedLLM([_parallel([_d(1), _d(2, node="nope")]), _final()])
    result = _finish(await ReactPlanner(llm, nodes=[double]).run("q"))
    assert CALLS == []
    assert result.trajectory.steps[0].error is not None
    assert "nope" in result.trajectory.steps[0].error


async def test_more_than_absolute_max_parallel_starts_none() -> None:
    llm = ScriptedLLM([_parallel([_d(i) for i in range(4)]), _final()])
    planner = ReactPlanner(llm, nodes=[double], max_parallel=2, absolute_max_parallel=3)
    result = _finish(await planner.run("q"))
    assert CALLS == []
    error = result.trajectory.steps[0].error
    assert error is not None and "4 branches" in error and "3" in error


async def test_bad_join_shapes_start_no_branch() -> None:
    for join in (
        {"node": "nope"},
        {"node": "gather", "on_failure": "sometimes"},
        {"node": "gather", "args": [1, 2]},
        {"node": "gather", "inject": "results"},
        {"node": "gather", "inject": {"results": "$nope"}},
    ):
        llm = ScriptedLLM([_parallel([_d(1)], join), _final()])
        result = _finish(await ReactPlanner(llm, nodes=[double, gather]).run("q"))
        assert result.reason == "answer_complete", join
        assert CALLS == [], join
        assert result.trajectory.steps[0].error is not None, join


# ------------------------------------------------------------------------ throttling


async def test_wide_plans_are_throttled_not_rejected() -> None:
    """Regression (fix): the reference rejected plans wider than max_parallel."""
    running = 0
    peak = 0

    @tool()
    async def slow(args: Num, ctx: Any) -> Out:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await anyio.sleep(0.01)
        running -= 1
        return Out(y=args.x)

    llm = ScriptedLLM([_parallel([_d(i, node="slow") for i in range(12)]), _final()])
    planner = ReactPlanner(llm, nodes=[slow], max_parallel=3, absolute_max_parallel=20)
    result = _finish(await planner.run("q"))
    assert result.reason == "answer_complete"
    observation = result.trajectory.steps[0].observation
    assert observation == {"results": [{"y": i} for i in range(12)], "failures": []}
    assert peak == 3
    assert result.usage.tool_calls == 12


async def test_branches_really_run_concurrently() -> None:
    started = 0
    all_in = anyio.Event()

    @tool()
    async def meet(args: Num, ctx: Any) -> Out:
        nonlocal started
        started += 1
        if started == 4:
            all_in.set()
        with anyio.fail_after(2):
            await all_in.wait()  # deadlocks unless the four run at once
        return Out(y=args.x)

    llm = ScriptedLLM([_parallel([_d(i, node="meet") for i in range(4)]), _final()])
    result = _finish(await ReactPlanner(llm, nodes=[meet], max_parallel=4).run("q"))
    assert result.trajectory.steps[0].observation == {
        "results": [{"y": i} for i in range(4)],
        "failures": [],
    }


# ------------------------------------------------------------------------- injection


async def test_every_injection_source_reaches_the_join_validated() -> None:
    join = {
        "node": "gather",
        "args": {"label": "fixed"},
        "inject": {
            "results": "$results",
            "branches": "$branches",
            "failures": "$failures",
            "ok": "$success_count",
            "bad": "$failure_count",
            "expect": "$expect",
        },
        "on_failure": "run",
    }
    llm = ScriptedLLM([_parallel([_d(3), _d(5, node="boom"), _d(1)], join), _final()])
    result = _finish(await ReactPlanner(llm, nodes=[double, boom, gather]).run("q"))
    assert len(JOINS) == 1
    got = JOINS[0]
    assert got["results"] == [{"y": 6}, {"y": 2}]  # successful outputs, branch order
    assert got["ok"] == 2 and got["bad"] == 1 and got["expect"] == 3
    assert got["label"] == "fixed"
    assert [b["node"] for b in got["branches"]] == ["double", "boom", "double"]
    assert [b["ok"] for b in got["branches"]] == [True, False, True]
    assert got["branches"][0]["output"] == {"y": 6}
    assert got["branches"][0]["args"] == {"x": 3}
    assert len(got["failures"]) == 1 and got["failures"][0]["node"] == "boom"
    assert "boom 5" in got["failures"][0]["error"]
    step = result.trajectory.steps[0]
    assert step.observation == {"y": 8}
    assert step.branches is not None and [b["ok"] for b in step.branches] == [True, False, True]


async def test_outputs_are_injected_as_json() -> None:
    seen: list[Any] = []

    @tool()
    async def stamp(args: Num, ctx: Any) -> When:
        return When(at=datetime.date(2020, 1, args.x))

    @tool()
    async def collect(args: Stamps, ctx: Any) -> Out:
        seen.append(args.results)
        return Out(y=len(args.results))

    llm = ScriptedLLM([_parallel([_d(1, "stamp"), _d(2, "stamp")], {"node": "collect"}), _final()])
    await ReactPlanner(llm, nodes=[stamp, collect]).run("q")
    assert seen == [[{"at": "2020-01-01"}, {"at": "2020-01-02"}]]


async def test_join_args_failing_validation_is_an_error_observation() -> None:
    llm = ScriptedLLM(
        [_parallel([_d(1)], {"node": "gather", "inject": {"results": "$success_count"}}), _final()]
    )
    result = _finish(await ReactPlanner(llm, nodes=[double, gather]).run("q"))
    assert JOINS == []
    step = result.trajectory.steps[0]
    assert step.error is not None and "gather" in step.error
    assert step.failure is not None and step.failure["validation_errors"]


async def test_join_is_skipped_after_a_failure_by_default() -> None:
    llm = ScriptedLLM([_parallel([_d(1), _d(2, "boom")], {"node": "gather"}), _final()])
    result = _finish(await ReactPlanner(llm, nodes=[double, boom, gather]).run("q"))
    assert JOINS == []
    observation = result.trajectory.steps[0].observation
    assert isinstance(observation, dict)
    assert observation["results"] == [{"y": 2}]
    assert observation["failures"][0]["node"] == "boom"
    assert result.usage.tool_calls == 2


async def test_join_runs_when_all_succeeded_and_always_with_on_failure_run() -> None:
    llm = ScriptedLLM(
        [
            _parallel([_d(1), _d(2)], {"node": "gather"}),
            _parallel([_d(1, "boom"), _d(2, "boom")], {"node": "gather", "on_failure": "run"}),
            _final(),
        ]
    )
    result = _finish(await ReactPlanner(llm, nodes=[double, boom, gather]).run("q"))
    assert [j["results"] for j in JOINS] == [[{"y": 2}, {"y": 4}], []]
    assert result.trajectory.steps[0].observation == {"y": 6}
    assert result.trajectory.steps[1].observation == {"y": 0}


async def test_a_join_gone_from_the_catalog_is_an_error_observation() -> None:
    """A resumed step whose join tool was removed becomes an error, not a crash."""
    from penguiflow.planner._steps import Branch, PendingStep  # internal state of a record

    llm = ScriptedLLM([_final()])
    planner = ReactPlanner(llm, nodes=[double])
    from penguiflow.planner._run import Run

    run = Run(
        planner,
        query="q",
        llm_context={},
        tool_context={},
        memory_key=None,
        steering=None,
        budget=PlannerBudget(),
        trace_id=None,
        listeners=(),
    )
    run.pending = PendingStep(
        0,
        {"next_node": "parallel", "args": {}},
        [Branch(0, "double", {"x": 1}, ok=True, output={"y": 2})],
        {"node": "gather"},
        parallel=True,
    )
    result = _finish(await run.execute())
    assert result.reason == "answer_complete"
    error = result.trajectory.steps[0].error
    assert error is not None and "gather" in error


# ------------------------------------------------------------------------------ hops


async def test_each_branch_and_the_join_count_one_hop() -> None:
    events: list[PlannerEvent] = []
    llm = ScriptedLLM([_parallel([_d(1), _d(2), _d(3)], {"node": "gather"}), _final()])
    planner = ReactPlanner(llm, nodes=[double, gather], event_callback=events.append)
    result = _finish(await planner.run("q"))
    assert result.usage.hops == 4
    assert result.usage.tool_calls == 4
    starts = [e for e in events if e.event_type is PlannerEventType.TOOL_CALL_START]
    ends = [e for e in events if e.event_type is PlannerEventType.TOOL_CALL_END]
    assert sorted(e.extra["branch"] for e in starts) == [0, 1, 2, 3]
    assert all(e.extra["ok"] for e in ends) and len(ends) == 4
    assert len({e.extra["call_id"] for e in starts}) == 4


async def test_a_batch_needing_more_hops_than_remain_does_not_start() -> None:
    llm = ScriptedLLM([_parallel([_d(1), _d(2)], {"node": "gather"}), _final()])
    planner = ReactPlanner(llm, nodes=[double, gather], budget=PlannerBudget(max_hops=2))
    result = _finish(await planner.run("q"))
    assert CALLS == [] and JOINS == []
    assert result.trajectory.steps[0].error is not None
    assert "3" in result.trajectory.steps[0].error


# ---------------------------------------------------------------------- cancellation


def _hanging_tools() -> tuple[list[Any], list[anyio.Event], anyio.Event]:
    finished = [anyio.Event() for _ in range(3)]
    entered = anyio.Event()
    count = 0

    @tool()
    async def hang(args: Num, ctx: Any) -> Out:
        nonlocal count
        try:
            count += 1
            if count == 3:
                entered.set()
            await anyio.sleep_forever()
        finally:
            finished[args.x].set()
        raise AssertionError("unreachable")

    return [hang], finished, entered


async def test_cancelling_the_run_cancels_every_branch() -> None:
    nodes, finished, entered = _hanging_tools()
    llm = ScriptedLLM([_parallel([_d(i, "hang") for i in range(3)])])
    planner = ReactPlanner(llm, nodes=nodes)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(planner.run, "q")
            await entered.wait()
            tg.cancel_scope.cancel()
    assert all(f.is_set() for f in finished)  # no tool outlived its run
    assert planner.statistics().active_runs == 0


async def test_steering_cancel_cancels_every_branch() -> None:
    nodes, finished, entered = _hanging_tools()
    llm = ScriptedLLM([_parallel([_d(i, "hang") for i in range(3)])])
    inbox = SteeringInbox()
    planner = ReactPlanner(llm, nodes=nodes)
    outcome: list[PlannerFinish[Any]] = []

    async def go() -> None:
        outcome.append(_finish(await planner.run("q", steering=inbox)))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(go)
            await entered.wait()
            assert inbox.push_nowait(SteeringEvent(SteeringEventType.CANCEL))
    assert all(f.is_set() for f in finished)
    assert outcome[0].reason == "cancelled"


async def test_the_deadline_cancels_every_branch() -> None:
    nodes, finished, _ = _hanging_tools()
    llm = ScriptedLLM([_parallel([_d(i, "hang") for i in range(3)])])
    planner = ReactPlanner(llm, nodes=nodes, budget=PlannerBudget(deadline_s=0.2))
    with anyio.fail_after(5):
        result = _finish(await planner.run("q"))
    assert result.reason == "budget_exhausted" and result.exhausted == "deadline"
    assert all(f.is_set() for f in finished)


async def test_cancelling_the_trace_cancels_every_branch_with_one_error() -> None:
    nodes, finished, entered = _hanging_tools()
    llm = ScriptedLLM([_parallel([_d(i, "hang") for i in range(3)])])
    planner = ReactPlanner(llm, nodes=nodes)
    raised: list[BaseException] = []

    async def go() -> None:
        try:
            await planner.run("q", trace_id="t-1")
        except TraceCancelled as exc:  # one error, not a group of three
            raised.append(exc)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(go)
            await entered.wait()
            assert await planner.tool_flow.cancel("t-1")
    assert len(raised) == 1
    assert all(f.is_set() for f in finished)
