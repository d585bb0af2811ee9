"""A2A agent skills as a ``ToolNode`` source: the project's own A2A server on 127.0.0.1 (uvicorn,
a2a-sdk request handler), called by the connector through ``A2ATransport`` and the a2a-sdk
client. An ASGI gate in front of the server records the credentials of every request and can
force HTTP statuses in front of the next ``SendMessage``."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from penguiflow.core import Context, Message, Node, create
from penguiflow.tools import (
    A2ASkill,
    AuthType,
    ExternalToolConfig,
    InMemoryTokenStore,
    OAuthManager,
    OAuthProviderConfig,
    OAuthToken,
    ToolArgumentsError,
    ToolAuthError,
    ToolCallContext,
    ToolConfigError,
    ToolConnectionError,
    ToolNode,
    ToolServerError,
    TransportType,
    agent_card,
    create_a2a_app,
    flow_agent,
)
from penguiflow.tools._uvicorn import bind, serving

Scope = MutableMapping[str, Any]

SKILLS = [
    A2ASkill("shout", "Shout", "Upper-cases the message", tags=("text",)),
    A2ASkill("inspect", "Inspect", "Says what arrived", tags=("debug",)),
    A2ASkill("internal-admin", "Admin", "Not for planners"),
]


@dataclass
class Agent:
    """What the served flow saw, and the gate's records."""

    url: str = ""
    seen: list[Message] = field(default_factory=lambda: [])
    auth: list[str | None] = field(default_factory=lambda: [])
    api_keys: list[str | None] = field(default_factory=lambda: [])
    sends: int = 0
    forced: list[tuple[int, dict[str, str]]] = field(default_factory=lambda: [])
    in_flight: int = 0
    peak: int = 0
    release: anyio.Event = field(default_factory=anyio.Event)
    full_at: int = 3
    full: anyio.Event = field(default_factory=anyio.Event)
    started: anyio.Event = field(default_factory=anyio.Event)
    cancelled: anyio.Event = field(default_factory=anyio.Event)


def _flow(agent: Agent) -> Any:
    async def node(msg: Message, ctx: Context) -> Any:
        agent.seen.append(msg)
        payload = msg.payload
        if payload == "hold":
            agent.in_flight += 1
            agent.peak = max(agent.peak, agent.in_flight)
            if agent.in_flight >= agent.full_at:
                agent.full.set()
            try:
                await agent.release.wait()
            finally:
                agent.in_flight -= 1
            return "released"
        if payload == "block":
            agent.started.set()
            try:
                await anyio.Event().wait()
            except anyio.get_cancelled_exc_class():
                agent.cancelled.set()
                raise
        if payload == "fail":
            raise ValueError("boom")
        if isinstance(payload, str):
            return payload.upper()
        return {"got": payload}

    return create(Node(node, name="agent").to())


class Gate:
    def __init__(self, app: Any, agent: Agent) -> None:
        self.app, self.agent = app, agent

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            self.agent.auth.append(headers.get("authorization"))
            self.agent.api_keys.append(headers.get("x-api-key"))
            if scope["method"] == "POST":
                self.agent.sends += 1
                if self.agent.forced:
                    status, extra = self.agent.forced.pop(0)
                    raw = [(k.encode(), v.encode()) for k, v in extra.items()]
                    raw.append((b"content-type", b"text/plain"))
                    await send({"type": "http.response.start", "status": status, "headers": raw})
                    await send({"type": "http.response.body", "body": b"forced"})
                    return
        await self.app(scope, receive, send)


@asynccontextmanager
async def served() -> AsyncGenerator[Agent]:
    agent = Agent()
    sock, url = bind("127.0.0.1", 0)
    agent.url = url
    card = agent_card("helper", "Shouts and inspects", skills=SKILLS, url=url)
    app = create_a2a_app(flow_agent(_flow(agent)), card=card)
    async with serving(Gate(app, agent), sock, "test agent"):
        yield agent


def config(agent: Agent, **overrides: Any) -> ExternalToolConfig:
    values: dict[str, Any] = {
        "name": "helper",
        "transport": TransportType.A2A,
        "connection": agent.url,
        "retry_policy": {"wait_exponential_min_s": 0.0, "wait_exponential_max_s": 0.0},
    }
    values.update(overrides)
    return ExternalToolConfig(**values)


async def test_each_card_skill_becomes_a_spec_named_namespace_dot_skill_id() -> None:
    with anyio.fail_after(30):
        async with served() as agent, ToolNode(config(agent)) as node:
            specs = {s.name: s for s in node.specs}
            assert set(specs) == {"helper.shout", "helper.inspect", "helper.internal-admin"}
            shout = specs["helper.shout"]
            assert shout.desc == "Upper-cases the message"
            assert shout.side_effects == "external"
            assert shout.tags == ("a2a", "helper", "text")
            assert shout.extra["source"] == "a2a"
            assert shout.extra["remote_name"] == "shout"
            assert json.loads(json.dumps(dict(shout.extra))) == dict(shout.extra)  # JSON-safe
            assert set(shout.args_model.model_fields) == {"message", "data", "context_id"}


async def test_tool_filter_fullmatches_skill_ids() -> None:
    with anyio.fail_after(30):
        async with (
            served() as agent,
            ToolNode(config(agent, tool_filter=["shout|inspect"])) as node,
        ):
            assert [s.name for s in node.specs] == ["helper.shout", "helper.inspect"]


async def test_a_skill_call_returns_the_agents_result_artifact() -> None:
    with anyio.fail_after(30):
        async with served() as agent, ToolNode(config(agent)) as node:
            result = await node.call("helper.shout", {"message": "hi"})
            assert result.result == "HI"
            assert agent.seen[-1].payload == "hi"  # omitted optionals are not sent
            # the spec's node takes the same path (what a planner calls)
            via_node = await node.spec("shout").node.func({"message": "yo"}, None)
            assert via_node.result == "YO"
            assert node.statistics().calls == 2


async def test_data_travels_as_a_data_part_beside_the_text() -> None:
    with anyio.fail_after(30):
        async with served() as agent, ToolNode(config(agent)) as node:
            result = await node.call("inspect", {"message": "look", "data": {"n": 3}})
            assert agent.seen[-1].payload == ["look", {"n": 3}]
            assert result.result == {"got": ["look", {"n": 3}]}


async def test_context_id_continues_the_remote_conversation() -> None:
    with anyio.fail_after(30):
        async with served() as agent, ToolNode(config(agent)) as node:
            await node.call("shout", {"message": "a", "context_id": "conv-7"})
            assert agent.seen[-1].meta["a2a"]["context_id"] == "conv-7"


async def test_bad_arguments_send_nothing() -> None:
    with anyio.fail_after(30):
        async with served() as agent, ToolNode(config(agent)) as node:
            before = agent.sends
            with pytest.raises(ToolArgumentsError) as caught:
                await node.call("shout", {"text": "wrong field"})
            assert agent.sends == before
            assert json.loads(json.dumps(caught.value.errors))


async def test_a_failed_remote_task_is_a_server_error_of_the_source_not_retried() -> None:
    with anyio.fail_after(30):
        async with served() as agent, ToolNode(config(agent)) as node:
            before = agent.sends
            with pytest.raises(ToolServerError) as caught:
                await node.call("shout", {"message": "fail"})
            error = caught.value
            assert error.source == "helper" and error.tool == "helper.shout"
            assert error.detail["state"] == "FAILED"
            assert "boom" in error.message
            assert error.attempts == 1
            assert agent.sends - before == 1  # a skill is not idempotent: never re-run


async def test_503_is_retried_and_500_is_not() -> None:
    with anyio.fail_after(30):
        async with served() as agent, ToolNode(config(agent)) as node:
            agent.forced = [(503, {"retry-after": "0"})]
            before = agent.sends
            assert (await node.call("shout", {"message": "again"})).result == "AGAIN"
            assert agent.sends - before == 2
            assert node.statistics().retries == 1
            agent.forced = [(500, {})]
            before = agent.sends
            with pytest.raises(ToolServerError) as caught:
                await node.call("shout", {"message": "once"})
            assert caught.value.status_code == 500
            assert caught.value.attempts == 1
            assert agent.sends - before == 1


async def test_bearer_token_is_on_every_request_and_never_in_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PF_TEST_A2A_TOKEN", "a2a-s3cret")
    with anyio.fail_after(30):
        async with served() as agent:
            cfg = config(agent, auth_type="bearer", auth_config={"token": "${PF_TEST_A2A_TOKEN}"})
            assert "a2a-s3cret" not in repr(cfg)
            async with ToolNode(cfg) as node:
                await node.call("shout", {"message": "x"})
                assert agent.auth and set(agent.auth) == {"Bearer a2a-s3cret"}  # card + calls
                agent.forced = [(401, {})]
                with pytest.raises(ToolAuthError) as caught:
                    await node.call("shout", {"message": "y"})
                assert caught.value.status_code == 401
                assert "a2a-s3cret" not in str(caught.value)
                assert "a2a-s3cret" not in json.dumps(caught.value.to_payload())


async def test_api_key_header_is_set_per_request() -> None:
    with anyio.fail_after(30):
        async with served() as agent:
            cfg = config(agent, auth_type=AuthType.API_KEY, auth_config={"api_key": "k-9"})
            async with ToolNode(cfg) as node:
                await node.call("shout", {"message": "x"})
            assert agent.api_keys and set(agent.api_keys) == {"k-9"}
            assert set(agent.auth) == {None}


async def test_two_users_calls_carry_their_own_oauth_tokens() -> None:
    store = InMemoryTokenStore()
    idp = "https://idp.invalid"  # never contacted: the tokens do not expire
    oauth = OAuthManager(
        [OAuthProviderConfig("idp", f"{idp}/a", f"{idp}/t", "client", f"{idp}/cb")],
        token_store=store,
    )
    await store.store("ann", "idp", OAuthToken("tok-ann"), tenant="acme")
    await store.store("bob", "idp", OAuthToken("tok-bob"), tenant="acme")
    with anyio.fail_after(30):
        async with served() as agent:
            cfg = config(agent, auth_type="oauth2_user", auth_config={"provider": "idp"})
            async with ToolNode(cfg, oauth=oauth) as node:
                agent.auth.clear()

                async def one(user: str) -> None:
                    ctx = ToolCallContext(tool_context={"user_id": user, "tenant": "acme"})
                    assert (await node.call("shout", {"message": user}, ctx=ctx)).result == (
                        user.upper()
                    )

                async with anyio.create_task_group() as tg:
                    for user in ("ann", "bob", "ann", "bob"):
                        tg.start_soon(one, user)
                assert sorted(a for a in agent.auth if a) == sorted(
                    ["Bearer tok-ann"] * 2 + ["Bearer tok-bob"] * 2
                )
                with pytest.raises(ToolAuthError, match=r"tool_context\['user_id'\]"):
                    await node.call("shout", {"message": "anon"})


async def test_max_concurrency_is_exact_at_the_agent() -> None:
    with anyio.fail_after(60):
        async with served() as agent, ToolNode(config(agent, max_concurrency=3)) as node:
            results: list[Any] = []

            async def one() -> None:
                results.append((await node.call("shout", {"message": "hold"})).result)

            async with anyio.create_task_group() as tg:
                for _ in range(10):
                    tg.start_soon(one)
                await agent.full.wait()
                agent.release.set()
            assert results == ["released"] * 10
            assert agent.peak == 3
            assert node.statistics().max_in_flight == 3


async def test_cancelling_the_caller_cancels_the_remote_task_and_the_source_stays_usable() -> None:
    with anyio.fail_after(30):
        async with served() as agent, ToolNode(config(agent)) as node:
            async with anyio.create_task_group() as tg:
                tg.start_soon(node.call, "shout", {"message": "block"})
                await agent.started.wait()
                tg.cancel_scope.cancel()
            await agent.cancelled.wait()  # the served flow's node saw the cancellation
            assert (await node.call("shout", {"message": "after"})).result == "AFTER"
            assert node.statistics().failures == 0


async def test_refresh_reads_the_card_again() -> None:
    with anyio.fail_after(30):
        async with served() as agent, ToolNode(config(agent)) as node:
            before = [s.name for s in node.specs]
            gets = len(agent.auth) - agent.sends
            assert [s.name for s in await node.refresh()] == before
            assert len(agent.auth) - agent.sends > gets  # the card was fetched again


async def test_an_unreachable_agent_fails_connect_naming_the_url() -> None:
    cfg = ExternalToolConfig(
        name="gone", transport=TransportType.A2A, connection="http://127.0.0.1:1"
    )
    with anyio.fail_after(30), pytest.raises(ToolConnectionError, match=r"127\.0\.0\.1:1"):
        await ToolNode(cfg).connect()


async def test_a_card_without_skills_fails_connect() -> None:
    async def card(request: Request) -> JSONResponse:
        return JSONResponse({"name": "empty", "description": "no skills", "version": "1"})

    app = Starlette(routes=[Route("/.well-known/agent-card.json", card)])
    sock, url = bind("127.0.0.1", 0)
    with anyio.fail_after(30):
        async with serving(app, sock, "empty card"):
            cfg = ExternalToolConfig(name="empty", transport=TransportType.A2A, connection=url)
            with pytest.raises(ToolConnectionError, match="lists no skills"):
                await ToolNode(cfg).connect()


async def test_an_unset_variable_fails_connect_before_contacting_the_agent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PF_TEST_A2A_UNSET", raising=False)
    with anyio.fail_after(30):
        async with served() as agent:
            cfg = config(agent, auth_type="bearer", auth_config={"token": "${PF_TEST_A2A_UNSET}"})
            with pytest.raises(ToolConfigError, match="PF_TEST_A2A_UNSET"):
                await ToolNode(cfg).connect()
            assert agent.auth == []  # nothing reached the agent


async def test_a_react_planner_calls_a_remote_agents_skill_like_a_local_tool() -> None:
    from penguiflow.planner import PlannerFinish, ReactPlanner
    from penguiflow.testkit import ScriptedLLM

    llm = ScriptedLLM(
        [
            {"next_node": "helper.shout", "args": {"message": "hello"}},
            {"next_node": "final_response", "args": {"answer": "HELLO"}},
        ]
    )
    with anyio.fail_after(30):
        async with served() as agent, ToolNode(config(agent)) as node:
            planner = ReactPlanner(llm, catalog=list(node.specs))
            result = await planner.run("shout hello")
    assert isinstance(result, PlannerFinish), result
    assert result.trajectory.steps[0].observation == {"result": "HELLO", "artifacts": []}
    assert [m.payload for m in agent.seen] == ["hello"]
    llm.assert_exhausted()
