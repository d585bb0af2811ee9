"""A flow's event listeners: adding them while it runs, listing them, and its stored history.

``FlowListeners`` is a base class of ``PenguiFlow`` (``_flow``): sync hooks are called inline
for every event, async middlewares run from the dispatcher's bounded buffer (``_dispatch``), and
``load_history`` reads back what the state store recorded.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._distribution import StoredEvent
from ._events import EventHook, Middleware
from ._runtime import Runtime

__all__ = ["FlowListeners"]


class FlowListeners:
    """The event listeners of a ``PenguiFlow`` (see the module docstring)."""

    __slots__ = ()

    _rt: Runtime

    def add_middleware(self, middleware: Middleware) -> None:
        """Add an async event listener (runs from a bounded buffer, off the hot path)."""
        rt = self._rt
        dispatcher = rt.dispatcher
        needs_drain = not dispatcher.buffered_sinks
        dispatcher.middlewares.append(middleware)
        rt.listeners_changed()
        if needs_drain and rt.task_group is not None:
            rt.task_group.start_soon(dispatcher.run, name="penguiflow:listeners")

    def add_event_hook(self, hook: EventHook) -> None:
        """Add a sync event listener called inline for every event (keep it cheap)."""
        self._rt.dispatcher.hooks.append(hook)
        self._rt.listeners_changed()

    @property
    def middlewares(self) -> tuple[Middleware, ...]:
        """The async listeners, in order."""
        return tuple(self._rt.dispatcher.middlewares)

    @property
    def event_hooks(self) -> tuple[EventHook, ...]:
        """The sync listeners, in order."""
        return tuple(self._rt.dispatcher.hooks)

    async def load_history(self, trace_id: str) -> Sequence[StoredEvent]:
        """The events the state store recorded for ``trace_id`` (pending ones flushed first)."""
        dispatcher = self._rt.dispatcher
        if dispatcher.state_store is None:
            raise RuntimeError(
                "load_history needs a state store: create(..., state_store=InMemoryStateStore())"
            )
        await dispatcher.flush()
        return await dispatcher.state_store.load_history(trace_id)
