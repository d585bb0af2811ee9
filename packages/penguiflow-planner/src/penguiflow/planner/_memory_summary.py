"""The ``memory_summary`` LLM call: fold pending turns into the rolling summary."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, cast

from ._llm import JSONLLMClient, LLMMessage, LLMResult, ResponseFormat

__all__ = ["SUMMARY_FORMAT", "summarise"]

_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"summary": {"type": "string"}},
    "required": ["summary"],
    "additionalProperties": False,
}

SUMMARY_FORMAT: ResponseFormat = {
    "type": "json_schema",
    "json_schema": {"name": "memory_summary", "schema": _SCHEMA, "strict": True},
}
"""The response format of summary calls (schema name ``memory_summary``)."""

_INSTRUCTIONS = (
    "You maintain the running summary of a conversation between a user and an assistant. "
    "Fold the new turns into the previous summary. Keep facts, names, goals, decisions, "
    "preferences, open questions and follow-ups; drop pleasantries. Write compact sentences. "
    'Answer with JSON only: {"summary": "<the updated summary>"}.'
)


def _messages(
    previous: str,
    turns: Sequence[Mapping[str, Any]],
    max_tokens: int | None,
) -> list[LLMMessage]:
    request: dict[str, Any] = {"previous_summary": previous, "turns": list(turns)}
    if max_tokens is not None:
        request["max_summary_tokens"] = max_tokens
    return [
        {"role": "system", "content": _INSTRUCTIONS},
        {"role": "user", "content": json.dumps(request, ensure_ascii=False, sort_keys=True)},
    ]


def _parse(text: str) -> str:
    body = text.strip()
    if body.startswith("```"):
        # Models fence JSON now and then even when asked for JSON only.
        body = body.split("\n", 1)[1] if "\n" in body else ""
        body = body.rsplit("```", 1)[0]
    document: object = json.loads(body)
    if not isinstance(document, dict):
        raise ValueError(f"a memory_summary answer must be a JSON object, got {text[:200]!r}")
    summary = cast(dict[str, object], document).get("summary")
    if not isinstance(summary, str):
        raise ValueError(f'a memory_summary answer needs a string "summary", got {text[:200]!r}')
    return summary


async def summarise(
    llm: JSONLLMClient,
    *,
    previous: str,
    views: Sequence[Mapping[str, Any]],
    max_tokens: int | None,
) -> str:
    """One ``memory_summary`` call: the previous summary with the turns ``views`` folded in.

    ``views`` are the turns as the model sees them. Any failure (the client's, or an answer
    that is not ``{"summary": str}``) raises; the caller retries.
    """
    result = await llm.complete(
        messages=_messages(previous, views, max_tokens), response_format=SUMMARY_FORMAT
    )
    return _parse(LLMResult.coerce(result).text)
