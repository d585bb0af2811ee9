"""The example's MCP server (mcp SDK ``MCPServer``), spawned over stdio by ``main.py``."""

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

server = MCPServer("colony")
COLONIES = {"Cape Crozier": 272_340, "Cape Adare": 338_231}


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def colony_size(colony: str) -> int:
    """Breeding pairs of Adélie penguins at a colony."""
    return COLONIES[colony]


@server.tool(annotations=ToolAnnotations(destructive_hint=True))
def log_sighting(colony: str, count: int, note: str = "") -> dict[str, object]:
    """Record a sighting (a write)."""
    return {"logged": True, "colony": colony, "count": count, "note": note}


if __name__ == "__main__":
    server.run()
