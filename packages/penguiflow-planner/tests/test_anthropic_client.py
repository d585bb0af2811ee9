"""AnthropicJSONClient through the real anthropic SDK against ProviderServer over loopback HTTP."""

import socket
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import anyio
import httpx2
import pytest

from penguiflow.planner import (
    AnthropicJSONClient,
    LLMError,
    LLMErrorType,
    LLMMessage,
    ModelPrice,
    PlannerUsageError,
    Usage,
)
from penguiflow.planner._anthropic import map_anthropic_error, to_anthropic_messages
from penguiflow.testkit import ProviderServer

MESSAGES: list[LLMMessage] = [
    {"role": "system", "content": "answer in JSON"},
    {"role": "user", "content": "what is 6 x 7?"},
]
SCHEMA: dict[str, Any] = {"type": "object", "properties": {"answer": {"type": "integer"}}}
PLANNER_ACTION: dict[str, Any] = {
    "type": "json_schema",
    "json_schema": {"name": "planner_action", "schema": SCHEMA, "strict": True},
}


@pytest.fixture
async def server() -> AsyncIterator[ProviderServer]:
    async with ProviderServer(model="claude-scripted") as started:
        yield started


def client(server: ProviderServer, **options: Any) -> AnthropicJSONClient:
    return AnthropicJSONClient(
        "claude-test", base_url=server.anthropic_base_url, api_key="sk-ant-test", **options
    )


async def failure(llm: AnthropicJSONClient, *, stream: bool = False) -> LLMError:
    with anyio.fail_after(10), pytest.raises(LLMError) as caught:
        await llm.complete(messages=MESSAGES, stream=stream)
    return caught.value


async def test_a_json_answer_comes_back_with_usage_cost_model_and_stop_reason(
    server: ProviderServer,
) -> None:
    server.reply('{"answer": 42}', usage=(1000, 200), cached_tokens=300)
    price = ModelPrice(input_per_mtok=3.0, output_per_mtok=15.0, cached_input_per_mtok=0.3)
    async with client(server, pricing=price) as llm:
        with anyio.fail_after(10):
            result = await llm.complete(messages=MESSAGES, response_format=PLANNER_ACTION)
    assert result.text == '{"answer": 42}'
    # input_tokens on the wire leave out the cached ones; Usage counts them in prompt_tokens
    assert result.usage == Usage(prompt_tokens=1000, completion_tokens=200, cached_tokens=300)
    assert result.cost_usd == pytest.approx((700 * 3.0 + 300 * 0.3 + 200 * 15.0) / 1e6)
    assert (result.model, result.finish_reason) == ("claude-scripted", "end_turn")


async def test_the_request_carries_system_messages_max_tokens_and_output_config(
    server: ProviderServer,
) -> None:
    server.reply("{}")
    async with client(server, max_tokens=512, temperature=0.0) as llm:
        with anyio.fail_after(10):
            await llm.complete(messages=MESSAGES, response_format=PLANNER_ACTION)
    (request,) = server.requests
    assert (request.method, request.path) == ("POST", "/v1/messages")
    # anthropic 2.x sends the key as a bearer token (1.x used x-api-key)
    credentials = request.headers.get("x-api-key") or request.headers.get("authorization")
    assert credentials in ("sk-ant-test", "Bearer sk-ant-test")
    body = request.json
    assert (body["model"], body["max_tokens"], body["temperature"]) == ("claude-test", 512, 0.0)
    assert body["system"] == "answer in JSON"
    assert body["messages"] == [{"role": "user", "content": "what is 6 x 7?"}]
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": SCHEMA}}


async def test_json_mode_off_sends_no_output_config(server: ProviderServer) -> None:
    server.reply("{}")
    async with client(server, json_mode="off") as llm:
        with anyio.fail_after(10):
            await llm.complete(messages=MESSAGES, response_format=PLANNER_ACTION)
    assert "output_config" not in server.requests[0].json


async def test_system_messages_join_and_same_role_turns_merge(server: ProviderServer) -> None:
    server.reply("{}")
    conversation: list[LLMMessage] = [
        {"role": "system", "content": "rule one"},
        {"role": "user", "content": "q1"},
        {"role": "system", "content": "rule two"},
        {"role": "user", "content": '{"observation": 1}'},
        {"role": "assistant", "content": "a1"},
        {"role": "assistant", "content": "a2"},
        {"role": "user", "content": "q2"},
    ]
    async with client(server) as llm:
        with anyio.fail_after(10):
            await llm.complete(messages=conversation)
    body = server.requests[0].json
    assert body["system"] == "rule one\n\nrule two"
    assert body["messages"] == [
        {"role": "user", "content": 'q1\n\n{"observation": 1}'},
        {"role": "assistant", "content": "a1\n\na2"},
        {"role": "user", "content": "q2"},
    ]


def test_a_conversation_without_system_messages_has_an_empty_system() -> None:
    system, turns = to_anthropic_messages([{"role": "user", "content": "hi"}])
    assert (system, turns) == ("", [{"role": "user", "content": "hi"}])


async def test_streaming_sends_each_text_delta_then_one_final_callback(
    server: ProviderServer,
) -> None:
    text = '{"next_node": "final_response", "args": {"answer": "forty-two"}}'
    server.reply(text, usage=(50, 17), cached_tokens=20, chunk_size=6)
    chunks: list[tuple[str, bool]] = []
    async with client(server, pricing=ModelPrice(1.0, 1.0)) as llm:
        with anyio.fail_after(10):
            result = await llm.complete(
                messages=MESSAGES,
                response_format=PLANNER_ACTION,
                stream=True,
                on_stream_chunk=lambda delta, done: chunks.append((delta, done)),
            )
    deltas = [delta for delta, done in chunks if not done]
    assert chunks[-1] == ("", True)
    assert [done for _, done in chunks].count(True) == 1
    assert deltas == [text[i : i + 6] for i in range(0, len(text), 6)]
    assert result.text == text
    # input and cached tokens from message_start; output from the last message_delta, taken
    # as is (message_start said 1: adding would give 18)
    assert result.usage == Usage(prompt_tokens=50, completion_tokens=17, cached_tokens=20)
    assert result.cost_usd == pytest.approx(67 / 1e6)
    assert (result.model, result.finish_reason) == ("claude-scripted", "end_turn")
    assert server.requests[0].json["stream"] is True


async def test_rate_limit_maps_with_retry_after(server: ProviderServer) -> None:
    server.fail(429, retry_after=12)
    async with client(server) as llm:
        error = await failure(llm)
    assert error.error_type is LLMErrorType.RATE_LIMIT
    assert (error.status_code, error.retry_after_s, error.provider) == (429, 12.0, "anthropic")
    assert isinstance(error.__cause__, anthropic.RateLimitError)


@pytest.mark.parametrize("status", [401, 403])
async def test_bad_credentials_map_to_authentication(server: ProviderServer, status: int) -> None:
    server.fail(status)
    async with client(server) as llm:
        error = await failure(llm)
    assert (error.error_type, error.status_code) == (LLMErrorType.AUTHENTICATION, status)


async def test_prompt_too_long_maps_to_context_length_exceeded(server: ProviderServer) -> None:
    body = {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "prompt is too long: 215000 tokens > 200000 maximum",
        },
    }
    server.fail(400, body)
    async with client(server) as llm:
        error = await failure(llm)
    assert error.error_type is LLMErrorType.CONTEXT_LENGTH_EXCEEDED
    assert isinstance(error.__cause__, anthropic.BadRequestError)


@pytest.mark.parametrize("status", [400, 404, 413])
async def test_other_client_errors_map_to_bad_request_other(
    server: ProviderServer, status: int
) -> None:
    server.fail(status)
    async with client(server) as llm:
        error = await failure(llm)
    assert (error.error_type, error.status_code) == (LLMErrorType.BAD_REQUEST_OTHER, status)


@pytest.mark.parametrize("status", [500, 503, 529])
async def test_server_errors_and_overload_map_to_service_unavailable_after_one_request(
    server: ProviderServer, status: int
) -> None:
    server.fail(status)
    server.reply("never sent: a retry would take it")
    async with client(server) as llm:
        error = await failure(llm)
    assert (error.error_type, error.status_code) == (LLMErrorType.SERVICE_UNAVAILABLE, status)
    assert len(server.requests) == 1
    if status == 529:
        assert isinstance(error.__cause__, anthropic.OverloadedError)


async def test_a_failed_stream_maps_the_same_and_never_signals_done(
    server: ProviderServer,
) -> None:
    server.fail(529)
    chunks: list[tuple[str, bool]] = []
    async with client(server) as llm:
        with anyio.fail_after(10), pytest.raises(LLMError) as caught:
            await llm.complete(
                messages=MESSAGES,
                stream=True,
                on_stream_chunk=lambda delta, done: chunks.append((delta, done)),
            )
    assert caught.value.error_type is LLMErrorType.SERVICE_UNAVAILABLE
    assert chunks == []


def test_an_error_event_inside_a_200_stream_maps_by_its_error_type() -> None:
    response = httpx2.Response(200, request=httpx2.Request("POST", "http://127.0.0.1/v1/messages"))
    for kind, expected in [
        ("overloaded_error", LLMErrorType.SERVICE_UNAVAILABLE),
        ("rate_limit_error", LLMErrorType.RATE_LIMIT),
        ("something_new", LLMErrorType.UNKNOWN),
    ]:
        body = {"type": "error", "error": {"type": kind, "message": "mid-stream"}}
        sdk_error = anthropic.APIStatusError("mid-stream", response=response, body=body)
        assert map_anthropic_error(sdk_error).error_type is expected


async def test_connection_refused_maps_to_connection() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    async with AnthropicJSONClient("c", base_url=f"http://127.0.0.1:{port}", api_key="k") as llm:
        error = await failure(llm)
    assert error.error_type is LLMErrorType.CONNECTION
    assert isinstance(error.__cause__, anthropic.APIConnectionError)


async def test_a_slow_server_maps_to_timeout(server: ProviderServer) -> None:
    server.reply("too late", delay_s=30)
    async with client(server, timeout_s=0.2) as llm:
        error = await failure(llm)
    assert error.error_type is LLMErrorType.TIMEOUT
    assert isinstance(error.__cause__, anthropic.APITimeoutError)
    assert len(server.requests) == 1


async def test_a_given_sdk_client_gets_its_retries_turned_off_and_is_not_closed(
    server: ProviderServer,
) -> None:
    sdk = anthropic.AsyncAnthropic(base_url=server.anthropic_base_url, api_key="k", max_retries=5)
    server.fail(500)
    try:
        async with AnthropicJSONClient("c", client=sdk) as llm:
            assert llm.sdk_client.max_retries == 0
            error = await failure(llm)
        assert error.error_type is LLMErrorType.SERVICE_UNAVAILABLE
        assert len(server.requests) == 1
        assert not sdk.is_closed()
    finally:
        await sdk.close()


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"json_mode": "object"}, "json_mode"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"timeout_s": -1}, "timeout_s"),
    ],
)
def test_bad_options_are_usage_errors(options: dict[str, Any], field: str) -> None:
    with pytest.raises(PlannerUsageError, match=field):
        AnthropicJSONClient("c", api_key="k", **options)


def test_without_the_sdk_the_error_says_what_to_install() -> None:
    code = textwrap.dedent(
        """
        import sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "anthropic":
                    raise ImportError("blocked " + name)
                return None

        sys.meta_path.insert(0, Block())
        from penguiflow.planner import AnthropicJSONClient
        try:
            AnthropicJSONClient("c", api_key="k")
        except ImportError as exc:
            print(exc)
        """
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert 'pip install "penguiflow-planner[anthropic]"' in completed.stdout
