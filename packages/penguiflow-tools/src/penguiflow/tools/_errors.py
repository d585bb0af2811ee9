"""The errors of remote tool calls, and the one place foreign exceptions become them.

::

    ToolError                 .source .tool .status_code .retryable .retry_after_s .attempts .detail
    │                         .to_payload()
    ├── ToolConfigError       missing ${VAR}, spec-name collision
    ├── ToolAuthError         401/403
    │   ├── ToolAuthRequired       a user's consent is needed and nobody can pause (_oauth_types)
    │   ├── OAuthStateError        unknown, used or expired consent state (_oauth_types)
    │   └── OAuthTokenError        the token endpoint refused the code or refresh (_oauth_types)
    ├── ToolTimeoutError      an attempt exceeded timeout_s (.timeout_s)
    ├── ToolConnectionError   spawn/connect/handshake failed, session lost
    │   └── ToolCircuitOpenError   the breaker is open (.retry_after_s = time left)
    ├── ToolRateLimitError    429 (.retry_after_s from Retry-After)
    ├── ToolClientError       other 4xx, a tool-reported error (MCP isError)
    │   ├── ToolArgumentsError     arguments fail the args model (.errors, JSON-safe)
    │   └── ToolNotFoundError      no such tool on the source
    └── ToolServerError       5xx, JSON-RPC internal error

``adapt_exception`` is the single mapping from SDK, OS and HTTP exceptions to this tree;
cancellation is never passed to it (callers re-raise it untouched).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

from penguiflow.core import PenguiFlowError

__all__ = [
    "ErrorCategory",
    "ToolArgumentsError",
    "ToolAuthError",
    "ToolCircuitOpenError",
    "ToolClientError",
    "ToolConfigError",
    "ToolConnectionError",
    "ToolError",
    "ToolNodeError",
    "ToolNotFoundError",
    "ToolRateLimitError",
    "ToolServerError",
    "ToolTimeoutError",
    "adapt_exception",
]


class ErrorCategory(StrEnum):
    """The kind of a ``ToolError``: what went wrong, independent of the transport."""

    CONFIG = "config"
    """The configuration cannot work (a missing variable, a name collision)."""
    AUTH = "auth"
    """The source refused the credentials (401/403)."""
    TIMEOUT = "timeout"
    """An attempt took longer than ``timeout_s``."""
    CONNECTION = "connection"
    """The source could not be reached, or the session was lost."""
    RATE_LIMIT = "rate_limit"
    """The source asked to slow down (429)."""
    CLIENT = "client"
    """The request was wrong (4xx, bad arguments, a tool-reported error)."""
    SERVER = "server"
    """The source failed (5xx, an internal JSON-RPC error)."""


class ToolError(PenguiFlowError):
    """Root of every error a remote tool call raises.

    Attributes:
        source: The config name (namespace) of the source.
        tool: The full spec name of the tool, or None for source-level failures.
        status_code: The HTTP status behind the error, when there was one.
        retryable: Whether this kind of failure is retried (for some tool).
        retry_after_s: How long the source asked to wait, or None.
        attempts: The number of attempts made (1 when not retried).
        detail: JSON-safe extra facts.
    """

    category: ErrorCategory = ErrorCategory.SERVER
    """The kind of failure."""

    def __init__(
        self,
        message: str,
        *,
        source: str = "",
        tool: str | None = None,
        status_code: int | None = None,
        retryable: bool = False,
        retry_after_s: float | None = None,
        attempts: int = 1,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message: str = message
        self.source: str = source
        self.tool: str | None = tool
        self.status_code: int | None = status_code
        self.retryable: bool = retryable
        self.retry_after_s: float | None = retry_after_s
        self.attempts: int = attempts
        self.detail: dict[str, Any] = dict(detail or {})

    def to_payload(self) -> dict[str, Any]:
        """The error as a JSON-safe dict (for events, observations and logs)."""
        return {
            "type": type(self).__name__,
            "category": self.category.value,
            "message": self.message,
            "source": self.source,
            "tool": self.tool,
            "status_code": self.status_code,
            "retryable": self.retryable,
            "retry_after_s": self.retry_after_s,
            "attempts": self.attempts,
            "detail": _json_safe(self.detail),
        }


ToolNodeError = ToolError
"""The reference's name of ``ToolError``."""


class ToolConfigError(ToolError):
    """The configuration cannot work: an unset ``${VAR}``, a spec-name collision."""

    category = ErrorCategory.CONFIG


class ToolAuthError(ToolError):
    """The source refused the credentials (401/403)."""

    category = ErrorCategory.AUTH


class ToolTimeoutError(ToolError):
    """An attempt took longer than ``timeout_s``.

    Attributes:
        timeout_s: The limit that was exceeded.
    """

    category = ErrorCategory.TIMEOUT

    def __init__(self, message: str, *, timeout_s: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.timeout_s: float | None = timeout_s


class ToolConnectionError(ToolError):
    """The source could not be spawned, reached or handshaken with, or the session was lost."""

    category = ErrorCategory.CONNECTION


class ToolCircuitOpenError(ToolConnectionError):
    """The source's circuit breaker is open; nothing was sent (``retry_after_s`` = time left)."""


class ToolRateLimitError(ToolError):
    """The source answered 429 (``retry_after_s`` from ``Retry-After``)."""

    category = ErrorCategory.RATE_LIMIT


class ToolClientError(ToolError):
    """The request was wrong: another 4xx, or the tool itself reported an error (MCP isError)."""

    category = ErrorCategory.CLIENT


class ToolArgumentsError(ToolClientError):
    """The arguments fail the tool's args model; nothing was sent.

    Attributes:
        errors: pydantic's error list, JSON-safe.
    """

    def __init__(
        self, message: str, *, errors: Sequence[Mapping[str, Any]] = (), **kwargs: Any
    ) -> None:
        super().__init__(message, **kwargs)
        self.errors: list[dict[str, Any]] = [_json_safe(dict(e)) for e in errors]

    def to_payload(self) -> dict[str, Any]:
        """The error as a JSON-safe dict, with ``errors``."""
        return {**super().to_payload(), "errors": self.errors}


class ToolNotFoundError(ToolClientError):
    """No tool of that name on the source (the message lists close matches)."""


class ToolServerError(ToolError):
    """The source failed: a 5xx, or an internal JSON-RPC error."""

    category = ErrorCategory.SERVER


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=repr))


def _status_error(
    status: int, message: str, kwargs: dict[str, Any], retry_after_s: float | None
) -> ToolError:
    if status in (401, 403):
        return ToolAuthError(message, status_code=status, **kwargs)
    if status == 429:
        return ToolRateLimitError(
            message, status_code=status, retryable=True, retry_after_s=retry_after_s, **kwargs
        )
    if status >= 500:
        return ToolServerError(
            message, status_code=status, retryable=status in (500, 502, 503, 504), **kwargs
        )
    return ToolClientError(message, status_code=status, **kwargs)


def _single_leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:  # pyright: ignore[reportUnknownMemberType, reportUnknownArgumentType]
        exc = exc.exceptions[0]  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
    return exc  # pyright: ignore[reportUnknownVariableType]


def _is_connect_error(exc: BaseException) -> bool:
    # httpx and httpx2 are optional at import: look them up only if already loaded.
    import sys

    for module_name in ("httpx", "httpx2"):
        module = sys.modules.get(module_name)
        if module is None:
            continue
        for name in ("ConnectError", "RemoteProtocolError", "ConnectTimeout"):
            cls = getattr(module, name, None)
            if isinstance(cls, type) and isinstance(exc, cls):
                return True
    return isinstance(exc, OSError)


def _mcp_error_code(exc: BaseException) -> int | None:
    import sys

    module = sys.modules.get("mcp.shared.exceptions")
    cls = getattr(module, "MCPError", None) if module is not None else None
    if isinstance(cls, type) and isinstance(exc, cls):
        code: object = getattr(exc, "code", None)
        return code if isinstance(code, int) else None
    return None


def adapt_exception(
    exc: BaseException,
    *,
    source: str,
    tool: str | None = None,
    http_status: int | None = None,
    retry_after_s: float | None = None,
) -> ToolError:
    """Translate a foreign exception into the ``ToolError`` it means (``__cause__`` = ``exc``).

    A ``ToolError`` is returned as it is; a single-leaf exception group is unwrapped; an HTTP
    status the connector saw (``http_status``) decides first, then the MCP JSON-RPC code
    (``CONNECTION_CLOSED`` → connection, a timeout code → timeout, others by meaning), then the
    exception's class (``OSError`` and httpx/httpx2 connect errors → connection,
    ``TimeoutError`` → timeout). Anything else is a ``ToolServerError``. Never pass a
    cancellation here: it is re-raised by the caller untouched.
    """
    exc = _single_leaf(exc)
    if isinstance(exc, ToolError):
        return exc
    text = str(exc) or type(exc).__name__
    kwargs: dict[str, Any] = {"source": source, "tool": tool}
    error: ToolError
    code = _mcp_error_code(exc)
    if http_status is not None and http_status >= 400:
        error = _status_error(http_status, f"HTTP {http_status}: {text}", kwargs, retry_after_s)
    elif code is not None:
        error = _mcp_code_error(code, text, kwargs)
    elif isinstance(exc, TimeoutError):
        error = ToolTimeoutError(text, retryable=True, **kwargs)
    elif _is_connect_error(exc):
        error = ToolConnectionError(text, retryable=True, **kwargs)
    else:
        error = ToolServerError(f"{type(exc).__name__}: {text}", **kwargs)
    error.__cause__ = exc
    return error


def _mcp_code_error(code: int, text: str, kwargs: dict[str, Any]) -> ToolError:
    detail = {"mcp_code": code}
    if code == -32000:  # CONNECTION_CLOSED
        return ToolConnectionError(text, retryable=True, detail=detail, **kwargs)
    if code == -32001:  # REQUEST_TIMEOUT
        return ToolTimeoutError(text, retryable=True, detail=detail, **kwargs)
    if code in (-32600, -32601, -32602, -32700):  # invalid request/method/params, parse error
        return ToolClientError(text, detail=detail, **kwargs)
    return ToolServerError(text, retryable=True, detail=detail, **kwargs)
