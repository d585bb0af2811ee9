"""``ToolNode``: one remote MCP, UTCP or A2A source as core ``NodeSpec``s, with one call path."""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, cast

import anyio
from pydantic import BaseModel, ValidationError

from penguiflow.core import NodeSpec

from ._artifacts import ArtifactStore, InMemoryArtifactStore, extract_artifacts, scope_of
from ._config import (
    AuthType,
    ExternalToolConfig,
    McpTransportMode,
    ResolvedConfig,
    TransportType,
    resolve,
)
from ._credentials import with_credentials
from ._errors import (
    ToolArgumentsError,
    ToolConfigError,
    ToolConnectionError,
    ToolError,
    ToolNotFoundError,
)
from ._resilience import Breaker, backoff_s, should_retry
from ._schema import dump_arguments
from ._session import Session, import_sdk, open_session
from ._specs import Remote
from ._types import ToolNodeStatistics, ToolResult

if TYPE_CHECKING:
    from ._oauth import OAuthManager

__all__ = ["ToolNode"]


class ToolNode:
    """One remote tool source: its tools as catalog entries, and the one way to call them.

    ``async with ToolNode(config) as node`` (or ``connect()`` / ``aclose()``, from any tasks)
    opens one session held by a task of the node; ``node.specs`` are core ``NodeSpec``s named
    ``{config.name}.{remote}``; ``await node.call(name, args)`` validates, limits, retries and
    translates errors. Sources: MCP (stdio, streamable HTTP, SSE), UTCP (a UTCP manual or an
    OpenAPI document over HTTP, via utcp-http) and A2A (each skill on a remote agent's card,
    called through ``A2ATransport``).

    Credentials are set on each request of a call (never baked into the session):
    ``API_KEY``/``BEARER`` from ``auth_config``, ``OAUTH2_USER`` the calling user's token
    from ``oauth`` (an ``OAuthManager``), so one HTTP session carries every user's own token.
    Large or binary results are stored in ``artifacts`` (default ``InMemoryArtifactStore()``)
    and replaced by ``ArtifactRef``s.

    Raises:
        ValueError: OAUTH2_USER without ``oauth=`` or over stdio/SSE.
        ImportError: The ``mcp``, ``utcp`` or ``a2a`` extra is not installed (with the pip
            line).
    """

    def __init__(
        self,
        config: ExternalToolConfig,
        *,
        oauth: OAuthManager | None = None,
        artifacts: ArtifactStore | None = None,
    ) -> None:
        if config.auth_type is AuthType.OAUTH2_USER:
            if oauth is None:
                raise ValueError("auth_type=OAUTH2_USER needs ToolNode(..., oauth=OAuthManager)")
            if (
                config.transport is TransportType.MCP
                and config.effective_mcp_mode is not McpTransportMode.STREAMABLE_HTTP
            ):
                raise ValueError(
                    "auth_type=OAUTH2_USER needs per-call tokens: use streamable HTTP, not "
                    f"{config.effective_mcp_mode.value} (UTCP and A2A sources carry them too)"
                )
            oauth.provider(str(config.auth_config["provider"]))  # a ToolAuthError when unknown
        import_sdk(config)
        self._config = config
        self._oauth = oauth
        self._artifacts: ArtifactStore = artifacts or InMemoryArtifactStore()
        self._resolved: ResolvedConfig | None = None
        self._lock = anyio.Lock()
        self._session: Session | None = None
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
        session = open_session(self._config, resolved)
        kind = self._config.transport.value.upper()
        try:
            await session.start()
            self._remotes = await self._discover(session, reload=False)
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

    async def _discover(self, session: Session, *, reload: bool) -> dict[str, Remote]:
        try:
            candidates = await session.remotes(self._call, reload=reload)
        except ValueError as exc:  # NodeSpec refused a name (over 64 characters)
            raise ToolConfigError(
                f"source {self._config.name!r}: {exc}; shorten the config name or filter the "
                "tool out with tool_filter",
                source=self._config.name,
            ) from exc
        remotes: dict[str, Remote] = {}
        for remote in candidates:
            if remote.spec.name in remotes:
                raise ToolConfigError(
                    f"tools {remotes[remote.spec.name].remote!r} and {remote.remote!r} of "
                    f"source {self._config.name!r} both map to spec name {remote.spec.name!r}",
                    source=self._config.name,
                )
            remotes[remote.spec.name] = remote
        return remotes

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
                self._remotes = await self._discover(session, reload=True)
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
            import difflib

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
            result = await with_credentials(
                self._config,
                self._resolved,
                self._oauth,
                remote.spec.name,
                ctx,
                lambda headers: self._attempts(remote, payload, headers, ctx),
            )
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

    async def _live_session(self) -> Session:
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
                value = await session.send(remote, payload, headers)
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
