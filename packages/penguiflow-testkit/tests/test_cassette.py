"""Cassette: record LLM and tool calls, save, load, replay them without the model or the tools."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from penguiflow.core import NodeSpec, build_catalog, tool
from penguiflow.planner import JSONLLMClient, LLMMessage, LLMResult, Usage
from penguiflow.testkit import (
    Cassette,
    FlowTestError,
    FunctionLLM,
    LLMCallInfo,
    ReplayMismatch,
    ScriptedLLM,
)

PLANNER_ACTION: dict[str, Any] = {
    "type": "json_schema",
    "json_schema": {"name": "planner_action", "schema": {"type": "object"}, "strict": True},
}


def ask(question: str) -> list[LLMMessage]:
    return [{"role": "system", "content": "you plan"}, {"role": "user", "content": question}]


class AddArgs(BaseModel):
    a: int
    b: int


class AddOut(BaseModel):
    total: int


class DivideArgs(BaseModel):
    a: float
    b: float


class DivideOut(BaseModel):
    quotient: float


class Tools:
    """Real tools that count how often they ran."""

    def __init__(self) -> None:
        self.calls: list[str] = []

        @tool(desc="Add two integers.")
        async def add(args: AddArgs, ctx: Any) -> AddOut:
            self.calls.append("add")
            return AddOut(total=args.a + args.b)

        @tool(desc="Divide a by b.")
        async def divide(args: DivideArgs, ctx: Any) -> DivideOut:
            self.calls.append("divide")
            return DivideOut(quotient=args.a / args.b)

        self.specs: list[NodeSpec] = build_catalog([add, divide])


NO_CONTEXT: Any = None
"""Tools here ignore their context."""


async def complete(llm: JSONLLMClient, messages: list[LLMMessage], **options: Any) -> LLMResult:
    with anyio.fail_after(5):
        return LLMResult.coerce(await llm.complete(messages=messages, **options))


async def call(spec: NodeSpec, args: dict[str, Any]) -> Any:
    with anyio.fail_after(5):
        return await spec.node.func(spec.args_model.model_validate(args), NO_CONTEXT)


# ---------------------------------------------------------------- record, save, load, replay


async def test_a_saved_recording_replays_identically_without_the_model_or_the_tools(
    tmp_path: Path,
) -> None:
    path = tmp_path / "run.json"
    tools = Tools()
    given = LLMResult("first", usage=Usage(3, 4, 1), cost_usd=0.25, model="m", finish_reason="stop")
    llm = ScriptedLLM([given, {"next_node": "add"}])
    cassette = Cassette(path)
    recording, specs = cassette.record_llm(llm), cassette.record_tools(tools.specs)
    first = await complete(recording, ask("one"), response_format=PLANNER_ACTION)
    second = await complete(recording, ask("two"))
    added = await call(specs[0], {"a": 2, "b": 3})
    assert (first, added, tools.calls) == (given, AddOut(total=5), ["add"])
    cassette.save()

    replay = Cassette.load(path)
    assert (replay.recorded_llm_calls, replay.recorded_tool_calls) == (2, 1)
    replay_llm, replay_specs = replay.replay_llm(), replay.replay_tools(tools.specs)
    again = await complete(replay_llm, ask("two"))
    assert (again.text, again.usage, again.cost_usd) == (second.text, second.usage, None)
    assert await complete(replay_llm, ask("one"), response_format=PLANNER_ACTION) == given
    replayed = await call(replay_specs[0], {"a": 2, "b": 3})
    assert isinstance(replayed, AddOut) and replayed == added
    assert tools.calls == ["add"]  # the replay ran no tool
    assert len(llm.calls) == 2  # ... and asked no model
    assert [s.name for s in replay_specs] == ["add", "divide"]
    assert replay_specs[0].args_schema == tools.specs[0].args_schema


async def test_a_recorded_tool_error_replays_with_its_type_name_and_message(
    tmp_path: Path,
) -> None:
    tools = Tools()
    cassette = Cassette(tmp_path / "errors.json")
    divide = cassette.record_tools(tools.specs)[1]
    with pytest.raises(ZeroDivisionError) as recorded:
        await call(divide, {"a": 1, "b": 0})
    cassette.save()

    replayed_divide = Cassette.load(cassette.path).replay_tools(tools.specs)[1]
    with pytest.raises(RuntimeError) as replayed:
        await call(replayed_divide, {"a": 1, "b": 0})
    assert type(replayed.value).__name__ == "ZeroDivisionError"
    assert type(replayed.value).__module__ == "builtins"
    assert str(replayed.value) == str(recorded.value)
    assert tools.calls == ["divide"]


async def test_repeated_identical_calls_replay_in_order_and_then_the_last_repeats(
    tmp_path: Path,
) -> None:
    cassette = Cassette(tmp_path / "repeat.json")
    recording = cassette.record_llm(ScriptedLLM(["a", "b"]))
    assert [(await complete(recording, ask("same"))).text for _ in range(2)] == ["a", "b"]
    cassette.save()

    replay = Cassette.load(cassette.path)
    llm = replay.replay_llm()
    texts = [(await complete(llm, ask("same"))).text for _ in range(3)]
    assert texts == ["a", "b", "b"]
    fresh = replay.replay_llm()  # each replaying client starts from the first answer
    assert (await complete(fresh, ask("same"))).text == "a"


async def test_concurrent_runs_replay_whatever_order_they_come_in(tmp_path: Path) -> None:
    questions = [f"question {i}" for i in range(20)]

    async def answer(messages: list[LLMMessage], info: LLMCallInfo) -> str:
        await anyio.sleep(0.001 * (info.call_index % 4))
        return f"answer to {messages[-1]['content']}"

    cassette = Cassette(tmp_path / "concurrent.json")
    recording = cassette.record_llm(FunctionLLM(answer))
    got: dict[str, str] = {}

    async def one(llm: JSONLLMClient, question: str, delay: float) -> None:
        await anyio.sleep(delay)
        got[question] = (await complete(llm, ask(question))).text

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for i, question in enumerate(questions):
                tg.start_soon(one, recording, question, 0.0005 * (i % 3))
    recorded = dict(got)
    cassette.save()

    got.clear()
    llm = Cassette.load(cassette.path).replay_llm()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for i, question in enumerate(reversed(questions)):
                tg.start_soon(one, llm, question, 0.0005 * (i % 5))
    assert got == recorded
    assert got["question 7"] == "answer to question 7"


# ---------------------------------------------------------------- mismatches


async def test_an_unrecorded_llm_call_names_the_nearest_recorded_one(tmp_path: Path) -> None:
    cassette = Cassette(tmp_path / "llm.json")
    recording = cassette.record_llm(ScriptedLLM(["42", "Paris"]))
    await complete(recording, ask("what is 6 x 7?"))
    await complete(recording, ask("what is the capital of France?"))

    with pytest.raises(ReplayMismatch) as caught:
        await complete(cassette.replay_llm(), ask("what is 6 x 8?"))
    error = caught.value
    assert isinstance(error, AssertionError) and isinstance(error, FlowTestError)
    assert error.kind == "llm"
    assert error.nearest == {"messages": ask("what is 6 x 7?"), "response_format": None}
    assert error.request["messages"][-1]["content"] == "what is 6 x 8?"
    text = str(error)
    assert "no recording of this LLM call (2 distinct recorded)" in text
    assert "ending [user] 'what is 6 x 7?'" in text
    assert "-  what is 6 x 7?" in text and "+  what is 6 x 8?" in text
    assert "capital" not in text


async def test_an_unrecorded_tool_call_names_the_nearest_recorded_one(tmp_path: Path) -> None:
    tools = Tools()
    cassette = Cassette(tmp_path / "tools.json")
    add = cassette.record_tools(tools.specs)[0]
    await call(add, {"a": 2, "b": 3})
    await call(add, {"a": 100, "b": 900})

    with pytest.raises(ReplayMismatch) as caught:
        await call(cassette.replay_tools(tools.specs)[0], {"a": 2, "b": 4})
    error = caught.value
    assert (error.kind, error.nearest) == ("tool", {"tool": "add", "args": {"a": 2, "b": 3}})
    text = str(error)
    assert "no recording of this call of tool 'add'" in text
    assert '-  "b": 3' in text and '+  "b": 4' in text


async def test_a_cassette_without_recordings_says_so(tmp_path: Path) -> None:
    with pytest.raises(ReplayMismatch) as caught:
        await complete(Cassette(tmp_path / "empty.json").replay_llm(), ask("hi"))
    assert caught.value.nearest is None
    assert "it holds no LLM calls at all" in str(caught.value)


# ---------------------------------------------------------------- streaming


class Chunks:
    def __init__(self) -> None:
        self.got: list[tuple[str, bool]] = []

    def __call__(self, delta: str, done: bool) -> None:
        self.got.append((delta, done))


async def test_a_streamed_answer_is_recorded_whole_and_replayed_as_chunks(tmp_path: Path) -> None:
    cassette = Cassette(tmp_path / "stream.json")
    live = Chunks()
    recording = cassette.record_llm(ScriptedLLM(["the whole answer"], chunk_size=5))
    await complete(recording, ask("stream it"), stream=True, on_stream_chunk=live)
    assert "".join(delta for delta, _ in live.got) == "the whole answer"  # passed through live
    cassette.save()
    document = json.loads(cassette.path.read_text())
    assert document["llm_calls"][0]["responses"][0]["text"] == "the whole answer"

    replayed = Chunks()
    llm = Cassette.load(cassette.path).replay_llm(chunk_size=4)
    result = await complete(llm, ask("stream it"), stream=True, on_stream_chunk=replayed)
    assert result.text == "the whole answer"
    assert replayed.got == [
        ("the ", False),
        ("whol", False),
        ("e an", False),
        ("swer", False),
        ("", True),
    ]
    # `stream` is not part of the match: the same call unstreamed gets the same answer.
    assert (await complete(llm, ask("stream it"))).text == "the whole answer"


# ---------------------------------------------------------------- the file


async def test_the_file_is_stable_whatever_order_the_calls_were_recorded_in(
    tmp_path: Path,
) -> None:
    tools = Tools()

    async def record(path: Path, order: list[int]) -> bytes:
        cassette = Cassette(path)
        llm = cassette.record_llm(FunctionLLM(lambda m, i: {"echo": m[-1]["content"]}))
        add = cassette.record_tools(tools.specs)[0]
        for n in order:
            await complete(llm, ask(f"q{n}"), response_format=PLANNER_ACTION)
            await call(add, {"a": n, "b": 1})
        cassette.save()
        first = await anyio.Path(path).read_bytes()
        cassette.save()
        assert await anyio.Path(path).read_bytes() == first  # saving twice: the same bytes
        return first

    forward = await record(tmp_path / "a.json", [1, 2, 3])
    backward = await record(tmp_path / "b.json", [3, 2, 1])
    assert forward == backward
    document = json.loads(forward)
    assert document["version"] == 1
    assert [c["request"]["args"]["a"] for c in document["tool_calls"]] == [1, 2, 3]
    assert not [leftover async for leftover in anyio.Path(tmp_path).glob("*.partial")]
    Cassette.load(tmp_path / "a.json").save()
    assert await anyio.Path(tmp_path / "a.json").read_bytes() == forward  # load + save round-trips


def test_loading_a_file_of_another_version_fails_saying_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"version": 99, "llm_calls": [], "tool_calls": []}))
    with pytest.raises(ValueError, match="not a version-1 cassette; record it again"):
        Cassette.load(path)
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        Cassette(path).replay_llm(chunk_size=0)


# ---------------------------------------------------------------- end to end


async def test_a_react_planner_run_replays_without_calling_its_tools(tmp_path: Path) -> None:
    from penguiflow.planner import PlannerFinish, ReactPlanner

    tools = Tools()
    script: list[Any] = [
        {"thought": "divide first", "next_node": "divide", "args": {"a": 1, "b": 0}},
        {"thought": "that failed; add", "next_node": "add", "args": {"a": 2, "b": 3}},
        {"thought": "done", "next_node": "final_response", "args": {"answer": "2 + 3 = 5"}},
    ]
    cassette = Cassette(tmp_path / "react.json")
    planner = ReactPlanner(
        cassette.record_llm(ScriptedLLM(script)), catalog=cassette.record_tools(tools.specs)
    )
    with anyio.fail_after(10):
        recorded = await planner.run("what is 2 + 3?")
    assert isinstance(recorded, PlannerFinish) and recorded.reason == "answer_complete"
    assert tools.calls == ["divide", "add"]
    cassette.save()

    replay = Cassette.load(cassette.path)
    planner = ReactPlanner(replay.replay_llm(), catalog=replay.replay_tools(tools.specs))
    with anyio.fail_after(10):
        replayed = await planner.run("what is 2 + 3?")
    assert isinstance(replayed, PlannerFinish) and replayed.reason == "answer_complete"
    assert replayed.output == recorded.output == "2 + 3 = 5"
    assert tools.calls == ["divide", "add"]  # no tool ran during the replay
    # the replayed ZeroDivisionError gave the model the same observation, or the 2nd call
    # would not have matched
    assert (replay.recorded_llm_calls, replay.recorded_tool_calls) == (3, 2)

    # Another question is another run: not recorded. (`except*` since the planner's task group
    # may deliver the test double's AssertionError inside an ExceptionGroup.)
    mismatches: list[BaseException] = []
    other = ReactPlanner(replay.replay_llm(), catalog=replay.replay_tools(tools.specs))
    try:
        with anyio.fail_after(10):
            await other.run("what is 2 + 4?")
    except* ReplayMismatch as group:
        mismatches.extend(group.exceptions)
    assert len(mismatches) == 1
    assert '+  {"query": "what is 2 + 4?"}' in str(mismatches[0])


async def test_a_failed_llm_call_is_not_recorded_so_its_retry_replays_the_answer(
    tmp_path: Path,
) -> None:
    from penguiflow.planner import LLMError

    cassette = Cassette(tmp_path / "retry.json")
    recording = cassette.record_llm(ScriptedLLM([LLMError("slow down"), "after the retry"]))
    with pytest.raises(LLMError):
        await complete(recording, ask("hi"))
    assert cassette.recorded_llm_calls == 0
    await complete(recording, ask("hi"))
    assert (await complete(cassette.replay_llm(), ask("hi"))).text == "after the retry"
