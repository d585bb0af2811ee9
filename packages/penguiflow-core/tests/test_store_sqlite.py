"""SQLiteDurableStore: the DurableStore contract on one SQLite file, and what SQLite adds."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import anyio
import pytest

from penguiflow.core import (
    DurableStore,
    Headers,
    Message,
    Node,
    Scope,
    ScopeMismatch,
    SQLiteDurableStore,
    StoreClosed,
    StoreError,
    StoreUnavailable,
    VersionConflict,
    create,
)

ACME = Scope("acme")
OTHER = Scope("other")


class Clock:
    """A manual clock: call it for the time, ``advance`` moves it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(clock: Clock) -> AsyncIterator[SQLiteDurableStore]:
    async with SQLiteDurableStore.open(":memory:", clock=clock) as opened:
        yield opened


def commits(store: SQLiteDurableStore) -> int:
    return store._writer.commits  # pyright: ignore[reportPrivateUsage]


# ----------------------------------------------------------------------------- opening
async def test_store_is_a_durable_store_and_async_context_manager(tmp_path: Path) -> None:
    async with SQLiteDurableStore.open(str(tmp_path / "s.db")) as store:
        assert isinstance(store, DurableStore)
        async with store as same:
            assert same is store


def test_bad_options_are_refused_at_open() -> None:
    with pytest.raises(ValueError, match="synchronous"):
        SQLiteDurableStore.open(":memory:", synchronous="OFF")  # pyright: ignore[reportArgumentType]
    with pytest.raises(ValueError, match="purge_every_s"):
        SQLiteDurableStore.open(":memory:", purge_every_s=0)
    with pytest.raises(ValueError, match="busy_timeout_s"):
        SQLiteDurableStore.open(":memory:", busy_timeout_s=-1)
    with pytest.raises(ValueError, match="retention"):
        SQLiteDurableStore.open(":memory:", retention={"pf.": 0})


async def test_file_is_in_wal_mode_with_the_chosen_synchronous(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with SQLiteDurableStore.open(str(path), synchronous="FULL") as store:
        await store.put("ns", "k", b"v", scope=ACME)
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.close()


async def test_reopening_a_file_keeps_its_data(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    async with SQLiteDurableStore.open(path) as store:
        await store.put("ns", "k", b"v", scope=ACME)
        await store.append("log", b"a", scope=ACME, idempotency_key="e1")
    async with SQLiteDurableStore.open(path) as store:
        record = await store.get("ns", "k")
        assert record is not None and record.value == b"v" and record.version == 1
        assert await store.put("ns", "k", b"w", scope=ACME) == 2
        assert await store.append("log", b"a", scope=ACME, idempotency_key="e1") == 1
        assert await store.append("log", b"b", scope=ACME) == 2


async def test_a_newer_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StoreError, match=r"schema version 99.*up to 1.*upgrade") as info:
        async with SQLiteDurableStore.open(str(path)):
            pass
    assert not isinstance(info.value, StoreUnavailable)


async def test_two_stores_on_one_file_share_it(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    async with SQLiteDurableStore.open(path) as one, SQLiteDurableStore.open(path) as two:
        seqs = await asyncio.gather(*(s.append("log", b"x", scope=ACME) for s in [one, two] * 20))
        assert sorted(seqs) == list(range(1, 41))
        assert [e.seq for e in await two.read("log")] == list(range(1, 41))


async def test_sqlite_errors_become_store_unavailable(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable) as info:
        async with SQLiteDurableStore.open(str(tmp_path / "missing-dir" / "s.db")):
            pass
    assert isinstance(info.value.original_exc, sqlite3.Error)


# ----------------------------------------------------------------------------- closing
async def test_calls_after_aclose_raise_store_closed_and_aclose_is_idempotent() -> None:
    async with SQLiteDurableStore.open(":memory:") as store:
        pass
    await store.aclose()
    assert not store._writer.thread.is_alive()  # pyright: ignore[reportPrivateUsage]
    with pytest.raises(StoreClosed):
        await store.get("ns", "k")
    with pytest.raises(StoreClosed):
        await store.append("log", b"x", scope=ACME)


async def test_aclose_finishes_queued_operations() -> None:
    async with SQLiteDurableStore.open(":memory:") as store:
        tasks = [asyncio.ensure_future(store.append("log", b"x", scope=ACME)) for _ in range(50)]
        await asyncio.sleep(0)
        await store.aclose()
        assert sorted(await asyncio.gather(*tasks)) == list(range(1, 51))


async def test_a_cancelled_caller_leaves_the_operation_whole(store: SQLiteDurableStore) -> None:
    task = asyncio.ensure_future(store.append("log", b"x", scope=ACME, idempotency_key="k"))
    await asyncio.sleep(0)  # queued
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Applied whole (entry + idempotency key), or not at all: never half.
    seq = await store.append("log", b"y", scope=ACME, idempotency_key="k")
    entries = await store.read("log")
    assert [e.seq for e in entries] == [1]
    assert seq == 1


# ------------------------------------------------------------------------------ records
async def test_put_versions_and_if_version(store: SQLiteDurableStore) -> None:
    assert await store.put("ns", "k", b"1", scope=ACME, if_version=0) == 1
    assert await store.put("ns", "k", b"2", scope=ACME) == 2
    assert await store.put("ns", "k", b"3", scope=ACME, if_version=2) == 3
    with pytest.raises(VersionConflict) as info:
        await store.put("ns", "k", b"4", scope=ACME, if_version=2)
    assert (info.value.expected, info.value.actual) == (2, 3)
    with pytest.raises(VersionConflict) as info:
        await store.put("ns", "k", b"4", scope=ACME, if_version=0)
    assert info.value.actual == 3
    with pytest.raises(VersionConflict) as info:
        await store.put("ns", "new", b"4", scope=ACME, if_version=1)
    assert info.value.actual == 0
    record = await store.get("ns", "k")
    assert record is not None and (record.value, record.version) == (b"3", 3)


async def test_put_under_another_tenant_is_a_scope_mismatch(store: SQLiteDurableStore) -> None:
    await store.put("ns", "k", b"1", scope=ACME)
    with pytest.raises(ScopeMismatch):
        await store.put("ns", "k", b"2", scope=OTHER)
    record = await store.get("ns", "k")
    assert record is not None and record.value == b"1"


async def test_get_is_fail_closed_by_scope(store: SQLiteDurableStore) -> None:
    await store.put("ns", "k", b"1", scope=Scope("acme", "ann", "s1"))
    assert await store.get("ns", "k", scope=Scope("acme")) is not None
    assert await store.get("ns", "k", scope=Scope("acme", "ann", "s1")) is not None
    assert await store.get("ns", "k", scope=Scope("acme", "bob")) is None
    assert await store.get("ns", "k", scope=OTHER) is None
    assert await store.get("ns", "missing") is None


async def test_take_is_single_use_and_respects_scope(store: SQLiteDurableStore) -> None:
    await store.put("ns", "tok", b"t", scope=ACME)
    assert await store.take("ns", "tok", scope=OTHER) is None
    assert await store.get("ns", "tok") is not None  # left in place
    taken = await store.take("ns", "tok", scope=ACME)
    assert taken is not None and taken.value == b"t"
    assert await store.take("ns", "tok") is None


async def test_of_concurrent_takes_exactly_one_gets_the_record(
    store: SQLiteDurableStore,
) -> None:
    await store.put("ns", "tok", b"t", scope=ACME)
    results = await asyncio.gather(*(store.take("ns", "tok") for _ in range(20)))
    assert sum(r is not None for r in results) == 1


async def test_delete_reports_and_respects_scope(store: SQLiteDurableStore) -> None:
    await store.put("ns", "k", b"1", scope=ACME)
    assert await store.delete("ns", "k", scope=OTHER) is False
    assert await store.get("ns", "k") is not None
    assert await store.delete("ns", "k") is True
    assert await store.delete("ns", "k") is False
    assert await store.put("ns", "k", b"again", scope=ACME) == 1


async def test_scan_orders_by_utf8_bytes_with_a_literal_prefix(
    store: SQLiteDurableStore,
) -> None:
    keys = ["a%b", "a_c", "a*d", "ab", "aZ", "a\u00e9", "a\U0001f600", "b", "a"]
    for key in keys:
        await store.put("ns", key, key.encode(), scope=ACME)
    await store.put("other.ns", "a1", b"", scope=ACME)
    found = [r.key for r in await store.scan("ns", "a")]
    assert found == sorted((k for k in keys if k.startswith("a")), key=str.encode)
    assert [r.key for r in await store.scan("ns", "a%")] == ["a%b"]
    assert [r.key for r in await store.scan("ns", "a_")] == ["a_c"]
    assert [r.key for r in await store.scan("ns", "a*")] == ["a*d"]
    assert [r.key for r in await store.scan("ns")] == sorted(keys, key=str.encode)


async def test_scan_pages_with_after_and_limit(store: SQLiteDurableStore) -> None:
    for i in range(7):
        await store.put("ns", f"k{i}", b"", scope=ACME)
    pages: list[list[str]] = []
    after: str | None = None
    while True:
        page = await store.scan("ns", "k", after=after, limit=3)
        pages.append([r.key for r in page])
        if len(page) < 3:
            break
        after = page[-1].key
    assert pages == [["k0", "k1", "k2"], ["k3", "k4", "k5"], ["k6"]]


async def test_scan_filters_by_scope_before_the_limit(store: SQLiteDurableStore) -> None:
    for i in range(4):
        await store.put("ns", f"o{i}", b"", scope=OTHER)
    await store.put("ns", "p", b"", scope=ACME)
    assert [r.key for r in await store.scan("ns", limit=1, scope=ACME)] == ["p"]


async def test_bad_input_gets_the_named_error(store: SQLiteDurableStore) -> None:
    with pytest.raises(TypeError, match="encode it"):
        await store.put("ns", "k", "text", scope=ACME)  # pyright: ignore[reportArgumentType]
    with pytest.raises(ValueError, match="namespace"):
        await store.put("bad ns", "k", b"", scope=ACME)
    with pytest.raises(ValueError, match="key"):
        await store.put("ns", "", b"", scope=ACME)
    with pytest.raises(ValueError, match="ttl_s"):
        await store.put("ns", "k", b"", scope=ACME, ttl_s=0)
    with pytest.raises(ValueError, match="limit"):
        await store.scan("ns", limit=0)
    with pytest.raises(ValueError, match="before"):
        await store.trim("log", before=0)
    with pytest.raises(ValueError, match="stream"):
        await store.append("", b"", scope=ACME)


async def test_values_over_max_value_bytes_are_refused() -> None:
    async with SQLiteDurableStore.open(":memory:", max_value_bytes=10) as store:
        await store.put("ns", "k", b"x" * 10, scope=ACME)
        with pytest.raises(ValueError, match="max_value_bytes"):
            await store.put("ns", "k", b"x" * 11, scope=ACME)


# ---------------------------------------------------------------------------------- TTL
async def test_records_expire_at_the_instant_and_put_over_expired_creates(
    store: SQLiteDurableStore, clock: Clock
) -> None:
    await store.put("ns", "k", b"1", scope=ACME, ttl_s=10)
    await store.put("ns", "k", b"2", scope=ACME, ttl_s=10)  # the TTL is set anew
    record = await store.get("ns", "k")
    assert record is not None and record.expires_at == clock() + 10
    clock.advance(9.999)
    assert await store.get("ns", "k") is not None
    clock.advance(0.001)
    assert await store.get("ns", "k") is None
    assert await store.scan("ns") == []
    assert await store.take("ns", "k") is None
    assert await store.put("ns", "k", b"3", scope=OTHER, if_version=0) == 1


async def test_a_put_without_ttl_clears_the_expiry(store: SQLiteDurableStore, clock: Clock) -> None:
    await store.put("ns", "k", b"1", scope=ACME, ttl_s=10)
    await store.put("ns", "k", b"2", scope=ACME)
    clock.advance(100)
    assert await store.get("ns", "k") is not None


async def test_retention_gives_default_ttls_longest_prefix_wins(clock: Clock) -> None:
    retention = {"pf.": 10.0, "pf.events/": 100.0}
    async with SQLiteDurableStore.open(":memory:", clock=clock, retention=retention) as store:
        await store.put("pf.remote", "k", b"", scope=ACME)
        await store.put("pf.remote", "short", b"", scope=ACME, ttl_s=1)
        await store.put("mine", "k", b"", scope=ACME)
        await store.append("pf.events/t1", b"", scope=ACME)
        clock.advance(10)
        assert await store.get("pf.remote", "k") is None
        assert await store.get("mine", "k") is not None
        assert len(await store.read("pf.events/t1")) == 1
        clock.advance(90)
        assert await store.read("pf.events/t1") == []


async def test_stream_ttl_covers_the_whole_stream_and_none_keeps_it(
    store: SQLiteDurableStore, clock: Clock
) -> None:
    await store.append("log", b"a", scope=ACME, ttl_s=10)
    clock.advance(5)
    await store.append("log", b"b", scope=ACME)  # keeps the expiry
    clock.advance(5)
    assert await store.read("log") == []
    assert await store.append("log", b"new", scope=OTHER) == 1  # expired: starts anew


async def test_stream_ttl_is_set_anew_by_an_append_with_ttl(
    store: SQLiteDurableStore, clock: Clock
) -> None:
    await store.append("log", b"a", scope=ACME, ttl_s=10)
    clock.advance(5)
    await store.append("log", b"b", scope=ACME, ttl_s=10)
    clock.advance(9)
    assert len(await store.read("log")) == 2


async def test_purge_expired_removes_and_counts(store: SQLiteDurableStore, clock: Clock) -> None:
    await store.put("ns", "a", b"", scope=ACME, ttl_s=1)
    await store.put("ns", "b", b"", scope=ACME, ttl_s=1)
    await store.put("ns", "c", b"", scope=ACME)
    await store.append("log", b"", scope=ACME, ttl_s=1)
    await store.append("log", b"", scope=ACME)
    clock.advance(1)
    assert await store.purge_expired() == 3
    assert await store.purge_expired() == 0


async def test_the_writer_thread_purges_every_purge_every_s(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "s.db"
    async with SQLiteDurableStore.open(str(path), clock=clock, purge_every_s=0.01) as store:
        await store.put("ns", "a", b"", scope=ACME, ttl_s=1)
        clock.advance(1)
        conn = sqlite3.connect(path)
        with anyio.fail_after(10):  # the thread runs on real time: watch the file from outside
            while conn.execute("SELECT COUNT(*) FROM pf_records").fetchone()[0]:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        conn.close()


# --------------------------------------------------------------------------------- logs
async def test_appends_are_gap_free_under_concurrency(store: SQLiteDurableStore) -> None:
    seqs = await asyncio.gather(*(store.append("log", b"x", scope=ACME) for _ in range(200)))
    assert sorted(seqs) == list(range(1, 201))
    assert [e.seq for e in await store.read("log")] == list(range(1, 201))


async def test_concurrent_same_key_appends_write_one_entry(store: SQLiteDurableStore) -> None:
    seqs = await asyncio.gather(
        *(store.append("log", b"x", scope=ACME, idempotency_key="once") for _ in range(20))
    )
    assert set(seqs) == {1}
    entries = await store.read("log")
    assert [(e.seq, e.idempotency_key) for e in entries] == [(1, "once")]


async def test_a_streams_scope_is_fixed_by_its_first_append(store: SQLiteDurableStore) -> None:
    await store.append("log", b"a", scope=Scope("acme", "ann"))
    with pytest.raises(ScopeMismatch):
        await store.append("log", b"b", scope=OTHER)
    await store.append("log", b"c", scope=Scope("acme", "bob"))
    assert len(await store.read("log", scope=Scope("acme", "ann"))) == 2
    assert await store.read("log", scope=Scope("acme", "bob")) == []
    assert await store.read("log", scope=OTHER) == []


async def test_read_after_and_limit(store: SQLiteDurableStore, clock: Clock) -> None:
    for i in range(5):
        await store.append("log", bytes([i]), scope=ACME)
        clock.advance(1)
    entries = await store.read("log", 2, limit=2)
    assert [(e.seq, e.value, e.ts) for e in entries] == [(3, b"\x02", 1002.0), (4, b"\x03", 1003.0)]
    assert await store.read("unknown") == []


async def test_trim_counts_and_later_seqs_continue(store: SQLiteDurableStore) -> None:
    for _ in range(5):
        await store.append("log", b"x", scope=ACME, idempotency_key=None)
    assert await store.trim("log", before=4) == 3
    assert [e.seq for e in await store.read("log")] == [4, 5]
    assert await store.append("log", b"x", scope=ACME) == 6
    assert await store.trim("unknown", before=4) == 0


# -------------------------------------------------------------------------------- erase
async def test_erase_forgets_everything_the_filter_selects(store: SQLiteDurableStore) -> None:
    ann = Scope("acme", "ann")
    await store.put("pf.remote", "t/1", b"", scope=ann)
    await store.put("planner.pause", "p", b"", scope=ann)
    await store.put("ns", "bob", b"", scope=Scope("acme", "bob"))
    await store.put("ns", "other", b"", scope=OTHER)
    await store.append("pf.events/t", b"", scope=ann, idempotency_key="e1")
    await store.put("pf.remote", "t/1", b"", scope=ann)  # version 2
    assert await store.erase("acme", user="ann") == 3
    assert await store.get("pf.remote", "t/1") is None
    assert await store.read("pf.events/t") == []
    assert await store.get("ns", "bob") is not None
    assert await store.get("ns", "other") is not None
    assert await store.put("pf.remote", "t/1", b"", scope=ann) == 1
    assert await store.append("pf.events/t", b"", scope=ann, idempotency_key="e1") == 1
    assert await store.append("pf.events/t", b"", scope=ann) == 2
    assert await store.erase("acme") == 3


async def test_erase_by_session(store: SQLiteDurableStore) -> None:
    await store.put("ns", "s1", b"", scope=Scope("acme", "ann", "s1"))
    await store.put("ns", "s2", b"", scope=Scope("acme", "ann", "s2"))
    assert await store.erase("acme", user="ann", session="s1") == 1
    assert [r.key for r in await store.scan("ns")] == ["s2"]


# ---------------------------------------------------------------------- group commit
async def gather_in_one_batch(store: SQLiteDurableStore, *calls: Awaitable[object]) -> list[object]:
    """Run ``calls`` while the writer thread is held, so they queue up and commit together."""
    gate = threading.Event()
    hold = asyncio.ensure_future(
        store._call(lambda conn, now: gate.wait(10), writes=False)  # pyright: ignore[reportPrivateUsage]
    )
    tasks = [asyncio.ensure_future(call) for call in calls]
    await asyncio.sleep(0)  # every call is queued behind the hold
    gate.set()
    with anyio.fail_after(10):
        await hold
        return list(await asyncio.gather(*tasks, return_exceptions=True))


async def test_concurrent_operations_share_one_commit(store: SQLiteDurableStore) -> None:
    before = commits(store)
    puts = [store.put("ns", f"k{i}", b"x" * 120, scope=ACME) for i in range(64)]
    assert await gather_in_one_batch(store, *puts) == [1] * 64
    assert commits(store) - before <= 2  # the hold's batch, maybe, and the 64 puts'


async def test_concurrent_operations_commit_in_fewer_commits_than_operations() -> None:
    async with SQLiteDurableStore.open(":memory:") as store:
        before = commits(store)
        versions = await asyncio.gather(
            *(store.put("ns", f"k{i}", b"x" * 120, scope=ACME) for i in range(64))
        )
        assert versions == [1] * 64
        assert commits(store) - before < 64


async def test_a_failing_operation_does_not_undo_its_batch(store: SQLiteDurableStore) -> None:
    await store.put("ns", "k", b"", scope=ACME)
    await store.append("log", b"a", scope=ACME)

    def plant(conn: sqlite3.Connection, now: float) -> None:
        conn.execute(
            "CREATE TRIGGER boom BEFORE INSERT ON pf_idempotency BEGIN "
            "SELECT RAISE(ABORT, 'boom'); END"
        )

    await store._call(plant, writes=True)  # pyright: ignore[reportPrivateUsage]
    results = await gather_in_one_batch(
        store,
        store.put("ns", "a", b"", scope=ACME),
        store.put("ns", "k", b"", scope=ACME, if_version=0),
        store.append("log", b"b", scope=ACME, idempotency_key="fails halfway"),
        store.put("ns", "b", b"", scope=ACME),
        store.append("log", b"c", scope=ACME),
    )
    assert results[0] == 1 and results[3] == 1
    assert isinstance(results[1], VersionConflict)
    assert isinstance(results[2], StoreUnavailable)
    assert results[4] == 2  # the failed append's entry and seq were taken back
    assert [r.key for r in await store.scan("ns")] == ["a", "b", "k"]
    assert [e.value for e in await store.read("log")] == [b"a", b"c"]


async def test_an_operation_failing_halfway_leaves_nothing(store: SQLiteDurableStore) -> None:
    # An append writes its entry, then its idempotency key: when the second write fails (a
    # trigger planted here), the entry and the stream's new seq must go back too.
    await store.append("log", b"a", scope=ACME)

    def plant(conn: sqlite3.Connection, now: float) -> None:
        conn.execute(
            "CREATE TRIGGER boom BEFORE INSERT ON pf_idempotency BEGIN "
            "SELECT RAISE(ABORT, 'boom'); END"
        )

    await store._call(plant, writes=True)  # pyright: ignore[reportPrivateUsage]
    with pytest.raises(StoreUnavailable):
        await store.append("log", b"b", scope=ACME, idempotency_key="k")
    assert [e.seq for e in await store.read("log")] == [1]
    assert await store.append("log", b"c", scope=ACME) == 2


# ------------------------------------------------------------------------- flow history
async def test_flow_history_is_kept_in_the_store(tmp_path: Path) -> None:
    async def shout(msg: Message, ctx: object) -> str:
        return str(msg.payload).upper()

    async with SQLiteDurableStore.open(str(tmp_path / "s.db")) as store:
        flow = create(Node(shout).to(), state_store=store)
        message = Message(payload="hi", headers=Headers(tenant="demo"))
        async with flow.running():
            await flow.emit(message)
            with anyio.fail_after(5):
                assert await flow.fetch() == "HI"
        history = await flow.load_history(message.trace_id)
        assert history, "no events were saved"
        assert all(event.trace_id == message.trace_id for event in history)
        entries = await store.read(f"pf.events/{message.trace_id}")
        assert len(entries) == len(history)
        assert [e.seq for e in entries] == list(range(1, len(history) + 1))


# ------------------------------------------------------------------------------ layering
def test_importing_core_loads_neither_sqlite3_nor_the_backend() -> None:
    code = (
        "import json, sys, penguiflow.core; "
        "print(json.dumps([m for m in ('sqlite3', '_sqlite3', 'penguiflow.core._store_sqlite') "
        "if m in sys.modules]))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(completed.stdout) == []


def test_the_store_loads_on_first_use_under_the_public_name() -> None:
    code = (
        "import sys, penguiflow.core as c; s = c.SQLiteDurableStore; "
        "print(s.__module__, 'penguiflow.core._store_sqlite' in sys.modules)"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert completed.stdout.split() == ["penguiflow.core", "True"]
