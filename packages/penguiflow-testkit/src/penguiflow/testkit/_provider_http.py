"""HTTP/1.1 framing for ``ProviderServer``: reading requests, writing JSON, text and SSE answers."""

from __future__ import annotations

import asyncio
import http
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._provider_wire import ScriptedFailure, anthropic_error_body, openai_error_body

__all__ = [
    "ProviderRequest",
    "read_request",
    "write_failure",
    "write_json",
    "write_sse",
]


@dataclass(frozen=True, slots=True)
class ProviderRequest:
    """One HTTP request the server received."""

    method: str
    """The HTTP method (``"POST"``)."""
    path: str
    """The request path (``"/v1/chat/completions"`` or ``"/v1/messages"``), query left out."""
    headers: Mapping[str, str]
    """The request headers, names lowercased."""
    body: bytes
    """The raw request body."""
    json: Any = field(default=None)
    """The body parsed as JSON (None when it is not JSON)."""


async def read_request(reader: asyncio.StreamReader) -> ProviderRequest | None:
    line = await reader.readline()
    if not line.strip():
        return None
    method, target, _version = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    headers: dict[str, str] = {}
    while True:
        raw = await reader.readline()
        if raw in (b"\r\n", b"\n", b""):
            break
        name, _, value = raw.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        parts: list[bytes] = []
        while size := int((await reader.readline()).split(b";")[0].strip() or b"0", 16):
            parts.append(await reader.readexactly(size))
            await reader.readline()
        await reader.readline()
        body = b"".join(parts)
    else:
        body = b""
    try:
        parsed: Any = json.loads(body) if body else None
    except ValueError:
        parsed = None
    path = target.split("?", 1)[0]
    return ProviderRequest(method=method, path=path, headers=headers, body=body, json=parsed)


def _status_line(status: int) -> str:
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = "Overloaded" if status == 529 else "Unknown"
    return f"HTTP/1.1 {status} {reason}\r\n"


def _head(status: int, headers: Iterable[tuple[str, str]]) -> bytes:
    lines = [_status_line(status), *(f"{name}: {value}\r\n" for name, value in headers), "\r\n"]
    return "".join(lines).encode("latin-1")


async def _write_body(
    writer: asyncio.StreamWriter,
    status: int,
    body: bytes,
    content_type: str,
    extra: Mapping[str, str] | None = None,
) -> None:
    headers = [
        ("content-type", content_type),
        ("content-length", str(len(body))),
        ("x-request-id", "req_scripted"),
        *(extra or {}).items(),
    ]
    writer.write(_head(status, headers) + body)
    await writer.drain()


async def write_json(writer: asyncio.StreamWriter, status: int, payload: object) -> None:
    await _write_body(writer, status, json.dumps(payload).encode(), "application/json")


async def write_failure(
    writer: asyncio.StreamWriter, failure: ScriptedFailure, provider: str
) -> None:
    extra = dict(failure.headers)
    if failure.retry_after is not None:
        extra["retry-after"] = str(failure.retry_after)
    body = failure.body
    if body is None:
        maker = openai_error_body if provider == "openai" else anthropic_error_body
        body = maker(failure.status)
    if isinstance(body, str):
        await _write_body(writer, failure.status, body.encode(), "text/plain", extra)
    else:
        data = json.dumps(dict(body)).encode()
        await _write_body(writer, failure.status, data, "application/json", extra)


async def write_sse(writer: asyncio.StreamWriter, events: Iterable[bytes]) -> None:
    headers = [
        ("content-type", "text/event-stream"),
        ("cache-control", "no-cache"),
        ("transfer-encoding", "chunked"),
        ("x-request-id", "req_scripted"),
    ]
    writer.write(_head(200, headers))
    for event in events:
        writer.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
        await writer.drain()
    writer.write(b"0\r\n\r\n")
    await writer.drain()
