"""The OAuth2 user flow (code + PKCE S256) against a real authorization server on 127.0.0.1:
consent as a planner pause, single-use states, durable tokens, refresh, a 401 on a user token."""

import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx
import pytest
from starlette.applications import Starlette

from penguiflow.core import InMemoryDurableStore
from penguiflow.planner import ToolContext
from penguiflow.tools import (
    ConsentResult,
    DurableTokenStore,
    ExternalToolConfig,
    InMemoryTokenStore,
    OAuthManager,
    OAuthProviderConfig,
    OAuthStateError,
    OAuthTokenError,
    TokenStore,
    ToolAuthRequired,
    ToolCallContext,
    ToolNode,
    oauth_callback_route,
)

Gate = Any  # the conftest gate (conftest is not importable under importlib mode)
Idp = Any
APP = "http://app.test"
CALLBACK = f"{APP}/oauth/callback"


def _load_idp_module() -> ModuleType:
    path = Path(__file__).parent / "support" / "oauth_idp.py"
    spec = importlib.util.spec_from_file_location("penguiflow_tools_test_idp", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


IDP_MODULE = _load_idp_module()


@pytest.fixture(scope="module")
def idp_server() -> Iterator[Idp]:
    with IDP_MODULE.running_idp() as idp:
        yield idp


@pytest.fixture
def idp(idp_server: Idp) -> Idp:
    idp_server.expires_in = 3600
    idp_server.token_requests.clear()
    idp_server.authorize_queries.clear()
    return idp_server


def provider(idp: Idp) -> OAuthProviderConfig:
    return OAuthProviderConfig(
        name="idp",
        auth_url=f"{idp.url}/authorize",
        token_url=f"{idp.url}/token",
        client_id=IDP_MODULE.CLIENT_ID,
        redirect_uri=CALLBACK,
        scopes=("read",),
        display_name="Test IdP",
        extra_authorize_params={"prompt": "consent & more"},
    )


class Paused(Exception):
    """Stands in for a run unwinding on a pause."""

    def __init__(self, reason: str, payload: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.payload = payload


async def consent_at_idp(auth_url: str, login: str) -> tuple[str, str]:
    """The user opens auth_url and logs in; the IdP redirects with a code and the state."""
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{auth_url}&login={login}", follow_redirects=False)
    assert response.status_code == 302
    location = response.headers["location"]
    assert location.startswith(CALLBACK)
    query = parse_qs(urlsplit(location).query)
    return query["code"][0], query["state"][0]


async def browser_returns(manager: OAuthManager, code: str, state: str, done: list[Any]) -> int:
    """The redirect reaches the app's callback route (in process, over httpx's ASGI transport)."""
    app = Starlette(routes=[oauth_callback_route(manager, on_complete=done.append)])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=APP) as client:
        response = await client.get("/oauth/callback", params={"code": code, "state": state})
    return response.status_code


def oauth_config(http_config: Callable[..., ExternalToolConfig]) -> ExternalToolConfig:
    return http_config(auth_type="oauth2_user", auth_config={"provider": "idp"})


async def test_consent_pauses_then_the_resumed_call_carries_the_new_token(
    idp: Idp, gate: Gate, http_config: Callable[..., ExternalToolConfig]
) -> None:
    manager = OAuthManager([provider(idp)])
    context = {"user_id": "alice", "tenant": "acme", "session_id": "s1", "trace_id": "t1"}

    async def pause(reason: str, payload: Any) -> Any:
        raise Paused(reason, payload)

    async with ToolNode(oauth_config(http_config), oauth=manager) as node:
        with pytest.raises(Paused) as paused:
            await node.call("add", {"a": 1, "b": 2}, ctx=ToolCallContext(context, pause))
        assert gate.calls == {}  # nothing sent without a token
        assert paused.value.reason == "external_event"
        payload: dict[str, Any] = paused.value.payload
        assert payload["kind"] == "oauth_consent"
        assert payload["provider"] == "idp" and payload["display_name"] == "Test IdP"
        assert payload["scopes"] == ["read"]
        query = parse_qs(urlsplit(str(payload["auth_url"])).query)
        assert query["state"] == [payload["state"]]
        assert query["code_challenge_method"] == ["S256"]
        assert query["redirect_uri"] == [CALLBACK]
        assert query["prompt"] == ["consent & more"]  # URL-encoded, decoded intact

        code, state = await consent_at_idp(payload["auth_url"], "alice")
        assert state == payload["state"]
        done: list[ConsentResult] = []
        assert await browser_returns(manager, code, state, done) == 200
        assert done == [ConsentResult("alice", "acme", "idp", "t1", "s1")]
        assert idp.token_requests == ["authorization_code"]

        async def resumed(reason: str, payload: Any) -> Any:
            return "consented"  # the planner's resume answers the pause

        result = await node.call("add", {"a": 1, "b": 2}, ctx=ToolCallContext(context, resumed))
        assert result.result == {"result": 3}
    calls = [s for s in gate.seen if s.method == "tools/call"]
    assert [s.authorization for s in calls] == [f"Bearer at-alice-{idp.issued}"]
    # the state was single-use
    with pytest.raises(OAuthStateError):
        await manager.handle_callback(code, state)


async def test_the_planners_tool_context_pauses_and_resumes(
    idp: Idp, gate: Gate, http_config: Callable[..., ExternalToolConfig]
) -> None:
    from penguiflow.planner._toolctx import PauseRequested

    manager = OAuthManager([provider(idp)])

    def planner_ctx(answers: dict[int, Any] | None) -> ToolContext:
        return ToolContext(
            llm_context={},
            tool_context={"user_id": "carol", "tenant": "acme"},
            run_id="r",
            trace_id="trace-9",
            call_id="r:0:0",
            memory_key=None,
            flow_context=None,
            answers=answers,
            pause_enabled=True,
            on_chunk=lambda _chunk: None,
        )

    async with ToolNode(oauth_config(http_config), oauth=manager) as node:
        spec = node.spec("add")
        with pytest.raises(PauseRequested) as paused:
            await spec.node.func({"a": 2, "b": 2}, planner_ctx(None))
        payload: Any = paused.value.payload
        assert paused.value.reason == "external_event" and payload["kind"] == "oauth_consent"
        code, state = await consent_at_idp(payload["auth_url"], "carol")
        result = await manager.handle_callback(code, state)
        assert result.trace_id == "trace-9"
        resumed: Any = await spec.node.func({"a": 2, "b": 2}, planner_ctx({0: "ok"}))
        assert resumed.result == {"result": 4}
    assert [s.authorization for s in gate.seen if s.method == "tools/call"] == [
        f"Bearer at-carol-{idp.issued}"
    ]


async def test_without_a_pausing_context_the_call_raises_auth_required(
    idp: Idp, gate: Gate, http_config: Callable[..., ExternalToolConfig]
) -> None:
    manager = OAuthManager([provider(idp)])
    async with ToolNode(oauth_config(http_config), oauth=manager) as node:
        with pytest.raises(ToolAuthRequired) as raised:
            await node.call("add", {"a": 1, "b": 2}, ctx=ToolCallContext({"user_id": "dave"}))
    assert raised.value.consent.provider == "idp"
    assert raised.value.detail["consent"]["kind"] == "oauth_consent"
    assert raised.value.to_payload()  # JSON-safe
    assert gate.calls == {}


async def test_states_are_single_use_and_unknown_or_expired_states_are_refused(
    idp: Idp,
) -> None:
    manager = OAuthManager([provider(idp)], state_ttl_s=0.2)
    with pytest.raises(OAuthStateError):
        await manager.handle_callback("any", "never-issued")
    consent = await manager.get_auth_request("idp", user_id="erin")
    await anyio.sleep(0.3)
    code, state = await consent_at_idp(consent.auth_url, "erin")
    with pytest.raises(OAuthStateError):
        await manager.handle_callback(code, state)
    assert idp.token_requests == []  # an expired state never reaches the token endpoint
    done: list[Any] = []
    assert await browser_returns(manager, "x", "never-issued", done) == 400
    assert done == []


async def test_a_refused_code_is_an_oauth_token_error(idp: Idp) -> None:
    manager = OAuthManager([provider(idp)])
    consent = await manager.get_auth_request("idp", user_id="frank")
    await consent_at_idp(consent.auth_url, "frank")
    with pytest.raises(OAuthTokenError, match="invalid_grant"):
        await manager.handle_callback("forged-code", consent.state)
    assert await manager.get_token("frank", "idp") is None


async def test_a_wrong_pkce_verifier_is_refused_by_the_token_endpoint(idp: Idp) -> None:
    store = InMemoryTokenStore()
    manager = OAuthManager([provider(idp)], token_store=store)
    consent = await manager.get_auth_request("idp", user_id="gina")
    code, state = await consent_at_idp(consent.auth_url, "gina")
    # another consent's verifier under this state: the IdP's PKCE check fails
    other = await manager.get_auth_request("idp", user_id="gina")
    pending = await store.take_pending(other.state)
    assert pending is not None
    await store.put_pending(state, pending, ttl_s=60)
    with pytest.raises(OAuthTokenError, match="invalid_grant"):
        await manager.handle_callback(code, state)


async def test_durable_states_and_tokens_survive_a_replica_and_erase_by_scope(
    idp: Idp,
) -> None:
    durable = InMemoryDurableStore()
    first = OAuthManager([provider(idp)], token_store=DurableTokenStore(durable))
    consent = await first.get_auth_request("idp", user_id="hana", tenant="acme")
    code, state = await consent_at_idp(consent.auth_url, "hana")
    second = OAuthManager([provider(idp)], token_store=DurableTokenStore(durable))  # a replica
    store: TokenStore = second.token_store
    assert isinstance(store, TokenStore)
    result = await second.handle_callback(code, state)
    assert (result.user_id, result.tenant) == ("hana", "acme")
    token = await first.get_token("hana", "idp", tenant="acme")
    assert token is not None and token.startswith("at-hana-")
    assert await first.get_token("hana", "idp", tenant="other") is None  # keyed by tenant
    record = await durable.get("tools.oauth.tokens", "acme/hana/idp")
    assert record is not None and record.scope.user == "hana"
    with pytest.raises(OAuthStateError):
        await first.handle_callback(code, state)  # taken by the replica
    await durable.erase("acme", user="hana")
    assert await first.get_token("hana", "idp", tenant="acme") is None


async def test_a_token_about_to_expire_is_refreshed_first(idp: Idp) -> None:
    idp.expires_in = 5  # within refresh_skew_s=30
    manager = OAuthManager([provider(idp)])
    consent = await manager.get_auth_request("idp", user_id="ivan")
    await manager.handle_callback(*await consent_at_idp(consent.auth_url, "ivan"))
    first = idp.issued
    idp.expires_in = 3600
    token = await manager.get_token("ivan", "idp")
    assert token == f"at-ivan-{first + 1}"
    assert idp.token_requests == ["authorization_code", "refresh_token"]
    assert await manager.get_token("ivan", "idp") == token  # fresh now: no more refreshes
    assert idp.token_requests == ["authorization_code", "refresh_token"]
    assert await manager.revoke("ivan", "idp") is True
    assert await manager.get_token("ivan", "idp") is None


async def test_a_401_on_a_user_token_drops_it_and_refreshes_once(
    idp: Idp, gate: Gate, http_config: Callable[..., ExternalToolConfig]
) -> None:
    manager = OAuthManager([provider(idp)])
    consent = await manager.get_auth_request("idp", user_id="jo")
    await manager.handle_callback(*await consent_at_idp(consent.auth_url, "jo"))
    old = await manager.get_token("jo", "idp")
    gate.force("add", 401)
    async with ToolNode(oauth_config(http_config), oauth=manager) as node:
        result = await node.call("add", {"a": 5, "b": 5}, ctx=ToolCallContext({"user_id": "jo"}))
        assert result.result == {"result": 10}
        new = await manager.get_token("jo", "idp")
        assert new is not None and new != old
        assert [s.authorization for s in gate.seen if s.method == "tools/call"] == [
            f"Bearer {old}",
            f"Bearer {new}",
        ]
        # a second 401 with no refresh left: the user must consent again
        gate.force("add", 401, 401)
        idp.refresh_tokens.clear()
        with pytest.raises(ToolAuthRequired):
            await node.call("add", {"a": 1, "b": 1}, ctx=ToolCallContext({"user_id": "jo"}))
        assert await manager.get_token("jo", "idp") is None
        assert node.statistics().breaker == "closed"  # auth failures do not count


async def test_a_react_planner_run_pauses_for_consent_and_resumes_with_the_token(
    idp: Idp, gate: Gate, http_config: Callable[..., ExternalToolConfig]
) -> None:
    from penguiflow.planner import PlannerFinish, PlannerPause, ReactPlanner
    from penguiflow.testkit import ScriptedLLM

    manager = OAuthManager([provider(idp)])
    context = {"user_id": "lea", "tenant": "acme"}
    async with ToolNode(oauth_config(http_config), oauth=manager) as node:
        llm = ScriptedLLM(
            [
                {"next_node": "h.add", "args": {"a": 20, "b": 22}},
                {"next_node": "final_response", "args": {"answer": "42"}},
            ]
        )
        planner = ReactPlanner(llm, catalog=list(node.specs))
        paused = await planner.run("add them", tool_context=context)
        assert isinstance(paused, PlannerPause), paused
        assert paused.reason == "external_event"
        payload: dict[str, Any] = dict(paused.payload)
        assert payload["kind"] == "oauth_consent"
        assert gate.calls == {}
        code, state = await consent_at_idp(payload["auth_url"], "lea")
        assert (await manager.handle_callback(code, state)).user_id == "lea"
        done = await planner.resume(paused.resume_token, "consented", tool_context=context)
        assert isinstance(done, PlannerFinish), done
    calls = [s for s in gate.seen if s.method == "tools/call"]
    assert [(s.arguments, s.authorization) for s in calls] == [
        ({"a": 20, "b": 22}, f"Bearer at-lea-{idp.issued}")
    ]
