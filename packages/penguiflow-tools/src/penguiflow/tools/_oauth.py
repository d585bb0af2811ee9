"""OAuth2 user tokens (authorization code + PKCE S256): the manager and the callback route.

``OAuthManager`` builds consent requests (a single-use ``state`` kept in a ``TokenStore``),
exchanges the callback's code with the PKCE verifier for a token, refreshes tokens before they
expire and hands a ``ToolNode`` the calling user's token per call. ``httpx`` (token endpoint)
and Starlette (``oauth_callback_route``) are imported when used, never at import.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from ._errors import ToolAuthError
from ._oauth_types import (
    ConsentRequest,
    ConsentResult,
    OAuthProviderConfig,
    OAuthStateError,
    OAuthToken,
    OAuthTokenError,
    PendingConsent,
)
from ._token_store import InMemoryTokenStore, TokenStore

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

__all__ = ["OAuthManager", "oauth_callback_route"]


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class OAuthManager:
    """Per-user OAuth2 tokens: consent requests, callbacks, refresh, revoke.

    Raises:
        ValueError: No providers, or two with one name.
    """

    def __init__(
        self,
        providers: Mapping[str, OAuthProviderConfig] | Sequence[OAuthProviderConfig],
        *,
        token_store: TokenStore | None = None,
        state_ttl_s: float = 600,
        refresh_skew_s: float = 30,
    ) -> None:
        items = list(providers.values()) if isinstance(providers, Mapping) else list(providers)
        self._providers: dict[str, OAuthProviderConfig] = {}
        for provider in items:
            if provider.name in self._providers:
                raise ValueError(f"two OAuth providers are named {provider.name!r}")
            self._providers[provider.name] = provider
        if not self._providers:
            raise ValueError("OAuthManager needs at least one OAuthProviderConfig")
        if state_ttl_s <= 0 or refresh_skew_s < 0:
            raise ValueError("state_ttl_s must be > 0 and refresh_skew_s >= 0")
        self.token_store: TokenStore = token_store or InMemoryTokenStore()
        """Where tokens and states are kept."""
        self._state_ttl_s = state_ttl_s
        self._refresh_skew_s = refresh_skew_s

    def provider(self, name: str) -> OAuthProviderConfig:
        """The provider named ``name`` (``ToolAuthError`` listing the known ones)."""
        provider = self._providers.get(name)
        if provider is None:
            raise ToolAuthError(
                f"no OAuth provider {name!r}; known: {sorted(self._providers)}",
                detail={"provider": name},
            )
        return provider

    async def get_token(
        self, user_id: str, provider: str, *, tenant: str | None = None
    ) -> str | None:
        """The user's access token (refreshed first when it expires within ``refresh_skew_s``).

        None when there is none, or the refresh failed (the token is then deleted).
        """
        config = self.provider(provider)
        token = await self.token_store.get(user_id, provider, tenant=tenant)
        if token is None:
            return None
        if token.expires_at is not None and token.expires_at - self._refresh_skew_s <= time.time():
            token = await self._refresh(config, user_id, token, tenant=tenant)
        return None if token is None else token.access_token

    async def rejected(
        self, user_id: str, provider: str, *, tenant: str | None = None
    ) -> str | None:
        """The source refused the user's token (401): drop it, try one refresh.

        Returns the refreshed access token, or None (consent is needed again).
        """
        config = self.provider(provider)
        token = await self.token_store.get(user_id, provider, tenant=tenant)
        await self.token_store.delete(user_id, provider, tenant=tenant)
        if token is None:
            return None
        token = await self._refresh(config, user_id, token, tenant=tenant)
        return None if token is None else token.access_token

    async def _refresh(
        self,
        config: OAuthProviderConfig,
        user_id: str,
        token: OAuthToken,
        *,
        tenant: str | None,
    ) -> OAuthToken | None:
        if token.refresh_token is None:
            await self.token_store.delete(user_id, config.name, tenant=tenant)
            return None
        try:
            fresh = await self._token_request(
                config,
                {"grant_type": "refresh_token", "refresh_token": token.refresh_token},
                previous=token,
            )
        except OAuthTokenError:
            await self.token_store.delete(user_id, config.name, tenant=tenant)
            return None
        await self.token_store.store(user_id, config.name, fresh, tenant=tenant)
        return fresh

    async def get_auth_request(
        self,
        provider: str,
        *,
        user_id: str,
        tenant: str | None = None,
        trace_id: str | None = None,
        session_id: str | None = None,
        scopes: Sequence[str] | None = None,
    ) -> ConsentRequest:
        """A consent request for the user; its single-use state is stored for ``state_ttl_s``."""
        config = self.provider(provider)
        wanted = tuple(scopes) if scopes else config.scopes
        state = secrets.token_urlsafe(24)
        verifier = secrets.token_urlsafe(48)
        expires_at = time.time() + self._state_ttl_s
        pending = PendingConsent(
            provider=provider,
            user_id=user_id,
            code_verifier=verifier,
            expires_at=expires_at,
            scopes=wanted,
            tenant=tenant,
            trace_id=trace_id,
            session_id=session_id,
        )
        await self.token_store.put_pending(state, pending, ttl_s=self._state_ttl_s)
        params: dict[str, str] = {
            "response_type": "code",
            "client_id": config.client_id,
            "redirect_uri": config.redirect_uri,
            "state": state,
            "code_challenge": _challenge(verifier),
            "code_challenge_method": "S256",
        }
        if wanted:
            params["scope"] = " ".join(wanted)
        params.update(config.extra_authorize_params)
        separator = "&" if urlsplit(config.auth_url).query else "?"
        return ConsentRequest(
            provider=provider,
            display_name=config.display_name or config.name,
            auth_url=f"{config.auth_url}{separator}{urlencode(params)}",
            state=state,
            scopes=wanted,
            expires_at=expires_at,
        )

    async def handle_callback(self, code: str, state: str) -> ConsentResult:
        """Exchange ``code`` (with the state's PKCE verifier) for the user's token and store it.

        Raises:
            OAuthStateError: The state is unknown, already used or expired.
            OAuthTokenError: The token endpoint refused the code.
        """
        pending = await self.token_store.take_pending(state)
        if pending is None or pending.expires_at <= time.time():
            raise OAuthStateError(
                "OAuth state is unknown, already used or expired; ask the user to consent again",
                detail={"reason": "state"},
            )
        config = self.provider(pending.provider)
        token = await self._token_request(
            config,
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": config.redirect_uri,
                "code_verifier": pending.code_verifier,
            },
            previous=None,
        )
        await self.token_store.store(pending.user_id, config.name, token, tenant=pending.tenant)
        return ConsentResult(
            user_id=pending.user_id,
            tenant=pending.tenant,
            provider=config.name,
            trace_id=pending.trace_id,
            session_id=pending.session_id,
        )

    async def revoke(self, user_id: str, provider: str, *, tenant: str | None = None) -> bool:
        """Forget the user's token for ``provider``; True when there was one."""
        self.provider(provider)
        return await self.token_store.delete(user_id, provider, tenant=tenant)

    async def _token_request(
        self, config: OAuthProviderConfig, form: dict[str, str], *, previous: OAuthToken | None
    ) -> OAuthToken:
        import httpx

        form = {**form, "client_id": config.client_id}
        if config.client_secret is not None:
            form["client_secret"] = config.client_secret
        try:
            async with httpx.AsyncClient(timeout=30.0) as client:
                response = await client.post(
                    config.token_url, data=form, headers={"Accept": "application/json"}
                )
        except httpx.HTTPError as exc:
            raise OAuthTokenError(
                f"OAuth token endpoint of {config.name!r} unreachable: {type(exc).__name__}",
                detail={"provider": config.name},
            ) from exc
        try:
            body: Any = response.json()
        except ValueError:
            body = {}
        if response.status_code >= 400 or not isinstance(body, dict) or "access_token" not in body:
            reason = body.get("error") if isinstance(body, dict) else None  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
            raise OAuthTokenError(
                f"OAuth token endpoint of {config.name!r} refused the request "
                f"(HTTP {response.status_code}, error={reason!r})",
                status_code=response.status_code,
                detail={"provider": config.name, "error": str(reason)},  # pyright: ignore[reportUnknownArgumentType]
            )
        data: dict[str, Any] = body  # pyright: ignore[reportUnknownVariableType]
        expires_in = data.get("expires_in")
        scope = data.get("scope")
        return OAuthToken(
            access_token=str(data["access_token"]),
            refresh_token=(
                str(data["refresh_token"])
                if data.get("refresh_token")
                else (previous.refresh_token if previous is not None else None)
            ),
            expires_at=time.time() + float(expires_in) if expires_in is not None else None,
            scopes=tuple(str(scope).split()) if scope else (previous.scopes if previous else ()),
            token_type=str(data.get("token_type") or "Bearer"),
        )


def oauth_callback_route(
    manager: OAuthManager,
    *,
    path: str = "/oauth/callback",
    on_complete: Callable[[ConsentResult], Awaitable[None] | None] | None = None,
) -> Route:
    """A Starlette ``Route`` for the provider's redirect: ``handle_callback(code, state)``.

    ``on_complete(result)`` (sync or async) runs after the token is stored (e.g. to resume the
    paused run). Answers 200 on success, 400 on a bad state or a refused code.
    """
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def endpoint(request: Request) -> Response:
        code = request.query_params.get("code")
        state = request.query_params.get("state")
        if request.query_params.get("error"):
            return PlainTextResponse(
                f"consent refused: {request.query_params['error']}", status_code=400
            )
        if not code or not state:
            return PlainTextResponse("missing code or state", status_code=400)
        try:
            result = await manager.handle_callback(code, state)
        except ToolAuthError as exc:
            return PlainTextResponse(exc.message, status_code=400)
        if on_complete is not None:
            outcome = on_complete(result)
            if outcome is not None:
                await outcome
        return PlainTextResponse("consent recorded; you may close this window")

    return Route(path, endpoint, methods=["GET"])
