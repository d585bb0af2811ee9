"""Per-stream sequence numbers for ``emit_chunk``, freed with the trace that owns the stream."""

from __future__ import annotations

from typing import Any

from ._trace import TraceTable
from ._types import Message, StreamChunk, trusted

__all__ = ["StreamSequencer"]

_ALL_FIELDS = {"stream_id", "seq", "text", "done", "meta"}
"""Every field of ``StreamChunk`` (each chunk built without validation gets a copy)."""


class StreamSequencer:
    """Hands out ``seq`` per stream: 0, 1, 2 … and back to 0 after a ``done`` chunk."""

    __slots__ = ("_next", "_traces")

    def __init__(self, traces: TraceTable) -> None:
        self._next: dict[str, int] = {}
        self._traces = traces

    def __len__(self) -> int:
        return len(self._next)

    def _forget(self, stream_id: str) -> None:
        self._next.pop(stream_id, None)

    def next_chunk(
        self,
        parent: Message,
        text: str,
        stream_id: str | None,
        seq: int | None,
        done: bool,
        meta: dict[str, Any] | None,
    ) -> StreamChunk:
        """Build the next chunk of ``stream_id`` (default: the parent's trace id)."""
        sid = stream_id if stream_id is not None else parent.trace_id
        counters = self._next
        following = counters.get(sid)
        if seq is None:
            seq = 0 if following is None else following
        if done:
            if following is not None:
                del counters[sid]
        else:
            if following is None:
                state = self._traces.get(parent.trace_id)
                if state is not None:
                    state.cleanups.append(lambda: self._forget(sid))
            counters[sid] = seq + 1
        if (
            type(text) is str
            and type(seq) is int
            and type(done) is bool
            and type(sid) is str
            and (meta is None or type(meta) is dict)
        ):
            # Every field is already of its declared type: skip validation (the hot path).
            chunk_meta = {} if not meta else dict(meta)
            fields = {"stream_id": sid, "seq": seq, "text": text, "done": done, "meta": chunk_meta}
            return trusted(StreamChunk, fields, _ALL_FIELDS.copy())
        return StreamChunk(stream_id=sid, seq=seq, text=text, done=done, meta=meta or {})
