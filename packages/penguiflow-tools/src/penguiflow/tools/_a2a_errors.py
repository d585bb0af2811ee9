"""The §6 errors the A2A connector raises (stand-in until merged with the errors module).

Same names, tree and attributes as the spec's ``penguiflow.tools`` errors; at merge these
classes are replaced by imports from the shared errors module::

    ToolError                 .source .tool .status_code .retryable .retry_after_s .attempts .detail
    ├── ToolAuthError         A2A auth-required
    ├── ToolTimeoutError      the call exceeded its timeout (.timeout_s)
    ├── ToolConnectionError   agent card or endpoint unreachable
    ├── ToolClientError       A2A rejected / input-required
    └── ToolServerError       A2A task failed (or ended without a final state)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from penguiflow.core import PenguiFlowError

__all__ = [
    "ToolAuthError",
    "ToolClientError",
    "ToolConnectionError",
    "ToolError",
    "ToolServerError",
    "ToolTimeoutError",
]


class ToolError(PenguiFlowError):
    """Root of the tool errors: a remote tool or agent call failed."""

    retryable_kind: bool = False

    def __init__(
        self,
        message: str,
        *,
        source: str,
        tool: str | None = None,
        status_code: int | None = None,
        retry_after_s: float | None = None,
        attempts: int = 1,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message: str = message
        """What went wrong."""
        self.source: str = source
        """``"mcp"``, ``"utcp"`` or ``"a2a"``."""
        self.tool: str | None = tool
        """The tool (or agent URL) called."""
        self.status_code: int | None = status_code
        """The HTTP status, when one was read."""
        self.retryable: bool = self.retryable_kind
        """Whether this kind of failure is retried."""
        self.retry_after_s: float | None = retry_after_s
        """The server's ``Retry-After``, if any."""
        self.attempts: int = attempts
        """Attempts made (1 when not retried)."""
        self.detail: dict[str, Any] = dict(detail or {})
        """Extra JSON-safe facts (A2A: ``state``, ``task_id``)."""

    def to_payload(self) -> dict[str, Any]:
        """A JSON-safe description of the error."""
        return {
            "type": type(self).__name__,
            "message": self.message,
            "source": self.source,
            "tool": self.tool,
            "status_code": self.status_code,
            "retryable": self.retryable,
            "retry_after_s": self.retry_after_s,
            "attempts": self.attempts,
            "detail": dict(self.detail),
        }


class ToolAuthError(ToolError):
    """The remote side needs (other) credentials."""


class ToolTimeoutError(ToolError):
    """The call exceeded its timeout."""

    retryable_kind = True

    def __init__(self, message: str, *, source: str, timeout_s: float, **kwargs: Any) -> None:
        super().__init__(message, source=source, **kwargs)
        self.timeout_s: float = timeout_s
        """The timeout that was exceeded."""


class ToolConnectionError(ToolError):
    """The remote side could not be reached."""

    retryable_kind = True


class ToolClientError(ToolError):
    """The remote side refused the request or needs more input."""


class ToolServerError(ToolError):
    """The remote side failed while working on the request."""

    retryable_kind = True
