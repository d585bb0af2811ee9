"""OpenAIJSONClient through the real openai SDK against ProviderServer over loopback HTTP."""

import socket
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from typing import Any

import anyio
import openai
import pytest

from penguiflow.planner import (
    LLMError,
    LLMErrorType,
    LLMMessage,
    ModelPrice,
    OpenAIJSONClient,
    PlannerUsageError,
    Usage,
)
from penguiflow.testkit import ProviderServer

MESSAGES: list[LLMMessage] = [
    {"role": "system", "content": "answer in JSON"},
    {"role": "user", "content": "what is 6 x 7?"},
]
PLANNER_ACTION: dict[str, Any] = {
    "type": "json_schema",
    "json_schema": {
        "name": "planner_action",
        "schema": {"type": "object", "properties": {"next_node": {"type": "string"}}},
        "strict": True,
    },
}


@pytest.fixture
async def server() -> AsyncIterator[ProviderServer]:
    async with ProviderServer(model="gpt-scripted") as started:
        yield started


def client(server: ProviderServer, **options: Any) -> OpenAIJSONClient:
    return OpenAIJSONClient(
        "gpt-test", base_url=server.openai_base_url, api_key="sk-test", **options
    )


async def failure(llm: OpenAIJSONClient, *, stream: bool = False) -> LLMError:
    with anyio.fail_after(10), pytest.raises(LLMError) as caught:
        await llm.complete(messages=MESSAGES, stream=stream)
    return caught.value


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_json_answer_comes_back_with_usage_cost_model_and_finish_reason(
    server: ProviderServer,
) -> None:
    server.reply('{"answer": 42}', usage=(1000, 200), cached_tokens=400)
    price = ModelPrice(input_per_mtok=2.0, output_per_mtok=10.0, cached_input_per_mtok=1.0)
    async with client(server, pricing=price) as llm:
        with anyio.fail_after(10):
            result = await llm.complete(messages=MESSAGES, response_format=PLANNER_ACTION)
    assert result.text == '{"answer": 42}'
    assert result.usage == Usage(prompt_tokens=1000, completion_tokens=200, cached_tokens=400)
    assert result.cost_usd == pytest.approx((600 * 2.0 + 400 * 1.0 + 200 * 10.0) / 1e6)
    assert (result.model, result.finish_reason) == ("gpt-scripted", "stop")
    assert result.raw is not None


async def test_the_request_carries_model_messages_and_the_schema_as_given(
    server: ProviderServer,
) -> None:
    server.reply("{}")
    async with client(server) as llm:
        with anyio.fail_after(10):
            await llm.complete(messages=MESSAGES, response_format=PLANNER_ACTION)
    (request,) = server.requests
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.json["model"] == "gpt-test"
    assert request.json["messages"] == MESSAGES
    assert request.json["response_format"] == PLANNER_ACTION
    assert "stream_options" not in request.json
    assert request.json.get("stream") in (None, False)


async def test_without_a_price_the_cost_is_unknown(server: ProviderServer) -> None:
    server.reply("{}")
    async with client(server) as llm:
        with anyio.fail_after(10):
            result = await llm.complete(messages=MESSAGES)
    assert result.cost_usd is None
    assert "response_format" not in server.requests[0].json


async def test_streaming_sends_each_delta_then_one_final_callback(server: ProviderServer) -> None:
    text = '{"next_node": "final_response", "args": {"answer": "forty-two"}}'
    server.reply(text, usage=(30, 12), chunk_size=5)
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
    assert deltas == [text[i : i + 5] for i in range(0, len(text), 5)]
    assert result.text == "".join(deltas) == text
    assert result.usage == Usage(prompt_tokens=30, completion_tokens=12)
    assert result.cost_usd == pytest.approx(42 / 1e6)
    assert result.finish_reason == "stop"
    request = server.requests[0].json
    assert request["stream"] is True
    assert request["stream_options"] == {"include_usage": True}
    assert request["response_format"] == PLANNER_ACTION


async def test_streaming_without_a_callback_still_returns_the_text(
    server: ProviderServer,
) -> None:
    server.reply("streamed whole")
    async with client(server) as llm:
        with anyio.fail_after(10):
            result = await llm.complete(messages=MESSAGES, stream=True)
    assert result.text == "streamed whole"


@pytest.mark.parametrize(
    ("json_mode", "sent"), [("object", {"type": "json_object"}), ("off", None)]
)
async def test_json_mode_chooses_what_response_format_is_sent(
    server: ProviderServer, json_mode: Any, sent: dict[str, Any] | None
) -> None:
    server.reply("{}")
    async with client(server, json_mode=json_mode) as llm:
        with anyio.fail_after(10):
            await llm.complete(messages=MESSAGES, response_format=PLANNER_ACTION)
    assert server.requests[0].json.get("response_format") == sent


async def test_options_headers_and_extra_body_reach_the_server(server: ProviderServer) -> None:
    server.reply("{}")
    options: dict[str, Any] = {
        "temperature": 0.2,
        "max_tokens": 64,
        "extra_body": {"top_k": 5},
        "default_headers": {"x-team": "penguins"},
    }
    async with client(server, **options) as llm:
        with anyio.fail_after(10):
            await llm.complete(messages=MESSAGES)
    request = server.requests[0]
    assert (request.json["temperature"], request.json["max_tokens"]) == (0.2, 64)
    assert request.json["top_k"] == 5
    assert request.headers["x-team"] == "penguins"


async def test_rate_limit_maps_with_retry_after(server: ProviderServer) -> None:
    server.fail(429, retry_after=7)
    async with client(server) as llm:
        error = await failure(llm)
    assert error.error_type is LLMErrorType.RATE_LIMIT
    assert (error.status_code, error.retry_after_s, error.provider) == (429, 7.0, "openai")
    assert isinstance(error.__cause__, openai.RateLimitError)


@pytest.mark.parametrize("status", [401, 403])
async def test_bad_credentials_map_to_authentication(server: ProviderServer, status: int) -> None:
    server.fail(status)
    async with client(server) as llm:
        error = await failure(llm)
    assert (error.error_type, error.status_code) == (LLMErrorType.AUTHENTICATION, status)


async def test_context_length_code_maps_to_context_length_exceeded(
    server: ProviderServer,
) -> None:
    body = {
        "error": {
            "message": "Your input exceeds the context window of this model.",
            "type": "invalid_request_error",
            "code": "context_length_exceeded",
        }
    }
    server.fail(400, body)
    async with client(server) as llm:
        error = await failure(llm)
    assert error.error_type is LLMErrorType.CONTEXT_LENGTH_EXCEEDED
    assert isinstance(error.__cause__, openai.BadRequestError)


async def test_a_compatible_servers_context_wording_without_a_code_is_understood(
    server: ProviderServer,
) -> None:
    message = "This model's maximum context length is 4096 tokens. However, you requested 5000"
    server.fail(400, {"object": "error", "message": message, "type": "BadRequestError"})
    async with client(server) as llm:
        error = await failure(llm)
    assert error.error_type is LLMErrorType.CONTEXT_LENGTH_EXCEEDED


@pytest.mark.parametrize("status", [400, 404, 422])
async def test_other_client_errors_map_to_bad_request_other(
    server: ProviderServer, status: int
) -> None:
    server.fail(status)
    async with client(server) as llm:
        error = await failure(llm)
    assert (error.error_type, error.status_code) == (LLMErrorType.BAD_REQUEST_OTHER, status)


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors_map_to_service_unavailable_after_exactly_one_request(
    server: ProviderServer, status: int
) -> None:
    server.fail(status)
    server.reply("never sent: a retry would take it")
    async with client(server) as llm:
        error = await failure(llm)
    assert (error.error_type, error.status_code) == (LLMErrorType.SERVICE_UNAVAILABLE, status)
    assert len(server.requests) == 1
    assert server.pending == 1


async def test_a_failed_stream_maps_the_same_and_never_signals_done(
    server: ProviderServer,
) -> None:
    server.fail(429, retry_after="2")
    chunks: list[tuple[str, bool]] = []
    async with client(server) as llm:
        with anyio.fail_after(10), pytest.raises(LLMError) as caught:
            await llm.complete(
                messages=MESSAGES,
                stream=True,
                on_stream_chunk=lambda delta, done: chunks.append((delta, done)),
            )
    assert (caught.value.error_type, caught.value.retry_after_s) == (LLMErrorType.RATE_LIMIT, 2.0)
    assert chunks == []


async def test_connection_refused_maps_to_connection() -> None:
    port = free_port()
    async with OpenAIJSONClient("m", base_url=f"http://127.0.0.1:{port}/v1", api_key="k") as llm:
        error = await failure(llm)
    assert error.error_type is LLMErrorType.CONNECTION
    assert error.status_code is None
    assert isinstance(error.__cause__, openai.APIConnectionError)


async def test_a_slow_server_maps_to_timeout(server: ProviderServer) -> None:
    server.reply("too late", delay_s=30)
    async with client(server, timeout_s=0.2) as llm:
        error = await failure(llm)
    assert error.error_type is LLMErrorType.TIMEOUT
    assert isinstance(error.__cause__, openai.APITimeoutError)
    assert len(server.requests) == 1


async def test_a_given_sdk_client_gets_its_retries_turned_off_and_is_not_closed(
    server: ProviderServer,
) -> None:
    sdk = openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="k", max_retries=5)
    server.fail(500)
    server.reply("{}")
    try:
        async with OpenAIJSONClient("m", client=sdk) as llm:
            assert llm.sdk_client.max_retries == 0
            error = await failure(llm)
        assert error.error_type is LLMErrorType.SERVICE_UNAVAILABLE
        assert len(server.requests) == 1
        assert not sdk.is_closed()
    finally:
        await sdk.close()


async def test_environment_variables_give_the_defaults(
    server: ProviderServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", server.openai_base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    server.reply("{}")
    async with OpenAIJSONClient("m") as llm:
        with anyio.fail_after(10):
            await llm.complete(messages=MESSAGES)
    assert server.requests[0].headers["authorization"] == "Bearer sk-from-env"


async def test_a_local_server_needs_no_key(
    server: ProviderServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    server.reply("{}")
    async with OpenAIJSONClient("llama", base_url=server.openai_base_url) as llm:
        with anyio.fail_after(10):
            result = await llm.complete(messages=MESSAGES)
    assert result.text == "{}"


def test_openai_without_a_key_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(PlannerUsageError, match="OPENAI_API_KEY"):
        OpenAIJSONClient("gpt-4o-mini")


@pytest.mark.parametrize(
    ("options", "field"), [({"json_mode": "yaml"}, "json_mode"), ({"timeout_s": 0}, "timeout_s")]
)
def test_bad_options_are_usage_errors(options: dict[str, Any], field: str) -> None:
    with pytest.raises(PlannerUsageError, match=field):
        OpenAIJSONClient("m", api_key="k", **options)


def test_without_the_sdk_the_error_says_what_to_install() -> None:
    code = textwrap.dedent(
        """
        import sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "openai":
                    raise ImportError("blocked " + name)
                return None

        sys.meta_path.insert(0, Block())
        from penguiflow.planner import OpenAIJSONClient
        try:
            OpenAIJSONClient("m", api_key="k")
        except ImportError as exc:
            print(exc)
        """
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert 'pip install "penguiflow-planner[openai]"' in completed.stdout
