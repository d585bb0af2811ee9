"""PenguiFlow: a running graph of nodes, and ``create()`` which builds one."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, cast

import anyio
from anyio import CancelScope
from anyio.abc import TaskGroup, TaskStatus

from ._dispatch import Dispatcher, OverflowPolicy
from ._distribution import MessageBus, StateStore, StoredEvent
from ._errors import FlowError, FlowErrorCode, FlowStopped, TraceCancelled, TraceEnded
from ._events import EventHook, FlowEvent, FlowEventType, Middleware
from ._floe import Floe
from ._graph import OPEN_SEA, Adjacency, Graph, build_graph
from ._node import Node
from ._registry import ModelRegistry
from ._rookery import ANY_TRACE, Rookery
from ._runner import NodeRunner
from ._streams import StreamSequencer
from ._trace import TraceState, TraceTable
from ._types import Message, StreamChunk

__all__ = ["FlowStatistics", "PenguiFlow", "create"]

logger = logging.getLogger("penguiflow.core")

# FlowEvent is a NamedTuple: build it from a tuple, without keyword processing.
_new_event = cast(
    Callable[[type[FlowEvent], tuple[Any, ...]], FlowEvent],
    tuple.__new__,  # pyright: ignore[reportUnknownMemberType]
)
_NO_EXTRA: Mapping[str, Any] = MappingProxyType({})


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


class PenguiFlow:
    """A graph of nodes joined by bounded floes. Build it with :func:`create`.

    Use ``async with flow.running(registry=...)``, or ``flow.run()`` / ``await flow.stop()``.
    """

    flush_timeout_s: float = 5.0
    """How long ``stop()`` waits for buffered events to reach async listeners."""

    def __init__(
        self,
        graph: Graph,
        *,
        queue_maxsize: int = 64,
        middlewares: Sequence[Middleware] = (),
        on_event: EventHook | None = None,
        emit_errors_to_rookery: bool = False,
        event_buffer_size: int = 10_000,
        event_overflow: OverflowPolicy = "drop_oldest",
        state_store: StateStore | None = None,
        message_bus: MessageBus | None = None,
    ) -> None:
        self.graph = graph
        self.queue_maxsize = queue_maxsize
        self.emit_errors_to_rookery = emit_errors_to_rookery
        self.state_store: StateStore | None = state_store
        self.message_bus: MessageBus | None = message_bus
        self.traces: TraceTable = TraceTable(self._trace_ended)
        self.rookery: Rookery = Rookery(queue_maxsize)
        self.streams: StreamSequencer = StreamSequencer(self.traces)
        self._runners = {node: NodeRunner(self, node) for node in graph.nodes}
        self._by_name = {node.name: runner for node, runner in self._runners.items()}
        self._ingress: dict[str, Floe] = {}
        self._link()
        self._ingress_all = tuple(self._ingress.values())

        self.dispatcher: Dispatcher = Dispatcher(
            hooks=[on_event] if on_event is not None else [],
            middlewares=middlewares,
            state_store=state_store,
            message_bus=message_bus,
            buffer_size=event_buffer_size,
            overflow=event_overflow,
        )
        self.observed: bool = self.dispatcher.observed
        """Whether anyone listens; when False no ``FlowEvent`` is built."""
        self.tapped: bool = message_bus is not None
        """Whether edge crossings are mirrored to a message bus."""
        self.quiet: bool = not (self.observed or self.tapped)
        """Neither listened to nor tapped: nodes may take the fast path."""

        self._task_group: TaskGroup | None = None
        self._phase: Literal["idle", "running", "stopped"] = "idle"
        self._stop_requested: anyio.Event | None = None
        self._serving: asyncio.Task[None] | None = None
        self._stopped: anyio.Event | None = None

    def _link(self) -> None:
        maxsize = self.queue_maxsize
        graph = self.graph
        for node in graph.ingress:
            runner = self._runners[node]
            self._ingress[node.name] = Floe(OPEN_SEA.name, node.name, runner.inbox, maxsize)
        for node, runner in self._runners.items():
            for succ in graph.successors[node]:
                floe = Floe(node.name, succ.name, self._runners[succ].inbox, maxsize)
                runner.out_by_name[succ.name] = floe
                if succ is node:
                    runner.loop_floe = floe
            runner.forward = tuple(f for n, f in runner.out_by_name.items() if n != node.name)

    # ------------------------------------------------------------ properties
    @property
    def nodes(self) -> tuple[Node, ...]:
        """Every node of the flow."""
        return self.graph.nodes

    @property
    def task_group(self) -> TaskGroup:
        """The task group every worker runs in (only while running)."""
        if self._task_group is None:
            raise RuntimeError("the flow is not running; call flow.run() first")
        return self._task_group

    @property
    def task_group_or_none(self) -> TaskGroup | None:
        """The workers' task group while running, else None."""
        return self._task_group

    @property
    def running_now(self) -> bool:
        """Whether the flow's workers are running."""
        return self._phase == "running"

    def node(self, name: str) -> Node:
        """The node called ``name`` (``KeyError`` listing the names when missing)."""
        try:
            return self._by_name[name].node
        except KeyError:
            raise KeyError(f"no node {name!r}; nodes: {sorted(self._by_name)}") from None

    # ------------------------------------------------------------- lifecycle
    def _prepare(self, registry: ModelRegistry | None) -> None:
        if self._phase != "idle":
            raise RuntimeError(
                "this flow was already started; a flow runs once. Build a new one with create()."
            )
        if registry is None:
            logger.info(
                "flow started without a ModelRegistry: messages are not validated "
                "(pass registry=ModelRegistry.from_annotations(flow) to validate them)"
            )
        else:
            missing = [
                n.name
                for n in self.graph.nodes
                if n.policy.validate != "none" and n.name not in registry
            ]
            if missing:
                raise ValueError(
                    f"node(s) {', '.join(map(repr, missing))} are not registered in the registry; "
                    "register them (registry.register(name, In, Out)), build the registry with "
                    'ModelRegistry.from_annotations(flow), or use NodePolicy(validate="none")'
                )
            for runner in self._runners.values():
                entry = registry.entry(runner.name)
                if entry is None:
                    continue
                mode = runner.policy.validate
                if mode in ("both", "in"):
                    runner.in_adapter = entry.in_adapter
                if mode in ("both", "out"):
                    runner.out_adapter = entry.out_adapter
                    runner.out_is_message = entry.out_is_message
        for runner in self._runners.values():
            runner.configure()
        self._phase = "running"
        self._stop_requested = anyio.Event()
        self._stopped = anyio.Event()

    def run(self, registry: ModelRegistry | None = None) -> None:
        """Start the workers in the background (needs a running event loop).

        Prefer ``async with flow.running(...)``; with ``run()`` you must ``await flow.stop()``.
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "flow.run() needs a running event loop: call it from async code, "
                "or use `async with flow.running():`"
            ) from None
        self._prepare(registry)
        self._serving = loop.create_task(self._serve(), name="penguiflow:flow")

    @asynccontextmanager
    async def running(self, registry: ModelRegistry | None = None) -> AsyncGenerator[PenguiFlow]:
        """Run the flow for the duration of the block; stop it (awaiting every task) on exit."""
        self._prepare(registry)
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(self._serve)
                try:
                    yield self
                finally:
                    with CancelScope(shield=True):
                        await self.stop()
        except BaseExceptionGroup as group:
            # The task group is ours, not the caller's: let the body's exception out as itself.
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise

    async def _serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        assert self._stop_requested is not None and self._stopped is not None
        try:
            async with anyio.create_task_group() as tg:
                self._task_group = tg
                if self.dispatcher.buffered_sinks:
                    tg.start_soon(self.dispatcher.run, name="penguiflow:listeners")
                for runner in self._runners.values():
                    runner.grow()
                task_status.started()
                await self._stop_requested.wait()
                self._phase = "stopped"  # no new work while the workers unwind
                tg.cancel_scope.cancel()
        finally:
            self._task_group = None
            self._finish()
            with anyio.move_on_after(self.flush_timeout_s, shield=True):
                await self.dispatcher.flush()
            self._stopped.set()

    async def stop(self) -> None:
        """Stop the flow: cancel every task it started and wait for them. Idempotent."""
        if self._phase == "idle":
            self._phase = "stopped"
            return
        if self._stop_requested is None or self._stopped is None:
            return
        self._stop_requested.set()
        await self._stopped.wait()
        if self._serving is not None:
            await self._serving

    def _finish(self) -> None:
        self._phase = "stopped"
        for runner in self._runners.values():
            runner.inbox.discard_all()
        for key, state in list(self.traces.states.items()):
            for scope in state.scopes:
                scope.cancel()  # wakes callers still blocked in emit(): they get FlowStopped
            state.scopes.clear()
            self.traces.end(key, state)
        self.rookery.fail_all(lambda: FlowStopped("the flow stopped"))

    def _require_running(self, what: str) -> None:
        if self._phase != "running":
            state = "has stopped" if self._phase == "stopped" else "is not running yet"
            raise RuntimeError(
                f"cannot {what}: the flow {state}; start it with flow.run() or "
                "`async with flow.running():` first"
            )

    # ------------------------------------------------------------------ emit
    def _ingress_for(self, to: Node | str | Sequence[Node | str] | None) -> tuple[Floe, ...]:
        if to is None:
            return self._ingress_all
        items = [to] if isinstance(to, Node | str) else list(to)
        floes: list[Floe] = []
        for target in items:
            name = target.name if isinstance(target, Node) else target
            floe = self._ingress.get(name)
            if floe is None:
                raise KeyError(
                    f"{name!r} is not an ingress node; OpenSea feeds {sorted(self._ingress)}"
                )
            floes.append(floe)
        return tuple(floes)

    def _key_of(self, msg: Any, trace_id: str | None) -> str | None:
        if isinstance(msg, Message):
            if trace_id is not None and trace_id != msg.trace_id:
                raise ValueError(
                    f"trace_id={trace_id!r} differs from the message's trace_id "
                    f"{msg.trace_id!r}; omit trace_id for Message objects"
                )
            return msg.trace_id
        return trace_id

    async def emit(
        self,
        msg: Any,
        to: Node | str | Sequence[Node | str] | None = None,
        *,
        trace_id: str | None = None,
    ) -> None:
        """Put ``msg`` into the flow through OpenSea; waits while the target floe is full.

        ``to`` names ingress nodes; with ``to=None`` and several ingress nodes the message is
        broadcast to all of them. ``trace_id`` tracks a bare (non-``Message``) payload as a trace.
        """
        if self._phase != "running":
            self._require_running("emit")
        floes = self._ingress_all if to is None else self._ingress_for(to)
        key = self._key_of(msg, trace_id)
        traces = self.traces
        state = traces.get(key)
        if state is not None and state.cancelled:
            raise TraceCancelled(key, f"trace {key!r} is being cancelled; emit it again later")
        if self.observed:
            self.event(FlowEventType.EMIT, None, key, extra={"targets": [f.target for f in floes]})
        if self.quiet and len(floes) == 1 and not floes[0].full_for(key):  # the common case
            floes[0].put_nowait(key, msg)
            traces.enter(key)
            return
        for index, floe in enumerate(floes):
            item = msg
            if index and isinstance(msg, Message):
                item = msg.branch()
            if self.tapped:
                self.dispatcher.publish(OPEN_SEA.name, floe.target, key, item)
            if not floe.full_for(key):
                floe.put_nowait(key, item)
                traces.enter(key)
                continue
            with traces.scoped(key) as scope:
                await floe.wait_for_space(key)
                if not scope.cancel_called:
                    floe.put_nowait(key, item)
                    traces.enter(key)
            if scope.cancel_called:
                if self._phase == "stopped":
                    raise FlowStopped("the flow stopped while emit() waited for room")
                raise TraceCancelled(key)

    def emit_nowait(
        self,
        msg: Any,
        to: Node | str | Sequence[Node | str] | None = None,
        *,
        trace_id: str | None = None,
    ) -> None:
        """Like :meth:`emit` but never waits: raises ``asyncio.QueueFull`` when a floe is full."""
        self._require_running("emit")
        floes = self._ingress_for(to)
        key = self._key_of(msg, trace_id)
        state = self.traces.get(key)
        if state is not None and state.cancelled:
            raise TraceCancelled(key)
        if self.observed and not any(floe.full_for(key) for floe in floes):
            self.event(FlowEventType.EMIT, None, key, extra={"targets": [f.target for f in floes]})
        self.put_all_nowait(OPEN_SEA.name, key, msg, floes)

    def put_all_nowait(self, source: str, key: str | None, msg: Any, floes: Sequence[Floe]) -> None:
        """Put ``msg`` on every floe at once (each extra branch gets its own copy), or on none.

        Raises ``asyncio.QueueFull`` naming the first full floe; nothing is enqueued then.
        """
        for floe in floes:
            if floe.full_for(key):
                raise asyncio.QueueFull(f"edge {source} -> {floe.target} is full")
        for index, floe in enumerate(floes):
            item = msg.branch() if index and isinstance(msg, Message) else msg
            floe.put_nowait(key, item)
            self.traces.enter(key)
            if self.tapped:
                self.dispatcher.publish(source, floe.target, key, item)

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
        chunk = self.streams.next_chunk(
            parent, text=text, stream_id=stream_id, seq=seq, done=done, meta=meta
        )
        await self.emit(parent.with_payload(chunk), to=to)
        return chunk

    # ----------------------------------------------------------------- fetch
    def _sources(self, from_: Node | str | Iterable[Node | str] | None) -> set[str] | None:
        if from_ is None:
            return None
        items = [from_] if isinstance(from_, Node | str) else list(from_)
        names = {item.name if isinstance(item, Node) else item for item in items}
        egress = {n.name for n in self.graph.egress} | {
            r.name for r in self._runners.values() if not r.forward
        }
        unknown = names - egress
        if unknown:
            raise KeyError(f"{sorted(unknown)} do not feed Rookery; egress nodes: {sorted(egress)}")
        return names

    async def fetch(self, from_: Node | str | None = None, *, trace_id: str | None = None) -> Any:
        """Take the next Rookery item (of ``trace_id`` only, when given), waiting for one.

        A trace-scoped fetch raises ``TraceCancelled`` when the trace is cancelled, the trace's
        ``FlowError`` when it ended in failure without delivering it to Rookery, and
        ``TraceEnded`` when the trace ends while it waits without delivering anything more (say a
        router dropped its message): a caller waiting on a trace is always answered.
        """
        if from_ is not None and trace_id is not None:
            raise ValueError("pass either from_ or trace_id to fetch(), not both")
        if self._phase == "stopped" and not len(self.rookery):
            raise FlowStopped("the flow has stopped and Rookery is empty")
        if trace_id is not None:
            state = self.traces.get(trace_id)
            if state is not None and state.cancelled:
                raise TraceCancelled(trace_id)
            if state is None and not self.rookery.depth(trace_id):
                ending = self.traces.endings.get(trace_id)
                if ending is not None:  # it already ended badly: answer instead of waiting
                    raise ending
        sources = None if from_ is None else self._sources(from_)
        wanted = ANY_TRACE if trace_id is None else trace_id
        try:
            _, key, item = self.rookery.get_nowait(wanted, sources)
        except asyncio.QueueEmpty:
            _, key, item = await self.rookery.get(wanted, sources)
        if self.observed:
            self.event(FlowEventType.FETCH, None, key)
        return item

    async def fetch_any(self, from_: Iterable[Node | str] | None = None) -> Any:
        """Take the next Rookery item produced by any of the egress nodes ``from_``."""
        sources = self._sources(from_)
        _, key, item = await self.rookery.get(ANY_TRACE, sources)
        if self.observed:
            self.event(FlowEventType.FETCH, None, key)
        return item

    def fetch_nowait(self, *, trace_id: str | None = None) -> Any:
        """Take the next Rookery item now; raises ``asyncio.QueueEmpty`` when there is none."""
        _, key, item = self.rookery.get_nowait(ANY_TRACE if trace_id is None else trace_id)
        if self.observed:
            self.event(FlowEventType.FETCH, None, key)
        return item

    # ---------------------------------------------------------- cancellation
    async def cancel(self, trace_id: str) -> bool:
        """Cancel one trace; returns True the first time it cancels a live trace.

        Drops the trace's queued messages from every floe, cancels its running node invocations and
        subflows, wakes its trace-scoped ``fetch`` with ``TraceCancelled``, frees its bookkeeping
        and returns once all of it has unwound. Other traces are untouched.
        """
        state = self.traces.get(trace_id)
        if state is None or state.cancelled:
            return False
        state.cancelled = True
        observed = self.observed
        if observed:
            self.event(FlowEventType.TRACE_CANCEL_START, None, trace_id)
        dropped = 0
        for runner in self._runners.values():
            dropped += len(runner.inbox.drop_trace(trace_id))
            dropped += runner.inbox.drop_parked(trace_id)
        buffered = self.rookery.drop_trace(trace_id)
        if observed:
            self.event(
                FlowEventType.TRACE_CANCEL_DROP,
                None,
                trace_id,
                extra={"dropped": dropped, "rookery_dropped": buffered},
            )
        answered = self.rookery.fail_waiters(trace_id, TraceCancelled(trace_id))
        for scope in list(state.scopes):
            scope.cancel()
        if state.finished is None:
            state.finished = asyncio.Event()
        finished = state.finished
        self.traces.leave(trace_id, dropped)
        if state.pending <= 0 and not state.scopes:
            self.traces.end(trace_id, state)
        await finished.wait()
        if self.emit_errors_to_rookery and not answered:
            # Plain fetch() consumers learn the trace's fate like any other failure.
            error = FlowError(
                trace_id=trace_id,
                node_name=None,
                code=FlowErrorCode.TRACE_CANCELLED,
                message="the trace was cancelled",
                metadata={"dropped": dropped},
            )
            self.rookery.put_nowait(OPEN_SEA.name, trace_id, error)
        if observed:
            self.event(FlowEventType.TRACE_CANCEL_FINISH, None, trace_id)
        return True

    def _trace_ended(self, key: str, state: TraceState) -> None:
        if self._phase == "stopped":
            return  # the flow stopping ends every trace; its waiters get FlowStopped
        outcome = TraceCancelled(key) if state.cancelled else state.error
        if outcome is not None:
            self.traces.remember_ending(key, outcome)
        if not self.rookery.depth(key):  # buffered items come first; fetch raises it after them
            self.rookery.fail_waiters(key, outcome or TraceEnded(key))

    # ---------------------------------------------------------------- events
    def add_middleware(self, middleware: Middleware) -> None:
        """Add an async event listener (runs from a bounded buffer, off the hot path)."""
        dispatcher = self.dispatcher
        needs_drain = not dispatcher.buffered_sinks
        dispatcher.middlewares.append(middleware)
        self.observed, self.quiet = True, False
        if needs_drain and self._task_group is not None:
            self._task_group.start_soon(dispatcher.run, name="penguiflow:listeners")

    def add_event_hook(self, hook: EventHook) -> None:
        """Add a sync event listener called inline for every event (keep it cheap)."""
        self.dispatcher.hooks.append(hook)
        self.observed, self.quiet = True, False

    @property
    def middlewares(self) -> tuple[Middleware, ...]:
        """The async listeners, in order."""
        return tuple(self.dispatcher.middlewares)

    @property
    def event_hooks(self) -> tuple[EventHook, ...]:
        """The sync listeners, in order."""
        return tuple(self.dispatcher.hooks)

    async def load_history(self, trace_id: str) -> Sequence[StoredEvent]:
        """The events the state store recorded for ``trace_id`` (pending ones flushed first)."""
        if self.state_store is None:
            raise RuntimeError(
                "load_history needs a state store: create(..., state_store=InMemoryStateStore())"
            )
        await self.dispatcher.flush()
        return await self.state_store.load_history(trace_id)

    def event(
        self,
        event_type: FlowEventType,
        runner: NodeRunner | None,
        trace_id: str | None,
        *,
        attempt: int = 0,
        latency_ms: float | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Build and dispatch one event (callers check ``observed`` first)."""
        state = None if trace_id is None else self.traces.states.get(trace_id)
        if runner is None:
            where: tuple[str | None, str | None, int, int, int] = (None, None, 0, 0, 0)
        else:
            out = runner.out_floes
            depth_out = out[0].size if len(out) == 1 else sum(f.size for f in out)
            where = (runner.name, runner.node.node_id, len(runner.inbox.items), depth_out, len(out))
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
                    None if state is None else state.pending,
                    0 if state is None else state.inflight,
                    False if state is None else state.cancelled,
                    _NO_EXTRA if extra is None else MappingProxyType(extra),
                ),
            )
        )

    # ---------------------------------------------------------- introspection
    def statistics(self) -> FlowStatistics:
        """A frozen snapshot of the flow's bookkeeping (for dashboards and leak checks)."""
        return FlowStatistics(
            running=self._phase == "running",
            live_traces=len(self.traces),
            queued=sum(len(r.inbox) for r in self._runners.values()),
            rookery_buffered=len(self.rookery),
            rookery_keys=self.rookery.tracked_keys(),
            workers=sum(r.workers for r in self._runners.values()),
            lanes=sum(len(r.inbox.lanes) for r in self._runners.values()),
            streams=len(self.streams),
            events_dropped=self.dispatcher.events_dropped,
            listener_errors=self.dispatcher.listener_errors,
            store_errors=self.dispatcher.store_errors,
            bus_dropped=self.dispatcher.envelopes_dropped,
            bus_errors=self.dispatcher.bus_errors,
        )

    def __repr__(self) -> str:
        return f"PenguiFlow(nodes={[n.name for n in self.graph.nodes]}, phase={self._phase!r})"


def create(
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
) -> PenguiFlow:
    """Build a flow from adjacencies (``a.to(b, c)``, ``b.to()`` …); the graph is checked eagerly.

    Args:
        adjacencies: ``node.to(*successors)`` for each node; ``node.to()`` marks a terminal node.
        queue_maxsize: Bound of every floe and of each trace's Rookery buffer (<= 0: unbounded).
        allow_cycles: Permit cycles between distinct nodes (self-edges need ``allow_cycle``).
        middlewares: Async event listeners, run from a bounded buffer off the hot path.
        on_event: A sync event listener called inline.
        emit_errors_to_rookery: Deliver each terminal ``FlowError`` to Rookery as an item.
        event_buffer_size: Capacity of the async-middleware buffer.
        event_overflow: ``"drop_oldest"`` or ``"drop_newest"`` when that buffer is full (counted).
        state_store: Optional ``StateStore`` that records events for ``load_history``.
        message_bus: Optional ``MessageBus`` that sees every edge crossing.

    Raises:
        CycleError: The graph has a cycle that was not allowed.
        GraphError: Duplicate node names, no ingress node, or a ``WM`` node without a self-edge.
    """
    graph = build_graph(adjacencies, allow_cycles=allow_cycles)
    return PenguiFlow(
        graph,
        queue_maxsize=queue_maxsize,
        middlewares=middlewares,
        on_event=on_event,
        emit_errors_to_rookery=emit_errors_to_rookery,
        event_buffer_size=event_buffer_size,
        event_overflow=event_overflow,
        state_store=state_store,
        message_bus=message_bus,
    )
