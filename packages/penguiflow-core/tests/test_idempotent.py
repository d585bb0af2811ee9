"""idempotent(): one side effect per key, across calls, concurrent callers, failures and leases."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from penguiflow.core import (
    Headers,
    InMemoryDurableStore,
    Journal,
    Message,
    Node,
    Scope,
    create,
    idempotent,
)

ACME = Scope("acme")


class Receipt(BaseModel):
    id: str
    cents: int


async def test_the_effect_runs_once_and_later_calls_return_the_recorded_result() -> None:
    store = InMemoryDurableStore()
    calls = 0

    async def charge() -> Receipt:
        nonlocal calls
        calls += 1
        return Receipt(id="r1", cents=500)

    first = await idempotent("charge:1", charge, store=store, scope=ACME, result_type=Receipt)
    second = await idempotent("charge:1", charge, store=store, scope=ACME, result_type=Receipt)
    untyped = await idempotent("charge:1", charge, store=store, scope=ACME)
    assert calls == 1
    assert first == second == Receipt(id="r1", cents=500)
    assert untyped == {"id": "r1", "cents": 500}  # the first call returns the recorded form too
    assert await idempotent("charge:2", charge, store=store, scope=ACME) == untyped
    assert calls == 2


@settings(max_examples=15, deadline=None)
@given(st.integers(min_value=2, max_value=12))
def test_concurrent_callers_share_one_run(callers: int) -> None:
    async def main() -> None:
        store = InMemoryDurableStore()
        calls = 0
        results: list[Any] = []

        async def slow() -> int:
            nonlocal calls
            calls += 1
            await anyio.sleep(0.02)
            return 42

        async def call() -> None:
            results.append(await idempotent("k", slow, store=store, scope=ACME))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for _ in range(callers):
                    tg.start_soon(call)
        assert calls == 1
        assert results == [42] * callers

    anyio.run(main)


async def test_a_failed_effect_releases_its_lease_and_a_later_call_tries_again() -> None:
    store = InMemoryDurableStore()
    attempts = 0

    async def flaky() -> str:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ConnectionError("payment gateway down")
        return "ok"

    with pytest.raises(ConnectionError):
        await idempotent("pay", flaky, store=store, scope=ACME)
    assert await store.get("pf.once", "pay", scope=ACME) is None
    assert await idempotent("pay", flaky, store=store, scope=ACME) == "ok"
    assert attempts == 2


async def test_an_expired_lease_of_a_dead_holder_is_taken_over() -> None:
    now = [1000.0]
    store = InMemoryDurableStore(clock=lambda: now[0])
    # A holder that claimed the key and died before recording anything.
    await store.put("pf.once", "job", b'{"lease":"dead"}', scope=ACME, ttl_s=60, if_version=0)

    async def effect() -> str:
        return "done"

    waiter_result: list[str] = []

    async def waiter() -> None:
        waiter_result.append(await idempotent("job", effect, store=store, scope=ACME))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.sleep(0.05)
            assert waiter_result == []  # still waiting for the live-looking lease
            now[0] += 61  # the lease expires
    assert waiter_result == ["done"]


async def test_inside_a_journaled_node_store_and_scope_default_to_the_journals() -> None:
    store = InMemoryDurableStore()

    async def node(msg: Message, ctx: Any) -> Message:
        async def effect() -> str:
            return "made"

        return msg.with_payload(await idempotent("effect", effect))

    flow = create(Node(node, name="n").to(), journal=Journal(store))
    async with flow.running():
        await flow.emit(Message(payload="x", headers=Headers(tenant="t1", user="u")))
        with anyio.fail_after(5):
            assert (await flow.fetch()).payload == "made"
    assert await store.get("pf.once", "effect", scope=Scope("t2")) is None  # fail-closed
    record = await store.get("pf.once", "effect", scope=Scope("t1", user="u"))
    assert record is not None and record.scope == Scope("t1", user="u")


async def test_outside_a_journaled_node_store_and_scope_are_required() -> None:
    async def effect() -> None:
        return None

    with pytest.raises(ValueError, match="needs store= and scope="):
        await idempotent("k", effect)
    with pytest.raises(ValueError, match="needs store= and scope="):
        await idempotent("k", effect, store=InMemoryDurableStore())
    with pytest.raises(ValueError):
        await idempotent("", effect, store=InMemoryDurableStore(), scope=ACME)
    with pytest.raises(ValueError):
        await idempotent("k", effect, store=InMemoryDurableStore(), scope=ACME, lease_s=0)
