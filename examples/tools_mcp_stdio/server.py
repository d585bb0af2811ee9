"""The example's MCP server (mcp SDK ``MCPServer``), spawned over stdio by ``main.py``."""

import base64

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel

server = MCPServer("colony")


class Place(BaseModel):
    colony: str
    region: str = "Ross Sea"


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def census(place: Place, species: str = "adelie") -> dict[str, object]:
    """Breeding pairs at a colony (a nested-model parameter)."""
    return {"colony": place.colony, "region": place.region, "species": species, "pairs": 338_231}


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def survey_report(colony: str) -> str:
    """The survey report of a colony, as a base64 PDF."""
    pdf = b"%PDF-1.4\n" + f"survey of {colony}\n".encode() * 200 + b"%%EOF\n"
    return base64.b64encode(pdf).decode()


@server.tool()
def fail(reason: str) -> str:
    """Always fails (a tool-reported error)."""
    raise ToolError(reason)


if __name__ == "__main__":
    server.run()
