"""Where user tokens and pending consent states live: in memory, or in a ``DurableStore``."""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

from penguiflow.core import DurableStore, Scope

from ._oauth_types import OAuthToken, PendingConsent

__all__ = [
    "DEFAULT_TENANT",
    "PENDING_NAMESPACE",
    "TOKENS_NAMESPACE",
    "DurableTokenStore",
    "InMemoryTokenStore",
    "TokenStore",
]

TOKENS_NAMESPACE = "tools.oauth.tokens"
"""Durable namespace of user tokens (key ``{tenant}/{user_id}/{provider}``)."""
PENDING_NAMESPACE = "tools.oauth.pending"
"""Durable namespace of pending consents (key = state)."""
DEFAULT_TENANT = "default"


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
