"""UTCP sources: a UTCP manual or an OpenAPI document (converted by utcp-http) as tools.

``utcp`` and ``utcp-http`` are imported on first use, never by ``import penguiflow.tools``;
their import-time ``logging.basicConfig(level=INFO)`` is undone (the root logger's handlers and
level are restored). A call runs ``UtcpClient.call_tool`` in the caller's task; ``${NAME}`` in
the manual's call templates resolve per call through a context-bound ``VariableLoader``: the
call's ``AUTH_TOKEN`` (bearer, OAuth user token) or ``API_KEY``, then the config's
``variables``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from contextvars import ContextVar
from functools import cache
from typing import Any, cast

import anyio

from ._config import AuthType, ExternalToolConfig, ResolvedConfig
from ._errors import (
    ToolConfigError,
    ToolConnectionError,
    ToolError,
    ToolTimeoutError,
    adapt_exception,
)
from ._specs import CallFn, Remote, make_remote

__all__ = ["UtcpSession", "auth_variables", "import_utcp", "utcp_remotes", "utcp_send"]

_CALL_VARIABLES: ContextVar[Mapping[str, str] | None] = ContextVar(
    "penguiflow_tools_utcp_variables", default=None
)
"""The credentials of the call running in this context (``AUTH_TOKEN`` / ``API_KEY``)."""


def import_utcp() -> None:
    """Import utcp and utcp-http (root logger restored), else ``ImportError`` with the pip line."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        import utcp  # noqa: F401  # pyright: ignore[reportUnusedImport, reportMissingTypeStubs]
        import utcp_http.http_communication_protocol  # noqa: F401  # pyright: ignore[reportUnusedImport, reportMissingTypeStubs]
    except ImportError as exc:  # pragma: no cover - the workspace installs them
        raise ImportError(
            'UTCP sources need utcp and utcp-http: pip install "penguiflow-tools[utcp]"'
        ) from exc
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


@cache
def _loader_class() -> type[Any]:
    """A ``VariableLoader`` answering from the call's context, then the config's variables."""
    from utcp.data.variable_loader import VariableLoader  # pyright: ignore[reportMissingTypeStubs]

    class ContextVariableLoader(VariableLoader):
        variable_loader_type: str = "penguiflow_tools_context"
        prefix: str
        static: dict[str, str] = {}

        def get(self, key: str) -> str | None:
            if not key.startswith(self.prefix):
                return None
            name = key[len(self.prefix) :]
            per_call = _CALL_VARIABLES.get() or {}
            if name in per_call:
                return per_call[name]
            return self.static.get(name)

    return ContextVariableLoader


def auth_variables(auth_type: AuthType, headers: Mapping[str, str]) -> dict[str, str]:
    """The UTCP variables of a call's credentials (the headers ``ToolNode`` resolved for it).

    A bearer token (BEARER, an OAuth user token, a discovery token) → ``AUTH_TOKEN``; an API
    key → ``API_KEY``.
    """
    if auth_type is AuthType.API_KEY:
        return {"API_KEY": next(iter(headers.values()))} if headers else {}
    bearer = headers.get("Authorization", "")
    return {"AUTH_TOKEN": bearer.removeprefix("Bearer ")} if bearer.startswith("Bearer ") else {}


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else text


class UtcpSession:
    """A ``UtcpClient`` with the source's manual registered under the sanitized config name."""

    def __init__(self, config: ExternalToolConfig, resolved: ResolvedConfig) -> None:
        self._config = config
        self._resolved = resolved
        self.manual = re.sub(r"[^\w]", "_", config.name)
        """The name the manual is registered under (utcp prefixes its tools with it)."""
        self.client: Any = None
        self.tools: list[Any] = []
        """The manual's tools as utcp ``Tool``s (names carry the ``{manual}.`` prefix)."""
        self.dead = False

    @property
    def target(self) -> str:
        """The URL as configured (``${VAR}`` unsubstituted: no secrets)."""
        connection = self._config.connection
        return connection if isinstance(connection, str) else " ".join(connection)

    @property
    def usable(self) -> bool:
        """Whether a call may be sent (UTCP over HTTP holds no connection between calls)."""
        return self.client is not None and not self.dead

    async def start(self) -> None:
        """Create the client and load the manual (``ToolConnectionError`` if it has no tools)."""
        from utcp.data.utcp_client_config import (  # pyright: ignore[reportMissingTypeStubs]
            UtcpClientConfig,
        )
        from utcp.utcp_client import UtcpClient  # pyright: ignore[reportMissingTypeStubs]

        loader = _loader_class()(
            prefix=self.manual.replace("_", "__") + "_", static=dict(self._resolved.variables)
        )
        config: Any = UtcpClientConfig(load_variables_from=[loader])
        with anyio.fail_after(self._config.connect_timeout_s):
            self.client = await UtcpClient.create(config=config)
            await self.discover()

    async def discover(self) -> list[Any]:
        """(Re)load the manual; its tools (the config's headers added to their templates)."""
        from utcp_http.http_call_template import (  # pyright: ignore[reportMissingTypeStubs]
            HttpCallTemplate,
        )

        client: Any = self.client
        headers = dict(self._resolved.headers)
        template: Any = HttpCallTemplate(
            name=self.manual, url=self._resolved.url, http_method="GET", headers=headers or None
        )
        variables = auth_variables(self._config.auth_type, self._resolved.auth_headers)
        reset = _CALL_VARIABLES.set(variables)
        try:
            if await client.config.tool_repository.get_manual(self.manual) is not None:
                await client.deregister_manual(self.manual)
            result: Any = await client.register_manual(template)
        finally:
            _CALL_VARIABLES.reset(reset)
        if not result.success:
            detail = _last_line(str(result.errors[0])) if result.errors else "no detail"
            raise ToolConnectionError(
                f"cannot load the UTCP manual of source {self._config.name!r} ({self.target}): "
                + detail.replace(self._resolved.url, self.target),
                source=self._config.name,
                retryable=True,
                detail={"sent": False},
            )
        tools: list[Any] = list(result.manual.tools)
        if not tools:
            raise ToolConnectionError(
                f"the UTCP manual of source {self._config.name!r} ({self.target}) has no tools",
                source=self._config.name,
                detail={"sent": False},
            )
        if headers:
            for tool in tools:
                call_template: Any = tool.tool_call_template
                if isinstance(call_template, HttpCallTemplate):
                    call_template.headers = {**headers, **(call_template.headers or {})}
            await client.config.tool_repository.save_manual(
                result.manual_call_template, result.manual
            )
        self.tools = tools
        return tools

    async def remotes(self, call: CallFn, *, reload: bool) -> list[Remote]:
        """The manual's tools kept by ``tool_filter`` (``reload``: load the manual again)."""
        if reload:
            with anyio.fail_after(self._config.connect_timeout_s):
                await self.discover()
        return utcp_remotes(self._config, self, call)

    async def send(
        self, remote: Remote, payload: dict[str, Any], headers: Mapping[str, str]
    ) -> Any:
        """One attempt of a call (``utcp_send``)."""
        return await utcp_send(self, remote, payload, headers, self._config)

    def remote_name(self, tool: Any) -> str:
        """The tool's name without utcp's ``{manual}.`` prefix."""
        return str(tool.name).removeprefix(f"{self.manual}.")

    def _query_safe(self, remote: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Booleans bound for the query string as ``"true"``/``"false"``.

        utcp-http passes the arguments left after path, header and body fields to aiohttp as
        query parameters, and aiohttp refuses ``bool`` values (a ``TypeError``).
        """
        template: Any = next(
            (t.tool_call_template for t in self.tools if self.remote_name(t) == remote), None
        )
        kept: set[str] = (
            {str(template.body_field)} if getattr(template, "body_field", None) else set()
        )
        kept |= {str(h) for h in cast(list[Any], getattr(template, "header_fields", None) or [])}
        return {
            k: (("true" if v else "false") if isinstance(v, bool) and k not in kept else v)
            for k, v in payload.items()
        }

    async def call(self, remote: str, payload: dict[str, Any], variables: Mapping[str, str]) -> Any:
        """``UtcpClient.call_tool`` with this call's credentials bound to the context."""
        reset = _CALL_VARIABLES.set(dict(variables))
        try:
            return await self.client.call_tool(
                f"{self.manual}.{remote}", self._query_safe(remote, payload)
            )
        finally:
            _CALL_VARIABLES.reset(reset)

    async def close(self) -> None:
        """Close the client (the protocols it created)."""
        client, self.client = self.client, None
        self.dead = True
        if client is not None:
            with anyio.CancelScope(shield=True):
                try:
                    await client.close()
                except Exception:  # nothing is left to tell: the session is gone either way
                    logging.getLogger(__name__).debug(
                        "closing the UTCP client failed", exc_info=True
                    )


def utcp_remotes(config: ExternalToolConfig, session: UtcpSession, call: CallFn) -> list[Remote]:
    """The catalog entries of the manual's tools kept by ``tool_filter``.

    Names are ``{config.name}.{remote}`` (utcp's own ``{manual}.`` prefix removed), side effects
    ``"external"``, idempotent exactly for ``GET`` tools.
    """
    remotes: list[Remote] = []
    for tool in session.tools:
        remote = session.remote_name(tool)
        if not config.keeps(remote):
            continue
        template: Any = tool.tool_call_template
        method: Any = getattr(template, "http_method", None)
        inputs: dict[str, Any] = tool.inputs.model_dump(
            mode="json", by_alias=True, exclude_none=True
        )
        outputs: dict[str, Any] = tool.outputs.model_dump(
            mode="json", by_alias=True, exclude_none=True
        )
        remotes.append(
            make_remote(
                config,
                call,
                remote,
                str(tool.description or ""),
                inputs,
                outputs or None,
                {},
                [t for t in cast(list[Any], tool.tags or []) if isinstance(t, str)],
                source="utcp",
                idempotent=method == "GET",
            )
        )
    return remotes


def _status_of(exc: BaseException) -> tuple[int | None, float | None]:
    """The HTTP status and ``Retry-After`` of an ``aiohttp.ClientResponseError``."""
    status: Any = getattr(exc, "status", None)
    if not isinstance(status, int) or status < 400:
        return None, None
    headers: Any = getattr(exc, "headers", None)
    value: Any = headers.get("Retry-After") if headers is not None else None
    try:
        return status, float(value) if value is not None else None
    except (TypeError, ValueError):
        return status, None


def _not_sent(exc: BaseException) -> bool:
    """Whether the request never left (aiohttp could not connect)."""
    import sys

    aiohttp: Any = sys.modules.get("aiohttp")
    cls: Any = getattr(aiohttp, "ClientConnectorError", None) if aiohttp is not None else None
    return isinstance(cls, type) and isinstance(exc, cls)


async def utcp_send(
    session: UtcpSession,
    remote: Remote,
    payload: dict[str, Any],
    headers: Mapping[str, str],
    config: ExternalToolConfig,
) -> Any:
    """One attempt of a UTCP tool call under ``timeout_s``; failures as ``ToolError``s."""
    from utcp.exceptions import UtcpVariableNotFound  # pyright: ignore[reportMissingTypeStubs]

    source, tool = config.name, remote.spec.name
    try:
        with anyio.fail_after(config.timeout_s):
            return await session.call(
                remote.remote, payload, auth_variables(config.auth_type, headers)
            )
    except anyio.get_cancelled_exc_class():
        raise
    except TimeoutError as exc:
        raise ToolTimeoutError(
            f"{tool} took longer than timeout_s={config.timeout_s}",
            source=source,
            tool=tool,
            retryable=True,
            timeout_s=config.timeout_s,
        ) from exc
    except UtcpVariableNotFound as exc:
        name: Any = getattr(exc, "variable_name", None) or str(exc)
        raise ToolConfigError(
            f"UTCP variable {name} of {tool} is not set; add it to the config's variables",
            source=source,
            tool=tool,
        ) from exc
    except Exception as exc:
        status, retry_after = _status_of(exc)
        error: ToolError = adapt_exception(
            exc, source=source, tool=tool, http_status=status, retry_after_s=retry_after
        )
        if _not_sent(exc):
            error.detail = {**error.detail, "sent": False}
        raise error from exc
