"""PostgresDurableStore on a real PostgreSQL server: the conformance suite, then what is its own.

Each test gets a fresh schema (a random name), dropped afterwards.
"""

from __future__ import annotations

import asyncio
import runpy
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest

from penguiflow.core import (
    DurableStore,
    PostgresDurableStore,
    Scope,
    StoreClosed,
    StoreError,
    StoreUnavailable,
)
from penguiflow.core._store_postgres import SCHEMA_VERSION
from penguiflow.testkit import DurableStoreConformance, ManualClock
from penguiflow.testkit.stores import StoreOpener

ACME = Scope("acme")


def _drop(url: str, schema: str) -> None:
    async def drop() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


@pytest.fixture
def schema(postgres_url: str) -> Iterator[str]:
    """A fresh schema name, dropped (with everything in it) after the test."""
    name = f"pf_test_{uuid.uuid4().hex[:12]}"
    yield name
    _drop(postgres_url, name)


@pytest.fixture
async def conn(postgres_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection to look at the tables directly."""
    connection = await asyncpg.connect(postgres_url)
    try:
        yield connection
    finally:
        await connection.close()


class TestPostgresDurableStore(DurableStoreConformance):
    persistent = True

    @pytest.fixture
    def open_store(self, postgres_url: str, schema: str) -> StoreOpener:
        def open_(
            clock: Callable[[], float], /, **options: Any
        ) -> AbstractAsyncContextManager[DurableStore]:
            return PostgresDurableStore.open(postgres_url, schema=schema, clock=clock, **options)

        return open_


# --------------------------------------------------------------------------- concurrency
async def test_200_concurrent_appends_get_seqs_1_to_200(postgres_url: str, schema: str) -> None:
    async with PostgresDurableStore.open(postgres_url, schema=schema, max_size=10) as store:
        with anyio.fail_after(20):
            seqs = await asyncio.gather(
                *(store.append("log", str(i).encode(), scope=ACME) for i in range(200))
            )
        assert sorted(seqs) == list(range(1, 201))
        entries = await store.read("log")
        assert [e.seq for e in entries] == list(range(1, 201))
        assert {int(e.value) for e in entries} == set(range(200))


async def test_20_concurrent_same_key_appends_write_one_seq(postgres_url: str, schema: str) -> None:
    async with PostgresDurableStore.open(postgres_url, schema=schema, max_size=10) as store:
        await store.append("log", b"first", scope=ACME)
        with anyio.fail_after(10):
            seqs = await asyncio.gather(
                *(store.append("log", b"x", scope=ACME, idempotency_key="k") for _ in range(20))
            )
        assert set(seqs) == {2}
        assert [e.seq for e in await store.read("log")] == [1, 2]


@pytest.mark.parametrize("ttl_s", [None, 60.0])
async def test_concurrent_keyed_appends_with_repeats_are_gap_free(
    postgres_url: str, schema: str, ttl_s: float | None
) -> None:
    """Keyed appends (the journal's), each key sent three times at once: one seq per key, no
    gaps -- on the path that takes the seq first and on the one that locks first (a TTL)."""
    async with PostgresDurableStore.open(postgres_url, schema=schema, max_size=10) as store:
        await store.append("log", b"first", scope=ACME, ttl_s=ttl_s)
        with anyio.fail_after(20):
            seqs = await asyncio.gather(
                *(
                    store.append("log", b"%d" % (i % 40), scope=ACME, idempotency_key=f"k{i % 40}",
                                 ttl_s=ttl_s)
                    for i in range(120)
                )
            )  # fmt: skip
        by_key: dict[int, set[int]] = {}
        for i, seq in enumerate(seqs):
            by_key.setdefault(i % 40, set()).add(seq)
        assert all(len(found) == 1 for found in by_key.values())
        entries = await store.read("log")
        assert [e.seq for e in entries] == list(range(1, 42))
        assert {e.idempotency_key for e in entries[1:]} == {f"k{i}" for i in range(40)}


async def test_concurrent_first_appends_to_a_new_stream_are_gap_free(
    postgres_url: str, schema: str
) -> None:
    async with PostgresDurableStore.open(postgres_url, schema=schema, max_size=10) as store:
        with anyio.fail_after(10):
            seqs = await asyncio.gather(
                *(store.append(f"s{i % 3}", b"v", scope=ACME) for i in range(30))
            )
        assert sorted(seqs) == sorted([*range(1, 11)] * 3)


async def test_a_reader_following_after_never_skips_an_entry(
    postgres_url: str, schema: str
) -> None:
    async with PostgresDurableStore.open(postgres_url, schema=schema, max_size=8) as store:
        seen: list[int] = []
        done = asyncio.Event()

        async def follow() -> None:
            after = 0
            while not done.is_set() or after < 100:
                for entry in await store.read("log", after):
                    seen.append(entry.seq)
                    after = entry.seq
                await asyncio.sleep(0)

        with anyio.fail_after(15):
            reader = asyncio.create_task(follow())
            await asyncio.gather(*(store.append("log", b"v", scope=ACME) for _ in range(100)))
            done.set()
            await reader
        assert seen == list(range(1, 101))


async def test_cancelled_callers_leave_no_connection_behind(postgres_url: str, schema: str) -> None:
    """Callers cancelled while waiting for a connection or mid-query: appends stay gap-free,
    the store goes on, and its pool (two connections) closes."""
    with anyio.fail_after(30):  # closing must not hang on a lost connection
        async with PostgresDurableStore.open(postgres_url, schema=schema, max_size=2) as store:
            for round_ in range(5):
                tasks = [
                    asyncio.create_task(store.append("log", b"v", scope=ACME)) for _ in range(20)
                ]
                for _ in range(round_ + 1):
                    await asyncio.sleep(0)
                await asyncio.sleep(0.001 * round_)
                for task in tasks[::2]:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            seqs = await asyncio.gather(*(store.append("log", b"v", scope=ACME) for _ in range(20)))
            entries = await store.read("log", limit=1000)
            assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
            assert sorted(seqs) == [e.seq for e in entries][-20:]
            lender = store._lender  # pyright: ignore[reportPrivateUsage]
            assert lender is not None and lender._out <= 2  # pyright: ignore[reportPrivateUsage]


async def test_two_pools_on_one_schema_see_each_others_writes(
    postgres_url: str, schema: str
) -> None:
    async with (
        PostgresDurableStore.open(postgres_url, schema=schema) as one,
        PostgresDurableStore.open(postgres_url, schema=schema) as two,
    ):
        assert await one.put("ns", "k", b"v1", scope=ACME) == 1
        record = await two.get("ns", "k")
        assert record is not None and record.value == b"v1"
        assert await two.put("ns", "k", b"v2", scope=ACME, if_version=1) == 2
        assert await one.append("log", b"a", scope=ACME) == 1
        assert await two.append("log", b"b", scope=ACME) == 2
        assert [e.value for e in await one.read("log")] == [b"a", b"b"]
        assert await two.take("ns", "k") is not None
        assert await one.get("ns", "k") is None


async def test_stores_opening_a_new_schema_at_once_both_succeed(
    postgres_url: str, schema: str, conn: asyncpg.Connection
) -> None:
    async def open_and_put(i: int) -> int:
        async with PostgresDurableStore.open(postgres_url, schema=schema) as store:
            return await store.append("log", str(i).encode(), scope=ACME)

    with anyio.fail_after(20):
        seqs = await asyncio.gather(*(open_and_put(i) for i in range(4)))
    assert sorted(seqs) == [1, 2, 3, 4]
    assert await conn.fetchval(f'SELECT version FROM "{schema}".pf_meta') == SCHEMA_VERSION


# ------------------------------------------------------------------------ schema and keys
async def test_a_newer_schema_version_is_a_store_error(
    postgres_url: str, schema: str, conn: asyncpg.Connection
) -> None:
    async with PostgresDurableStore.open(postgres_url, schema=schema):
        pass
    await conn.execute(f'UPDATE "{schema}".pf_meta SET version = 99')
    with pytest.raises(StoreError, match=rf"99.*up to {SCHEMA_VERSION}: upgrade penguiflow-core"):
        async with PostgresDurableStore.open(postgres_url, schema=schema):
            pass  # pragma: no cover


# The DDL of schema version 1, as old deployments hold it.
_V1_DDL: tuple[str, ...] = runpy.run_path(str(Path(__file__).with_name("_postgres_schema_v1.py")))[
    "DDL"
]


async def _structure(conn: asyncpg.Connection, schema: str) -> dict[str, list[tuple[Any, ...]]]:
    """What a schema is made of (tables' columns, indexes, constraints, functions), its name
    replaced by ``s``."""

    def plain(value: object) -> object:
        if not isinstance(value, str):
            return value
        return value.replace(f'"{schema}".', "s.").replace(f"{schema}.", "s.")

    queries = {
        "columns": "SELECT table_name, column_name, data_type, is_nullable, collation_name "
        "FROM information_schema.columns WHERE table_schema = $1 ORDER BY 1, 2",
        "indexes": "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1 ORDER BY 1",
        "constraints": "SELECT conrelid::regclass::text, contype, pg_get_constraintdef(c.oid) "
        "FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
        "WHERE n.nspname = $1 ORDER BY 1, 2, 3",
        "compression": "SELECT c.relname, a.attname, a.attcompression FROM pg_attribute a "
        "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = $1 AND a.attnum > 0 AND c.relkind = 'r' ORDER BY 1, 2",
        "functions": "SELECT p.proname, pg_get_function_arguments(p.oid), p.prosrc FROM pg_proc p "
        "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1 ORDER BY 1",
    }
    return {
        name: [tuple(plain(v) for v in row) for row in await conn.fetch(sql, schema)]
        for name, sql in queries.items()
    }


async def test_a_version_1_schema_migrates_forward_and_keeps_its_data(
    postgres_url: str, schema: str, conn: asyncpg.Connection
) -> None:
    s = f'"{schema}"'
    for statement in _V1_DDL:
        await conn.execute(statement.replace("{s}", s))
    await conn.execute(f"INSERT INTO {s}.pf_meta (id, version) VALUES (1, 1)")
    put = f"SELECT * FROM {s}.pf_put($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    append = f"SELECT * FROM {s}.pf_append($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    now = 1000.0
    await conn.fetchrow(put, "ns", "k", b"record", "acme", None, None, None, None, now)
    for i in range(1, 6):  # keyed entries 1..5 and one without a key (6)
        await conn.fetchrow(append, "log", b"%d" % i, "acme", None, None, f"k{i}", None, None, now)
    await conn.fetchrow(append, "log", b"6", "acme", None, None, None, None, None, now)
    await conn.fetchrow(append, "other", b"o", "beta", "u", None, "x", None, None, now)
    # version 1's trim: entries 1 and 2 go, their keys stay in pf_idempotency
    await conn.execute(
        f"DELETE FROM {s}.pf_entries WHERE stream_id = "
        f"(SELECT id FROM {s}.pf_streams WHERE name = 'log') AND seq < 3"
    )

    clock = ManualClock(now)
    async with PostgresDurableStore.open(postgres_url, schema=schema, clock=clock) as store:
        assert await conn.fetchval(f"SELECT version FROM {s}.pf_meta") == SCHEMA_VERSION
        record = await store.get("ns", "k")
        assert record is not None and record.value == b"record" and record.version == 1
        entries = await store.read("log")
        assert [(e.seq, e.value, e.idempotency_key) for e in entries] == [
            (3, b"3", "k3"), (4, b"4", "k4"), (5, b"5", "k5"), (6, b"6", None),
        ]  # fmt: skip
        # keys of kept entries and of trimmed ones are both still known
        assert await store.append("log", b"again", scope=ACME, idempotency_key="k4") == 4
        assert await store.append("log", b"again", scope=ACME, idempotency_key="k1") == 1
        assert await store.append("log", b"7", scope=ACME, idempotency_key="k7") == 7
        assert await store.append("log", b"8", scope=ACME) == 8
        assert [e.seq for e in await store.read("log")] == [3, 4, 5, 6, 7, 8]
        assert await store.trim("log", before=5) == 2
        assert await store.append("log", b"again", scope=ACME, idempotency_key="k3") == 3
        assert await store.erase("beta") == 1
        assert await store.read("other") == []
        assert await store.append("other", b"new", scope=Scope("beta"), idempotency_key="x") == 1
        assert await store.erase("acme") == 2
    left = await conn.fetchval(
        f"SELECT (SELECT count(*) FROM {s}.pf_entries e JOIN {s}.pf_streams t "
        f"ON t.id = e.stream_id WHERE t.tenant = 'acme') + (SELECT count(*) FROM {s}.pf_entries "
        f"e WHERE NOT EXISTS (SELECT 1 FROM {s}.pf_streams t WHERE t.id = e.stream_id)) + "
        f"(SELECT count(*) FROM {s}.pf_idempotency i WHERE NOT EXISTS "
        f"(SELECT 1 FROM {s}.pf_streams t WHERE t.id = i.stream_id))"
    )
    assert left == 0  # erase removed the entries and keys physically

    # the migrated schema is the one a new store creates
    fresh = f"{schema}_new"
    try:
        async with PostgresDurableStore.open(postgres_url, schema=fresh):
            pass
        assert await _structure(conn, schema) == await _structure(conn, fresh)
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{fresh}" CASCADE')


async def test_a_failed_migration_leaves_the_old_schema_as_it_was(
    postgres_url: str, schema: str, conn: asyncpg.Connection
) -> None:
    s = f'"{schema}"'
    for statement in _V1_DDL:
        await conn.execute(statement.replace("{s}", s))
    await conn.execute(f"INSERT INTO {s}.pf_meta (id, version) VALUES (1, 1)")
    append = f"SELECT * FROM {s}.pf_append($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    await conn.fetchrow(append, "log", b"1", "acme", None, None, "k1", None, None, 1.0)
    # A duplicate key the unique index of version 2 cannot take: the migration must fail whole.
    await conn.execute(
        f"INSERT INTO {s}.pf_entries (stream_id, seq, value, ts, idempotency_key) "
        f"SELECT id, 2, 'x', 1.0, 'k1' FROM {s}.pf_streams"
    )
    before = await _structure(conn, schema)
    with pytest.raises(StoreUnavailable):
        async with PostgresDurableStore.open(postgres_url, schema=schema):
            pass  # pragma: no cover
    assert await conn.fetchval(f"SELECT version FROM {s}.pf_meta") == 1
    assert await _structure(conn, schema) == before


async def test_entry_values_are_lz4_compressed_where_the_server_has_lz4(
    postgres_url: str, schema: str, conn: asyncpg.Connection
) -> None:
    try:
        await conn.execute("CREATE TEMP TABLE lz4_probe (v bytea COMPRESSION lz4)")
        expected = "l"
    except asyncpg.PostgresError:
        expected = ""  # the server's default
    async with PostgresDurableStore.open(postgres_url, schema=schema) as store:
        big = bytes(range(256)) * 100
        await store.append("log", big, scope=ACME)
        assert (await store.read("log"))[0].value == big
    found = await conn.fetchval(
        "SELECT a.attcompression::text FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = $1 AND c.relname = 'pf_entries' AND a.attname = 'value'",
        schema,
    )
    assert found == expected


async def test_keys_are_c_collated_text_and_values_bytea(
    postgres_url: str, schema: str, conn: asyncpg.Connection
) -> None:
    async with PostgresDurableStore.open(postgres_url, schema=schema):
        pass
    rows = await conn.fetch(
        "SELECT table_name, column_name, data_type, collation_name "
        "FROM information_schema.columns WHERE table_schema = $1 "
        "AND column_name IN ('key', 'name', 'value')",
        schema,
    )
    columns = {
        (r["table_name"], r["column_name"]): (r["data_type"], r["collation_name"]) for r in rows
    }
    assert columns[("pf_records", "key")] == ("text", "C")
    assert columns[("pf_streams", "name")] == ("text", "C")
    assert columns[("pf_records", "value")][0] == "bytea"
    assert columns[("pf_entries", "value")][0] == "bytea"


async def test_scan_prefix_ending_in_the_last_code_point_of_a_range(
    postgres_url: str, schema: str
) -> None:
    async with PostgresDurableStore.open(postgres_url, schema=schema) as store:
        keys = ["a\U0010ffff", "a\U0010ffffz", "b", "a\ud7ffx", "a\ue000", "a\x7f", "a\x80"]
        for key in keys:
            await store.put("ns", key, b"v", scope=ACME)
        assert [r.key for r in await store.scan("ns", "a\U0010ffff")] == [
            "a\U0010ffff",
            "a\U0010ffffz",
        ]
        assert [r.key for r in await store.scan("ns", "a\ud7ff")] == ["a\ud7ffx"]
        assert [r.key for r in await store.scan("ns", "a\x7f")] == ["a\x7f"]
        assert [r.key for r in await store.scan("ns", "a")] == sorted(
            [k for k in keys if k.startswith("a")], key=str.encode
        )


# ------------------------------------------------------------------------ purge, errors
async def test_the_background_purge_removes_expired_rows_physically(
    postgres_url: str, schema: str, conn: asyncpg.Connection
) -> None:
    clock = ManualClock()
    async with PostgresDurableStore.open(
        postgres_url, schema=schema, clock=clock, purge_every_s=0.02
    ) as store:
        await store.put("ns", "k", b"v", scope=ACME, ttl_s=10)
        await store.append("log", b"v", scope=ACME, ttl_s=10)
        clock.advance(10)
        with anyio.fail_after(5):
            while True:
                left = await conn.fetchval(
                    f'SELECT (SELECT count(*) FROM "{schema}".pf_records) '
                    f'+ (SELECT count(*) FROM "{schema}".pf_entries)'
                )
                if not left:
                    break
                await asyncio.sleep(0.01)
        purger = store._purger  # pyright: ignore[reportPrivateUsage]
        assert purger is not None and not purger.done()
    assert purger.done()


async def test_an_unreachable_server_is_store_unavailable(schema: str) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with anyio.fail_after(10), pytest.raises(StoreUnavailable) as caught:
        async with PostgresDurableStore.open(
            f"postgresql://postgres@127.0.0.1:{port}/postgres",
            schema=schema,
            connect_kwargs={"timeout": 2},
        ):
            pass  # pragma: no cover
    assert isinstance(caught.value.original_exc, OSError)


async def test_a_server_error_is_store_unavailable_with_the_asyncpg_error(
    postgres_url: str, schema: str, conn: asyncpg.Connection
) -> None:
    async with PostgresDurableStore.open(postgres_url, schema=schema) as store:
        await conn.execute(f'DROP TABLE "{schema}".pf_records CASCADE')
        with pytest.raises(StoreUnavailable) as caught:
            await store.get("ns", "k")
        assert isinstance(caught.value.original_exc, asyncpg.PostgresError)
        assert await store.append("log", b"still works", scope=ACME) == 1


async def test_aclose_is_idempotent_and_later_calls_are_store_closed(
    postgres_url: str, schema: str
) -> None:
    store = PostgresDurableStore(postgres_url, schema=schema)
    with pytest.raises(StoreClosed, match="not open"):
        await store.get("ns", "k")
    async with store:
        await store.put("ns", "k", b"v", scope=ACME)
    await store.aclose()
    with pytest.raises(StoreClosed, match="closed"):
        await store.append("log", b"v", scope=ACME)
    with pytest.raises(StoreClosed):
        async with store:
            pass  # pragma: no cover


def test_bad_options_are_value_errors(postgres_url: str) -> None:
    with pytest.raises(ValueError, match="schema must be"):
        PostgresDurableStore.open(postgres_url, schema='x"; DROP TABLE y')
    with pytest.raises(ValueError, match="min_size"):
        PostgresDurableStore.open(postgres_url, min_size=5, max_size=2)
    with pytest.raises(ValueError, match="purge_every_s"):
        PostgresDurableStore.open(postgres_url, purge_every_s=0)
    with pytest.raises(ValueError, match="retention"):
        PostgresDurableStore.open(postgres_url, retention={"pf.": -1})


# ------------------------------------------------------------------------ import discipline
def test_open_without_asyncpg_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "asyncpg", None)
    with pytest.raises(ImportError) as caught:
        PostgresDurableStore.open("postgresql://127.0.0.1/none")
    assert str(caught.value) == (
        'PostgresDurableStore needs asyncpg: pip install "penguiflow-core[postgres]"'
    )


def test_importing_penguiflow_core_loads_neither_asyncpg_nor_the_backend() -> None:
    code = (
        "import sys, penguiflow.core\n"
        "loaded = [m for m in ('asyncpg', 'penguiflow.core._store_postgres') if m in sys.modules]\n"
        "print(loaded)\n"
        "penguiflow.core.PostgresDurableStore\n"
        "print('penguiflow.core._store_postgres' in sys.modules, 'asyncpg' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    assert result.stdout.splitlines() == ["[]", "True False"]
    assert PostgresDurableStore.__module__ == "penguiflow.core"


async def test_a_connection_idle_too_long_goes_back_to_the_pool(
    postgres_url: str, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from penguiflow.core import _store_postgres_lend as lend

    async with PostgresDurableStore.open(postgres_url, schema=schema, max_size=4) as store:
        await asyncio.gather(*(store.append("log", b"v", scope=ACME) for _ in range(8)))
        lender = store._lender  # pyright: ignore[reportPrivateUsage]
        assert lender is not None
        parked = len(lender._idle)  # pyright: ignore[reportPrivateUsage]
        assert parked >= 1
        monkeypatch.setattr(lend, "MAX_IDLE_S", 0.0)
        await asyncio.sleep(0.01)
        for _ in range(parked + 1):
            assert await store.get("ns", "missing") is None
        assert len(lender._idle) <= 1  # pyright: ignore[reportPrivateUsage]
        assert lender._out == len(lender._idle)  # pyright: ignore[reportPrivateUsage]
        assert [e.seq for e in await store.read("log")] == list(range(1, 9))
