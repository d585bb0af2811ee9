"""PenguiFlow tools: remote MCP, UTCP and A2A sources as catalog entries planners call alike.

One :class:`ToolNode` per source (configured by :class:`ExternalToolConfig`) holds one session
in a task of its own, turns each remote tool into a core ``NodeSpec`` named ``{ns}.{remote}``
(arguments validated by a model built with :func:`json_schema_to_model`), and calls them
through one path: per-call credentials (API key, bearer, or the calling user's OAuth2 token
from an :class:`OAuthManager`, with consent as a planner pause), a per-source concurrency
limit, status-aware retries that never re-run a non-idempotent write, a circuit breaker,
large or binary results stored as artifacts (:class:`ArtifactStore`), and the
:class:`ToolError` tree::

    from penguiflow.tools import ExternalToolConfig, ToolNode, TransportType

    config = ExternalToolConfig(name="fs", transport=TransportType.MCP,
                                connection="python -m my_mcp_server")
    async with ToolNode(config) as node:
        result = await node.call("fs.read_file", {"path": "README.md"})
        planner = ReactPlanner(llm, catalog=list(node.specs))

A2A (``pip install "penguiflow-tools[a2a]"``): serve a flow or a planner as an A2A agent and call
remote A2A agents from a core ``RemoteNode``::

    from penguiflow.core import RemoteNode
    from penguiflow.tools import A2ASkill, A2ATransport, agent_card, flow_agent, serve_a2a

    card = agent_card("echo", "Echoes", skills=[A2ASkill("echo", "Echo", "Echoes text")])
    async with serve_a2a(flow_agent(flow), card=card) as server:
        node = RemoteNode(transport=A2ATransport(), skill="echo", agent_url=server.url, name="r")

Serve a catalog (``build_catalog(...)`` or a ``ToolNode``'s specs) over MCP::

    from penguiflow.tools import serve_mcp, serve_mcp_stdio

    async with serve_mcp(specs) as server:  # streamable HTTP on a free port
        print(server.url)
    await serve_mcp_stdio(specs)  # in a process an MCP client spawns

The SDKs are the ``mcp`` and ``a2a`` extras, imported when a ``ToolNode`` is constructed or an
A2A name is first used, never by ``import penguiflow.tools``.
"""

import importlib as _importlib
import typing as _typing

from ._artifacts import (
    ArtifactExtractionConfig,
    ArtifactRef,
    ArtifactScope,
    ArtifactStore,
    DurableArtifactStore,
    InMemoryArtifactStore,
)
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
from ._types import ToolCallContext, ToolNodeStatistics, ToolResult

if _typing.TYPE_CHECKING:
    from ._a2a_agents import FlowAgent, PlannerAgent, PlannerLike, flow_agent, planner_agent
    from ._a2a_card import A2ASkill, agent_card
    from ._a2a_server import A2AServer, create_a2a_app, serve_a2a
    from ._a2a_transport import A2ATransport
    from ._node import ToolNode
    from ._oauth import OAuthManager, oauth_callback_route
    from ._oauth_types import (
        ConsentRequest,
        ConsentResult,
        OAuthProviderConfig,
        OAuthStateError,
        OAuthToken,
        OAuthTokenError,
        PendingConsent,
        ToolAuthRequired,
    )
    from ._schema import json_schema_to_model
    from ._serve_mcp import (
        McpHttpServer,
        create_mcp_server,
        mcp_http_app,
        serve_mcp,
        serve_mcp_stdio,
    )
    from ._token_store import DurableTokenStore, InMemoryTokenStore, TokenStore

_LAZY = {
    "ToolNode": "_node",
    "json_schema_to_model": "_schema",
    "OAuthManager": "_oauth",
    "oauth_callback_route": "_oauth",
    "ConsentRequest": "_oauth_types",
    "ConsentResult": "_oauth_types",
    "OAuthProviderConfig": "_oauth_types",
    "OAuthStateError": "_oauth_types",
    "OAuthToken": "_oauth_types",
    "OAuthTokenError": "_oauth_types",
    "PendingConsent": "_oauth_types",
    "ToolAuthRequired": "_oauth_types",
    "DurableTokenStore": "_token_store",
    "InMemoryTokenStore": "_token_store",
    "TokenStore": "_token_store",
    "A2AServer": "_a2a_server",
    "create_a2a_app": "_a2a_server",
    "serve_a2a": "_a2a_server",
    "A2ASkill": "_a2a_card",
    "agent_card": "_a2a_card",
    "FlowAgent": "_a2a_agents",
    "PlannerAgent": "_a2a_agents",
    "PlannerLike": "_a2a_agents",
    "flow_agent": "_a2a_agents",
    "planner_agent": "_a2a_agents",
    "A2ATransport": "_a2a_transport",
    "McpHttpServer": "_serve_mcp",
    "create_mcp_server": "_serve_mcp",
    "mcp_http_app": "_serve_mcp",
    "serve_mcp": "_serve_mcp",
    "serve_mcp_stdio": "_serve_mcp",
}
"""Names loaded on first use: the SDK-backed ones (with their SDK), the node and the OAuth flow
(``import penguiflow.tools`` stays cheap: ~10 ms beyond core)."""

_SDK = {
    "_a2a_server": ("a2a", "a2a"),
    "_a2a_card": ("a2a", "a2a"),
    "_a2a_agents": ("a2a", "a2a"),
    "_a2a_transport": ("a2a", "a2a"),
    "_serve_mcp": ("mcp", "mcp"),
}
"""Module → (SDK import, extra) of the SDK-backed names."""

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
    # authentication (OAuth2 user tokens)
    "OAuthManager",
    "OAuthProviderConfig",
    "OAuthToken",
    "PendingConsent",
    "ConsentRequest",
    "ConsentResult",
    "TokenStore",
    "InMemoryTokenStore",
    "DurableTokenStore",
    "oauth_callback_route",
    # artifacts
    "ArtifactExtractionConfig",
    "ArtifactRef",
    "ArtifactScope",
    "ArtifactStore",
    "InMemoryArtifactStore",
    "DurableArtifactStore",
    # errors
    "ErrorCategory",
    "ToolError",
    "ToolNodeError",
    "ToolConfigError",
    "ToolAuthError",
    "ToolAuthRequired",
    "OAuthStateError",
    "OAuthTokenError",
    "ToolTimeoutError",
    "ToolConnectionError",
    "ToolCircuitOpenError",
    "ToolRateLimitError",
    "ToolClientError",
    "ToolArgumentsError",
    "ToolNotFoundError",
    "ToolServerError",
    "adapt_exception",
    # A2A serving (extra a2a)
    "A2AServer",
    "A2ASkill",
    "FlowAgent",
    "PlannerAgent",
    "PlannerLike",
    "agent_card",
    "create_a2a_app",
    "flow_agent",
    "planner_agent",
    "serve_a2a",
    # A2A calling (extra a2a)
    "A2ATransport",
    # serving a catalog over MCP (extra mcp)
    "McpHttpServer",
    "create_mcp_server",
    "mcp_http_app",
    "serve_mcp",
    "serve_mcp_stdio",
]


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None and name == "__version__":  # importlib.metadata alone costs ~12 ms
        from importlib.metadata import version

        return version("penguiflow-tools")
    if module is None:
        raise AttributeError(f"module 'penguiflow.tools' has no attribute {name!r}")
    if module in _SDK:
        sdk, extra = _SDK[module]
        try:
            _importlib.import_module(sdk)
        except ImportError as exc:
            raise ImportError(
                f"penguiflow.tools.{name} needs the {sdk} SDK: "
                f'pip install "penguiflow-tools[{extra}]"'
            ) from exc
    value = getattr(_importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
