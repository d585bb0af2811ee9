"""Distribution hooks: where a flow records its history and mirrors its traffic.

Core ships the protocols and an in-memory store; real backends (Redis, PostgreSQL, a broker) live
behind extras or in user code. The runtime calls these off the hot path, from a bounded buffer
drained by a background task: a slow or failing store or bus is logged and counted, never fatal,
never blocking.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

from ._durable import Scope
from ._events import FlowEvent

__all__ = [
    "BusEnvelope",
    "InMemoryStateStore",
    "MessageBus",
    "RemoteBinding",
    "StateStore",
    "StoredEvent",
]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """A flow event as a state store keeps it."""

    event_id: str
    """Unique id of the event (what makes ``save_event`` idempotent)."""
    trace_id: str | None
    """The trace it belongs to."""
    ts: float
    """Wall-clock epoch seconds."""
    kind: str
    """The event type (``"node_start"`` …)."""
    node_name: str | None
    """Where it happened."""
    node_id: str | None
    """That node's unique id."""
    payload: Mapping[str, Any] = field(default=_EMPTY)
    """The event's ``to_payload()``."""
    scope: Scope | None = None
    """Who owns the trace (``Scope.of`` its first message), when known."""

    @classmethod
    def from_flow_event(
        cls, event: FlowEvent, event_id: str, scope: Scope | None = None
    ) -> StoredEvent:
        """Convert a runtime event (of a trace owned by ``scope``, when known)."""
        return cls(
            event_id=event_id,
            trace_id=event.trace_id,
            ts=event.ts,
            kind=event.event_type.value,
            node_name=event.node_name,
            node_id=event.node_id,
            payload=MappingProxyType(event.to_payload()),
            scope=scope,
        )


@dataclass(frozen=True, slots=True)
class RemoteBinding:
    """Links a local trace to a task running in a remote agent (see ``RemoteNode``)."""

    trace_id: str
    """The local trace."""
    context_id: str | None
    """The remote agent's conversation/context id, if any."""
    task_id: str
    """The remote task id (what ``RemoteTransport.cancel`` needs)."""
    agent_url: str
    """Where the remote agent lives."""
    router_session_id: str | None = None
    """The local session that made the call (the message's ``meta["session_id"]``), if any."""
    remote_skill: str | None = None
    """The remote skill invoked, if known."""
    tenant_id: str | None = None
    """The tenant the binding belongs to."""
    user_id: str | None = None
    """The user the binding belongs to (the message's ``meta["user_id"]``), if any."""
    last_remote_task_id: str | None = None
    """The latest remote task id, for follow-up turns."""
    is_terminal: bool = False
    """Whether the remote task has ended (the binding is not to be reused)."""
    metadata: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    """Free-form facts about the binding."""
    scope: Scope | None = None
    """Who owns the binding (``RemoteNode`` fills it from the message)."""


@runtime_checkable
class StateStore(Protocol):
    """Durable history of flows. Implementations must make ``save_event`` idempotent."""

    async def save_event(self, event: StoredEvent) -> None:
        """Persist one event (saving the same event twice keeps one copy)."""
        ...

    async def load_history(self, trace_id: str) -> Sequence[StoredEvent]:
        """Every stored event of ``trace_id``, oldest first."""
        ...

    async def save_remote_binding(self, binding: RemoteBinding) -> None:
        """Persist a trace ↔ remote task binding."""
        ...


@dataclass(frozen=True, slots=True)
class BusEnvelope:
    """One message crossing one edge, as published to a message bus."""

    edge: str
    """``"source->target"``."""
    source: str | None
    """The sending node (``"OpenSea"`` for ``flow.emit``)."""
    target: str | None
    """The receiving node (``"Rookery"`` for results)."""
    trace_id: str | None
    """The message's trace."""
    payload: Any
    """The message (or bare payload) itself."""
    headers: Mapping[str, Any] | None = None
    """``Message.headers`` as a dict, for Message traffic."""
    meta: Mapping[str, Any] | None = None
    """``Message.meta``, for Message traffic."""


@runtime_checkable
class MessageBus(Protocol):
    """Receives a copy of every edge crossing (for mirroring to a broker)."""

    async def publish(self, envelope: BusEnvelope) -> None:
        """Publish one envelope."""
        ...


class InMemoryStateStore:
    """A ``StateStore`` in a dict: for tests, examples and single-process services."""

    def __init__(self) -> None:
        self._events: defaultdict[str | None, list[StoredEvent]] = defaultdict(list)
        self._seen: set[str] = set()
        self.bindings: list[RemoteBinding] = []
        """Every binding saved, in order."""

    async def save_event(self, event: StoredEvent) -> None:
        """Keep ``event`` unless one with the same ``event_id`` is already stored."""
        if event.event_id in self._seen:
            return
        self._seen.add(event.event_id)
        self._events[event.trace_id].append(event)

    async def load_history(self, trace_id: str) -> Sequence[StoredEvent]:
        """The stored events of ``trace_id``, oldest first."""
        return tuple(self._events.get(trace_id, ()))

    async def save_remote_binding(self, binding: RemoteBinding) -> None:
        """Remember ``binding``."""
        self.bindings.append(binding)

    def __len__(self) -> int:
        return sum(len(events) for events in self._events.values())
