"""Per-trace bookkeeping: what is in flight for a trace, and what to free when it ends."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from contextvars import ContextVar

from anyio import CancelScope

from ._errors import FlowError

__all__ = ["TraceState", "TraceTable", "current_trace_id"]

_current_trace: ContextVar[str | None] = ContextVar("penguiflow_trace", default=None)


def current_trace_id() -> str | None:
    """The trace id of the message the calling node invocation is processing, if any."""
    return _current_trace.get()


class TraceState:
    """Everything the runtime holds for one live trace; dropped as soon as the trace ends."""

    __slots__ = ("cancelled", "cleanups", "error", "finished", "inflight", "pending", "scopes")

    def __init__(self) -> None:
        self.pending: int = 0
        """Messages of the trace in floes, parked in lanes, or being processed."""
        self.inflight: int = 0
        """Node invocations of the trace running now."""
        self.cancelled: bool = False
        self.scopes: set[CancelScope] = set()
        """What to cancel to stop the trace's work: the scopes of workers running its lanes, and of
        callers blocked emitting it."""
        self.cleanups: list[Callable[[], None]] = []
        """Node-local per-trace state to free when the trace ends (join buckets, timers...)."""
        self.error: FlowError | None = None
        """The last failure not delivered to Rookery (answered to trace-scoped fetchers)."""
        self.finished: asyncio.Event | None = None
        """Set when the trace ends; created only by someone who waits for it."""


class TraceTable:
    """Live traces by id. A trace lives while any of its messages is in the flow.

    The table also remembers how the last ``keep_endings`` unsuccessful traces ended (cancelled,
    or failed without delivering their error), so that a ``fetch(trace_id=...)`` arriving after the
    fact is still answered; the memory is bounded and a reused trace id forgets its old ending.
    """

    __slots__ = ("_on_end", "endings", "keep_endings", "states")

    def __init__(self, on_end: Callable[[str, TraceState], None], keep_endings: int = 1024) -> None:
        self.states: dict[str, TraceState] = {}
        self._on_end = on_end
        self.endings: OrderedDict[str, BaseException] = OrderedDict()
        self.keep_endings: int = keep_endings

    def remember_ending(self, key: str, outcome: BaseException) -> None:
        """Keep ``outcome`` as the answer for late fetches of ``key`` (bounded, oldest dropped)."""
        endings = self.endings
        endings[key] = outcome
        endings.move_to_end(key)
        while len(endings) > self.keep_endings:
            endings.popitem(last=False)

    def __len__(self) -> int:
        return len(self.states)

    def get(self, key: str | None) -> TraceState | None:
        """The state of a live trace, or None."""
        return None if key is None else self.states.get(key)

    def open(self, key: str) -> TraceState:
        """The state of ``key``, created if the trace is not live yet."""
        state = self.states.get(key)
        if state is None:
            state = self.states[key] = TraceState()
            if self.endings:
                self.endings.pop(key, None)
        return state

    def enter(self, key: str | None, count: int = 1) -> None:
        """``count`` messages of ``key`` entered the flow."""
        if key is None:
            return
        state = self.states.get(key)
        if state is None:
            state = self.states[key] = TraceState()
            if self.endings:
                self.endings.pop(key, None)
        state.pending += count

    def leave(self, key: str | None, count: int = 1) -> None:
        """``count`` messages of ``key`` are done; the trace ends when none is left."""
        if key is None:
            return
        state = self.states.get(key)
        if state is None:
            return
        state.pending -= count
        if state.pending <= 0 and not state.scopes:
            self.end(key, state)

    def end(self, key: str, state: TraceState) -> None:
        """Forget ``key`` and run its cleanups (once)."""
        if self.states.get(key) is not state:
            return
        del self.states[key]
        cleanups, state.cleanups = state.cleanups, []
        for cleanup in cleanups:
            cleanup()
        self._on_end(key, state)
        if state.finished is not None:
            state.finished.set()

    def scoped(self, key: str | None) -> _TraceScope:
        """Context manager: a cancel scope that ``flow.cancel(key)`` cancels."""
        return _TraceScope(self, key)


class _TraceScope:
    """Registers a cancel scope with a trace for the duration of a block."""

    __slots__ = ("_key", "_scope", "_state", "_table")

    def __init__(self, table: TraceTable, key: str | None) -> None:
        self._table = table
        self._key = key
        self._scope = CancelScope()
        self._state: TraceState | None = None

    def __enter__(self) -> CancelScope:
        if self._key is not None:
            self._state = self._table.open(self._key)
            self._state.scopes.add(self._scope)
        return self._scope.__enter__()

    def __exit__(self, *exc_info: object) -> bool:
        try:
            return bool(self._scope.__exit__(*exc_info))  # pyright: ignore[reportArgumentType]
        finally:
            state = self._state
            if state is not None and self._key is not None:
                state.scopes.discard(self._scope)
                if state.pending <= 0 and not state.scopes:
                    self._table.end(self._key, state)
