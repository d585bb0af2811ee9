"""``ToolNode``: one remote MCP or UTCP source as core ``NodeSpec``s, with one call path."""

from __future__ import annotations

import difflib
import uuid
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Self, cast

import anyio
from pydantic import BaseModel, ValidationError

from penguiflow.core import NodeSpec

from ._artifacts import ArtifactStore, InMemoryArtifactStore, extract_artifacts, scope_of
from ._auth import OAuthManager, ToolAuthRequired
from ._config import (
    AuthType,
    ExternalToolConfig,
    McpTransportMode,
    ResolvedConfig,
    TransportType,
    resolve,
    static_auth_headers,
)
from ._errors import (
    ToolArgumentsError,
    ToolAuthError,
    ToolClientError,
    ToolConfigError,
    ToolConnectionError,
    ToolError,
    ToolNotFoundError,
    ToolTimeoutError,
    adapt_exception,
)
from ._mcp import CALL_META_KEY, McpSession, import_mcp
from ._resilience import Breaker, backoff_s, should_retry
from ._results import builtin_call, json_content, text_of, value_of
from ._schema import dump_arguments
from ._specs import Remote, builtin_remotes, tool_remote
from ._types import ToolNodeStatistics, ToolResult
from ._utcp import UtcpSession, import_utcp, utcp_remotes, utcp_send

__all__ = ["ToolNode"]


class ToolNode:
    """One remote tool source: its tools as catalog entries, and the one way to call them.

    ``async with ToolNode(config) as node`` (or ``connect()`` / ``aclose()``, from any tasks)
    opens one session held by a task of the node; ``node.specs`` are core ``NodeSpec``s named
    ``{config.name}.{remote}``; ``await node.call(name, args)`` validates, limits, retries and
    translates errors. This release speaks MCP (stdio, streamable HTTP, SSE) and UTCP (a UTCP
    manual or an OpenAPI document over HTTP, via utcp-http).

    Credentials are set on each request of a call (never baked into the session):
    ``API_KEY``/``BEARER`` from ``auth_config``, ``OAUTH2_USER`` the calling user's token
    from ``oauth`` (an ``OAuthManager``), so one HTTP session carries every user's own token.
    Large or binary results are stored in ``artifacts`` (default ``InMemoryArtifactStore()``)
    and replaced by ``ArtifactRef``s.

    Raises:
        ValueError: The transport is not supported here; OAUTH2_USER without ``oauth=`` or
            over stdio/SSE.
        ImportError: The ``mcp`` or ``utcp`` extra is not installed (with the pip line).
    """

    def __init__(
        self,
        config: ExternalToolConfig,
        *,
        oauth: OAuthManager | None = None,
        artifacts: ArtifactStore | None = None,
    ) -> None:
        if config.transport not in (TransportType.MCP, TransportType.UTCP):
            raise ValueError(
                f"transport={config.transport.value} is not supported by this release of "
                "penguiflow-tools; use TransportType.MCP or TransportType.UTCP"
            )
        if config.auth_type is AuthType.OAUTH2_USER:
            if oauth is None:
                raise ValueError("auth_type=OAUTH2_USER needs ToolNode(..., oauth=OAuthManager)")
            if (
                config.transport is TransportType.MCP
                and config.effective_mcp_mode is not McpTransportMode.STREAMABLE_HTTP
            ):
                raise ValueError(
                    "auth_type=OAUTH2_USER needs per-call tokens: use streamable HTTP, not "
                    f"{config.effective_mcp_mode.value}"
                )
            oauth.provider(str(config.auth_config["provider"]))  # a ToolAuthError when unknown
        if config.transport is TransportType.UTCP:
            import_utcp()
        else:
            import_mcp()
        self._config = config
        self._oauth = oauth
        self._artifacts: ArtifactStore = artifacts or InMemoryArtifactStore()
        self._resolved: ResolvedConfig | None = None
        self._lock = anyio.Lock()
        self._session: McpSession | UtcpSession | None = None
        self._remotes: dict[str, Remote] = {}
        self._limiter = anyio.Semaphore(config.max_concurrency)
        self._breaker = Breaker(config.circuit_breaker, config.name)
        self._connected_once = False
        self._closed = False
        self._calls = self._failures = self._retries = 0
        self._in_flight = self._max_in_flight = self._reconnects = 0

    @property
    def config(self) -> ExternalToolConfig:
        """The source's configuration."""
        return self._config

    @property
    def artifacts(self) -> ArtifactStore:
        """Where large or binary results went (``await node.artifacts.get(id, scope=…)``)."""
        return self._artifacts

    @property
    def oauth(self) -> OAuthManager | None:
        """The ``OAuthManager`` of an OAUTH2_USER source, else None."""
        return self._oauth

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def connect(self) -> None:
        """Open the session and list the tools (idempotent; bounded by ``connect_timeout_s``).

        Raises:
            ToolConfigError: A ``${VAR}`` is unset (nothing is spawned), or two tools map to
                one spec name.
            ToolConnectionError: Spawn, connection or handshake failed or timed out.
        """
        async with self._lock:
            self._closed = False
            if self._session is not None and self._session.usable:
                return
            await self._open()

    async def _open(self) -> None:
        resolved = resolve(self._config)
        self._resolved = resolved
        if self._session is not None:
            await self._session.close()
            self._session = None
        session: McpSession | UtcpSession = (
            UtcpSession(self._config, resolved)
            if self._config.transport is TransportType.UTCP
            else McpSession(self._config, resolved)
        )
        kind = self._config.transport.value.upper()
        try:
            await session.start()
            self._remotes = await self._discover(session)
        except ToolError:
            await session.close()
            raise
        except TimeoutError as exc:
            await session.close()
            raise ToolConnectionError(
                f"{kind} source {self._config.name!r} ({session.target}) did not complete spawn, "
                "handshake and discovery within "
                f"connect_timeout_s={self._config.connect_timeout_s}",
                source=self._config.name,
                retryable=True,
                detail={"sent": False},
            ) from exc
        except Exception as exc:
            await session.close()
            raise ToolConnectionError(
                f"cannot connect to {kind} source {self._config.name!r} ({session.target}): "
                f"{type(exc).__name__}: {exc}",
                source=self._config.name,
                retryable=True,
                detail={"sent": False},
            ) from exc
        if self._connected_once:
            self._reconnects += 1
        self._connected_once = True
        self._session = session

    async def _discover(self, session: McpSession | UtcpSession) -> dict[str, Remote]:
        remotes: dict[str, Remote] = {}
        tools: list[Any] = []
        if isinstance(session, UtcpSession):
            if session is self._session:  # refresh(): load the manual again
                with anyio.fail_after(self._config.connect_timeout_s):
                    await session.discover()
        else:
            tools = await self._mcp_tools(session)
        try:
            if isinstance(session, UtcpSession):
                candidates = utcp_remotes(self._config, session, self._call)
            else:
                assert session.client is not None
                candidates = [
                    tool_remote(self._config, t, self._call)
                    for t in tools
                    if self._config.keeps(t.name)
                ]
                capabilities = session.client.server_capabilities
                candidates += builtin_remotes(self._config, capabilities, self._call)
        except ValueError as exc:  # NodeSpec refused a name (over 64 characters)
            raise ToolConfigError(
                f"source {self._config.name!r}: {exc}; shorten the config name or filter the "
                "tool out with tool_filter",
                source=self._config.name,
            ) from exc
        for remote in candidates:
            if remote.spec.name in remotes:
                raise ToolConfigError(
                    f"tools {remotes[remote.spec.name].remote!r} and {remote.remote!r} of "
                    f"source {self._config.name!r} both map to spec name {remote.spec.name!r}",
                    source=self._config.name,
                )
            remotes[remote.spec.name] = remote
        return remotes

    async def _mcp_tools(self, session: McpSession) -> list[Any]:
        client = session.client
        assert client is not None
        with anyio.fail_after(self._config.connect_timeout_s):
            tools: list[Any] = []
            cursor: str | None = None
            while True:
                page = await client.list_tools(cursor=cursor)
                tools.extend(page.tools)
                cursor = page.next_cursor
                if not cursor:
                    break
        return tools

    async def aclose(self) -> None:
        """End the session and terminate a stdio server (idempotent; any task may call it)."""
        async with self._lock:
            self._closed = True
            if self._session is not None:
                await self._session.close()
                self._session = None

    @property
    def specs(self) -> tuple[NodeSpec, ...]:
        """One ``NodeSpec`` per kept remote tool (``RuntimeError`` before ``connect()``)."""
        if not self._connected_once:
            raise RuntimeError(
                f"ToolNode {self._config.name!r} is not connected; await node.connect() or use "
                "'async with ToolNode(...)' before reading specs"
            )
        return tuple(r.spec for r in self._remotes.values())

    def get_tools(self) -> tuple[NodeSpec, ...]:
        """Alias of ``specs``."""
        return self.specs

    def spec(self, name: str) -> NodeSpec:
        """The spec of ``name`` (full or remote name); ``ToolNotFoundError`` otherwise."""
        return self._remote(name).spec

    async def refresh(self) -> tuple[NodeSpec, ...]:
        """List the remote tools again (e.g. after ``tools/list_changed``)."""
        async with self._lock:
            session = self._session
            if session is None or session.dead:
                await self._open()
            else:
                self._remotes = await self._discover(session)
        return self.specs

    def statistics(self) -> ToolNodeStatistics:
        """A frozen snapshot of the counters."""
        return ToolNodeStatistics(
            calls=self._calls,
            failures=self._failures,
            retries=self._retries,
            in_flight=self._in_flight,
            max_in_flight=self._max_in_flight,
            reconnects=self._reconnects,
            breaker=self._breaker.state,
        )

    def _remote(self, name: str) -> Remote:
        specs = self.specs
        remote = self._remotes.get(name) or self._remotes.get(f"{self._config.name}.{name}")
        if remote is None:
            names = [s.name for s in specs]
            close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {names}"
            raise ToolNotFoundError(
                f"no tool {name!r} on source {self._config.name!r}{hint}",
                source=self._config.name,
                tool=name,
            )
        return remote

    async def _call(self, name: str, args: Any, ctx: Any) -> ToolResult:
        return await self.call(name, args, ctx=ctx)

    async def call(self, name: str, args: Any, *, ctx: Any = None) -> ToolResult:
        """Call a remote tool: validate, breaker, a concurrency slot, attempts, retries.

        ``args`` is a mapping or an instance of the spec's ``args_model``; ``ctx`` is the
        planner's tool context or a ``ToolCallContext``: its ``tool_context`` user, tenant,
        session and trace pick the OAuth token and scope the artifacts; its ``pause`` asks for
        consent. Cancellation propagates untouched (the server is told to stop the request).

        Raises:
            ToolNotFoundError: No such tool.
            ToolArgumentsError: ``args`` fail the args model (nothing sent).
            ToolAuthError: OAUTH2_USER without ``tool_context["user_id"]``.
            ToolAuthRequired: The user has no token and ``ctx`` cannot pause (nothing sent).
            ToolError: The call failed; ``attempts`` says how many attempts were made.
        """
        remote = self._remote(name)
        payload = self._validate(remote, args)
        self._calls += 1
        trial = False
        try:
            trial = self._breaker.before_call(remote.spec.name)
            result = await self._authorized(remote, payload, ctx)
        except ToolError as error:
            self._failures += 1
            self._breaker.record(error, trial=trial)
            raise
        except BaseException:
            if trial:
                self._breaker.release_trial()
            raise
        self._breaker.record(None, trial=trial)
        return result

    def _validate(self, remote: Remote, args: Any) -> dict[str, Any]:
        model = remote.spec.args_model
        try:
            if isinstance(args, model):
                validated = args
            elif isinstance(args, BaseModel):
                validated = model.model_validate(
                    args.model_dump(mode="json", by_alias=True, exclude_unset=True)
                )
            else:
                validated = model.model_validate(args if args is not None else {})
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_context=False)
            raise ToolArgumentsError(
                f"arguments of {remote.spec.name} are invalid: {exc.error_count()} error(s); "
                f"first: {errors[0]['loc']} {errors[0]['msg']}",
                source=self._config.name,
                tool=remote.spec.name,
                errors=cast(list[Mapping[str, Any]], errors),
            ) from exc
        return dump_arguments(validated)

    def _user(self, remote: Remote, ctx: Any) -> tuple[str, str | None]:
        raw: Any = getattr(ctx, "tool_context", None)
        context: Mapping[str, Any] = (
            cast(Mapping[str, Any], raw) if isinstance(raw, Mapping) else {}
        )
        user: Any = context.get("user_id")
        if not user:
            raise ToolAuthError(
                f"{remote.spec.name} uses the calling user's OAuth token: pass "
                "ctx.tool_context['user_id'] (a ToolCallContext or the planner's tool_context)",
                source=self._config.name,
                tool=remote.spec.name,
            )
        tenant: Any = context.get("tenant")
        return str(user), str(tenant) if tenant else None

    async def _consent(self, remote: Remote, ctx: Any, user: str, tenant: str | None) -> str:
        """No usable token: pause for consent (when ``ctx`` can), then look again."""
        assert self._oauth is not None
        provider = str(self._config.auth_config["provider"])
        context: Mapping[str, Any] = cast(Mapping[str, Any], ctx.tool_context)
        scopes: Any = self._config.auth_config.get("scopes")
        consent = await self._oauth.get_auth_request(
            provider,
            user_id=user,
            tenant=tenant,
            trace_id=_text(context.get("trace_id")) or _text(getattr(ctx, "trace_id", None)),
            session_id=_text(context.get("session_id")),
            scopes=[str(s) for s in cast(list[Any], scopes)] if scopes else None,
        )
        pause: Any = getattr(ctx, "pause", None)
        if pause is not None and callable(pause):
            ask = cast(Callable[[str, Mapping[str, Any]], Awaitable[Any]], pause)
            await ask("external_event", consent.to_payload())  # what pause raises propagates
            token = await self._oauth.get_token(user, provider, tenant=tenant)
            if token is not None:
                return token
        raise ToolAuthRequired(
            f"{remote.spec.name} needs {user!r} to consent at {consent.display_name}",
            consent=consent,
            source=self._config.name,
            tool=remote.spec.name,
        )

    async def _authorized(self, remote: Remote, payload: dict[str, Any], ctx: Any) -> ToolResult:
        """Resolve this call's credentials, then attempt (a 401 on a user token: refresh once).

        Credentials are resolved before a concurrency slot is taken: a consent pause never
        holds one.
        """
        if self._config.auth_type is not AuthType.OAUTH2_USER or self._oauth is None:
            auth = self._resolved.auth_config if self._resolved is not None else {}
            headers = static_auth_headers(self._config.auth_type, auth)
            return await self._attempts(remote, payload, headers, ctx)
        user, tenant = self._user(remote, ctx)
        provider = str(self._config.auth_config["provider"])
        token = await self._oauth.get_token(user, provider, tenant=tenant)
        if token is None:
            token = await self._consent(remote, ctx, user, tenant)
        try:
            return await self._attempts(remote, payload, _bearer(token), ctx)
        except ToolAuthError as error:
            if error.status_code != 401:
                raise
        token = await self._oauth.rejected(user, provider, tenant=tenant)
        if token is None:
            token = await self._consent(remote, ctx, user, tenant)
        return await self._attempts(remote, payload, _bearer(token), ctx)

    async def _attempts(
        self, remote: Remote, payload: dict[str, Any], headers: dict[str, str], ctx: Any
    ) -> ToolResult:
        policy = self._config.retry_policy
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._attempt(remote, payload, headers, ctx)
            except ToolError as error:
                error.attempts = attempt
                retry = should_retry(error, idempotent=remote.idempotent, policy=policy)
                error.retryable = retry
                if not retry or attempt >= policy.max_attempts:
                    raise
                self._retries += 1
                await anyio.sleep(backoff_s(attempt, policy, error.retry_after_s))

    async def _live_session(self) -> McpSession | UtcpSession:
        session = self._session
        if session is not None and session.usable:
            return session
        if self._closed:
            raise ToolConnectionError(
                f"ToolNode {self._config.name!r} is closed",
                source=self._config.name,
                detail={"sent": False},
            )
        async with self._lock:
            if self._session is None or not self._session.usable:
                await self._open()
            assert self._session is not None
            return self._session

    async def _attempt(
        self, remote: Remote, payload: dict[str, Any], headers: dict[str, str], ctx: Any
    ) -> ToolResult:
        async with self._limiter:
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            try:
                session = await self._live_session()
                value = await self._send(session, remote, payload, headers)
            finally:
                self._in_flight -= 1
        value, refs = await extract_artifacts(
            value,
            config=self._config.artifact_extraction,
            store=self._artifacts,
            scope=scope_of(ctx),
            source=self._config.name,
            tool=remote.spec.name,
        )
        return remote.spec.out_model.model_validate({"result": value, "artifacts": refs})  # pyright: ignore[reportReturnType]

    async def _send(
        self,
        session: McpSession | UtcpSession,
        remote: Remote,
        payload: dict[str, Any],
        headers: dict[str, str],
    ) -> Any:
        if isinstance(session, UtcpSession):
            return await utcp_send(session, remote, payload, headers, self._config)
        client = session.client
        token = uuid.uuid4().hex
        source, tool = self._config.name, remote.spec.name
        if headers:
            session.call_headers[token] = headers
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
            status, retry_after = session.statuses.pop(token, (None, None))
            error = adapt_exception(
                exc, source=source, tool=tool, http_status=status, retry_after_s=retry_after
            )
            if isinstance(error, ToolConnectionError) or status == 404:
                session.dead = True
                if status == 404:
                    error = ToolConnectionError(
                        f"MCP session of {source!r} is gone (HTTP 404)", source=source, tool=tool
                    )
                    error.__cause__ = exc
            raise error from exc
        finally:
            session.statuses.pop(token, None)
            session.call_headers.pop(token, None)
        if result.is_error:
            raise ToolClientError(
                text_of(result.content) or f"{tool} reported an error",
                source=source,
                tool=tool,
                detail={"content": json_content(result.content)},
            )
        return value_of(result)


def _text(value: Any) -> str | None:
    return str(value) if value is not None and value != "" else None


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
