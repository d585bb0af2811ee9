"""Conformance checks of flow history on a ``DurableStore`` (``as_state_store``, a real flow)."""

from __future__ import annotations

import json
from typing import Any

import anyio

from penguiflow.core import (
    Headers,
    Message,
    Node,
    RemoteBinding,
    Scope,
    as_state_store,
    create,
)

from ._store_support import (
    A_U1,
    A,
    B,
    ManualClock,
    StoreOpener,
    asyncio_test,
    bounded,
    history_of,
    stored_event,
)

__all__ = ["HistoryChecks"]


class HistoryChecks:
    """Flow history on the store: events, remote bindings, a real flow, erase."""

    # ------------------------------------------------------------------ flow history (§3)
    @asyncio_test
    async def test_save_event_is_idempotent_by_event_id(self, open_store: StoreOpener) -> None:
        """Saving an event twice keeps one copy, in stream ``pf.events/{trace_id}``."""
        async with bounded(open_store(ManualClock())) as store:
            history = history_of(store)
            event = stored_event("t1", 1, scope=A)
            await history.save_event(event)
            await history.save_event(event)
            assert [e.event_id for e in await history.load_history("t1")] == ["t1:1"]
            entries = await store.read("pf.events/t1", scope=A)
            assert [(e.seq, e.idempotency_key) for e in entries] == [(1, "t1:1")]

    @asyncio_test
    async def test_load_history_returns_events_in_save_order(self, open_store: StoreOpener) -> None:
        """Events of one trace come back in the order saved, with their fields."""
        async with bounded(open_store(ManualClock())) as store:
            history = history_of(store)
            for n in (3, 1, 2, 5, 4):
                await history.save_event(stored_event("t1", n))
            await history.save_event(stored_event("t2", 9))
            loaded = await history.load_history("t1")
            assert [e.event_id for e in loaded] == ["t1:3", "t1:1", "t1:2", "t1:5", "t1:4"]
            first = loaded[0]
            assert (first.trace_id, first.kind, first.node_name, first.node_id) == (
                "t1",
                "node_start",
                "node3",
                "id3",
            )
            assert (first.ts, dict(first.payload)) == (1.0, {"n": 3})
            assert await history.load_history("unknown") == []
            # Events without a scope are kept under tenant "-".
            assert len(await store.read("pf.events/t1", scope=Scope("-"))) == 5

    @asyncio_test
    async def test_save_remote_binding_is_a_pf_remote_record(self, open_store: StoreOpener) -> None:
        """A binding is JSON in record ``pf.remote`` / ``{trace_id}/{task_id}`` under its scope."""
        async with bounded(open_store(ManualClock())) as store:
            binding = RemoteBinding(
                trace_id="t1",
                context_id="c1",
                task_id="task-9",
                agent_url="https://agent.invalid",
                tenant_id="acme",
                metadata={"k": "v"},
                scope=A_U1,
            )
            await history_of(store).save_remote_binding(binding)
            record = await store.get("pf.remote", "t1/task-9", scope=A_U1)
            assert record is not None and record.scope == A_U1
            data = json.loads(record.value)
            assert (data["task_id"], data["agent_url"], data["context_id"]) == (
                "task-9",
                "https://agent.invalid",
                "c1",
            )
            assert data["metadata"] == {"k": "v"}
            assert await store.get("pf.remote", "t1/task-9", scope=B) is None

    @asyncio_test
    async def test_a_flow_records_its_history_in_the_store(self, open_store: StoreOpener) -> None:
        """``create(..., state_store=store)``: ``flow.load_history`` returns the trace's events."""

        async def shout(message: Message, _ctx: Any) -> Message:
            return message.with_payload(str(message.payload).upper())

        async with bounded(open_store(ManualClock())) as store:
            flow = create(Node(shout, name="shout").to(), state_store=history_of(store))
            message = Message(payload="hi", headers=Headers(tenant="acme"))
            async with flow.running():
                await flow.emit(message)
                result = await flow.fetch(trace_id=message.trace_id)
                # Events are saved off the hot path; load_history flushes what is buffered,
                # and the one being saved at that moment lands shortly after.
                events = await flow.load_history(message.trace_id)
                while "node_success" not in [e.kind for e in events]:
                    await anyio.sleep(0.001)
                    events = await flow.load_history(message.trace_id)
            assert result.payload == "HI"
            kinds = [e.kind for e in events]
            assert "node_start" in kinds and "node_success" in kinds
            assert kinds.index("node_start") < kinds.index("node_success")
            assert {e.trace_id for e in events} == {message.trace_id}
            assert all(e.node_name == "shout" for e in events if e.kind.startswith("node_"))
            assert len({e.event_id for e in events}) == len(events)
            again = await as_state_store(store).load_history(message.trace_id)
            assert [e.event_id for e in again] == [e.event_id for e in events]

    @asyncio_test
    async def test_erase_removes_a_tenants_flow_history(self, open_store: StoreOpener) -> None:
        """Core's ``pf.*`` data is erased like any other: history and bindings go."""
        async with bounded(open_store(ManualClock())) as store:
            history = history_of(store)
            await history.save_event(stored_event("t1", 1, scope=A))
            await history.save_event(stored_event("t2", 1, scope=B))
            binding = RemoteBinding(trace_id="t1", context_id=None, task_id="x", agent_url="u")
            await history.save_remote_binding(binding)  # no scope: tenant "-"
            assert await store.erase("acme") == 1
            assert await history.load_history("t1") == []
            assert len(await history.load_history("t2")) == 1
            assert await store.get("pf.remote", "t1/x", scope=Scope("-")) is not None
