"""MCP results as values: structured content, parsed text blocks, resource and prompt results."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["builtin_call", "json_content", "text_of", "value_of"]


async def builtin_call(
    client: Any, kind: str, payload: dict[str, Any], meta: dict[str, Any]
) -> Any:
    """Send the MCP request a resource/prompt tool stands for; its result as JSON."""
    if kind == "resources/list":
        result = await client.list_resources(meta=meta)
    elif kind == "resources/templates/list":
        result = await client.list_resource_templates(meta=meta)
    elif kind == "resources/read":
        result = await client.read_resource(payload["uri"], meta=meta)
    elif kind == "prompts/list":
        result = await client.list_prompts(meta=meta)
    else:
        result = await client.get_prompt(
            payload["name"], payload.get("arguments") or None, meta=meta
        )
    dumped: dict[str, Any] = result.model_dump(mode="json", by_alias=True, exclude_none=True)
    for envelope in ("_meta", "ttlMs", "cacheScope", "resultType", "nextCursor"):
        dumped.pop(envelope, None)
    return dumped


def json_content(blocks: list[Any]) -> list[Any]:
    """Content blocks as JSON."""
    return [b.model_dump(mode="json", by_alias=True, exclude_none=True) for b in blocks]


def text_of(blocks: list[Any]) -> str:
    """The text blocks joined."""
    return "\n".join(b.text for b in blocks if getattr(b, "type", None) == "text")


def _block_value(block: Any) -> Any:
    if getattr(block, "type", None) == "text":
        text: str = block.text
        stripped = text.strip()
        if stripped[:1] in ("{", "["):
            try:
                return json.loads(stripped)
            except ValueError:
                return text
        return text
    return block.model_dump(mode="json", by_alias=True, exclude_none=True)


def value_of(result: Any) -> Any:
    """``structured_content`` when present, else one block's value, else a list of them."""
    if result.structured_content is not None:
        return result.structured_content
    blocks: list[Any] = list(result.content)
    if len(blocks) == 1:
        return _block_value(blocks[0])
    return [_block_value(b) for b in blocks]
