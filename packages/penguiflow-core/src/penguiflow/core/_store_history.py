"""Flow history on any ``DurableStore``: core's ``StateStore`` served through records and logs.

``save_event`` appends to stream ``pf.events/{trace_id}`` (idempotent by event id, under the event's
scope; events without one go under tenant ``"-"``), ``load_history`` reads that stream in seq order,
``save_remote_binding`` puts record ``pf.remote`` / ``{trace_id}/{task_id}``. The shipped backends
inherit ``StoreBase`` (``HistoryOnStore`` plus what they all share); ``as_state_store`` adapts any
other ``DurableStore``.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import MappingProxyType, TracebackType
from typing import Any, cast

from pydantic_core import from_json, to_json

from ._distribution import RemoteBinding, StoredEvent
from ._durable import DurableStore, Scope, retention_ttl

__all__ = ["EVENTS", "REMOTE", "HistoryOnStore", "StoreBase", "as_state_store"]

EVENTS = "pf.events/"
"""Stream prefix of a trace's events."""
REMOTE = "pf.remote"
"""Namespace of remote bindings."""
_NO_TENANT = Scope("-")


def _scope_of(value: object) -> Scope:
    scope = getattr(value, "scope", None)
    return scope if isinstance(scope, Scope) else _NO_TENANT


def _encode_event(event: StoredEvent) -> bytes:
    return to_json(
        {
            "event_id": event.event_id,
            "trace_id": event.trace_id,
            "ts": event.ts,
            "kind": event.kind,
            "node_name": event.node_name,
            "node_id": event.node_id,
            "payload": dict(event.payload),
            "scope": None if event.scope is None else _scope_json(event.scope),
        },
        fallback=repr,
    )


def _scope_json(scope: Scope) -> dict[str, str | None]:
    return {"tenant": scope.tenant, "user": scope.user, "session": scope.session}


def _decode_event(value: bytes) -> StoredEvent:
    data = cast(dict[str, Any], from_json(value))
    return StoredEvent(
        event_id=data["event_id"],
        trace_id=data["trace_id"],
        ts=data["ts"],
        kind=data["kind"],
        node_name=data["node_name"],
        node_id=data["node_id"],
        payload=MappingProxyType(data["payload"]),
        scope=None if data.get("scope") is None else Scope(**data["scope"]),
    )


class HistoryOnStore:
    """Mixin: ``save_event`` / ``load_history`` / ``save_remote_binding`` on a ``DurableStore``."""

    async def save_event(self, event: StoredEvent) -> None:
        """Append ``event`` to its trace's stream (saving it twice keeps one copy)."""
        store = cast(DurableStore, self)
        stream = EVENTS + (event.trace_id or "-")
        await store.append(
            stream, _encode_event(event), scope=_scope_of(event), idempotency_key=event.event_id
        )

    async def load_history(self, trace_id: str) -> Sequence[StoredEvent]:
        """The events of ``trace_id`` in the order they were saved."""
        store = cast(DurableStore, self)
        events: list[StoredEvent] = []
        after = 0
        while True:
            entries = await store.read(EVENTS + trace_id, after)
            events.extend(_decode_event(entry.value) for entry in entries)
            if len(entries) < 1000:
                return events
            after = entries[-1].seq

    async def save_remote_binding(self, binding: RemoteBinding) -> None:
        """Record ``binding`` (one record per trace and remote task)."""
        store = cast(DurableStore, self)
        value = to_json(
            {
                "trace_id": binding.trace_id,
                "context_id": binding.context_id,
                "task_id": binding.task_id,
                "agent_url": binding.agent_url,
                "router_session_id": binding.router_session_id,
                "remote_skill": binding.remote_skill,
                "tenant_id": binding.tenant_id,
                "user_id": binding.user_id,
                "last_remote_task_id": binding.last_remote_task_id,
                "is_terminal": binding.is_terminal,
                "metadata": dict(binding.metadata),
            },
            fallback=repr,
        )
        key = f"{binding.trace_id}/{binding.task_id}"
        await store.put(REMOTE, key, value, scope=_scope_of(binding))


class StoreBase(HistoryOnStore):
    """What every shipped backend shares: flow history, retention defaults, closing on exit."""

    _retention: dict[str, float]

    def _default_ttl(self, name: str, ttl_s: float | None) -> float | None:
        """``ttl_s``, else the retention default for ``name`` (a namespace or stream)."""
        return ttl_s if ttl_s is not None else retention_ttl(self._retention, name)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the store."""
        await cast(DurableStore, self).aclose()


class _StateStoreView(HistoryOnStore):
    """A ``StateStore`` over any ``DurableStore`` (see ``as_state_store``)."""

    __slots__ = ("_store",)

    def __init__(self, store: DurableStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:  # the DurableStore methods HistoryOnStore calls
        return getattr(self._store, name)


def as_state_store(store: DurableStore) -> HistoryOnStore:
    """Serve core's ``StateStore`` (``flow.load_history``) from any ``DurableStore``.

    The shipped backends are ``StateStore``s already; use this for a store of your own.
    """
    missing = [
        name
        for name in ("put", "get", "append", "read")
        if not callable(getattr(store, name, None))
    ]
    if missing:
        raise TypeError(
            f"{type(store).__name__} is not a DurableStore: it lacks {', '.join(missing)}"
        )
    return _StateStoreView(store)
