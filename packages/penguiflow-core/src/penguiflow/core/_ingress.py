"""How a message enters a flow through OpenSea: targets, trace stamping, the journal's names."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._floe import Floe
from ._node import Node
from ._runtime import Runtime
from ._types import Message, copy_with

if TYPE_CHECKING:
    from ._journal_record import Recorder

__all__ = ["attach", "ingress_floes", "names", "stamped"]


def ingress_floes(rt: Runtime, to: Node | str | Sequence[Node | str] | None) -> tuple[Floe, ...]:
    """OpenSea's floes for ``to`` (every ingress node for None)."""
    if to is None:
        return rt.ingress_all
    ingress = rt.ingress
    items = [to] if isinstance(to, Node | str) else list(to)
    if not items:
        raise ValueError(
            "to=[] names no ingress node, so the message would go nowhere; pass to=None to "
            f"broadcast to every ingress node, or name some of {sorted(ingress)}"
        )
    floes: list[Floe] = []
    for target in items:
        name = target.name if isinstance(target, Node) else target
        floe = ingress.get(name)
        if floe is None:
            raise KeyError(f"{name!r} is not an ingress node; OpenSea feeds {sorted(ingress)}")
        floes.append(floe)
    return tuple(floes)


def stamped(msg: Any, trace_id: str | None) -> tuple[Any, str | None]:
    """``(message, trace key)``: ``trace_id`` re-stamps a ``Message`` (on a copy).

    A bare payload is traced by ``trace_id``, else by a string ``trace_id`` attribute of its
    own (as the original penguiflow reads it), else not at all.
    """
    if isinstance(msg, Message):
        if trace_id is not None and trace_id != msg.trace_id:
            return copy_with(msg, trace_id=trace_id), trace_id
        return msg, msg.trace_id
    if trace_id is None:
        own = getattr(msg, "trace_id", None)
        if isinstance(own, str):
            return msg, own
    return msg, trace_id


def names(to: Node | str | Sequence[Node | str] | None) -> list[str] | None:
    """Ingress targets by name, as a journal keeps them."""
    if to is None:
        return None
    items = [to] if isinstance(to, Node | str) else list(to)
    return [target.name if isinstance(target, Node) else target for target in items]


def attach(journal: object, rt: Runtime) -> Recorder:
    from ._journal import Journal  # loaded with the first journaled flow

    if not isinstance(journal, Journal):
        raise TypeError(
            f"journal must be a Journal, got {type(journal).__name__}; write "
            "create(..., journal=Journal(store))"
        )
    return journal.attach(rt)
