"""The tool catalog: what a planner is told about the nodes it may call.

``NodeSpec`` is one checked catalog entry (its JSON schemas computed once) and ``build_catalog``
turns nodes and ``@tool`` functions (see ``_tool``) into entries, reporting every problem it
finds in one ``ValueError``.
"""

from __future__ import annotations

import functools
import inspect
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, cast

from pydantic import BaseModel

from ._node import Node, NodeFunc
from ._registry import ModelRegistry
from ._registry import _annotated_models as annotated_models  # pyright: ignore[reportPrivateUsage]
from ._tool import (
    NO_EXTRA,
    SideEffect,
    ToolInputExample,
    ToolLoadingMode,
    check_examples,
    check_loading_mode,
    check_side_effect,
    metadata_of,
    unique,
    unwrapped,
)

__all__ = ["NodeSpec", "build_catalog"]

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_RESERVED = ("final_response", "parallel")
"""Names the planner's own actions use."""


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """One catalog entry: a node, its argument and result models, and what a planner is told.

    Built by ``build_catalog`` (penguiflow-tools builds them for MCP, UTCP and A2A tools). The
    fields are read-only; the JSON schemas of both models are computed once, at construction.

    Raises:
        ValueError: ``name`` does not match ``^[A-Za-z0-9_.-]{1,64}$``, differs from
            ``node.name``, or is reserved (``final_response``, ``parallel``); or a field value
            is out of range (``side_effects``, ``loading_mode``, an example).
        TypeError: ``args_model`` or ``out_model`` is not a pydantic ``BaseModel`` subclass.
    """

    node: Node
    """The node that runs the tool."""
    name: str
    """The tool's name (the node's name)."""
    desc: str
    """What the tool does, for the model."""
    args_model: type[BaseModel]
    """The model of the tool's arguments (the node's input)."""
    out_model: type[BaseModel]
    """The model of the tool's result (the node's output)."""
    side_effects: SideEffect = "pure"
    """What calling the tool does to the world."""
    tags: Sequence[str] = ()
    """Labels for filtering tools."""
    auth_scopes: Sequence[str] = ()
    """Scopes a caller needs."""
    cost_hint: str | None = None
    """A word on what a call costs."""
    latency_hint_ms: int | None = None
    """Typical duration of a call."""
    safety_notes: str | None = None
    """Cautions for the model."""
    needs_approval: bool = False
    """Whether a human approves each call first."""
    loading_mode: ToolLoadingMode = ToolLoadingMode.ALWAYS
    """When a planner lists the tool."""
    examples: Sequence[ToolInputExample] = ()
    """Example calls."""
    extra: Mapping[str, Any] = NO_EXTRA
    """Anything else (read-only); its JSON-safe entries go into the tool record."""
    _schemas: tuple[dict[str, Any], dict[str, Any]] = field(
        init=False, repr=False, compare=False, default=({}, {})
    )

    def __post_init__(self) -> None:
        name = self.name
        if not isinstance(name, str) or not _NAME.match(name):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ValueError(
                f"tool name {name!r} must match ^[A-Za-z0-9_.-]{{1,64}}$ (letters, digits, _ . -)"
            )
        if name in _RESERVED:
            raise ValueError(
                f"tool name {name!r} is reserved for the planner's own actions "
                f"({', '.join(_RESERVED)}); rename the node"
            )
        if not isinstance(self.node, Node):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(f"tool {name!r}: node must be a Node, got {self.node!r}")
        if name != self.node.name:
            raise ValueError(f"tool name {name!r} must equal its node's name {self.node.name!r}")
        for role in ("args_model", "out_model"):
            model: object = getattr(self, role)
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                raise TypeError(
                    f"tool {name!r}: {role} must be a pydantic BaseModel subclass, got {model!r}"
                )
        put = functools.partial(object.__setattr__, self)
        put("side_effects", check_side_effect(self.side_effects))
        put("loading_mode", check_loading_mode(self.loading_mode))
        put("tags", unique(self.tags))
        put("auth_scopes", unique(self.auth_scopes))
        put("examples", check_examples(self.examples))
        put("extra", MappingProxyType(dict(self.extra)))
        schemas = (self.args_model.model_json_schema(), self.out_model.model_json_schema())
        put("_schemas", schemas)

    @property
    def args_schema(self) -> dict[str, Any]:
        """The JSON schema of ``args_model`` (computed once; each call returns a fresh copy)."""
        return _json_copy(self._schemas[0])

    @property
    def out_schema(self) -> dict[str, Any]:
        """The JSON schema of ``out_model`` (computed once; each call returns a fresh copy)."""
        return _json_copy(self._schemas[1])

    def examples_payload(self) -> list[dict[str, Any]]:
        """The examples as JSON-safe dicts (``args``, ``description``, ``tags``)."""
        return [example.model_dump(mode="json") for example in self.examples]

    def to_tool_record(self) -> dict[str, Any]:
        """The entry as a JSON-safe dict for prompting.

        Keys: ``name``, ``desc``, ``side_effects``, ``loading_mode``, ``tags``, ``auth_scopes``,
        ``hints`` (``cost_hint``, ``latency_hint_ms``, ``safety_notes``, ``needs_approval``),
        ``args_schema``, ``out_schema``, ``extra`` (only its JSON-serialisable entries) and
        ``examples``.
        """
        return {
            "name": self.name,
            "desc": self.desc,
            "side_effects": self.side_effects,
            "loading_mode": self.loading_mode.value,
            "tags": list(self.tags),
            "auth_scopes": list(self.auth_scopes),
            "hints": {
                "cost_hint": self.cost_hint,
                "latency_hint_ms": self.latency_hint_ms,
                "safety_notes": self.safety_notes,
                "needs_approval": self.needs_approval,
            },
            "args_schema": self.args_schema,
            "out_schema": self.out_schema,
            "extra": {k: v for k, v in self.extra.items() if _json_safe(v)},
            "examples": self.examples_payload(),
        }


def build_catalog(
    nodes: Iterable[Node | NodeFunc],
    registry: ModelRegistry | None = None,
    *,
    default_loading_mode: ToolLoadingMode | str | None = None,
) -> list[NodeSpec]:
    """One ``NodeSpec`` per node, in order.

    Args:
        nodes: ``Node`` objects or async functions (usually ``@tool``-decorated), which are
            wrapped as ``Node(func, policy=<the @tool policy>)``.
        registry: Where the models come from for the nodes it has; other nodes' models come
            from their annotations (first parameter = arguments, return = result, as in
            ``ModelRegistry.from_annotations``).
        default_loading_mode: The loading mode of entries without ``@tool`` metadata
            (default ``ALWAYS``).

    Raises:
        ValueError: Listing every problem found (duplicate names, models that cannot be
            resolved or are not ``BaseModel`` subclasses, invalid names, functions that are not
            async), all in one message.
    """
    default = ToolLoadingMode.ALWAYS
    if default_loading_mode is not None:
        default = check_loading_mode(default_loading_mode)
    specs: list[NodeSpec] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(nodes):
        where = f"entry {index}"
        try:
            if isinstance(item, Node):
                node = item
            else:
                meta = metadata_of(item)
                node = Node(item, policy=None if meta is None else meta.policy)
            where = f"tool {node.name!r}"
            if node.name in seen:
                problems.append(
                    f"duplicate tool name {node.name!r} (entries {seen[node.name]} and {index})"
                )
                continue
            seen[node.name] = index
            specs.append(_spec(node, registry, default))
        except (TypeError, ValueError) as exc:
            text = str(exc)
            problems.append(text if text.startswith(("tool ", "tool name")) else f"{where}: {text}")
    if problems:
        raise ValueError(
            f"cannot build the tool catalog ({len(problems)} problem(s)):\n- "
            + "\n- ".join(problems)
        )
    return specs


def _spec(node: Node, registry: ModelRegistry | None, default: ToolLoadingMode) -> NodeSpec:
    if registry is not None and registry.has(node.name):
        args_model, out_model = registry.models(node.name)
    else:
        try:
            args_model, out_model = annotated_models(node)
        except Exception as exc:  # unresolvable annotations: reported with the others
            raise ValueError(
                f"cannot resolve its models from annotations ({exc}); annotate "
                "`async def f(args: ArgsModel, ctx) -> OutModel` or register it in the registry"
            ) from exc
    meta = metadata_of(node.func)
    desc = meta.desc if meta is not None else None
    return NodeSpec(
        node=node,
        name=node.name,
        desc=desc or inspect.getdoc(unwrapped(node.func)) or node.name,
        args_model=args_model,
        out_model=out_model,
        side_effects=meta.side_effects if meta else "pure",
        tags=meta.tags if meta else (),
        auth_scopes=meta.auth_scopes if meta else (),
        cost_hint=meta.cost_hint if meta else None,
        latency_hint_ms=meta.latency_hint_ms if meta else None,
        safety_notes=meta.safety_notes if meta else None,
        needs_approval=meta.needs_approval if meta else False,
        loading_mode=meta.loading_mode if meta else default,
        examples=meta.examples if meta else (),
        extra=meta.extra if meta else {},
    )


def _json_safe(value: object) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _json_copy(value: Any) -> Any:
    """A deep copy of a JSON document (dicts, lists and scalars), much cheaper than deepcopy."""
    if isinstance(value, dict):
        return {key: _json_copy(item) for key, item in cast(dict[str, Any], value).items()}
    if isinstance(value, list):
        return [_json_copy(item) for item in cast(list[Any], value)]
    return value
