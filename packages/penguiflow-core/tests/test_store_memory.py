"""InMemoryDurableStore specifics (the shared contract runs in the testkit's conformance suite)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import anyio
import pytest

import penguiflow.core as core
from penguiflow.core import (
    DurableStore,
    Headers,
    InMemoryDurableStore,
    Message,
    Node,
    Scope,
    StateStore,
    StoreClosed,
    as_state_store,
    create,
)

# The testkit is not a dependency of core: these tests run in the full run and are skipped in
# core's isolated run, where no sibling package is installed (tests/test_isolation.py).
pytest.importorskip("penguiflow.testkit", reason="needs penguiflow-testkit (the full test run)")
from penguiflow.testkit import ManualClock  # noqa: E402

A = Scope("acme")

CODE = (
    "import json, sys, penguiflow.core; "
    "print(json.dumps([m for m in ('sqlite3', 'penguiflow.core._store_memory', "
    "'penguiflow.core._store_sqlite', 'penguiflow.core._store_history') if m in sys.modules]))"
)


def test_importing_core_loads_no_store_backend_nor_sqlite3() -> None:
    completed = subprocess.run(
        [sys.executable, "-c", CODE], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(completed.stdout) == []


def test_the_store_is_published_lazily_under_penguiflow_core() -> None:
    assert InMemoryDurableStore.__module__ == "penguiflow.core"
    assert as_state_store.__module__ == "penguiflow.core"
    assert core.InMemoryDurableStore is InMemoryDurableStore


def test_the_store_is_a_durable_store_and_a_state_store() -> None:
    store = InMemoryDurableStore()
    assert isinstance(store, DurableStore)
    assert isinstance(store, StateStore)


def test_bad_constructor_arguments_fail_at_construction() -> None:
    with pytest.raises(ValueError, match=r"retention\[.pf\..\] must be > 0 seconds"):
        InMemoryDurableStore(retention={"pf.": 0})
    with pytest.raises(TypeError, match="retention keys"):
        InMemoryDurableStore(retention={1: 5.0})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="max_value_bytes"):
        InMemoryDurableStore(max_value_bytes=0)
    with pytest.raises(TypeError, match="clock"):
        InMemoryDurableStore(clock=5.0)  # type: ignore[arg-type]


async def test_max_value_bytes_bounds_records_and_logs() -> None:
    async with InMemoryDurableStore(max_value_bytes=4) as store:
        assert await store.put("ns", "k", b"1234", scope=A) == 1
        assert await store.append("log", b"1234", scope=A) == 1
        with pytest.raises(ValueError, match="max_value_bytes=4"):
            await store.put("ns", "k", b"12345", scope=A)
        with pytest.raises(ValueError, match="max_value_bytes=4"):
            await store.append("log", b"12345", scope=A)


async def test_bytes_like_values_are_stored_as_immutable_bytes() -> None:
    async with InMemoryDurableStore() as store:
        buffer = bytearray(b"abc")
        await store.put("ns", "k", buffer, scope=A)  # type: ignore[arg-type]
        await store.append("log", memoryview(b"xyz"), scope=A)  # type: ignore[arg-type]
        buffer[0] = ord("z")
        record = await store.get("ns", "k")
        assert record is not None and record.value == b"abc" and type(record.value) is bytes
        assert [type(e.value) for e in await store.read("log")] == [bytes]


async def test_negative_if_version_is_a_value_error() -> None:
    async with InMemoryDurableStore() as store:
        with pytest.raises(ValueError, match="if_version"):
            await store.put("ns", "k", b"v", scope=A, if_version=-1)


async def test_a_caller_cancelled_before_the_operation_finds_nothing_applied() -> None:
    async with InMemoryDurableStore() as store:
        with anyio.CancelScope() as scope:
            scope.cancel()
            await store.put("ns", "k", b"v", scope=A)
        assert scope.cancelled_caught
        assert await store.get("ns", "k") is None
        with anyio.CancelScope() as scope:
            scope.cancel()
            await store.append("log", b"v", scope=A)
        assert await store.read("log") == []


async def test_an_expired_stream_starts_over_at_seq_one() -> None:
    clock = ManualClock(1000.0)
    async with InMemoryDurableStore(clock=clock) as store:
        await store.append("log", b"1", scope=A, ttl_s=5, idempotency_key="k")
        await store.append("log", b"2", scope=A)
        clock.advance(5)
        assert await store.append("log", b"new", scope=Scope("beta"), idempotency_key="k") == 1
        assert [e.value for e in await store.read("log")] == [b"new"]


async def test_aclose_drops_the_data_and_refuses_reentry() -> None:
    store = InMemoryDurableStore()
    await store.put("ns", "k", b"v", scope=A)
    assert "1 namespaces" in repr(store)
    await store.aclose()
    assert "closed" in repr(store)
    with pytest.raises(StoreClosed, match="open a new one"):
        async with store:
            pass
    with pytest.raises(StoreClosed):
        await store.save_event(_any_event())


def _any_event() -> Any:
    from penguiflow.core import StoredEvent

    return StoredEvent("e1", "t1", 1.0, "node_start", "n", "n1")


def test_as_state_store_refuses_an_object_that_is_not_a_store() -> None:
    with pytest.raises(TypeError, match="lacks put, get, append, read"):
        as_state_store(object())  # type: ignore[arg-type]


async def _shout(message: Message, _ctx: Any) -> Message:
    return message.with_payload(str(message.payload).upper())


async def test_stopping_a_flow_keeps_the_event_being_saved() -> None:
    store = InMemoryDurableStore()
    flow = create(Node(_shout, name="shout").to(), state_store=store)
    message = Message(payload="hi", headers=Headers(tenant="acme"))
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(message)
            await flow.fetch(trace_id=message.trace_id)
    kinds = [e.kind for e in await flow.load_history(message.trace_id)]
    assert kinds == ["emit", "node_start", "node_success", "fetch"]
