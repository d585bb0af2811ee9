"""How a running flow's traces end: failures, trace endings, cancellation, stop.

``Endings`` is a base class of ``Runtime`` (``_runtime``), so these methods are the runtime's
own, looked up on it like any other, with no call in between: ``fail`` reports a message's
terminal ``FlowError`` once; ``trace_ended`` answers a trace's waiting callers and remembers the
outcome for late fetches; ``cancel`` cancels one trace; ``crashed`` and ``finish`` stop the
flow and answer every caller. The state they use is the runtime's (declared here for typing).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._errors import FlowError, FlowErrorCode, FlowStopped, TraceCancelled, TraceEnded
from ._events import FlowEventType
from ._graph import OPEN_SEA, ROOKERY

if TYPE_CHECKING:
    from anyio import CancelScope

    from ._durable import Scope
    from ._floe import Floe
    from ._graph import Endpoint
    from ._node import Node
    from ._rookery import Rookery
    from ._runtime import Phase
    from ._station import Station
    from ._trace import TraceState, TraceTable

__all__ = ["Endings"]

logger = logging.getLogger("penguiflow.core")


class Endings:
    """Failures, trace endings, cancellation and stop of a ``Runtime`` (see the module doc)."""

    __slots__ = ()

    if TYPE_CHECKING:  # the runtime's state and the two methods of its own these call
        blocked: set[CancelScope]
        cause: BaseException | None
        emit_errors_to_rookery: bool
        failure_level: int | None
        observed: bool
        phase: Phase
        rookery: Rookery
        stations: dict[Node, Station]
        traces: TraceTable

        async def deliver(
            self,
            source: str,
            key: str | None,
            item: Any,
            floes: Sequence[Floe],
            *,
            outside: bool = False,
        ) -> None: ...

        def event(
            self,
            event_type: FlowEventType,
            station: Station | None,
            trace_id: str | None,
            *,
            attempt: int = 0,
            latency_ms: float | None = None,
            extra: dict[str, Any] | None = None,
            endpoint: Endpoint | None = None,
            owner: Scope | None = None,
        ) -> None: ...

    # -------------------------------------------------------------- failures
    async def fail(self, station: Station | None, key: str | None, error: FlowError) -> None:
        """Report a message's terminal failure: event, log, then Rookery or the trace's record."""
        if self.observed:
            self.event(
                FlowEventType.NODE_FAILED,
                station,
                key,
                attempt=int(error.metadata.get("attempt", 0)),
                extra={"flow_error": error.to_payload()},
            )
        state = self.traces.get(key)
        if state is not None:
            if state.cancelled:
                return  # the cancellation is the trace's outcome
            state.failed = True
        level = self.failure_level
        if level is not None:  # once; DEBUG when the caller gets it (as an item or raised)
            if self.emit_errors_to_rookery or self.rookery.waiting(key):
                level = logging.DEBUG
            logger.log(level, "%s", error)
        if self.emit_errors_to_rookery:
            source = OPEN_SEA.name if station is None else station.name
            try:
                await self.deliver(source, key, error, ())
            except (TraceCancelled, FlowStopped):
                pass  # cancelled or stopped while waiting for room: that is the outcome
        elif state is not None:
            state.error = error
        elif key is not None:  # reported after its trace ended (a join timing out, say)
            self.traces.remember(key, error.detached())
            self.rookery.fail_waiters(key, error)

    # ---------------------------------------------------------- trace endings
    def trace_ended(self, key: str, state: TraceState) -> None:
        """Answer the trace's waiting fetchers and remember how it ended (``TraceTable.end``)."""
        if self.phase == "stopped":
            return  # the flow stopping ends every trace; its waiters get FlowStopped
        traces = self.traces
        if state.cancelled:
            outcome: BaseException = TraceCancelled(key)
            traces.remember(key, TraceCancelled)
        elif state.error is not None:
            outcome = state.error
            traces.remember(key, state.error.detached())
        else:
            # Late trace-scoped fetches learn it too, once what it delivered has been taken.
            traces.remember(key, TraceEnded, completed=state.delivered)
            if not self.rookery.waiting(key):
                return
            outcome = TraceEnded(key)
        if not self.rookery.depth(key):  # buffered items come first; fetch raises it after them
            self.rookery.fail_waiters(key, outcome)

    def fetch_outcome(self, trace_id: str | None) -> BaseException | None:
        """Why a fetch that found nothing buffered must not wait, if it must not."""
        if self.phase == "stopped":
            return self.stopped_error("the flow has stopped and Rookery holds nothing for you")
        if trace_id is None:
            return None
        state = self.traces.get(trace_id)
        if state is not None:
            return TraceCancelled(trace_id) if state.cancelled else None
        return self.traces.ending(trace_id)

    # ------------------------------------------------------ cancellation, stop
    async def cancel(self, trace_id: str) -> bool:
        """Cancel one trace (see ``PenguiFlow.cancel``)."""
        traces = self.traces
        state = traces.get(trace_id)
        if state is None or state.cancelled:
            return False
        state.cancelled = True
        observed = self.observed
        if observed:
            self.event(FlowEventType.TRACE_CANCEL_START, None, trace_id, endpoint=OPEN_SEA)
        dropped = 0
        for station in self.stations.values():
            dropped += len(station.inbox.drop_trace(trace_id))
            dropped += station.inbox.drop_parked(trace_id)
        buffered = self.rookery.drop_trace(trace_id)
        if observed and (dropped or buffered):
            self.event(
                FlowEventType.TRACE_CANCEL_DROP,
                None,
                trace_id,
                extra={"dropped": dropped, "rookery_dropped": buffered},
            )
        answered = self.rookery.fail_waiters(trace_id, TraceCancelled(trace_id))
        if self.emit_errors_to_rookery and not answered:
            # Plain fetch() consumers learn the trace's fate like any other failure. It is put
            # now, so a fetch arriving while cleanups run takes this one outcome.
            error = FlowError(
                trace_id=trace_id,
                node_name=None,
                code=FlowErrorCode.TRACE_CANCELLED,
                message="the trace was cancelled",
                metadata={"dropped": dropped},
            )
            self.rookery.put_nowait(OPEN_SEA.name, trace_id, error)
        for scope in list(state.scopes):
            scope.cancel()
        if state.finished is None:
            state.finished = asyncio.Event()
        finished = state.finished
        traces.leave(trace_id, dropped)
        await finished.wait()
        if observed:
            self.event(FlowEventType.TRACE_CANCEL_FINISH, None, trace_id, endpoint=ROOKERY)
        return True

    def stopped_error(self, message: str = "the flow stopped") -> FlowStopped:
        """A ``FlowStopped`` for a caller, naming what crashed the flow when something did."""
        cause = self.cause
        if cause is None:
            return FlowStopped(message)
        error = FlowStopped(f"{message}: a node raised {type(cause).__name__}")
        error.__cause__ = cause
        return error

    def crashed(self, exc: BaseException) -> None:
        """A node raised a ``BaseException`` that ends the flow: answer every waiter right away.

        Called before the other workers unwind, so that their callers get ``FlowStopped`` (with
        the cause) rather than a trace ending.
        """
        if self.cause is None:
            self.cause = exc
        self.phase = "stopped"
        self._wake_callers()

    def finish(self) -> None:
        """The flow stopped: drop every queued message, end every trace, answer every caller."""
        self.phase = "stopped"
        self._wake_callers()
        for station in self.stations.values():
            station.inbox.discard_all()
        traces = self.traces
        for key, state in list(traces.states.items()):
            for scope in state.scopes:
                scope.cancel()
            state.scopes.clear()
            traces.end(key, state)

    def _wake_callers(self) -> None:
        for scope in self.blocked:
            scope.cancel()  # blocked emitters raise FlowStopped
        self.rookery.fail_all(self.stopped_error)
