"""``@tool``: catalog metadata on a node function, and the value types it is made of.

``build_catalog`` (in ``_catalog``) reads what ``@tool`` stores; the helpers here check and
normalise the fields that ``tool()`` and ``NodeSpec`` share.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any, ClassVar, Literal, cast, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ._node import NodeFunc, NodePolicy

__all__ = [
    "NO_EXTRA",
    "ExampleInput",
    "SideEffect",
    "ToolInputExample",
    "ToolLoadingMode",
    "ToolMetadata",
    "check_examples",
    "check_loading_mode",
    "check_side_effect",
    "metadata_of",
    "tool",
    "unique",
    "unwrapped",
]

SideEffect = Literal["pure", "read", "write", "external", "stateful"]
"""What calling a tool does to the world, from ``"pure"`` (nothing) to ``"stateful"``."""
_SIDE_EFFECTS: tuple[str, ...] = get_args(SideEffect)
NO_EXTRA: Mapping[str, Any] = MappingProxyType({})


class ToolLoadingMode(StrEnum):
    """When a planner shows a tool to the model (penguiflow-tools uses ``DEFERRED``)."""

    ALWAYS = "always"
    """Listed in every prompt."""
    DEFERRED = "deferred"
    """Loaded on demand; the 0.1 planner lists these like ``ALWAYS``."""


class ToolInputExample(BaseModel):
    """One example call of a tool, shown to the model."""

    model_config: ClassVar[ConfigDict] = ConfigDict(frozen=True, defer_build=True)

    args: dict[str, Any]
    """The arguments, as the model would write them (must be JSON-serialisable)."""
    description: str | None = None
    """What the example shows."""
    tags: list[str] = Field(default_factory=list[str])
    """Labels for selecting examples."""

    @model_validator(mode="after")
    def _args_are_json(self) -> ToolInputExample:
        try:
            json.dumps(self.args)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"ToolInputExample.args must be JSON-serialisable ({exc}); use plain dicts, "
                "lists, strings, numbers, booleans and None"
            ) from exc
        return self


ExampleInput = ToolInputExample | Mapping[str, Any]
"""An example as ``@tool`` takes it: a ``ToolInputExample`` or a mapping of its fields."""


@dataclass(frozen=True, slots=True)
class ToolMetadata:
    """What ``@tool`` stores on a function as ``__penguiflow_tool__``.

    The ``NodeSpec`` fields it fills, and the ``policy`` of the ``Node`` that ``build_catalog``
    wraps a bare function in.
    """

    desc: str | None = None
    side_effects: SideEffect = "pure"
    tags: tuple[str, ...] = ()
    auth_scopes: tuple[str, ...] = ()
    cost_hint: str | None = None
    latency_hint_ms: int | None = None
    safety_notes: str | None = None
    needs_approval: bool = False
    loading_mode: ToolLoadingMode = ToolLoadingMode.ALWAYS
    examples: tuple[ToolInputExample, ...] = ()
    policy: NodePolicy | None = None
    extra: Mapping[str, Any] = NO_EXTRA


def tool(
    *,
    desc: str | None = None,
    side_effects: SideEffect = "pure",
    tags: Sequence[str] = (),
    auth_scopes: Sequence[str] = (),
    cost_hint: str | None = None,
    latency_hint_ms: int | None = None,
    safety_notes: str | None = None,
    needs_approval: bool = False,
    loading_mode: ToolLoadingMode | str = ToolLoadingMode.ALWAYS,
    examples: Sequence[ExampleInput] = (),
    policy: NodePolicy | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Callable[[NodeFunc], NodeFunc]:
    """Mark an async node function as a tool: store catalog metadata on it, return it unchanged.

    The metadata lives in the function's ``__penguiflow_tool__`` attribute; ``build_catalog``
    reads it. ``desc`` defaults to the docstring, then the name; ``policy`` is the
    ``NodePolicy`` used when ``build_catalog`` wraps the bare function in a ``Node``.

    Raises:
        ValueError: An unknown ``side_effects`` or ``loading_mode``, a negative
            ``latency_hint_ms``, or an example whose ``args`` are not JSON-serialisable.
        TypeError: ``policy`` is not a ``NodePolicy``, or an example is neither a
            ``ToolInputExample`` nor a mapping.
    """
    if policy is not None and not isinstance(policy, NodePolicy):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError(f"@tool(policy=...) must be a NodePolicy, got {policy!r}")
    if latency_hint_ms is not None and latency_hint_ms < 0:
        raise ValueError(f"@tool(latency_hint_ms=...) must be >= 0, got {latency_hint_ms}")
    metadata = ToolMetadata(
        desc=desc,
        side_effects=check_side_effect(side_effects),
        tags=unique(tags),
        auth_scopes=unique(auth_scopes),
        cost_hint=cost_hint,
        latency_hint_ms=latency_hint_ms,
        safety_notes=safety_notes,
        needs_approval=needs_approval,
        loading_mode=check_loading_mode(loading_mode),
        examples=check_examples(examples),
        policy=policy,
        extra=MappingProxyType(dict(extra or {})),
    )

    def mark(func: NodeFunc) -> NodeFunc:
        cast(Any, func).__penguiflow_tool__ = metadata
        return func

    return mark


def unwrapped(func: object) -> object:
    while isinstance(func, functools.partial):
        func = cast(functools.partial[Any], func).func
    return func


def metadata_of(func: object) -> ToolMetadata | None:
    meta = getattr(func, "__penguiflow_tool__", None)
    if meta is None:
        meta = getattr(unwrapped(func), "__penguiflow_tool__", None)
    return meta if isinstance(meta, ToolMetadata) else None


def check_side_effect(value: str) -> SideEffect:
    if value not in _SIDE_EFFECTS:
        raise ValueError(f"side_effects must be one of {_SIDE_EFFECTS}, got {value!r}")
    return cast(SideEffect, value)


def check_loading_mode(value: ToolLoadingMode | str) -> ToolLoadingMode:
    try:
        return ToolLoadingMode(value)
    except ValueError:
        modes = [mode.value for mode in ToolLoadingMode]
        raise ValueError(f"loading_mode must be one of {modes}, got {value!r}") from None


def unique(values: Iterable[str]) -> tuple[str, ...]:
    if isinstance(values, str):
        raise TypeError(f"pass a sequence of strings, not the string {values!r}")
    return tuple(dict.fromkeys(values))


def check_examples(examples: Iterable[ExampleInput]) -> tuple[ToolInputExample, ...]:
    parsed: list[ToolInputExample] = []
    for example in examples:
        if isinstance(example, ToolInputExample):
            parsed.append(example)
        elif isinstance(example, Mapping):  # pyright: ignore[reportUnnecessaryIsInstance]
            parsed.append(ToolInputExample.model_validate(example))
        else:
            raise TypeError(
                f"an example must be a ToolInputExample or a mapping of its fields, got {example!r}"
            )
    return tuple(parsed)
