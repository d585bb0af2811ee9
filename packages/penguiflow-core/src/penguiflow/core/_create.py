"""create(): build a flow from adjacencies (the public constructor)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ._dispatch import OverflowPolicy
from ._distribution import MessageBus, StateStore
from ._events import EventHook, Middleware
from ._flow import PenguiFlow
from ._graph import Adjacency
from ._node import Node

if TYPE_CHECKING:
    from ._journal import Journal

__all__ = ["create"]


def create(
    *adjacencies: Adjacency | Node,
    queue_maxsize: int = 64,
    allow_cycles: bool = False,
    middlewares: Sequence[Middleware] = (),
    on_event: EventHook | None = None,
    emit_errors_to_rookery: bool = False,
    event_buffer_size: int = 10_000,
    event_overflow: OverflowPolicy = "drop_oldest",
    state_store: StateStore | None = None,
    message_bus: MessageBus | None = None,
    journal: Journal | None = None,
    log_failures: int | str | None = logging.ERROR,
) -> PenguiFlow:
    """Build a flow from adjacencies (``a.to(b, c)``, ``b.to()`` …); the graph is checked eagerly.

    Args:
        adjacencies: ``node.to(*successors)`` for each node; ``node.to()`` marks a terminal node.
        queue_maxsize: Bound of every floe and of each trace's Rookery buffer (<= 0: unbounded).
        allow_cycles: Permit cycles between distinct nodes (self-edges need ``allow_cycle``).
        middlewares: Async event listeners, run from a bounded buffer off the hot path.
        on_event: A sync event listener called inline.
        emit_errors_to_rookery: Deliver each terminal ``FlowError`` to Rookery as an item.
        event_buffer_size: Capacity of the async-middleware buffer.
        event_overflow: ``"drop_oldest"`` or ``"drop_newest"`` when that buffer is full (counted).
        state_store: Optional ``StateStore`` that records events for ``load_history``.
        message_bus: Optional ``MessageBus`` that sees every edge crossing.
        journal: Optional ``Journal`` that records every step for replay and resume.
        log_failures: Level at which the ``penguiflow.core`` logger records each message's
            terminal failure, once (``logging.WARNING``, ``"WARNING"``; None: not logged). A
            failure the caller receives anyway is recorded at DEBUG instead: one delivered to
            Rookery (``emit_errors_to_rookery``) or raised to a caller already waiting on its
            trace (``flow.call``, a trace-scoped ``fetch``).

    Raises:
        CycleError: The graph has a cycle that was not allowed.
        GraphError: Duplicate node names, no ingress node, or a ``WM`` node without a self-edge.
        ValueError: ``log_failures`` is not a logging level.
    """
    return PenguiFlow(
        *adjacencies,
        queue_maxsize=queue_maxsize,
        allow_cycles=allow_cycles,
        middlewares=middlewares,
        on_event=on_event,
        emit_errors_to_rookery=emit_errors_to_rookery,
        event_buffer_size=event_buffer_size,
        event_overflow=event_overflow,
        state_store=state_store,
        message_bus=message_bus,
        journal=journal,
        log_failures=log_failures,
    )
