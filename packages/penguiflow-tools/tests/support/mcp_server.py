"""A real MCP test server (mcp SDK's MCPServer): stdio by default, `http PORT` for HTTP."""

import base64
import os
import sys
import zlib
from typing import Literal

import anyio
from mcp.server.mcpserver import Image, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import BlobResourceContents, EmbeddedResource, TextContent, ToolAnnotations
from pydantic import BaseModel

server = MCPServer("penguiflow-test")
STATS = {"in_flight": 0, "max_in_flight": 0, "started": 0, "cancelled": 0, "completed": 0}
FLAKY = {"calls": 0}


class Item(BaseModel):
    name: str
    tags: list[str] = []


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool(annotations=ToolAnnotations(destructive_hint=True))
def create_item(
    item: Item, mode: Literal["fast", "safe"] = "safe", note: str = "none"
) -> dict[str, object]:
    """Create an item (a nested model and an enum)."""
    return {"name": item.name, "tags": item.tags, "mode": mode, "note": note}


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
async def slow(seconds: float) -> str:
    """Sleep, counting calls in flight."""
    STATS["started"] += 1
    STATS["in_flight"] += 1
    STATS["max_in_flight"] = max(STATS["max_in_flight"], STATS["in_flight"])
    try:
        await anyio.sleep(seconds)
        STATS["completed"] += 1
        return "done"
    except anyio.get_cancelled_exc_class():
        STATS["cancelled"] += 1
        raise
    finally:
        STATS["in_flight"] -= 1


@server.tool(annotations=ToolAnnotations(destructive_hint=True))
async def slow_write(seconds: float) -> str:
    """Sleep, then pretend to write."""
    await anyio.sleep(seconds)
    return "written"


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def stats() -> dict[str, int]:
    """The counters of `slow` and `flaky`."""
    return {**STATS, "flaky_calls": FLAKY["calls"], "pid": os.getpid()}


@server.tool()
def reset() -> str:
    """Reset the counters."""
    STATS.update(in_flight=0, max_in_flight=0, started=0, cancelled=0, completed=0)
    FLAKY["calls"] = 0
    return "ok"


@server.tool()
def fail(message: str) -> str:
    """Always fails (a tool-reported error)."""
    raise ToolError(message)


@server.tool()
def crash() -> str:
    """Kills the server process."""
    os._exit(3)


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def flaky_read() -> str:
    """Counts calls (the HTTP gate forces statuses in front of it)."""
    FLAKY["calls"] += 1
    return "read"


@server.tool(annotations=ToolAnnotations(destructive_hint=True))
def flaky_write() -> str:
    """Counts calls (the HTTP gate forces statuses in front of it)."""
    FLAKY["calls"] += 1
    return "written"


@server.resource("memo://readme", mime_type="text/plain")
def readme() -> str:
    """The server's readme."""
    return "hello from a resource"


@server.resource("memo://notes/{key}")
def note(key: str) -> str:
    """One note by key (a resource template)."""
    return f"note {key}"


@server.prompt()
def greet(name: str) -> str:
    """Greet someone."""
    return f"Say hello to {name}."


def _png(width: int, height: int) -> bytes:
    """A real (noisy, so barely compressible) RGB PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    rows = b"".join(
        b"\x00" + bytes((x * 7 + y * 13 + (x * y) % 251) % 256 for x in range(width * 3))
        for y in range(height)
    )
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + b"\x08\x02\x00\x00\x00"
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


PNG = _png(64, 64)
PDF = b"%PDF-1.4\n" + b"1 0 obj << /Type /Catalog >> endobj\n" * 60 + b"%%EOF\n"


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def long_text(chars: int) -> str:
    """A long text (numbered lines)."""
    text = "".join(f"line {i:06d}\n" for i in range(chars // 12 + 1))
    return text[:chars]


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def image() -> Image:
    """A PNG image."""
    return Image(data=PNG, format="png")


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def report() -> dict[str, object]:
    """A small summary beside a base64 PDF."""
    return {"title": "Q3", "pages": 1, "pdf": base64.b64encode(PDF).decode()}


@server.resource("memo://files/{name}", mime_type="image/png")
def file(name: str) -> bytes:
    """A binary resource (the PNG under any name)."""
    return PNG


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def attachment() -> list[TextContent | EmbeddedResource]:
    """A caption and an embedded binary resource."""
    blob = BlobResourceContents(
        uri="memo://files/logo.png", mime_type="image/png", blob=base64.b64encode(PNG).decode()
    )
    return [
        TextContent(type="text", text="the logo"),
        EmbeddedResource(type="resource", resource=blob),
    ]


if os.environ.get("PF_TEST_COLLIDE") == "1":

    @server.tool(name="resources_list")
    def resources_list_tool() -> str:
        """A remote tool whose spec name collides with the resources tool."""
        return "collides"


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "hang":
        import time

        time.sleep(60)
    else:
        server.run()
