"""Streaming code written for the original penguiflow 3.x works after changing only its imports.

The shapes a migrating user relies on: ``(text, done, meta)`` adapters, ``stream_flow(...,
include_final=True, timeout=...)``, ``format_sse_event(chunk, event_name=...)`` with ``id: seq`` and
``data:`` text lines, ``chunk_to_ws_json(chunk, extra=...)``, and a chunk emitted straight to
Rookery that waits for the reader.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from penguiflow.core import (
    Context,
    FlowError,
    Headers,
    Message,
    Node,
    StreamChunk,
    chunk_to_ws_json,
    create,
    emit_stream_events,
    format_sse_event,
    stream_flow,
)


def _msg(payload: Any) -> Message:
    return Message(payload=payload, headers=Headers(tenant="t"))


async def _collect(stream: AsyncGenerator[Any]) -> list[Any]:
    async with aclosing(stream) as items:
        return [item async for item in items]


async def _events(*events: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    for event in events:
        await anyio.lowlevel.checkpoint()
        yield event


def _text_done_meta(event: dict[str, Any]) -> tuple[str, bool, dict[str, Any]]:
    """The adapter shape of the original: ``(text, done, meta)``."""
    return event["text"], event.get("done", False), event.get("meta", {})


async def _relayed(*events: dict[str, Any], final_meta: dict[str, Any] | None = None) -> list[Any]:
    async def producer(msg: Message, ctx: Context) -> None:
        await emit_stream_events(
            _events(*events), ctx, msg, adapter=_text_done_meta, final_meta=final_meta
        )

    flow = create(Node(producer).to())
    async with flow.running():
        with anyio.fail_after(5):
            # include_final reads until the trace ends, so a chunk added after "done" would show.
            return await _collect(stream_flow(flow, _msg("go"), include_final=True))


# --------------------------------------------------------------------- emit_stream_events
async def test_a_text_done_meta_adapter_ends_the_stream_with_its_own_done_chunk() -> None:
    chunks = await _relayed(
        {"text": "alpha", "meta": {"idx": 0}},
        {"text": "beta", "done": True, "meta": {"idx": 1}},
        final_meta={"unused": True},
    )
    assert [(c.text, c.seq, c.done, c.meta) for c in chunks] == [
        ("alpha", 0, False, {"idx": 0}),
        ("beta", 1, True, {"idx": 1}),
    ]


async def test_a_source_that_never_says_done_gets_a_closing_chunk_with_final_meta() -> None:
    chunks = await _relayed({"text": "alpha"}, {"text": "beta"}, final_meta={"model": "m"})
    assert [(c.text, c.seq, c.done, c.meta) for c in chunks] == [
        ("alpha", 0, False, {}),
        ("beta", 1, False, {}),
        ("", 2, True, {"model": "m"}),
    ]


async def test_items_after_a_done_chunk_open_a_new_stream_that_is_closed_at_the_end() -> None:
    chunks = await _relayed({"text": "a", "done": True}, {"text": "b"})
    assert [(c.text, c.seq, c.done) for c in chunks] == [
        ("a", 0, True),
        ("b", 0, False),
        ("", 1, True),
    ]


async def test_an_adapter_tuple_of_another_shape_fails_the_node_with_a_type_error() -> None:
    def one_tuple(event: dict[str, Any]) -> Any:
        return (event["text"],)

    async def producer(msg: Message, ctx: Context) -> None:
        await emit_stream_events(_events({"text": "x"}), ctx, msg, adapter=one_tuple)

    flow = create(Node(producer).to())
    async with flow.running():
        with anyio.fail_after(5), pytest.raises(FlowError) as info:
            await _collect(stream_flow(flow, _msg("go")))
    error = info.value.original_exc
    assert isinstance(error, TypeError)
    assert "(text: str, done: bool, meta: Mapping | None)" in str(error)


# ---------------------------------------------------------------------------- stream_flow
async def test_stream_flow_with_include_final_yields_the_value_the_node_returned() -> None:
    async def answer(msg: Message, ctx: Context) -> dict[str, str]:
        await ctx.emit_chunk(parent=msg, text="Hel")
        await ctx.emit_chunk(parent=msg, text="lo", done=True)
        return {"answer": "Hello"}

    flow = create(Node(answer).to())
    async with flow.running():
        with anyio.fail_after(5):
            items = await _collect(stream_flow(flow, _msg("hi"), include_final=True))
    assert [c.text for c in items[:-1]] == ["Hel", "lo"]
    assert items[-1] == {"answer": "Hello"}


async def test_stream_flow_with_include_final_yields_the_payload_of_a_message_sent_to_rookery() -> (
    None
):
    async def answer(msg: Message, ctx: Context) -> None:
        await ctx.emit_chunk(parent=msg, text="word", done=True)
        await ctx.emit(msg.with_payload("final"))

    flow = create(Node(answer).to())
    async with flow.running():
        with anyio.fail_after(5):
            items = await _collect(stream_flow(flow, _msg("hi"), include_final=True))
    assert [type(item) for item in items] == [StreamChunk, str]
    assert items[-1] == "final"


async def test_stream_flow_timeout_bounds_the_wait_for_each_item() -> None:
    async def slow(msg: Message, ctx: Context) -> None:
        await ctx.emit_chunk(parent=msg, text="first")
        await anyio.sleep_forever()

    flow = create(Node(slow).to())
    got: list[str] = []
    async with flow.running():
        with anyio.fail_after(5), pytest.raises(TimeoutError):
            async with aclosing(stream_flow(flow, _msg("go"), timeout=0.05)) as chunks:
                async for chunk in chunks:
                    got.append(chunk.text)
    assert got == ["first"]


# --------------------------------------------------------------------------- backpressure
async def test_a_chunk_to_a_full_rookery_waits_until_the_reader_fetches() -> None:
    progress: list[int] = []

    async def producer(msg: Message, ctx: Context) -> None:
        for seq in range(3):
            await ctx.emit_chunk(parent=msg, text=str(seq), done=seq == 2)
            progress.append(seq)

    flow = create(Node(producer).to(), queue_maxsize=1)
    parent = _msg("go")
    async with flow.running():
        with anyio.fail_after(5):
            await flow.emit(parent)
            for _ in range(20):
                await anyio.lowlevel.checkpoint()
            assert progress == [0]  # chunk 1 waits: chunk 0 fills the trace's Rookery buffer
            first = await flow.fetch(trace_id=parent.trace_id)
            second = await flow.fetch(trace_id=parent.trace_id)
            third = await flow.fetch(trace_id=parent.trace_id)
    assert [item.payload.seq for item in (first, second, third)] == [0, 1, 2]


# ---------------------------------------------------------------------------------- SSE
def test_sse_event_reads_like_the_originals() -> None:
    chunk = StreamChunk(stream_id="abc", seq=2, text="token", done=True, meta={"foo": "bar"})
    raw = format_sse_event(chunk, retry_ms=1500)
    assert raw == (
        "event: done\nid: 2\ndata: token\n"
        f"data: {json.dumps({'foo': 'bar'}, ensure_ascii=False)}\nretry: 1500\n\n"
    )


def test_sse_event_name_can_be_chosen_and_an_empty_one_falls_back_to_the_default() -> None:
    chunk = StreamChunk(stream_id="s", seq=0, text="x")
    assert format_sse_event(chunk, event_name="token").startswith("event: token\nid: 0\n")
    assert format_sse_event(chunk, event_name="").startswith("event: chunk\n")


def test_sse_meta_line_keeps_non_ascii_text_and_stringifies_unknown_values() -> None:
    class Opaque:
        def __str__(self) -> str:
            return "opaque"

    chunk = StreamChunk(stream_id="s", seq=0, text="é", meta={"who": "pingüino", "o": Opaque()})
    lines = format_sse_event(chunk).splitlines()
    assert lines[2:4] == ["data: é", 'data: {"who": "pingüino", "o": "opaque"}']


# ----------------------------------------------------------------------------------- WS
def test_ws_json_merges_extra_keys() -> None:
    chunk = StreamChunk(stream_id="abc", seq=2, text="token", done=True, meta={"foo": "bar"})
    parsed = json.loads(chunk_to_ws_json(chunk, extra={"channel": "chat"}))
    assert parsed == {
        "stream_id": "abc",
        "seq": 2,
        "text": "token",
        "done": True,
        "meta": {"foo": "bar"},
        "channel": "chat",
    }
    assert "channel" not in json.loads(chunk_to_ws_json(chunk, extra=None))
