"""One MCP session held by its own task, so that connect and close may run in any tasks.

Entering and exiting the SDK's context managers in different tasks raises "Attempted to exit
cancel scope in a different task"; here one runner task enters ``mcp.Client`` and exits it
when told to stop. Calls are sent from the callers' tasks (cancelling a caller cancels its
request and the SDK notifies the server).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Mapping
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any, cast

import anyio

from ._config import ExternalToolConfig, McpTransportMode, ResolvedConfig
from ._errors import (
    ToolClientError,
    ToolConnectionError,
    ToolTimeoutError,
    adapt_exception,
)
from ._results import builtin_call, json_content, text_of, value_of
from ._specs import CallFn, Remote, builtin_remotes, tool_remote

if TYPE_CHECKING:
    import httpx2
    import mcp

__all__ = ["CALL_META_KEY", "McpSession", "import_mcp"]

CALL_META_KEY = "penguiflow.tools/call"
"""The ``_meta`` key that ties an HTTP response (and its status) to one call."""


def import_mcp() -> None:
    """Import the SDK or raise ``ImportError`` with the install line."""
    try:
        import mcp  # noqa: F401  # pyright: ignore[reportUnusedImport]
    except ImportError as exc:  # pragma: no cover - the workspace installs it
        raise ImportError(
            'MCP sources need the mcp SDK: pip install "penguiflow-tools[mcp]"'
        ) from exc


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _call_token(request: httpx2.Request) -> str | None:
    """The call token in a JSON-RPC request's ``params._meta``, if any."""
    try:
        body = json.loads(request.content)
    except Exception:
        return None
    if not isinstance(body, dict):
        return None
    params: Any = cast(dict[str, Any], body).get("params")
    meta: Any = cast(dict[str, Any], params).get("_meta") if isinstance(params, dict) else None
    token: Any = cast(dict[str, Any], meta).get(CALL_META_KEY) if isinstance(meta, dict) else None
    return token if isinstance(token, str) else None


class McpSession:
    """A connected ``mcp.Client`` owned by a runner task."""

    def __init__(self, config: ExternalToolConfig, resolved: ResolvedConfig) -> None:
        self._config = config
        self._resolved = resolved
        self._ready = anyio.Event()
        self._stop = anyio.Event()
        self._scope = anyio.CancelScope()
        self._task: asyncio.Task[None] | None = None
        self._error: BaseException | None = None
        self.client: mcp.Client | None = None
        self.dead = False
        self.statuses: dict[str, tuple[int, float | None]] = {}
        """HTTP status (and Retry-After) of a failed response, by call token."""
        self.call_headers: dict[str, dict[str, str]] = {}
        """Credentials of one call, by call token (set by the caller, applied per request)."""

    @property
    def target(self) -> str:
        """The command line or URL as configured (``${VAR}`` unsubstituted: no secrets)."""
        connection = self._config.connection
        return connection if isinstance(connection, str) else " ".join(connection)

    @property
    def usable(self) -> bool:
        """Whether a call may be sent: connected and the transport not seen closed.

        A stdio server that exits while no call is pending is noticed here, before a send,
        so the next call reconnects instead of failing (the SDK has no public "closed" flag;
        without the private one this degrades to noticing on the failed call).
        """
        client = self.client
        if self.dead or client is None:
            return False
        session: Any = getattr(client, "_session", None)
        dispatcher: Any = getattr(session, "_dispatcher", None)
        return not bool(getattr(dispatcher, "_closed", False))

    async def start(self) -> None:
        """Spawn/connect and hand-shake; raise what the runner met (timeout included)."""
        self._task = asyncio.get_running_loop().create_task(self._run())
        try:
            with anyio.fail_after(self._config.connect_timeout_s):
                await self._ready.wait()
        except BaseException:
            await self.close()
            raise
        if self._error is not None or self.client is None:
            error = self._error or RuntimeError("the MCP session ended during connect")
            await self.close()
            raise error

    async def close(self) -> None:
        """End the session (terminating a stdio server) and await the runner."""
        self._stop.set()
        if self.client is None:
            self._scope.cancel()
        task = self._task
        if task is not None:
            with anyio.CancelScope(shield=True):
                await asyncio.wait([task])
        self.dead = True

    async def remotes(self, call: CallFn, *, reload: bool) -> list[Remote]:
        """The server's tools kept by ``tool_filter``, then its resource and prompt tools."""
        client = self.client
        if client is None:
            raise ToolConnectionError(
                "the MCP session is closed", source=self._config.name, detail={"sent": False}
            )
        with anyio.fail_after(self._config.connect_timeout_s):
            tools: list[Any] = []
            cursor: str | None = None
            while True:
                page = await client.list_tools(cursor=cursor)
                tools.extend(page.tools)
                cursor = page.next_cursor
                if not cursor:
                    break
        found = [tool_remote(self._config, t, call) for t in tools if self._config.keeps(t.name)]
        return found + builtin_remotes(self._config, client.server_capabilities, call)

    async def send(
        self, remote: Remote, payload: dict[str, Any], headers: Mapping[str, str]
    ) -> Any:
        """One attempt under ``timeout_s``; the call's headers tied to its requests by a token."""
        client = self.client
        token = uuid.uuid4().hex
        source, tool = self._config.name, remote.spec.name
        if headers:
            self.call_headers[token] = dict(headers)
        try:
            if client is None:
                raise ToolConnectionError("the MCP session is closed", source=source, tool=tool)
            meta: Any = {CALL_META_KEY: token}
            with anyio.fail_after(self._config.timeout_s):
                if remote.kind != "tool":
                    return await builtin_call(client, remote.kind, payload, meta)
                result = await client.call_tool(remote.remote, payload, meta=meta)
        except anyio.get_cancelled_exc_class():
            raise
        except TimeoutError as exc:
            raise ToolTimeoutError(
                f"{tool} took longer than timeout_s={self._config.timeout_s}",
                source=source,
                tool=tool,
                retryable=True,
                timeout_s=self._config.timeout_s,
            ) from exc
        except Exception as exc:
            status, retry_after = self.statuses.pop(token, (None, None))
            error = adapt_exception(
                exc, source=source, tool=tool, http_status=status, retry_after_s=retry_after
            )
            if isinstance(error, ToolConnectionError) or status == 404:
                self.dead = True
                if status == 404:
                    error = ToolConnectionError(
                        f"MCP session of {source!r} is gone (HTTP 404)", source=source, tool=tool
                    )
                    error.__cause__ = exc
            raise error from exc
        finally:
            self.statuses.pop(token, None)
            self.call_headers.pop(token, None)
        if result.is_error:
            raise ToolClientError(
                text_of(result.content) or f"{tool} reported an error",
                source=source,
                tool=tool,
                detail={"content": json_content(result.content)},
            )
        return value_of(result)

    def _on_request(self, request: httpx2.Request) -> None:
        """Set the credentials of the call this request belongs to (else the source's own).

        Credentials are never the client's default headers: one session carries each
        caller's own token.
        """
        token = _call_token(request) if self.call_headers else None
        headers = self.call_headers.get(token) if token is not None else None
        if headers is None:
            headers = self._resolved.auth_headers
        for name, value in headers.items():
            request.headers[name] = value

    def _on_response(self, response: httpx2.Response) -> None:
        if response.status_code < 400:
            return
        token = _call_token(response.request)
        if token is not None:
            retry_after = _retry_after(response.headers.get("retry-after"))
            self.statuses[token] = (response.status_code, retry_after)

    def _new_http_client(
        self, headers: dict[str, str] | None = None, timeout: Any = None, auth: Any = None
    ) -> httpx2.AsyncClient:
        from mcp.shared._httpx_utils import create_mcp_http_client

        merged = {**self._resolved.headers, **(headers or {})}
        client = create_mcp_http_client(headers=merged or None, timeout=timeout, auth=auth)
        on_request, on_response = self._on_request, self._on_response

        async def request_hook(request: httpx2.Request) -> None:
            on_request(request)

        async def hook(response: httpx2.Response) -> None:
            on_response(response)

        client.event_hooks = {"request": [request_hook], "response": [hook]}
        return client

    async def _server(self, stack: AsyncExitStack) -> Any:
        from mcp.client.stdio import StdioServerParameters

        mode = self._config.effective_mcp_mode
        if mode is McpTransportMode.STDIO:
            argv = self._resolved.argv
            return StdioServerParameters(
                command=argv[0],
                args=list(argv[1:]),
                env=dict(self._resolved.env) or None,
                cwd=self._resolved.cwd,
            )
        if mode is McpTransportMode.SSE:
            from mcp.client.sse import sse_client

            return sse_client(self._resolved.url, httpx_client_factory=self._new_http_client)
        from mcp.client.streamable_http import streamable_http_client

        http = await stack.enter_async_context(self._new_http_client())
        return streamable_http_client(self._resolved.url, http_client=http)

    async def _run(self) -> None:
        import mcp

        try:
            with self._scope:
                async with AsyncExitStack() as stack:
                    server = await self._server(stack)
                    client = mcp.Client(server, mode=self._config.mcp_mode, cache=None)
                    await stack.enter_async_context(client)
                    self.client = client
                    self._ready.set()
                    await self._stop.wait()
        except BaseException as exc:  # handed to start(); a lost session is noticed by calls
            self._error = exc
            if not isinstance(exc, Exception):
                raise
        finally:
            self.dead = True
            self.client = None if not self._ready.is_set() else self.client
            self._ready.set()
