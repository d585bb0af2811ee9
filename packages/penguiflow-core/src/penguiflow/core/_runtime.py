"""The private machine behind a ``PenguiFlow``: delivery, events, trace endings, cancellation.

``PenguiFlow`` is the public face; this object is what the node runners and ``Context`` receive.
Its parts, in the order a message meets them:

- **delivery** (:meth:`Runtime.try_deliver`, :meth:`Runtime.deliver`,
  :meth:`Runtime.deliver_nowait`, :meth:`Runtime.hand_off`, :meth:`Runtime.loop_back`): the one path
  that puts a message on its successors' floes or into Rookery — fan-out copies, backpressure, trace
  scoping, cancellation and stop checks, then the message-bus mirror of what really crossed. Ingress
  ``emit``, ``Context.emit``, node results and failures all go through it; a bare value travels as
  ``Carried`` with its envelope, and Rookery receives the value alone.
- **failures** (:meth:`Runtime.fail`): a message's terminal ``FlowError``, reported once.
- **trace endings** (:meth:`Runtime.trace_ended`): how a trace's waiting callers are answered.
- **cancellation and stop** (:meth:`Runtime.cancel`, :meth:`Runtime.crashed`,
  :meth:`Runtime.finish`).

The last three live in the base class ``Endings`` (``_runtime_end``); delivery and events here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, cast

from anyio import CancelScope
from anyio.abc import TaskGroup

from ._dispatch import Dispatcher
from ._durable import Scope
from ._errors import TraceCancelled
from ._events import FlowEvent, FlowEventType
from ._floe import Floe
from ._graph import OPEN_SEA, ROOKERY, Endpoint, Graph
from ._node import Node
from ._rookery import Rookery
from ._runtime_end import Endings
from ._station import Station, link
from ._streams import StreamSequencer
from ._trace import TraceState, TraceTable
from ._types import Carried, Message, Stepped

if TYPE_CHECKING:
    from ._invoke import Invocations
    from ._journal_record import Recorder
    from ._registry import ModelRegistry

__all__ = ["Phase", "Runtime"]

logger = logging.getLogger("penguiflow.core")

Phase = Literal["idle", "running", "stopped"]

# FlowEvent is a NamedTuple: build it from a tuple, without keyword processing.
_new_event = cast(
    Callable[[type[FlowEvent], tuple[Any, ...]], FlowEvent],
    tuple.__new__,  # pyright: ignore[reportUnknownMemberType]
)
_NO_EXTRA: Mapping[str, Any] = MappingProxyType({})


class Runtime(Endings):
    """Everything a running flow holds, and the one implementation of each of its mechanisms."""

    __slots__ = (
        "blocked",
        "cause",
        "dispatcher",
        "emit_errors_to_rookery",
        "face",
        "failure_level",
        "graph",
        "ingress",
        "ingress_all",
        "invocations",
        "observed",
        "phase",
        "queue_maxsize",
        "recorder",
        "registry",
        "rookery",
        "stations",
        "streams",
        "tapped",
        "task_group",
        "traces",
    )

    def __init__(
        self,
        graph: Graph,
        *,
        queue_maxsize: int,
        emit_errors_to_rookery: bool,
        dispatcher: Dispatcher,
        face: object,
    ) -> None:
        self.graph: Graph = graph
        self.queue_maxsize: int = queue_maxsize
        self.emit_errors_to_rookery: bool = emit_errors_to_rookery
        self.dispatcher: Dispatcher = dispatcher
        self.face: object = face
        """The public ``PenguiFlow`` (what ``ctx.runtime`` returns)."""
        stations, ingress = link(graph, queue_maxsize)
        self.ingress: dict[str, Floe] = ingress
        """OpenSea's floes, by ingress node name."""
        self.ingress_all: tuple[Floe, ...] = tuple(self.ingress.values())
        self.stations: dict[Node, Station] = stations
        self.traces: TraceTable = TraceTable(self.trace_ended)
        self.rookery: Rookery = Rookery(queue_maxsize)
        self.streams: StreamSequencer = StreamSequencer(self.traces)
        self.observed: bool = False
        """Whether anyone listens; when False no ``FlowEvent`` is built."""
        self.tapped: bool = False
        """Whether edge crossings are mirrored to a message bus."""
        self.listeners_changed()
        self.phase: Phase = "idle"
        self.task_group: TaskGroup | None = None
        self.blocked: set[CancelScope] = set()
        """Scopes of callers outside the flow blocked waiting for room (woken by ``finish``)."""
        self.cause: BaseException | None = None
        """What crashed the flow, if a node raised a ``BaseException`` that ended it."""
        self.recorder: Recorder | None = None
        """The journal's side of this flow (``create(..., journal=...)``), if it has one."""
        self.registry: ModelRegistry | None = None
        """The registry the flow runs with (``call_node`` validates with it)."""
        self.invocations: dict[Node, Invocations] = {}
        self.failure_level: int | None = logging.ERROR
        """Level of the record ``fail`` logs (``create(..., log_failures=...)``; None: none)."""
        """``call_node`` bookkeeping of the nodes it runs (see ``_invoke``; bounded)."""

    def note_owner(self, key: str | None, message: Any) -> None:
        """Remember who owns trace ``key`` (its first message's scope), for stored events."""
        state = self.traces.get(key)
        if state is not None and state.owner is None:
            if type(message) is Stepped:
                message = message.item
            if isinstance(message, Message):
                state.owner = Scope.of(message)

    def listeners_changed(self) -> None:
        """Recompute the fast-path flags after a listener was added."""
        self.observed = self.dispatcher.observed
        self.tapped = self.dispatcher.message_bus is not None

    # -------------------------------------------------------------- delivery
    def check_open(self, key: str | None) -> TraceState | None:
        """The live state of ``key``; raises when the flow stopped or the trace is cancelled."""
        if self.phase == "stopped":
            raise self.stopped_error()
        state = self.traces.get(key)
        if state is not None and state.cancelled:
            raise TraceCancelled(key)
        return state

    def deliver_nowait(
        self, source: str, key: str | None, item: Any, floes: Sequence[Floe]
    ) -> None:
        """Deliver ``item`` on every floe (Rookery when ``floes`` is empty) now, or nowhere.

        Raises ``asyncio.QueueFull`` naming the first full edge (nothing is delivered then),
        ``TraceCancelled`` for a cancelled trace and ``FlowStopped`` once the flow has stopped.
        """
        if not self.try_deliver(source, key, item, floes):
            if not floes:
                raise asyncio.QueueFull(f"Rookery buffer of trace {key!r} is full")
            full = next(floe for floe in floes if floe.full_for(key))
            raise asyncio.QueueFull(f"edge {source} -> {full.target} is full")

    def try_deliver(self, source: str, key: str | None, item: Any, floes: Sequence[Floe]) -> bool:
        """Deliver like :meth:`deliver_nowait` when nothing is full, else deliver nothing: False."""
        state = None if key is None else self.traces.states.get(key)
        if (state is not None and state.cancelled) or self.phase == "stopped":
            self.check_open(key)  # raises the right error
        if not floes:
            # Rookery hands back exactly what the node returned (the bus still sees the envelope).
            value = item.value if type(item) is Carried else item
            if not self.rookery.offer(source, key, value):
                return False
            if state is not None:  # _delivered(), inlined: every stream chunk comes here
                state.delivered = True
            if self.tapped:
                self.dispatcher.publish(source, ROOKERY.name, key, item)
            return True
        if len(floes) == 1:
            floe = floes[0]
            if not floe.offer(key, item):
                return False
            self.traces.enter(key)
            if self.tapped:
                self.dispatcher.publish(source, floe.target, key, item)
            return True
        for floe in floes:
            if floe.full_for(key):
                return False
        # _land() for each floe, inlined (a fan-out runs this once per branch).
        traces, tapped = self.traces, self.tapped
        copies = isinstance(item, Message | Carried | Stepped)
        for index, floe in enumerate(floes):
            piece = item.branch() if index and copies else item
            floe.offer(key, piece)  # room was checked above
            traces.enter(key)
            if tapped:
                self.dispatcher.publish(source, floe.target, key, piece)
        return True

    async def deliver(
        self,
        source: str,
        key: str | None,
        item: Any,
        floes: Sequence[Floe],
        *,
        outside: bool = False,
    ) -> None:
        """Deliver ``item`` on every floe in order (Rookery when empty), waiting for room.

        Each floe after the first gets its own copy of a ``Message``. ``outside`` is for callers
        that are not a node's worker (``flow.emit``): their waits are registered so that
        ``flow.cancel`` and ``flow.stop`` wake them. Raises ``TraceCancelled`` / ``FlowStopped``
        when the trace is cancelled or the flow stops, before or while waiting; nothing is put
        after that.
        """
        if self.try_deliver(source, key, item, floes):  # the common case: nothing is full
            return
        state = self.check_open(key)
        if not floes:
            rookery = self.rookery
            if not rookery.full(key):  # room again: the check above ran no await
                self._to_rookery(source, key, item, state)
            else:
                await self._room(
                    key,
                    state,
                    outside,
                    rookery.wait_for_space,
                    lambda state: self._to_rookery(source, key, item, state),
                )
            return
        for index, floe in enumerate(floes):
            copy = index and isinstance(item, Message | Carried | Stepped)
            piece = item.branch() if copy else item
            if not floe.full_for(key):
                self._land(source, key, piece, floe)
            else:
                state = await self._room(
                    key,
                    state,
                    outside,
                    floe.wait_for_space,
                    lambda _, floe=floe, piece=piece: self._land(source, key, piece, floe),
                )

    def hand_off(self, floe: Floe, key: str | None, item: Any, state: TraceState | None) -> bool:
        """Pass a node's result of the same trace straight on to ``floe`` when nothing can wait.

        The hot path: the message's pending count moves with it (no enter/leave). Returns False
        when the regular path must run instead (bus mirroring, a full edge or lane, a cancelled
        trace).
        """
        if self.tapped or (state is not None and state.cancelled):
            return False
        return floe.offer(key, item)

    async def _room(
        self,
        key: str | None,
        state: TraceState | None,
        outside: bool,
        wait: Callable[[str | None], Awaitable[None]],
        land: Callable[[TraceState | None], None],
    ) -> TraceState | None:
        """Wait until ``wait(key)`` returns, check that the put may still happen, then ``land``."""
        if not outside:
            # A worker's own scope is registered with the trace: cancel() interrupts this wait.
            await wait(key)
            self._check_after_wait(key, state)
            land(state)
            return state
        scope = CancelScope()
        if key is not None and state is None:
            state = self.traces.open(key)  # a new trace is live (and cancellable) while it waits
        self.blocked.add(scope)
        if state is not None:
            state.scopes.add(scope)
        try:
            with scope:
                await wait(key)
            self._check_after_wait(key, state)
            land(state)  # before the scope is released, so the trace cannot end in between
        finally:
            self.blocked.discard(scope)
            if state is not None and key is not None:
                state.scopes.discard(scope)
                self.traces.release(key, state)
        return state

    def _check_after_wait(self, key: str | None, state: TraceState | None) -> None:
        if self.phase == "stopped":
            raise self.stopped_error("the flow stopped while waiting for room")
        if state is not None and state.cancelled:
            raise TraceCancelled(key)

    def loop_back(self, station: Station, key: str, item: Message | Carried | Stepped) -> None:
        """Put a controller's next hop on its own self-edge, ignoring the bound.

        That edge holds at most one hop per live trace and only this node drains it, so waiting
        for room there could deadlock.
        """
        assert station.loop_floe is not None
        self.check_open(key)
        self._land(station.name, key, item, station.loop_floe, bounded=False)

    def _land(
        self, source: str, key: str | None, item: Any, floe: Floe, *, bounded: bool = True
    ) -> None:
        if bounded:
            floe.put_nowait(key, item)
        else:
            floe.push_unbounded(key, item)
        self.traces.enter(key)
        if self.tapped:
            self.dispatcher.publish(source, floe.target, key, item)

    def _to_rookery(
        self, source: str, key: str | None, item: Any, state: TraceState | None
    ) -> None:
        self.rookery.put_nowait(source, key, item.value if type(item) is Carried else item)
        self._delivered(source, key, item, state)

    def _delivered(self, source: str, key: str | None, item: Any, state: TraceState | None) -> None:
        if state is not None:
            state.delivered = True
        if self.tapped:
            self.dispatcher.publish(source, ROOKERY.name, key, item)

    # ---------------------------------------------------------------- events
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
    ) -> None:
        """Build and dispatch one event (callers check ``observed`` first).

        ``station`` is the node it is about; ``endpoint`` names OpenSea or Rookery instead;
        ``owner`` is the trace's scope when the trace does not know it yet (its first emit).
        """
        state = None if trace_id is None else self.traces.states.get(trace_id)
        if station is None:
            where: tuple[str | None, str | None, int, int, int] = (None, None, 0, 0, 0)
            if endpoint is OPEN_SEA:
                ingress = self.ingress_all
                depth = sum(floe.size for floe in ingress)
                where = (OPEN_SEA.name, OPEN_SEA.name, 0, depth, len(ingress))
            elif endpoint is not None:
                where = (endpoint.name, endpoint.name, self.rookery.depth(trace_id), 0, 0)
        else:
            out = station.out_floes
            depth_out = out[0].size if len(out) == 1 else sum(f.size for f in out)
            inbox = len(station.inbox.items)
            where = (station.name, station.node_id, inbox, depth_out, len(out))
        self.dispatcher.dispatch(
            _new_event(
                FlowEvent,
                (
                    event_type,
                    time.time(),
                    where[0],
                    where[1],
                    trace_id,
                    attempt,
                    latency_ms,
                    where[2],
                    where[3],
                    where[4],
                    self.queue_maxsize,
                    (None if trace_id is None else 0) if state is None else state.pending,
                    0 if state is None else state.inflight,
                    False if state is None else state.cancelled,
                    _NO_EXTRA if extra is None else MappingProxyType(extra),
                ),
            ),
            owner if owner is not None or state is None else state.owner,
        )
