"""ScriptedLLM and FunctionLLM: what they answer, what they record, how they fail."""

import json
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from penguiflow.planner import CharCounter, JSONLLMClient, LLMError, LLMMessage, LLMResult, Usage
from penguiflow.testkit import (
    FlowTestError,
    FunctionLLM,
    LLMCall,
    LLMCallInfo,
    ScriptedLLM,
    ScriptExhausted,
)

MESSAGES: list[LLMMessage] = [
    {"role": "system", "content": "you plan"},
    {"role": "user", "content": "what is 6 x 7?"},
]
ACTION = {"next_node": "final_response", "args": {"answer": "42"}}
PLANNER_ACTION: dict[str, Any] = {
    "type": "json_schema",
    "json_schema": {"name": "planner_action", "schema": {"type": "object"}, "strict": True},
}


class Chunks:
    """An on_stream_chunk callback that keeps what it got."""

    def __init__(self) -> None:
        self.got: list[tuple[str, bool]] = []

    def __call__(self, delta: str, done: bool) -> None:
        self.got.append((delta, done))


async def ask(llm: JSONLLMClient, **options: Any) -> LLMResult:
    with anyio.fail_after(5):
        result = await llm.complete(messages=MESSAGES, **options)
    assert isinstance(result, LLMResult)
    return result


# ------------------------------------------------------------------ ScriptedLLM


async def test_answers_come_in_order_each_kind_as_documented() -> None:
    given = LLMResult("as is", usage=Usage(1, 2), cost_usd=0.5)
    llm = ScriptedLLM(["plain text", ACTION, given])
    assert (await ask(llm)).text == "plain text"
    assert json.loads((await ask(llm)).text) == ACTION
    assert await ask(llm) is given
    assert llm.remaining == 0
    llm.assert_exhausted()


async def test_an_exception_instance_is_raised_in_its_turn() -> None:
    failure = LLMError("slow down")
    llm = ScriptedLLM([failure, "after"])
    with anyio.fail_after(5), pytest.raises(LLMError) as caught:
        await llm.complete(messages=MESSAGES)
    assert caught.value is failure
    assert (await ask(llm)).text == "after"
    assert len(llm.calls) == 2


async def test_usage_of_text_answers_is_counted_with_the_counter() -> None:
    counter = CharCounter(chars_per_token=2)
    llm = ScriptedLLM(["abcdef"], counter=counter)
    result = await ask(llm)
    assert result.usage == Usage(
        prompt_tokens=counter.count_messages(MESSAGES), completion_tokens=counter.count("abcdef")
    )
    assert result.cost_usd is None


async def test_streaming_feeds_chunk_size_pieces_then_the_end() -> None:
    text = json.dumps(ACTION)
    chunks = Chunks()
    llm = ScriptedLLM([ACTION], chunk_size=5)
    result = await ask(llm, stream=True, on_stream_chunk=chunks)
    assert chunks.got[-1] == ("", True)
    assert [d for d, done in chunks.got if not done] == [
        text[i : i + 5] for i in range(0, len(text), 5)
    ]
    assert result.text == text


async def test_without_stream_the_callback_is_not_called() -> None:
    chunks = Chunks()
    llm = ScriptedLLM(["text"])
    await ask(llm, on_stream_chunk=chunks)
    assert chunks.got == []


async def test_calls_are_recorded_as_sent() -> None:
    llm = ScriptedLLM(["a", "b"])
    await ask(llm, response_format=PLANNER_ACTION)
    await ask(llm, stream=True)
    assert llm.calls == [
        LLMCall(messages=MESSAGES, response_format=PLANNER_ACTION, stream=False),
        LLMCall(messages=MESSAGES, response_format=None, stream=True),
    ]
    assert [call.schema_name for call in llm.calls] == ["planner_action", None]


async def test_recorded_messages_are_copies() -> None:
    messages: list[LLMMessage] = [{"role": "user", "content": "before"}]
    llm = ScriptedLLM(["ok"])
    with anyio.fail_after(5):
        await llm.complete(messages=messages)
    messages[0]["content"] = "after"
    messages.append({"role": "user", "content": "more"})
    assert llm.calls[0].messages == [{"role": "user", "content": "before"}]


async def test_a_call_too_many_raises_script_exhausted_showing_the_messages() -> None:
    llm = ScriptedLLM(["only one"])
    await ask(llm)
    with anyio.fail_after(5), pytest.raises(ScriptExhausted) as caught:
        await llm.complete(messages=MESSAGES, response_format=PLANNER_ACTION)
    message = str(caught.value)
    assert "call 2" in message and "only 1" in message
    assert "planner_action" in message
    assert "[system] you plan" in message and "[user] what is 6 x 7?" in message
    assert isinstance(caught.value, AssertionError)
    assert isinstance(caught.value, FlowTestError)
    assert len(caught.value.calls) == 2


async def test_assert_exhausted_lists_the_answers_never_asked_for() -> None:
    llm = ScriptedLLM(["used", "left over", {"also": "left"}])
    await ask(llm)
    assert llm.remaining == 2
    with pytest.raises(AssertionError, match="used 1 of its 3") as caught:
        llm.assert_exhausted()
    assert "'left over'" in str(caught.value) and "{'also': 'left'}" in str(caught.value)


async def test_a_bad_scripted_answer_is_a_type_error() -> None:
    llm = ScriptedLLM([42])  # type: ignore[list-item]
    with anyio.fail_after(5), pytest.raises(TypeError, match="scripted answer"):
        await llm.complete(messages=MESSAGES)


def test_a_bad_chunk_size_is_rejected() -> None:
    with pytest.raises(ValueError, match="chunk_size"):
        ScriptedLLM([], chunk_size=0)


def test_both_doubles_are_json_llm_clients() -> None:
    assert isinstance(ScriptedLLM([]), JSONLLMClient)
    assert isinstance(FunctionLLM(lambda messages, info: ""), JSONLLMClient)


# ------------------------------------------------------------------ FunctionLLM


async def test_a_sync_function_sees_the_messages_and_the_call_info() -> None:
    seen: list[tuple[list[LLMMessage], LLMCallInfo]] = []

    def answer(messages: list[LLMMessage], info: LLMCallInfo) -> dict[str, Any]:
        seen.append((messages, info))
        return {"echo": messages[-1]["content"]}

    llm = FunctionLLM(answer)
    first = await ask(llm, response_format=PLANNER_ACTION)
    await ask(llm, stream=True)
    assert json.loads(first.text) == {"echo": "what is 6 x 7?"}
    assert first.usage is not None and first.usage.completion_tokens > 0
    assert [info for _, info in seen] == [
        LLMCallInfo(
            call_index=0,
            schema_name="planner_action",
            response_format=PLANNER_ACTION,
            stream=False,
        ),
        LLMCallInfo(call_index=1, schema_name=None, response_format=None, stream=True),
    ]
    assert seen[0][0] == MESSAGES
    assert len(llm.calls) == 2


async def test_an_async_function_is_awaited() -> None:
    async def answer(messages: list[LLMMessage], info: LLMCallInfo) -> str:
        await anyio.lowlevel.checkpoint()
        return f"call {info.call_index}"

    llm = FunctionLLM(answer)
    assert (await ask(llm)).text == "call 0"


async def test_a_returned_exception_is_raised_and_a_result_passes_through() -> None:
    results: list[object] = [TimeoutError("slow"), LLMResult("done", cost_usd=0.1)]
    llm = FunctionLLM(lambda messages, info: results[info.call_index])  # type: ignore[arg-type, return-value]
    with anyio.fail_after(5), pytest.raises(TimeoutError, match="slow"):
        await llm.complete(messages=MESSAGES)
    assert (await ask(llm)).cost_usd == 0.1


async def test_concurrent_calls_each_get_their_own_answer() -> None:
    async def answer(messages: list[LLMMessage], info: LLMCallInfo) -> str:
        await anyio.sleep(0.01 * (info.call_index % 3))
        return messages[-1]["content"].upper()

    llm = FunctionLLM(answer)
    results: dict[int, str] = {}

    async def run(n: int) -> None:
        result = await llm.complete(messages=[{"role": "user", "content": f"query {n}"}])
        results[n] = LLMResult.coerce(result).text

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for n in range(20):
                tg.start_soon(run, n)
    assert results == {n: f"QUERY {n}" for n in range(20)}
    assert sorted(call.messages[0]["content"] for call in llm.calls) == sorted(
        f"query {n}" for n in range(20)
    )


async def test_function_llm_streams_like_scripted_llm() -> None:
    chunks = Chunks()
    llm = FunctionLLM(lambda messages, info: "abcdefgh", chunk_size=3)
    await ask(llm, stream=True, on_stream_chunk=chunks)
    assert chunks.got == [("abc", False), ("def", False), ("gh", False), ("", True)]


def test_function_llm_needs_a_callable() -> None:
    with pytest.raises(TypeError, match="callable"):
        FunctionLLM("not callable")  # type: ignore[arg-type]
