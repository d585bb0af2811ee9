"""Routers: nodes that choose which successors get a message, optionally steered by a policy."""

from __future__ import annotations

import inspect
import json
import os
import typing
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast, runtime_checkable

from pydantic import TypeAdapter

from ._context import Context
from ._node import Node, NodePolicy
from ._trace import current_trace_id
from ._types import Message

__all__ = [
    "DictRoutingPolicy",
    "RoutingDecision",
    "RoutingPolicy",
    "RoutingRequest",
    "evaluate_policy",
    "predicate_router",
    "union_router",
]

RouteTarget = Node | str
"""A successor, as its ``Node`` or its name."""
RoutingDecision = RouteTarget | Sequence[RouteTarget] | None
"""A successor or several; None or an empty sequence drops the message."""


@dataclass(frozen=True, slots=True)
class RoutingRequest:
    """What a routing policy sees when it decides."""

    message: Any
    """The message being routed (for a union router, carrying the validated variant)."""
    context: Context
    """The router node's context."""
    node: Node
    """The router node."""
    proposed: tuple[Node, ...]
    """The successors the router's own logic chose (never empty: a drop is decided first)."""
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
        """Return the successor(s) to use; None or an empty sequence drops the message.

        Return ``request.proposed`` to keep the router's own choice.
        """
        ...


PolicyLike = RoutingPolicy | Callable[[RoutingRequest], Any]


async def evaluate_policy(policy: PolicyLike, request: RoutingRequest) -> RoutingDecision:
    """Ask ``policy`` for its decision on ``request``, awaiting it when it is async.

    ``policy`` is a :class:`RoutingPolicy` (its ``select`` is called) or a plain callable taking the
    request. Useful for writing your own router node.
    """
    policy_any: Any = policy
    select = getattr(policy_any, "select", policy_any)
    decision = select(request)
    if inspect.isawaitable(decision):
        decision = await decision
    return typing.cast(RoutingDecision, decision)


MappingValue = RoutingDecision
"""What a key of a :class:`DictRoutingPolicy` maps to."""


class DictRoutingPolicy:
    """Route by looking a key up in a mapping of key → successor name(s).

    The key is the request's trace id unless ``key_getter`` picks something else (for example
    ``key_getter=lambda r: r.message.headers.tenant`` routes by tenant). A key that is None or
    missing from the mapping uses ``default``. A decision of None drops the message.
    """

    def __init__(
        self,
        mapping: Mapping[str, MappingValue],
        *,
        default: MappingValue = None,
        key_getter: Callable[[RoutingRequest], str | None] | None = None,
    ) -> None:
        self._mapping: dict[str, MappingValue] = _checked_mapping(mapping, "the mapping")
        self._default: MappingValue = _checked_value(default, "default")
        self._key_getter = key_getter or _trace_id_of

    def select(self, request: RoutingRequest) -> RoutingDecision:
        """Look up the request's key."""
        key = self._key_getter(request)
        if key is None:
            return self._default
        return self._mapping.get(key, self._default)

    def update_mapping(self, mapping: Mapping[str, MappingValue]) -> None:
        """Replace the whole mapping (takes effect for the next message); the default stays."""
        self._mapping = _checked_mapping(mapping, "the mapping")

    def set_default(self, default: MappingValue) -> None:
        """Change the fallback decision (None: drop messages whose key is not mapped)."""
        self._default = _checked_value(default, "default")

    @property
    def mapping(self) -> Mapping[str, MappingValue]:
        """A copy of the current mapping."""
        return dict(self._mapping)

    def targets(self) -> set[str]:
        """Every successor name the policy can return (checked against the graph at run())."""
        names: set[str] = set()
        for value in [*self._mapping.values(), self._default]:
            names.update(_names(value))
        return names

    @classmethod
    def from_json(
        cls,
        text: str,
        *,
        default: MappingValue = None,
        key_getter: Callable[[RoutingRequest], str | None] | None = None,
    ) -> DictRoutingPolicy:
        """Build from JSON: a ``{key: target}`` object, or ``{"mapping": {...}, "default": ...}``.

        A ``default`` argument wins over one in the JSON. Raises ``TypeError`` when the JSON is not
        an object (or maps a key to something that is not a name, a list of names or null) and
        ``ValueError`` (``json.JSONDecodeError``) when it is not JSON.
        """
        data = json.loads(text)
        if not isinstance(data, dict):
            raise TypeError(
                "routing policy JSON must decode to a mapping (an object of key -> successor "
                f"name, list of names or null), got {type(data).__name__}: {text[:80]!r}. "
                'Write e.g. {"acme": "premium", "beta": ["a", "b"]}'
            )
        data = typing.cast(dict[str, Any], data)
        if _is_wrapped(data):
            mapping = typing.cast(dict[str, Any], data["mapping"])
            if default is None:
                default = data.get("default")
            return cls(mapping, default=default, key_getter=key_getter)
        return cls(data, default=default, key_getter=key_getter)

    @classmethod
    def from_json_file(
        cls,
        path: str | os.PathLike[str],
        *,
        default: MappingValue = None,
        key_getter: Callable[[RoutingRequest], str | None] | None = None,
    ) -> DictRoutingPolicy:
        """Build from a UTF-8 JSON file (same shapes and errors as :meth:`from_json`)."""
        text = Path(path).read_text(encoding="utf-8")
        return cls.from_json(text, default=default, key_getter=key_getter)

    @classmethod
    def from_env(
        cls,
        variable: str,
        *,
        loader: Callable[[str], Mapping[str, MappingValue]] | None = None,
        default: MappingValue = None,
        key_getter: Callable[[RoutingRequest], str | None] | None = None,
    ) -> DictRoutingPolicy:
        """Build from environment variable ``variable``.

        Its text is parsed by ``loader`` (which must return a mapping) or, by default, as JSON
        with :meth:`from_json`. Raises ``KeyError`` when the variable is not set and ``TypeError``
        when the parsed value is not a mapping.
        """
        text = os.environ.get(variable)
        if text is None:
            raise KeyError(
                f"Environment variable {variable!r} not set; set it to the routing table as JSON, "
                "an object of key -> successor name(s)"
            )
        if loader is None:
            return cls.from_json(text, default=default, key_getter=key_getter)
        data: Any = loader(text)
        if not isinstance(data, Mapping):
            raise TypeError(
                f"the loader given to DictRoutingPolicy.from_env({variable!r}) must return a "
                f"mapping of key -> successor name(s), got {type(data).__name__}"
            )
        return cls(
            typing.cast(Mapping[str, MappingValue], data), default=default, key_getter=key_getter
        )

    def __repr__(self) -> str:
        return f"DictRoutingPolicy({self._mapping!r}, default={self._default!r})"


def _trace_id_of(request: RoutingRequest) -> str | None:
    return request.trace_id


def _is_wrapped(data: dict[str, Any]) -> bool:
    """``{"mapping": {...}, "default": ...}`` rather than a table with a key named "mapping"."""
    return (
        "mapping" in data
        and isinstance(data["mapping"], dict)
        and set(data) <= {"mapping", "default"}
    )


def _checked_mapping(mapping: Mapping[str, Any], where: str) -> dict[str, MappingValue]:
    if not isinstance(mapping, Mapping):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError(
            f"DictRoutingPolicy needs a mapping of key -> successor name(s), got "
            f"{type(mapping).__name__}"
        )
    return {key: _checked_value(value, f"{where}[{key!r}]") for key, value in mapping.items()}


def _checked_value(value: Any, where: str) -> MappingValue:
    try:
        _names(value)
    except TypeError:
        raise TypeError(
            f"DictRoutingPolicy: {where} must be a successor name, a Node, a list of them or "
            f"None, got {type(value).__name__}: {value!r}"
        ) from None
    return typing.cast(MappingValue, value)


def _names(decision: Any) -> list[str]:
    """Successor names of a decision; TypeError for anything that is not a Node or a name."""
    if decision is None:
        return []
    if isinstance(decision, Node | str):
        items: list[Any] = [decision]
    elif isinstance(decision, Sequence | set | frozenset):
        items = list(typing.cast(typing.Iterable[Any], decision))
    else:
        raise TypeError(
            "a routing decision must be a successor name, a Node, a sequence of them or None, "
            f"got {type(decision).__name__}: {decision!r}"
        )
    names: list[str] = []
    for item in items:
        if isinstance(item, Node):
            names.append(item.name)
        elif isinstance(item, str):
            names.append(item)
        else:
            raise TypeError(
                "routing targets must be Node objects or successor names (str), got "
                f"{type(item).__name__}: {item!r}"
            )
    return names


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class _Router:
    """Node function shared by the routers: choose, let the policy override, emit."""

    def __init__(
        self,
        choose: Callable[[Any], Awaitable[tuple[Any, Any]]],
        policy: PolicyLike | None,
    ) -> None:
        self._choose = choose
        self._policy = policy

    def static_targets(self) -> set[str]:
        """Successor names this router may pick that are known before running."""
        targets = getattr(self._policy, "targets", None)
        if callable(targets):
            return set(typing.cast(set[str], targets()))
        return set()

    async def __call__(self, message: Any, ctx: Context) -> None:
        out, decision = await self._choose(message)
        # Resolving checks every name, so an unknown one fails naming the valid successors.
        proposed = tuple(ctx.successor(name) for name in _names(decision))
        if not proposed:
            return  # the router's own logic dropped it; a policy is not consulted
        if self._policy is not None:
            request = RoutingRequest(
                message=out,
                context=ctx,
                node=cast(Node, ctx.owner),  # in a running flow a context's owner is its node
                proposed=proposed,
                trace_id=message.trace_id if isinstance(message, Message) else current_trace_id(),
            )
            chosen = await evaluate_policy(self._policy, request)
            proposed = tuple(ctx.successor(name) for name in _names(chosen))
            if not proposed:
                return
        await ctx.emit(out, to=list(proposed))


def predicate_router(
    name: str,
    predicate: Callable[[Any], Any],
    *,
    policy: PolicyLike | None = None,
    node_policy: NodePolicy | None = None,
) -> Node:
    """A node that sends each message to the successor(s) ``predicate(message)`` returns.

    The predicate (sync or async) returns a node, a successor name, a sequence of them, or None
    (or an empty sequence) to drop the message. ``policy`` may then override the choice per
    message; the policy is not consulted for a message the predicate dropped, and a policy
    decision of None (or empty) drops it too. A name that is not a successor fails with
    ``KeyError`` naming the valid successors.
    """

    async def choose(message: Any) -> tuple[Any, Any]:
        return message, await _maybe_await(predicate(message))

    router = _Router(choose, policy)
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
    message carries the validated variant onwards. The router need not be connected to every
    variant: a variant without a successor of its name fails at run time with ``KeyError`` naming
    the valid successors. ``policy`` may override the choice (None or empty drops the message).
    """
    adapter: TypeAdapter[Any] = TypeAdapter(union_model)

    async def choose(message: Any) -> tuple[Any, Any]:
        payload = message.payload if isinstance(message, Message) else message
        variant = adapter.validate_python(payload)
        kind = getattr(variant, "kind", None)
        target = kind if isinstance(kind, str) else type(variant).__name__
        out = message.with_payload(variant) if isinstance(message, Message) else variant
        return out, target

    router = _Router(choose, policy)
    return Node(router, name=name, policy=node_policy or NodePolicy(validate="none"))
