"""Catalog entries of a source: one ``NodeSpec`` per remote tool, resource and prompt tool."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from pydantic import BaseModel, Field, create_model

from penguiflow.core import Node, NodePolicy, NodeSpec, SideEffect

from ._config import ExternalToolConfig
from ._schema import json_schema_to_model
from ._types import ToolResult

__all__ = ["CallFn", "Remote", "builtin_remotes", "make_remote", "tool_remote"]

CallFn = Callable[[str, Any, Any], Awaitable[ToolResult]]
"""``call(spec_name, args, ctx)``: the node's one call path."""
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True, slots=True)
class Remote:
    """A spec and how to reach what it stands for."""

    spec: NodeSpec
    remote: str
    idempotent: bool
    kind: str = "tool"
    """``tool``, or the MCP method a resource/prompt tool stands for."""


_STR = {"type": "string"}
_BUILTINS: dict[str, tuple[str, str, dict[str, Any]]] = {
    # kind: (capability, description, input schema)
    "resources/list": ("resources", "List the resources the MCP server offers.", {}),
    "resources/read": (
        "resources",
        "Read one resource of the MCP server by its URI.",
        {"properties": {"uri": {**_STR, "description": "The resource URI."}}, "required": ["uri"]},
    ),
    "resources/templates/list": (
        "resources",
        "List the resource URI templates the MCP server offers.",
        {},
    ),
    "prompts/list": ("prompts", "List the prompts the MCP server offers.", {}),
    "prompts/get": (
        "prompts",
        "Render one prompt of the MCP server with its arguments.",
        {
            "properties": {
                "name": {**_STR, "description": "The prompt name."},
                "arguments": {
                    "type": "object",
                    "additionalProperties": _STR,
                    "default": {},
                    "description": "The prompt's arguments.",
                },
            },
            "required": ["name"],
        },
    ),
}


def builtin_remotes(config: ExternalToolConfig, capabilities: Any, call: CallFn) -> list[Remote]:
    """Resource and prompt tools for what the server advertises and the config exposes."""
    wanted = {
        "resources": config.expose_resources and capabilities.resources is not None,
        "prompts": config.expose_prompts and capabilities.prompts is not None,
    }
    built: list[Remote] = []
    for kind, (capability, desc, props) in _BUILTINS.items():
        if not wanted[capability]:
            continue
        schema = {"type": "object", **props, "additionalProperties": False}
        remote = kind.replace("/templates/", "_templates_").replace("/", "_")
        annotations = {"readOnlyHint": True}
        built.append(
            make_remote(
                config, call, remote, desc, schema, None, annotations, [capability], kind=kind
            )
        )
    return built


def tool_remote(config: ExternalToolConfig, tool: Any, call: CallFn) -> Remote:
    """The catalog entry of one remote MCP tool."""
    annotations: dict[str, Any] = (
        tool.annotations.model_dump(mode="json", by_alias=True, exclude_none=True)
        if tool.annotations is not None
        else {}
    )
    tool_meta: Any = tool.meta
    meta_tags: Any = (
        cast(dict[str, Any], tool_meta).get("tags") if isinstance(tool_meta, dict) else None
    )
    remote_tags = [t for t in cast(list[Any], meta_tags or []) if isinstance(t, str)]
    return make_remote(
        config,
        call,
        tool.name,
        tool.description or "",
        dict(tool.input_schema or {}),
        tool.output_schema,
        annotations,
        remote_tags,
    )


def make_remote(
    config: ExternalToolConfig,
    call: CallFn,
    remote_name: str,
    desc: str,
    input_schema: dict[str, Any],
    output_schema: dict[str, Any] | None,
    annotations: dict[str, Any],
    remote_tags: list[str],
    *,
    kind: str = "tool",
    source: str = "mcp",
    idempotent: bool | None = None,
) -> Remote:
    """One catalog entry: the spec (name, models, side effects, tags, extra) and its route.

    ``side_effects`` and ``idempotent`` follow the MCP annotations unless ``idempotent`` is
    given (UTCP: ``GET``); ``source`` tags the spec and fills ``extra["source"]``.
    """
    ns = config.name
    name = f"{ns}.{_UNSAFE.sub('_', remote_name)}"
    side_effects: SideEffect = "external"
    if annotations.get("readOnlyHint") is True:
        side_effects = "read"
    elif annotations.get("destructiveHint") is True:
        side_effects = "write"
    if idempotent is None:
        idempotent = bool(
            annotations.get("readOnlyHint") is True or annotations.get("idempotentHint") is True
        )
    args_model = json_schema_to_model(input_schema, name=f"{name}.args")
    out_model = cast(
        type[BaseModel],
        create_model(
            re.sub(r"\W", "_", f"{name}_result"),
            __base__=ToolResult,
            result=(
                Any,
                Field(
                    None,
                    description="The tool's value (its remote output schema, not enforced).",
                    json_schema_extra=(
                        {"x-output-schema": _documented(output_schema)} if output_schema else None
                    ),
                ),
            ),
        ),
    )

    async def run(args: Any, ctx: Any) -> ToolResult:
        return await call(name, args, ctx)

    spec = NodeSpec(
        node=Node(run, name=name, policy=NodePolicy(validate="none", max_retries=0)),
        name=name,
        desc=desc,
        args_model=args_model,
        out_model=out_model,
        side_effects=side_effects,
        tags=(source, ns, *remote_tags),
        extra={
            "source": source,
            "namespace": ns,
            "remote_name": remote_name if kind == "tool" else kind,
            "input_schema": json.loads(json.dumps(input_schema)),
            "output_schema": output_schema,
            "annotations": annotations,
        },
    )
    return Remote(spec=spec, remote=remote_name, idempotent=idempotent, kind=kind)


def _documented(schema: Mapping[str, Any]) -> Any:
    """The remote output schema as documentation inside ours.

    Its own ``$ref``s point into its own ``$defs``, which pydantic would try to resolve against
    the enclosing model's definitions (a ``KeyError``), so such a schema is embedded as its JSON
    text.
    """
    text = json.dumps(schema, sort_keys=True, default=str)
    return text if '"$ref"' in text else dict(schema)
