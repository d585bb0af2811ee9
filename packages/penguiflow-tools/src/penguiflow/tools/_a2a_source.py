"""A2A sources: each skill on a remote agent's card as a tool, called through ``A2ATransport``.

The session owns one ``httpx.AsyncClient`` and one ``A2ATransport`` on it. A call runs in the
caller's task; its credentials (the source's API key or bearer, or the calling user's OAuth
token) are bound to the call's context and set on each of its HTTP requests by a request hook,
never as the client's default headers, and the HTTP status of a failed response is recorded
for the call the same way, so retries stay status-aware.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

import anyio
import httpx
from a2a.helpers.proto_helpers import new_data_part, new_text_part
from a2a.types import AgentCard

from penguiflow.core import Headers, Message, RemoteCallRequest

from ._a2a_transport import A2ATransport
from ._config import ExternalToolConfig, ResolvedConfig
from ._errors import ToolConnectionError, ToolError, adapt_exception
from ._specs import CallFn, Remote, make_remote

__all__ = ["SKILL_ARGS_SCHEMA", "A2ASession"]

SKILL_ARGS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "message": {"type": "string", "description": "The request to the agent, as text."},
        "data": {
            "anyOf": [{"type": "object"}, {"type": "null"}],
            "default": None,
            "description": "Structured input sent as a data part beside the text.",
        },
        "context_id": {
            "anyOf": [{"type": "string"}, {"type": "null"}],
            "default": None,
            "description": "The remote conversation to continue (from an earlier answer).",
        },
    },
    "required": ["message"],
    "additionalProperties": False,
}
"""The arguments of every skill: ``message: str``, ``data: dict | None``, ``context_id``."""

_CALL_HEADERS: ContextVar[Mapping[str, str] | None] = ContextVar(
    "penguiflow_tools_a2a_headers", default=None
)
_CALL_STATUS: ContextVar[list[tuple[int, float | None]] | None] = ContextVar(
    "penguiflow_tools_a2a_status", default=None
)


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class A2ASession:
    """A remote A2A agent: its card's skills, and one attempt of a call to one of them."""

    def __init__(self, config: ExternalToolConfig, resolved: ResolvedConfig) -> None:
        self._config = config
        self._resolved = resolved
        self._http: httpx.AsyncClient | None = None
        self._transport: A2ATransport | None = None
        self.card: AgentCard | None = None
        """The agent's card, as resolved at connect (or refresh)."""
        self.dead = False

    @property
    def target(self) -> str:
        """The agent URL as configured (``${VAR}`` unsubstituted: no secrets)."""
        connection = self._config.connection
        return connection if isinstance(connection, str) else " ".join(connection)

    @property
    def usable(self) -> bool:
        """Whether a call may be sent (A2A over HTTP holds no session between calls)."""
        return self._transport is not None and not self.dead

    async def start(self) -> None:
        """Open the HTTP client and resolve the card (``ToolConnectionError`` if no skills)."""

        async def on_request(request: httpx.Request) -> None:
            headers = _CALL_HEADERS.get()
            for name, value in (headers or self._resolved.auth_headers).items():
                request.headers[name] = value

        async def on_response(response: httpx.Response) -> None:
            seen = _CALL_STATUS.get()
            if response.status_code >= 400 and seen is not None:
                seen.append(
                    (response.status_code, _retry_after(response.headers.get("retry-after")))
                )

        self._http = httpx.AsyncClient(
            headers=dict(self._resolved.headers),
            timeout=httpx.Timeout(self._config.connect_timeout_s, read=None),
            event_hooks={"request": [on_request], "response": [on_response]},
        )
        self._transport = A2ATransport(httpx_client=self._http)
        await self._resolve(refresh=False)

    async def _resolve(self, *, refresh: bool) -> AgentCard:
        assert self._transport is not None
        try:
            with anyio.fail_after(self._config.connect_timeout_s):
                card = await self._transport.agent_card(self._resolved.url, refresh=refresh)
        except ToolError as error:
            raise self._own(error, None, connect=True) from error.__cause__
        if not card.skills:
            raise ToolConnectionError(
                f"the agent card of A2A source {self._config.name!r} ({self.target}) lists no "
                "skills",
                source=self._config.name,
                detail={"sent": False},
            )
        self.card = card
        return card

    async def close(self) -> None:
        """Close the transport and the HTTP client (idempotent)."""
        transport, self._transport = self._transport, None
        http, self._http = self._http, None
        self.dead = True
        with anyio.CancelScope(shield=True):
            if transport is not None:
                await transport.aclose()
            if http is not None:
                await http.aclose()

    async def remotes(self, call: CallFn, *, reload: bool) -> list[Remote]:
        """One entry per card skill kept by ``tool_filter``: ``{ns}.{skill.id}``."""
        card = await self._resolve(refresh=True) if reload or self.card is None else self.card
        return [
            make_remote(
                self._config,
                call,
                skill.id,
                skill.description or skill.name,
                SKILL_ARGS_SCHEMA,
                None,
                {},
                list(skill.tags),
                source="a2a",
                idempotent=False,
            )
            for skill in card.skills
            if self._config.keeps(skill.id)
        ]

    async def send(
        self, remote: Remote, payload: dict[str, Any], headers: Mapping[str, str]
    ) -> Any:
        """Send the skill a message (text, plus a data part when given); the result artifact.

        Cancelling the caller cancels the remote task; ``timeout_s`` bounds the attempt (and
        cancels the remote task too).
        """
        transport = self._transport
        if transport is None:
            raise ToolConnectionError(
                "the A2A source is closed", source=self._config.name, tool=remote.spec.name
            )
        text = str(payload["message"])
        data: Any = payload.get("data")
        value: Any = text if data is None else [new_text_part(text), new_data_part(data)]
        context_id: Any = payload.get("context_id")
        request = RemoteCallRequest(
            message=Message(payload=value, headers=Headers(tenant="default")),
            skill=remote.remote,
            agent_url=self._resolved.url,
            timeout_s=self._config.timeout_s,
            context_id=str(context_id) if context_id else None,
        )
        seen: list[tuple[int, float | None]] = []
        headers_reset = _CALL_HEADERS.set(dict(headers) if headers else None)
        status_reset = _CALL_STATUS.set(seen)
        try:
            result = await transport.send(request)
        except ToolError as error:
            raise self._own(error, seen[-1] if seen else None, tool=remote.spec.name) from (
                error.__cause__ or error
            )
        finally:
            _CALL_STATUS.reset(status_reset)
            _CALL_HEADERS.reset(headers_reset)
        return result.result

    def _own(
        self,
        error: ToolError,
        status: tuple[int, float | None] | None,
        *,
        tool: str | None = None,
        connect: bool = False,
    ) -> ToolError:
        """The transport's error as this source's: named after the source and the spec.

        An HTTP status seen for the call decides the kind (as for MCP and UTCP); the resolved
        URL (which may carry a substituted secret) is replaced by the configured one.
        """
        cause: BaseException = error.__cause__ or error
        if status is not None and not isinstance(cause, ToolError):
            error = adapt_exception(
                cause,
                source=self._config.name,
                tool=tool,
                http_status=status[0],
                retry_after_s=status[1],
            )
        error.source, error.tool = self._config.name, tool
        error.message = error.message.replace(self._resolved.url, self.target)
        error.args = (error.message,)
        if connect or isinstance(cause, httpx.ConnectError):
            error.detail = {**error.detail, "sent": False}
        return error
