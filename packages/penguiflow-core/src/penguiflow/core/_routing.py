"""Routers: nodes that choose which successors get a message, optionally steered by a policy."""

from __future__ import annotations

import inspect
import json
import os
import types
import typing
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, TypeAdapter

from ._context import Context, Target
from ._node import Node, NodePolicy
from ._trace import current_trace_id
from ._types import Message

__all__ = [
    "DictRoutingPolicy",
    "RoutingDecision",
    "RoutingPolicy",
    "RoutingRequest",
    "predicate_router",
    "union_router",
]

RoutingDecision = Target | Sequence[Target] | None
"""A successor, several, or None (for a predicate: drop; for a policy: keep the proposal)."""


@dataclass(frozen=True, slots=True)
class RoutingRequest:
    """What a routing policy sees when it decides."""

    message: Any
    """The message being routed."""
    context: Context
    """The router node's context."""
    node: Node
    """The router node."""
    proposed: tuple[Node, ...]
    """The successors the router's own logic chose."""
    trace_id: str | None
    """The message's trace."""

    @property
    def node_name(self) -> str:
        """The router's name."""
        return self.node.name

    @property
    def proposed_names(self) -> tuple[str, ...]:
        """Names of the proposed successors."""
        return tuple(n.name for n in self.proposed)


@runtime_checkable
class RoutingPolicy(Protocol):
    """Overrides a router's choice. ``select`` may be sync or async; plain callables work too."""

    def select(self, request: RoutingRequest) -> RoutingDecision | Awaitable[RoutingDecision]:
        """Return successor(s) to use instead of ``request.proposed``, or None to keep them."""
        ...


PolicyLike = RoutingPolicy | Callable[[RoutingRequest], Any]


class DictRoutingPolicy:
    """Route by looking a key up in a mapping of key → successor name(s).

    The key defaults to the message's tenant (``message.headers.tenant``); pass ``key_getter`` to
    key on something else. A missing key uses ``default``; when that is None too, the router keeps
    its own proposal.
    """

    def __init__(
        self,
        mapping: Mapping[str, str | Sequence[str] | None],
        *,
        default: str | Sequence[str] | None = None,
        key_getter: Callable[[RoutingRequest], str | None] | None = None,
    ) -> None:
        self._mapping: dict[str, str | Sequence[str] | None] = dict(mapping)
        self._default = default
        self._key_getter = key_getter or _tenant_of

    def select(self, request: RoutingRequest) -> RoutingDecision:
        """Look up the request's key."""
        key = self._key_getter(request)
        if key is not None and key in self._mapping:
            return self._mapping[key]
        return self._default

    def update_mapping(self, mapping: Mapping[str, str | Sequence[str] | None]) -> None:
        """Merge ``mapping`` into the current one (takes effect for the next message)."""
        self._mapping.update(mapping)

    def set_default(self, default: str | Sequence[str] | None) -> None:
        """Change the fallback target."""
        self._default = default

    @property
    def mapping(self) -> Mapping[str, str | Sequence[str] | None]:
        """The current mapping (read-only view)."""
        return dict(self._mapping)

    def targets(self) -> set[str]:
        """Every successor name the policy can return (checked against the graph at run())."""
        names: set[str] = set()
        for value in [*self._mapping.values(), self._default]:
            if isinstance(value, str):
                names.add(value)
            elif value is not None:
                names.update(value)
        return names

    @classmethod
    def from_json(
        cls, text: str, *, key_getter: Callable[[RoutingRequest], str | None] | None = None
    ) -> DictRoutingPolicy:
        """Build from JSON: ``{"mapping": {...}, "default": ...}`` or a bare ``{key: target}``."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("routing policy JSON must be an object")
        data = typing.cast(dict[str, Any], data)
        if "mapping" in data:
            mapping = data["mapping"]
            if not isinstance(mapping, dict):
                raise ValueError('routing policy JSON: "mapping" must be an object')
            return cls(
                typing.cast(dict[str, Any], mapping),
                default=data.get("default"),
                key_getter=key_getter,
            )
        return cls(data, key_getter=key_getter)

    @classmethod
    def from_json_file(
        cls,
        path: str | os.PathLike[str],
        *,
        key_getter: Callable[[RoutingRequest], str | None] | None = None,
    ) -> DictRoutingPolicy:
        """Build from a JSON file (same shapes as :meth:`from_json`)."""
        return cls.from_json(Path(path).read_text(encoding="utf-8"), key_getter=key_getter)

    @classmethod
    def from_env(
        cls,
        variable: str,
        *,
        key_getter: Callable[[RoutingRequest], str | None] | None = None,
    ) -> DictRoutingPolicy:
        """Build from the JSON held in environment variable ``variable``."""
        try:
            text = os.environ[variable]
        except KeyError:
            raise KeyError(f"environment variable {variable!r} is not set") from None
        return cls.from_json(text, key_getter=key_getter)

    def __repr__(self) -> str:
        return f"DictRoutingPolicy({self._mapping!r}, default={self._default!r})"


def _tenant_of(request: RoutingRequest) -> str | None:
    message = request.message
    return message.headers.tenant if isinstance(message, Message) else None


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def _names(decision: Any) -> list[str]:
    if decision is None:
        return []
    items = [decision] if isinstance(decision, Node | str) else list(decision)
    return [item.name if isinstance(item, Node) else str(item) for item in items]


class _Router:
    """Node function shared by the routers: choose, let the policy override, emit."""

    def __init__(
        self,
        choose: Callable[[Any], Awaitable[tuple[Any, Any]]],
        policy: PolicyLike | None,
        static_targets: set[str],
    ) -> None:
        self._choose = choose
        self._policy = policy
        self._static = static_targets

    def static_targets(self) -> set[str]:
        """Successor names this router may pick that are known before running."""
        names = set(self._static)
        targets = getattr(self._policy, "targets", None)
        if callable(targets):
            names.update(typing.cast(set[str], targets()))
        return names

    async def __call__(self, message: Any, ctx: Context) -> None:
        out, decision = await self._choose(message)
        names = _names(decision)
        if self._policy is not None:
            request = RoutingRequest(
                message=message,
                context=ctx,
                node=ctx.owner,
                proposed=tuple(ctx.successor(name) for name in names),
                trace_id=message.trace_id if isinstance(message, Message) else current_trace_id(),
            )
            policy: Any = self._policy
            select = getattr(policy, "select", policy)
            chosen = await _maybe_await(select(request))
            if chosen is not None:
                names = _names(chosen)
        if names:
            await ctx.emit(out, to=names)


def predicate_router(
    name: str,
    predicate: Callable[[Any], Any],
    *,
    policy: PolicyLike | None = None,
    node_policy: NodePolicy | None = None,
) -> Node:
    """A node that sends each message to the successor(s) ``predicate(message)`` returns.

    The predicate (sync or async) returns a node, a successor name, a sequence of them, or None to
    drop the message. ``policy`` may override the choice per message. A name that is not a successor
    fails with ``KeyError`` naming the valid successors.
    """

    async def choose(message: Any) -> tuple[Any, Any]:
        return message, await _maybe_await(predicate(message))

    router = _Router(choose, policy, set())
    return Node(router, name=name, policy=node_policy or NodePolicy(validate="none"))


def union_router(
    name: str,
    union_model: Any,
    *,
    policy: PolicyLike | None = None,
    node_policy: NodePolicy | None = None,
) -> Node:
    """A node that validates the payload against ``union_model`` and routes by variant.

    The successor is the variant's ``kind`` field when it has one, else its class name; the
    message carries the validated variant onwards.
    """
    adapter: TypeAdapter[Any] = TypeAdapter(union_model)

    async def choose(message: Any) -> tuple[Any, Any]:
        payload = message.payload if isinstance(message, Message) else message
        variant = adapter.validate_python(payload)
        kind = getattr(variant, "kind", None)
        target = kind if isinstance(kind, str) else type(variant).__name__
        out = message.with_payload(variant) if isinstance(message, Message) else variant
        return out, target

    router = _Router(choose, policy, _variant_names(union_model))
    return Node(router, name=name, policy=node_policy or NodePolicy(validate="none"))


def _variant_names(union_model: Any) -> set[str]:
    """Successor names a union router can pick, known from the model alone."""
    names: set[str] = set()
    for member in _union_members(union_model):
        if not (isinstance(member, type) and issubclass(member, BaseModel)):
            continue
        field = member.model_fields.get("kind")
        if field is None:
            names.add(member.__name__)
        elif isinstance(field.default, str):
            names.add(field.default)
    return names


def _union_members(model: Any) -> list[Any]:
    if typing.get_origin(model) is typing.Annotated:
        model = typing.get_args(model)[0]
    if typing.get_origin(model) in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(model) for m in _union_members(arg)]
    return [model]
