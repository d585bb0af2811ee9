"""Context: what a node function can do besides returning a value."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from anyio import CancelScope

from ._distribution import RemoteBinding
from ._errors import FlowError
from ._events import FlowEventType
from ._graph import ROOKERY, Endpoint
from ._node import Node
from ._runtime import Runtime
from ._station import Station
from ._subflow import PlaybookFactory, run_playbook
from ._trace import current_trace_id
from ._types import Message, Stepped, StreamChunk, merge_meta

if TYPE_CHECKING:
    from ._floe import Floe, Item
    from ._flow import PenguiFlow

__all__ = ["Context", "Target"]

logger = logging.getLogger("penguiflow.core")

Target = Node | str | Endpoint
"""A successor: the node itself, its name, or ``ROOKERY``."""


class Context:
    """One per node: emit to successors, stream chunks, call subflows, inspect queues.

    ``emit(msg)`` with ``to=None`` sends to every successor other than the node itself (a self-edge
    is reached only with ``to=node``), or to Rookery when the node has no other successor.

    A running flow gives each node its context. ``Context(owner)`` builds one by hand, for calling
    a node function directly in a unit test (``await node.invoke(msg, Context(node))``): it
    answers ``owner`` and the introspection methods, and raises ``RuntimeError`` for anything
    that needs a running flow (emitting, fetching, subflows).
    """

    __slots__ = ("_face", "_owner", "_rt", "_station")

    def __init__(self, owner: Node | Endpoint, runtime: PenguiFlow | None = None) -> None:
        self._owner: Node | Endpoint = owner
        self._face: PenguiFlow | None = runtime
        self._rt: Runtime | None = None
        self._station: Station | None = None

    @classmethod
    def wired(cls, rt: Runtime, station: Station) -> Context:
        """The context of a node running in a flow (built by the runtime)."""
        ctx = cls(station.node, cast("PenguiFlow", rt.face))
        ctx._rt = rt
        ctx._station = station
        return ctx

    @property
    def owner(self) -> Node | Endpoint:
        """The node this context belongs to."""
        return self._owner

    @property
    def runtime(self) -> PenguiFlow | None:
        """The flow the node runs in (None for a context built by hand without one)."""
        return self._face

    def _wiring(self) -> tuple[Runtime, Station]:
        rt, station = self._rt, self._station
        if rt is None or station is None:
            raise RuntimeError(
                f"this Context of {self._owner!r} was built by hand and is not part of a running "
                "flow; run the node in a flow (penguiflow.testkit.run_one) to emit, fetch or call "
                "subflows"
            )
        return rt, station

    # ------------------------------------------------------------------ emit
    def _targets(self, station: Station, to: Target | Sequence[Target] | None) -> tuple[Floe, ...]:
        """Floes of ``station`` for ``to``; an empty tuple means Rookery."""
        if to is None:
            return station.forward
        items: Sequence[Target] = [to] if isinstance(to, Node | str | Endpoint) else to
        if not items:
            raise ValueError(
                "to=[] names no successor; pass to=None for every successor, a node or its "
                "name, or to=ROOKERY"
            )
        if any(target is ROOKERY for target in items):
            if len(items) > 1:
                raise ValueError("to=ROOKERY cannot be combined with successor nodes")
            return ()
        floes: list[Floe] = []
        for target in items:
            name = target.name if isinstance(target, Node | Endpoint) else target
            floe = station.out_by_name.get(name)
            if floe is None:
                self.successor(name)  # raises the KeyError that lists the valid successors
            else:
                floes.append(floe)
        return tuple(floes)

    def successor(self, name: str) -> Node:
        """The successor called ``name`` (``KeyError`` listing the valid successors)."""
        _, station = self._wiring()
        if name not in station.out_nodes:
            raise KeyError(
                f"node {station.name!r} has no successor {name!r}; valid successors: "
                f"{sorted(station.out_by_name) or '(none: results go to ROOKERY)'}"
            )
        return station.out_nodes[name]

    def _key(self, msg: Any) -> str | None:
        return msg.trace_id if isinstance(msg, Message) else current_trace_id()

    async def emit(self, msg: Any, to: Target | Sequence[Target] | None = None) -> None:
        """Send ``msg`` to successors (all non-self ones by default); waits while a floe is full.

        Raises ``TraceCancelled`` when the message's trace is cancelled.
        """
        rt, station = self._wiring()
        floes = self._targets(station, to)
        if rt.recorder is not None:
            msg = await rt.recorder.emitted(msg, _journal_to(to), not floes)
        await rt.deliver(station.name, self._key(msg), msg, floes)

    def emit_nowait(self, msg: Any, to: Target | Sequence[Target] | None = None) -> None:
        """Like :meth:`emit` but never waits; raises ``asyncio.QueueFull`` when a floe is full."""
        rt, station = self._wiring()
        floes = self._targets(station, to)
        if rt.recorder is not None:
            msg = rt.recorder.emitted_nowait(msg, _journal_to(to), not floes)
        rt.deliver_nowait(station.name, self._key(msg), msg, floes)

    async def emit_chunk(
        self,
        *,
        parent: Message,
        text: str,
        stream_id: str | None = None,
        seq: int | None = None,
        done: bool = False,
        meta: dict[str, Any] | None = None,
        to: Target | Sequence[Target] | None = None,
    ) -> StreamChunk:
        """Emit one ``StreamChunk`` wrapped in ``parent``'s envelope, and return it.

        ``stream_id`` defaults to the parent's trace id; ``seq`` counts from 0 per stream and resets
        after a chunk with ``done=True``. Chunks obey backpressure like any message.
        """
        rt, station = self._rt, self._station
        if rt is None or station is None:
            rt, station = self._wiring()  # raises
        chunk = rt.streams.next_chunk(parent, text, stream_id, seq, done, meta)
        if rt.observed:
            rt.event(
                FlowEventType.STREAM_CHUNK,
                station,
                parent.trace_id,
                extra={"stream_id": chunk.stream_id, "seq": chunk.seq, "done": chunk.done},
            )
        floes = station.forward if to is None else self._targets(station, to)
        item: Any = parent.with_payload(chunk)
        if rt.recorder is not None and rt.recorder.journal.chunks:
            item = await rt.recorder.emitted(item, _journal_to(to), not floes)
        if not rt.try_deliver(station.name, parent.trace_id, item, floes):
            await rt.deliver(station.name, parent.trace_id, item, floes)
        return chunk

    # ----------------------------------------------------------------- fetch
    async def fetch(self, from_: Node | str | None = None) -> Any:
        """Take the next message from this node's incoming floes (low-level; consumes it).

        The node's workers normally do this; use it only in nodes that pull extra input themselves.
        ``from_`` restricts it to the floe from that predecessor.
        """
        inbox = self._wiring()[1].inbox
        if from_ is None:
            item = await inbox.get()
        else:
            name = from_.name if isinstance(from_, Node) else from_
            item = await inbox.get_matching(lambda item: item[0].source == name)
        return self._consumed(item)

    async def fetch_any(self, from_: Sequence[Node | str] | None = None) -> Any:
        """Take the next message from any of ``from_`` (default: any incoming floe)."""
        if from_ is None:
            return await self.fetch()
        names = {n.name if isinstance(n, Node) else n for n in from_}
        item = await self._wiring()[1].inbox.get_matching(lambda item: item[0].source in names)
        return self._consumed(item)

    def fetch_nowait(self, from_: Node | str | None = None) -> Any:
        """Take the next queued message now; raises ``asyncio.QueueEmpty`` when there is none."""
        inbox = self._wiring()[1].inbox
        if from_ is None:
            item = inbox.get_nowait()
        else:
            name = from_.name if isinstance(from_, Node) else from_
            found = inbox.take_first(lambda item: item[0].source == name)
            if found is None:
                raise asyncio.QueueEmpty
            item = found
        return self._consumed(item)

    def _consumed(self, item: Item) -> Any:
        _, key, msg = item
        self._wiring()[0].traces.leave(key)
        return msg.item if type(msg) is Stepped else msg

    # --------------------------------------------------------------- helpers
    async def call_playbook(
        self,
        factory: PlaybookFactory,
        parent_msg: Message,
        *,
        timeout: float | None = None,
        inherit_observability: bool = True,
    ) -> Any:
        """Run a subflow for ``parent_msg``; returns its result payload (see ``call_playbook``).

        The child's final ``meta`` travels with what this invocation returns: a bare result is
        wrapped in ``parent_msg``'s envelope with that meta merged in (last write wins).
        ``parent_msg`` itself is never changed.
        """
        rt, station = self._wiring()
        rt.check_open(parent_msg.trace_id)
        dispatcher = rt.dispatcher
        payload, meta = await run_playbook(
            factory,
            parent_msg,
            timeout=timeout,
            hooks=dispatcher.hooks if inherit_observability else (),
            middlewares=dispatcher.middlewares if inherit_observability else (),
        )
        key = parent_msg.trace_id
        if meta and key == current_trace_id():
            patches = station.envelope_meta
            patches[key] = merge_meta(patches.get(key, {}), meta)
        return payload

    async def call_node(
        self,
        node: Node,
        payload: Any,
        context: object | None = None,
        *,
        extra: Mapping[str, Any] | None = None,
    ) -> Any:
        """Run ``node`` once on ``payload`` for this invocation, as ``flow.call_node`` does.

        The invocation belongs to the current trace and message deadline, reports to this
        flow's listeners and is cancelled with the trace.
        """
        from ._invoke import current_deadline, invoke  # _invoke imports this module

        rt, _ = self._wiring()
        return await invoke(
            rt,
            node,
            payload,
            context,
            trace_id=current_trace_id(),
            deadline_s=current_deadline(),
            extra=extra,
        )

    def on_trace_end(self, trace_id: str, callback: Callable[[], None]) -> bool:
        """Call ``callback`` when ``trace_id`` ends (finishes, fails or is cancelled).

        Use it to free node-local per-trace state. Returns False (and does not register) when the
        trace is not live.
        """
        state = self._wiring()[0].traces.get(trace_id)
        if state is None:
            return False
        state.cleanups.append(callback)
        return True

    def on_trace_abort(self, trace_id: str, callback: Callable[[], None]) -> bool:
        """Call ``callback`` when ``trace_id`` is cancelled or fails (before its ``on_trace_end``).

        For state that must outlive a trace that ends normally but not one that was aborted (a
        join bucket waiting for messages emitted later). Returns False when the trace is not live.
        """
        state = self._wiring()[0].traces.get(trace_id)
        if state is None:
            return False
        if state.aborts is None:
            state.aborts = []  # created on first use: most traces never need one
        state.aborts.append(callback)
        return True

    def start_soon(self, trace_id: str | None, func: Callable[[], Awaitable[None]]) -> CancelScope:
        """Run ``func()`` in the flow's task group, on behalf of ``trace_id``.

        The task is cancelled when the trace ends (finishes, fails or is cancelled; a trace that
        is not live, or ``None``, never cancels it) and when the flow stops; it does not keep the
        trace alive. An exception it raises is logged and
        dropped. Returns the task's cancel scope (cancel it to stop the task early). For work a
        node starts that must outlive one invocation, such as a timer.
        """
        rt, station = self._wiring()
        if rt.task_group is None:
            raise RuntimeError("ctx.start_soon needs a running flow")
        scope = CancelScope()
        state = rt.traces.get(trace_id)
        if state is not None:
            state.cleanups.append(scope.cancel)
        name = station.name

        async def guarded() -> None:
            with scope:
                try:
                    await func()
                except Exception:
                    logger.exception("task started by node %r for trace %r failed", name, trace_id)

        rt.task_group.start_soon(guarded, name=f"penguiflow:{name}:task")
        return scope

    async def fail(self, error: FlowError) -> None:
        """Report ``error`` as a terminal failure of its trace, as if an invocation had raised it.

        For failures a node detects outside an invocation (a join whose bucket timed out): the
        ``node_failed`` event, the log line, then Rookery (``emit_errors_to_rookery``) or the
        trace's waiting fetchers. Ignored for a cancelled trace.
        """
        rt, station = self._wiring()
        await rt.fail(station, error.trace_id, error)

    async def save_remote_binding(self, binding: RemoteBinding) -> bool:
        """Record ``binding`` in the flow's state store; returns False when there is none.

        A store that fails is logged and counted in ``statistics().store_errors``, never raised.
        """
        return await self._wiring()[0].dispatcher.save_remote_binding(binding)

    # ---------------------------------------------------------- introspection
    def queue_depth_in(self) -> int:
        """Messages waiting in this node's incoming floes."""
        return 0 if self._station is None else len(self._station.inbox)

    def queue_depth_out(self) -> int:
        """Messages waiting in this node's outgoing floes."""
        if self._station is None:
            return 0
        return sum(floe.size for floe in self._station.out_by_name.values())

    def outgoing_count(self) -> int:
        """How many successors this node has."""
        return 0 if self._station is None else len(self._station.out_by_name)

    def __repr__(self) -> str:
        return f"Context({getattr(self._owner, 'name', self._owner)!r})"


def _journal_to(to: Target | Sequence[Target] | None) -> str | list[str] | None:
    """Where an emitted output went, as its journal entry keeps it."""
    if to is None:
        return None
    items: Sequence[Target] = [to] if isinstance(to, Node | str | Endpoint) else to
    if any(target is ROOKERY for target in items):
        return "*"
    return [target.name if isinstance(target, Node | Endpoint) else target for target in items]
