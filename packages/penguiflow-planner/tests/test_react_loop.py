"""ReactPlanner's step loop: actions, prompts, repair, dispatch errors, answers, concurrency."""

import json
from typing import Any, cast

import anyio
import pytest
from pydantic import BaseModel, field_validator

from penguiflow.core import build_catalog, tool
from penguiflow.planner import (
    FinalPayload,
    OpenAIJSONClient,
    PlannerFinish,
    ReactPlanner,
    ToolPolicy,
    Trajectory,
)
from penguiflow.testkit import FunctionLLM, LLMCallInfo, ProviderServer, ScriptedLLM


class AddArgs(BaseModel):
    a: int
    b: int


class AddOut(BaseModel):
    total: int


class EchoArgs(BaseModel):
    text: str

    @field_validator("text")
    @classmethod
    def not_shouting(cls, value: str) -> str:
        if value.isupper():
            raise ValueError("no shouting")  # a plain ValueError (#101)
        return value


class EchoOut(BaseModel):
    text: str


CALLS: list[tuple[int, int]] = []


@tool(desc="Add two integers.", tags=("math",))
async def add(args: AddArgs, ctx: Any) -> AddOut:
    CALLS.append((args.a, args.b))
    return AddOut(total=args.a + args.b)


@tool(desc="Echo a text.", tags=("text",))
async def echo(args: EchoArgs, ctx: Any) -> EchoOut:
    return EchoOut(text=args.text)


def act(node: str, thought: str = "", **args: Any) -> dict[str, Any]:
    return {"thought": thought, "next_node": node, "args": args}


def answer(value: Any, **extra: Any) -> dict[str, Any]:
    return act("final_response", answer=value, **extra)


def finished(result: object) -> PlannerFinish[Any]:
    assert isinstance(result, PlannerFinish)
    return cast(PlannerFinish[Any], result)


def last_user(llm: ScriptedLLM, call: int) -> Any:
    return json.loads(llm.calls[call].messages[-1]["content"])


async def test_one_tool_call_then_answer() -> None:
    CALLS.clear()
    llm = ScriptedLLM([act("add", "sum them", a=2, b=3), answer("5")])
    planner = ReactPlanner(llm, nodes=[add])
    result = finished(await planner.run("what is 2+3?"))
    assert result.reason == "answer_complete"
    assert result.output == "5"
    assert CALLS == [(2, 3)]
    assert last_user(llm, 1) == {"observation": {"total": 5}}
    steps = result.trajectory.steps
    assert [s.action["next_node"] for s in steps] == ["add", "final_response"]
    assert steps[0].observation == {"total": 5} and steps[0].error is None
    assert result.usage.llm_calls == 2 and result.usage.tool_calls == 1
    assert result.usage.hops == 1
    assert result.metadata["step_count"] == 2
    llm.assert_exhausted()


async def test_prompts_are_deterministic() -> None:
    def script() -> ScriptedLLM:
        return ScriptedLLM([act("add", a=1, b=2), answer("3")])

    first, second = script(), script()
    for llm in (first, second):
        planner = ReactPlanner(llm, nodes=[add, echo], system_prompt_extra="Be brief.")
        finished(await planner.run("1+2?", llm_context={"user": "ann", "n": [1, 2]}))
    assert [c.messages for c in first.calls] == [c.messages for c in second.calls]
    assert [c.response_format for c in first.calls] == [c.response_format for c in second.calls]
    text = json.dumps([c.messages for c in first.calls])
    system = first.calls[0].messages[0]
    assert system["role"] == "system" and "Be brief." in system["content"]
    assert '"user": "ann"' in first.calls[0].messages[1]["content"]
    # no run ids, trace ids or clocks in what the model sees
    planner = ReactPlanner(ScriptedLLM([answer("x")]), nodes=[add])
    result = finished(await planner.run("q"))
    assert result.run_id not in text and result.trace_id not in text


async def test_action_schema() -> None:
    llm = ScriptedLLM([answer("ok")])
    planner = ReactPlanner(llm, nodes=[add, echo])
    finished(await planner.run("q"))
    fmt = llm.calls[0].response_format
    assert fmt is not None and fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "planner_action"
    schema = fmt["json_schema"]["schema"]
    assert list(schema["properties"])[0] == "thought"
    assert schema["required"][0] == "thought"
    assert schema["properties"]["next_node"]["enum"] == [
        "add",
        "echo",
        "parallel",
        "final_response",
    ]


async def test_answer_only_planner_schema_has_final_response_only() -> None:
    llm = ScriptedLLM([answer("ok")])
    finished(await ReactPlanner(llm).run("q"))
    fmt = llm.calls[0].response_format
    assert fmt is not None
    assert fmt["json_schema"]["schema"]["properties"]["next_node"]["enum"] == ["final_response"]


@pytest.mark.parametrize(
    "reply",
    [
        '```json\n{"next_node": "final_response", "args": {"answer": "fenced"}}\n```',
        '```\n{"next_node": "final_response", "args": {"answer": "fenced"}}\n```',
        'Sure:\n{"next_node": "final_response", "args": {"answer": "fenced"}}',
    ],
)
async def test_code_fenced_replies_are_parsed(reply: str) -> None:
    result = finished(await ReactPlanner(ScriptedLLM([reply])).run("q"))
    assert result.reason == "answer_complete" and result.output == "fenced"


async def test_invalid_json_is_repaired_with_the_error_not_counted_as_an_iteration() -> None:
    from penguiflow.planner import PlannerBudget

    llm = ScriptedLLM(["not json at all", {"next_node": 3}, answer("fixed")])
    events: list[Any] = []
    planner = ReactPlanner(llm, budget=PlannerBudget(max_iters=1), event_callback=events.append)
    result = finished(await planner.run("q"))
    assert result.reason == "answer_complete" and result.output == "fixed"
    first = last_user(llm, 1)
    assert "not JSON" in first["error"]
    second = last_user(llm, 2)
    assert "planner action" in second["error"] and "next_node" in second["error"]
    # the bad reply is shown back to the model before the repair prompt
    assert llm.calls[1].messages[-2] == {"role": "assistant", "content": "not json at all"}
    repairs = [e for e in events if e.event_type == "repair_attempt"]
    assert [e.extra["attempt"] for e in repairs] == [1, 2]
    assert all(e.error for e in repairs)


async def test_last_failing_repair_is_no_path() -> None:
    llm = ScriptedLLM(["nope", "nope", "[1, 2]"])
    planner = ReactPlanner(llm, repair_attempts=2)
    result = finished(await planner.run("q"))
    assert result.reason == "no_path"
    assert result.error is not None and "JSON object" in result.error
    assert result.output is None
    llm.assert_exhausted()


async def test_unknown_tool_is_an_error_observation_listing_the_visible_tools() -> None:
    llm = ScriptedLLM([act("multiply", a=1, b=2), answer("gave up")])
    planner = ReactPlanner(llm, nodes=[add, echo])
    result = finished(await planner.run("q"))
    assert result.reason == "answer_complete"
    error = last_user(llm, 1)["error"]
    assert "multiply" in error and "add" in error and "echo" in error
    step = result.trajectory.steps[0]
    assert step.error is not None and "multiply" in step.error and "['add', 'echo']" in step.error


async def test_invalid_args_give_json_safe_errors_even_for_plain_value_errors() -> None:
    # regression for #101: a validator raising a plain ValueError crashed rendering
    llm = ScriptedLLM([act("echo", text="LOUD"), act("add", a="x", b=1), answer("done")])
    planner = ReactPlanner(llm, nodes=[add, echo])
    result = finished(await planner.run("q"))
    assert result.reason == "answer_complete"
    first = result.trajectory.steps[0]
    assert first.failure is not None
    errors = first.failure["validation_errors"]
    assert errors[0]["loc"] == ["text"] and "no shouting" in errors[0]["msg"]
    assert "url" not in errors[0] and "ctx" not in errors[0]
    json.dumps(first.failure)  # JSON-safe
    shown = last_user(llm, 1)
    assert "echo" in shown["error"]
    assert last_user(llm, 2)["error"]
    assert result.trajectory.steps[1].failure is not None
    assert result.trajectory.steps[1].failure["validation_errors"][0]["loc"] == ["a"]


async def test_consecutive_arg_failures_end_the_run() -> None:
    llm = ScriptedLLM([act("add", a="x", b=1), act("add", b=1), act("add", a=[], b=1)])
    planner = ReactPlanner(llm, nodes=[add], max_consecutive_arg_failures=3)
    result = finished(await planner.run("q"))
    assert result.reason == "no_path"
    assert result.error is not None and "3" in result.error
    llm.assert_exhausted()


async def test_a_valid_call_resets_the_arg_failure_count() -> None:
    llm = ScriptedLLM([act("add", a="x", b=1), act("add", a=1, b=1), act("add", b=1), answer("ok")])
    planner = ReactPlanner(llm, nodes=[add], max_consecutive_arg_failures=2)
    result = finished(await planner.run("q"))
    assert result.reason == "answer_complete"


class Report(BaseModel):
    title: str
    score: int


async def test_final_response_validated_into_a_model() -> None:
    llm = ScriptedLLM([answer({"title": "t", "score": 3})])
    planner = ReactPlanner(llm, output_type=Report)
    result = finished(await planner.run("q"))
    assert result.output == Report(title="t", score=3)
    assert result.payload is not None and result.payload.raw_answer == {"title": "t", "score": 3}
    answer_schema = llm.calls[0].messages[0]["content"]
    assert '"score"' in answer_schema


async def test_final_response_as_json_text_into_a_model() -> None:
    llm = ScriptedLLM([answer('{"title": "t", "score": 3}')])
    result = finished(await ReactPlanner(llm, output_type=Report).run("q"))
    assert result.output == Report(title="t", score=3)


async def test_invalid_answer_is_repaired_with_the_errors_then_no_path() -> None:
    llm = ScriptedLLM([answer({"title": "t"}), answer({"title": "t", "score": 1})])
    result = finished(await ReactPlanner(llm, output_type=Report).run("q"))
    assert result.reason == "answer_complete" and result.output == Report(title="t", score=1)
    error = last_user(llm, 1)["error"]
    assert "output schema" in error and "score" in error

    llm = ScriptedLLM([answer(1), answer(2)])
    result = finished(await ReactPlanner(llm, repair_attempts=1).run("q"))
    assert result.reason == "no_path" and result.output is None
    assert "string" in last_user(llm, 1)["error"]


async def test_final_response_without_answer_is_repaired() -> None:
    llm = ScriptedLLM([act("final_response", text="hi"), answer("hi")])
    result = finished(await ReactPlanner(llm).run("q"))
    assert result.output == "hi"
    assert "answer" in last_user(llm, 1)["error"]


async def test_final_payload_fields() -> None:
    llm = ScriptedLLM(
        [
            answer(
                "Paris",
                sources=["wiki"],
                confidence=0.9,
                suggested_actions=["visit"],
                warnings=["old data"],
                language="en",
                mood="sunny",
            )
        ]
    )
    result = finished(await ReactPlanner(llm).run("capital?"))
    assert result.payload == FinalPayload(
        raw_answer="Paris",
        sources=("wiki",),
        confidence=0.9,
        suggested_actions=("visit",),
        requires_followup=False,
        warnings=("old data",),
        language="en",
        extra={"mood": "sunny"},
    )
    assert result.trajectory.steps[-1].action["next_node"] == "final_response"


async def test_tool_policy_filters_what_the_llm_sees_and_may_call() -> None:
    CALLS.clear()
    llm = ScriptedLLM([act("add", a=1, b=1), answer("no")])
    planner = ReactPlanner(
        llm, nodes=[add, echo], tool_policy=ToolPolicy(denied_tools=frozenset({"add"}))
    )
    result = finished(await planner.run("q"))
    fmt = llm.calls[0].response_format
    assert fmt is not None
    assert fmt["json_schema"]["schema"]["properties"]["next_node"]["enum"] == [
        "echo",
        "parallel",
        "final_response",
    ]
    assert '"name": "add"' not in llm.calls[0].messages[0]["content"]
    assert CALLS == []
    assert result.trajectory.steps[0].error is not None
    assert "'add'" in result.trajectory.steps[0].error

    tagged = ReactPlanner(
        ScriptedLLM([]), nodes=[add, echo], tool_policy=ToolPolicy(require_tags=frozenset({"math"}))
    )
    assert sorted(tagged.visible_tools) == ["add"]
    only_echo = ToolPolicy(allowed_tools=frozenset({"echo"}))
    allowed = ReactPlanner(ScriptedLLM([]), nodes=[add, echo], tool_policy=only_echo)
    assert sorted(allowed.visible_tools) == ["echo"]


async def test_catalog_keyword() -> None:
    llm = ScriptedLLM([act("add", a=4, b=4), answer("8")])
    planner = ReactPlanner(llm, catalog=build_catalog([add]))
    result = finished(await planner.run("q"))
    assert result.trajectory.steps[0].observation == {"total": 8}


async def test_observations_are_clamped_in_the_prompt_but_whole_in_the_trajectory() -> None:
    long = "y" * 500
    llm = ScriptedLLM([act("echo", text=long), answer("ok")])
    planner = ReactPlanner(llm, nodes=[echo], observation_max_chars=100)
    result = finished(await planner.run("q"))
    shown = llm.calls[1].messages[-1]["content"]
    assert len(shown) < 200 and "truncated" in shown
    assert result.trajectory.steps[0].observation == {"text": long}


async def test_trajectory_json_round_trip() -> None:
    llm = ScriptedLLM([act("add", a=1, b=2), act("nope"), answer("3")])
    result = finished(await ReactPlanner(llm, nodes=[add]).run("q", llm_context={"k": "v"}))
    trajectory = result.trajectory
    trajectory.metadata["note"] = "kept"
    text = trajectory.to_json()
    again = Trajectory.from_json(text)
    assert again == trajectory
    assert again.to_json() == text
    assert Trajectory.from_json(json.loads(text)) == trajectory
    assert again.llm_context == {"k": "v"} and len(again.steps) == 3


async def test_two_hundred_concurrent_runs_never_mix() -> None:
    def fn(messages: list[Any], info: LLMCallInfo) -> dict[str, Any]:
        query = json.loads(messages[1]["content"])["query"]
        n = int(query.split()[-1])
        last = json.loads(messages[-1]["content"])
        if "observation" in last:
            return answer(f"{query}={last['observation']['total']}")
        return act("add", a=n, b=n)

    llm = FunctionLLM(fn)
    planner = ReactPlanner(llm, nodes=[add])
    results: dict[int, Any] = {}

    async def one(n: int) -> None:
        results[n] = await planner.run(f"double {n}")

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for n in range(200):
                tg.start_soon(one, n)
    assert len(results) == 200
    for n, result in results.items():
        done = finished(result)
        assert done.reason == "answer_complete"
        assert done.output == f"double {n}={2 * n}"
        assert done.trajectory.query == f"double {n}"
    assert len({finished(r).run_id for r in results.values()}) == 200
    assert planner.statistics().active_runs == 0
    assert len(llm.calls) == 400


async def test_native_openai_client_end_to_end() -> None:
    async with ProviderServer() as server:
        server.reply(json.dumps(act("add", "add them", a=20, b=22)), usage=(30, 10))
        server.reply(json.dumps(answer("42")), usage=(50, 5))
        async with OpenAIJSONClient(
            "gpt-test", base_url=server.openai_base_url, api_key="x"
        ) as client:
            planner = ReactPlanner(client, nodes=[add])
            with anyio.fail_after(20):
                result = finished(await planner.run("20+22?"))
    assert result.reason == "answer_complete" and result.output == "42"
    assert result.trajectory.steps[0].observation == {"total": 42}
    assert result.usage.prompt_tokens == 80 and result.usage.completion_tokens == 15
    assert result.usage.estimated is False
    assert len(server.requests) == 2
    body = server.requests[0].json
    assert body["response_format"]["json_schema"]["name"] == "planner_action"
    assert body["messages"][0]["role"] == "system"
    assert "total" in server.requests[1].json["messages"][-1]["content"]
