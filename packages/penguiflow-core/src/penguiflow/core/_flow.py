"""PenguiFlow: a running graph of nodes, and ``create()`` which builds one.

Starting and stopping are the base class ``FlowLifecycle`` (``_flow_lifecycle``), the event
listeners ``FlowListeners`` (``_flow_listeners``); emit, fetch, call and cancel are here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from ._call import call as call_once
from ._call import run_sync as run_once_sync
from ._dispatch import Dispatcher, OverflowPolicy
from ._distribution import MessageBus, StateStore
from ._durable import Scope
from ._events import EventHook, FlowEventType, Middleware
from ._floe import Floe
from ._flow_lifecycle import FlowLifecycle
from ._flow_listeners import FlowListeners
from ._graph import OPEN_SEA, Adjacency, Graph, build_graph
from ._ingress import attach, ingress_floes, names, stamped
from ._invoke import invoke
from ._logging import failure_level
from ._node import Node
from ._registry import ModelRegistry
from ._rookery import ANY_TRACE
from ._runner import NodeRunner
from ._runtime import Runtime
from ._statistics import FlowStatistics, snapshot
from ._types import Message, StreamChunk

__all__ = ["PenguiFlow", "runtime_of"]

if TYPE_CHECKING:
    from ._journal import Journal


class PenguiFlow(FlowLifecycle, FlowListeners):
    """A graph of nodes joined by bounded floes: ``PenguiFlow(*adjacencies, ...)`` or ``create``.

    Both take the same arguments (see :func:`create`). Run it with
    ``async with flow.running(registry=...)``, or ``flow.run()`` / ``await flow.stop()``.
    """

    __slots__ = ("_by_name",)

    def __init__(
        self,
        *adjacencies: Adjacency | Node,
        queue_maxsize: int = 64,
        allow_cycles: bool = False,
        middlewares: Sequence[Middleware] = (),
        on_event: EventHook | None = None,
        emit_errors_to_rookery: bool = False,
        event_buffer_size: int = 10_000,
        event_overflow: OverflowPolicy = "drop_oldest",
        state_store: StateStore | None = None,
        message_bus: MessageBus | None = None,
        journal: Journal | None = None,
        log_failures: int | str | None = logging.ERROR,
    ) -> None:
        graph = build_graph(adjacencies, allow_cycles=allow_cycles)
        dispatcher = Dispatcher(
            hooks=[on_event] if on_event is not None else [],
            middlewares=middlewares,
            state_store=state_store,
            message_bus=message_bus,
            buffer_size=event_buffer_size,
            overflow=event_overflow,
        )
        self._rt = rt = Runtime(
            graph,
            queue_maxsize=queue_maxsize,
            emit_errors_to_rookery=emit_errors_to_rookery,
            dispatcher=dispatcher,
            face=self,
        )
        if journal is not None:
            rt.recorder = attach(journal, rt)
        rt.failure_level = failure_level(log_failures)
        self._runners = {node: NodeRunner(rt, station) for node, station in rt.stations.items()}
        self._by_name = {node.name: node for node in graph.nodes}
        self._stop_requested: anyio.Event | None = None
        self._serving: asyncio.Task[None] | None = None
        self._stopped: anyio.Event | None = None

    # ------------------------------------------------------------ properties
    @property
    def graph(self) -> Graph:
        """The checked topology (nodes, edges, ingress and egress)."""
        return self._rt.graph

    @property
    def nodes(self) -> tuple[Node, ...]:
        """Every node of the flow."""
        return self._rt.graph.nodes

    @property
    def running_now(self) -> bool:
        """Whether the flow's workers are running."""
        return self._rt.phase == "running"

    @property
    def state_store(self) -> StateStore | None:
        """The state store given to ``create()``, if any."""
        return self._rt.dispatcher.state_store

    def node(self, name: str) -> Node:
        """The node called ``name`` (``KeyError`` listing the names when missing)."""
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no node {name!r}; nodes: {sorted(self._by_name)}") from None

    # ------------------------------------------------------------------ emit
    def _report_emit(self, key: str | None, msg: Any, floes: Sequence[Floe]) -> None:
        """The ``emit`` event (raising first when the trace is being cancelled)."""
        rt = self._rt
        rt.check_open(key)
        extra = {"targets": [f.target for f in floes]}
        rt.event(FlowEventType.EMIT, None, key, extra=extra, owner=self._owner(msg))

    def _remember_owner(self, key: str | None, msg: Any) -> None:
        """After an ingress put: the trace's scope, for the events a state store keeps."""
        rt = self._rt
        if rt.dispatcher.state_store is not None or rt.recorder is not None:
            rt.note_owner(key, msg)

    def _owner(self, msg: Any) -> Scope | None:
        """The scope a stored event of ``msg``'s trace is kept under (with a state store)."""
        if self._rt.dispatcher.state_store is None or not isinstance(msg, Message):
            return None
        return Scope.of(msg)

    async def emit(
        self,
        msg: Any,
        to: Node | str | Sequence[Node | str] | None = None,
        *,
        trace_id: str | None = None,
    ) -> None:
        """Put ``msg`` into the flow through OpenSea; waits while the target floe is full.

        ``to`` names ingress nodes; with ``to=None`` and several ingress nodes the message is
        broadcast to all of them. ``trace_id`` tracks a bare (non-``Message``) payload as a trace,
        and re-stamps a ``Message`` with that trace id (a copy is emitted; yours is unchanged).
        Raises ``TraceCancelled`` while the trace is being cancelled and ``FlowStopped`` when the
        flow stops while this call waits for room.
        """
        rt = self._rt
        if rt.phase != "running":
            self._require_running("emit")
        floes = rt.ingress_all if to is None else ingress_floes(rt, to)
        if isinstance(msg, Message) and trace_id is None:
            key: str | None = msg.trace_id
        else:
            msg, key = stamped(msg, trace_id)
        if rt.observed:
            self._report_emit(key, msg, floes)
        if rt.recorder is not None:  # a journaled flow records the ingress message first
            msg = await rt.recorder.ingress(key, msg, names(to))
        if not rt.try_deliver(OPEN_SEA.name, key, msg, floes):  # else wait for room
            await rt.deliver(OPEN_SEA.name, key, msg, floes, outside=True)
        self._remember_owner(key, msg)

    def emit_nowait(
        self,
        msg: Any,
        to: Node | str | Sequence[Node | str] | None = None,
        *,
        trace_id: str | None = None,
    ) -> None:
        """Like :meth:`emit` but never waits: raises ``asyncio.QueueFull`` when a floe is full.

        All or nothing: with several targets, nothing is put when any of them is full.
        """
        self._require_running("emit")
        rt = self._rt
        floes = ingress_floes(rt, to)
        msg, key = stamped(msg, trace_id)
        if rt.observed and not any(floe.full_for(key) for floe in floes):
            self._report_emit(key, msg, floes)
        if rt.recorder is not None:
            msg = rt.recorder.ingress_nowait(key, msg, names(to))
        rt.deliver_nowait(OPEN_SEA.name, key, msg, floes)
        self._remember_owner(key, msg)

    async def emit_chunk(
        self,
        *,
        parent: Message,
        text: str,
        stream_id: str | None = None,
        seq: int | None = None,
        done: bool = False,
        meta: dict[str, Any] | None = None,
        to: Node | str | Sequence[Node | str] | None = None,
    ) -> StreamChunk:
        """Emit a ``StreamChunk`` from outside the flow (through OpenSea); returns the chunk."""
        chunk = self._rt.streams.next_chunk(parent, text, stream_id, seq, done, meta)
        await self.emit(parent.with_payload(chunk), to=to)
        return chunk

    # ----------------------------------------------------------------- fetch
    def _sources(self, from_: Node | str | Iterable[Node | str] | None) -> set[str] | None:
        if from_ is None:
            return None
        items = [from_] if isinstance(from_, Node | str) else list(from_)
        names = {item.name if isinstance(item, Node) else item for item in items}
        rt = self._rt
        egress = {n.name for n in rt.graph.egress} | {
            s.name for s in rt.stations.values() if not s.forward
        }
        unknown = names - egress
        if unknown:
            raise KeyError(f"{sorted(unknown)} do not feed Rookery; egress nodes: {sorted(egress)}")
        return names

    async def fetch(self, from_: Node | str | None = None, *, trace_id: str | None = None) -> Any:
        """Take the next Rookery item (of ``trace_id`` only, when given), waiting for one.

        Buffered items always come first. Then a trace-scoped fetch raises ``TraceCancelled`` when
        the trace is cancelled, the trace's ``FlowError`` when it failed without delivering it to
        Rookery, and ``TraceEnded`` when it ended without delivering anything more (say a router
        dropped its message), also when the fetch comes after the fact; any fetch raises
        ``FlowStopped`` once the flow has stopped. A caller waiting on a trace is always answered.
        """
        if from_ is None:  # _take, inlined for the common case
            rt = self._rt
            rookery = rt.rookery
            wanted = ANY_TRACE if trace_id is None else trace_id
            delivery = rookery.poll(wanted)
            if delivery is None:
                outcome = rt.fetch_outcome(trace_id)
                if outcome is not None:
                    raise outcome
                delivery = await rookery.get(wanted)
            _, key, item = delivery
            if rt.observed:
                rt.event(FlowEventType.FETCH, None, key)
            return item
        if trace_id is not None:
            raise ValueError("pass either from_ or trace_id to fetch(), not both")
        return await self._take(ANY_TRACE, None, self._sources(from_))

    async def fetch_any(self, from_: Iterable[Node | str] | None = None) -> Any:
        """Take the next Rookery item produced by any of the egress nodes ``from_``."""
        return await self._take(ANY_TRACE, None, self._sources(from_))

    async def _take(self, wanted: Any, trace_id: str | None, sources: set[str] | None) -> Any:
        rt = self._rt
        rookery = rt.rookery
        delivery = rookery.poll(wanted, sources)
        if delivery is None:
            outcome = rt.fetch_outcome(trace_id)
            if outcome is not None:
                raise outcome
            delivery = await rookery.get(wanted, sources)
        _, key, item = delivery
        if rt.observed:
            rt.event(FlowEventType.FETCH, None, key)
        return item

    def fetch_nowait(self, *, trace_id: str | None = None) -> Any:
        """Take the next Rookery item now; raises ``asyncio.QueueEmpty`` when there is none."""
        rt = self._rt
        _, key, item = rt.rookery.get_nowait(ANY_TRACE if trace_id is None else trace_id)
        if rt.observed:
            rt.event(FlowEventType.FETCH, None, key)
        return item

    # -------------------------------------------------------------- one call
    async def call(
        self,
        message: Any,
        *,
        timeout_s: float | None = None,
        to: Node | str | Sequence[Node | str] | None = None,
        registry: ModelRegistry | None = None,
    ) -> Any:
        """Emit ``message`` and return the first result of its trace: ``emit`` + ``fetch``.

        Trace-scoped: other traces running through the flow are untouched. A flow that is not
        running is started (with ``registry``) for the call and stopped after it; a running one
        is only used. A bare payload (not a ``Message``) is given a fresh trace id. A trace that
        delivers several results returns its first; the others wait in Rookery for
        ``fetch(trace_id=...)`` (on a flow ``call`` started, stopping frees them).

        Args:
            message: A ``Message``, or a bare payload.
            timeout_s: Seconds to wait for the result (None: no bound). On timeout the trace is
                cancelled and ``TimeoutError`` raised; so it is when the caller is cancelled.
            to: Ingress node(s) to emit to (default: every ingress node).
            registry: Validates messages while the flow runs (only when ``call`` starts it).

        Raises:
            FlowError: The trace failed (also with ``emit_errors_to_rookery=True``).
            TraceCancelled: The trace was cancelled.
            TraceEnded: The trace ended without a result (a node returned ``None``, a router
                chose no successor).
            TimeoutError: No result within ``timeout_s``.
            ValueError: A bad ``timeout_s``, or ``registry`` given for a running flow.
        """
        return await call_once(self, message, timeout_s=timeout_s, to=to, registry=registry)

    def run_sync(
        self,
        message: Any,
        *,
        timeout_s: float | None = None,
        to: Node | str | Sequence[Node | str] | None = None,
        registry: ModelRegistry | None = None,
    ) -> Any:
        """For scripts: start the flow, return :meth:`call`'s result for ``message``, stop it.

        Runs its own event loop (``asyncio.run``), so it cannot be called from async code (write
        ``await flow.call(message)`` there); a flow runs once, so call it once per flow.
        Arguments and errors are those of :meth:`call`; ``RuntimeError`` when an event loop is
        running or the flow already runs.
        """
        return run_once_sync(self, message, timeout_s=timeout_s, to=to, registry=registry)

    # ---------------------------------------------------------------- invoke
    async def call_node(
        self,
        node: Node,
        payload: Any,
        context: object | None = None,
        *,
        trace_id: str | None = None,
        deadline_s: float | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Any:
        """Run ``node`` once on ``payload`` in the calling task and return what it returns.

        Any ``Node`` works, in this flow's graph or not, and the flow need not be running (events
        reach async middlewares while it runs). The node's ``NodePolicy`` applies: per-attempt
        ``timeout_s``, retries with backoff and jitter, ``retry_on``, and ``max_concurrency``,
        which here bounds the node's concurrent invocations through this flow across all
        callers. Input and output are validated only where the flow's registry has the node.

        Args:
            node: The node to run.
            payload: Its input (the function's first argument).
            context: Its ``ctx`` (default: a ``Context`` of this flow for ``node``).
            trace_id: The trace the invocation belongs to: the trace stays live while it runs
                and ``flow.cancel(trace_id)`` interrupts it.
            deadline_s: Wall-clock epoch seconds (default: the payload's own ``deadline_s``
                when it is a ``Message``); checked before start, and while running with
                ``interrupt_on_deadline``.
            extra: Fields added to every event of the invocation (which also carry
                ``invoked: True``): ``node_start``, ``node_success``, ``node_error``,
                ``node_timeout``, ``node_retry``, ``node_failed``.

        Raises:
            FlowError: The invocation failed for good (code ``NODE_EXCEPTION``,
                ``NODE_TIMEOUT``, ``VALIDATION_ERROR`` or ``DEADLINE_EXCEEDED``).
            TraceCancelled: ``trace_id`` was cancelled before or while the node ran.
            FlowStopped: The flow stopped while an invocation with a ``trace_id`` ran.
            TypeError: ``node`` is not a ``Node``.
            RuntimeError: The flow has stopped.
        """
        return await invoke(
            self._rt, node, payload, context, trace_id=trace_id, deadline_s=deadline_s, extra=extra
        )

    # ---------------------------------------------------------- cancellation
    async def cancel(self, trace_id: str) -> bool:
        """Cancel one trace; returns True the first time it cancels a live trace.

        Drops the trace's queued messages from every floe, cancels its running node invocations and
        subflows, wakes its trace-scoped ``fetch`` with ``TraceCancelled``, frees its bookkeeping
        and returns once all of it has unwound. Other traces are untouched.
        """
        return await self._rt.cancel(trace_id)

    # ---------------------------------------------------------- introspection
    def statistics(self) -> FlowStatistics:
        """A frozen snapshot of the flow's bookkeeping (for dashboards and leak checks)."""
        return snapshot(self._rt, sum(r.workers for r in self._runners.values()))

    def __repr__(self) -> str:
        names = [n.name for n in self._rt.graph.nodes]
        return f"PenguiFlow(nodes={names}, phase={self._rt.phase!r})"


def runtime_of(flow: PenguiFlow) -> Runtime:
    """The private runtime behind ``flow`` (for the package's own helpers)."""
    return flow._rt  # pyright: ignore[reportPrivateUsage]
