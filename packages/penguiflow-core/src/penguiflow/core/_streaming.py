"""Streaming helpers: read one trace's chunks, feed chunks from an async source, and frame them.

``stream_flow`` turns one trace of a running flow into an async iterator of its ``StreamChunk``s;
``emit_stream_events`` is the producing side inside a node (for example an LLM SDK's token stream);
``format_sse_event`` and ``chunk_to_ws_json`` put a chunk on the wire for Server-Sent Events and
WebSocket frames (they live in ``_stream_format`` and are re-exported here).
"""

from __future__ import annotations

import asyncio
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    Awaitable,
    Callable,
    Mapping,
    Sequence,
)
from typing import Any, Literal, cast, overload

import anyio
from anyio import CancelScope

from ._context import Context, Target
from ._errors import FlowError, TraceCancelled
from ._flow import PenguiFlow, runtime_of
from ._node import Node
from ._stream_format import chunk_to_ws_json, format_sse_event
from ._trace import TraceState
from ._types import Message, StreamChunk

__all__ = ["chunk_to_ws_json", "emit_stream_events", "format_sse_event", "stream_flow"]

ChunkParts = str | tuple[str, Mapping[str, Any]] | tuple[str, bool, Mapping[str, Any] | None] | None
"""What an ``emit_stream_events`` adapter returns for one source item: the chunk's text, its text
and meta, its text, ``done`` flag and meta, or None to skip the item."""


# ------------------------------------------------------------------------ reading a stream
class _TraceWatch:
    """Learns when a trace ends, so a reader never waits on a trace that can deliver nothing more.

    A trace-scoped ``fetch`` keeps waiting after a trace that finished normally without a ``done``
    chunk, and after one that failed while some of its chunks were still unread. The watch hooks
    the trace's end and cancels the pending fetch instead; the reader drains what is buffered and
    then looks at how the trace ended.
    """

    __slots__ = ("_callback", "_flow", "_key", "_scope", "ended", "state")

    def __init__(self, flow: PenguiFlow, key: str) -> None:
        self._flow = flow
        self._key = key
        self._scope: CancelScope | None = None
        self.state: TraceState | None = None
        self.ended = False
        self._callback = self._on_end

    def _on_end(self) -> None:
        self.ended = True
        if self._scope is not None:
            self._scope.cancel()

    def attach(self) -> None:
        """Watch the trace if it is live (once; a no-op when already watching)."""
        if self.state is not None:
            return
        state = runtime_of(self._flow).traces.get(self._key)
        if state is not None:
            self.state = state
            state.cleanups.append(self._callback)

    def detach(self) -> None:
        """Stop watching (the trace may live on after the reader has left)."""
        if self.state is not None and not self.ended:
            try:
                self.state.cleanups.remove(self._callback)
            except ValueError:
                pass

    async def next_item(self, timeout: float | None) -> tuple[bool, Any]:
        """The trace's next Rookery item as ``(True, item)``, or ``(False, None)`` once it ended.

        Raises ``TraceCancelled`` or the trace's ``FlowError`` when it ended that way.
        """
        flow, key = self._flow, self._key
        self.attach()
        if not self.ended:
            with anyio.fail_after(timeout), CancelScope() as scope:
                self._scope = scope
                try:
                    return True, await flow.fetch(trace_id=key)
                finally:
                    self._scope = None
        # The trace ended; what it delivered before that is still buffered.
        try:
            return True, flow.fetch_nowait(trace_id=key)
        except asyncio.QueueEmpty:
            pass
        state = self.state
        if state is not None and state.cancelled:
            raise TraceCancelled(key)
        if state is not None and state.error is not None:
            raise state.error
        return False, None


def _chunk_of(item: Any) -> StreamChunk | None:
    if isinstance(item, Message):
        payload = item.payload
        return payload if isinstance(payload, StreamChunk) else None
    return item if isinstance(item, StreamChunk) else None


@overload
def stream_flow(
    flow: PenguiFlow,
    parent_msg: Message,
    *,
    to: Node | str | Sequence[Node | str] | None = None,
    emit: bool = True,
    include_final: Literal[False] = False,
    timeout: float | None = None,
    cancel_on_exit: bool = True,
) -> AsyncGenerator[StreamChunk]: ...


@overload
def stream_flow(
    flow: PenguiFlow,
    parent_msg: Message,
    *,
    to: Node | str | Sequence[Node | str] | None = None,
    emit: bool = True,
    include_final: bool,
    timeout: float | None = None,
    cancel_on_exit: bool = True,
) -> AsyncGenerator[Any]: ...


async def stream_flow(
    flow: PenguiFlow,
    parent_msg: Message,
    *,
    to: Node | str | Sequence[Node | str] | None = None,
    emit: bool = True,
    include_final: bool = False,
    timeout: float | None = None,
    cancel_on_exit: bool = True,
) -> AsyncGenerator[Any]:
    """Iterate over the ``StreamChunk``s of one trace: ``parent_msg.trace_id``.

    Only that trace's Rookery items are read (a trace-scoped ``fetch``), so any number of streams
    can be read from one shared flow at once, each getting exactly its own chunks in ``seq`` order.
    Chunks are unwrapped: the iterator yields ``StreamChunk`` objects, not their ``Message``
    envelopes. Nothing happens until iteration starts. Close the iterator when leaving early
    (``async with contextlib.aclosing(stream_flow(...)) as chunks:``) so that the trace is cancelled
    at once rather than when the iterator is garbage-collected.

    The stream ends after the first chunk with ``done=True``; with ``include_final=True`` it yields
    the trace's other Rookery items too (typically the node's final result, after the chunks) and
    ends when the trace has finished and everything it delivered was yielded. Those items are
    payloads, like the chunks: what the node returned, or the payload of a ``Message`` that
    reached Rookery. In both modes it also ends when the trace finishes without a ``done`` chunk,
    so a producer that forgets ``done=True`` never hangs its reader; check ``done`` on the last
    chunk to tell a complete stream.

    Args:
        flow: A running flow.
        parent_msg: The message that starts the trace.
        to: Ingress node(s) to emit ``parent_msg`` to (see ``flow.emit``).
        emit: Emit ``parent_msg`` first. With False, emit it yourself before iterating; chunks
            already buffered for the trace are yielded first.
        include_final: Also yield non-chunk payloads (without it they are skipped), and read until
            the trace finishes rather than until the ``done`` chunk.
        timeout: Longest wait in seconds for each next item (None = no limit); ``TimeoutError``
            when exceeded.
        cancel_on_exit: Cancel the trace (``flow.cancel``) when the iterator is left before the
            stream ended: the consumer stopped early, was cancelled or timed out, so nobody will
            read the rest. Nothing is cancelled after a normal end.

    Raises:
        FlowError: The trace failed (raised from the trace-scoped fetch, or delivered to Rookery
            with ``emit_errors_to_rookery=True``).
        TraceCancelled: The trace was cancelled by someone else.
        TimeoutError: No item arrived within ``timeout``.
    """
    key = parent_msg.trace_id
    watch = _TraceWatch(flow, key)
    finished = False
    try:
        if emit:
            await flow.emit(parent_msg, to=to)
        watch.attach()
        while True:
            try:
                item = flow.fetch_nowait(trace_id=key)
            except asyncio.QueueEmpty:
                found, item = await watch.next_item(timeout)
                if not found:
                    finished = True
                    return
            if isinstance(item, FlowError):
                finished = True
                raise item
            chunk = _chunk_of(item)
            if chunk is not None:
                yield chunk
                if chunk.done and not include_final:
                    finished = True
                    return
            elif include_final:
                yield item.payload if isinstance(item, Message) else item
    finally:
        watch.detach()
        if cancel_on_exit and not finished:
            with CancelScope(shield=True):
                await flow.cancel(key)


# ---------------------------------------------------------------------- producing a stream
@overload
async def emit_stream_events(
    source: AsyncIterable[str],
    ctx: Context,
    parent_msg: Message,
    *,
    adapter: None = None,
    stream_id: str | None = None,
    final_meta: Mapping[str, Any] | None = None,
    to: Target | Sequence[Target] | None = None,
) -> str: ...


@overload
async def emit_stream_events[T](
    source: AsyncIterable[T],
    ctx: Context,
    parent_msg: Message,
    *,
    adapter: Callable[[T], ChunkParts],
    stream_id: str | None = None,
    final_meta: Mapping[str, Any] | None = None,
    to: Target | Sequence[Target] | None = None,
) -> str: ...


async def emit_stream_events(
    source: AsyncIterable[Any],
    ctx: Context,
    parent_msg: Message,
    *,
    adapter: Callable[[Any], ChunkParts] | None = None,
    stream_id: str | None = None,
    final_meta: Mapping[str, Any] | None = None,
    to: Target | Sequence[Target] | None = None,
) -> str:
    """Emit every item of ``source`` as a chunk of one stream, and close the stream.

    Use it inside a node to relay an async token stream (an LLM SDK's, say) into the flow::

        async def answer(msg: Message, ctx: Context) -> FinalAnswer:
            text = await emit_stream_events(llm.stream(msg.payload), ctx, msg)
            return FinalAnswer(text=text)

    Each chunk waits for room downstream (backpressure), so a slow reader slows the source down
    rather than piling up chunks. When ``source`` is exhausted and its last chunk was not a
    ``done`` one (an adapter can mark one, see below), a closing chunk with ``text=""``,
    ``done=True`` and ``final_meta`` is sent; a source that raises leaves the stream open and the
    node fails as usual. ``source`` is closed (``aclose``) on the way out when it supports it.

    Args:
        source: Async iterable of items; ``str`` items are used as the chunk text as is.
        ctx: The calling node's context.
        parent_msg: The message being answered; chunks travel in its envelope.
        adapter: Maps a source item to its text, to ``(text, meta)``, to ``(text, done, meta)``
            (``meta`` may be None), or to None to skip it. Required when the items are not
            strings. A chunk with ``done=True`` closes the stream; a later item starts the next
            stream of the same ``stream_id``, at ``seq`` 0.
        stream_id: The stream's id (default: the parent's trace id).
        final_meta: Meta for the closing chunk.
        to: Where the chunks go (see ``ctx.emit``; default: every successor, or Rookery).

    Returns:
        The concatenated text of all emitted chunks.

    Raises:
        TypeError: An item is not a string and no ``adapter`` was given, or the adapter returned
            something else than text, ``(text, meta)``, ``(text, done, meta)`` or None.
    """
    parts: list[str] = []
    closed = False
    aclose: Callable[[], Awaitable[object]] | None = getattr(source, "aclose", None)
    try:
        async for item in source:
            converted: Any = adapter(item) if adapter is not None else item
            if converted is None and adapter is not None:
                continue
            meta: Mapping[str, Any] | None = None
            done = False
            if isinstance(converted, tuple):
                text, done, meta = _chunk_parts(cast(tuple[Any, ...], converted))
            elif isinstance(converted, str):
                text = converted
            elif adapter is None:
                raise TypeError(
                    f"emit_stream_events got a {type(item).__name__} item; pass "
                    "adapter=... to turn source items into text (or (text, done, meta))"
                )
            else:
                raise TypeError(
                    "an emit_stream_events adapter must return str, (str, meta), "
                    f"(str, bool, meta) or None, got {type(converted).__name__}"
                )
            await ctx.emit_chunk(
                parent=parent_msg,
                text=text,
                stream_id=stream_id,
                done=done,
                meta=dict(meta) if meta else None,
                to=to,
            )
            parts.append(text)
            closed = done
    finally:
        if aclose is not None:
            await aclose()
    if not closed:
        await ctx.emit_chunk(
            parent=parent_msg,
            text="",
            stream_id=stream_id,
            done=True,
            meta=dict(final_meta) if final_meta else None,
            to=to,
        )
    return "".join(parts)


def _chunk_parts(parts: tuple[Any, ...]) -> tuple[str, bool, Mapping[str, Any] | None]:
    """``(text, meta)`` or ``(text, done, meta)`` from an adapter, checked."""
    text: Any
    done: Any = False
    meta: Any
    if len(parts) == 2:
        text, meta = parts
    elif len(parts) == 3:
        text, done, meta = parts
    else:
        raise _bad_tuple(parts)
    if not (
        isinstance(text, str)
        and isinstance(done, bool)
        and (meta is None or isinstance(meta, Mapping))
    ):
        raise _bad_tuple(parts)
    return text, done, cast(Mapping[str, Any] | None, meta)


def _bad_tuple(parts: tuple[Any, ...]) -> TypeError:
    return TypeError(
        "an emit_stream_events adapter's tuple must be (text: str, meta: Mapping) or "
        f"(text: str, done: bool, meta: Mapping | None), got {parts!r}"
    )
