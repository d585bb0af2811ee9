"""Framing a ``StreamChunk`` for the wire: Server-Sent Events and WebSocket JSON frames.

``format_sse_event`` writes one ``text/event-stream`` event; ``chunk_to_ws_json`` the JSON text
of a WebSocket frame. Re-exported by ``_streaming``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic_core import to_json

from ._types import StreamChunk

__all__ = ["chunk_to_ws_json", "format_sse_event"]

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
"""What the SSE spec treats as the end of a line (nothing else: not VT, FF or U+2028)."""

_CHUNK_FIELDS = frozenset({"stream_id", "seq", "text", "done", "meta"})


def format_sse_event(
    chunk: StreamChunk,
    *,
    event_name: str | None = None,
    id: str | None = None,
    data: Literal["text", "json"] = "text",
    retry_ms: int | None = None,
) -> str:
    r"""Frame ``chunk`` as one Server-Sent Event (``text/event-stream``), blank line included.

    By default the event is ``event:`` (the name), ``id:`` (the chunk's ``seq``), the chunk's text
    as ``data:`` lines and, when the chunk has meta, one more ``data:`` line with the meta as
    JSON; then ``retry:`` when given. Text spanning several lines becomes several ``data:`` lines,
    split at every ``\r\n``, ``\r`` and ``\n`` as the SSE spec defines lines, so a client
    reassembles it joined with ``\n`` (a ``\r\n`` or ``\r`` arrives as ``\n``; the SSE format
    cannot carry those two). Empty text still gets one ``data:`` line so that the event is
    dispatched. With ``data="json"`` the single ``data:`` line is the JSON of the whole chunk
    (``stream_id, seq, text, done, meta``, as in ``chunk_to_ws_json``): use it when the client
    must tell text from meta, or needs ``stream_id`` and ``done``.

    Args:
        chunk: The chunk to send.
        event_name: The event name; default ``"chunk"``, or ``"done"`` for a chunk with
            ``done=True`` (so a browser ``EventSource`` can listen for the end).
        id: The event id (what the browser sends back as ``Last-Event-ID``); default the
            chunk's ``seq``. Pass ``f"{chunk.stream_id}:{chunk.seq}"`` when one connection
            carries several streams.
        data: ``"text"`` for the text (and meta) lines, ``"json"`` for the whole chunk as JSON.
        retry_ms: Optional reconnection delay to announce to the client.

    Raises:
        ValueError: ``event_name`` or ``id`` contains a line break, or ``id`` contains NUL, which
            the SSE format cannot carry.
    """
    name = event_name or ("done" if chunk.done else "chunk")
    if _LINE_BREAK.search(name):
        raise ValueError(f"an SSE event name cannot contain a line break: {name!r}")
    event_id = id if id is not None else str(chunk.seq)
    if _LINE_BREAK.search(event_id) or "\0" in event_id:
        raise ValueError(f"an SSE event id cannot contain a line break or NUL: {event_id!r}")
    lines = [f"event: {name}", f"id: {event_id}"]
    if data == "json":
        lines.append(f"data: {_chunk_json(chunk)}")
    else:
        lines.extend(f"data: {line}" for line in _LINE_BREAK.split(chunk.text))
        if chunk.meta:
            # JSON escapes every line break inside strings: the meta is always one line.
            meta = json.dumps(chunk.meta, ensure_ascii=False, default=str)
            lines.append(f"data: {meta}")
    if retry_ms is not None:
        lines.append(f"retry: {int(retry_ms)}")
    return "\n".join(lines) + "\n\n"


def _chunk_json(chunk: StreamChunk, extra: Mapping[str, Any] | None = None) -> str:
    fields: dict[str, Any] = {
        "stream_id": chunk.stream_id,
        "seq": chunk.seq,
        "text": chunk.text,
        "done": chunk.done,
        "meta": chunk.meta,
    }
    if extra:
        fields.update(extra)
    # serialize_unknown: a meta value JSON has no type for is sent as its str() rather than
    # failing a stream halfway through.
    return to_json(fields, serialize_unknown=True).decode()


def chunk_to_ws_json(chunk: StreamChunk, *, extra: Mapping[str, Any] | None = None) -> str:
    """The JSON text of a WebSocket frame for ``chunk``: ``stream_id, seq, text, done, meta``.

    ``extra`` keys are merged into the object (for example ``{"type": "chunk"}`` or a request
    id). Values that JSON cannot represent are sent as their ``str()``.

    Raises:
        ValueError: An ``extra`` key would overwrite one of the chunk's fields (send a changed
            chunk instead: ``chunk.model_copy(update={...})``).
    """
    if extra:
        clash = extra.keys() & _CHUNK_FIELDS
        if clash:
            raise ValueError(
                f"extra keys {sorted(clash)} would overwrite the chunk's own fields; "
                "pass chunk.model_copy(update={...}) to send changed fields"
            )
    return _chunk_json(chunk, extra)
