"""Serving a flow and a planner over A2A: a real uvicorn server, the official a2a-sdk client."""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import pytest
from a2a.client import Client, ClientConfig, create_client
from a2a.helpers.proto_helpers import get_data_parts, new_data_part, new_text_part
from a2a.server.tasks import InMemoryTaskStore
from a2a.types import (
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    StreamResponse,
    Task,
    TaskState,
)
from pydantic import BaseModel

from penguiflow.core import Context, InMemoryDurableStore, Node, PenguiFlow, Scope, create, tool
from penguiflow.core import Message as FlowMessage
from penguiflow.planner import ReactPlanner
from penguiflow.testkit import ScriptedLLM
from penguiflow.tools import (
    A2AServer,
    A2ASkill,
    agent_card,
    create_a2a_app,
    flow_agent,
    planner_agent,
    serve_a2a,
)

CARD = agent_card(
    "echo-agent",
    "Upper-cases text, echoes data, streams and blocks on request",
    skills=[A2ASkill("echo", "Echo", "Echoes its input", tags=("demo",), examples=("hi",))],
)


@dataclass
class Probe:
    """What the served flow's node saw."""

    started: anyio.Event = field(default_factory=anyio.Event)
    cancelled: anyio.Event = field(default_factory=anyio.Event)
    seen: list[FlowMessage] = field(default_factory=lambda: [])


def echo_flow() -> tuple[PenguiFlow, Probe]:
    probe = Probe()

    async def agent(msg: FlowMessage, ctx: Context) -> Any:
        probe.seen.append(msg)
        payload = msg.payload
        if payload == "stream":
            for i, text in enumerate(("a", "b", "c")):
                await ctx.emit_chunk(parent=msg, text=text, done=i == 2)
            return "STREAM-DONE"
        if payload == "block":
            probe.started.set()
            try:
                await anyio.Event().wait()
            except anyio.get_cancelled_exc_class():
                probe.cancelled.set()
                raise
        if payload == "fail":
            raise ValueError("boom")
        if isinstance(payload, str):
            return payload.upper()
        return {"echo": payload}

    return create(Node(agent, name="agent").to()), probe


@asynccontextmanager
async def served_flow() -> AsyncGenerator[tuple[A2AServer, Probe]]:
    flow, probe = echo_flow()
    async with serve_a2a(flow_agent(flow), card=CARD) as server:
        yield server, probe


@asynccontextmanager
async def client_for(
    server: A2AServer, *, streaming: bool = True, binding: str = "JSONRPC"
) -> AsyncGenerator[Client]:
    config = ClientConfig(streaming=streaming, supported_protocol_bindings=[binding])
    client = await create_client(server.url, config)
    try:
        yield client
    finally:
        await client.close()


def user_message(
    *parts: Part, task_id: str | None = None, context_id: str | None = None
) -> SendMessageRequest:
    message = Message(message_id=uuid.uuid4().hex, role=Role.ROLE_USER, parts=list(parts))
    if task_id is not None:
        message.task_id = task_id
    if context_id is not None:
        message.context_id = context_id
    return SendMessageRequest(message=message)


async def send(client: Client, request: SendMessageRequest) -> list[StreamResponse]:
    with anyio.fail_after(10):
        return [event async for event in client.send_message(request)]


def final_task(events: list[StreamResponse]) -> Task:
    (event,) = events
    assert event.HasField("task"), event
    return event.task


def artifact(task: Task, artifact_id: str) -> list[Part]:
    (found,) = [a for a in task.artifacts if a.artifact_id == artifact_id]
    assert found.name == artifact_id
    return list(found.parts)


def status_text(task: Task) -> str:
    return "\n".join(p.text for p in task.status.message.parts if p.HasField("text"))


# ------------------------------------------------------------------------------ the card


async def test_the_card_is_served_with_the_servers_url() -> None:
    async with served_flow() as (server, _):
        async with httpx.AsyncClient() as http:
            with anyio.fail_after(10):
                reply = await http.get(f"{server.url}/.well-known/agent-card.json")
        assert reply.status_code == 200
        card = reply.json()
        assert card["name"] == "echo-agent"
        assert [s["id"] for s in card["skills"]] == ["echo"]
        assert card["capabilities"]["streaming"] is True
        assert {i["url"] for i in card["supportedInterfaces"]} == {server.url}
        assert {i["protocolBinding"] for i in card["supportedInterfaces"]} == {
            "JSONRPC",
            "HTTP+JSON",
        }
        assert server.url.startswith("http://127.0.0.1:")


# ------------------------------------------------------------------------ a flow served


@pytest.mark.parametrize("binding", ["JSONRPC", "HTTP+JSON"])
async def test_send_runs_one_trace_and_completes_with_the_result_artifact(binding: str) -> None:
    async with (
        served_flow() as (server, probe),
        client_for(server, streaming=False, binding=binding) as client,
    ):
        task = final_task(await send(client, user_message(new_text_part("hello"))))
        assert task.status.state == TaskState.TASK_STATE_COMPLETED
        (part,) = artifact(task, "result")
        assert part.text == "HELLO"
        (seen,) = probe.seen
        assert seen.trace_id == task.id
        assert seen.headers.tenant == "default"
        assert seen.meta["a2a"] == {"task_id": task.id, "context_id": task.context_id}


async def test_a_data_part_arrives_as_its_value_and_a_dict_result_is_a_data_part() -> None:
    async with served_flow() as (server, probe), client_for(server, streaming=False) as client:
        task = final_task(await send(client, user_message(new_data_part({"n": 3, "k": "v"}))))
        assert task.status.state == TaskState.TASK_STATE_COMPLETED
        assert probe.seen[0].payload == {"n": 3, "k": "v"}  # int again, not protobuf's 3.0
        assert get_data_parts(artifact(task, "result")) == [{"echo": {"n": 3.0, "k": "v"}}]


@pytest.mark.parametrize("binding", ["JSONRPC", "HTTP+JSON"])
async def test_stream_sends_chunks_in_order_on_the_stream_artifact_then_the_result(
    binding: str,
) -> None:
    async with served_flow() as (server, _), client_for(server, binding=binding) as client:
        events = await send(client, user_message(new_text_part("stream")))
    kinds = [e.WhichOneof("payload") for e in events]
    assert kinds[0] == "task"
    assert events[0].task.status.state == TaskState.TASK_STATE_SUBMITTED
    states = [e.status_update.status.state for e in events if e.HasField("status_update")]
    assert states == [TaskState.TASK_STATE_WORKING, TaskState.TASK_STATE_COMPLETED]
    assert kinds[-1] == "status_update"
    updates = [e.artifact_update for e in events if e.HasField("artifact_update")]
    stream = [u for u in updates if u.artifact.artifact_id == "stream"]
    assert [u.artifact.parts[0].text for u in stream] == ["a", "b", "c"]
    assert [u.append for u in stream] == [False, True, True]
    assert [u.last_chunk for u in stream] == [False, False, True]
    assert updates[-1].artifact.artifact_id == "result"
    assert updates[-1].artifact.parts[0].text == "STREAM-DONE"


@pytest.mark.parametrize("binding", ["JSONRPC", "HTTP+JSON"])
async def test_get_task_returns_the_finished_task_with_both_artifacts(binding: str) -> None:
    async with served_flow() as (server, _), client_for(server, binding=binding) as client:
        events = await send(client, user_message(new_text_part("stream")))
        task_id = events[0].task.id
        with anyio.fail_after(10):
            task = await client.get_task(GetTaskRequest(id=task_id))
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    assert [p.text for p in artifact(task, "stream")] == ["a", "b", "c"]
    assert [p.text for p in artifact(task, "result")] == ["STREAM-DONE"]


@pytest.mark.parametrize("binding", ["JSONRPC", "HTTP+JSON"])
async def test_cancel_task_cancels_the_trace_and_the_blocked_node_sees_it(binding: str) -> None:
    async with served_flow() as (server, probe), client_for(server, binding=binding) as client:
        task_id: str | None = None
        announced = anyio.Event()
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:

                async def consume() -> None:
                    nonlocal task_id
                    async for event in client.send_message(user_message(new_text_part("block"))):
                        if event.HasField("task"):
                            task_id = event.task.id
                            announced.set()

                tg.start_soon(consume)
                await probe.started.wait()
                await announced.wait()
                assert task_id is not None
                async with client_for(server, binding=binding) as other:
                    cancelled = await other.cancel_task(CancelTaskRequest(id=task_id))
                assert probe.cancelled.is_set()  # flow.cancel returned after the node unwound
                assert cancelled.status.state == TaskState.TASK_STATE_CANCELED
            task = await client.get_task(GetTaskRequest(id=task_id))
        assert task.status.state == TaskState.TASK_STATE_CANCELED
        assert probe.seen[0].trace_id == task_id


async def test_a_failing_node_fails_the_task_with_the_flow_error_code() -> None:
    async with served_flow() as (server, _), client_for(server, streaming=False) as client:
        task = final_task(await send(client, user_message(new_text_part("fail"))))
    assert task.status.state == TaskState.TASK_STATE_FAILED
    assert status_text(task).startswith("[NODE_EXCEPTION] ")
    assert "boom" in status_text(task)


async def test_concurrent_tasks_share_one_flow_and_each_gets_its_own_result() -> None:
    results: dict[str, str] = {}
    async with served_flow() as (server, probe), client_for(server) as client:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:

                async def one(word: str) -> None:
                    events = [
                        e async for e in client.send_message(user_message(new_text_part(word)))
                    ]
                    done = [e.artifact_update for e in events if e.HasField("artifact_update")]
                    results[word] = done[-1].artifact.parts[0].text

                for i in range(8):
                    tg.start_soon(one, f"w{i}")
    assert results == {f"w{i}": f"W{i}" for i in range(8)}
    assert len({m.trace_id for m in probe.seen}) == 8


async def test_the_lifespan_starts_a_stopped_flow_and_leaves_a_running_one_running() -> None:
    flow, _ = echo_flow()
    async with serve_a2a(flow_agent(flow), card=CARD):
        assert flow.running_now
    assert not flow.running_now  # it started the flow, so it stopped it

    flow, _ = echo_flow()
    async with flow.running():
        async with (
            serve_a2a(flow_agent(flow), card=CARD) as server,
            client_for(server, streaming=False) as client,
        ):
            task = final_task(await send(client, user_message(new_text_part("x"))))
            assert task.status.state == TaskState.TASK_STATE_COMPLETED
        assert flow.running_now  # not its to stop


# --------------------------------------------------------------------- a planner served


class Ask(BaseModel):
    q: str


class Said(BaseModel):
    said: Any


ANSWERS: list[Any] = []


@tool()
async def ask(args: Ask, ctx: Any) -> Said:
    answer = await ctx.pause("await_input", {"question": args.q})
    ANSWERS.append(answer)
    return Said(said=answer)


@tool()
async def consent(args: Ask, ctx: Any) -> Said:
    return Said(said=await ctx.pause("external_event", {"kind": "oauth_consent", "provider": "x"}))


def _call(node: str, **args: Any) -> dict[str, Any]:
    return {"next_node": node, "args": args}


def _final(answer: str) -> dict[str, Any]:
    return {"next_node": "final_response", "args": {"answer": answer}}


async def test_a_planner_pause_is_input_required_and_the_next_message_resumes_it_once() -> None:
    ANSWERS.clear()
    llm = ScriptedLLM([_call("ask", q="name?"), _final("hello Ada")])
    planner = ReactPlanner(llm, nodes=[ask])
    async with (
        serve_a2a(planner_agent(planner), card=CARD) as server,
        client_for(server, streaming=False) as client,
    ):
        paused = final_task(await send(client, user_message(new_text_part("greet me"))))
        assert paused.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
        assert get_data_parts(list(paused.status.message.parts)) == [{"question": "name?"}]
        assert "resume_token" not in str(paused)  # the token stays on the server

        again = user_message(new_text_part("Ada"), task_id=paused.id, context_id=paused.context_id)
        done = final_task(await send(client, again))
        assert done.id == paused.id
        assert done.status.state == TaskState.TASK_STATE_COMPLETED
        assert [p.text for p in artifact(done, "result")] == ["hello Ada"]
        assert ANSWERS == ["Ada"]  # resumed exactly once, with the message's text


async def test_an_oauth_consent_pause_is_auth_required() -> None:
    planner = ReactPlanner(ScriptedLLM([_call("consent", q="x"), _final("ok")]), nodes=[consent])
    async with (
        serve_a2a(planner_agent(planner), card=CARD) as server,
        client_for(server, streaming=False) as client,
    ):
        paused = final_task(await send(client, user_message(new_text_part("do it"))))
    assert paused.status.state == TaskState.TASK_STATE_AUTH_REQUIRED
    (payload,) = get_data_parts(list(paused.status.message.parts))
    assert payload["kind"] == "oauth_consent"


async def test_a_planner_that_raises_fails_the_task() -> None:
    class Broken:
        async def run(self, query: str, *, tool_context: Any = None) -> Any:
            raise RuntimeError(f"cannot plan {query!r}")

        async def resume(
            self, token: str, *, tool_context: Any = None, user_input: Any = None
        ) -> Any:
            raise AssertionError("never paused")

    async with (
        serve_a2a(planner_agent(Broken()), card=CARD) as server,
        client_for(server, streaming=False) as client,
    ):
        task = final_task(await send(client, user_message(new_text_part("q"))))
    assert task.status.state == TaskState.TASK_STATE_FAILED
    assert status_text(task) == "RuntimeError: cannot plan 'q'"


async def test_a_planner_run_receives_tenant_session_and_task_ids() -> None:
    seen: list[dict[str, Any]] = []

    class Recorder:
        async def run(self, query: str, *, tool_context: Any = None) -> Any:
            seen.append(dict(tool_context))
            return {"payload": query}  # no resume_token: a finish

        async def resume(
            self, token: str, *, tool_context: Any = None, user_input: Any = None
        ) -> Any:
            raise AssertionError("never paused")

    async with (
        serve_a2a(planner_agent(Recorder()), card=CARD) as server,
        client_for(server, streaming=False) as client,
    ):
        task = final_task(await send(client, user_message(new_text_part("q"))))
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    assert seen == [{"tenant": "default", "session_id": task.context_id, "task_id": task.id}]


BLOCKING: dict[str, Probe] = {}


@tool()
async def wait_forever(args: Ask, ctx: Any) -> Said:
    probe = BLOCKING["probe"]
    probe.started.set()
    try:
        await anyio.Event().wait()
    except anyio.get_cancelled_exc_class():
        probe.cancelled.set()
        raise
    raise AssertionError("unreachable")


async def test_cancel_task_cancels_a_running_planner_run() -> None:
    BLOCKING["probe"] = probe = Probe()
    cancelled: Task | None = None
    planner = ReactPlanner(ScriptedLLM([_call("wait_forever", q="x")]), nodes=[wait_forever])
    async with serve_a2a(planner_agent(planner), card=CARD) as server, client_for(server) as client:
        task_id: str | None = None
        announced = anyio.Event()
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:

                async def consume() -> None:
                    nonlocal task_id
                    async for event in client.send_message(user_message(new_text_part("go"))):
                        if event.HasField("task"):
                            task_id = event.task.id
                            announced.set()

                tg.start_soon(consume)
                await probe.started.wait()
                await announced.wait()
                assert task_id is not None
                async with client_for(server) as other:
                    cancelled = await other.cancel_task(CancelTaskRequest(id=task_id))
                await probe.cancelled.wait()
    assert cancelled is not None and cancelled.status.state == TaskState.TASK_STATE_CANCELED


async def test_a_data_message_reaches_the_planner_as_json_text() -> None:
    queries: list[str] = []

    class Recorder:
        async def run(self, query: str, *, tool_context: Any = None) -> Any:
            queries.append(query)
            return {"payload": "ok"}

        async def resume(
            self, token: str, *, tool_context: Any = None, user_input: Any = None
        ) -> Any:
            raise AssertionError("never paused")

    async with (
        serve_a2a(planner_agent(Recorder()), card=CARD) as server,
        client_for(server, streaming=False) as client,
    ):
        await send(client, user_message(new_data_part({"city": "Oslo"})))
    assert queries == ['{"city": "Oslo"}']


# --------------------------------------------------------------------------- bad input


def test_serving_something_that_is_not_an_agent_is_a_type_error() -> None:
    flow, _ = echo_flow()
    with pytest.raises(TypeError, match="flow_agent"):
        create_a2a_app(flow, card=CARD)  # pyright: ignore[reportArgumentType]
    with pytest.raises(TypeError, match="PenguiFlow"):
        flow_agent(object())  # pyright: ignore[reportArgumentType]
    with pytest.raises(TypeError, match="run\\(\\) and resume\\(\\)"):
        planner_agent(object())  # pyright: ignore[reportArgumentType]


def test_a_card_without_skills_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="at least one skill"):
        agent_card("a", "b", skills=[])
    bare = type(CARD)()
    bare.CopyFrom(CARD)
    del bare.skills[:]
    flow, _ = echo_flow()
    with pytest.raises(ValueError, match="no skills"):
        create_a2a_app(flow_agent(flow), card=bare)


async def test_with_a_durable_store_the_token_survives_a_server_restart_and_is_single_use() -> None:
    ANSWERS.clear()
    store = InMemoryDurableStore()
    tasks = InMemoryTaskStore()
    planner = ReactPlanner(ScriptedLLM([_call("ask", q="name?"), _final("hi")]), nodes=[ask])
    agent = planner_agent(planner, store=store)
    async with (
        serve_a2a(agent, card=CARD, task_store=tasks) as server,
        client_for(server, streaming=False) as client,
    ):
        paused = final_task(await send(client, user_message(new_text_part("greet"))))
    assert paused.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
    record = await store.get("tools.a2a.resume", paused.id)
    assert record is not None and record.scope == Scope("default")

    async with (
        serve_a2a(planner_agent(planner, store=store), card=CARD, task_store=tasks) as server,
        client_for(server, streaming=False) as client,
    ):
        again = user_message(new_text_part("Bo"), task_id=paused.id, context_id=paused.context_id)
        done = final_task(await send(client, again))
    assert done.status.state == TaskState.TASK_STATE_COMPLETED
    assert ANSWERS == ["Bo"]
    assert await store.get("tools.a2a.resume", paused.id) is None  # taken
