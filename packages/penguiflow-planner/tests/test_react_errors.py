"""ReactPlanner and LLM errors, bad input (spec §9), and the original planner's keywords."""

import json
import time
from typing import Any, cast

import anyio
import pytest
from pydantic import BaseModel

from penguiflow.core import InMemoryDurableStore, build_catalog, tool
from penguiflow.planner import (
    CompactionConfig,
    LLMError,
    LLMErrorType,
    LLMRetryPolicy,
    PlannerBudget,
    PlannerError,
    PlannerFinish,
    PlannerUsageError,
    ReactPlanner,
    ReflectionConfig,
)
from penguiflow.testkit import FunctionLLM, LLMCallInfo, ScriptedLLM, ScriptExhausted


class AddArgs(BaseModel):
    a: int
    b: int


class AddOut(BaseModel):
    total: int


@tool(desc="Add two integers.")
async def add(args: AddArgs, ctx: Any) -> AddOut:
    return AddOut(total=args.a + args.b)


def act(node: str, **args: Any) -> dict[str, Any]:
    return {"thought": "", "next_node": node, "args": args}


def answer(value: Any) -> dict[str, Any]:
    return act("final_response", answer=value)


def finished(result: object) -> PlannerFinish[Any]:
    assert isinstance(result, PlannerFinish)
    return cast(PlannerFinish[Any], result)


FAST = LLMRetryPolicy(max_retries=3, backoff_base=0.0, jitter=0.0)


def failure(error_type: LLMErrorType, **kw: Any) -> LLMError:
    return LLMError("scripted", error_type=error_type, **kw)


# ------------------------------------------------------------------ LLM errors


@pytest.mark.parametrize(
    "error_type",
    [
        LLMErrorType.RATE_LIMIT,
        LLMErrorType.SERVICE_UNAVAILABLE,
        LLMErrorType.TIMEOUT,
        LLMErrorType.CONNECTION,
    ],
)
async def test_retryable_errors_are_retried(error_type: LLMErrorType) -> None:
    llm = ScriptedLLM([failure(error_type), failure(error_type), answer("ok")])
    events: list[Any] = []
    planner = ReactPlanner(llm, llm_retry=FAST, event_callback=events.append)
    result = finished(await planner.run("q"))
    assert result.output == "ok"
    retries = [e for e in events if e.event_type == "llm_retry"]
    assert [e.extra["retry"] for e in retries] == [1, 2]
    assert all(error_type.value in (e.error or "") for e in retries)
    calls = [e for e in events if e.event_type == "llm_call"]
    assert [e.extra["attempt"] for e in calls] == [0, 1, 2]
    assert result.usage.llm_calls == 1  # only the answered attempt is accounted


async def test_foreign_exceptions_are_classified_and_retried() -> None:
    llm = ScriptedLLM([TimeoutError("slow"), answer("ok")])
    result = finished(await ReactPlanner(llm, llm_retry=FAST).run("q"))
    assert result.output == "ok"


async def test_retries_run_out_then_llm_error() -> None:
    errors = [failure(LLMErrorType.RATE_LIMIT) for _ in range(3)]
    llm = ScriptedLLM(errors)
    policy = LLMRetryPolicy(max_retries=2, backoff_base=0.0, jitter=0.0)
    with pytest.raises(LLMError) as caught:
        await ReactPlanner(llm, llm_retry=policy).run("q")
    assert caught.value.error_type is LLMErrorType.RATE_LIMIT
    llm.assert_exhausted()


async def test_retry_never_waits_past_the_deadline() -> None:
    llm = ScriptedLLM([failure(LLMErrorType.RATE_LIMIT, retry_after_s=30.0), answer("late")])
    events: list[Any] = []
    planner = ReactPlanner(llm, budget=PlannerBudget(deadline_s=2.0), event_callback=events.append)
    started = time.monotonic()
    with anyio.fail_after(5), pytest.raises(LLMError):
        await planner.run("q")
    assert time.monotonic() - started < 1.0
    assert not [e for e in events if e.event_type == "llm_retry"]
    assert llm.remaining == 1


@pytest.mark.parametrize(
    "error_type",
    [LLMErrorType.AUTHENTICATION, LLMErrorType.BAD_REQUEST_OTHER, LLMErrorType.UNKNOWN],
)
async def test_other_errors_raise_llm_error_from_run(error_type: LLMErrorType) -> None:
    error = failure(error_type, status_code=401)
    llm = ScriptedLLM([error, answer("never")])
    with pytest.raises(LLMError) as caught:
        await ReactPlanner(llm, llm_retry=FAST).run("q")
    assert caught.value is error  # not wrapped in an ExceptionGroup
    assert llm.remaining == 1


async def test_a_foreign_exception_becomes_an_llm_error_with_its_cause() -> None:
    cause = RuntimeError("boom")
    llm = ScriptedLLM([cause])
    with pytest.raises(LLMError) as caught:
        await ReactPlanner(llm, llm_retry=FAST).run("q")
    assert caught.value.__cause__ is cause
    assert caught.value.error_type is LLMErrorType.UNKNOWN


async def test_an_assertion_error_from_a_test_double_propagates_unchanged() -> None:
    llm = ScriptedLLM([act("add", a=1, b=1)])
    with pytest.raises(ScriptExhausted):
        await ReactPlanner(llm, nodes=[add]).run("q")

    mine = AssertionError("from the double")

    def fn(messages: list[Any], info: LLMCallInfo) -> Any:
        raise mine

    with pytest.raises(AssertionError) as caught:
        await ReactPlanner(FunctionLLM(fn)).run("q")
    assert caught.value is mine


async def test_context_length_exceeded_compacts_once_and_retries() -> None:
    steps = [act("add", a=i, b=i) for i in range(6)]
    too_long = failure(LLMErrorType.CONTEXT_LENGTH_EXCEEDED)
    llm = ScriptedLLM([*steps, too_long, {"summary": "six additions"}, answer("done")])
    events: list[Any] = []
    planner = ReactPlanner(
        llm,
        nodes=[add],
        budget=PlannerBudget(max_iters=10),
        compaction=CompactionConfig(max_prompt_tokens=1_000_000, keep_last_steps=2),
        event_callback=events.append,
    )
    result = finished(await planner.run("q"))
    assert result.reason == "answer_complete"
    assert llm.calls[7].schema_name == "trajectory_summary"
    retried = llm.calls[8]
    assert retried.schema_name == "planner_action"
    assert sum(1 for m in retried.messages if m["role"] == "assistant") == 2
    assert "six additions" in json.dumps(retried.messages)
    assert [e.extra["forced"] for e in events if e.event_type == "compaction"] == [True]
    assert not [e for e in events if e.event_type == "llm_retry"]


async def test_context_length_exceeded_twice_raises() -> None:
    steps = [act("add", a=i, b=i) for i in range(6)]
    too_long = failure(LLMErrorType.CONTEXT_LENGTH_EXCEEDED)
    llm = ScriptedLLM([*steps, too_long, {"summary": "s"}, too_long])
    planner = ReactPlanner(llm, nodes=[add], budget=PlannerBudget(max_iters=10))
    with pytest.raises(LLMError) as caught:
        await planner.run("q")
    assert caught.value.error_type is LLMErrorType.CONTEXT_LENGTH_EXCEEDED
    llm.assert_exhausted()


async def test_context_length_exceeded_with_nothing_to_compact_raises() -> None:
    llm = ScriptedLLM([failure(LLMErrorType.CONTEXT_LENGTH_EXCEEDED)])
    with pytest.raises(LLMError):
        await ReactPlanner(llm).run("q")


async def test_context_length_in_a_critique_is_not_answered_with_planning_messages() -> None:
    steps = [act("add", a=i, b=i) for i in range(6)]
    too_long = failure(LLMErrorType.CONTEXT_LENGTH_EXCEEDED)
    llm = ScriptedLLM([*steps, answer("x"), too_long])
    planner = ReactPlanner(
        llm, nodes=[add], budget=PlannerBudget(max_iters=10), reflection=ReflectionConfig()
    )
    with pytest.raises(LLMError):
        await planner.run("q")
    llm.assert_exhausted()


# ------------------------------------------------------------------ bad input (§9)


def test_catalog_and_nodes_both() -> None:
    with pytest.raises(PlannerUsageError, match="not both"):
        ReactPlanner(ScriptedLLM([]), catalog=build_catalog([add]), nodes=[add])


def test_max_parallel_above_the_absolute_maximum() -> None:
    with pytest.raises(PlannerUsageError, match="absolute_max_parallel"):
        ReactPlanner(ScriptedLLM([]), max_parallel=60, absolute_max_parallel=50)


async def test_non_serialisable_llm_context_names_the_key() -> None:
    llm = ScriptedLLM([answer("never")])
    planner = ReactPlanner(llm)
    with pytest.raises(PlannerUsageError, match="'client'") as caught:
        await planner.run("q", llm_context={"ok": 1, "client": object()})
    assert "tool_context" in str(caught.value)
    assert llm.calls == []


def test_output_type_neither_str_nor_a_model() -> None:
    with pytest.raises(PlannerUsageError, match="output_type"):
        ReactPlanner(ScriptedLLM([]), output_type=dict)
    with pytest.raises(PlannerUsageError, match="output_type"):
        ReactPlanner(ScriptedLLM([]), output_type=int)


def test_llm_client_without_complete() -> None:
    with pytest.raises(TypeError, match="complete"):
        ReactPlanner(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="complete"):
        ReactPlanner()


def test_usage_errors_are_planner_errors_and_value_errors() -> None:
    with pytest.raises(PlannerError):
        ReactPlanner(ScriptedLLM([]), max_parallel=0)
    assert issubclass(PlannerUsageError, ValueError)


# ------------------------------------------------------------------ migration


def test_llm_client_as_a_keyword() -> None:
    llm = ScriptedLLM([])
    assert ReactPlanner(llm_client=llm).llm_client is llm


def test_old_budget_keywords_map_onto_the_budget() -> None:
    planner = ReactPlanner(ScriptedLLM([]), max_iters=3, hop_budget=5, deadline_s=9.5)
    assert planner.budget == PlannerBudget(max_iters=3, max_hops=5, deadline_s=9.5)
    assert ReactPlanner(ScriptedLLM([]), max_iters=2).budget == PlannerBudget(max_iters=2)


def test_token_budget_maps_onto_compaction() -> None:
    planner = ReactPlanner(ScriptedLLM([]), token_budget=500)
    assert planner.compaction == CompactionConfig(max_prompt_tokens=500)
    assert planner.budget == PlannerBudget()


def test_renamed_keywords() -> None:
    store = InMemoryDurableStore()
    reflection = ReflectionConfig(max_revisions=1)
    memory = object()
    planner = ReactPlanner(
        ScriptedLLM([]), state_store=store, reflection_config=reflection, short_term_memory=memory
    )
    assert planner.store is store
    assert planner.reflection is reflection
    assert planner.memory is memory


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ({"max_iters": 3}, {"budget": PlannerBudget()}),
        ({"hop_budget": 3}, {"budget": PlannerBudget()}),
        ({"deadline_s": 3.0}, {"budget": PlannerBudget()}),
        ({"token_budget": 300}, {"compaction": CompactionConfig(max_prompt_tokens=5)}),
        ({"state_store": InMemoryDurableStore()}, {"store": InMemoryDurableStore()}),
        ({"reflection_config": ReflectionConfig()}, {"reflection": ReflectionConfig()}),
        ({"short_term_memory": object()}, {"memory": object()}),
    ],
)
def test_old_and_new_forms_together_are_a_usage_error(
    old: dict[str, Any], new: dict[str, Any]
) -> None:
    with pytest.raises(PlannerUsageError, match="not both"):
        ReactPlanner(ScriptedLLM([]), **old, **new)


def test_unknown_keywords_are_a_type_error() -> None:
    with pytest.raises(TypeError, match="max_iterations"):
        ReactPlanner(ScriptedLLM([]), max_iterations=3)


async def test_old_keywords_take_effect_in_a_run() -> None:
    llm = ScriptedLLM([act("add", a=1, b=1), act("add", a=1, b=1)])
    planner = ReactPlanner(llm, nodes=[add], max_iters=2)
    result = finished(await planner.run("q"))
    assert result.exhausted == "max_iters"


async def test_an_llm_call_over_llm_timeout_s_is_a_retried_timeout() -> None:
    async def fn(messages: list[Any], info: LLMCallInfo) -> Any:
        if info.call_index == 0:
            await anyio.sleep(30)
        return answer("second try")

    events: list[Any] = []
    planner = ReactPlanner(
        FunctionLLM(fn), llm_timeout_s=0.05, llm_retry=FAST, event_callback=events.append
    )
    with anyio.fail_after(5):
        result = finished(await planner.run("q"))
    assert result.output == "second try"
    retries = [e for e in events if e.event_type == "llm_retry"]
    assert len(retries) == 1 and "timeout" in (retries[0].error or "")


@pytest.mark.parametrize(
    "options",
    [
        {"llm_timeout_s": 0},
        {"pause_ttl_s": -1},
        {"repair_attempts": -1},
        {"max_consecutive_arg_failures": 0},
        {"observation_max_chars": 0},
    ],
)
def test_other_bad_numbers_are_usage_errors(options: dict[str, Any]) -> None:
    with pytest.raises(PlannerUsageError, match=next(iter(options))):
        ReactPlanner(ScriptedLLM([]), **options)


async def test_llm_error_with_a_steering_inbox_is_not_wrapped_in_a_group() -> None:
    from penguiflow.planner import SteeringInbox

    error = failure(LLMErrorType.AUTHENTICATION)
    with pytest.raises(LLMError) as caught:
        await ReactPlanner(ScriptedLLM([error])).run("q", steering=SteeringInbox())
    assert caught.value is error
