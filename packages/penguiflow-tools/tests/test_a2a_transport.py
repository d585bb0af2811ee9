"""Calling A2A agents: ``A2ATransport`` under a core ``RemoteNode``, against real servers."""

from __future__ import annotations

import socket
from collections.abc import AsyncGenerator
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from a2a.client import ClientConfig, create_client
from a2a.types import GetTaskRequest, TaskState
from pydantic import BaseModel

from penguiflow.core import (
    Context,
    Headers,
    Message,
    Node,
    PenguiFlow,
    RemoteCallRequest,
    RemoteNode,
    RemoteStreamEvent,
    RemoteTransport,
    StreamChunk,
    create,
    stream_flow,
    tool,
)
from penguiflow.planner import ReactPlanner
from penguiflow.testkit import ScriptedLLM
from penguiflow.tools import (
    A2AServer,
    A2ASkill,
    A2ATransport,
    ToolAuthError,
    ToolClientError,
    ToolConnectionError,
    ToolServerError,
    ToolTimeoutError,
    agent_card,
    flow_agent,
    planner_agent,
    serve_a2a,
)

CARD = agent_card("remote", "A remote echo agent", skills=[A2ASkill("echo", "Echo", "Echoes")])


@dataclass
class Probe:
    started: anyio.Event = field(default_factory=anyio.Event)
    cancelled: anyio.Event = field(default_factory=anyio.Event)
    seen: list[Message] = field(default_factory=lambda: [])


def remote_flow() -> tuple[PenguiFlow, Probe]:
    probe = Probe()

    async def agent(msg: Message, ctx: Context) -> Any:
        probe.seen.append(msg)
        payload = msg.payload
        if payload == "stream":
            for i, text in enumerate(("x", "y", "z")):
                await ctx.emit_chunk(parent=msg, text=text, done=i == 2)
            return {"streamed": 3}
        if payload == "block":
            probe.started.set()
            try:
                await anyio.Event().wait()
            except anyio.get_cancelled_exc_class():
                probe.cancelled.set()
                raise
        if payload == "fail":
            raise RuntimeError("remote boom")
        if isinstance(payload, str):
            return payload.upper()
        return {"echo": payload}

    return create(Node(agent, name="agent").to()), probe


@asynccontextmanager
async def remote() -> AsyncGenerator[tuple[A2AServer, Probe, A2ATransport]]:
    flow, probe = remote_flow()
    async with serve_a2a(flow_agent(flow), card=CARD) as server, A2ATransport() as transport:
        yield server, probe, transport


def request(server: A2AServer, payload: Any, **kwargs: Any) -> RemoteCallRequest:
    message = Message(payload=payload, headers=Headers(tenant="t"))
    return RemoteCallRequest(message=message, skill="echo", agent_url=server.url, **kwargs)


async def remote_state(server: A2AServer, task_id: str) -> int:
    client = await create_client(server.url, ClientConfig(streaming=False))
    try:
        return (await client.get_task(GetTaskRequest(id=task_id))).status.state
    finally:
        await client.close()


def test_the_transport_is_a_core_remote_transport() -> None:
    assert isinstance(A2ATransport(), RemoteTransport)


async def test_a_remote_node_streams_the_remote_chunks_into_the_local_trace() -> None:
    async with remote() as (server, _, transport):
        node = RemoteNode(
            transport=transport, skill="echo", agent_url=server.url, name="r", streaming=True
        )
        local = create(node.to())
        items: list[Any] = []
        async with local.running():
            with anyio.fail_after(10):
                message = Message(payload="stream", headers=Headers(tenant="t"))
                async with aclosing(stream_flow(local, message, include_final=True)) as stream:
                    async for item in stream:
                        items.append(item)
    chunks = [i for i in items if isinstance(i, StreamChunk)]
    assert [c.text for c in chunks] == ["x", "y", "z"]
    assert [c.seq for c in chunks] == [0, 1, 2]
    assert items[len(chunks) :] == [{"streamed": 3}]


async def test_the_stream_gives_the_task_id_first_then_texts_then_one_done_result() -> None:
    async with remote() as (server, _, transport):
        with anyio.fail_after(10):
            events: list[RemoteStreamEvent] = []
            async with aclosing(transport.stream(request(server, "stream"))) as stream:
                async for event in stream:
                    events.append(event)
    first = events[0]
    assert first.task_id is not None and first.text is None and not first.done
    assert [e.text for e in events[1:-1]] == ["x", "y", "z"]
    assert [e.done for e in events] == [False] * 4 + [True]
    assert events[-1].result == {"streamed": 3} and events[-1].text is None


async def test_send_returns_the_result_artifact_and_the_task_ids() -> None:
    async with remote() as (server, probe, transport):
        with anyio.fail_after(10):
            text = await transport.send(request(server, "hello"))
            data = await transport.send(request(server, {"n": 3, "xs": [1, 2]}))
    assert text.result == "HELLO"
    assert data.result == {"echo": {"n": 3, "xs": [1, 2]}}
    assert text.task_id == probe.seen[0].trace_id
    assert text.context_id == probe.seen[0].meta["a2a"]["context_id"]
    assert text.agent_url == server.url


async def test_a_non_streaming_remote_node_returns_the_remote_result() -> None:
    async with remote() as (server, _, transport):
        node = RemoteNode(transport=transport, skill="echo", agent_url=server.url, name="r")
        local = create(node.to())
        async with local.running():
            with anyio.fail_after(10):
                result = await local.call_node(
                    node, Message(payload="hi", headers=Headers(tenant="t"))
                )
    assert result == "HI"


async def test_context_id_and_metadata_continue_the_remote_conversation() -> None:
    async with remote() as (server, probe, transport):
        with anyio.fail_after(10):
            first = await transport.send(request(server, "one"))
            second = await transport.send(
                request(server, "two", context_id=first.context_id, metadata={"k": "v"})
            )
    assert first.context_id is not None
    assert second.context_id == first.context_id
    assert probe.seen[1].meta["a2a"]["context_id"] == first.context_id


async def test_cancelling_a_streaming_remote_node_cancels_the_remote_task() -> None:
    async with remote() as (server, probe, transport):
        node = RemoteNode(
            transport=transport, skill="echo", agent_url=server.url, name="r", streaming=True
        )
        local = create(node.to())
        async with local.running():
            message = Message(payload="block", headers=Headers(tenant="t"))
            with anyio.fail_after(10):
                await local.emit(message)
                await probe.started.wait()
                assert await local.cancel(message.trace_id)
                await probe.cancelled.wait()
                remote_task = probe.seen[0].trace_id
                state = await remote_state(server, remote_task)
    assert state == TaskState.TASK_STATE_CANCELED


async def test_cancelling_send_cancels_the_remote_task() -> None:
    async with remote() as (server, probe, transport):
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(transport.send, request(server, "block"))
                await probe.started.wait()
                tg.cancel_scope.cancel()
            await probe.cancelled.wait()
            state = await remote_state(server, probe.seen[0].trace_id)
    assert state == TaskState.TASK_STATE_CANCELED


async def test_send_past_its_timeout_is_a_timeout_error_and_cancels_the_remote_task() -> None:
    async with remote() as (server, probe, transport):
        with anyio.fail_after(10):
            with pytest.raises(ToolTimeoutError) as caught:
                await transport.send(request(server, "block", timeout_s=0.5))
            await probe.cancelled.wait()
    assert caught.value.timeout_s == 0.5 and caught.value.source == "a2a"


async def test_a_failed_remote_task_is_a_server_error_with_its_status_text() -> None:
    async with remote() as (server, _, transport):
        with anyio.fail_after(10), pytest.raises(ToolServerError) as caught:
            await transport.send(request(server, "fail"))
    error = caught.value
    assert "[NODE_EXCEPTION]" in str(error) and "remote boom" in str(error)
    assert error.detail["state"] == "FAILED"
    assert error.source == "a2a" and not error.retryable  # a failed task is not re-run blindly


async def test_a_failing_stream_raises_after_the_task_id() -> None:
    async with remote() as (server, _, transport):
        events: list[RemoteStreamEvent] = []
        with anyio.fail_after(10), pytest.raises(ToolServerError):
            async with aclosing(transport.stream(request(server, "fail"))) as stream:
                async for event in stream:
                    events.append(event)
    assert len(events) == 1 and events[0].task_id is not None


# -------------------------------------------------------------- remote planner pauses


class Ask(BaseModel):
    q: str


@tool()
async def ask(args: Ask, ctx: Any) -> Ask:
    return Ask(q=str(await ctx.pause("await_input", {"question": args.q})))


@tool()
async def consent(args: Ask, ctx: Any) -> Ask:
    return Ask(q=str(await ctx.pause("external_event", {"kind": "oauth_consent"})))


def _call(node: str, **args: Any) -> dict[str, Any]:
    return {"next_node": node, "args": args}


def _final(answer: str) -> dict[str, Any]:
    return {"next_node": "final_response", "args": {"answer": answer}}


async def test_input_required_is_a_client_error_and_the_task_id_continues_it() -> None:
    planner = ReactPlanner(ScriptedLLM([_call("ask", q="who?"), _final("hi Ada")]), nodes=[ask])
    async with serve_a2a(planner_agent(planner), card=CARD) as server, A2ATransport() as transport:
        with anyio.fail_after(10):
            with pytest.raises(ToolClientError) as caught:
                await transport.send(request(server, "greet"))
            detail = caught.value.detail
            assert detail["state"] == "INPUT_REQUIRED"
            done = await transport.send(
                request(server, "Ada", task_id=detail["task_id"], context_id=detail["context_id"])
            )
    assert done.result == "hi Ada" and done.task_id == detail["task_id"]


async def test_auth_required_is_an_auth_error() -> None:
    planner = ReactPlanner(ScriptedLLM([_call("consent", q="x"), _final("ok")]), nodes=[consent])
    async with serve_a2a(planner_agent(planner), card=CARD) as server, A2ATransport() as transport:
        with anyio.fail_after(10), pytest.raises(ToolAuthError) as caught:
            await transport.send(request(server, "go"))
    assert caught.value.detail["state"] == "AUTH_REQUIRED"


# --------------------------------------------------------------------------- bad input


def test_a_non_positive_timeout_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="timeout_s"):
        A2ATransport(timeout_s=0)


async def test_an_unreachable_agent_is_a_connection_error_naming_the_url() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    message = Message(payload="hi", headers=Headers(tenant="t"))
    async with A2ATransport() as transport:
        with anyio.fail_after(10), pytest.raises(ToolConnectionError, match=url):
            await transport.send(RemoteCallRequest(message=message, skill="echo", agent_url=url))
