"""Where events and edge crossings go: inline hooks, and buffered async sinks off the hot path.

Sync hooks run inline (keep them cheap). Async middlewares, the state store and the message bus
are fed from bounded buffers by one background task; when a buffer is full the overflow policy
drops the oldest or the newest item and counts it. A sink that raises is logged and counted,
never fatal.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from collections import OrderedDict, deque
from collections.abc import Sequence
from typing import Any, Literal

import anyio

from ._distribution import BusEnvelope, MessageBus, RemoteBinding, StateStore, StoredEvent
from ._durable import Scope
from ._events import EventHook, FlowEvent, Middleware
from ._types import Carried, Message, Stepped

__all__ = ["Dispatcher", "OverflowPolicy"]

_KEEP_OWNERS = 4096
"""How many recent traces' scopes the dispatcher remembers (for events after a trace ended)."""

logger = logging.getLogger("penguiflow.core")

OverflowPolicy = Literal["drop_oldest", "drop_newest"]
"""What a full listener buffer does with one more item (either way it is counted)."""


_STATE_STORE_METHODS = ("save_event", "load_history", "save_remote_binding")


def _require(argument: str, value: object, methods: tuple[str, ...], hint: str) -> None:
    """One protocol, checked at construction: a store missing a method is refused, not skipped."""
    if value is None:
        return
    missing = [name for name in methods if not callable(getattr(value, name, None))]
    if missing:
        raise TypeError(
            f"{argument}={type(value).__name__}(...) lacks {', '.join(missing)}; pass {hint}"
        )


class Dispatcher:
    """Fans events out to listeners and edge crossings out to a message bus."""

    def __init__(
        self,
        *,
        hooks: Sequence[EventHook],
        middlewares: Sequence[Middleware],
        state_store: StateStore | None,
        message_bus: MessageBus | None,
        buffer_size: int,
        overflow: OverflowPolicy,
    ) -> None:
        if buffer_size < 1:
            raise ValueError(f"event_buffer_size must be >= 1, got {buffer_size}")
        _require(
            "state_store",
            state_store,
            _STATE_STORE_METHODS,
            "InMemoryStateStore(), a DurableStore backend, or as_state_store(your_store)",
        )
        _require("message_bus", message_bus, ("publish",), "an object with async publish()")
        if overflow not in ("drop_oldest", "drop_newest"):
            raise ValueError(
                f"event_overflow must be 'drop_oldest' or 'drop_newest', got {overflow!r}"
            )
        self.hooks: list[EventHook] = list(hooks)
        self.middlewares: list[Middleware] = list(middlewares)
        self.state_store = state_store
        self.message_bus = message_bus
        self.buffer_size = buffer_size
        self.overflow: OverflowPolicy = overflow
        self.delivery_timeout_s: float = 5.0
        """How long one delivery to a sink may hold up a stopping flow."""
        self.events: deque[tuple[FlowEvent, Scope | None]] = deque()
        self._owners: OrderedDict[str, Scope] = OrderedDict()
        """The scope of recent traces (bounded), for their events after they ended."""
        """Events waiting for async sinks, with the scope of their trace."""
        self.envelopes: deque[BusEnvelope] = deque()
        self.ready: asyncio.Event | None = None
        self._flushing = asyncio.Lock()
        """One flush at a time: events reach the store in the order they happened."""
        self.events_dropped: int = 0
        self.envelopes_dropped: int = 0
        self.listener_errors: int = 0
        self.store_errors: int = 0
        self.bus_errors: int = 0
        # Random per dispatcher: processes sharing a state store must never produce the same id
        # (a store that deduplicates by id would drop real events).
        self._prefix = f"{uuid.uuid4().hex}:"
        self._event_ids = itertools.count()

    @property
    def observed(self) -> bool:
        """Whether anyone listens to events (else none is built)."""
        return bool(self.hooks or self.middlewares or self.state_store is not None)

    @property
    def buffered_sinks(self) -> bool:
        """Whether a background drain task is needed."""
        return bool(
            self.middlewares or self.state_store is not None or self.message_bus is not None
        )

    # ------------------------------------------------------------------ intake
    def dispatch(self, event: FlowEvent, scope: Scope | None = None) -> None:
        """Run sync hooks now; queue the event for async sinks."""
        for hook in self.hooks:
            try:
                hook(event)
            except Exception:
                self.listener_errors += 1
                logger.exception("event hook %r failed on %s", hook, event.event_type)
        if self.middlewares or self.state_store is not None:
            if self.state_store is not None and event.trace_id is not None:
                scope = self._owner_of(event.trace_id, scope)
            if self._admit(self.events):
                self.events.append((event, scope))
                self._wake()

    def _owner_of(self, trace_id: str, scope: Scope | None) -> Scope | None:
        """One scope for every stored event of a trace, also for events after it ended."""
        owners = self._owners
        if scope is None:
            return owners.get(trace_id)
        if owners.get(trace_id) != scope:
            owners[trace_id] = scope
            owners.move_to_end(trace_id)
            if len(owners) > _KEEP_OWNERS:
                owners.popitem(last=False)
        return scope

    def publish(self, source: str, target: str, trace_id: str | None, item: Any) -> None:
        """Queue one edge crossing for the message bus."""
        if self.message_bus is None or not self._admit(self.envelopes):
            return
        headers: dict[str, Any] | None = None
        meta: dict[str, Any] | None = None
        if type(item) is Stepped:  # a journaled step: the bus sees the item alone
            item = item.item
        envelope = item
        if isinstance(item, Carried):  # a bare value with the envelope it travels in
            envelope, item = item.envelope, item.value
        if isinstance(envelope, Message):
            headers = envelope.headers.model_dump()
            meta = dict(envelope.meta)
        self.envelopes.append(
            BusEnvelope(
                edge=f"{source}->{target}",
                source=source,
                target=target,
                trace_id=trace_id,
                payload=item,
                headers=headers,
                meta=meta,
            )
        )
        self._wake()

    def _admit(self, buffer: deque[Any]) -> bool:
        if len(buffer) < self.buffer_size:
            return True
        if buffer is self.events:
            self.events_dropped += 1
        else:
            self.envelopes_dropped += 1
        if self.overflow == "drop_newest":
            return False
        buffer.popleft()
        return True

    def _wake(self) -> None:
        if self.ready is not None:
            self.ready.set()

    # ------------------------------------------------------------------ drain
    async def run(self) -> None:
        """Drain the buffers until cancelled (runs in the flow's task group)."""
        self.ready = ready = asyncio.Event()
        if self.events or self.envelopes:
            ready.set()
        while True:
            await ready.wait()
            ready.clear()
            await self.flush()

    async def flush(self) -> None:
        """Deliver everything buffered so far.

        A delivery once begun is finished even when the drain is cancelled (the flow stopping),
        within ``delivery_timeout_s``: an item taken off the buffer is never silently lost.
        Flushes run one at a time (``flow.load_history`` flushes while the drain may be
        delivering), so a store with concurrent writers still saves events in order.
        """
        async with self._flushing:
            while self.events or self.envelopes:
                if self.events:
                    event = self.events.popleft()
                    with anyio.move_on_after(self.delivery_timeout_s, shield=True):
                        await self._deliver_event(*event)
                if self.envelopes:
                    envelope = self.envelopes.popleft()
                    with anyio.move_on_after(self.delivery_timeout_s, shield=True):
                        await self._deliver_envelope(envelope)

    async def _deliver_event(self, event: FlowEvent, scope: Scope | None) -> None:
        for middleware in self.middlewares:
            try:
                await middleware(event)
            except Exception:
                self.listener_errors += 1
                logger.exception("middleware %r failed on %s", middleware, event.event_type)
        if self.state_store is not None:
            event_id = f"{self._prefix}{next(self._event_ids)}"
            stored = StoredEvent.from_flow_event(event, event_id, scope)
            try:
                await self.state_store.save_event(stored)
            except Exception:
                self.store_errors += 1
                logger.exception("state_store_save_failed: could not save %s", event.event_type)

    async def _deliver_envelope(self, envelope: BusEnvelope) -> None:
        assert self.message_bus is not None
        try:
            await self.message_bus.publish(envelope)
        except Exception:
            self.bus_errors += 1
            logger.exception("message_bus_publish_failed: could not publish %s", envelope.edge)

    async def save_remote_binding(self, binding: RemoteBinding) -> bool:
        """Record ``binding`` in the state store (failures logged, counted); False without one."""
        if self.state_store is None:
            return False
        try:
            await self.state_store.save_remote_binding(binding)
        except Exception:
            self.store_errors += 1
            logger.exception(
                "state_store_save_failed: could not save the remote binding of %s", binding.task_id
            )
        return True
