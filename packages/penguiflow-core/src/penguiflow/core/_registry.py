"""ModelRegistry: one cached TypeAdapter per node input and output model."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, PydanticSchemaGenerationError, TypeAdapter

from ._node import Node
from ._types import Message

if TYPE_CHECKING:
    from ._flow import PenguiFlow

__all__ = ["ModelRegistry"]


@dataclass(frozen=True, slots=True)
class NodeModels:
    """The adapters registered for one node."""

    in_model: Any
    out_model: Any
    in_adapter: TypeAdapter[Any]
    out_adapter: TypeAdapter[Any]
    out_is_message: bool
    """The node promises a ``Message``: bare payloads are re-wrapped (with a warning) first."""


class ModelRegistry:
    """Maps node names to their input and output models.

    Adapters are built once at registration and reused for every message.
    """

    def __init__(self) -> None:
        self._entries: dict[str, NodeModels] = {}
        self._adapters: dict[Any, TypeAdapter[Any]] = {}

    def register(self, node_name: str, in_model: Any, out_model: Any) -> None:
        """Register the input and output models of ``node_name``.

        A model is any type pydantic can validate: a ``BaseModel`` subclass, a dataclass, or a
        type such as ``str``, ``list[int]``, ``Message`` or a union. Anything else (an instance,
        a string, a class pydantic has no schema for) raises ``TypeError``; a second
        registration of one name raises ``ValueError``.
        """
        if node_name in self._entries:
            raise ValueError(f"node {node_name!r} is already registered; register each node once")
        in_adapter = self._adapter(node_name, "in_model", in_model)
        out_adapter = self._adapter(node_name, "out_model", out_model)
        self._entries[node_name] = NodeModels(
            in_model=in_model,
            out_model=out_model,
            in_adapter=in_adapter,
            out_adapter=out_adapter,
            out_is_message=_is_message_type(out_model),
        )

    def _adapter(self, node_name: str, role: str, model: Any) -> TypeAdapter[Any]:
        key = model if _hashable(model) else id(model)
        adapter = self._adapters.get(key)
        if adapter is None:
            _check_model(node_name, role, model)
            try:
                adapter = TypeAdapter(model)
            except PydanticSchemaGenerationError as exc:
                raise TypeError(
                    f"registry.register({node_name!r}, ...): {role} {model!r} is not a type "
                    f"pydantic can validate ({exc.message.splitlines()[0]}). {_MODEL_HINT}"
                ) from exc
            self._adapters[key] = adapter
        return adapter

    def adapters(self, node_name: str) -> tuple[TypeAdapter[Any], TypeAdapter[Any]]:
        """Return ``(in_adapter, out_adapter)`` for ``node_name`` (``KeyError`` if missing)."""
        entry = self._require(node_name)
        return entry.in_adapter, entry.out_adapter

    def models(self, node_name: str) -> tuple[Any, Any]:
        """Return ``(in_model, out_model)`` for ``node_name`` (``KeyError`` if missing)."""
        entry = self._require(node_name)
        return entry.in_model, entry.out_model

    def _require(self, node_name: str) -> NodeModels:
        try:
            return self._entries[node_name]
        except KeyError:
            raise KeyError(
                f"node {node_name!r} is not registered; call "
                f"registry.register({node_name!r}, InModel, OutModel)"
            ) from None

    def entry(self, node_name: str) -> NodeModels | None:
        """The registered models of ``node_name``, or None."""
        return self._entries.get(node_name)

    def has(self, node_name: str) -> bool:
        """Whether ``node_name`` is registered."""
        return node_name in self._entries

    def __contains__(self, node_name: object) -> bool:
        return node_name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        """Registered node names, in registration order."""
        return list(self._entries)

    @classmethod
    def from_annotations(cls, flow_or_nodes: PenguiFlow | Iterable[Node]) -> ModelRegistry:
        """Build a registry from each node function's own annotations.

        The first parameter's annotation is the input model, the return annotation the output model.
        Nodes with ``validate="none"`` are skipped. Raises ``ValueError`` naming every other node
        whose annotations are missing or cannot be resolved.
        """
        nodes = flow_or_nodes if isinstance(flow_or_nodes, Iterable) else flow_or_nodes.nodes
        registry = cls()
        problems: list[str] = []
        for node in nodes:
            if node.policy.validate == "none":
                continue
            try:
                in_model, out_model = _annotated_models(node)
                registry.register(node.name, in_model, out_model)
            except Exception as exc:  # noqa: BLE001 - reported together below
                problems.append(f"{node.name!r} ({exc})")
        if problems:
            raise ValueError(
                "cannot build a registry from annotations for node(s) "
                + ", ".join(problems)
                + ". Annotate `async def f(message: In, ctx) -> Out`, register them by hand, "
                'or give the node NodePolicy(validate="none").'
            )
        return registry


def _annotated_models(node: Node) -> tuple[Any, Any]:
    func: Any = node.func
    target = func if inspect.isfunction(func) or inspect.ismethod(func) else func.__call__
    hints = typing.get_type_hints(target)
    params = [
        p
        for p in inspect.signature(target).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if not params or params[0].name not in hints:
        raise TypeError("its first parameter has no annotation")
    if "return" not in hints:
        raise TypeError("it has no return annotation")
    return hints[params[0].name], hints["return"]


_MODEL_HINT = "Pass a class such as a pydantic BaseModel subclass, a dataclass, str or list[int]."


def _check_model(node_name: str, role: str, model: Any) -> None:
    """Reject values that are clearly not types before pydantic gives a vaguer error."""
    where = f"registry.register({node_name!r}, ...): {role}"
    if isinstance(model, str):
        raise TypeError(
            f"{where} is the string {model!r}, not a type; pass the class itself. {_MODEL_HINT}"
        )
    if isinstance(model, BaseModel):
        raise TypeError(
            f"{where} is an instance of {type(model).__name__}, not a type; pass the class "
            f"{type(model).__name__} itself."
        )


def _is_message_type(model: Any) -> bool:
    candidates = typing.get_args(model) or (model,)
    return any(isinstance(c, type) and issubclass(c, Message) for c in candidates)


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True
