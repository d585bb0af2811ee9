"""The public surface of penguiflow.tools is exactly what __all__ documents."""

import json
import subprocess
import sys
import types

import penguiflow.tools as tools

A2A = {
    "A2AServer",
    "A2ASkill",
    "A2ATransport",
    "FlowAgent",
    "PlannerAgent",
    "PlannerLike",
    "agent_card",
    "create_a2a_app",
    "flow_agent",
    "planner_agent",
    "serve_a2a",
}
"""Loaded on first use (with the a2a SDK)."""

SERVE_MCP = {"McpHttpServer", "create_mcp_server", "mcp_http_app", "serve_mcp", "serve_mcp_stdio"}
"""Loaded on first use (with the mcp SDK)."""

OAUTH = {
    "ToolNode",
    "json_schema_to_model",
    "OAuthManager",
    "oauth_callback_route",
    "ConsentRequest",
    "ConsentResult",
    "OAuthProviderConfig",
    "OAuthStateError",
    "OAuthToken",
    "OAuthTokenError",
    "PendingConsent",
    "ToolAuthRequired",
    "DurableTokenStore",
    "InMemoryTokenStore",
    "TokenStore",
}
"""Loaded on first use without an SDK (the node, the schema builder, the OAuth flow): keeps
``import penguiflow.tools`` cheap."""

EXPECTED = (
    A2A
    | SERVE_MCP
    | {
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
        "ToolTimeoutError",
        "ToolConnectionError",
        "ToolCircuitOpenError",
        "ToolRateLimitError",
        "ToolClientError",
        "ToolArgumentsError",
        "ToolNotFoundError",
        "ToolServerError",
        "adapt_exception",
        "ToolAuthRequired",
        "OAuthStateError",
        "OAuthTokenError",
    }
)


def test_all_is_exactly_the_public_surface() -> None:
    assert set(tools.__all__) == EXPECTED
    assert len(tools.__all__) == len(EXPECTED), "duplicates in __all__"


def test_every_public_name_is_importable_and_documented() -> None:
    for name in tools.__all__:
        assert getattr(tools, name).__doc__, f"{name} has no docstring"


def test_no_other_public_names_leak_from_private_modules() -> None:
    public = {
        name
        for name, value in vars(tools).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    lazy = A2A | SERVE_MCP | OAUTH
    assert public - lazy == EXPECTED - lazy  # lazy names appear once used


def test_version_is_the_distribution_version() -> None:
    from importlib.metadata import version

    assert tools.__version__ == version("penguiflow-tools")


def test_importing_tools_loads_no_sdk_and_no_sibling_but_core() -> None:
    code = (
        "import json, sys, penguiflow.tools; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('mcp', 'mcp_types', 'utcp', 'utcp_http', 'a2a', 'httpx', 'httpx2', 'aiohttp', "
        "'starlette', 'uvicorn', 'penguiflow'))))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    loaded: list[str] = json.loads(completed.stdout)
    foreign = [
        name
        for name in loaded
        if name not in ("penguiflow", "penguiflow.core", "penguiflow.tools")
        and not name.startswith(("penguiflow.core.", "penguiflow.tools."))
    ]
    assert "penguiflow.tools" in loaded
    assert foreign == [], f"importing penguiflow.tools also imported {foreign}"
