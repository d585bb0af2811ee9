"""OAuth2 user tokens (authorization code + PKCE S256): providers, consent, token stores.

``OAuthManager`` builds consent requests (a single-use ``state`` kept in a ``TokenStore``),
exchanges the callback's code with the PKCE verifier for a token, refreshes tokens before they
expire and hands a ``ToolNode`` the calling user's token per call. ``httpx`` (token endpoint)
and Starlette (``oauth_callback_route``) are imported when used, never at import.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import urlencode, urlsplit

from penguiflow.core import DurableStore, Scope

from ._errors import ToolAuthError

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

__all__ = [
    "ConsentRequest",
    "ConsentResult",
    "DurableTokenStore",
    "InMemoryTokenStore",
    "OAuthManager",
    "OAuthProviderConfig",
    "OAuthStateError",
    "OAuthToken",
    "OAuthTokenError",
    "PendingConsent",
    "TokenStore",
    "ToolAuthRequired",
    "oauth_callback_route",
]

TOKENS_NAMESPACE = "tools.oauth.tokens"
"""Durable namespace of user tokens (key ``{tenant}/{user_id}/{provider}``)."""
PENDING_NAMESPACE = "tools.oauth.pending"
"""Durable namespace of pending consents (key = state)."""
DEFAULT_TENANT = "default"


@dataclass(frozen=True, slots=True)
class OAuthProviderConfig:
    """One OAuth2 authorization server a user consents at."""

    name: str
    """The provider's name (``auth_config["provider"]`` refers to it)."""
    auth_url: str
    """The authorization endpoint."""
    token_url: str
    """The token endpoint."""
    client_id: str
    """This application's client id."""
    redirect_uri: str
    """Where the authorization server sends the user back (``oauth_callback_route``)."""
    client_secret: str | None = field(default=None, repr=False)
    """The client secret of a confidential client, or None (PKCE only)."""
    scopes: tuple[str, ...] = ()
    """Scopes asked for by default."""
    display_name: str | None = None
    """The name shown to the user (default ``name``)."""
    extra_authorize_params: Mapping[str, str] = field(default_factory=dict[str, str])
    """More query parameters of the authorization URL (e.g. ``access_type``)."""

    def __post_init__(self) -> None:
        for name in ("auth_url", "token_url", "redirect_uri"):
            value: str = getattr(self, name)
            if urlsplit(value).scheme not in ("http", "https"):
                raise ValueError(
                    f"OAuthProviderConfig.{name} must be an http(s) URL, got {value!r}"
                )
        if not self.name or not self.client_id:
            raise ValueError("OAuthProviderConfig needs a name and a client_id")


@dataclass(frozen=True, slots=True)
class OAuthToken:
    """A user's token for one provider."""

    access_token: str = field(repr=False)
    """The bearer token sent to the source."""
    refresh_token: str | None = field(default=None, repr=False)
    """The refresh token, if the provider issued one."""
    expires_at: float | None = None
    """Wall-clock expiry (``time.time()`` seconds), or None."""
    scopes: tuple[str, ...] = ()
    """The granted scopes."""
    token_type: str = "Bearer"
    """The token type."""

    def to_json(self) -> bytes:
        """The token as JSON bytes."""
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, data: bytes) -> OAuthToken:
        """The token stored by ``to_json``."""
        raw: dict[str, Any] = json.loads(data)
        raw["scopes"] = tuple(raw.get("scopes") or ())
        return cls(**raw)


@dataclass(frozen=True, slots=True)
class PendingConsent:
    """What a consent state stands for until its callback arrives."""

    provider: str
    """The provider consented at."""
    user_id: str
    """Who consents."""
    code_verifier: str = field(repr=False)
    """The PKCE verifier of this state."""
    expires_at: float
    """Wall-clock expiry of the state."""
    scopes: tuple[str, ...] = ()
    """The scopes asked for."""
    tenant: str | None = None
    """The user's tenant."""
    trace_id: str | None = None
    """The trace that asked for consent."""
    session_id: str | None = None
    """The session that asked for consent."""

    def to_json(self) -> bytes:
        """The pending consent as JSON bytes."""
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, data: bytes) -> PendingConsent:
        """The pending consent stored by ``to_json``."""
        raw: dict[str, Any] = json.loads(data)
        raw["scopes"] = tuple(raw.get("scopes") or ())
        return cls(**raw)


@dataclass(frozen=True, slots=True)
class ConsentRequest:
    """What to show a user so that they consent (``to_payload()`` is the pause payload)."""

    provider: str
    """The provider's name."""
    display_name: str
    """The provider's display name."""
    auth_url: str
    """The URL the user opens (URL-encoded, with the state and the PKCE challenge)."""
    state: str
    """The single-use state of this request."""
    scopes: tuple[str, ...]
    """The scopes asked for."""
    expires_at: float
    """When the state expires (``time.time()`` seconds)."""

    def to_payload(self) -> dict[str, Any]:
        """``{"kind": "oauth_consent", …fields}`` (JSON-safe)."""
        return {
            "kind": "oauth_consent",
            "provider": self.provider,
            "display_name": self.display_name,
            "auth_url": self.auth_url,
            "state": self.state,
            "scopes": list(self.scopes),
            "expires_at": self.expires_at,
        }


@dataclass(frozen=True, slots=True)
class ConsentResult:
    """Who consented where (returned by ``handle_callback``)."""

    user_id: str
    """The user whose token is now stored."""
    tenant: str | None
    """The user's tenant."""
    provider: str
    """The provider."""
    trace_id: str | None
    """The trace that asked for consent (to resume it)."""
    session_id: str | None
    """The session that asked for consent."""


class ToolAuthRequired(ToolAuthError):
    """The call needs the user's consent first; ``consent`` says where to give it."""

    def __init__(self, message: str, *, consent: ConsentRequest, **kwargs: Any) -> None:
        detail = {**dict(kwargs.pop("detail", None) or {}), "consent": consent.to_payload()}
        super().__init__(message, detail=detail, **kwargs)
        self.consent: ConsentRequest = consent


class OAuthStateError(ToolAuthError):
    """A callback's state is unknown, already used or expired."""


class OAuthTokenError(ToolAuthError):
    """The token endpoint refused the code or the refresh token."""


@runtime_checkable
class TokenStore(Protocol):
    """Where user tokens and pending consent states live."""

    async def store(
        self, user_id: str, provider: str, token: OAuthToken, *, tenant: str | None = None
    ) -> None:
        """Keep ``token`` for the user."""
        ...

    async def get(
        self, user_id: str, provider: str, *, tenant: str | None = None
    ) -> OAuthToken | None:
        """The user's token, or None."""
        ...

    async def delete(self, user_id: str, provider: str, *, tenant: str | None = None) -> bool:
        """Forget the user's token; True when there was one."""
        ...

    async def put_pending(self, state: str, pending: PendingConsent, *, ttl_s: float) -> None:
        """Keep a consent state for ``ttl_s`` seconds."""
        ...

    async def take_pending(self, state: str) -> PendingConsent | None:
        """The consent state, removed (of concurrent takes exactly one gets it), or None."""
        ...


def _key(tenant: str | None, user_id: str, provider: str) -> str:
    return f"{tenant or DEFAULT_TENANT}/{user_id}/{provider}"


class InMemoryTokenStore:
    """Tokens and states in this process (the default; lost on restart)."""

    def __init__(self) -> None:
        self._tokens: dict[str, OAuthToken] = {}
        self._pending: dict[str, tuple[PendingConsent, float]] = {}

    async def store(
        self, user_id: str, provider: str, token: OAuthToken, *, tenant: str | None = None
    ) -> None:
        """Keep ``token`` for the user."""
        self._tokens[_key(tenant, user_id, provider)] = token

    async def get(
        self, user_id: str, provider: str, *, tenant: str | None = None
    ) -> OAuthToken | None:
        """The user's token, or None."""
        return self._tokens.get(_key(tenant, user_id, provider))

    async def delete(self, user_id: str, provider: str, *, tenant: str | None = None) -> bool:
        """Forget the user's token; True when there was one."""
        return self._tokens.pop(_key(tenant, user_id, provider), None) is not None

    async def put_pending(self, state: str, pending: PendingConsent, *, ttl_s: float) -> None:
        """Keep a consent state for ``ttl_s`` seconds."""
        self._pending[state] = (pending, time.monotonic() + ttl_s)

    async def take_pending(self, state: str) -> PendingConsent | None:
        """The consent state, removed, or None when unknown or expired."""
        entry = self._pending.pop(state, None)
        if entry is None or entry[1] <= time.monotonic():
            return None
        return entry[0]


class DurableTokenStore:
    """Tokens and states in a core ``DurableStore``: a callback may reach another replica.

    Tokens: namespace ``tools.oauth.tokens``, key ``{tenant}/{user_id}/{provider}``; states:
    ``tools.oauth.pending``, key = state, with a TTL, consumed with ``take``. Records carry
    ``Scope(tenant or "default", user=user_id)``, so ``store.erase(tenant, user=…)`` removes
    a user's tokens.
    """

    def __init__(self, store: DurableStore) -> None:
        self._store = store

    async def store(
        self, user_id: str, provider: str, token: OAuthToken, *, tenant: str | None = None
    ) -> None:
        """Keep ``token`` for the user."""
        await self._store.put(
            TOKENS_NAMESPACE,
            _key(tenant, user_id, provider),
            token.to_json(),
            scope=Scope(tenant or DEFAULT_TENANT, user=user_id),
        )

    async def get(
        self, user_id: str, provider: str, *, tenant: str | None = None
    ) -> OAuthToken | None:
        """The user's token, or None."""
        record = await self._store.get(TOKENS_NAMESPACE, _key(tenant, user_id, provider))
        return None if record is None else OAuthToken.from_json(record.value)

    async def delete(self, user_id: str, provider: str, *, tenant: str | None = None) -> bool:
        """Forget the user's token; True when there was one."""
        return await self._store.delete(TOKENS_NAMESPACE, _key(tenant, user_id, provider))

    async def put_pending(self, state: str, pending: PendingConsent, *, ttl_s: float) -> None:
        """Keep a consent state for ``ttl_s`` seconds."""
        await self._store.put(
            PENDING_NAMESPACE,
            state,
            pending.to_json(),
            scope=Scope(pending.tenant or DEFAULT_TENANT, user=pending.user_id),
            ttl_s=ttl_s,
        )

    async def take_pending(self, state: str) -> PendingConsent | None:
        """The consent state, removed atomically, or None when unknown, used or expired."""
        record = await self._store.take(PENDING_NAMESPACE, state)
        return None if record is None else PendingConsent.from_json(record.value)


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
