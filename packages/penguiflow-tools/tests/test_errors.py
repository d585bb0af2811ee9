"""The error tree and its one boundary, adapt_exception."""

import json

import pytest
from mcp.shared.exceptions import MCPError

from penguiflow.core import PenguiFlowError
from penguiflow.tools import (
    ErrorCategory,
    ToolArgumentsError,
    ToolAuthError,
    ToolCircuitOpenError,
    ToolClientError,
    ToolConnectionError,
    ToolError,
    ToolNodeError,
    ToolNotFoundError,
    ToolRateLimitError,
    ToolServerError,
    ToolTimeoutError,
    adapt_exception,
)


def test_the_tree() -> None:
    assert issubclass(ToolError, PenguiFlowError)
    assert ToolNodeError is ToolError
    assert issubclass(ToolCircuitOpenError, ToolConnectionError)
    assert issubclass(ToolArgumentsError, ToolClientError)
    assert issubclass(ToolNotFoundError, ToolClientError)
    assert ToolRateLimitError.category is ErrorCategory.RATE_LIMIT


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (401, ToolAuthError),
        (403, ToolAuthError),
        (404, ToolClientError),
        (429, ToolRateLimitError),
        (500, ToolServerError),
        (503, ToolServerError),
    ],
)
def test_http_status_decides_first(status: int, kind: type[ToolError]) -> None:
    cause = MCPError(-32603, "Server returned an error response")
    error = adapt_exception(cause, source="s", tool="s.t", http_status=status)
    assert type(error) is kind
    assert error.status_code == status and error.__cause__ is cause
    assert error.source == "s" and error.tool == "s.t"


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (MCPError(-32000, "Connection closed"), ToolConnectionError),
        (MCPError(-32001, "timed out"), ToolTimeoutError),
        (MCPError(-32602, "bad params"), ToolClientError),
        (MCPError(-32603, "internal"), ToolServerError),
        (ConnectionRefusedError("refused"), ToolConnectionError),
        (TimeoutError(), ToolTimeoutError),
        (RuntimeError("odd"), ToolServerError),
        (ExceptionGroup("one", [ConnectionResetError("reset")]), ToolConnectionError),
    ],
)
def test_exceptions_map_by_class_and_code(exc: BaseException, kind: type[ToolError]) -> None:
    error = adapt_exception(exc, source="s")
    assert type(error) is kind
    assert isinstance(error.retryable, bool) and error.attempts == 1


def test_httpx_connect_errors_are_connection_errors() -> None:
    import httpx
    import httpx2

    assert isinstance(adapt_exception(httpx.ConnectError("x"), source="s"), ToolConnectionError)
    assert isinstance(adapt_exception(httpx2.ConnectError("x"), source="s"), ToolConnectionError)


def test_a_tool_error_passes_through_and_payloads_are_json() -> None:
    original = ToolArgumentsError("bad", source="s", errors=[{"loc": ("a",), "input": object()}])
    assert adapt_exception(original, source="other") is original
    payload = original.to_payload()
    json.dumps(payload)
    assert payload["type"] == "ToolArgumentsError" and payload["category"] == "client"
    assert payload["errors"][0]["loc"] == ["a"]


def test_rate_limit_carries_retry_after() -> None:
    error = adapt_exception(RuntimeError("x"), source="s", http_status=429, retry_after_s=2.0)
    assert isinstance(error, ToolRateLimitError) and error.retry_after_s == 2.0
