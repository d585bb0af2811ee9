"""Stored events and remote bindings know who owns their trace (for durable stores)."""

from __future__ import annotations

from typing import Any

import anyio

from penguiflow.core import (
    Context,
    Headers,
    InMemoryStateStore,
    Message,
    Node,
    RemoteBinding,
    Scope,
    create,
)


async def test_every_stored_event_of_a_trace_carries_its_first_messages_scope() -> None:
    async def work(message: Message, ctx: Context) -> str:
        return "done"

    store = InMemoryStateStore()
    flow = create(Node(work).to(), state_store=store)
    message = Message(
        payload="x", headers=Headers(tenant="acme", user="u1", session="s9"), trace_id="t1"
    )
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(message)
            assert await flow.fetch(trace_id="t1") == "done"
            history = await flow.load_history("t1")
    assert [e.kind for e in history][:2] == ["emit", "node_start"]
    assert {e.scope for e in history} == {Scope("acme", "u1", "s9")}


async def test_events_of_a_bare_payload_trace_have_no_scope() -> None:
    async def work(value: Any, ctx: Context) -> Any:
        return value

    store = InMemoryStateStore()
    flow = create(Node(work).to(), state_store=store)
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit("x", trace_id="bare")
            assert await flow.fetch(trace_id="bare") == "x"
            history = await flow.load_history("bare")
    assert history and {e.scope for e in history} == {None}


def test_scope_of_a_message_reads_its_headers() -> None:
    message = Message(payload=1, headers=Headers(tenant="acme", session="s"))
    assert Scope.of(message) == Scope("acme", None, "s")
    binding = RemoteBinding(trace_id="t", context_id=None, task_id="k", agent_url="x://a")
    assert binding.scope is None


async def test_a_durable_store_keeps_the_scope_and_erase_forgets_the_tenants_history() -> None:
    from penguiflow.core import InMemoryDurableStore

    async def work(message: Message, ctx: Context) -> str:
        return "done"

    async with InMemoryDurableStore() as store:
        flow = create(Node(work).to(), state_store=store)
        message = Message(payload="x", headers=Headers(tenant="acme", user="u1"), trace_id="t1")
        with anyio.fail_after(5):
            async with flow.running():
                await flow.emit(message)
                assert await flow.fetch(trace_id="t1") == "done"
        history = await flow.load_history("t1")
        assert history and {e.scope for e in history} == {Scope("acme", "u1")}
        assert await store.erase("acme", user="u1") >= 1
        assert await flow.load_history("t1") == []
