"""Which recorder saw a trace: the lookup behind ``assert_node_sequence(trace_id, expected)``.

Trace ids are unique per message, so "the recorder that recorded this trace" names one flow's
recorder even when many flows run at once. The index holds recorders *weakly* and remembers a
bounded number of trace ids, so it never keeps a flow's events alive on its own and never grows
without bound. Only the recorders of the last few testkit runs are held strongly (a small ring),
so ``await run_one(create(...), msg)`` followed by ``assert_node_sequence(msg.trace_id, ...)``
works even though nothing else references that flow any more.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict, deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._recorder import EventRecorder

__all__ = ["MAX_INDEXED_TRACES", "PINNED_RUNS", "TRACES", "TraceIndex"]

MAX_INDEXED_TRACES = 1024
"""How many trace ids the index remembers (the oldest is forgotten first)."""

PINNED_RUNS = 16
"""How many recorders of recent testkit runs are kept alive for trace-id lookups."""


class TraceIndex:
    """A bounded map from trace id to the live recorder that most recently started recording it."""

    def __init__(self, *, max_traces: int, pinned: int) -> None:
        self._max_traces = max_traces
        self._entries: OrderedDict[str, weakref.ref[EventRecorder]] = OrderedDict()
        self._pinned: deque[EventRecorder] = deque(maxlen=pinned)
        self._lock = threading.Lock()
        # Set by weakref callbacks, which may run at any moment (even inside our own dict
        # operations), so they only raise a flag; the sweep happens at the next call.
        self._stale = False

    def _mark_stale(self, _ref: weakref.ref[EventRecorder]) -> None:
        self._stale = True

    def _sweep(self) -> None:
        if self._stale:
            self._stale = False
            dead = [trace_id for trace_id, ref in self._entries.items() if ref() is None]
            for trace_id in dead:
                del self._entries[trace_id]

    def note(self, trace_id: str, recorder: EventRecorder) -> None:
        """Record that ``recorder`` started recording ``trace_id`` (the latest one wins)."""
        with self._lock:
            self._sweep()
            self._entries[trace_id] = weakref.ref(recorder, self._mark_stale)
            self._entries.move_to_end(trace_id)
            while len(self._entries) > self._max_traces:
                self._entries.popitem(last=False)

    def lookup(self, trace_id: str) -> EventRecorder | None:
        """The live recorder holding events of ``trace_id``, or None."""
        with self._lock:
            self._sweep()
            ref = self._entries.get(trace_id)
        recorder = ref() if ref is not None else None
        if recorder is None or not recorder.get_recorded_events(trace_id):
            return None  # freed, forgotten, or cleared since
        return recorder

    def pin(self, recorder: EventRecorder) -> None:
        """Keep ``recorder`` alive until ``PINNED_RUNS`` other recorders were pinned after it."""
        with self._lock:
            if any(known is recorder for known in self._pinned):
                self._pinned.remove(recorder)
            self._pinned.append(recorder)

    def __len__(self) -> int:
        with self._lock:
            self._sweep()
            return len(self._entries)


TRACES = TraceIndex(max_traces=MAX_INDEXED_TRACES, pinned=PINNED_RUNS)
"""The process-wide index, filled by every ``EventRecorder``."""
