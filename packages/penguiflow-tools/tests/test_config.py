"""ExternalToolConfig: every mistake of §10 fails at construction, naming the field."""

import re
import subprocess
import sys
from typing import Any

import pytest
from pydantic import ValidationError

from penguiflow.tools import (
    AuthType,
    CircuitBreakerPolicy,
    ExternalToolConfig,
    McpTransportMode,
    RetryPolicy,
    ToolConfigError,
    TransportType,
)
from penguiflow.tools._config import resolve


def make(**overrides: Any) -> ExternalToolConfig:
    values: dict[str, Any] = {"name": "src", "transport": "mcp", "connection": "server --stdio"}
    values.update(overrides)
    return ExternalToolConfig(**values)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"name": "1bad"}, "name"),
        ({"name": "has space"}, "name"),
        ({"name": "x" * 49}, "name"),
        ({"connection": ""}, "connection is empty"),
        ({"connection": []}, "connection is empty"),
        ({"transport": "a2a", "connection": "ftp://x"}, "http"),
        ({"transport": "utcp", "connection": "manual.json"}, "http"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"timeout_s": 4000}, "timeout_s"),
        ({"connect_timeout_s": -1}, "connect_timeout_s"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"max_concurrency": 1001}, "max_concurrency"),
        ({"tool_filter": ["("]}, "tool_filter"),
        ({"connection": "server --token ${TOKEN"}, "malformed"),
        ({"headers": {"X": "${"}}, "headers.X"),
        ({"auth_type": "bearer"}, "token"),
        ({"auth_type": "api_key"}, "api_key"),
        ({"auth_type": "oauth2_user"}, "provider"),
        ({"auth_type": "bearer", "auth_config": {"token": "t", "tokn": "x"}}, "allowed"),
        ({"mcp_mode": "modern"}, "mcp_mode"),
        ({"mcp_transport_mode": "sse"}, "http"),
        ({"mcp_transport_mode": "stdio", "connection": "http://h/mcp"}, "command"),
        ({"retry_policy": {"max_attempts": 0}}, "max_attempts"),
        ({"retry_policy": {"max_attempts": 11}}, "max_attempts"),
        ({"unknown_field": 1}, "unknown_field"),
    ],
)
def test_bad_input_fails_at_construction_naming_the_field(
    overrides: dict[str, Any], match: str
) -> None:
    with pytest.raises(ValidationError, match=match):
        make(**overrides)


def test_defaults_match_the_contract() -> None:
    config = make()
    assert config.mcp_transport_mode is McpTransportMode.AUTO
    assert config.mcp_mode == "auto"
    assert config.timeout_s == 30.0 and config.connect_timeout_s == 10.0
    assert config.max_concurrency == 10
    assert config.retry_policy == RetryPolicy()
    assert config.circuit_breaker == CircuitBreakerPolicy()
    assert config.auth_type is AuthType.NONE
    assert RetryPolicy().retry_on_status == (429, 500, 502, 503, 504)
    assert CircuitBreakerPolicy().failure_threshold == 5
    assert make(circuit_breaker=None).circuit_breaker is None
    assert make().transport is TransportType.MCP
    with pytest.raises(ValidationError):
        config.name = "other"


@pytest.mark.parametrize(
    ("connection", "mode"),
    [
        ("npx server", McpTransportMode.STDIO),
        (["python", "-m", "server"], McpTransportMode.STDIO),
        ("http://127.0.0.1:1/mcp", McpTransportMode.STREAMABLE_HTTP),
        ("https://example.com/sse", McpTransportMode.SSE),
        ("https://example.com/sse/", McpTransportMode.SSE),
    ],
)
def test_auto_picks_the_transport_from_the_connection(
    connection: str | list[str], mode: McpTransportMode
) -> None:
    assert make(connection=connection).effective_mcp_mode is mode


def test_tool_filter_uses_fullmatch() -> None:
    config = make(tool_filter=["get"])
    assert config.keeps("get")
    assert not config.keeps("get_secrets")
    assert make(tool_filter=["get.*"]).keeps("get_secrets")
    assert make().keeps("anything")


def test_variables_are_substituted_at_resolve_not_construction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PF_TOOL", raising=False)
    config = make(
        connection="server --key ${PF_TOOL} --price $$5 --mode ${PF_MODE:-fast}",
        auth_type="bearer",
        auth_config={"token": "${PF_TOOL}"},
    )
    with pytest.raises(ToolConfigError, match=r"\$\{PF_TOOL\} in connection is not set"):
        resolve(config)
    monkeypatch.setenv("PF_TOOL", "s3cret")
    resolved = resolve(config)
    assert resolved.argv == ("server", "--key", "s3cret", "--price", "$5", "--mode", "fast")
    assert resolved.auth_headers["Authorization"] == "Bearer s3cret"  # per request
    assert "Authorization" not in resolved.headers
    assert "s3cret" not in repr(resolved)


def test_missing_auth_variable_names_the_auth_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    config = make(
        connection="https://example.com/mcp",
        auth_type="bearer",
        auth_config={"token": "${GITHUB_TOKEN}"},
    )
    with pytest.raises(ToolConfigError) as missing:
        resolve(config)
    assert str(missing.value) == (
        "${GITHUB_TOKEN} in auth_config.token is not set; export it or write ${GITHUB_TOKEN:-…}"
    )


def test_secrets_never_reach_repr() -> None:
    config = make(
        auth_type="api_key",
        auth_config={"api_key": "k-123", "header": "X-Key"},
        headers={"X-Other": "h-456"},
        env={"SECRET": "e-789"},
    )
    text = repr(config)
    assert "k-123" not in text and "h-456" not in text and "e-789" not in text
    assert resolve(config).auth_headers["X-Key"] == "k-123"  # set per request, not a default


def _oauth() -> Any:
    from penguiflow.tools import OAuthManager, OAuthProviderConfig

    url = "https://idp.example"
    return OAuthManager([OAuthProviderConfig("gh", f"{url}/a", f"{url}/t", "client", f"{url}/cb")])


def test_toolnode_rejects_auth_it_cannot_serve() -> None:
    from penguiflow.tools import ToolNode

    with pytest.raises(ValueError, match="oauth="):
        ToolNode(make(auth_type="oauth2_user", auth_config={"provider": "gh"}))
    with pytest.raises(ValueError, match="streamable HTTP"):
        ToolNode(make(auth_type="oauth2_user", auth_config={"provider": "gh"}), oauth=_oauth())
    over_sse = make(
        connection="http://127.0.0.1:1/sse",
        auth_type="oauth2_user",
        auth_config={"provider": "gh"},
    )
    with pytest.raises(ValueError, match="streamable HTTP, not sse"):
        ToolNode(over_sse, oauth=_oauth())
    # per-user tokens work over A2A (and UTCP): no error
    a2a = make(
        transport="a2a",
        connection="http://127.0.0.1:1",
        auth_type="oauth2_user",
        auth_config={"provider": "gh"},
    )
    ToolNode(a2a, oauth=_oauth())


@pytest.mark.parametrize(
    ("transport", "connection", "blocked", "extra"),
    [
        ("mcp", "server --stdio", "mcp", "mcp"),
        ("utcp", "http://127.0.0.1:1/openapi.json", "utcp", "utcp"),
        ("a2a", "http://127.0.0.1:1", "a2a", "a2a"),
    ],
)
def test_a_missing_extra_is_an_import_error_at_construction_with_the_pip_line(
    monkeypatch: pytest.MonkeyPatch, transport: str, connection: str, blocked: str, extra: str
) -> None:
    from penguiflow.tools import ToolNode

    monkeypatch.setitem(sys.modules, blocked, None)  # `import <blocked>` now raises ImportError
    with pytest.raises(ImportError, match=re.escape(f'pip install "penguiflow-tools[{extra}]"')):
        ToolNode(make(transport=transport, connection=connection))


def test_a_missing_extra_is_an_import_error_on_first_use_of_a_lazy_name() -> None:
    code = (
        "import sys; sys.modules['a2a'] = None; sys.modules['mcp'] = None\n"
        "import penguiflow.tools as t\n"
        "for name in ('serve_a2a', 'A2ATransport', 'serve_mcp'):\n"
        "    try:\n"
        "        getattr(t, name)\n"
        "    except ImportError as exc:\n"
        "        print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.splitlines() == [
        'penguiflow.tools.serve_a2a needs the a2a SDK: pip install "penguiflow-tools[a2a]"',
        'penguiflow.tools.A2ATransport needs the a2a SDK: pip install "penguiflow-tools[a2a]"',
        'penguiflow.tools.serve_mcp needs the mcp SDK: pip install "penguiflow-tools[mcp]"',
    ]
