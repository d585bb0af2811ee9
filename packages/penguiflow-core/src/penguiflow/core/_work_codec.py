"""How distributed traces cross processes: messages, results, chunks and outcomes as JSON.

A work item's body is ``Message.model_dump(mode="json")``. A result output is
``{"m": message}`` when the flow delivered a ``Message`` and ``{"v": value}`` for a bare value;
a chunk output is ``{"c": chunk, "m": envelope or null}``; the end marker is
``{"status", "error", "attempts", "worker"}`` with the error as ``FlowError.to_payload()``.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import TypeAdapter
from pydantic_core import PydanticSerializationError, to_json

from ._errors import FlowError, FlowErrorCode
from ._types import Message, StreamChunk
from ._work_types import TraceOutcome, TraceStatus

__all__ = [
    "chunk_of",
    "decode_chunk",
    "decode_message",
    "decode_outcome",
    "decode_result",
    "encode_chunk",
    "encode_end",
    "encode_message",
    "encode_result",
]

_EMIT_TYPE = "FlowClient.emit takes a Message (tenant and trace id travel with it)"


def encode_message(msg: object) -> bytes:
    """``msg`` as a work item body; ``TypeError`` for a bare payload or a non-JSON one."""
    if not isinstance(msg, Message):
        raise TypeError(f"{_EMIT_TYPE}, got {type(msg).__name__}: wrap it, Message(payload=...)")
    try:
        return to_json(msg.model_dump(mode="json"))
    except (PydanticSerializationError, ValueError, TypeError) as exc:
        raise TypeError(
            f"the message's payload ({type(msg.payload).__name__}) is not JSON-serialisable "
            "through pydantic: use a pydantic model or JSON values"
        ) from exc


def decode_message(body: bytes, payload_type: Any = None) -> Message:
    """The ``Message`` a work item body holds (its payload validated into ``payload_type``)."""
    msg = Message.model_validate_json(body)
    if payload_type is not None:
        payload = TypeAdapter(payload_type).validate_python(msg.payload)
        msg = msg.model_copy(update={"payload": payload})
    return msg


def chunk_of(item: Any) -> tuple[StreamChunk, Message | None] | None:
    """``(chunk, envelope)`` when a Rookery item is a stream chunk, else None."""
    if isinstance(item, StreamChunk):
        return item, None
    if isinstance(item, Message) and isinstance(item.payload, StreamChunk):
        return item.payload, item
    return None


def encode_result(item: Any) -> bytes:
    """A Rookery result (``Message`` or bare value) as an output body."""
    try:
        if isinstance(item, Message):
            return to_json({"m": item.model_dump(mode="json")})
        return to_json({"v": item})
    except (PydanticSerializationError, ValueError, TypeError) as exc:
        raise TypeError(f"a result of the trace is not JSON-serialisable: {exc}") from exc


def encode_chunk(chunk: StreamChunk, envelope: Message | None) -> bytes:
    """A stream chunk (and the message it travelled in, if any) as an output body."""
    m = None if envelope is None else envelope.model_dump(mode="json", exclude={"payload"})
    return to_json({"c": chunk.model_dump(mode="json"), "m": m})


def decode_result(body: bytes, payload_type: Any = None) -> Any:
    """A result output: a ``Message`` when the flow delivered one, else the bare value."""
    data = json.loads(body)
    adapter = None if payload_type is None else TypeAdapter(payload_type)
    if "m" in data:
        msg = Message.model_validate(data["m"])
        if adapter is not None:
            msg = msg.model_copy(update={"payload": adapter.validate_python(msg.payload)})
        return msg
    value = data.get("v")
    return value if adapter is None else adapter.validate_python(value)


def decode_chunk(body: bytes) -> StreamChunk:
    """A chunk output's ``StreamChunk``."""
    return StreamChunk.model_validate(json.loads(body)["c"])


def encode_end(
    status: TraceStatus, error: FlowError | None, attempts: int, worker: str | None
) -> bytes:
    """The end marker's body."""
    payload = None if error is None else error.to_payload()
    return to_json({"status": status, "error": payload, "attempts": attempts, "worker": worker})


def decode_outcome(trace_id: str, body: bytes) -> TraceOutcome:
    """The ``TraceOutcome`` an end marker holds."""
    data = json.loads(body)
    status: TraceStatus = data["status"]
    raw = data.get("error")
    error = None
    if raw is not None:
        error = FlowError(
            trace_id=raw.get("trace_id", trace_id),
            node_name=raw.get("node_name"),
            node_id=raw.get("node_id"),
            code=FlowErrorCode(raw["code"]),
            message=raw.get("message", ""),
            metadata=raw.get("metadata"),
        )
        error.exception_type = raw.get("exception_type")
    return TraceOutcome(
        trace_id=trace_id,
        status=status,
        error=error,
        attempts=int(data.get("attempts", 0)),
        worker=data.get("worker"),
    )
