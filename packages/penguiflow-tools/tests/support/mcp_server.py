"""A real MCP test server (mcp SDK's MCPServer): stdio by default, `http PORT` for HTTP."""

import os
import sys
from typing import Literal

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
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
