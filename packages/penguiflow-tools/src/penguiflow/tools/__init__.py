"""PenguiFlow tools: remote MCP servers as catalog entries that planners call like local tools.

One :class:`ToolNode` per source (configured by :class:`ExternalToolConfig`) holds one session
in a task of its own, turns each remote tool into a core ``NodeSpec`` named ``{ns}.{remote}``
(arguments validated by a model built with :func:`json_schema_to_model`), and calls them
through one path: a per-source concurrency limit, status-aware retries that never re-run a
non-idempotent write, a circuit breaker, and the :class:`ToolError` tree::

    from penguiflow.tools import ExternalToolConfig, ToolNode, TransportType

    config = ExternalToolConfig(name="fs", transport=TransportType.MCP,
                                connection="python -m my_mcp_server")
    async with ToolNode(config) as node:
        result = await node.call("fs.read_file", {"path": "README.md"})
        planner = ReactPlanner(llm, catalog=list(node.specs))

The SDK is the ``mcp`` extra (``pip install "penguiflow-tools[mcp]"``), imported when a
``ToolNode`` is constructed, never by ``import penguiflow.tools``.
"""

from importlib.metadata import version as _version

from ._config import (
    AuthType,
    CircuitBreakerPolicy,
    ExternalToolConfig,
    McpTransportMode,
    RetryPolicy,
    TransportType,
)
from ._errors import (
    ErrorCategory,
    ToolArgumentsError,
    ToolAuthError,
    ToolCircuitOpenError,
    ToolClientError,
    ToolConfigError,
    ToolConnectionError,
    ToolError,
    ToolNodeError,
    ToolNotFoundError,
    ToolRateLimitError,
    ToolServerError,
    ToolTimeoutError,
    adapt_exception,
)
from ._node import ToolNode
from ._schema import json_schema_to_model
from ._types import ToolCallContext, ToolNodeStatistics, ToolResult

__version__: str = _version("penguiflow-tools")

__all__ = [
    # sources
    "ToolNode",
    "ToolNodeStatistics",
    # configuration
    "ExternalToolConfig",
    "TransportType",
    "McpTransportMode",
    "AuthType",
    "RetryPolicy",
    "CircuitBreakerPolicy",
    # calls
    "ToolCallContext",
    "ToolResult",
    "json_schema_to_model",
    # errors
    "ErrorCategory",
    "ToolError",
    "ToolNodeError",
    "ToolConfigError",
    "ToolAuthError",
    "ToolTimeoutError",
    "ToolConnectionError",
    "ToolCircuitOpenError",
    "ToolRateLimitError",
    "ToolClientError",
    "ToolArgumentsError",
    "ToolNotFoundError",
    "ToolServerError",
    "adapt_exception",
]
