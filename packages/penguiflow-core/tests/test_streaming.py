"""Streaming: per-stream seq, done, per-trace backpressure, stream_flow, SSE and WS framing."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, cast

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from penguiflow.core import (
    Context,
    FinalAnswer,
    FlowError,
    FlowErrorCode,
    FlowStatistics,
    Headers,
    Message,
    Node,
    PenguiFlow,
    StreamChunk,
    TraceCancelled,
    chunk_to_ws_json,
    create,
    emit_stream_events,
    format_sse_event,
    stream_flow,
)


def _msg(payload: Any, trace_id: str | None = None) -> Message:
    if trace_id is None:
        return Message(payload=payload, headers=Headers(tenant="t"))
    return Message(payload=payload, headers=Headers(tenant="t"), trace_id=trace_id)


def _chunk(item: Any) -> StreamChunk:
    assert isinstance(item, Message), f"expected a chunk in a Message envelope, got {item!r}"
    assert isinstance(item.payload, StreamChunk)
    return item.payload


def _assert_freed(flow: PenguiFlow) -> None:
    stats = flow.statistics()
    assert stats.live_traces == 0
    assert stats.lanes == 0
    assert stats.queued == 0
    assert stats.rookery_buffered == 0
    assert stats.rookery_keys == 0
    assert stats.streams == 0


def _statistics(ctx: Context) -> FlowStatistics:
    flow = ctx.runtime
    assert flow is not None
    return flow.statistics()


async def _collect(stream: AsyncGenerator[Any]) -> list[Any]:
    async with aclosing(stream) as items:
        return [item async for item in items]


def _token_flow(*, queue_maxsize: int = 64, emit_errors_to_rookery: bool = False) -> PenguiFlow:
    """``llm``: emits one chunk per word of the payload, then a done chunk, and returns None."""

    async def llm(msg: Message, ctx: Context) -> None:
        for word in str(msg.payload).split():
            await ctx.emit_chunk(parent=msg, text=word)
            await anyio.lowlevel.checkpoint()
        await ctx.emit_chunk(parent=msg, text="", done=True)

    node = Node(llm)
    return create(
        node.to(), queue_maxsize=queue_maxsize, emit_errors_to_rookery=emit_errors_to_rookery
    )


# --------------------------------------------------------------------------- emit_chunk
async def test_emit_chunk_counts_seq_per_stream_from_zero_in_the_parent_envelope() -> None:
    returned: list[StreamChunk] = []

    async def talk(msg: Message, ctx: Context) -> None:
        for stream_id in ["a", "b", "a", None, "b", "a", None]:
            returned.append(await ctx.emit_chunk(parent=msg, text="x", stream_id=stream_id))

    node = Node(talk)
    flow = create(node.to())
    parent = _msg("go", trace_id="trace-1").with_meta(user="ada")
    async with flow.running():
        with anyio.fail_after(5):
            await flow.emit(parent)
            items = [await flow.fetch(trace_id="trace-1") for _ in range(7)]
    chunks = [_chunk(item) for item in items]
    assert [(c.stream_id, c.seq) for c in chunks] == [
        ("a", 0),
        ("b", 0),
        ("a", 1),
        ("trace-1", 0),
        ("b", 1),
        ("a", 2),
        ("trace-1", 1),
    ]
    assert chunks == returned
    for item in items:
        assert item.trace_id == "trace-1"
        assert item.headers == parent.headers
        assert item.meta == {"user": "ada"}
    assert parent.payload == "go"  # the parent envelope is copied, never changed


async def test_done_chunk_closes_the_stream_and_the_next_chunk_starts_again_at_zero() -> None:
    open_streams: list[int] = []

    async def talk(msg: Message, ctx: Context) -> None:
        for done in [False, False, True, False, True]:
            await ctx.emit_chunk(parent=msg, text="x", done=done)
            open_streams.append(_statistics(ctx).streams)

    node = Node(talk)
    flow = create(node.to())
    parent = _msg("go")
    async with flow.running():
        with anyio.fail_after(5):
            await flow.emit(parent)
            chunks = [_chunk(await flow.fetch(trace_id=parent.trace_id)) for _ in range(5)]
    assert [(c.seq, c.done) for c in chunks] == [
        (0, False),
        (1, False),
        (2, True),
        (0, False),
        (1, True),
    ]
    # The counter exists while the stream is open and is dropped by its done chunk.
    assert open_streams == [1, 1, 0, 1, 0]


async def test_explicit_seq_is_kept_and_the_count_continues_from_it() -> None:
    async def talk(msg: Message, ctx: Context) -> None:
        await ctx.emit_chunk(parent=msg, text="a", seq=10)
        await ctx.emit_chunk(parent=msg, text="b")
        await ctx.emit_chunk(parent=msg, text="c", done=True)

    node = Node(talk)
    flow = create(node.to())
    parent = _msg("go")
    async with flow.running():
        with anyio.fail_after(5):
            chunks = await _collect(stream_flow(flow, parent))
    assert [(c.text, c.seq) for c in chunks] == [("a", 10), ("b", 11), ("c", 12)]


async def test_stream_counters_are_freed_when_the_trace_ends_without_a_done_chunk() -> None:
    async def talk(msg: Message, ctx: Context) -> None:
        await ctx.emit_chunk(parent=msg, text="a")
        await ctx.emit_chunk(parent=msg, text="b", stream_id="side")
        assert _statistics(ctx).streams == 2

    node = Node(talk)
    flow = create(node.to())
    async with flow.running():
        with anyio.fail_after(5):
            # include_final reads until the trace has finished.
            items = await _collect(stream_flow(flow, _msg("go"), include_final=True))
        assert [(c.text, c.done) for c in items] == [("a", False), ("b", False)]
        _assert_freed(flow)


async def test_flow_emit_chunk_sends_numbered_chunks_through_opensea() -> None:
    async def relay(msg: Message, ctx: Context) -> Message:
        return msg

    node = Node(relay)
    flow = create(node.to())
    parent = _msg("question")
    async with flow.running():
        with anyio.fail_after(5):
            sent = [
                await flow.emit_chunk(parent=parent, text="one"),
                await flow.emit_chunk(parent=parent, text="two"),
                await flow.emit_chunk(parent=parent, text="", done=True),
            ]
            got = [_chunk(await flow.fetch(trace_id=parent.trace_id)) for _ in range(3)]
        assert got == sent
        assert [(c.seq, c.done) for c in got] == [(0, False), (1, False), (2, True)]
        _assert_freed(flow)


# ------------------------------------------------------------------ ordering (property)
@settings(max_examples=25, deadline=None)
@given(
    plans=st.lists(
        st.lists(
            st.tuples(st.sampled_from(["main", "side"]), st.integers(min_value=0, max_value=3)),
            max_size=12,
        ),
        min_size=1,
        max_size=12,
    ),
    maxsize=st.sampled_from([1, 2, 64]),
)
def test_seq_order_holds_per_stream_under_interleaving_of_many_traces(
    plans: list[list[tuple[str, int]]], maxsize: int
) -> None:
    # trace id -> [(stream, checkpoints before the chunk)]
    plan = {f"t{i}": steps for i, steps in enumerate(plans)}

    async def producer(msg: Message, ctx: Context) -> None:
        for stream, yields in plan[msg.trace_id]:
            for _ in range(yields):
                await anyio.lowlevel.checkpoint()
            await ctx.emit_chunk(parent=msg, text=stream, stream_id=f"{msg.trace_id}/{stream}")
        for stream in ("main", "side"):
            await ctx.emit_chunk(
                parent=msg, text="end", stream_id=f"{msg.trace_id}/{stream}", done=True
            )

    async def relay(msg: Message, ctx: Context) -> Message:
        await anyio.lowlevel.checkpoint()
        return msg

    async def scenario() -> tuple[dict[str, list[int]], PenguiFlow]:
        produce, hop = Node(producer), Node(relay)
        flow = create(produce.to(hop), hop.to(), queue_maxsize=maxsize)
        seen: dict[str, list[int]] = {}
        expected_items = sum(len(steps) + 2 for steps in plan.values())
        async with flow.running():
            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:

                    async def consume() -> None:
                        for _ in range(expected_items):
                            chunk = _chunk(await flow.fetch())
                            seen.setdefault(chunk.stream_id, []).append(chunk.seq)

                    tg.start_soon(consume)
                    for trace_id in plan:
                        await flow.emit(_msg("go", trace_id=trace_id))
            _assert_freed(flow)
        return seen, flow

    seen, _ = anyio.run(scenario)
    for trace_id, steps in plan.items():
        for stream in ("main", "side"):
            count = sum(1 for name, _ in steps if name == stream) + 1  # + the done chunk
            assert seen[f"{trace_id}/{stream}"] == list(range(count))


# ---------------------------------------------------------------------- backpressure
async def _stalled_stream_does_not_hold_back_another(
    flow: PenguiFlow, sent: dict[str, int], a_buffer_full: anyio.Event
) -> int:
    """Trace A is never read; trace B must still stream to the end while A stays stalled.

    Returns how many chunks A's producer had emitted when B's stream ended.
    """
    a, b = _msg(200, trace_id="A"), _msg(200, trace_id="B")
    async with flow.running():
        with anyio.fail_after(5):
            await flow.emit(a)
            # A fills its Rookery buffer; from then on its producer can only block.
            await a_buffer_full.wait()
            chunks = await _collect(stream_flow(flow, b))
        a_sent_meanwhile = sent["A"]
        assert [c.seq for c in chunks] == list(range(201))
        assert chunks[-1].done
        assert sent["B"] == 201
        assert a_sent_meanwhile < 200, "A ran to the end although nobody read it"
        with anyio.fail_after(5):
            rest = await _collect(stream_flow(flow, a, emit=False))
        assert [c.seq for c in rest] == list(range(201))
        assert sent["A"] == 201
        _assert_freed(flow)
    return a_sent_meanwhile


def _counting_producer(sent: dict[str, int], on_count: tuple[int, anyio.Event] | None) -> Node:
    async def producer(msg: Message, ctx: Context) -> None:
        total: int = msg.payload
        for index in range(total + 1):
            await ctx.emit_chunk(parent=msg, text=f"tok{index}", done=index == total)
            sent[msg.trace_id] = sent.get(msg.trace_id, 0) + 1
            if on_count and msg.trace_id == "A" and sent["A"] == on_count[0]:
                on_count[1].set()

    return Node(producer)


async def test_a_consumer_that_never_reads_stalls_only_its_own_stream() -> None:
    sent: dict[str, int] = {}
    a_buffer_full = anyio.Event()
    producer = _counting_producer(sent, (2, a_buffer_full))
    flow = create(producer.to(), queue_maxsize=2)
    # Exactly A's Rookery buffer was filled; the next chunk has been waiting all along.
    assert await _stalled_stream_does_not_hold_back_another(flow, sent, a_buffer_full) == 2


async def test_a_stalled_stream_does_not_hold_back_another_through_an_intermediate_node() -> None:
    sent: dict[str, int] = {}
    relayed: dict[str, int] = {}
    a_buffer_full = anyio.Event()
    producer = _counting_producer(sent, None)

    async def relay(msg: Message, ctx: Context) -> Message:
        relayed[msg.trace_id] = relayed.get(msg.trace_id, 0) + 1
        if msg.trace_id == "A" and relayed["A"] == 3:
            a_buffer_full.set()  # one message of a trace at a time: the first two were delivered
        return msg

    hop = Node(relay)
    flow = create(producer.to(hop), hop.to(), queue_maxsize=2)
    # A may have a few chunks in transit between the nodes, but it cannot take B's capacity.
    await _stalled_stream_does_not_hold_back_another(flow, sent, a_buffer_full)


# ------------------------------------------------------------------------ stream_flow
async def test_stream_flow_gives_each_concurrent_trace_only_its_own_chunks_in_order() -> None:
    flow = _token_flow(queue_maxsize=4)
    texts = {f"trace-{i}": " ".join(f"w{i}.{j}" for j in range(30)) for i in range(6)}
    results: dict[str, list[StreamChunk]] = {}

    async def read(trace_id: str) -> None:
        results[trace_id] = await _collect(stream_flow(flow, _msg(texts[trace_id], trace_id)))

    async with flow.running():
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                for trace_id in texts:
                    tg.start_soon(read, trace_id)
        _assert_freed(flow)
    for trace_id, text in texts.items():
        chunks = results[trace_id]
        assert [c.text for c in chunks[:-1]] == text.split()
        assert [c.seq for c in chunks] == list(range(31))
        assert {c.stream_id for c in chunks} == {trace_id}
        assert [c.done for c in chunks] == [False] * 30 + [True]


async def test_stream_flow_with_include_final_yields_the_result_after_the_chunks() -> None:
    async def answer(msg: Message, ctx: Context) -> FinalAnswer:
        await ctx.emit_chunk(parent=msg, text="Hel")
        await ctx.emit_chunk(parent=msg, text="lo", done=True)
        return FinalAnswer(text="Hello")

    node = Node(answer)
    flow = create(node.to())
    async with flow.running():
        with anyio.fail_after(5):
            items = await _collect(stream_flow(flow, _msg("hi"), include_final=True))
        _assert_freed(flow)
    # The final item is what the node returned, as it returned it.
    assert [type(item) for item in items] == [StreamChunk, StreamChunk, FinalAnswer]
    assert items[-1] == FinalAnswer(text="Hello")


async def test_stream_flow_without_include_final_stops_at_done_and_leaves_the_result() -> None:
    async def answer(msg: Message, ctx: Context) -> str:
        await ctx.emit_chunk(parent=msg, text="x", done=True)
        return "final"

    node = Node(answer)
    flow = create(node.to())
    parent = _msg("hi")
    async with flow.running():
        with anyio.fail_after(5):
            chunks = await _collect(stream_flow(flow, parent))
            assert [c.text for c in chunks] == ["x"]
            result = await flow.fetch(trace_id=parent.trace_id)
    assert result == "final"


async def test_stream_flow_ends_when_the_trace_finishes_without_a_done_chunk() -> None:
    async def talk(msg: Message, ctx: Context) -> None:
        await ctx.emit_chunk(parent=msg, text="a")
        await ctx.emit_chunk(parent=msg, text="b")

    node = Node(talk)
    flow = create(node.to())
    async with flow.running():
        with anyio.fail_after(5):
            chunks = await _collect(stream_flow(flow, _msg("go")))
        _assert_freed(flow)
    assert [(c.text, c.done) for c in chunks] == [("a", False), ("b", False)]


async def test_stream_flow_raises_the_flow_error_of_a_trace_that_fails_mid_stream() -> None:
    async def talk(msg: Message, ctx: Context) -> None:
        await ctx.emit_chunk(parent=msg, text="a")
        raise RuntimeError("model overloaded")

    node = Node(talk)
    flow = create(node.to())
    got: list[str] = []
    async with flow.running():
        with anyio.fail_after(5), pytest.raises(FlowError) as info:
            async with aclosing(stream_flow(flow, _msg("go"))) as chunks:
                async for chunk in chunks:
                    got.append(chunk.text)
        _assert_freed(flow)
    assert got == ["a"]
    assert info.value.code is FlowErrorCode.NODE_EXCEPTION
    assert isinstance(info.value.original_exc, RuntimeError)


async def test_stream_flow_raises_a_failure_that_happened_while_the_reader_was_busy() -> None:
    # The trace fails while the reader is busy with chunk "a" and chunk "b" is still unread: the
    # reader must get "b" and then the error, not wait forever.
    trace_ended = anyio.Event()

    async def talk(msg: Message, ctx: Context) -> None:
        ctx.on_trace_end(msg.trace_id, trace_ended.set)
        await ctx.emit_chunk(parent=msg, text="a")
        await ctx.emit_chunk(parent=msg, text="b")
        raise RuntimeError("boom")

    node = Node(talk)
    flow = create(node.to())
    got: list[str] = []
    async with flow.running():
        with anyio.fail_after(5), pytest.raises(FlowError, match="boom"):
            async with aclosing(stream_flow(flow, _msg("go"))) as chunks:
                async for chunk in chunks:
                    got.append(chunk.text)
                    await trace_ended.wait()
        _assert_freed(flow)
    assert got == ["a", "b"]


async def test_stream_flow_raises_a_failure_after_yielding_the_chunks_buffered_before_it() -> None:
    # The trace failed, with both its chunks unread, before anyone started reading it: the reader
    # gets the chunks, then the error.
    trace_ended = anyio.Event()

    async def talk(msg: Message, ctx: Context) -> None:
        ctx.on_trace_end(msg.trace_id, trace_ended.set)
        await ctx.emit_chunk(parent=msg, text="a")
        await ctx.emit_chunk(parent=msg, text="b")
        raise RuntimeError("boom")

    node = Node(talk)
    flow = create(node.to())
    parent = _msg("go")
    got: list[str] = []
    async with flow.running():
        with anyio.fail_after(5):
            await flow.emit(parent)
            await trace_ended.wait()
            with pytest.raises(FlowError, match="boom"):
                async with aclosing(stream_flow(flow, parent, emit=False)) as chunks:
                    async for chunk in chunks:
                        got.append(chunk.text)
        _assert_freed(flow)
    assert got == ["a", "b"]


async def test_stream_flow_raises_a_flow_error_delivered_to_rookery() -> None:
    async def talk(msg: Message, ctx: Context) -> None:
        await ctx.emit_chunk(parent=msg, text="a")
        raise ValueError("bad input")

    node = Node(talk)
    flow = create(node.to(), emit_errors_to_rookery=True)
    async with flow.running():
        with anyio.fail_after(5), pytest.raises(FlowError, match="bad input") as info:
            await _collect(stream_flow(flow, _msg("go")))
        _assert_freed(flow)
    assert info.value.code is FlowErrorCode.NODE_EXCEPTION


async def test_stream_flow_raises_trace_cancelled_when_someone_cancels_the_trace() -> None:
    release = anyio.Event()

    async def talk(msg: Message, ctx: Context) -> None:
        await ctx.emit_chunk(parent=msg, text="a")
        await release.wait()

    node = Node(talk)
    flow = create(node.to())
    parent = _msg("go")
    got: list[str] = []
    async with flow.running():
        with anyio.fail_after(5), pytest.raises(TraceCancelled):
            async with aclosing(stream_flow(flow, parent)) as chunks:
                async for chunk in chunks:
                    got.append(chunk.text)
                    assert await flow.cancel(parent.trace_id) is True
        _assert_freed(flow)
    assert got == ["a"]


async def test_leaving_stream_flow_early_cancels_the_trace() -> None:
    cancelled = anyio.Event()

    async def talk(msg: Message, ctx: Context) -> None:
        try:
            for index in range(1000):
                await ctx.emit_chunk(parent=msg, text=str(index))
        except anyio.get_cancelled_exc_class():
            cancelled.set()
            raise

    node = Node(talk)
    flow = create(node.to(), queue_maxsize=2)
    parent = _msg("go")
    async with flow.running():
        with anyio.fail_after(5):
            async with aclosing(stream_flow(flow, parent)) as chunks:
                async for chunk in chunks:
                    assert chunk.text == "0"
                    break
            await cancelled.wait()
        _assert_freed(flow)


async def test_stream_flow_timeout_raises_and_cancels_the_trace() -> None:
    cancelled = anyio.Event()

    async def stuck(msg: Message, ctx: Context) -> None:
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    node = Node(stuck)
    flow = create(node.to())
    async with flow.running():
        with anyio.fail_after(5):
            with pytest.raises(TimeoutError):
                await _collect(stream_flow(flow, _msg("go"), timeout=0.05))
            await cancelled.wait()
        _assert_freed(flow)


async def test_stream_flow_with_emit_false_reads_chunks_already_buffered() -> None:
    flow = _token_flow()
    parent = _msg("a b c")
    async with flow.running():
        with anyio.fail_after(5):
            await flow.emit(parent)
            first = _chunk(await flow.fetch(trace_id=parent.trace_id))
            rest = await _collect(stream_flow(flow, parent, emit=False))
        _assert_freed(flow)
    assert [first.text, *(c.text for c in rest)] == ["a", "b", "c", ""]
    assert rest[-1].done


# ------------------------------------------------------------------ emit_stream_events
async def _tokens(*items: Any) -> AsyncIterator[Any]:
    for item in items:
        await anyio.lowlevel.checkpoint()
        yield item


async def test_emit_stream_events_relays_strings_and_returns_the_full_text() -> None:
    returned: list[str] = []

    async def answer(msg: Message, ctx: Context) -> None:
        text = await emit_stream_events(
            _tokens("Hel", "lo", " world"), ctx, msg, final_meta={"tokens": 3}
        )
        returned.append(text)

    node = Node(answer)
    flow = create(node.to())
    async with flow.running():
        with anyio.fail_after(5):
            chunks = await _collect(stream_flow(flow, _msg("hi")))
        _assert_freed(flow)
    assert returned == ["Hello world"]
    assert [(c.text, c.seq, c.done) for c in chunks] == [
        ("Hel", 0, False),
        ("lo", 1, False),
        (" world", 2, False),
        ("", 3, True),
    ]
    assert chunks[-1].meta == {"tokens": 3}


@dataclass(frozen=True)
class _Delta:
    """An SDK-style stream event: a text delta, or a role/usage event without text."""

    content: str | None
    index: int


async def test_emit_stream_events_adapter_maps_items_to_text_and_meta_and_skips_none() -> None:
    def adapter(delta: _Delta) -> tuple[str, dict[str, Any]] | None:
        if delta.content is None:
            return None
        return delta.content, {"index": delta.index}

    async def answer(msg: Message, ctx: Context) -> str:
        source = _tokens(_Delta(None, 0), _Delta("a", 1), _Delta("b", 2), _Delta(None, 3))
        return await emit_stream_events(source, ctx, msg, adapter=adapter, stream_id="s")

    node = Node(answer)
    flow = create(node.to())
    async with flow.running():
        with anyio.fail_after(5):
            items = await _collect(stream_flow(flow, _msg("hi"), include_final=True))
    chunks = cast(list[StreamChunk], items[:-1])
    assert [(c.stream_id, c.text, c.meta, c.seq) for c in chunks] == [
        ("s", "a", {"index": 1}, 0),
        ("s", "b", {"index": 2}, 1),
        ("s", "", {}, 2),
    ]
    assert chunks[-1].done
    assert items[-1] == "ab"


async def test_emit_stream_events_without_adapter_rejects_non_string_items() -> None:
    async def answer(msg: Message, ctx: Context) -> None:
        await emit_stream_events(_tokens("ok", 42), ctx, msg)

    node = Node(answer)
    flow = create(node.to())
    async with flow.running():
        with anyio.fail_after(5), pytest.raises(FlowError) as info:
            await _collect(stream_flow(flow, _msg("hi")))
    assert isinstance(info.value.original_exc, TypeError)
    assert "adapter=" in str(info.value.original_exc)


async def test_emit_stream_events_closes_its_source_when_the_trace_is_cancelled() -> None:
    closed = anyio.Event()

    async def endless() -> AsyncIterator[str]:
        try:
            while True:
                yield "tok"
        finally:
            closed.set()

    async def answer(msg: Message, ctx: Context) -> None:
        await emit_stream_events(endless(), ctx, msg)

    node = Node(answer)
    flow = create(node.to(), queue_maxsize=1)
    async with flow.running():
        with anyio.fail_after(5):
            async with aclosing(stream_flow(flow, _msg("hi"))) as chunks:
                async for _ in chunks:
                    break  # leaving early cancels the trace
            await closed.wait()
        _assert_freed(flow)


# ----------------------------------------------------------------------------- SSE
@dataclass
class _SseEvent:
    event: str
    data: str
    id: str


def _parse_sse(stream: str) -> list[_SseEvent]:
    """A minimal event-stream parser following the WHATWG rules (HTML § 9.2.6)."""
    events: list[_SseEvent] = []
    data: list[str] = []
    event_type = ""
    last_id = ""
    for line in re.split(r"\r\n|\r|\n", stream):
        if line == "":
            if data:  # an event with no data field is not dispatched
                events.append(_SseEvent(event_type or "message", "\n".join(data), last_id))
            data, event_type = [], ""
            continue
        if line.startswith(":"):
            continue
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            event_type = value
        elif name == "data":
            data.append(value)
        elif name == "id" and "\0" not in value:
            last_id = value
    return events


def test_sse_event_carries_the_text_as_data_and_the_seq_as_id_by_default() -> None:
    raw = format_sse_event(StreamChunk(stream_id="s1", seq=3, text="hi"))
    assert raw == "event: chunk\nid: 3\ndata: hi\n\n"
    (event,) = _parse_sse(raw)
    assert (event.event, event.id, event.data) == ("chunk", "3", "hi")


def test_sse_text_event_adds_the_meta_as_one_json_data_line_after_the_text() -> None:
    chunk = StreamChunk(stream_id="s1", seq=0, text="a\nb", meta={"note": "x\ny", "n": 1})
    raw = format_sse_event(chunk, retry_ms=1500)
    assert raw == (
        'event: chunk\nid: 0\ndata: a\ndata: b\ndata: {"note": "x\\ny", "n": 1}\nretry: 1500\n\n'
    )
    (event,) = _parse_sse(raw)
    text, meta_line = event.data.rsplit("\n", 1)
    assert text == "a\nb"
    assert json.loads(meta_line) == {"note": "x\ny", "n": 1}


def test_sse_event_with_json_data_carries_the_whole_chunk() -> None:
    chunk = StreamChunk(stream_id="s1", seq=3, text="hi", meta={"model": "fake"})
    raw = format_sse_event(chunk, data="json", id="s1:3")
    assert raw == (
        'event: chunk\nid: s1:3\ndata: {"stream_id":"s1","seq":3,"text":"hi","done":false,'
        '"meta":{"model":"fake"}}\n\n'
    )
    (event,) = _parse_sse(raw)
    assert (event.event, event.id) == ("chunk", "s1:3")
    assert json.loads(event.data) == {
        "stream_id": "s1",
        "seq": 3,
        "text": "hi",
        "done": False,
        "meta": {"model": "fake"},
    }


def test_sse_done_chunk_is_a_done_event_unless_named_otherwise() -> None:
    chunk = StreamChunk(stream_id="s", seq=9, text="", done=True)
    assert _parse_sse(format_sse_event(chunk))[0].event == "done"
    named = format_sse_event(chunk, event_name="token", id="custom", retry_ms=1500)
    assert named == "event: token\nid: custom\ndata: \nretry: 1500\n\n"
    (event,) = _parse_sse(named)
    assert (event.event, event.id, event.data) == ("token", "custom", "")


def test_sse_multiline_text_is_split_into_one_data_line_per_line() -> None:
    chunk = StreamChunk(stream_id="s", seq=0, text="line one\nline two\r\nline three\rend")
    raw = format_sse_event(chunk)
    assert raw == (
        "event: chunk\nid: 0\ndata: line one\ndata: line two\ndata: line three\ndata: end\n\n"
    )
    (event,) = _parse_sse(raw)
    assert event.data == "line one\nline two\nline three\nend"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ""),
        ("\n", "\n"),
        ("a\n", "a\n"),
        ("\r\n\r\n", "\n\n"),
        ("  indented", "  indented"),
        (": not a comment", ": not a comment"),
        ("data: nested", "data: nested"),
        ("no\u2028break\x0bhere\x0c", "no\u2028break\x0bhere\x0c"),
    ],
)
def test_sse_text_edge_cases_round_trip(text: str, expected: str) -> None:
    chunk = StreamChunk(stream_id="s", seq=0, text=text)
    (event,) = _parse_sse(format_sse_event(chunk))
    assert event.data == expected


@settings(max_examples=200, deadline=None)
@given(texts=st.lists(st.text(alphabet=st.characters(codec="utf-8")), min_size=1, max_size=5))
def test_sse_stream_of_events_round_trips_any_text(texts: list[str]) -> None:
    chunks = [StreamChunk(stream_id="s", seq=i, text=t) for i, t in enumerate(texts)]
    raw = "".join(format_sse_event(c) for c in chunks)
    events = _parse_sse(raw)
    assert [e.data for e in events] == [re.sub(r"\r\n|\r", "\n", t) for t in texts]
    assert [e.id for e in events] == [str(i) for i in range(len(texts))]
    json_events = _parse_sse("".join(format_sse_event(c, data="json") for c in chunks))
    assert [json.loads(e.data)["text"] for e in json_events] == texts


@pytest.mark.parametrize(
    "kwargs",
    [{"event_name": "a\nb"}, {"event_name": "a\rb"}, {"id": "1\n2"}, {"id": "nul\0"}],
)
def test_sse_rejects_event_names_and_ids_that_would_break_the_framing(
    kwargs: dict[str, str],
) -> None:
    chunk = StreamChunk(stream_id="s", seq=0, text="x")
    with pytest.raises(ValueError, match="SSE event"):
        format_sse_event(chunk, **kwargs)  # pyright: ignore[reportArgumentType]


def test_sse_json_data_keeps_a_stream_id_with_a_line_break_on_one_line() -> None:
    raw = format_sse_event(StreamChunk(stream_id="a\nb", seq=0, text="x"), data="json")
    (event,) = _parse_sse(raw)
    assert json.loads(event.data)["stream_id"] == "a\nb"


# ------------------------------------------------------------------------------ WS
def test_ws_json_has_the_chunk_fields_and_extra_keys() -> None:
    chunk = StreamChunk(stream_id="s", seq=2, text="é\n", done=True, meta={"k": [1, 2]})
    frame = chunk_to_ws_json(chunk, extra={"type": "chunk", "request": "r1"})
    assert json.loads(frame) == {
        "stream_id": "s",
        "seq": 2,
        "text": "é\n",
        "done": True,
        "meta": {"k": [1, 2]},
        "type": "chunk",
        "request": "r1",
    }


def test_ws_json_sends_meta_values_json_cannot_represent_as_text() -> None:
    class Opaque:
        def __str__(self) -> str:
            return "opaque!"

    chunk = StreamChunk(stream_id="s", seq=0, text="x", meta={"obj": Opaque()})
    assert json.loads(chunk_to_ws_json(chunk))["meta"] == {"obj": "opaque!"}


def test_ws_json_refuses_extra_keys_that_overwrite_chunk_fields() -> None:
    chunk = StreamChunk(stream_id="s", seq=0, text="x")
    with pytest.raises(ValueError, match=r"\['seq'\]"):
        chunk_to_ws_json(chunk, extra={"seq": 5})
