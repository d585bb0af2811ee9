"""Conformance checks of ``DurableStore`` logs, erase, lifecycle, bad input and flow history."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import anyio
import pytest

from penguiflow.core import (
    Scope,
    ScopeMismatch,
    StoreClosed,
)

from ._store_history_checks import HistoryChecks
from ._store_support import (
    A_U1,
    A_U1_S1,
    BOUND_S,
    MAX_VALUE_BYTES,
    A,
    B,
    ManualClock,
    StoreOpener,
    asyncio_test,
    bounded,
    gather,
)

__all__ = ["LogChecks"]


class LogChecks(HistoryChecks):
    """Logs, erase and purge, closing, bad input; flow history comes from ``HistoryChecks``."""

    persistent: ClassVar[bool]

    # ------------------------------------------------------------------ logs
    @asyncio_test
    async def test_concurrent_appends_are_gap_free(self, open_store: StoreOpener) -> None:
        """200 concurrent appends get seqs 1..200, read back in order."""
        async with open_store(ManualClock()) as store:
            calls = [(lambda i=i: store.append("log", b"%d" % i, scope=A)) for i in range(200)]
            results = await gather(calls, int)
            assert sorted(r for r in results if isinstance(r, int)) == list(range(1, 201))
            with anyio.fail_after(BOUND_S):
                entries = await store.read("log")
            assert [e.seq for e in entries] == list(range(1, 201))
            by_value = {e.value: e.seq for e in entries}
            assert all(by_value[b"%d" % i] == results[i] for i in range(200))

    @asyncio_test
    async def test_repeated_idempotency_key_returns_the_first_seq(
        self, open_store: StoreOpener
    ) -> None:
        """A repeated key writes nothing and returns the first entry's seq."""
        clock = ManualClock()
        async with bounded(open_store(clock)) as store:
            assert await store.append("log", b"first", scope=A, idempotency_key="e1") == 1
            assert await store.append("log", b"plain", scope=A) == 2
            assert await store.append("log", b"again", scope=A, idempotency_key="e1") == 1
            assert await store.append("other", b"x", scope=A, idempotency_key="e1") == 1
            entries = await store.read("log")
            assert [(e.seq, e.value, e.idempotency_key) for e in entries] == [
                (1, b"first", "e1"),
                (2, b"plain", None),
            ]
            assert (entries[0].stream, entries[0].ts) == ("log", clock())

    @asyncio_test
    async def test_concurrent_same_key_appends_write_once(self, open_store: StoreOpener) -> None:
        """20 concurrent appends with one idempotency key produce one entry and one seq."""
        async with open_store(ManualClock()) as store:
            calls = [
                (lambda i=i: store.append("log", b"%d" % i, scope=A, idempotency_key="same"))
                for i in range(20)
            ]
            results = await gather(calls, int)
            assert set(results) == {1}
            with anyio.fail_after(BOUND_S):
                assert len(await store.read("log")) == 1
                assert await store.append("log", b"next", scope=A) == 2

    @asyncio_test
    async def test_read_pages_with_after_and_limit(self, open_store: StoreOpener) -> None:
        """``read`` returns entries with ``seq > after``, ascending, at most ``limit``."""
        async with bounded(open_store(ManualClock())) as store:
            for i in range(1, 11):
                await store.append("log", b"%d" % i, scope=A)
            assert [e.seq for e in await store.read("log", 3, limit=4)] == [4, 5, 6, 7]
            assert [e.seq for e in await store.read("log", after=8)] == [9, 10]
            assert await store.read("log", 10) == []
            assert await store.read("unknown") == []
            assert [e.value for e in await store.read("log", limit=2)] == [b"1", b"2"]

    @asyncio_test
    async def test_read_is_fail_closed_on_scope(self, open_store: StoreOpener) -> None:
        """``read`` of a stream the filter does not select returns ``[]``."""
        async with bounded(open_store(ManualClock())) as store:
            await store.append("log", b"1", scope=A_U1_S1)
            assert await store.read("log", scope=B) == []
            assert await store.read("log", scope=Scope("acme", "u1", "s2")) == []
            for selecting in (None, A, A_U1, A_U1_S1):
                assert len(await store.read("log", scope=selecting)) == 1

    @asyncio_test
    async def test_trim_drops_earlier_entries_and_seqs_continue(
        self, open_store: StoreOpener
    ) -> None:
        """``trim(before=n)`` removes seqs below n and returns how many; appends continue."""
        async with bounded(open_store(ManualClock())) as store:
            for i in range(1, 6):
                await store.append("log", b"%d" % i, scope=A, idempotency_key=f"k{i}")
            assert await store.trim("log", before=3) == 2
            assert [e.seq for e in await store.read("log")] == [3, 4, 5]
            assert [e.seq for e in await store.read("log", 1, limit=1)] == [3]
            assert await store.trim("log", before=3) == 0
            assert await store.append("log", b"6", scope=A) == 6
            assert await store.trim("log", before=100) == 4
            assert await store.read("log") == []
            assert await store.append("log", b"7", scope=A) == 7
            assert await store.trim("unknown", before=5) == 0

    # ------------------------------------------------------------------ erase and purge
    @asyncio_test
    async def test_erase_a_tenant_in_every_namespace(self, open_store: StoreOpener) -> None:
        """Erase removes the tenant's records and streams everywhere, and only those."""
        async with bounded(open_store(ManualClock())) as store:
            await store.put("pf.remote", "t/1", b"a", scope=A_U1)
            await store.put("planner.pause", "p", b"a", scope=A)
            await store.put("planner.pause", "q", b"b", scope=B)
            await store.append("pf.events/t", b"a", scope=A, idempotency_key="e1")
            await store.append("pf.events/t", b"a", scope=A)
            await store.append("pf.events/u", b"b", scope=B)
            assert await store.erase("acme") == 3
            assert await store.get("pf.remote", "t/1") is None
            assert await store.get("planner.pause", "p") is None
            assert await store.read("pf.events/t") == []
            assert await store.get("planner.pause", "q") is not None
            assert len(await store.read("pf.events/u")) == 1
            # Nothing of it remains: versions, seqs and idempotency keys start over.
            assert await store.put("planner.pause", "p", b"new", scope=B, if_version=0) == 1
            assert await store.append("pf.events/t", b"x", scope=A, idempotency_key="e1") == 1
            assert await store.erase("acme") == 1
            assert await store.erase("acme") == 0

    @asyncio_test
    async def test_erase_by_user_and_session(self, open_store: StoreOpener) -> None:
        """A user or session filter erases only what it selects."""
        async with bounded(open_store(ManualClock())) as store:
            owners = {
                "s1": A_U1_S1,
                "s2": Scope("acme", "u1", "s2"),
                "u2": Scope("acme", "u2"),
                "tenant": A,
            }
            for key, owner in owners.items():
                await store.put("ns", key, b"v", scope=owner)
            await store.append("log/s1", b"v", scope=A_U1_S1)
            assert await store.erase("acme", user="u1", session="s1") == 2
            assert await store.get("ns", "s1") is None
            assert await store.read("log/s1") == []
            assert await store.erase("acme", user="u1") == 1
            assert [r.key for r in await store.scan("ns")] == ["tenant", "u2"]
            assert await store.erase("acme", session="nope") == 0
            assert await store.erase("acme") == 2
            assert await store.scan("ns") == []

    @asyncio_test
    async def test_purge_expired_counts_records_and_streams(self, open_store: StoreOpener) -> None:
        """``purge_expired`` removes what expired and returns records + streams removed."""
        clock = ManualClock()
        async with bounded(open_store(clock)) as store:
            await store.put("ns", "short1", b"v", scope=A, ttl_s=5)
            await store.put("other", "short2", b"v", scope=B, ttl_s=5)
            await store.put("ns", "kept", b"v", scope=A)
            await store.append("log/short", b"1", scope=A, ttl_s=5)
            await store.append("log/short", b"2", scope=A)
            await store.append("log/kept", b"1", scope=A)
            assert await store.purge_expired() == 0
            clock.advance(5)
            assert await store.purge_expired() == 3
            assert await store.purge_expired() == 0
            assert await store.get("ns", "kept") is not None
            assert len(await store.read("log/kept")) == 1
            assert await store.append("log/short", b"new", scope=B) == 1

    # ------------------------------------------------------------------ lifecycle
    @asyncio_test
    async def test_closed_store_raises_store_closed(self, open_store: StoreOpener) -> None:
        """``aclose`` is idempotent; every later call raises ``StoreClosed``."""
        async with bounded(open_store(ManualClock())) as store:
            await store.put("ns", "k", b"v", scope=A)
            await store.aclose()
            await store.aclose()
            calls: list[Callable[[], Any]] = [
                lambda: store.put("ns", "k", b"v", scope=A),
                lambda: store.get("ns", "k"),
                lambda: store.take("ns", "k"),
                lambda: store.delete("ns", "k"),
                lambda: store.scan("ns"),
                lambda: store.append("log", b"v", scope=A),
                lambda: store.read("log"),
                lambda: store.trim("log", before=2),
                lambda: store.erase("acme"),
                lambda: store.purge_expired(),
            ]
            for call in calls:
                with pytest.raises(StoreClosed):
                    await call()

    @asyncio_test
    async def test_leaving_the_context_closes_the_store(self, open_store: StoreOpener) -> None:
        """The store is an async context manager: leaving it closes the store."""
        async with open_store(ManualClock()) as store:
            await store.put("ns", "k", b"v", scope=A)
        with anyio.fail_after(BOUND_S), pytest.raises(StoreClosed):
            await store.get("ns", "k")
        async with open_store(ManualClock()) as outer:
            async with outer as inner:
                assert inner is outer
            with pytest.raises(StoreClosed):
                await outer.read("log")

    # ------------------------------------------------------------------ bad input
    @asyncio_test
    async def test_a_value_that_is_not_bytes_is_a_type_error(self, open_store: StoreOpener) -> None:
        """Values must be bytes; the message says how to encode."""
        bad: Any = "text"
        async with bounded(open_store(ManualClock())) as store:
            with pytest.raises(TypeError, match="value must be bytes"):
                await store.put("ns", "k", bad, scope=A)
            with pytest.raises(TypeError, match="value must be bytes"):
                await store.append("log", bad, scope=A)
            assert await store.get("ns", "k") is None
            assert await store.read("log") == []

    @asyncio_test
    async def test_bad_names_are_value_errors(self, open_store: StoreOpener) -> None:
        """Namespaces, keys, streams and tenants outside their allowed forms are refused."""
        async with bounded(open_store(ManualClock())) as store:
            for namespace in ("", "has space", "x" * 65, "semi;colon"):
                with pytest.raises(ValueError, match="namespace"):
                    await store.put(namespace, "k", b"v", scope=A)
                with pytest.raises(ValueError, match="namespace"):
                    await store.get(namespace, "k")
            for key in ("", "a\x00b", "é" * 257):
                with pytest.raises(ValueError, match="key"):
                    await store.put("ns", key, b"v", scope=A)
                with pytest.raises(ValueError, match="key"):
                    await store.take("ns", key)
            for stream in ("", "s\x00", "s" * 257):
                with pytest.raises(ValueError, match="stream"):
                    await store.append(stream, b"v", scope=A)
                with pytest.raises(ValueError, match="stream"):
                    await store.read(stream)
            with pytest.raises(ValueError, match="tenant"):
                Scope("")
            with pytest.raises(ValueError):
                await store.erase("")
            # The limits themselves are allowed.
            assert await store.put("A-z_0.9:/" + "x" * 55, "é" * 256, b"v", scope=A) == 1
            assert await store.append("s" * 256, b"v", scope=A) == 1

    @asyncio_test
    async def test_bad_ttl_limit_trim_and_size_are_value_errors(
        self, open_store: StoreOpener
    ) -> None:
        """``ttl_s <= 0``, ``limit < 1``, ``trim(before < 1)`` and oversized values fail."""
        async with bounded(open_store(ManualClock())) as store:
            for ttl in (0, -1.0):
                with pytest.raises(ValueError, match="ttl_s"):
                    await store.put("ns", "k", b"v", scope=A, ttl_s=ttl)
                with pytest.raises(ValueError, match="ttl_s"):
                    await store.append("log", b"v", scope=A, ttl_s=ttl)
            with pytest.raises(ValueError, match="limit"):
                await store.scan("ns", limit=0)
            with pytest.raises(ValueError, match="limit"):
                await store.read("log", limit=0)
            with pytest.raises(ValueError, match="before"):
                await store.trim("log", before=0)
            huge = bytes(MAX_VALUE_BYTES + 1)
            with pytest.raises(ValueError, match="max_value_bytes"):
                await store.put("ns", "k", huge, scope=A)
            with pytest.raises(ValueError, match="max_value_bytes"):
                await store.append("log", huge, scope=A)
            assert await store.get("ns", "k") is None
            assert await store.read("log") == []

    @asyncio_test
    async def test_values_round_trip_as_arbitrary_bytes(self, open_store: StoreOpener) -> None:
        """Every byte value comes back unchanged, in records and logs."""
        values = [b"", b"\x00" * 7, bytes(range(256)), "ü€😀".encode(), bytes(1024 * 1024)]
        async with bounded(open_store(ManualClock())) as store:
            for i, value in enumerate(values):
                await store.put("ns", f"k{i}", value, scope=A)
                await store.append("log", value, scope=A)
            for i, value in enumerate(values):
                record = await store.get("ns", f"k{i}")
                assert record is not None and type(record.value) is bytes
                assert record.value == value
            entries = await store.read("log")
            assert [e.value for e in entries] == values
            assert all(type(e.value) is bytes for e in entries)

    @asyncio_test
    async def test_reopened_store_keeps_records_logs_and_keys(
        self, open_store: StoreOpener
    ) -> None:
        """A persistent store reopened on its storage has everything it had."""
        if not self.persistent:
            pytest.skip("the store is not persistent (persistent = False)")
        clock = ManualClock()
        async with bounded(open_store(clock)) as store:
            await store.put("ns", "k", b"v1", scope=A_U1_S1, ttl_s=100)
            await store.put("ns", "k", b"v2", scope=A_U1_S1, ttl_s=100)
            await store.append("log", b"1", scope=A_U1, idempotency_key="e1")
            await store.append("log", b"2", scope=A_U1)
        async with bounded(open_store(clock)) as store:
            record = await store.get("ns", "k")
            assert record is not None
            assert (record.value, record.version, record.scope) == (b"v2", 2, A_U1_S1)
            assert record.expires_at == clock() + 100
            assert [e.value for e in await store.read("log")] == [b"1", b"2"]
            assert await store.append("log", b"dup", scope=A_U1, idempotency_key="e1") == 1
            assert await store.append("log", b"3", scope=A_U1) == 3
            assert await store.put("ns", "k", b"v3", scope=A, if_version=2) == 3
            with pytest.raises(ScopeMismatch):
                await store.append("log", b"x", scope=B)
