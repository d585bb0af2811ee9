"""Conformance checks of ``DurableStore`` records: versions, scopes, scans, TTL and retention."""

from __future__ import annotations

import pytest

from penguiflow.core import (
    Scope,
    ScopeMismatch,
    VersionConflict,
)

from ._store_support import (
    A_U1,
    A_U1_S1,
    A,
    B,
    ManualClock,
    StoreOpener,
    asyncio_test,
    bounded,
    gather,
)

__all__ = ["RecordChecks"]


class RecordChecks:
    """Records: versions and compare-and-set, scope filtering, byte-ordered scans, TTL."""

    # ------------------------------------------------------------------ versions
    @asyncio_test
    async def test_put_returns_versions_and_get_the_record(self, open_store: StoreOpener) -> None:
        """A put creates at version 1 and adds one per put; get returns every field."""
        clock = ManualClock()
        async with bounded(open_store(clock)) as store:
            assert await store.put("ns", "k", b"one", scope=A_U1) == 1
            clock.advance(1)
            assert await store.put("ns", "k", b"two", scope=A_U1) == 2
            record = await store.get("ns", "k")
            assert record is not None
            assert (record.namespace, record.key, record.value) == ("ns", "k", b"two")
            assert (record.scope, record.version, record.expires_at) == (A_U1, 2, None)
            assert record.updated_at == clock()
            assert await store.get("ns", "missing") is None
            assert await store.get("other", "k") is None

    @asyncio_test
    async def test_if_version_zero_creates_only(self, open_store: StoreOpener) -> None:
        """``if_version=0`` succeeds once; then ``VersionConflict(expected=0, actual=1)``."""
        async with bounded(open_store(ManualClock())) as store:
            assert await store.put("ns", "k", b"v1", scope=A, if_version=0) == 1
            with pytest.raises(VersionConflict) as caught:
                await store.put("ns", "k", b"v2", scope=A, if_version=0)
            conflict = caught.value
            assert (conflict.namespace, conflict.key) == ("ns", "k")
            assert (conflict.expected, conflict.actual) == (0, 1)
            record = await store.get("ns", "k")
            assert record is not None and (record.value, record.version) == (b"v1", 1)

    @asyncio_test
    async def test_if_version_n_replaces_only_that_version(self, open_store: StoreOpener) -> None:
        """``if_version=n`` replaces version n only; a missing record has version 0."""
        async with bounded(open_store(ManualClock())) as store:
            await store.put("ns", "k", b"v1", scope=A)
            assert await store.put("ns", "k", b"v2", scope=A, if_version=1) == 2
            with pytest.raises(VersionConflict) as caught:
                await store.put("ns", "k", b"v3", scope=A, if_version=1)
            assert (caught.value.expected, caught.value.actual) == (1, 2)
            with pytest.raises(VersionConflict) as missing:
                await store.put("ns", "nope", b"x", scope=A, if_version=3)
            assert (missing.value.expected, missing.value.actual) == (3, 0)
            assert await store.get("ns", "nope") is None
            record = await store.get("ns", "k")
            assert record is not None and (record.value, record.version) == (b"v2", 2)

    @asyncio_test
    async def test_concurrent_create_only_puts_have_one_winner(
        self, open_store: StoreOpener
    ) -> None:
        """Of 20 concurrent ``put(if_version=0)`` exactly one creates; the rest conflict."""
        async with open_store(ManualClock()) as store:
            calls = [
                (lambda i=i: store.put("ns", "lease", b"%d" % i, scope=A, if_version=0))
                for i in range(20)
            ]
            results = await gather(calls, int)
            assert [r for r in results if not isinstance(r, BaseException)] == [1]
            assert all(isinstance(r, VersionConflict) for r in results if r != 1)

    # ------------------------------------------------------------------ scopes
    @asyncio_test
    async def test_put_under_another_tenant_raises_scope_mismatch(
        self, open_store: StoreOpener
    ) -> None:
        """A record belongs to its tenant: another tenant's put fails and changes nothing."""
        async with bounded(open_store(ManualClock())) as store:
            await store.put("ns", "k", b"mine", scope=A_U1)
            with pytest.raises(ScopeMismatch) as caught:
                await store.put("ns", "k", b"theirs", scope=B)
            assert (caught.value.existing, caught.value.given) == (A_U1, B)
            record = await store.get("ns", "k")
            assert record is not None and (record.value, record.version) == (b"mine", 1)
            # Within the tenant, another user or session may write it.
            assert await store.put("ns", "k", b"same tenant", scope=A) == 2

    @asyncio_test
    async def test_append_under_another_tenant_raises_scope_mismatch(
        self, open_store: StoreOpener
    ) -> None:
        """A stream's scope is fixed by its first append; another tenant's append fails."""
        async with bounded(open_store(ManualClock())) as store:
            assert await store.append("log", b"1", scope=A_U1_S1) == 1
            with pytest.raises(ScopeMismatch) as caught:
                await store.append("log", b"x", scope=B)
            assert caught.value.given == B
            with pytest.raises(ScopeMismatch):
                await store.append("log", b"x", scope=B, idempotency_key="k")
            assert await store.append("log", b"2", scope=A) == 2
            # The first append's scope still decides who reads it.
            assert await store.read("log", scope=Scope("acme", "u2")) == []
            assert [e.seq for e in await store.read("log", scope=A_U1_S1)] == [1, 2]

    @asyncio_test
    async def test_get_is_fail_closed_on_scope(self, open_store: StoreOpener) -> None:
        """``get`` returns None unless the filter selects the record's scope."""
        async with bounded(open_store(ManualClock())) as store:
            await store.put("ns", "k", b"v", scope=A_U1_S1)
            assert await store.get("ns", "k", scope=B) is None
            assert await store.get("ns", "k", scope=Scope("acme", "u2")) is None
            assert await store.get("ns", "k", scope=Scope("acme", "u1", "s2")) is None
            for selecting in (None, A, A_U1, A_U1_S1):
                assert await store.get("ns", "k", scope=selecting) is not None
            await store.put("ns", "tenant-only", b"v", scope=A)
            assert await store.get("ns", "tenant-only", scope=A_U1) is None

    @asyncio_test
    async def test_take_is_single_use_and_leaves_unselected_records(
        self, open_store: StoreOpener
    ) -> None:
        """``take`` returns the record once; a non-selecting scope gets None and leaves it."""
        async with bounded(open_store(ManualClock())) as store:
            await store.put("tokens", "t1", b"secret", scope=A_U1)
            assert await store.take("tokens", "t1", scope=B) is None
            assert await store.take("tokens", "t1", scope=Scope("acme", "u2")) is None
            assert await store.get("tokens", "t1") is not None
            taken = await store.take("tokens", "t1", scope=A)
            assert taken is not None and (taken.value, taken.scope) == (b"secret", A_U1)
            assert await store.get("tokens", "t1") is None
            assert await store.take("tokens", "t1") is None

    @asyncio_test
    async def test_concurrent_takes_have_exactly_one_winner(self, open_store: StoreOpener) -> None:
        """Of 50 concurrent takes of one record exactly one gets it."""
        async with open_store(ManualClock()) as store:
            await store.put("tokens", "t1", b"once", scope=A)
            calls = [(lambda: store.take("tokens", "t1")) for _ in range(50)]
            results = await gather(calls, object)
            assert not [r for r in results if isinstance(r, BaseException)]
            assert len([r for r in results if r is not None]) == 1

    @asyncio_test
    async def test_delete_with_unselecting_scope_deletes_nothing(
        self, open_store: StoreOpener
    ) -> None:
        """``delete`` returns False and keeps the record when its scope is not selected."""
        async with bounded(open_store(ManualClock())) as store:
            await store.put("ns", "k", b"v", scope=A_U1)
            assert await store.delete("ns", "k", scope=B) is False
            assert await store.delete("ns", "k", scope=Scope("acme", "u2")) is False
            assert await store.get("ns", "k") is not None
            assert await store.delete("ns", "k", scope=A) is True
            assert await store.get("ns", "k") is None
            assert await store.delete("ns", "k") is False

    # ------------------------------------------------------------------ scan
    @asyncio_test
    async def test_scan_prefix_is_literal(self, open_store: StoreOpener) -> None:
        """``%``, ``_`` and ``*`` in a prefix are plain characters."""
        keys = ["a%b", "a_b", "a*b", "axb", "a%", "ab", "b%"]
        async with bounded(open_store(ManualClock())) as store:
            for key in keys:
                await store.put("ns", key, key.encode(), scope=A)

            async def scanned(prefix: str) -> list[str]:
                return [r.key for r in await store.scan("ns", prefix)]

            assert await scanned("a%") == ["a%", "a%b"]
            assert await scanned("a_") == ["a_b"]
            assert await scanned("a*") == ["a*b"]
            assert await scanned("a") == sorted(k for k in keys if k.startswith("a"))
            assert await scanned("") == sorted(keys)
            assert await scanned("c") == []

    @asyncio_test
    async def test_scan_orders_keys_by_utf8_bytes(self, open_store: StoreOpener) -> None:
        """Keys come back ascending by their UTF-8 bytes, whatever the insertion order."""
        keys = ["z", "é", "a", "\uffff", "\U0001f600", "A", "~", "aa", "a b", "ÿ", "Ā"]
        async with bounded(open_store(ManualClock())) as store:
            for key in keys:
                await store.put("ns", key, b"v", scope=A)
            found = [r.key for r in await store.scan("ns")]
            assert found == sorted(keys, key=lambda k: k.encode())
            assert [r.key for r in await store.scan("ns", after="é")] == [
                k for k in sorted(keys, key=lambda k: k.encode()) if k.encode() > "é".encode()
            ]

    @asyncio_test
    async def test_scan_pages_with_after_and_limit(self, open_store: StoreOpener) -> None:
        """``after`` is exclusive and need not exist; fewer than ``limit`` means no more."""
        async with bounded(open_store(ManualClock())) as store:
            for i in range(25):
                await store.put("ns", f"item/{i:02d}", b"%d" % i, scope=A)
            await store.put("ns", "other", b"x", scope=A)
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

    @asyncio_test
    async def test_scan_filters_scope_and_expiry_before_limit(
        self, open_store: StoreOpener
    ) -> None:
        """Unselected and expired records are skipped, not counted against ``limit``."""
        clock = ManualClock()
        async with bounded(open_store(clock)) as store:
            for i in range(12):
                owner = A if i % 3 == 0 else B
                await store.put("ns", f"k{i:02d}", b"v", scope=owner, ttl_s=5 if i == 3 else None)
            clock.advance(5)
            found = await store.scan("ns", limit=3, scope=A)
            assert [r.key for r in found] == ["k00", "k06", "k09"]
            assert all(r.scope == A for r in found)
            assert len(await store.scan("ns", scope=B)) == 8
            assert await store.scan("ns", scope=Scope("gamma")) == []

    # ------------------------------------------------------------------ TTL and retention
    @asyncio_test
    async def test_record_expires_when_the_clock_reaches_expires_at(
        self, open_store: StoreOpener
    ) -> None:
        """A record is invisible to get, take, delete and scan from ``clock() >= expires_at``."""
        clock = ManualClock()
        async with bounded(open_store(clock)) as store:
            start = clock()
            await store.put("ns", "k", b"v", scope=A, ttl_s=10)
            record = await store.get("ns", "k")
            assert record is not None and record.expires_at == start + 10
            clock.advance(9.5)
            assert await store.get("ns", "k") is not None
            clock.advance(0.5)
            assert await store.get("ns", "k") is None
            assert await store.scan("ns") == []
            assert await store.take("ns", "k") is None
            assert await store.delete("ns", "k") is False

    @asyncio_test
    async def test_each_put_sets_the_ttl_anew(self, open_store: StoreOpener) -> None:
        """A put without ``ttl_s`` removes an earlier expiry; a put with one sets it from now."""
        clock = ManualClock()
        async with bounded(open_store(clock)) as store:
            await store.put("ns", "k", b"v1", scope=A, ttl_s=10)
            await store.put("ns", "k", b"v2", scope=A)
            clock.advance(100)
            record = await store.get("ns", "k")
            assert record is not None and record.expires_at is None
            await store.put("ns", "k", b"v3", scope=A, ttl_s=5)
            clock.advance(4)
            assert await store.get("ns", "k") is not None
            clock.advance(1)
            assert await store.get("ns", "k") is None

    @asyncio_test
    async def test_put_over_an_expired_record_is_a_create(self, open_store: StoreOpener) -> None:
        """After expiry a put starts at version 1, ``if_version=0`` works, any tenant may."""
        clock = ManualClock()
        async with bounded(open_store(clock)) as store:
            await store.put("ns", "k", b"a1", scope=A, ttl_s=1)
            await store.put("ns", "k", b"a2", scope=A, ttl_s=1)
            clock.advance(1)
            assert await store.put("ns", "k", b"b1", scope=B, if_version=0) == 1
            record = await store.get("ns", "k", scope=B)
            assert record is not None and (record.value, record.version) == (b"b1", 1)
            assert record.expires_at is None

    @asyncio_test
    async def test_retention_defaults_use_the_longest_prefix(self, open_store: StoreOpener) -> None:
        """``retention`` gives TTLs to puts and first appends that pass none."""
        clock = ManualClock()
        retention = {"pf.": 100.0, "pf.events/": 10.0, "cache": 50.0}
        async with bounded(open_store(clock, retention=retention)) as store:
            start = clock()
            await store.put("pf.remote", "k", b"v", scope=A)
            await store.put("cache.x", "k", b"v", scope=A)
            await store.put("other", "k", b"v", scope=A)
            await store.put("cache.y", "k", b"v", scope=A, ttl_s=5)
            expiries = [
                (r.expires_at if (r := await store.get(ns, "k")) else "missing")
                for ns in ("pf.remote", "cache.x", "other", "cache.y")
            ]
            assert expiries == [start + 100, start + 50, None, start + 5]
            await store.append("pf.events/t1", b"e", scope=A)
            await store.append("pf.journal/t1", b"j", scope=A)
            await store.append("logs/t1", b"l", scope=A)
            clock.advance(10)
            assert await store.read("pf.events/t1") == []
            assert len(await store.read("pf.journal/t1")) == 1
            clock.advance(90)
            assert await store.read("pf.journal/t1") == []
            assert len(await store.read("logs/t1")) == 1
            assert await store.get("other", "k") is not None

    @asyncio_test
    async def test_stream_ttl_applies_to_the_whole_stream(self, open_store: StoreOpener) -> None:
        """``append(ttl_s=...)`` sets the stream's expiry from now; None keeps it."""
        clock = ManualClock()
        async with bounded(open_store(clock)) as store:
            await store.append("kept", b"1", scope=A, ttl_s=10)
            await store.append("moved", b"1", scope=A, ttl_s=10)
            clock.advance(5)
            await store.append("kept", b"2", scope=A)
            await store.append("moved", b"2", scope=A, ttl_s=10)
            clock.advance(5)
            assert await store.read("kept") == []
            assert [e.value for e in await store.read("moved")] == [b"1", b"2"]
            clock.advance(5)
            assert await store.read("moved") == []
