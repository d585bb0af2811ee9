"""What ``ToolNode`` needs from a source's session (MCP, UTCP, A2A), and which one to open."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from ._config import ExternalToolConfig, ResolvedConfig, TransportType
from ._specs import CallFn, Remote

__all__ = ["Session", "import_sdk", "open_session"]


class Session(Protocol):
    """One connected source: its catalog entries and one attempt of a call.

    ``send`` runs one attempt in the caller's task under the source's ``timeout_s`` and raises
    ``ToolError``s (cancellation untouched); the node owns validation, limits and retries.
    """

    dead: bool
    """Set when the session was seen lost (the next call reconnects)."""

    @property
    def target(self) -> str:
        """The command line or URL as configured (``${VAR}`` unsubstituted: no secrets)."""
        ...

    @property
    def usable(self) -> bool:
        """Whether a call may be sent now."""
        ...

    async def start(self) -> None:
        """Connect and discover (bounded by ``connect_timeout_s``)."""
        ...

    async def close(self) -> None:
        """End the session and await what it started (idempotent)."""
        ...

    async def remotes(self, call: CallFn, *, reload: bool) -> list[Remote]:
        """The catalog entries kept by ``tool_filter`` (``reload``: list the source again)."""
        ...

    async def send(
        self, remote: Remote, payload: dict[str, Any], headers: Mapping[str, str]
    ) -> Any:
        """One attempt of a call with this call's credentials; the remote value."""
        ...


def import_sdk(config: ExternalToolConfig) -> None:
    """Import the SDK of the config's transport, else ``ImportError`` with the pip line."""
    if config.transport is TransportType.UTCP:
        from ._utcp import import_utcp

        import_utcp()
    elif config.transport is TransportType.A2A:
        try:
            import a2a  # noqa: F401  # pyright: ignore[reportUnusedImport]
        except ImportError as exc:  # pragma: no cover - the workspace installs it
            raise ImportError(
                'A2A sources need the a2a-sdk: pip install "penguiflow-tools[a2a]"'
            ) from exc
    else:
        from ._mcp import import_mcp

        import_mcp()


def open_session(config: ExternalToolConfig, resolved: ResolvedConfig) -> Session:
    """A new (not yet started) session for the config's transport."""
    if config.transport is TransportType.UTCP:
        from ._utcp import UtcpSession

        return UtcpSession(config, resolved)
    if config.transport is TransportType.A2A:
        from ._a2a_source import A2ASession

        return A2ASession(config, resolved)
    from ._mcp import McpSession

    return McpSession(config, resolved)
