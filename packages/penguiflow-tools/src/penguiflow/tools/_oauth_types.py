"""OAuth2 user-flow records: providers, tokens, pending and requested consents, and errors."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ._errors import ToolAuthError

__all__ = [
    "ConsentRequest",
    "ConsentResult",
    "OAuthProviderConfig",
    "OAuthStateError",
    "OAuthToken",
    "OAuthTokenError",
    "PendingConsent",
    "ToolAuthRequired",
]


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
