"""RedisDurableStore on a real Redis server: the conformance suite, plus what is Redis's own."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any, cast

import anyio
import pytest
import redis

from penguiflow.core import (
    DurableStore,
    RedisDurableStore,
    Scope,
    StoreClosed,
    StoreError,
    StoreUnavailable,
)
from penguiflow.core._store_redis import check_redis_version
from penguiflow.testkit import DurableStoreConformance
from penguiflow.testkit.stores import ManualClock, StoreOpener

_A = Scope("acme")


def _raw(url: str) -> Any:
    """A plain synchronous client, to look at (or break) what the store wrote."""
    return cast(Any, redis).Redis.from_url(url)


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A fresh key prefix per test; its keys are deleted afterwards."""
    name = f"pftest-{uuid.uuid4().hex[:12]}"
    yield name
    client = _raw(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{name}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


class TestRedisDurableStore(DurableStoreConformance):
    persistent = True

    @pytest.fixture
    def open_store(self, redis_url: str, prefix: str) -> StoreOpener:
        def open_(
            clock: Callable[[], float], /, **options: Any
        ) -> AbstractAsyncContextManager[DurableStore]:
            return RedisDurableStore.open(redis_url, prefix=prefix, clock=clock, **options)

        return open_


async def test_200_concurrent_appends_get_seqs_1_to_200(redis_url: str, prefix: str) -> None:
    with anyio.fail_after(10):
        async with RedisDurableStore.open(redis_url, prefix=prefix) as store:
            seqs: list[int] = []

            async def one(i: int) -> None:
                seqs.append(await store.append("log", b"%d" % i, scope=_A))

            async with anyio.create_task_group() as tg:
                for i in range(200):
                    tg.start_soon(one, i)
            assert sorted(seqs) == list(range(1, 201))
            assert [e.seq for e in await store.read("log")] == list(range(1, 201))


async def test_20_concurrent_same_key_appends_write_one_seq(redis_url: str, prefix: str) -> None:
    with anyio.fail_after(10):
        async with RedisDurableStore.open(redis_url, prefix=prefix) as store:
            seqs: list[int] = []

            async def one(i: int) -> None:
                seqs.append(await store.append("log", b"%d" % i, scope=_A, idempotency_key="same"))

            async with anyio.create_task_group() as tg:
                for i in range(20):
                    tg.start_soon(one, i)
            assert seqs == [1] * 20
            assert len(await store.read("log")) == 1


async def test_two_clients_see_each_others_writes(redis_url: str, prefix: str) -> None:
    with anyio.fail_after(10):
        async with (
            RedisDurableStore.open(redis_url, prefix=prefix) as one,
            RedisDurableStore.open(redis_url, prefix=prefix) as two,
        ):
            assert await one.put("ns", "k", b"v1", scope=_A) == 1
            record = await two.get("ns", "k")
            assert record is not None and record.value == b"v1"
            assert await two.put("ns", "k", b"v2", scope=_A, if_version=1) == 2
            assert await one.append("log", b"a", scope=_A) == 1
            assert await two.append("log", b"b", scope=_A) == 2
            assert [e.value for e in await one.read("log")] == [b"a", b"b"]
            assert await two.take("ns", "k") is not None
            assert await one.get("ns", "k") is None


async def test_prefixes_keep_stores_apart(redis_url: str, prefix: str) -> None:
    with anyio.fail_after(10):
        async with (
            RedisDurableStore.open(redis_url, prefix=prefix) as one,
            RedisDurableStore.open(redis_url, prefix=prefix + "-other") as two,
        ):
            await one.put("ns", "k", b"v", scope=_A)
            await one.append("log", b"v", scope=_A)
            assert await two.get("ns", "k") is None
            assert await two.read("log") == []
            assert await two.erase("acme") == 0
            assert await one.get("ns", "k") is not None


async def test_records_and_streams_get_a_native_expiry_backstop(
    redis_url: str, prefix: str
) -> None:
    """A TTL also sets Redis's own expiry (real time, plus a margin); no TTL persists."""
    clock = ManualClock()
    with anyio.fail_after(10):
        async with RedisDurableStore.open(redis_url, prefix=prefix, clock=clock) as store:
            await store.put("ns", "short", b"v", scope=_A, ttl_s=5)
            await store.put("ns", "kept", b"v", scope=_A)
            await store.append("log", b"v", scope=_A, ttl_s=5, idempotency_key="e1")
            client = _raw(redis_url)
            try:
                short = client.pttl(f"{prefix}:r:ns|short")
                assert isinstance(short, int) and 5000 < short <= 65000
                assert client.pttl(f"{prefix}:r:ns|kept") == -1
                for part in ("lm", "l", "li"):
                    ttl = client.pttl(f"{prefix}:{part}:log")
                    assert isinstance(ttl, int) and 5000 < ttl <= 65000
                await store.put("ns", "short", b"v", scope=_A)  # each put sets it anew
                assert client.pttl(f"{prefix}:r:ns|short") == -1
            finally:
                client.close()


async def test_a_first_keyed_append_to_an_expiring_stream_gets_the_backstop(
    redis_url: str, prefix: str
) -> None:
    """The key hash of a stream with an expiry, created by a later append, expires too."""
    with anyio.fail_after(10):
        async with RedisDurableStore.open(redis_url, prefix=prefix) as store:
            await store.append("log", b"1", scope=_A, ttl_s=5)
            await store.append("log", b"2", scope=_A, idempotency_key="e2")  # keeps the expiry
            client = _raw(redis_url)
            try:
                for part in ("lm", "l", "li"):
                    ttl = client.pttl(f"{prefix}:{part}:log")
                    assert isinstance(ttl, int) and 5000 < ttl <= 65000
                assert client.zscore(f"{prefix}:x", "llog") is not None
            finally:
                client.close()
            assert [e.seq for e in await store.read("log")] == [1, 2]


async def test_a_natively_expired_stream_starts_anew(redis_url: str, prefix: str) -> None:
    """Should Redis drop a stream's keys, the next append starts at seq 1 with no old keys."""
    with anyio.fail_after(10):
        async with RedisDurableStore.open(redis_url, prefix=prefix) as store:
            await store.append("log", b"1", scope=_A, idempotency_key="e1")
            await store.append("log", b"2", scope=_A)
            client = _raw(redis_url)
            try:
                client.delete(f"{prefix}:lm:log")  # as if only the metadata had expired
            finally:
                client.close()
            assert await store.read("log") == []
            assert await store.append("log", b"new", scope=Scope("beta"), idempotency_key="e1") == 1
            assert [e.value for e in await store.read("log")] == [b"new"]


async def test_redis_errors_become_store_unavailable(redis_url: str, prefix: str) -> None:
    with anyio.fail_after(10):
        async with RedisDurableStore.open(redis_url, prefix=prefix) as store:
            client = _raw(redis_url)
            try:
                client.set(f"{prefix}:k:ns", "not a sorted set")
            finally:
                client.close()
            with pytest.raises(StoreUnavailable) as caught:
                await store.scan("ns")
            assert isinstance(caught.value.original_exc, redis.RedisError)
            assert caught.value.__cause__ is caught.value.original_exc


async def test_an_unreachable_server_is_store_unavailable(tmp_path: Any) -> None:
    with anyio.fail_after(10), pytest.raises(StoreUnavailable):
        async with RedisDurableStore.open(f"unix://{tmp_path}/nothing.sock"):
            pass


async def test_entering_a_closed_store_raises_store_closed(redis_url: str, prefix: str) -> None:
    store = RedisDurableStore(redis_url, prefix=prefix)
    with pytest.raises(StoreClosed):
        await store.get("ns", "k")  # not entered yet
    async with store:
        pass
    with pytest.raises(StoreClosed):
        async with store:
            pass


async def test_open_warns_when_appendonly_is_off(
    redis_url: str, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = _raw(redis_url)
    try:
        aof = str(client.info("persistence").get("aof_enabled"))
    finally:
        client.close()
    with caplog.at_level(logging.WARNING, logger="penguiflow.core"):
        async with RedisDurableStore.open(redis_url, prefix=prefix):
            pass
    warned = any("appendonly" in r.getMessage() for r in caplog.records)
    assert warned == (aof != "1")


@pytest.mark.parametrize("found", ["6.2.0", "6.2", "7.0.15", "7.4.1-rc1", "10.0.0"])
def test_redis_6_2_or_later_is_accepted(found: str) -> None:
    check_redis_version(found)


@pytest.mark.parametrize("found", ["6.0.16", "5.0.14", "6.1.9", "garbage"])
def test_older_redis_is_a_store_error_naming_both_versions(found: str) -> None:
    with pytest.raises(StoreError, match=rf"needs Redis >= 6\.2.*Redis {found}"):
        check_redis_version(found)


@pytest.mark.parametrize("bad", ["http://localhost", "localhost:6379", ""])
def test_a_url_that_is_not_redis_is_a_value_error(bad: str) -> None:
    with pytest.raises(ValueError, match="url"):
        RedisDurableStore.open(bad)


def test_without_redis_open_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    with pytest.raises(ImportError) as caught:
        RedisDurableStore.open("redis://localhost")
    assert str(caught.value) == (
        'RedisDurableStore needs redis: pip install "penguiflow-core[redis]"'
    )


def test_importing_core_loads_neither_redis_nor_the_backend() -> None:
    code = (
        "import json, sys; import penguiflow.core; "
        "print(json.dumps([m for m in ('redis', 'redis.asyncio', "
        "'penguiflow.core._store_redis') if m in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(out.stdout) == []


async def test_scripts_flushed_on_the_server_are_loaded_again(redis_url: str, prefix: str) -> None:
    with anyio.fail_after(10):
        async with RedisDurableStore.open(redis_url, prefix=prefix) as store:
            assert await store.append("log", b"1", scope=_A) == 1
            client = _raw(redis_url)
            try:
                client.script_flush()
            finally:
                client.close()
            assert await store.append("log", b"2", scope=_A) == 2
            assert await store.put("ns", "k", b"v", scope=_A) == 1


async def test_concurrent_callers_writes_land_in_call_order(redis_url: str, prefix: str) -> None:
    """Calls made one after another (without awaiting) are applied in that order."""
    with anyio.fail_after(10):
        async with RedisDurableStore.open(redis_url, prefix=prefix) as store:
            done: list[int] = []

            async def one(i: int) -> None:
                await store.append("log", b"%d" % i, scope=_A)
                done.append(i)

            async with anyio.create_task_group() as tg:
                for i in range(100):
                    tg.start_soon(one, i)
            assert [e.value for e in await store.read("log")] == [b"%d" % i for i in range(100)]
