"""Conformance tests for ``DurableStore`` backends, and ``ManualClock`` to drive their TTLs.

Subclass ``DurableStoreConformance`` in a test module and provide one fixture, ``open_store``,
returning a function ``open_(clock, **options)`` that opens your store on the same fresh storage
each time within a test (``options`` may carry ``retention``)::

    import pytest
    from penguiflow.testkit.stores import DurableStoreConformance

    class TestMyStore(DurableStoreConformance):
        persistent = True  # False skips the reopen test

        @pytest.fixture
        def open_store(self, tmp_path):
            return lambda clock, **options: MyStore.open(tmp_path / "db", clock=clock, **options)

The tests carry their own ``pytest.mark.asyncio`` marks (pytest-asyncio, strict or auto mode).
They cover the protocol (versions, scopes, TTLs, retention, gap-free logs, idempotency, erase,
bad input) and flow history on the store (``save_event``, ``load_history``,
``save_remote_binding``, a real flow with ``create(..., state_store=store)``). This module
imports pytest; ``import penguiflow.testkit`` does not load it.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, ClassVar, Protocol

import anyio
import pytest

from penguiflow.core import (
    DurableStore,
    Headers,
    Message,
    Node,
    RemoteBinding,
    Scope,
    ScopeMismatch,
    StateStore,
    StoreClosed,
    StoredEvent,
    VersionConflict,
    as_state_store,
    create,
)

__all__ = ["DurableStoreConformance", "ManualClock", "StoreOpener"]

_MAX_VALUE_BYTES = 16 * 1024 * 1024  # the protocol's default max_value_bytes
_BOUND_S = 10.0  # every test finishes well within this; a hang fails instead of blocking CI
_A = Scope("acme")
_B = Scope("beta")
_A_U1 = Scope("acme", "u1")
_A_U1_S1 = Scope("acme", "u1", "s1")
_asyncio = pytest.mark.asyncio


class ManualClock:
    """A clock that moves only when told: pass it as a store's ``clock`` to drive TTLs.

    Args:
        start: The initial time in seconds (default: ``time.time()`` when created).
    """

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else float(start)

    def __call__(self) -> float:
        """The current time in seconds."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (>= 0)."""
        if seconds < 0:
            raise ValueError(f"a ManualClock only moves forward; got advance({seconds})")
        self._now += seconds

    def __repr__(self) -> str:
        return f"ManualClock({self._now!r})"


class StoreOpener(Protocol):
    """What the ``open_store`` fixture returns: opens the test's store on its storage."""

    def __call__(
        self, clock: Callable[[], float], /, **options: Any
    ) -> AbstractAsyncContextManager[DurableStore]:
        """Open the store with ``clock`` (and ``options`` such as ``retention``)."""
        ...


@asynccontextmanager
async def _bounded(
    opening: AbstractAsyncContextManager[DurableStore],
) -> AsyncGenerator[DurableStore]:
    # The whole test body is bounded: a store that hangs fails the test instead of CI.
    with anyio.fail_after(_BOUND_S):
        async with opening as store:
            yield store


def _history(store: DurableStore) -> StateStore:
    return store if isinstance(store, StateStore) else as_state_store(store)


def _event(trace_id: str, n: int, *, scope: Scope | None = None) -> StoredEvent:
    return StoredEvent(
        event_id=f"{trace_id}:{n}",
        trace_id=trace_id,
        ts=1.0,  # equal timestamps: only the store's order tells events apart
        kind="node_start",
        node_name=f"node{n}",
        node_id=f"id{n}",
        payload={"n": n},
        scope=scope,
    )


async def _gather[T](calls: Sequence[Callable[[], Any]], kind: type[T]) -> list[T | BaseException]:
    """Run ``calls`` concurrently; their results (or exceptions) in call order."""
    results: list[T | BaseException] = [ValueError("not run")] * len(calls)

    async def run(i: int) -> None:
        try:
            results[i] = await calls[i]()
        except Exception as exc:
            results[i] = exc

    with anyio.fail_after(_BOUND_S):
        async with anyio.create_task_group() as tg:
            for i in range(len(calls)):
                tg.start_soon(run, i)
    return results


class DurableStoreConformance:
    """The ``DurableStore`` contract as tests: subclass it and provide ``open_store``.

    ``open_store`` is a pytest fixture returning ``open_(clock, **options)``, an async context
    manager that yields the store and closes it on exit, on the same fresh storage every time it
    is called within one test.
    """

    persistent: ClassVar[bool] = True
    """Whether data survives closing and reopening the store (False skips that test)."""

    # ------------------------------------------------------------------ versions
    @_asyncio
    async def test_put_returns_versions_and_get_the_record(self, open_store: StoreOpener) -> None:
        """A put creates at version 1 and adds one per put; get returns every field."""
        clock = ManualClock()
        async with _bounded(open_store(clock)) as store:
            assert await store.put("ns", "k", b"one", scope=_A_U1) == 1
            clock.advance(1)
            assert await store.put("ns", "k", b"two", scope=_A_U1) == 2
            record = await store.get("ns", "k")
            assert record is not None
            assert (record.namespace, record.key, record.value) == ("ns", "k", b"two")
            assert (record.scope, record.version, record.expires_at) == (_A_U1, 2, None)
            assert record.updated_at == clock()
            assert await store.get("ns", "missing") is None
            assert await store.get("other", "k") is None

    @_asyncio
    async def test_if_version_zero_creates_only(self, open_store: StoreOpener) -> None:
        """``if_version=0`` succeeds once; then ``VersionConflict(expected=0, actual=1)``."""
        async with _bounded(open_store(ManualClock())) as store:
            assert await store.put("ns", "k", b"v1", scope=_A, if_version=0) == 1
            with pytest.raises(VersionConflict) as caught:
                await store.put("ns", "k", b"v2", scope=_A, if_version=0)
            conflict = caught.value
            assert (conflict.namespace, conflict.key) == ("ns", "k")
            assert (conflict.expected, conflict.actual) == (0, 1)
            record = await store.get("ns", "k")
            assert record is not None and (record.value, record.version) == (b"v1", 1)

    @_asyncio
    async def test_if_version_n_replaces_only_that_version(self, open_store: StoreOpener) -> None:
        """``if_version=n`` replaces version n only; a missing record has version 0."""
        async with _bounded(open_store(ManualClock())) as store:
            await store.put("ns", "k", b"v1", scope=_A)
            assert await store.put("ns", "k", b"v2", scope=_A, if_version=1) == 2
            with pytest.raises(VersionConflict) as caught:
                await store.put("ns", "k", b"v3", scope=_A, if_version=1)
            assert (caught.value.expected, caught.value.actual) == (1, 2)
            with pytest.raises(VersionConflict) as missing:
                await store.put("ns", "nope", b"x", scope=_A, if_version=3)
            assert (missing.value.expected, missing.value.actual) == (3, 0)
            assert await store.get("ns", "nope") is None
            record = await store.get("ns", "k")
            assert record is not None and (record.value, record.version) == (b"v2", 2)

    @_asyncio
    async def test_concurrent_create_only_puts_have_one_winner(
        self, open_store: StoreOpener
    ) -> None:
        """Of 20 concurrent ``put(if_version=0)`` exactly one creates; the rest conflict."""
        async with open_store(ManualClock()) as store:
            calls = [
                (lambda i=i: store.put("ns", "lease", b"%d" % i, scope=_A, if_version=0))
                for i in range(20)
            ]
            results = await _gather(calls, int)
            assert [r for r in results if not isinstance(r, BaseException)] == [1]
            assert all(isinstance(r, VersionConflict) for r in results if r != 1)

    # ------------------------------------------------------------------ scopes
    @_asyncio
    async def test_put_under_another_tenant_raises_scope_mismatch(
        self, open_store: StoreOpener
    ) -> None:
        """A record belongs to its tenant: another tenant's put fails and changes nothing."""
        async with _bounded(open_store(ManualClock())) as store:
            await store.put("ns", "k", b"mine", scope=_A_U1)
            with pytest.raises(ScopeMismatch) as caught:
                await store.put("ns", "k", b"theirs", scope=_B)
            assert (caught.value.existing, caught.value.given) == (_A_U1, _B)
            record = await store.get("ns", "k")
            assert record is not None and (record.value, record.version) == (b"mine", 1)
            # Within the tenant, another user or session may write it.
            assert await store.put("ns", "k", b"same tenant", scope=_A) == 2

    @_asyncio
    async def test_append_under_another_tenant_raises_scope_mismatch(
        self, open_store: StoreOpener
    ) -> None:
        """A stream's scope is fixed by its first append; another tenant's append fails."""
        async with _bounded(open_store(ManualClock())) as store:
            assert await store.append("log", b"1", scope=_A_U1_S1) == 1
            with pytest.raises(ScopeMismatch) as caught:
                await store.append("log", b"x", scope=_B)
            assert caught.value.given == _B
            with pytest.raises(ScopeMismatch):
                await store.append("log", b"x", scope=_B, idempotency_key="k")
            assert await store.append("log", b"2", scope=_A) == 2
            # The first append's scope still decides who reads it.
            assert await store.read("log", scope=Scope("acme", "u2")) == []
            assert [e.seq for e in await store.read("log", scope=_A_U1_S1)] == [1, 2]

    @_asyncio
    async def test_get_is_fail_closed_on_scope(self, open_store: StoreOpener) -> None:
        """``get`` returns None unless the filter selects the record's scope."""
        async with _bounded(open_store(ManualClock())) as store:
            await store.put("ns", "k", b"v", scope=_A_U1_S1)
            assert await store.get("ns", "k", scope=_B) is None
            assert await store.get("ns", "k", scope=Scope("acme", "u2")) is None
            assert await store.get("ns", "k", scope=Scope("acme", "u1", "s2")) is None
            for selecting in (None, _A, _A_U1, _A_U1_S1):
                assert await store.get("ns", "k", scope=selecting) is not None
            await store.put("ns", "tenant-only", b"v", scope=_A)
            assert await store.get("ns", "tenant-only", scope=_A_U1) is None

    @_asyncio
    async def test_take_is_single_use_and_leaves_unselected_records(
        self, open_store: StoreOpener
    ) -> None:
        """``take`` returns the record once; a non-selecting scope gets None and leaves it."""
        async with _bounded(open_store(ManualClock())) as store:
            await store.put("tokens", "t1", b"secret", scope=_A_U1)
            assert await store.take("tokens", "t1", scope=_B) is None
            assert await store.take("tokens", "t1", scope=Scope("acme", "u2")) is None
            assert await store.get("tokens", "t1") is not None
            taken = await store.take("tokens", "t1", scope=_A)
            assert taken is not None and (taken.value, taken.scope) == (b"secret", _A_U1)
            assert await store.get("tokens", "t1") is None
            assert await store.take("tokens", "t1") is None

    @_asyncio
    async def test_concurrent_takes_have_exactly_one_winner(self, open_store: StoreOpener) -> None:
        """Of 50 concurrent takes of one record exactly one gets it."""
        async with open_store(ManualClock()) as store:
            await store.put("tokens", "t1", b"once", scope=_A)
            calls = [(lambda: store.take("tokens", "t1")) for _ in range(50)]
            results = await _gather(calls, object)
            assert not [r for r in results if isinstance(r, BaseException)]
            assert len([r for r in results if r is not None]) == 1

    @_asyncio
    async def test_delete_with_unselecting_scope_deletes_nothing(
        self, open_store: StoreOpener
    ) -> None:
        """``delete`` returns False and keeps the record when its scope is not selected."""
        async with _bounded(open_store(ManualClock())) as store:
            await store.put("ns", "k", b"v", scope=_A_U1)
            assert await store.delete("ns", "k", scope=_B) is False
            assert await store.delete("ns", "k", scope=Scope("acme", "u2")) is False
            assert await store.get("ns", "k") is not None
            assert await store.delete("ns", "k", scope=_A) is True
            assert await store.get("ns", "k") is None
            assert await store.delete("ns", "k") is False

    # ------------------------------------------------------------------ scan
    @_asyncio
    async def test_scan_prefix_is_literal(self, open_store: StoreOpener) -> None:
        """``%``, ``_`` and ``*`` in a prefix are plain characters."""
        keys = ["a%b", "a_b", "a*b", "axb", "a%", "ab", "b%"]
        async with _bounded(open_store(ManualClock())) as store:
            for key in keys:
                await store.put("ns", key, key.encode(), scope=_A)

            async def scanned(prefix: str) -> list[str]:
                return [r.key for r in await store.scan("ns", prefix)]

            assert await scanned("a%") == ["a%", "a%b"]
            assert await scanned("a_") == ["a_b"]
            assert await scanned("a*") == ["a*b"]
            assert await scanned("a") == sorted(k for k in keys if k.startswith("a"))
            assert await scanned("") == sorted(keys)
            assert await scanned("c") == []

    @_asyncio
    async def test_scan_orders_keys_by_utf8_bytes(self, open_store: StoreOpener) -> None:
        """Keys come back ascending by their UTF-8 bytes, whatever the insertion order."""
        keys = ["z", "é", "a", "\uffff", "\U0001f600", "A", "~", "aa", "a b", "ÿ", "Ā"]
        async with _bounded(open_store(ManualClock())) as store:
            for key in keys:
                await store.put("ns", key, b"v", scope=_A)
            found = [r.key for r in await store.scan("ns")]
            assert found == sorted(keys, key=lambda k: k.encode())
            assert [r.key for r in await store.scan("ns", after="é")] == [
                k for k in sorted(keys, key=lambda k: k.encode()) if k.encode() > "é".encode()
            ]

    @_asyncio
    async def test_scan_pages_with_after_and_limit(self, open_store: StoreOpener) -> None:
        """``after`` is exclusive and need not exist; fewer than ``limit`` means no more."""
        async with _bounded(open_store(ManualClock())) as store:
            for i in range(25):
                await store.put("ns", f"item/{i:02d}", b"%d" % i, scope=_A)
            await store.put("ns", "other", b"x", scope=_A)
            pages: list[list[str]] = []
            after: str | None = None
            while True:
                page = await store.scan("ns", "item/", after=after, limit=10)
                pages.append([r.key for r in page])
                if len(page) < 10:
                    break
                after = page[-1].key
            assert [len(p) for p in pages] == [10, 10, 5]
            assert [key for page in pages for key in page] == [f"item/{i:02d}" for i in range(25)]
            tail = await store.scan("ns", "item/", after="item/20x", limit=100)
            assert [r.key for r in tail] == [f"item/{i}" for i in range(21, 25)]
            assert await store.scan("ns", "item/", after="item/24") == []

    @_asyncio
    async def test_scan_filters_scope_and_expiry_before_limit(
        self, open_store: StoreOpener
    ) -> None:
        """Unselected and expired records are skipped, not counted against ``limit``."""
        clock = ManualClock()
        async with _bounded(open_store(clock)) as store:
            for i in range(12):
                owner = _A if i % 3 == 0 else _B
                await store.put("ns", f"k{i:02d}", b"v", scope=owner, ttl_s=5 if i == 3 else None)
            clock.advance(5)
            found = await store.scan("ns", limit=3, scope=_A)
            assert [r.key for r in found] == ["k00", "k06", "k09"]
            assert all(r.scope == _A for r in found)
            assert len(await store.scan("ns", scope=_B)) == 8
            assert await store.scan("ns", scope=Scope("gamma")) == []

    # ------------------------------------------------------------------ TTL and retention
    @_asyncio
    async def test_record_expires_when_the_clock_reaches_expires_at(
        self, open_store: StoreOpener
    ) -> None:
        """A record is invisible to get, take, delete and scan from ``clock() >= expires_at``."""
        clock = ManualClock()
        async with _bounded(open_store(clock)) as store:
            start = clock()
            await store.put("ns", "k", b"v", scope=_A, ttl_s=10)
            record = await store.get("ns", "k")
            assert record is not None and record.expires_at == start + 10
            clock.advance(9.5)
            assert await store.get("ns", "k") is not None
            clock.advance(0.5)
            assert await store.get("ns", "k") is None
            assert await store.scan("ns") == []
            assert await store.take("ns", "k") is None
            assert await store.delete("ns", "k") is False

    @_asyncio
    async def test_each_put_sets_the_ttl_anew(self, open_store: StoreOpener) -> None:
        """A put without ``ttl_s`` removes an earlier expiry; a put with one sets it from now."""
        clock = ManualClock()
        async with _bounded(open_store(clock)) as store:
            await store.put("ns", "k", b"v1", scope=_A, ttl_s=10)
            await store.put("ns", "k", b"v2", scope=_A)
            clock.advance(100)
            record = await store.get("ns", "k")
            assert record is not None and record.expires_at is None
            await store.put("ns", "k", b"v3", scope=_A, ttl_s=5)
            clock.advance(4)
            assert await store.get("ns", "k") is not None
            clock.advance(1)
            assert await store.get("ns", "k") is None

    @_asyncio
    async def test_put_over_an_expired_record_is_a_create(self, open_store: StoreOpener) -> None:
        """After expiry a put starts at version 1, ``if_version=0`` works, any tenant may."""
        clock = ManualClock()
        async with _bounded(open_store(clock)) as store:
            await store.put("ns", "k", b"a1", scope=_A, ttl_s=1)
            await store.put("ns", "k", b"a2", scope=_A, ttl_s=1)
            clock.advance(1)
            assert await store.put("ns", "k", b"b1", scope=_B, if_version=0) == 1
            record = await store.get("ns", "k", scope=_B)
            assert record is not None and (record.value, record.version) == (b"b1", 1)
            assert record.expires_at is None

    @_asyncio
    async def test_retention_defaults_use_the_longest_prefix(self, open_store: StoreOpener) -> None:
        """``retention`` gives TTLs to puts and first appends that pass none."""
        clock = ManualClock()
        retention = {"pf.": 100.0, "pf.events/": 10.0, "cache": 50.0}
        async with _bounded(open_store(clock, retention=retention)) as store:
            start = clock()
            await store.put("pf.remote", "k", b"v", scope=_A)
            await store.put("cache.x", "k", b"v", scope=_A)
            await store.put("other", "k", b"v", scope=_A)
            await store.put("cache.y", "k", b"v", scope=_A, ttl_s=5)
            expiries = [
                (r.expires_at if (r := await store.get(ns, "k")) else "missing")
                for ns in ("pf.remote", "cache.x", "other", "cache.y")
            ]
            assert expiries == [start + 100, start + 50, None, start + 5]
            await store.append("pf.events/t1", b"e", scope=_A)
            await store.append("pf.journal/t1", b"j", scope=_A)
            await store.append("logs/t1", b"l", scope=_A)
            clock.advance(10)
            assert await store.read("pf.events/t1") == []
            assert len(await store.read("pf.journal/t1")) == 1
            clock.advance(90)
            assert await store.read("pf.journal/t1") == []
            assert len(await store.read("logs/t1")) == 1
            assert await store.get("other", "k") is not None

    @_asyncio
    async def test_stream_ttl_applies_to_the_whole_stream(self, open_store: StoreOpener) -> None:
        """``append(ttl_s=...)`` sets the stream's expiry from now; None keeps it."""
        clock = ManualClock()
        async with _bounded(open_store(clock)) as store:
            await store.append("kept", b"1", scope=_A, ttl_s=10)
            await store.append("moved", b"1", scope=_A, ttl_s=10)
            clock.advance(5)
            await store.append("kept", b"2", scope=_A)
            await store.append("moved", b"2", scope=_A, ttl_s=10)
            clock.advance(5)
            assert await store.read("kept") == []
            assert [e.value for e in await store.read("moved")] == [b"1", b"2"]
            clock.advance(5)
            assert await store.read("moved") == []

    # ------------------------------------------------------------------ logs
    @_asyncio
    async def test_concurrent_appends_are_gap_free(self, open_store: StoreOpener) -> None:
        """200 concurrent appends get seqs 1..200, read back in order."""
        async with open_store(ManualClock()) as store:
            calls = [(lambda i=i: store.append("log", b"%d" % i, scope=_A)) for i in range(200)]
            results = await _gather(calls, int)
            assert sorted(r for r in results if isinstance(r, int)) == list(range(1, 201))
            with anyio.fail_after(_BOUND_S):
                entries = await store.read("log")
            assert [e.seq for e in entries] == list(range(1, 201))
            by_value = {e.value: e.seq for e in entries}
            assert all(by_value[b"%d" % i] == results[i] for i in range(200))

    @_asyncio
    async def test_repeated_idempotency_key_returns_the_first_seq(
        self, open_store: StoreOpener
    ) -> None:
        """A repeated key writes nothing and returns the first entry's seq."""
        clock = ManualClock()
        async with _bounded(open_store(clock)) as store:
            assert await store.append("log", b"first", scope=_A, idempotency_key="e1") == 1
            assert await store.append("log", b"plain", scope=_A) == 2
            assert await store.append("log", b"again", scope=_A, idempotency_key="e1") == 1
            assert await store.append("other", b"x", scope=_A, idempotency_key="e1") == 1
            entries = await store.read("log")
            assert [(e.seq, e.value, e.idempotency_key) for e in entries] == [
                (1, b"first", "e1"),
                (2, b"plain", None),
            ]
            assert (entries[0].stream, entries[0].ts) == ("log", clock())

    @_asyncio
    async def test_concurrent_same_key_appends_write_once(self, open_store: StoreOpener) -> None:
        """20 concurrent appends with one idempotency key produce one entry and one seq."""
        async with open_store(ManualClock()) as store:
            calls = [
                (lambda i=i: store.append("log", b"%d" % i, scope=_A, idempotency_key="same"))
                for i in range(20)
            ]
            results = await _gather(calls, int)
            assert set(results) == {1}
            with anyio.fail_after(_BOUND_S):
                assert len(await store.read("log")) == 1
                assert await store.append("log", b"next", scope=_A) == 2

    @_asyncio
    async def test_read_pages_with_after_and_limit(self, open_store: StoreOpener) -> None:
        """``read`` returns entries with ``seq > after``, ascending, at most ``limit``."""
        async with _bounded(open_store(ManualClock())) as store:
            for i in range(1, 11):
                await store.append("log", b"%d" % i, scope=_A)
            assert [e.seq for e in await store.read("log", 3, limit=4)] == [4, 5, 6, 7]
            assert [e.seq for e in await store.read("log", after=8)] == [9, 10]
            assert await store.read("log", 10) == []
            assert await store.read("unknown") == []
            assert [e.value for e in await store.read("log", limit=2)] == [b"1", b"2"]

    @_asyncio
    async def test_read_is_fail_closed_on_scope(self, open_store: StoreOpener) -> None:
        """``read`` of a stream the filter does not select returns ``[]``."""
        async with _bounded(open_store(ManualClock())) as store:
            await store.append("log", b"1", scope=_A_U1_S1)
            assert await store.read("log", scope=_B) == []
            assert await store.read("log", scope=Scope("acme", "u1", "s2")) == []
            for selecting in (None, _A, _A_U1, _A_U1_S1):
                assert len(await store.read("log", scope=selecting)) == 1

    @_asyncio
    async def test_trim_drops_earlier_entries_and_seqs_continue(
        self, open_store: StoreOpener
    ) -> None:
        """``trim(before=n)`` removes seqs below n and returns how many; appends continue."""
        async with _bounded(open_store(ManualClock())) as store:
            for i in range(1, 6):
                await store.append("log", b"%d" % i, scope=_A, idempotency_key=f"k{i}")
            assert await store.trim("log", before=3) == 2
            assert [e.seq for e in await store.read("log")] == [3, 4, 5]
            assert [e.seq for e in await store.read("log", 1, limit=1)] == [3]
            assert await store.trim("log", before=3) == 0
            assert await store.append("log", b"6", scope=_A) == 6
            assert await store.trim("log", before=100) == 4
            assert await store.read("log") == []
            assert await store.append("log", b"7", scope=_A) == 7
            assert await store.trim("unknown", before=5) == 0

    # ------------------------------------------------------------------ erase and purge
    @_asyncio
    async def test_erase_a_tenant_in_every_namespace(self, open_store: StoreOpener) -> None:
        """Erase removes the tenant's records and streams everywhere, and only those."""
        async with _bounded(open_store(ManualClock())) as store:
            await store.put("pf.remote", "t/1", b"a", scope=_A_U1)
            await store.put("planner.pause", "p", b"a", scope=_A)
            await store.put("planner.pause", "q", b"b", scope=_B)
            await store.append("pf.events/t", b"a", scope=_A, idempotency_key="e1")
            await store.append("pf.events/t", b"a", scope=_A)
            await store.append("pf.events/u", b"b", scope=_B)
            assert await store.erase("acme") == 3
            assert await store.get("pf.remote", "t/1") is None
            assert await store.get("planner.pause", "p") is None
            assert await store.read("pf.events/t") == []
            assert await store.get("planner.pause", "q") is not None
            assert len(await store.read("pf.events/u")) == 1
            # Nothing of it remains: versions, seqs and idempotency keys start over.
            assert await store.put("planner.pause", "p", b"new", scope=_B, if_version=0) == 1
            assert await store.append("pf.events/t", b"x", scope=_A, idempotency_key="e1") == 1
            assert await store.erase("acme") == 1
            assert await store.erase("acme") == 0

    @_asyncio
    async def test_erase_by_user_and_session(self, open_store: StoreOpener) -> None:
        """A user or session filter erases only what it selects."""
        async with _bounded(open_store(ManualClock())) as store:
            owners = {
                "s1": _A_U1_S1,
                "s2": Scope("acme", "u1", "s2"),
                "u2": Scope("acme", "u2"),
                "tenant": _A,
            }
            for key, owner in owners.items():
                await store.put("ns", key, b"v", scope=owner)
            await store.append("log/s1", b"v", scope=_A_U1_S1)
            assert await store.erase("acme", user="u1", session="s1") == 2
            assert await store.get("ns", "s1") is None
            assert await store.read("log/s1") == []
            assert await store.erase("acme", user="u1") == 1
            assert [r.key for r in await store.scan("ns")] == ["tenant", "u2"]
            assert await store.erase("acme", session="nope") == 0
            assert await store.erase("acme") == 2
            assert await store.scan("ns") == []

    @_asyncio
    async def test_purge_expired_counts_records_and_streams(self, open_store: StoreOpener) -> None:
        """``purge_expired`` removes what expired and returns records + streams removed."""
        clock = ManualClock()
        async with _bounded(open_store(clock)) as store:
            await store.put("ns", "short1", b"v", scope=_A, ttl_s=5)
            await store.put("other", "short2", b"v", scope=_B, ttl_s=5)
            await store.put("ns", "kept", b"v", scope=_A)
            await store.append("log/short", b"1", scope=_A, ttl_s=5)
            await store.append("log/short", b"2", scope=_A)
            await store.append("log/kept", b"1", scope=_A)
            assert await store.purge_expired() == 0
            clock.advance(5)
            assert await store.purge_expired() == 3
            assert await store.purge_expired() == 0
            assert await store.get("ns", "kept") is not None
            assert len(await store.read("log/kept")) == 1
            assert await store.append("log/short", b"new", scope=_B) == 1

    # ------------------------------------------------------------------ lifecycle
    @_asyncio
    async def test_closed_store_raises_store_closed(self, open_store: StoreOpener) -> None:
        """``aclose`` is idempotent; every later call raises ``StoreClosed``."""
        async with _bounded(open_store(ManualClock())) as store:
            await store.put("ns", "k", b"v", scope=_A)
            await store.aclose()
            await store.aclose()
            calls: list[Callable[[], Any]] = [
                lambda: store.put("ns", "k", b"v", scope=_A),
                lambda: store.get("ns", "k"),
                lambda: store.take("ns", "k"),
                lambda: store.delete("ns", "k"),
                lambda: store.scan("ns"),
                lambda: store.append("log", b"v", scope=_A),
                lambda: store.read("log"),
                lambda: store.trim("log", before=2),
                lambda: store.erase("acme"),
                lambda: store.purge_expired(),
            ]
            for call in calls:
                with pytest.raises(StoreClosed):
                    await call()

    @_asyncio
    async def test_leaving_the_context_closes_the_store(self, open_store: StoreOpener) -> None:
        """The store is an async context manager: leaving it closes the store."""
        async with open_store(ManualClock()) as store:
            await store.put("ns", "k", b"v", scope=_A)
        with anyio.fail_after(_BOUND_S), pytest.raises(StoreClosed):
            await store.get("ns", "k")
        async with open_store(ManualClock()) as outer:
            async with outer as inner:
                assert inner is outer
            with pytest.raises(StoreClosed):
                await outer.read("log")

    # ------------------------------------------------------------------ bad input
    @_asyncio
    async def test_a_value_that_is_not_bytes_is_a_type_error(self, open_store: StoreOpener) -> None:
        """Values must be bytes; the message says how to encode."""
        bad: Any = "text"
        async with _bounded(open_store(ManualClock())) as store:
            with pytest.raises(TypeError, match="value must be bytes"):
                await store.put("ns", "k", bad, scope=_A)
            with pytest.raises(TypeError, match="value must be bytes"):
                await store.append("log", bad, scope=_A)
            assert await store.get("ns", "k") is None
            assert await store.read("log") == []

    @_asyncio
    async def test_bad_names_are_value_errors(self, open_store: StoreOpener) -> None:
        """Namespaces, keys, streams and tenants outside their allowed forms are refused."""
        async with _bounded(open_store(ManualClock())) as store:
            for namespace in ("", "has space", "x" * 65, "semi;colon"):
                with pytest.raises(ValueError, match="namespace"):
                    await store.put(namespace, "k", b"v", scope=_A)
                with pytest.raises(ValueError, match="namespace"):
                    await store.get(namespace, "k")
            for key in ("", "a\x00b", "é" * 257):
                with pytest.raises(ValueError, match="key"):
                    await store.put("ns", key, b"v", scope=_A)
                with pytest.raises(ValueError, match="key"):
                    await store.take("ns", key)
            for stream in ("", "s\x00", "s" * 257):
                with pytest.raises(ValueError, match="stream"):
                    await store.append(stream, b"v", scope=_A)
                with pytest.raises(ValueError, match="stream"):
                    await store.read(stream)
            with pytest.raises(ValueError, match="tenant"):
                Scope("")
            with pytest.raises(ValueError):
                await store.erase("")
            # The limits themselves are allowed.
            assert await store.put("A-z_0.9:/" + "x" * 55, "é" * 256, b"v", scope=_A) == 1
            assert await store.append("s" * 256, b"v", scope=_A) == 1

    @_asyncio
    async def test_bad_ttl_limit_trim_and_size_are_value_errors(
        self, open_store: StoreOpener
    ) -> None:
        """``ttl_s <= 0``, ``limit < 1``, ``trim(before < 1)`` and oversized values fail."""
        async with _bounded(open_store(ManualClock())) as store:
            for ttl in (0, -1.0):
                with pytest.raises(ValueError, match="ttl_s"):
                    await store.put("ns", "k", b"v", scope=_A, ttl_s=ttl)
                with pytest.raises(ValueError, match="ttl_s"):
                    await store.append("log", b"v", scope=_A, ttl_s=ttl)
            with pytest.raises(ValueError, match="limit"):
                await store.scan("ns", limit=0)
            with pytest.raises(ValueError, match="limit"):
                await store.read("log", limit=0)
            with pytest.raises(ValueError, match="before"):
                await store.trim("log", before=0)
            huge = bytes(_MAX_VALUE_BYTES + 1)
            with pytest.raises(ValueError, match="max_value_bytes"):
                await store.put("ns", "k", huge, scope=_A)
            with pytest.raises(ValueError, match="max_value_bytes"):
                await store.append("log", huge, scope=_A)
            assert await store.get("ns", "k") is None
            assert await store.read("log") == []

    @_asyncio
    async def test_values_round_trip_as_arbitrary_bytes(self, open_store: StoreOpener) -> None:
        """Every byte value comes back unchanged, in records and logs."""
        values = [b"", b"\x00" * 7, bytes(range(256)), "ü€😀".encode(), bytes(1024 * 1024)]
        async with _bounded(open_store(ManualClock())) as store:
            for i, value in enumerate(values):
                await store.put("ns", f"k{i}", value, scope=_A)
                await store.append("log", value, scope=_A)
            for i, value in enumerate(values):
                record = await store.get("ns", f"k{i}")
                assert record is not None and type(record.value) is bytes
                assert record.value == value
            entries = await store.read("log")
            assert [e.value for e in entries] == values
            assert all(type(e.value) is bytes for e in entries)

    @_asyncio
    async def test_reopened_store_keeps_records_logs_and_keys(
        self, open_store: StoreOpener
    ) -> None:
        """A persistent store reopened on its storage has everything it had."""
        if not self.persistent:
            pytest.skip("the store is not persistent (persistent = False)")
        clock = ManualClock()
        async with _bounded(open_store(clock)) as store:
            await store.put("ns", "k", b"v1", scope=_A_U1_S1, ttl_s=100)
            await store.put("ns", "k", b"v2", scope=_A_U1_S1, ttl_s=100)
            await store.append("log", b"1", scope=_A_U1, idempotency_key="e1")
            await store.append("log", b"2", scope=_A_U1)
        async with _bounded(open_store(clock)) as store:
            record = await store.get("ns", "k")
            assert record is not None
            assert (record.value, record.version, record.scope) == (b"v2", 2, _A_U1_S1)
            assert record.expires_at == clock() + 100
            assert [e.value for e in await store.read("log")] == [b"1", b"2"]
            assert await store.append("log", b"dup", scope=_A_U1, idempotency_key="e1") == 1
            assert await store.append("log", b"3", scope=_A_U1) == 3
            assert await store.put("ns", "k", b"v3", scope=_A, if_version=2) == 3
            with pytest.raises(ScopeMismatch):
                await store.append("log", b"x", scope=_B)

    # ------------------------------------------------------------------ flow history (§3)
    @_asyncio
    async def test_save_event_is_idempotent_by_event_id(self, open_store: StoreOpener) -> None:
        """Saving an event twice keeps one copy, in stream ``pf.events/{trace_id}``."""
        async with _bounded(open_store(ManualClock())) as store:
            history = _history(store)
            event = _event("t1", 1, scope=_A)
            await history.save_event(event)
            await history.save_event(event)
            assert [e.event_id for e in await history.load_history("t1")] == ["t1:1"]
            entries = await store.read("pf.events/t1", scope=_A)
            assert [(e.seq, e.idempotency_key) for e in entries] == [(1, "t1:1")]

    @_asyncio
    async def test_load_history_returns_events_in_save_order(self, open_store: StoreOpener) -> None:
        """Events of one trace come back in the order saved, with their fields."""
        async with _bounded(open_store(ManualClock())) as store:
            history = _history(store)
            for n in (3, 1, 2, 5, 4):
                await history.save_event(_event("t1", n))
            await history.save_event(_event("t2", 9))
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

    @_asyncio
    async def test_save_remote_binding_is_a_pf_remote_record(self, open_store: StoreOpener) -> None:
        """A binding is JSON in record ``pf.remote`` / ``{trace_id}/{task_id}`` under its scope."""
        async with _bounded(open_store(ManualClock())) as store:
            binding = RemoteBinding(
                trace_id="t1",
                context_id="c1",
                task_id="task-9",
                agent_url="https://agent.invalid",
                tenant_id="acme",
                metadata={"k": "v"},
                scope=_A_U1,
            )
            await _history(store).save_remote_binding(binding)
            record = await store.get("pf.remote", "t1/task-9", scope=_A_U1)
            assert record is not None and record.scope == _A_U1
            data = json.loads(record.value)
            assert (data["task_id"], data["agent_url"], data["context_id"]) == (
                "task-9",
                "https://agent.invalid",
                "c1",
            )
            assert data["metadata"] == {"k": "v"}
            assert await store.get("pf.remote", "t1/task-9", scope=_B) is None

    @_asyncio
    async def test_a_flow_records_its_history_in_the_store(self, open_store: StoreOpener) -> None:
        """``create(..., state_store=store)``: ``flow.load_history`` returns the trace's events."""

        async def shout(message: Message, _ctx: Any) -> Message:
            return message.with_payload(str(message.payload).upper())

        async with _bounded(open_store(ManualClock())) as store:
            flow = create(Node(shout, name="shout").to(), state_store=_history(store))
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

    @_asyncio
    async def test_erase_removes_a_tenants_flow_history(self, open_store: StoreOpener) -> None:
        """Core's ``pf.*`` data is erased like any other: history and bindings go."""
        async with _bounded(open_store(ManualClock())) as store:
            history = _history(store)
            await history.save_event(_event("t1", 1, scope=_A))
            await history.save_event(_event("t2", 1, scope=_B))
            binding = RemoteBinding(trace_id="t1", context_id=None, task_id="x", agent_url="u")
            await history.save_remote_binding(binding)  # no scope: tenant "-"
            assert await store.erase("acme") == 1
            assert await history.load_history("t1") == []
            assert len(await history.load_history("t2")) == 1
            assert await store.get("pf.remote", "t1/x", scope=Scope("-")) is not None
