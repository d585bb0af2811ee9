"""Credentials per call: API key and bearer on every request, each user's own OAuth token on
one shared streamable-HTTP session (observed at the test server's ASGI gate)."""

import logging
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from penguiflow.tools import (
    ExternalToolConfig,
    InMemoryTokenStore,
    OAuthManager,
    OAuthProviderConfig,
    OAuthToken,
    ToolAuthError,
    ToolCallContext,
    ToolNode,
)

Gate = Any  # the conftest gate (conftest is not importable under importlib mode)
IDP = "https://idp.invalid"  # never contacted: the tokens below do not expire


def manager(store: InMemoryTokenStore | None = None) -> OAuthManager:
    provider = OAuthProviderConfig(
        "idp", f"{IDP}/authorize", f"{IDP}/token", "client", f"{IDP}/callback"
    )
    return OAuthManager([provider], token_store=store or InMemoryTokenStore())


def user(user_id: str, tenant: str = "acme") -> ToolCallContext:
    return ToolCallContext(tool_context={"user_id": user_id, "tenant": tenant})


async def test_bearer_travels_on_every_request_of_the_session(
    gate: Gate, http_config: Callable[..., ExternalToolConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PF_TEST_TOKEN", "s3cret")
    config = http_config(auth_type="bearer", auth_config={"token": "${PF_TEST_TOKEN}"})
    async with ToolNode(config) as node:
        assert (await node.call("add", {"a": 1, "b": 2})).result == {"result": 3}
    methods = {s.method for s in gate.seen}
    assert {"server/discover", "tools/list", "tools/call"} <= methods  # protocol 2026-07-28
    assert {s.authorization for s in gate.seen} == {"Bearer s3cret"}


async def test_api_key_header_is_set_per_request(
    gate: Gate, http_config: Callable[..., ExternalToolConfig]
) -> None:
    config = http_config(auth_type="api_key", auth_config={"api_key": "k-1"})
    async with ToolNode(config) as node:
        await node.call("add", {"a": 1, "b": 1})
    assert gate.seen and {s.api_key for s in gate.seen} == {"k-1"}
    assert {s.authorization for s in gate.seen} == {None}


async def test_two_users_calls_on_one_node_carry_their_own_tokens(
    gate: Gate, http_config: Callable[..., ExternalToolConfig]
) -> None:
    store = InMemoryTokenStore()
    await store.store("alice", "idp", OAuthToken("token-alice"), tenant="acme")
    await store.store("bob", "idp", OAuthToken("token-bob"), tenant="acme")
    await store.store("alice", "idp", OAuthToken("token-alice-at-beta"), tenant="beta")
    config = http_config(
        auth_type="oauth2_user",
        auth_config={"provider": "idp", "discovery_token": "disc"},
        max_concurrency=4,
    )
    callers = {1: user("alice"), 2: user("bob"), 3: user("alice", tenant="beta")}
    expected = {1: "Bearer token-alice", 2: "Bearer token-bob", 3: "Bearer token-alice-at-beta"}
    async with ToolNode(config, oauth=manager(store)) as node:
        results: dict[tuple[int, int], Any] = {}

        async def call(who: int, i: int) -> None:
            result = await node.call("add", {"a": who, "b": i}, ctx=callers[who])
            results[who, i] = result.result["result"]

        async with anyio.create_task_group() as tg:
            for i in range(10):
                for who in callers:
                    tg.start_soon(call, who, i)
        assert node.statistics().reconnects == 0
    assert results == {(w, i): w + i for w in callers for i in range(10)}
    calls = [s for s in gate.seen if s.method == "tools/call"]
    assert len(calls) == 30
    for seen in calls:
        assert seen.authorization == expected[seen.arguments["a"]], seen
    # one session (one handshake) for all of them; listing used the discovery token
    handshakes = [s for s in gate.seen if s.method in ("server/discover", "initialize")]
    assert len(handshakes) == 1 and handshakes[0].authorization == "Bearer disc"
    assert {s.authorization for s in gate.seen if s.method == "tools/list"} == {"Bearer disc"}


async def test_oauth_call_without_user_id_is_refused_before_sending(
    gate: Gate, http_config: Callable[..., ExternalToolConfig]
) -> None:
    config = http_config(auth_type="oauth2_user", auth_config={"provider": "idp"})
    async with ToolNode(config, oauth=manager()) as node:
        with pytest.raises(ToolAuthError, match=r"ctx\.tool_context\['user_id'\]"):
            await node.call("add", {"a": 1, "b": 2})
        with pytest.raises(ToolAuthError, match=r"ctx\.tool_context\['user_id'\]"):
            await node.call("add", {"a": 1, "b": 2}, ctx=ToolCallContext({"tenant": "acme"}))
        assert node.statistics().breaker == "closed"
    assert gate.calls == {}
    # listing without a discovery token carried no credentials
    assert {s.authorization for s in gate.seen} == {None}


def test_an_unknown_provider_is_refused_at_construction(
    http_config: Callable[..., ExternalToolConfig],
) -> None:
    config = http_config(auth_type="oauth2_user", auth_config={"provider": "nope"})
    with pytest.raises(ToolAuthError, match="no OAuth provider 'nope'"):
        ToolNode(config, oauth=manager())


async def test_secrets_never_reach_logs_or_errors(
    gate: Gate,
    http_config: Callable[..., ExternalToolConfig],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("PF_TEST_LOGGED", "never-logged-s3cret")
    config = http_config(auth_type="bearer", auth_config={"token": "${PF_TEST_LOGGED}"})
    caplog.set_level(logging.DEBUG)
    with anyio.fail_after(30):
        async with ToolNode(config) as node:
            await node.call("add", {"a": 1, "b": 1})
            gate.force("add", 401)
            with pytest.raises(ToolAuthError) as caught:
                await node.call("add", {"a": 1, "b": 1})
    assert {s.authorization for s in gate.seen} == {"Bearer never-logged-s3cret"}  # it was sent
    assert caplog.records  # the SDKs did log at DEBUG
    assert "never-logged-s3cret" not in caplog.text
    assert "never-logged-s3cret" not in repr(caught.value.to_payload())
    assert "never-logged-s3cret" not in repr(config)
