"""The credentials of one call: the source's own (API key, bearer) or the calling user's token.

An ``OAUTH2_USER`` call reads the user and tenant from ``ctx.tool_context``; a user without a
usable token is asked to consent through ``ctx.pause`` (when it can) before anything is sent,
else the call raises ``ToolAuthRequired``. A 401 on a user token drops it, tries one refresh,
else asks for consent again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

from ._config import AuthType, ExternalToolConfig, ResolvedConfig, static_auth_headers
from ._errors import ToolAuthError
from ._types import ToolResult

if TYPE_CHECKING:
    from ._oauth import OAuthManager

__all__ = ["with_credentials"]

Attempts = Callable[[dict[str, str]], Awaitable[ToolResult]]
"""Run the call's attempts with these request headers."""


async def with_credentials(
    config: ExternalToolConfig,
    resolved: ResolvedConfig | None,
    oauth: OAuthManager | None,
    tool: str,
    ctx: Any,
    attempts: Attempts,
) -> ToolResult:
    """Resolve this call's credentials, then run ``attempts`` with them.

    Credentials are resolved before a concurrency slot is taken: a consent pause never holds
    one.
    """
    if config.auth_type is not AuthType.OAUTH2_USER or oauth is None:
        auth = resolved.auth_config if resolved is not None else {}
        return await attempts(static_auth_headers(config.auth_type, auth))
    user, tenant = _user(config, tool, ctx)
    provider = str(config.auth_config["provider"])
    token = await oauth.get_token(user, provider, tenant=tenant)
    if token is None:
        token = await _consent(config, oauth, tool, ctx, user, tenant)
    try:
        return await attempts(_bearer(token))
    except ToolAuthError as error:
        if error.status_code != 401:
            raise
    token = await oauth.rejected(user, provider, tenant=tenant)
    if token is None:
        token = await _consent(config, oauth, tool, ctx, user, tenant)
    return await attempts(_bearer(token))


def _context(ctx: Any) -> Mapping[str, Any]:
    raw: Any = getattr(ctx, "tool_context", None)
    return cast(Mapping[str, Any], raw) if isinstance(raw, Mapping) else {}


def _user(config: ExternalToolConfig, tool: str, ctx: Any) -> tuple[str, str | None]:
    context = _context(ctx)
    user: Any = context.get("user_id")
    if not user:
        raise ToolAuthError(
            f"{tool} uses the calling user's OAuth token: pass ctx.tool_context['user_id'] "
            "(a ToolCallContext or the planner's tool_context)",
            source=config.name,
            tool=tool,
        )
    tenant: Any = context.get("tenant")
    return str(user), str(tenant) if tenant else None


async def _consent(
    config: ExternalToolConfig,
    oauth: OAuthManager,
    tool: str,
    ctx: Any,
    user: str,
    tenant: str | None,
) -> str:
    """No usable token: pause for consent (when ``ctx`` can), then look again."""
    provider = str(config.auth_config["provider"])
    context = _context(ctx)
    scopes: Any = config.auth_config.get("scopes")
    consent = await oauth.get_auth_request(
        provider,
        user_id=user,
        tenant=tenant,
        trace_id=_text(context.get("trace_id")) or _text(getattr(ctx, "trace_id", None)),
        session_id=_text(context.get("session_id")),
        scopes=[str(s) for s in cast(list[Any], scopes)] if scopes else None,
    )
    from ._oauth_types import ToolAuthRequired  # the OAuth modules load with the first use

    pause: Any = getattr(ctx, "pause", None)
    if pause is not None and callable(pause):
        ask = cast(Callable[[str, Mapping[str, Any]], Awaitable[Any]], pause)
        await ask("external_event", consent.to_payload())  # what pause raises propagates
        token = await oauth.get_token(user, provider, tenant=tenant)
        if token is not None:
            return token
    raise ToolAuthRequired(
        f"{tool} needs {user!r} to consent at {consent.display_name}",
        consent=consent,
        source=config.name,
        tool=tool,
    )


def _text(value: Any) -> str | None:
    return str(value) if value is not None and value != "" else None


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
