"""Context: what a node function can do besides returning a value."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ._errors import TraceCancelled
from ._events import FlowEventType
from ._graph import ROOKERY, Endpoint
from ._node import Node
from ._trace import current_trace_id
from ._types import Message, StreamChunk

if TYPE_CHECKING:
    from ._floe import Floe, Item
    from ._flow import PenguiFlow
    from ._playbook import PlaybookFactory
    from ._runner import NodeRunner

__all__ = ["Context", "Target"]

Target = Node | str | Endpoint
"""A successor: the node itself, its name, or ``ROOKERY``."""


class Context:
    """One per node: emit to successors, stream chunks, call subflows, inspect queues.

    ``emit(msg)`` with ``to=None`` sends to every successor other than the node itself (a self-edge
    is reached only with ``to=node``), or to Rookery when the node has no other successor.
    """

    __slots__ = ("_runner",)

    def __init__(self, runner: NodeRunner) -> None:
        self._runner = runner

    @property
    def owner(self) -> Node:
        """The node this context belongs to."""
        return self._runner.node

    @property
    def runtime(self) -> PenguiFlow:
        """The flow the node runs in."""
        return self._runner.flow

    # ------------------------------------------------------------------ emit
    def _targets(self, to: Target | Sequence[Target] | None) -> tuple[Floe, ...]:
        """Floes for ``to``; an empty tuple means Rookery."""
        runner = self._runner
        if to is None:
            return runner.forward
        items: Sequence[Target] = [to] if isinstance(to, Node | str | Endpoint) else to
        if any(target is ROOKERY for target in items):
            if len(items) > 1:
                raise ValueError("to=ROOKERY cannot be combined with successor nodes")
            return ()
        floes: list[Floe] = []
        for target in items:
            name = target.name if isinstance(target, Node | Endpoint) else target
            floe = runner.out_by_name.get(name)
            if floe is None:
                self.successor(name)  # raises the KeyError that lists the valid successors
            else:
                floes.append(floe)
        return tuple(floes)

    def successor(self, name: str) -> Node:
        """The successor called ``name`` (``KeyError`` listing the valid successors)."""
        runner = self._runner
        if name not in runner.out_by_name:
            raise KeyError(
                f"node {runner.name!r} has no successor {name!r}; valid successors: "
                f"{sorted(runner.out_by_name) or '(none: results go to ROOKERY)'}"
            )
        return runner.flow.node(name)

    def _key(self, msg: Any) -> str | None:
        return msg.trace_id if isinstance(msg, Message) else current_trace_id()

    async def emit(self, msg: Any, to: Target | Sequence[Target] | None = None) -> None:
        """Send ``msg`` to successors (all non-self ones by default); waits while a floe is full."""
        floes = self._targets(to)
        key = self._key(msg)
        self._check_live(key)
        await self._runner.send(key, msg, floes)

    def emit_nowait(self, msg: Any, to: Target | Sequence[Target] | None = None) -> None:
        """Like :meth:`emit` but never waits; raises ``asyncio.QueueFull`` when a floe is full."""
        floes = self._targets(to)
        key = self._key(msg)
        self._check_live(key)
        runner = self._runner
        flow = runner.flow
        if not floes:
            if flow.tapped:
                flow.dispatcher.publish(runner.name, ROOKERY.name, key, msg)
            flow.rookery.put_nowait(runner.name, key, msg)
            return
        flow.put_all_nowait(runner.name, key, msg, floes)

    def _check_live(self, key: str | None) -> None:
        state = self._runner.flow.traces.get(key)
        if state is not None and state.cancelled:
            raise TraceCancelled(key)

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
        flow = self._runner.flow
        chunk = flow.streams.next_chunk(
            parent, text=text, stream_id=stream_id, seq=seq, done=done, meta=meta
        )
        if flow.observed:
            flow.event(
                FlowEventType.STREAM_CHUNK,
                self._runner,
                parent.trace_id,
                extra={"stream_id": chunk.stream_id, "seq": chunk.seq, "done": chunk.done},
            )
        await self.emit(parent.with_payload(chunk), to=to)
        return chunk

    # ----------------------------------------------------------------- fetch
    async def fetch(self, from_: Node | str | None = None) -> Any:
        """Take the next message from this node's incoming floes (low-level; consumes it).

        The node's workers normally do this; use it only in nodes that pull extra input themselves.
        ``from_`` restricts it to the floe from that predecessor.
        """
        inbox = self._runner.inbox
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
        item = await self._runner.inbox.get_matching(lambda item: item[0].source in names)
        return self._consumed(item)

    def fetch_nowait(self, from_: Node | str | None = None) -> Any:
        """Take the next queued message now; raises ``asyncio.QueueEmpty`` when there is none."""
        inbox = self._runner.inbox
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
        self._runner.flow.traces.leave(key)
        return msg

    # --------------------------------------------------------------- helpers
    async def call_playbook(
        self,
        factory: PlaybookFactory,
        parent_msg: Message,
        *,
        timeout: float | None = None,
        inherit_observability: bool = True,
    ) -> Any:
        """Run a subflow for ``parent_msg``; returns its result payload (see ``call_playbook``)."""
        from ._playbook import call_playbook

        return await call_playbook(
            factory,
            parent_msg,
            timeout=timeout,
            runtime=self._runner.flow,
            inherit_observability=inherit_observability,
        )

    def on_trace_end(self, trace_id: str, callback: Callable[[], None]) -> bool:
        """Call ``callback`` when ``trace_id`` ends (finishes, fails or is cancelled).

        Use it to free node-local per-trace state. Returns False (and does not register) when the
        trace is not live.
        """
        state = self._runner.flow.traces.get(trace_id)
        if state is None:
            return False
        state.cleanups.append(callback)
        return True

    # ---------------------------------------------------------- introspection
    def queue_depth_in(self) -> int:
        """Messages waiting in this node's incoming floes."""
        return len(self._runner.inbox)

    def queue_depth_out(self) -> int:
        """Messages waiting in this node's outgoing floes."""
        return sum(floe.size for floe in self._runner.out_by_name.values())

    def outgoing_count(self) -> int:
        """How many successors this node has."""
        return len(self._runner.out_by_name)

    def __repr__(self) -> str:
        return f"Context({self._runner.name!r})"
