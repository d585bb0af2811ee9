"""``ToolNode``: one remote MCP source as core ``NodeSpec``s, with one call path."""

from __future__ import annotations

import difflib
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, cast

import anyio
from pydantic import BaseModel, Field, ValidationError, create_model

from penguiflow.core import Node, NodePolicy, NodeSpec, SideEffect

from ._config import AuthType, ExternalToolConfig, McpTransportMode, TransportType, resolve
from ._errors import (
    ToolArgumentsError,
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
from ._schema import dump_arguments, json_schema_to_model
from ._types import ToolNodeStatistics, ToolResult

__all__ = ["ToolNode"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True, slots=True)
class _Remote:
    spec: NodeSpec
    remote: str
    idempotent: bool
    kind: str = "tool"
    """``tool``, or the MCP method a resource/prompt tool stands for."""


_STR = {"type": "string"}
_BUILTINS: dict[str, tuple[str, str, dict[str, Any]]] = {
    # kind: (capability, description, input schema)
    "resources/list": ("resources", "List the resources the MCP server offers.", {}),
    "resources/read": (
        "resources",
        "Read one resource of the MCP server by its URI.",
        {"properties": {"uri": {**_STR, "description": "The resource URI."}}, "required": ["uri"]},
    ),
    "resources/templates/list": (
        "resources",
        "List the resource URI templates the MCP server offers.",
        {},
    ),
    "prompts/list": ("prompts", "List the prompts the MCP server offers.", {}),
    "prompts/get": (
        "prompts",
        "Render one prompt of the MCP server with its arguments.",
        {
            "properties": {
                "name": {**_STR, "description": "The prompt name."},
                "arguments": {
                    "type": "object",
                    "additionalProperties": _STR,
                    "default": {},
                    "description": "The prompt's arguments.",
                },
            },
            "required": ["name"],
        },
    ),
}


class ToolNode:
    """One remote tool source: its tools as catalog entries, and the one way to call them.

    ``async with ToolNode(config) as node`` (or ``connect()`` / ``aclose()``, from any tasks)
    opens one session held by a task of the node; ``node.specs`` are core ``NodeSpec``s named
    ``{config.name}.{remote}``; ``await node.call(name, args)`` validates, limits, retries and
    translates errors. This release speaks MCP (stdio, streamable HTTP, SSE).

    Raises:
        ValueError: The transport is not supported here, or OAuth is asked for.
        ImportError: The ``mcp`` extra is not installed (with the pip line).
    """

    def __init__(self, config: ExternalToolConfig, *, oauth: object | None = None) -> None:
        if config.transport is not TransportType.MCP:
            raise ValueError(
                f"transport={config.transport.value} is not supported by this release of "
                "penguiflow-tools; use TransportType.MCP"
            )
        if config.auth_type is AuthType.OAUTH2_USER:
            if oauth is None:
                raise ValueError("auth_type=OAUTH2_USER needs ToolNode(..., oauth=OAuthManager)")
            if config.effective_mcp_mode is not McpTransportMode.STREAMABLE_HTTP:
                raise ValueError(
                    "auth_type=OAUTH2_USER needs per-call tokens: use streamable HTTP, not "
                    f"{config.effective_mcp_mode.value}"
                )
            raise ValueError("auth_type=OAUTH2_USER is not supported by this release")
        import_mcp()
        self._config = config
        self._lock = anyio.Lock()
        self._session: McpSession | None = None
        self._remotes: dict[str, _Remote] = {}
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
        if self._session is not None:
            await self._session.close()
            self._session = None
        session = McpSession(self._config, resolved)
        try:
            await session.start()
            self._remotes = await self._discover(session)
        except ToolError:
            await session.close()
            raise
        except TimeoutError as exc:
            await session.close()
            raise ToolConnectionError(
                f"MCP source {self._config.name!r} ({session.target}) did not complete spawn, "
                "handshake and discovery within "
                f"connect_timeout_s={self._config.connect_timeout_s}",
                source=self._config.name,
                retryable=True,
                detail={"sent": False},
            ) from exc
        except Exception as exc:
            await session.close()
            raise ToolConnectionError(
                f"cannot connect to MCP source {self._config.name!r} ({session.target}): "
                f"{type(exc).__name__}: {exc}",
                source=self._config.name,
                retryable=True,
                detail={"sent": False},
            ) from exc
        if self._connected_once:
            self._reconnects += 1
        self._connected_once = True
        self._session = session

    async def _discover(self, session: McpSession) -> dict[str, _Remote]:
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
        remotes: dict[str, _Remote] = {}
        try:
            candidates = [self._build(t) for t in tools if self._config.keeps(t.name)]
            candidates += self._builtins(client.server_capabilities)
        except ValueError as exc:  # NodeSpec refused a name (over 64 characters)
            raise ToolConfigError(
                f"source {self._config.name!r}: {exc}; shorten the config name or filter the "
                "tool out with tool_filter",
                source=self._config.name,
            ) from exc
        for remote in candidates:
            if remote.spec.name in remotes:
                raise ToolConfigError(
                    f"MCP tools {remotes[remote.spec.name].remote!r} and {remote.remote!r} of "
                    f"source {self._config.name!r} both map to spec name {remote.spec.name!r}",
                    source=self._config.name,
                )
            remotes[remote.spec.name] = remote
        return remotes

    def _builtins(self, capabilities: Any) -> list[_Remote]:
        wanted = {
            "resources": self._config.expose_resources and capabilities.resources is not None,
            "prompts": self._config.expose_prompts and capabilities.prompts is not None,
        }
        built: list[_Remote] = []
        for kind, (capability, desc, props) in _BUILTINS.items():
            if not wanted[capability]:
                continue
            schema = {"type": "object", **props, "additionalProperties": False}
            remote = kind.replace("/templates/", "_templates_").replace("/", "_")
            annotations = {"readOnlyHint": True}
            built.append(
                self._make(remote, desc, schema, None, annotations, [capability], kind=kind)
            )
        return built

    def _build(self, tool: Any) -> _Remote:
        annotations: dict[str, Any] = (
            tool.annotations.model_dump(mode="json", by_alias=True, exclude_none=True)
            if tool.annotations is not None
            else {}
        )
        tool_meta: Any = tool.meta
        meta_tags: Any = (
            cast(dict[str, Any], tool_meta).get("tags") if isinstance(tool_meta, dict) else None
        )
        remote_tags = [t for t in cast(list[Any], meta_tags or []) if isinstance(t, str)]
        return self._make(
            tool.name,
            tool.description or "",
            dict(tool.input_schema or {}),
            tool.output_schema,
            annotations,
            remote_tags,
        )

    def _make(
        self,
        remote_name: str,
        desc: str,
        input_schema: dict[str, Any],
        output_schema: dict[str, Any] | None,
        annotations: dict[str, Any],
        remote_tags: list[str],
        *,
        kind: str = "tool",
    ) -> _Remote:
        ns = self._config.name
        name = f"{ns}.{_UNSAFE.sub('_', remote_name)}"
        side_effects: SideEffect = "external"
        if annotations.get("readOnlyHint") is True:
            side_effects = "read"
        elif annotations.get("destructiveHint") is True:
            side_effects = "write"
        idempotent = bool(
            annotations.get("readOnlyHint") is True or annotations.get("idempotentHint") is True
        )
        args_model = json_schema_to_model(input_schema, name=f"{name}.args")
        out_model = cast(
            type[BaseModel],
            create_model(
                re.sub(r"\W", "_", f"{name}_result"),
                __base__=ToolResult,
                result=(
                    Any,
                    Field(
                        None,
                        description="The tool's value (its remote output schema, not enforced).",
                        json_schema_extra=(
                            {"x-output-schema": output_schema} if output_schema else None
                        ),
                    ),
                ),
            ),
        )

        async def run(args: Any, ctx: Any) -> ToolResult:
            return await self.call(name, args, ctx=ctx)

        spec = NodeSpec(
            node=Node(run, name=name, policy=NodePolicy(validate="none", max_retries=0)),
            name=name,
            desc=desc,
            args_model=args_model,
            out_model=out_model,
            side_effects=side_effects,
            tags=("mcp", ns, *remote_tags),
            extra={
                "source": "mcp",
                "namespace": ns,
                "remote_name": remote_name if kind == "tool" else kind,
                "input_schema": json.loads(json.dumps(input_schema)),
                "output_schema": output_schema,
                "annotations": annotations,
            },
        )
        return _Remote(spec=spec, remote=remote_name, idempotent=idempotent, kind=kind)

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

    def _remote(self, name: str) -> _Remote:
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

    async def call(self, name: str, args: Any, *, ctx: Any = None) -> ToolResult:
        """Call a remote tool: validate, breaker, a concurrency slot, attempts, retries.

        ``args`` is a mapping or an instance of the spec's ``args_model``; ``ctx`` is the
        planner's tool context or a ``ToolCallContext`` (unused by MCP without OAuth).
        Cancellation propagates untouched (the server is told to stop the request).

        Raises:
            ToolNotFoundError: No such tool.
            ToolArgumentsError: ``args`` fail the args model (nothing sent).
            ToolError: The call failed; ``attempts`` says how many attempts were made.
        """
        remote = self._remote(name)
        payload = self._validate(remote, args)
        self._calls += 1
        trial = False
        try:
            trial = self._breaker.before_call(remote.spec.name)
            result = await self._attempts(remote, payload)
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

    def _validate(self, remote: _Remote, args: Any) -> dict[str, Any]:
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

    async def _attempts(self, remote: _Remote, payload: dict[str, Any]) -> ToolResult:
        policy = self._config.retry_policy
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._attempt(remote, payload)
            except ToolError as error:
                error.attempts = attempt
                retry = should_retry(error, idempotent=remote.idempotent, policy=policy)
                error.retryable = retry
                if not retry or attempt >= policy.max_attempts:
                    raise
                self._retries += 1
                await anyio.sleep(backoff_s(attempt, policy, error.retry_after_s))

    async def _live_session(self) -> McpSession:
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

    async def _attempt(self, remote: _Remote, payload: dict[str, Any]) -> ToolResult:
        async with self._limiter:
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            try:
                session = await self._live_session()
                return await self._send(session, remote, payload)
            finally:
                self._in_flight -= 1

    async def _send(
        self, session: McpSession, remote: _Remote, payload: dict[str, Any]
    ) -> ToolResult:
        client = session.client
        token = uuid.uuid4().hex
        source, tool = self._config.name, remote.spec.name
        try:
            if client is None:
                raise ToolConnectionError("the MCP session is closed", source=source, tool=tool)
            meta: Any = {CALL_META_KEY: token}
            with anyio.fail_after(self._config.timeout_s):
                if remote.kind != "tool":
                    value = await _builtin_call(client, remote.kind, payload, meta)
                    return remote.spec.out_model.model_validate({"result": value})  # pyright: ignore[reportReturnType]
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
        if result.is_error:
            raise ToolClientError(
                _text_of(result.content) or f"{tool} reported an error",
                source=source,
                tool=tool,
                detail={"content": _json_content(result.content)},
            )
        return remote.spec.out_model.model_validate({"result": _value_of(result)})  # pyright: ignore[reportReturnType]


async def _builtin_call(
    client: Any, kind: str, payload: dict[str, Any], meta: dict[str, Any]
) -> Any:
    if kind == "resources/list":
        result = await client.list_resources(meta=meta)
    elif kind == "resources/templates/list":
        result = await client.list_resource_templates(meta=meta)
    elif kind == "resources/read":
        result = await client.read_resource(payload["uri"], meta=meta)
    elif kind == "prompts/list":
        result = await client.list_prompts(meta=meta)
    else:
        result = await client.get_prompt(
            payload["name"], payload.get("arguments") or None, meta=meta
        )
    dumped: dict[str, Any] = result.model_dump(mode="json", by_alias=True, exclude_none=True)
    for envelope in ("_meta", "ttlMs", "cacheScope", "resultType", "nextCursor"):
        dumped.pop(envelope, None)
    return dumped


def _json_content(blocks: list[Any]) -> list[Any]:
    return [b.model_dump(mode="json", by_alias=True, exclude_none=True) for b in blocks]


def _text_of(blocks: list[Any]) -> str:
    return "\n".join(b.text for b in blocks if getattr(b, "type", None) == "text")


def _block_value(block: Any) -> Any:
    if getattr(block, "type", None) == "text":
        text: str = block.text
        stripped = text.strip()
        if stripped[:1] in ("{", "["):
            try:
                return json.loads(stripped)
            except ValueError:
                return text
        return text
    return block.model_dump(mode="json", by_alias=True, exclude_none=True)


def _value_of(result: Any) -> Any:
    if result.structured_content is not None:
        return result.structured_content
    blocks: list[Any] = list(result.content)
    if len(blocks) == 1:
        return _block_value(blocks[0])
    return [_block_value(b) for b in blocks]
