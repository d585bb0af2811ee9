"""FlowStatistics: a frozen snapshot of a flow's bookkeeping."""

from __future__ import annotations

from dataclasses import dataclass

from ._runtime import Runtime

__all__ = ["FlowStatistics", "snapshot"]


@dataclass(frozen=True, slots=True)
class FlowStatistics:
    """A snapshot of a flow's bookkeeping (see ``PenguiFlow.statistics``)."""

    running: bool
    """Whether the flow's workers are running."""
    live_traces: int
    """Traces with messages in flight."""
    queued: int
    """Messages waiting in floes."""
    rookery_buffered: int
    """Results waiting to be fetched."""
    rookery_keys: int
    """Traces holding Rookery buffers or waiters."""
    workers: int
    """Worker tasks across all nodes."""
    lanes: int
    """Traces currently running at some node."""
    streams: int
    """Open stream sequence counters."""
    events_dropped: int
    """Events dropped because async listeners (middlewares, state store) fell behind."""
    listener_errors: int
    """Exceptions raised by event hooks and middlewares (logged, never fatal)."""
    store_errors: int
    """State store writes that failed (logged, never fatal)."""
    bus_dropped: int
    """Edge crossings not published because the message bus fell behind."""
    bus_errors: int
    """Message bus publishes that failed (logged, never fatal)."""


def snapshot(rt: Runtime, workers: int) -> FlowStatistics:
    """The statistics of ``rt`` now (``workers``: the flow's worker tasks)."""
    stations = rt.stations.values()
    dispatcher = rt.dispatcher
    return FlowStatistics(
        running=rt.phase == "running",
        live_traces=len(rt.traces),
        queued=sum(len(s.inbox) for s in stations),
        rookery_buffered=len(rt.rookery),
        rookery_keys=rt.rookery.tracked_keys(),
        workers=workers,
        lanes=sum(len(s.inbox.lanes) for s in stations),
        streams=len(rt.streams),
        events_dropped=dispatcher.events_dropped,
        listener_errors=dispatcher.listener_errors,
        store_errors=dispatcher.store_errors,
        bus_dropped=dispatcher.envelopes_dropped,
        bus_errors=dispatcher.bus_errors,
    )
