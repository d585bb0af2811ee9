"""ProviderServer: the wire formats it speaks (checked raw and through the real SDKs)."""

import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import anyio
import httpx
import openai
import pytest

from penguiflow.testkit import ProviderServer

USER = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def server() -> AsyncIterator[ProviderServer]:
    async with ProviderServer(model="scripted", chunk_size=4) as started:
        yield started


async def post(server: ProviderServer, path: str, body: dict[str, Any]) -> httpx.Response:
    with anyio.fail_after(10):
        async with httpx.AsyncClient(base_url=server.url) as http:
            return await http.post(path, json=body)


def sse_data(text: str) -> list[str]:
    return [line.removeprefix("data: ") for line in text.splitlines() if line.startswith("data: ")]


def sse_events(text: str) -> list[str]:
    return [line.removeprefix("event: ") for line in text.splitlines() if line.startswith("event:")]


async def test_addresses_are_on_loopback_with_a_free_port(server: ProviderServer) -> None:
    assert server.port > 0
    assert server.url == f"http://127.0.0.1:{server.port}"
    assert server.openai_base_url == f"{server.url}/v1"
    assert server.anthropic_base_url == server.url


def test_an_unstarted_server_has_no_port() -> None:
    with pytest.raises(RuntimeError, match="not started"):
        _ = ProviderServer().port


async def test_openai_json_is_a_chat_completion_with_usage(server: ProviderServer) -> None:
    server.reply("hello", usage=(9, 2), cached_tokens=4)
    response = await post(server, "/v1/chat/completions", {"model": "m", "messages": USER})
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {
        "role": "assistant",
        "content": "hello",
        "refusal": None,
    }
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["prompt_tokens"] == 9
    assert body["usage"]["completion_tokens"] == 2
    assert body["usage"]["total_tokens"] == 11
    assert body["usage"]["prompt_tokens_details"] == {"cached_tokens": 4}


async def test_openai_sse_ends_with_done_and_has_usage_only_when_asked(
    server: ProviderServer,
) -> None:
    server.reply("abcdefghij")
    server.reply("abcdefghij")
    with_usage = await post(
        server,
        "/v1/chat/completions",
        {"model": "m", "messages": USER, "stream": True, "stream_options": {"include_usage": True}},
    )
    without = await post(
        server, "/v1/chat/completions", {"model": "m", "messages": USER, "stream": True}
    )
    assert with_usage.headers["content-type"] == "text/event-stream"
    for response, usage_chunks in ((with_usage, 1), (without, 0)):
        data = sse_data(response.text)
        assert data[-1] == "[DONE]"
        chunks = [json.loads(d) for d in data[:-1]]
        assert all(c["object"] == "chat.completion.chunk" for c in chunks)
        text = "".join(
            c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]
        )
        assert text == "abcdefghij"
        assert sum(1 for c in chunks if c.get("usage")) == usage_chunks
    usage_chunk = json.loads(sse_data(with_usage.text)[-2])
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == 5


async def test_anthropic_json_is_a_message_with_one_text_block(server: ProviderServer) -> None:
    server.reply("hello", usage=(9, 2), cached_tokens=4)
    response = await post(server, "/v1/messages", {"model": "c", "max_tokens": 8, "messages": USER})
    body = response.json()
    assert (body["type"], body["role"], body["stop_reason"]) == ("message", "assistant", "end_turn")
    assert body["content"] == [{"type": "text", "text": "hello"}]
    assert body["usage"]["input_tokens"] == 5  # the cached 4 are reported apart
    assert body["usage"]["cache_read_input_tokens"] == 4
    assert body["usage"]["output_tokens"] == 2


async def test_anthropic_sse_follows_the_real_event_sequence(server: ProviderServer) -> None:
    server.reply("abcdefgh", usage=(9, 3))
    response = await post(
        server, "/v1/messages", {"model": "c", "max_tokens": 8, "messages": USER, "stream": True}
    )
    assert sse_events(response.text) == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    payloads = [json.loads(d) for d in sse_data(response.text)]
    assert [p["type"] for p in payloads] == sse_events(response.text)
    assert payloads[-2]["usage"] == {"output_tokens": 3}


async def test_the_real_openai_sdk_parses_the_stream(server: ProviderServer) -> None:
    server.reply("streamed by the sdk", usage=(7, 4))
    sdk = openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="k", max_retries=0)
    deltas: list[str] = []
    usage_seen: list[int] = []
    with anyio.fail_after(10):
        async with sdk:
            stream = await sdk.chat.completions.create(
                model="m",
                messages=[{"role": "user", "content": "hi"}],
                stream=True,
                stream_options={"include_usage": True},
            )
            async for chunk in stream:
                deltas.extend(c.delta.content or "" for c in chunk.choices)
                if chunk.usage is not None:
                    usage_seen.append(chunk.usage.total_tokens)
    assert "".join(deltas) == "streamed by the sdk"
    assert usage_seen == [11]


async def test_the_real_anthropic_sdk_parses_the_stream(server: ProviderServer) -> None:
    server.reply("streamed by the sdk", usage=(7, 4))
    sdk = anthropic.AsyncAnthropic(base_url=server.anthropic_base_url, api_key="k", max_retries=0)
    kinds: list[str] = []
    with anyio.fail_after(10):
        async with sdk:
            stream = await sdk.messages.create(
                model="c",
                max_tokens=16,
                messages=[{"role": "user", "content": "hi"}],
                stream=True,
            )
            text = ""
            async for event in stream:
                kinds.append(event.type)
                if event.type == "content_block_delta" and event.delta.type == "text_delta":
                    text += event.delta.text
    assert text == "streamed by the sdk"
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"


async def test_answers_are_given_in_order_across_both_endpoints(server: ProviderServer) -> None:
    server.reply("first")
    server.fail(503)
    server.reply("third")
    assert server.pending == 3
    a = await post(server, "/v1/messages", {"model": "c", "max_tokens": 8, "messages": USER})
    b = await post(server, "/v1/chat/completions", {"model": "m", "messages": USER})
    c = await post(server, "/v1/chat/completions", {"model": "m", "messages": USER})
    assert a.json()["content"][0]["text"] == "first"
    assert b.status_code == 503
    assert c.json()["choices"][0]["message"]["content"] == "third"
    assert server.pending == 0
    assert [r.path for r in server.requests] == [
        "/v1/messages",
        "/v1/chat/completions",
        "/v1/chat/completions",
    ]


async def test_a_failure_has_the_providers_error_body_and_retry_after(
    server: ProviderServer,
) -> None:
    server.fail(429, retry_after=3)
    server.fail(529)
    server.fail(418, "teapot", headers={"x-extra": "yes"})
    openai_error = await post(server, "/v1/chat/completions", {"messages": USER})
    anthropic_error = await post(server, "/v1/messages", {"messages": USER})
    text_error = await post(server, "/v1/messages", {"messages": USER})
    assert openai_error.status_code == 429
    assert openai_error.headers["retry-after"] == "3"
    assert openai_error.json()["error"]["type"] == "rate_limit_exceeded"
    assert anthropic_error.status_code == 529
    assert anthropic_error.json() == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "scripted failure 529"},
    }
    assert (text_error.status_code, text_error.text) == (418, "teapot")
    assert text_error.headers["x-extra"] == "yes"


async def test_nothing_scripted_is_a_500_that_says_so(server: ProviderServer) -> None:
    response = await post(server, "/v1/chat/completions", {"messages": USER})
    assert response.status_code == 500
    assert "no answer scripted" in response.json()["error"]["message"]
    assert len(server.requests) == 1


async def test_an_unknown_path_is_a_404_and_takes_no_answer(server: ProviderServer) -> None:
    server.reply("kept")
    response = await post(server, "/v1/embeddings", {"input": "x"})
    assert response.status_code == 404
    assert server.pending == 1


async def test_requests_are_recorded_with_headers_and_json(server: ProviderServer) -> None:
    server.reply("ok")
    with anyio.fail_after(10):
        async with httpx.AsyncClient(base_url=server.url) as http:
            await http.post("/v1/messages?beta=true", json={"a": 1}, headers={"X-Test": "1"})
    (request,) = server.requests
    assert (request.method, request.path, request.json) == ("POST", "/v1/messages", {"a": 1})
    assert request.headers["x-test"] == "1"
    assert json.loads(request.body) == {"a": 1}


async def test_one_connection_serves_several_requests(server: ProviderServer) -> None:
    server.reply("one")
    server.reply("two")
    with anyio.fail_after(10):
        async with httpx.AsyncClient(base_url=server.url) as http:
            first = await http.post("/v1/chat/completions", json={"stream": True})
            second = await http.post("/v1/chat/completions", json={})
    assert sse_data(first.text)[-1] == "[DONE]"
    assert second.json()["choices"][0]["message"]["content"] == "two"


async def test_closing_ends_a_reply_still_waiting_out_its_delay() -> None:
    async with ProviderServer() as server:
        server.reply("never", delay_s=60)

        async def call() -> None:
            async with httpx.AsyncClient(base_url=server.url) as http:
                with pytest.raises(httpx.TransportError):
                    await http.post("/v1/chat/completions", json={})

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                await server.wait_for_requests(1)
                await server.aclose()
    assert len(server.requests) == 1


async def test_wait_for_requests_returns_once_enough_arrived(server: ProviderServer) -> None:
    server.reply("a")
    server.reply("b")
    empty: dict[str, Any] = {}
    with anyio.fail_after(10):
        await server.wait_for_requests(0)
        async with anyio.create_task_group() as tg:
            tg.start_soon(post, server, "/v1/chat/completions", empty)
            tg.start_soon(post, server, "/v1/chat/completions", empty)
            await server.wait_for_requests(2)
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"chunk_size": 0}, "chunk_size")],
)
def test_bad_construction_is_rejected(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ProviderServer(**kwargs)


def test_bad_scripts_are_rejected() -> None:
    server = ProviderServer()
    with pytest.raises(ValueError, match="status"):
        server.fail(99)
    with pytest.raises(ValueError, match="token counts"):
        server.reply("x", usage=(-1, 0))
