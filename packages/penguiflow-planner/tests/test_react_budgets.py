"""ReactPlanner budgets, reflection, compaction and usage accounting."""

import json
from typing import Any, cast

import anyio
import pytest
from pydantic import BaseModel

from penguiflow.core import tool
from penguiflow.planner import (
    CompactionConfig,
    LLMResult,
    PlannerBudget,
    PlannerFinish,
    PlannerUsageError,
    ReactPlanner,
    ReflectionConfig,
    Usage,
)
from penguiflow.testkit import FunctionLLM, LLMCallInfo, ScriptedLLM


class AddArgs(BaseModel):
    a: int
    b: int


class AddOut(BaseModel):
    total: int


CALLS: list[tuple[int, int]] = []


@tool(desc="Add two integers.")
async def add(args: AddArgs, ctx: Any) -> AddOut:
    CALLS.append((args.a, args.b))
    return AddOut(total=args.a + args.b)


class SleepArgs(BaseModel):
    seconds: float


class SleepOut(BaseModel):
    slept: bool


SLEEP_STATE: dict[str, Any] = {}


@tool(desc="Sleep a while.")
async def nap(args: SleepArgs, ctx: Any) -> SleepOut:
    SLEEP_STATE["started"] = True
    try:
        await anyio.sleep(args.seconds)
    except BaseException:
        SLEEP_STATE["cancelled"] = True
        raise
    SLEEP_STATE["finished"] = True
    return SleepOut(slept=True)


def act(node: str, **args: Any) -> dict[str, Any]:
    return {"thought": "", "next_node": node, "args": args}


def answer(value: Any) -> dict[str, Any]:
    return act("final_response", answer=value)


def finished(result: object) -> PlannerFinish[Any]:
    assert isinstance(result, PlannerFinish)
    return cast(PlannerFinish[Any], result)


def result_with(text: dict[str, Any], *, tokens: tuple[int, int], cost: float | None = None) -> Any:
    return LLMResult(json.dumps(text), usage=Usage(*tokens), cost_usd=cost)


async def test_max_iters_is_no_path() -> None:
    llm = ScriptedLLM([act("add", a=1, b=1), act("add", a=2, b=2)])
    planner = ReactPlanner(llm, nodes=[add], budget=PlannerBudget(max_iters=2))
    result = finished(await planner.run("q"))
    assert result.reason == "no_path" and result.exhausted == "max_iters"
    assert result.usage.llm_calls == 2
    llm.assert_exhausted()


async def test_run_budget_replaces_the_planners() -> None:
    llm = ScriptedLLM([act("add", a=1, b=1)])
    planner = ReactPlanner(llm, nodes=[add], budget=PlannerBudget(max_iters=5))
    result = finished(await planner.run("q", budget=PlannerBudget(max_iters=1)))
    assert result.exhausted == "max_iters"


async def test_max_hops_checked_before_a_batch() -> None:
    # regression: the reference counted hops after the batch ran; a batch needing more hops than
    # remain must not start at all
    CALLS.clear()
    parallel = act(
        "parallel",
        steps=[{"node": "add", "args": {"a": i, "b": i}} for i in range(3)],
    )
    llm = ScriptedLLM([act("add", a=9, b=9), parallel, answer("stopped")])
    planner = ReactPlanner(llm, nodes=[add], budget=PlannerBudget(max_hops=3))
    result = finished(await planner.run("q"))
    assert CALLS == [(9, 9)]  # none of the three branches started
    assert result.reason == "answer_complete"
    step = result.trajectory.steps[1]
    assert step.error is not None and "3 tool calls" in step.error and "2 remain" in step.error
    assert result.usage.hops == 1
    assert "remain" in json.loads(llm.calls[2].messages[-1]["content"])["error"]


async def test_no_hops_left_is_budget_exhausted() -> None:
    CALLS.clear()
    llm = ScriptedLLM([act("add", a=1, b=1), act("add", a=2, b=2)])
    planner = ReactPlanner(llm, nodes=[add], budget=PlannerBudget(max_hops=1))
    result = finished(await planner.run("q"))
    assert result.reason == "budget_exhausted" and result.exhausted == "hops"
    assert CALLS == [(1, 1)] and result.usage.hops == 1


async def test_max_tokens_checked_before_each_llm_call() -> None:
    llm = ScriptedLLM([result_with(act("add", a=1, b=1), tokens=(60, 40)), answer("never asked")])
    planner = ReactPlanner(llm, nodes=[add], budget=PlannerBudget(max_tokens=100))
    result = finished(await planner.run("q"))
    assert result.reason == "budget_exhausted" and result.exhausted == "tokens"
    assert len(llm.calls) == 1 and result.usage.total_tokens == 100


async def test_max_tokens_checked_before_a_repair_call_too() -> None:
    llm = ScriptedLLM([LLMResult("garbage", usage=Usage(90, 20)), answer("never asked")])
    planner = ReactPlanner(llm, budget=PlannerBudget(max_tokens=100))
    result = finished(await planner.run("q"))
    assert result.reason == "budget_exhausted" and result.exhausted == "tokens"
    assert len(llm.calls) == 1


async def test_max_cost_checked_before_each_llm_call() -> None:
    llm = ScriptedLLM(
        [
            result_with(act("add", a=1, b=1), tokens=(1, 1), cost=0.03),
            result_with(act("add", a=1, b=2), tokens=(1, 1), cost=0.03),
            answer("never asked"),
        ]
    )
    planner = ReactPlanner(llm, nodes=[add], budget=PlannerBudget(max_cost_usd=0.05))
    result = finished(await planner.run("q"))
    assert result.reason == "budget_exhausted" and result.exhausted == "cost"
    assert result.usage.cost_usd == pytest.approx(0.06)
    assert len(llm.calls) == 2


async def test_cost_budget_with_a_client_reporting_no_cost_is_a_usage_error() -> None:
    llm = ScriptedLLM([answer("x")])
    planner = ReactPlanner(llm, budget=PlannerBudget(max_cost_usd=1.0))
    with pytest.raises(PlannerUsageError, match="pricing="):
        await planner.run("q")


async def test_deadline_cancels_a_running_llm_call() -> None:
    async def slow(messages: list[Any], info: LLMCallInfo) -> Any:
        await anyio.sleep(30)
        return answer("late")

    planner = ReactPlanner(FunctionLLM(slow), budget=PlannerBudget(deadline_s=0.2))
    with anyio.fail_after(5):
        result = finished(await planner.run("q"))
    assert result.reason == "budget_exhausted" and result.exhausted == "deadline"


async def test_deadline_cancels_a_running_tool_call() -> None:
    # regression: the deadline was checked between steps only
    SLEEP_STATE.clear()
    llm = ScriptedLLM([act("nap", seconds=30), answer("late")])
    planner = ReactPlanner(llm, nodes=[nap], budget=PlannerBudget(deadline_s=0.3))
    with anyio.fail_after(5):
        result = finished(await planner.run("q"))
    assert result.reason == "budget_exhausted" and result.exhausted == "deadline"
    assert SLEEP_STATE == {"started": True, "cancelled": True}
    assert llm.remaining == 1


async def test_deadline_is_one_deadline_over_the_whole_run() -> None:
    SLEEP_STATE.clear()
    script = [act("nap", seconds=0.3), act("nap", seconds=0.3), act("nap", seconds=0.3)]
    llm = ScriptedLLM([*script, answer("done")])
    planner = ReactPlanner(llm, nodes=[nap], budget=PlannerBudget(deadline_s=0.75))
    with anyio.fail_after(5):
        result = finished(await planner.run("q"))
    assert result.exhausted == "deadline"
    assert len(result.trajectory.steps) == 2  # the third nap was cut short


async def test_deadline_already_passed() -> None:
    planner = ReactPlanner(ScriptedLLM([]), budget=PlannerBudget(deadline_s=0))
    result = finished(await planner.run("q"))
    assert result.exhausted == "deadline"


@pytest.mark.parametrize(
    "field", ["max_iters", "max_hops", "deadline_s", "max_tokens", "max_cost_usd"]
)
def test_negative_budget_is_a_value_error(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        PlannerBudget(**{field: -1})


def test_budget_is_frozen() -> None:
    budget = PlannerBudget()
    with pytest.raises(AttributeError):
        budget.max_iters = 3  # type: ignore[misc]


# ---------------------------------------------------------------- reflection


def critique(score: float, feedback: str = "") -> dict[str, Any]:
    return {"score": score, "passed": score >= 0.8, "feedback": feedback, "issues": ["x"]}


async def test_reflection_passing_answer_finishes() -> None:
    llm = ScriptedLLM([answer("good"), critique(0.9)])
    events: list[Any] = []
    planner = ReactPlanner(llm, reflection=ReflectionConfig(), event_callback=events.append)
    result = finished(await planner.run("q"))
    assert result.reason == "answer_complete" and result.output == "good"
    assert result.payload is not None and result.payload.requires_followup is False
    assert llm.calls[1].schema_name == "reflection_critique"
    shown = json.loads(llm.calls[1].messages[-1]["content"])
    assert shown == {"query": "q", "answer": "good"}
    critiques = [e for e in events if e.event_type == "reflection_critique"]
    assert len(critiques) == 1 and critiques[0].extra["score"] == 0.9
    assert result.usage.by_purpose == {"planner_action": 1, "reflection_critique": 1}


async def test_reflection_below_threshold_goes_back_as_an_observation() -> None:
    llm = ScriptedLLM([answer("meh"), critique(0.3, "too vague"), answer("better"), critique(0.95)])
    planner = ReactPlanner(llm, reflection=ReflectionConfig(quality_threshold=0.8))
    result = finished(await planner.run("q"))
    assert result.output == "better"
    assert result.payload is not None and result.payload.requires_followup is False
    feedback = json.loads(llm.calls[2].messages[-1]["content"])
    assert "too vague" in json.dumps(feedback)
    assert "observation" in feedback


async def test_reflection_after_max_revisions_returns_the_last_answer_for_followup() -> None:
    llm = ScriptedLLM(
        [answer("a1"), critique(0.1), answer("a2"), critique(0.2), answer("a3"), critique(0.3)]
    )
    config = ReflectionConfig(max_revisions=2)
    result = finished(await ReactPlanner(llm, reflection=config).run("q"))
    assert result.reason == "answer_complete" and result.output == "a3"
    assert result.payload is not None and result.payload.requires_followup is True
    llm.assert_exhausted()


async def test_reflection_with_its_own_critic() -> None:
    critic = ScriptedLLM([critique(1.0)])
    llm = ScriptedLLM([answer("x")])
    result = finished(await ReactPlanner(llm, reflection=ReflectionConfig(llm=critic)).run("q"))
    assert result.output == "x"
    critic.assert_exhausted()


# ---------------------------------------------------------------- compaction


async def test_compaction_summarises_older_steps() -> None:
    def fn(messages: list[Any], info: LLMCallInfo) -> Any:
        if info.schema_name == "trajectory_summary":
            return {"summary": "added 0..2"}
        steps = sum(1 for m in messages if m["role"] == "assistant")
        if info.call_index >= 7:
            return answer("done")
        return act("add", a=steps, b=info.call_index)

    llm = FunctionLLM(fn)
    events: list[Any] = []
    planner = ReactPlanner(
        llm,
        nodes=[add],
        compaction=CompactionConfig(max_prompt_tokens=1, keep_last_steps=2),
        budget=PlannerBudget(max_iters=20),
        event_callback=events.append,
    )
    result = finished(await planner.run("q"))
    assert result.reason == "answer_complete"
    summaries = [c for c in llm.calls if c.schema_name == "trajectory_summary"]
    assert summaries
    compactions = [e for e in events if e.event_type == "compaction"]
    assert len(compactions) == len(summaries)
    assert result.trajectory.summary == "added 0..2"
    planning = [c for c in llm.calls if c.schema_name == "planner_action"]
    last = planning[-1].messages
    assert sum(1 for m in last if m["role"] == "assistant") <= 2
    assert any("summary_of_earlier_steps" in m["content"] for m in last)
    assert result.usage.by_purpose["trajectory_summary"] == len(summaries)
    # every step stays in the trajectory
    assert len(result.trajectory.steps) == len(planning)


# ------------------------------------------------------------------- usage


async def test_usage_reported_by_the_client() -> None:
    llm = ScriptedLLM(
        [
            result_with(act("add", a=1, b=1), tokens=(10, 3), cost=0.001),
            result_with(answer("2"), tokens=(20, 4), cost=0.002),
        ]
    )
    result = finished(await ReactPlanner(llm, nodes=[add]).run("q"))
    usage = result.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (30, 7, 37)
    assert usage.cost_usd == pytest.approx(0.003)
    assert usage.estimated is False
    assert usage.llm_calls == 2 and usage.tool_calls == 1 and usage.hops == 1
    assert usage.by_purpose == {"planner_action": 2}
    assert result.metadata["cost"] == pytest.approx(0.003)


async def test_usage_estimated_when_the_client_reports_none() -> None:
    text = json.dumps(answer("hi"))
    llm = ScriptedLLM([LLMResult(text)])
    planner = ReactPlanner(llm)
    result = finished(await planner.run("q"))
    assert result.usage.estimated is True
    assert result.usage.completion_tokens == len(text) // 4 + 1
    assert result.usage.prompt_tokens > 0
    assert result.usage.cost_usd is None


async def test_estimated_usage_counts_against_max_tokens() -> None:
    llm = ScriptedLLM([LLMResult(json.dumps(act("add", a=1, b=1))), answer("never")])
    planner = ReactPlanner(llm, nodes=[add], budget=PlannerBudget(max_tokens=10))
    result = finished(await planner.run("q"))
    assert result.exhausted == "tokens" and result.usage.estimated is True


async def test_plain_string_clients_keep_working() -> None:
    class Reference:
        async def complete(self, **kwargs: Any) -> Any:
            return (json.dumps(answer("old")), 0.5)

    result = finished(await ReactPlanner(Reference()).run("q"))
    assert result.output == "old" and result.usage.cost_usd == 0.5
    assert planner_calls(result) == 1


def planner_calls(result: PlannerFinish[Any]) -> int:
    return result.usage.by_purpose["planner_action"]


async def test_each_step_records_the_tokens_of_its_planning_calls() -> None:
    llm = ScriptedLLM(
        [
            result_with(act("add", a=1, b=1), tokens=(10, 3)),
            LLMResult("bad", usage=Usage(7, 1)),
            result_with(answer("2"), tokens=(20, 4)),
        ]
    )
    result = finished(await ReactPlanner(llm, nodes=[add]).run("q"))
    assert [s.usage for s in result.trajectory.steps] == [
        {"prompt_tokens": 10, "completion_tokens": 3},
        {"prompt_tokens": 27, "completion_tokens": 5},
    ]
    assert result.metadata["steps"][1]["usage"] == {"prompt_tokens": 27, "completion_tokens": 5}
