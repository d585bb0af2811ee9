"""``ExternalToolConfig``: one remote source, checked at construction, resolved at connect."""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, ClassVar, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ._artifacts import ArtifactExtractionConfig
from ._errors import ToolConfigError

__all__ = [
    "AuthType",
    "CircuitBreakerPolicy",
    "ExternalToolConfig",
    "McpTransportMode",
    "ResolvedConfig",
    "RetryPolicy",
    "TransportType",
    "resolve",
    "static_auth_headers",
]


class TransportType(StrEnum):
    """The protocol a source speaks."""

    MCP = "mcp"
    """Model Context Protocol (stdio, streamable HTTP or SSE)."""
    UTCP = "utcp"
    """Universal Tool Calling Protocol: a UTCP manual or an OpenAPI document over HTTP."""
    A2A = "a2a"
    """Agent-to-agent protocol: each skill on the remote agent's card is a tool."""


class McpTransportMode(StrEnum):
    """How an MCP source is reached."""

    AUTO = "auto"
    """stdio for a command, SSE for a URL whose path ends in ``/sse``, else streamable HTTP."""
    STDIO = "stdio"
    """Spawn the command and speak over its stdin/stdout."""
    SSE = "sse"
    """The legacy HTTP+SSE transport."""
    STREAMABLE_HTTP = "streamable_http"
    """Streamable HTTP."""


class AuthType(StrEnum):
    """How calls to a source are authenticated."""

    NONE = "none"
    """No credentials."""
    API_KEY = "api_key"
    """``auth_config``: ``api_key``, ``header`` (default ``X-API-Key``)."""
    BEARER = "bearer"
    """``auth_config``: ``token`` → ``Authorization: Bearer …``."""
    OAUTH2_USER = "oauth2_user"
    """``auth_config``: ``provider``, ``scopes``, ``discovery_token`` (the calling user's token)."""


_AUTH_KEYS: dict[AuthType, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # (required, allowed)
    AuthType.NONE: ((), ()),
    AuthType.API_KEY: (("api_key",), ("api_key", "header")),
    AuthType.BEARER: (("token",), ("token",)),
    AuthType.OAUTH2_USER: (("provider",), ("provider", "scopes", "discovery_token")),
}


class RetryPolicy(BaseModel):
    """Status-aware retries of one call (checked per failed attempt).

    "Not processed" failures (429, 503, refused connections) are retried for every tool; 500,
    502, 504, read timeouts and connections lost mid-call only for idempotent tools or with
    ``retry_non_idempotent=True``. Tool-reported errors, other 4xx, auth, validation and
    cancellation are never retried.
    """

    model_config: ClassVar[ConfigDict] = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    max_attempts: int = Field(default=3, ge=1, le=10)
    """Attempts in all, the first included."""
    wait_exponential_min_s: float = Field(default=0.1, ge=0)
    """The first backoff."""
    wait_exponential_max_s: float = Field(default=5.0, ge=0)
    """The cap of the backoff (and of ``Retry-After``)."""
    retry_on_status: tuple[int, ...] = (429, 500, 502, 503, 504)
    """HTTP statuses that may be retried."""
    respect_retry_after: bool = True
    """Whether a ``Retry-After`` header replaces the backoff."""
    retry_non_idempotent: bool = False
    """Retry ambiguous failures even of tools that are not idempotent."""

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        if self.wait_exponential_max_s < self.wait_exponential_min_s:
            raise ValueError("RetryPolicy.wait_exponential_max_s must be >= wait_exponential_min_s")
        return self


class CircuitBreakerPolicy(BaseModel):
    """When a failing source stops being contacted (checked before each call)."""

    model_config: ClassVar[ConfigDict] = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    failure_threshold: int = Field(default=5, ge=1)
    """Consecutive failed calls (connection, timeout, server, rate limit) that open it."""
    reset_timeout_s: float = Field(default=30.0, gt=0)
    """How long it stays open before one trial call."""


_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,47}$")
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")
_SUBSTITUTED = ("connection", "env", "cwd", "headers", "auth_config", "variables")


def _check_template(text: str, where: str) -> None:
    rest = _VAR.sub("", text)
    if "${" in rest or re.search(r"\$\{[^}]*$", text):
        raise ValueError(
            f"{where}: malformed variable in {text!r}; write ${{NAME}}, ${{NAME:-default}} "
            "or $$ for a literal $"
        )


def _substitute(text: str, where: str) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        value = os.environ.get(name)
        if value is not None:
            return value
        if default is not None:
            return default
        raise ToolConfigError(
            f"${{{name}}} in {where} is not set; export it or write ${{{name}:-…}}"
        )

    return _VAR.sub(replace, text)


def _strings(value: Any, where: str) -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(value, where)]
    if isinstance(value, Mapping):
        found: list[tuple[str, str]] = []
        for key, item in value.items():  # pyright: ignore[reportUnknownVariableType]
            found += _strings(item, f"{where}.{key}")
        return found
    if isinstance(value, list | tuple):
        found = []
        for index, item in enumerate(value):  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType]
            found += _strings(item, f"{where}[{index}]")
        return found
    return []


def _resolve_value(value: Any, where: str) -> Any:
    if isinstance(value, str):
        return _substitute(value, where)
    if isinstance(value, Mapping):
        return {
            k: _resolve_value(v, f"{where}.{k}")
            for k, v in value.items()  # pyright: ignore[reportUnknownVariableType]
        }
    if isinstance(value, list | tuple):
        return [_resolve_value(v, f"{where}[{i}]") for i, v in enumerate(value)]  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType]
    return value


class ExternalToolConfig(BaseModel):
    """One remote tool source (frozen; every check runs at construction).

    ``${VAR}``, ``${VAR:-default}`` and ``$$`` in ``connection``, ``env``, ``cwd``,
    ``headers``, ``auth_config`` and ``variables`` are substituted when the node connects;
    ``repr()`` never shows ``env``, ``headers`` or ``auth_config`` values.

    Raises:
        pydantic.ValidationError: A field is out of range or malformed (the message names it).
    """

    model_config: ClassVar[ConfigDict] = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    name: str
    """The namespace: ``^[A-Za-z][A-Za-z0-9_-]{0,47}$``; spec names are ``{name}.{remote}``."""
    transport: TransportType
    """The protocol of the source."""
    connection: str | tuple[str, ...] | list[str]
    """MCP: a command line (``shlex``-split) or argv list → stdio, or an ``http(s)://`` URL;
    UTCP: the URL of a UTCP manual or an OpenAPI document; A2A: the agent's base URL."""
    mcp_transport_mode: McpTransportMode = McpTransportMode.AUTO
    """How an MCP source is reached."""
    mcp_mode: str = "auto"
    """``mcp.Client(mode=…)``: ``"auto"`` (discover, fall back to initialize) or ``"legacy"``."""
    description: str = ""
    """What the source offers (for people)."""
    env: dict[str, str] = Field(default_factory=dict[str, str], repr=False)
    """Environment of a stdio server, merged over the SDK's safe default."""
    cwd: str | None = None
    """Working directory of a stdio server."""
    headers: dict[str, str] = Field(default_factory=dict[str, str], repr=False)
    """Extra HTTP headers."""
    variables: dict[str, str] = Field(default_factory=dict[str, str], repr=False)
    """UTCP variables: ``${NAME}`` in the manual's call templates (per tool call)."""
    auth_type: AuthType = AuthType.NONE
    """How calls are authenticated."""
    auth_config: dict[str, Any] = Field(default_factory=dict[str, Any], repr=False)
    """The settings of ``auth_type`` (keys checked per type)."""
    timeout_s: float = Field(default=30.0, gt=0, le=3600)
    """Limit of one attempt of a call."""
    connect_timeout_s: float = Field(default=10.0, gt=0, le=3600)
    """Limit of spawn + handshake + discovery."""
    retry_policy: RetryPolicy = Field(default_factory=RetryPolicy)
    """Retries of one call."""
    circuit_breaker: CircuitBreakerPolicy | None = Field(default_factory=CircuitBreakerPolicy)
    """The source's breaker; None disables it."""
    max_concurrency: int = Field(default=10, ge=1, le=1000)
    """Calls in flight to this source at once, all tools together."""
    tool_filter: tuple[str, ...] | None = None
    """Regexes; a remote tool is kept when one ``re.fullmatch``-es its name."""
    expose_resources: bool = True
    """MCP resources as tools, when the server advertises them."""
    expose_prompts: bool = True
    """MCP prompts as tools, when the server advertises them."""
    artifact_extraction: ArtifactExtractionConfig = Field(default_factory=ArtifactExtractionConfig)
    """Which large or binary parts of results are stored as artifacts."""

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                f"name {value!r} must match ^[A-Za-z][A-Za-z0-9_-]{{0,47}}$ (a letter, then "
                "up to 47 letters, digits, _ or -)"
            )
        return value

    @field_validator("connection", mode="before")
    @classmethod
    def _check_connection(cls, value: Any) -> Any:
        if isinstance(value, list):
            value = tuple(value)  # pyright: ignore[reportUnknownArgumentType, reportUnknownVariableType]
        if isinstance(value, str) and not value.strip() or value == ():
            raise ValueError("connection is empty; give a command line, an argv list or a URL")
        if isinstance(value, tuple) and not all(isinstance(a, str) and a for a in value):  # pyright: ignore[reportUnknownVariableType]
            raise ValueError("connection argv entries must be non-empty strings")
        return value  # pyright: ignore[reportUnknownVariableType]

    @field_validator("mcp_mode")
    @classmethod
    def _check_mcp_mode(cls, value: str) -> str:
        if value not in ("auto", "legacy"):
            raise ValueError(f"mcp_mode must be 'auto' or 'legacy', got {value!r}")
        return value

    @field_validator("tool_filter", mode="before")
    @classmethod
    def _check_filter(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, str):
            value = (value,)
        patterns = tuple(value)
        for pattern in patterns:
            try:
                re.compile(pattern)
            except (re.error, TypeError) as exc:
                raise ValueError(f"tool_filter pattern {pattern!r} is not a regex: {exc}") from exc
        return patterns

    @model_validator(mode="after")
    def _check_whole(self) -> Self:
        for field in _SUBSTITUTED:
            for text, where in _strings(getattr(self, field), field):
                _check_template(text, where)
        if self.transport is not TransportType.MCP:
            url = self.connection if isinstance(self.connection, str) else ""
            if urlsplit(url).scheme not in ("http", "https"):
                raise ValueError(
                    f"connection of a {self.transport.value} source must be an http(s):// URL, "
                    f"got {self.connection!r}"
                )
        elif self.mcp_transport_mode in (McpTransportMode.SSE, McpTransportMode.STREAMABLE_HTTP):
            if not self.is_url:
                raise ValueError(
                    f"mcp_transport_mode={self.mcp_transport_mode.value} needs an http(s):// "
                    f"connection, got {self.connection!r}"
                )
        elif self.mcp_transport_mode is McpTransportMode.STDIO and self.is_url:
            raise ValueError("mcp_transport_mode=stdio needs a command, not a URL")
        required, allowed = _AUTH_KEYS[self.auth_type]
        unknown = sorted(set(self.auth_config) - set(allowed))
        if unknown:
            raise ValueError(
                f"auth_config keys {unknown} are not used by auth_type={self.auth_type.value}; "
                f"allowed: {list(allowed)}"
            )
        missing = [key for key in required if not self.auth_config.get(key)]
        if missing:
            raise ValueError(f"auth_type={self.auth_type.value} needs auth_config[{missing[0]!r}]")
        return self

    @property
    def is_url(self) -> bool:
        """Whether ``connection`` is an ``http(s)://`` URL."""
        return isinstance(self.connection, str) and urlsplit(self.connection.strip()).scheme in (
            "http",
            "https",
        )

    @property
    def effective_mcp_mode(self) -> McpTransportMode:
        """The MCP transport ``AUTO`` stands for with this ``connection``."""
        if self.mcp_transport_mode is not McpTransportMode.AUTO:
            return self.mcp_transport_mode
        if not self.is_url:
            return McpTransportMode.STDIO
        assert isinstance(self.connection, str)
        path = urlsplit(self.connection).path.rstrip("/")
        return McpTransportMode.SSE if path.endswith("/sse") else McpTransportMode.STREAMABLE_HTTP

    def keeps(self, remote_name: str) -> bool:
        """Whether ``tool_filter`` keeps the remote tool named ``remote_name``."""
        if self.tool_filter is None:
            return True
        return any(re.fullmatch(pattern, remote_name) for pattern in self.tool_filter)


class ResolvedConfig(BaseModel):
    """The substituted settings a connector uses (never logged, never in errors)."""

    model_config: ClassVar[ConfigDict] = ConfigDict(frozen=True, defer_build=True)

    argv: tuple[str, ...] = Field(default=(), repr=False)
    url: str = Field(default="", repr=False)
    env: dict[str, str] = Field(default_factory=dict[str, str], repr=False)
    cwd: str | None = None
    headers: dict[str, str] = Field(default_factory=dict[str, str], repr=False)
    auth_config: dict[str, Any] = Field(default_factory=dict[str, Any], repr=False)
    variables: dict[str, str] = Field(default_factory=dict[str, str], repr=False)
    """UTCP variables, substituted."""
    auth_headers: dict[str, str] = Field(default_factory=dict[str, str], repr=False)
    """Credentials of requests no call stands for (handshake, listing, the session's GET)."""

    def __repr__(self) -> str:
        return "ResolvedConfig(<substituted values hidden>)"


def resolve(config: ExternalToolConfig) -> ResolvedConfig:
    """Substitute ``${VAR}`` everywhere (``ToolConfigError`` naming the first unset one)."""
    connection = _resolve_value(config.connection, "connection")
    argv: tuple[str, ...] = ()
    url = ""
    if config.is_url:
        url = str(connection).strip()
    elif isinstance(connection, str):
        argv = tuple(shlex.split(connection))
    else:
        argv = tuple(str(a) for a in connection)
    headers: dict[str, str] = _resolve_value(config.headers, "headers")
    auth: dict[str, Any] = _resolve_value(config.auth_config, "auth_config")
    auth_headers = static_auth_headers(config.auth_type, auth)
    cwd = _resolve_value(config.cwd, "cwd") if config.cwd is not None else None
    variables: dict[str, str] = _resolve_value(config.variables, "variables")
    return ResolvedConfig(
        argv=argv,
        url=url,
        env=_resolve_value(config.env, "env"),
        cwd=cwd,
        headers=headers,
        auth_config=auth,
        variables=variables,
        auth_headers=auth_headers,
    )


def static_auth_headers(auth_type: AuthType, auth: Mapping[str, Any]) -> dict[str, str]:
    """The headers of the source's own credentials (``auth_config`` already substituted).

    API_KEY → ``{header: api_key}``, BEARER → ``Authorization: Bearer token``, OAUTH2_USER →
    the ``discovery_token`` as a bearer (listing), or nothing.
    """
    if auth_type is AuthType.BEARER:
        return {"Authorization": f"Bearer {auth['token']}"}
    if auth_type is AuthType.API_KEY:
        return {str(auth.get("header") or "X-API-Key"): str(auth["api_key"])}
    if auth_type is AuthType.OAUTH2_USER and auth.get("discovery_token"):
        return {"Authorization": f"Bearer {auth['discovery_token']}"}
    return {}
