"""Per-trace bookkeeping: what is in flight for a trace, and the one rule for when it ends.

A trace lives while any of its messages is in the flow (queued, parked or being processed) or a
scope of it is open (a worker running its lane, a caller blocked emitting it).
``TraceTable.release`` is the one rule that decides that a trace has ended (``leave`` inlines it
on the hot path).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from contextvars import ContextVar

from anyio import CancelScope

from ._durable import Scope
from ._errors import FlowError, TraceCancelled, TraceEnded

__all__ = ["TraceState", "TraceTable", "current_trace_id"]

_current_trace: ContextVar[str | None] = ContextVar("penguiflow_trace", default=None)
_current_deadline: ContextVar[float | None] = ContextVar("penguiflow_deadline", default=None)
"""The ``deadline_s`` of the message being processed, set only when it has one."""


def current_trace_id() -> str | None:
    """The trace id of the message the calling node invocation is processing, if any."""
    return _current_trace.get()


class TraceState:
    """Everything the runtime holds for one live trace; dropped as soon as the trace ends."""

    __slots__ = (
        "aborts",
        "cancelled",
        "cleanups",
        "delivered",
        "error",
        "failed",
        "finished",
        "inflight",
        "owner",
        "pending",
        "scopes",
    )

    def __init__(self) -> None:
        self.pending: int = 0
        """Messages of the trace in floes, parked in lanes, or being processed."""
        self.inflight: int = 0
        """Node invocations of the trace running now."""
        self.cancelled: bool = False
        self.delivered: bool = False
        """Whether anything of the trace reached Rookery."""
        self.scopes: set[CancelScope] = set()
        """What to cancel to stop the trace's work: the scopes of workers running its lanes, and of
        callers blocked emitting it."""
        self.cleanups: list[Callable[[], None]] = []
        """Node-local per-trace state to free when the trace ends (join buckets, timers...)."""
        self.aborts: list[Callable[[], None]] | None = None
        """Called (before ``cleanups``) when the trace ends cancelled or failed."""
        self.failed: bool = False
        """Whether a message of the trace failed (whether or not its error reached Rookery)."""
        self.error: FlowError | None = None
        """The last failure not delivered to Rookery (answered to trace-scoped fetchers)."""
        self.finished: asyncio.Event | None = None
        """Set when the trace ends; created only by someone who waits for it."""
        self.owner: Scope | None = None
        """Who owns the trace (``Scope.of`` its first message); kept only with a state store."""


Ending = FlowError | type[TraceCancelled] | type[TraceEnded]
"""How a trace ended, as remembered: a detached ``FlowError`` or the exception class to raise."""


class TraceTable:
    """Live traces by id, and how recent traces ended.

    The table remembers how the last ``keep_endings`` traces that failed, were cancelled or
    delivered nothing ended, and apart from them the last ``keep_endings`` that completed, so that
    a ``fetch(trace_id=...)`` arriving after the fact (once the trace's buffered results are taken)
    is still answered instead of waiting forever. Failures are kept detached (no traceback, no
    original exception, so no payload stays alive); a reused trace id forgets its old ending.
    """

    __slots__ = ("_on_end", "completed", "endings", "keep_endings", "states")

    def __init__(self, on_end: Callable[[str, TraceState], None], keep_endings: int = 1024) -> None:
        self.states: dict[str, TraceState] = {}
        self._on_end = on_end
        self.endings: OrderedDict[str, Ending] = OrderedDict()
        """Traces that failed, were cancelled or delivered nothing, newest last."""
        self.completed: OrderedDict[str, Ending] = OrderedDict()
        """Traces that ended normally, kept apart so that they never evict a failure."""
        self.keep_endings: int = keep_endings

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
            if self.endings or self.completed:
                self._forget(key)
        return state

    def enter(self, key: str | None) -> None:
        """One message of ``key`` entered the flow."""
        if key is None:
            return
        state = self.states.get(key)
        if state is None:
            state = self.states[key] = TraceState()
            if self.endings or self.completed:
                self._forget(key)
        state.pending += 1

    def leave(self, key: str | None, count: int = 1) -> None:
        """``count`` messages of ``key`` are done."""
        if key is None:
            return
        state = self.states.get(key)
        if state is not None:
            state.pending -= count
            if state.pending <= 0 and not state.scopes:  # release(), inlined: once per hop
                self.end(key, state)

    def release(self, key: str, state: TraceState) -> None:
        """End the trace if nothing of it is left: the one place where a trace ends."""
        if state.pending <= 0 and not state.scopes and self.states.get(key) is state:
            self.end(key, state)

    def end(self, key: str, state: TraceState) -> None:
        """Forget ``key`` now and run its cleanups (once), whatever is left of it."""
        if self.states.get(key) is not state:
            return
        del self.states[key]
        if state.aborts:
            aborts, state.aborts = state.aborts, None
            if state.cancelled or state.failed:
                for abort in aborts:
                    abort()
        cleanups, state.cleanups = state.cleanups, []
        for cleanup in cleanups:
            cleanup()
        self._on_end(key, state)
        if state.finished is not None:
            state.finished.set()

    # --------------------------------------------------------------- endings
    def _forget(self, key: str) -> None:
        self.endings.pop(key, None)
        self.completed.pop(key, None)

    def remember(self, key: str, ending: Ending, *, completed: bool = False) -> None:
        """Keep ``ending`` as the answer for late fetches of ``key`` (bounded, oldest dropped).

        ``completed`` endings (traces that delivered to Rookery, then ended normally) are kept
        apart, so that however many traces complete they never evict a failure's answer.
        """
        endings = self.completed if completed else self.endings
        endings[key] = ending
        endings.move_to_end(key)
        while len(endings) > self.keep_endings:
            endings.popitem(last=False)

    def ending(self, key: str) -> BaseException | None:
        """A fresh exception telling how ``key`` ended, when it is remembered."""
        ending = self.endings.get(key) or self.completed.get(key)
        if ending is None:
            return None
        if isinstance(ending, FlowError):
            return ending.detached()
        return ending(key)
