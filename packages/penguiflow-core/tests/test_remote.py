"""RemoteNode bridges a node to an external agent: results, streamed chunks, cancel mirroring."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from penguiflow.core import (
    FlowError,
    Headers,
    InMemoryStateStore,
    Message,
    RemoteBinding,
    RemoteCallRequest,
    RemoteCallResult,
    RemoteNode,
    RemoteStreamEvent,
    RemoteTransport,
    StreamChunk,
    TraceCancelled,
    create,
)

AGENT = "inproc://agent"


class EchoAgent:
    """An in-process remote agent: echoes upper-cased text, streams it word by word."""

    def __init__(self) -> None:
        self.cancelled: list[tuple[str, str]] = []
        self.started = anyio.Event()
        self.hang = False

    async def send(self, request: RemoteCallRequest) -> RemoteCallResult:
        text = str(request.message.payload)
        return RemoteCallResult(
            result=text.upper(), context_id="ctx-1", task_id="task-1", meta={"agent": "echo"}
        )

    async def stream(self, request: RemoteCallRequest) -> AsyncIterator[RemoteStreamEvent]:
        yield RemoteStreamEvent(task_id=f"task-{request.message.trace_id}", context_id="ctx-1")
        self.started.set()
        if self.hang:
            await anyio.sleep_forever()
        words = str(request.message.payload).split()
        for index, word in enumerate(words):
            yield RemoteStreamEvent(text=word, done=index == len(words) - 1)
        yield RemoteStreamEvent(result=" ".join(words).upper())

    async def cancel(self, *, agent_url: str, task_id: str) -> None:
        self.cancelled.append((agent_url, task_id))


def msg(payload: str, trace_id: str = "t1") -> Message:
    return Message(payload=payload, headers=Headers(tenant="acme"), trace_id=trace_id)


async def test_echo_agent_satisfies_the_transport_protocol() -> None:
    # async: the agent makes an anyio.Event, which anyio 4.0 (the minimum) allows only in a loop
    assert isinstance(EchoAgent(), RemoteTransport)


async def test_remote_call_returns_the_agents_result_and_records_the_binding() -> None:
    store = InMemoryStateStore()
    agent = EchoAgent()
    node = RemoteNode(transport=agent, skill="echo", agent_url=AGENT, name="remote")
    flow = create(node.to(), state_store=store)
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(msg("hello there"))
            result = await flow.fetch(trace_id="t1")
    assert isinstance(result, Message)
    assert result.payload == "HELLO THERE"
    assert result.meta == {"agent": "echo"}
    assert [(b.trace_id, b.task_id, b.context_id, b.agent_url) for b in store.bindings] == [
        ("t1", "task-1", "ctx-1", AGENT)
    ]
    (binding,) = store.bindings
    assert (binding.remote_skill, binding.tenant_id, binding.last_remote_task_id) == (
        "echo",
        "acme",
        "task-1",
    )
    assert (binding.router_session_id, binding.user_id, binding.is_terminal) == (None, None, False)
    assert dict(binding.metadata) == {"source": "remote_node"}


async def test_the_binding_names_the_session_and_user_from_the_message_meta() -> None:
    store = InMemoryStateStore()
    node = RemoteNode(transport=EchoAgent(), skill="echo", agent_url=AGENT, name="remote")
    flow = create(node.to(), state_store=store)
    message = msg("hello").with_meta(session_id="s-1", user_id="u-7", tenant_id="other")
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(message)
            await flow.fetch(trace_id="t1")
    (binding,) = store.bindings
    assert (binding.router_session_id, binding.user_id, binding.tenant_id) == (
        "s-1",
        "u-7",
        "other",
    )


async def test_streaming_remote_call_mirrors_chunks_in_order_then_the_result() -> None:
    agent = EchoAgent()
    node = RemoteNode(transport=agent, skill="echo", agent_url=AGENT, name="remote", streaming=True)
    flow = create(node.to())
    items: list[object] = []
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(msg("one two three"))
            while True:
                item = await flow.fetch(trace_id="t1")
                if not isinstance(item, Message):
                    items.append(item)
                    break
                items.append(item.payload)
    chunks = [c for c in items if isinstance(c, StreamChunk)]
    # One chunk per text event, done as the agent said: no chunk is added.
    assert [(c.seq, c.text, c.done) for c in chunks] == [
        (0, "one", False),
        (1, "two", False),
        (2, "three", True),
    ]
    assert all(c.stream_id == "t1" for c in chunks)
    assert items[-1] == "ONE TWO THREE"


async def test_cancelling_the_trace_cancels_the_remote_task() -> None:
    agent = EchoAgent()
    agent.hang = True
    node = RemoteNode(transport=agent, skill="echo", agent_url=AGENT, name="remote", streaming=True)
    flow = create(node.to())
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(msg("never finishes", trace_id="doomed"))
            await agent.started.wait()
            assert await flow.cancel("doomed")
            with pytest.raises(TraceCancelled):
                await flow.fetch(trace_id="doomed")
    assert agent.cancelled == [(AGENT, "task-doomed")]
    assert flow.statistics().live_traces == 0


async def test_a_failing_binding_store_is_counted_not_fatal() -> None:
    class BrokenStore(InMemoryStateStore):
        async def save_remote_binding(self, binding: RemoteBinding) -> None:
            raise OSError("disk full")

    node = RemoteNode(transport=EchoAgent(), skill="echo", agent_url=AGENT, name="remote")
    flow = create(node.to(), state_store=BrokenStore())
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(msg("still works"))
            result = await flow.fetch(trace_id="t1")
            assert result.payload == "STILL WORKS"
            assert flow.statistics().store_errors == 1


async def test_a_failing_remote_call_becomes_a_flow_error() -> None:
    class DownAgent(EchoAgent):
        async def send(self, request: RemoteCallRequest) -> RemoteCallResult:
            raise ConnectionError("agent unreachable")

    node = RemoteNode(transport=DownAgent(), skill="echo", agent_url=AGENT, name="remote")
    flow = create(node.to(), emit_errors_to_rookery=True)
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(msg("hi"))
            error = await flow.fetch(trace_id="t1")
    assert isinstance(error, FlowError)
    assert error.node_name == "remote"
    assert isinstance(error.unwrap(), ConnectionError)
