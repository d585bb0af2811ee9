"""Remote transports written for the original penguiflow 3.x work after changing only their imports.

The request carries the agent card, the policy timeout, the message's meta and the remote context
and task to continue; events may name the agent that produced them; a stream is mirrored chunk for
chunk, with nothing added; cancelling the trace reaches the remote task and nobody waits forever.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import MappingProxyType

import anyio
import pytest

from penguiflow.core import (
    Context,
    Headers,
    InMemoryStateStore,
    Message,
    Node,
    NodePolicy,
    RemoteCallRequest,
    RemoteCallResult,
    RemoteNode,
    RemoteStreamEvent,
    StreamChunk,
    TraceCancelled,
    create,
)

AGENT = "https://agent.example"
MOVED = "https://moved.example"


class RecordingAgent:
    """Answers every call with ``{"answer": 42}``; streams what ``events`` says."""

    def __init__(self, events: list[RemoteStreamEvent] | None = None, *, hang: bool = False):
        self.requests: list[RemoteCallRequest] = []
        self.cancelled: list[tuple[str, str]] = []
        self.events = events or []
        self.hang = hang
        self.streaming = anyio.Event()
        self.cancel_reached = anyio.Event()

    async def send(self, request: RemoteCallRequest) -> RemoteCallResult:
        self.requests.append(request)
        return RemoteCallResult(result={"answer": 42}, task_id="task-send", meta=None)

    async def stream(self, request: RemoteCallRequest) -> AsyncIterator[RemoteStreamEvent]:
        self.requests.append(request)
        for event in self.events:
            yield event
        self.streaming.set()
        if self.hang:
            await anyio.sleep_forever()

    async def cancel(self, *, agent_url: str, task_id: str) -> None:
        self.cancelled.append((agent_url, task_id))
        self.cancel_reached.set()


def _msg(**meta: object) -> Message:
    return Message(payload={"q": "penguins"}, headers=Headers(tenant="acme"), meta=dict(meta))


def test_request_fields_keep_the_originals_order() -> None:
    message = _msg()
    card = {"name": "search"}
    request = RemoteCallRequest(message, "find", AGENT, card, {"k": "v"}, 2.5, "ctx", "task")
    assert (request.agent_card, request.metadata, request.timeout_s) == (card, {"k": "v"}, 2.5)
    assert (request.context_id, request.task_id) == ("ctx", "task")
    bare = RemoteCallRequest(message=message, skill="find", agent_url=AGENT)
    assert (bare.agent_card, bare.timeout_s, bare.context_id, bare.task_id) == (None,) * 4


async def test_the_request_carries_card_timeout_meta_and_the_context_and_task_to_continue() -> None:
    store = InMemoryStateStore()
    agent = RecordingAgent()
    card = {"name": "search", "skills": ["find"]}
    node = RemoteNode(
        transport=agent,
        skill="find",
        agent_url=AGENT,
        name="remote",
        agent_card=card,
        policy=NodePolicy(validate="none", timeout_s=30),
    )
    flow = create(node.to(), state_store=store)
    message = _msg(remote_context_id="ctx-explicit", remote_task_id="task-7", user="ada")
    async with flow.running():
        with anyio.fail_after(5):
            await flow.emit(message)
            result = await flow.fetch(trace_id=message.trace_id)
    assert result == {"answer": 42}
    (request,) = agent.requests
    assert request.agent_card == card
    assert request.timeout_s == 30
    assert dict(request.metadata) == message.meta
    assert isinstance(request.metadata, MappingProxyType)  # the transport cannot change the meta
    assert (request.context_id, request.task_id) == ("ctx-explicit", "task-7")
    # The result named no context: the binding keeps the one the request continued.
    assert [(b.task_id, b.context_id, b.agent_url) for b in store.bindings] == [
        ("task-send", "ctx-explicit", AGENT)
    ]


async def test_a_plain_context_id_meta_entry_is_continued_too() -> None:
    agent = RecordingAgent()
    node = RemoteNode(transport=agent, skill="find", agent_url=AGENT, name="remote")
    flow = create(node.to())
    message = _msg(context_id="  ctx-plain  ")
    async with flow.running():
        with anyio.fail_after(5):
            await flow.emit(message)
            await flow.fetch(trace_id=message.trace_id)
    assert agent.requests[0].context_id == "ctx-plain"
    assert agent.requests[0].task_id is None


async def test_a_stream_is_mirrored_chunk_for_chunk_with_no_empty_closing_chunk() -> None:
    agent = RecordingAgent(
        [
            RemoteStreamEvent(text="chunk-1", task_id="task-s", meta={"index": 0}),
            RemoteStreamEvent(text="chunk-2", meta=None),
            RemoteStreamEvent(result={"final": True}, done=True),
        ]
    )
    node = RemoteNode(
        transport=agent, skill="draft", agent_url=AGENT, name="remote", streaming=True
    )
    flow = create(node.to())
    message = _msg()
    items: list[object] = []
    async with flow.running():
        with anyio.fail_after(5):
            await flow.emit(message)
            for _ in range(3):
                items.append(await flow.fetch(trace_id=message.trace_id))
            assert flow.statistics().live_traces == 0  # nothing more is coming
    chunks = [item.payload for item in items[:2] if isinstance(item, Message)]
    assert all(isinstance(chunk, StreamChunk) for chunk in chunks)
    assert [(c.text, c.seq, c.done, c.meta) for c in chunks] == [
        ("chunk-1", 0, False, {"index": 0}),
        ("chunk-2", 1, False, {}),
    ]
    assert items[2] == {"final": True}


async def test_a_done_text_event_makes_the_done_chunk() -> None:
    agent = RecordingAgent(
        [RemoteStreamEvent(text="all", done=True, result="ALL", context_id="c", task_id="t")]
    )
    node = RemoteNode(
        transport=agent, skill="draft", agent_url=AGENT, name="remote", streaming=True
    )
    flow = create(node.to())
    message = _msg()
    async with flow.running():
        with anyio.fail_after(5):
            await flow.emit(message)
            chunk = await flow.fetch(trace_id=message.trace_id)
            result = await flow.fetch(trace_id=message.trace_id)
    assert isinstance(chunk, Message)
    assert (chunk.payload.text, chunk.payload.done) == ("all", True)
    assert result == "ALL"


async def test_an_event_naming_another_agent_binds_and_cancels_the_task_there() -> None:
    store = InMemoryStateStore()
    first = RemoteStreamEvent(text="working", task_id="task-m", agent_url=MOVED)
    agent = RecordingAgent([first], hang=True)
    node = RemoteNode(transport=agent, skill="plan", agent_url=AGENT, name="remote", streaming=True)
    flow = create(node.to(), state_store=store)
    message = _msg(remote_context_id="ctx-m")
    async with flow.running():
        with anyio.fail_after(5):
            await flow.emit(message)
            chunk = await flow.fetch(trace_id=message.trace_id)
            assert chunk.payload.text == "working"
            await agent.streaming.wait()
            assert await flow.cancel(message.trace_id)
            await agent.cancel_reached.wait()
            with pytest.raises(TraceCancelled):
                await flow.fetch(trace_id=message.trace_id)
    assert agent.cancelled == [(MOVED, "task-m")]
    assert [(b.task_id, b.context_id, b.agent_url) for b in store.bindings] == [
        ("task-m", "ctx-m", MOVED)
    ]


async def test_a_remote_node_after_a_node_returning_a_bare_value_gets_a_message() -> None:
    async def prepare(msg: Message, ctx: Context) -> str:
        return "prepared"

    agent = RecordingAgent()
    before = Node(prepare)
    node = RemoteNode(transport=agent, skill="find", agent_url=AGENT, name="remote")
    flow = create(before.to(node), node.to())
    message = _msg(user="ada")
    async with flow.running():
        with anyio.fail_after(5):
            await flow.emit(message)
            assert await flow.fetch(trace_id=message.trace_id) == {"answer": 42}
    sent = agent.requests[0].message
    assert (sent.payload, sent.trace_id, sent.meta) == (
        "prepared",
        message.trace_id,
        {"user": "ada"},
    )


async def test_a_remote_node_function_called_without_a_message_says_what_it_needs() -> None:
    node = RemoteNode(transport=RecordingAgent(), skill="find", agent_url=AGENT, name="remote")
    with pytest.raises(TypeError, match="RemoteNode 'find' needs a Message input, got str"):
        await node.func("bare", Context(node))
