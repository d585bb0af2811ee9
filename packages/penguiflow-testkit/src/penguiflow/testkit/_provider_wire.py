"""What OpenAI's and Anthropic's APIs send back, built from one scripted reply.

The shapes follow the providers' wire formats as their official SDKs parse them: OpenAI chat
completions (a JSON ``chat.completion``, or SSE ``chat.completion.chunk`` events ending in
``data: [DONE]``, with a usage chunk when ``stream_options.include_usage`` is set) and Anthropic
messages (a JSON ``message``, or the SSE sequence ``message_start``, ``content_block_start``,
``ping``, ``content_block_delta``..., ``content_block_stop``, ``message_delta``,
``message_stop``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ScriptedFailure",
    "ScriptedReply",
    "anthropic_error_body",
    "anthropic_message",
    "anthropic_sse",
    "openai_completion",
    "openai_error_body",
    "openai_sse",
    "pieces",
]

_CREATED = 1_700_000_000  # a fixed timestamp keeps replies deterministic


@dataclass(frozen=True, slots=True)
class ScriptedReply:
    """One successful answer the server will give."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    finish_reason: str | None
    delay_s: float
    model: str | None
    chunk_size: int


@dataclass(frozen=True, slots=True)
class ScriptedFailure:
    """One failed answer the server will give."""

    status: int
    body: Mapping[str, Any] | str | None
    retry_after: float | str | None
    headers: Mapping[str, str]
    delay_s: float


def pieces(text: str, size: int) -> Iterator[str]:
    """``text`` in consecutive pieces of ``size`` characters (none for an empty text)."""
    for start in range(0, len(text), size):
        yield text[start : start + size]


def _openai_usage(reply: ScriptedReply) -> dict[str, Any]:
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": reply.cached_tokens},
    }


def openai_completion(reply: ScriptedReply, *, model: str, seq: int) -> dict[str, Any]:
    """A ``chat.completion`` object."""
    return {
        "id": f"chatcmpl-{seq}",
        "object": "chat.completion",
        "created": _CREATED,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.text, "refusal": None},
                "finish_reason": reply.finish_reason or "stop",
                "logprobs": None,
            }
        ],
        "usage": _openai_usage(reply),
    }


def openai_sse(
    reply: ScriptedReply, *, model: str, seq: int, include_usage: bool
) -> Iterator[bytes]:
    """The SSE events of a streamed chat completion, ``data: [DONE]`` last."""

    def chunk(delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-{seq}",
            "object": "chat.completion.chunk",
            "created": _CREATED,
            "model": model,
            "choices": [
                {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
            ],
        }

    yield _data(chunk({"role": "assistant", "content": ""}, None))
    for piece in pieces(reply.text, reply.chunk_size):
        yield _data(chunk({"content": piece}, None))
    yield _data(chunk({}, reply.finish_reason or "stop"))
    if include_usage:
        usage_chunk = chunk({}, None)
        usage_chunk["choices"] = []
        usage_chunk["usage"] = _openai_usage(reply)
        yield _data(usage_chunk)
    yield b"data: [DONE]\n\n"


def openai_error_body(status: int) -> dict[str, Any]:
    """An OpenAI error body for ``status``."""
    kind = {
        400: "invalid_request_error",
        401: "invalid_request_error",
        429: "rate_limit_exceeded",
    }.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": f"scripted failure {status}", "type": kind, "code": None}}


def _anthropic_usage(reply: ScriptedReply, output_tokens: int) -> dict[str, Any]:
    # Anthropic's input_tokens leave out the tokens read from the cache.
    return {
        "input_tokens": max(reply.prompt_tokens - reply.cached_tokens, 0),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": reply.cached_tokens,
        "output_tokens": output_tokens,
    }


def anthropic_message(reply: ScriptedReply, *, model: str, seq: int) -> dict[str, Any]:
    """A ``message`` object with one text block."""
    return {
        "id": f"msg_{seq:04d}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": reply.text}],
        "stop_reason": reply.finish_reason or "end_turn",
        "stop_sequence": None,
        "usage": _anthropic_usage(reply, reply.completion_tokens),
    }


def anthropic_sse(reply: ScriptedReply, *, model: str, seq: int) -> Iterator[bytes]:
    """The SSE events of a streamed message, in the order Anthropic sends them.

    ``message_start`` reports one output token, as the real API does, and ``message_delta`` the
    cumulative total: a client that adds the two counts is wrong by one.
    """
    start = anthropic_message(reply, model=model, seq=seq)
    start["content"] = []
    start["stop_reason"] = None
    start["usage"] = _anthropic_usage(reply, 1)
    yield _event("message_start", {"type": "message_start", "message": start})
    yield _event(
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    )
    yield _event("ping", {"type": "ping"})
    for piece in pieces(reply.text, reply.chunk_size):
        yield _event(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": piece},
            },
        )
    yield _event("content_block_stop", {"type": "content_block_stop", "index": 0})
    yield _event(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": reply.finish_reason or "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": reply.completion_tokens},
        },
    )
    yield _event("message_stop", {"type": "message_stop"})


def anthropic_error_body(status: int) -> dict[str, Any]:
    """An Anthropic error body for ``status``."""
    kind = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        429: "rate_limit_error",
        529: "overloaded_error",
    }.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": f"scripted failure {status}"}}


def _data(payload: Mapping[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def _event(name: str, payload: Mapping[str, Any]) -> bytes:
    return f"event: {name}\n".encode() + _data(payload)
