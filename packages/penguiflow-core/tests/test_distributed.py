"""penguiflow.core.distributed without a server: bad input, defaults, lazy loading.

The behaviour on a real Redis server is tested in the root ``tests/test_workers*.py``.
"""

from __future__ import annotations

import os
import pickle
import socket
import subprocess
import sys
from typing import Any, cast

import pytest

from penguiflow.core import (
    FlowErrorCode,
    Headers,
    InMemoryDurableStore,
    Journal,
    Message,
    Node,
    RedisDurableStore,
    create,
)
from penguiflow.core.distributed import FlowClient, RedisStreamsBus, TraceNotFound, Worker

_URL = "redis://127.0.0.1:1/0"  # never connected to: these tests stop before any call


async def _echo(msg: Message, ctx: Any) -> Message:
    return msg


def _flow(journal: Journal | None = None) -> Any:
    node = Node(_echo, name="echo")
    return create(node.to(), journal=journal)


def _journaled() -> Any:
    return _flow(Journal(RedisDurableStore(_URL)))


def _bus() -> RedisStreamsBus:
    return RedisStreamsBus(_URL, app="unit")


def _run(code: str) -> str:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    return done.stdout.strip()


def test_import_penguiflow_core_loads_neither_distributed_nor_redis() -> None:
    loaded = _run(
        "import sys, penguiflow.core; print(sorted(m for m in sys.modules if m == 'redis' "
        "or m.startswith(('penguiflow.core.distributed', 'penguiflow.core._work'))))"
    )
    assert loaded == "[]"


def test_distributed_without_redis_says_what_to_install() -> None:
    out = _run(
        "import sys; sys.modules['redis'] = None; sys.modules['redis.asyncio'] = None\n"
        "from penguiflow.core.distributed import RedisStreamsBus\n"
        "try:\n    RedisStreamsBus('redis://x', app='a')\n"
        "except ImportError as e:\n    print(e)"
    )
    assert out == 'RedisStreamsBus needs redis: pip install "penguiflow-core[redis]"'


def test_deliveries_exhausted_is_a_flow_error_code() -> None:
    assert FlowErrorCode("DELIVERIES_EXHAUSTED") is FlowErrorCode.DELIVERIES_EXHAUSTED


def test_trace_not_found_is_a_lookup_error_naming_the_trace() -> None:
    error = TraceNotFound("t-1")
    assert isinstance(error, LookupError)
    assert error.trace_id == "t-1"
    assert "t-1" in str(error)
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), copy.trace_id, str(copy)) == (TraceNotFound, "t-1", str(error))


# --------------------------------------------------------------------------- Worker
def test_worker_defaults_heartbeat_to_a_third_of_claim_idle_and_names_itself() -> None:
    worker = Worker(_journaled(), bus=_bus(), claim_idle_s=9.0)
    assert worker.heartbeat_s == 3.0
    host, pid, tail = worker.consumer.rsplit("-", 2)
    assert (host, int(pid), len(tail)) == (socket.gethostname(), os.getpid(), 8)
    assert worker.statistics().inflight == 0


@pytest.mark.parametrize("max_inflight", [0, -1])
def test_worker_rejects_max_inflight_below_one(max_inflight: int) -> None:
    with pytest.raises(ValueError, match="max_inflight must be an int >= 1"):
        Worker(_journaled(), bus=_bus(), max_inflight=max_inflight)


def test_worker_rejects_a_heartbeat_longer_than_a_third_of_claim_idle() -> None:
    with pytest.raises(ValueError, match=r"heartbeat_s=4\.0 is more than claim_idle_s / 3"):
        Worker(_journaled(), bus=_bus(), claim_idle_s=9.0, heartbeat_s=4.0)


@pytest.mark.parametrize(
    ("option", "value"),
    [("claim_idle_s", 0.0), ("heartbeat_s", -1.0), ("max_deliveries", 0), ("drain_timeout_s", -1)],
)
def test_worker_rejects_out_of_range_options(option: str, value: float) -> None:
    with pytest.raises(ValueError, match=option):
        Worker(_journaled(), bus=_bus(), **cast(Any, {option: value}))


def test_worker_rejects_a_flow_without_a_journal() -> None:
    with pytest.raises(ValueError, match=r"journaled flow.*journal=Journal\(store\)"):
        Worker(_flow(), bus=_bus())


def test_worker_rejects_an_in_memory_journal() -> None:
    with pytest.raises(ValueError, match="not an InMemoryDurableStore"):
        Worker(_flow(Journal(InMemoryDurableStore())), bus=_bus())


async def test_worker_rejects_a_running_flow() -> None:
    flow = _flow(Journal(InMemoryDurableStore()))
    async with flow.running():
        with pytest.raises(ValueError, match="built but not started"):
            Worker(flow, bus=_bus())


def test_worker_rejects_something_that_is_not_a_flow() -> None:
    with pytest.raises(TypeError, match="Worker needs a PenguiFlow"):
        Worker(cast(Any, object()), bus=_bus())


def test_worker_and_client_reject_a_bus_lacking_methods() -> None:
    with pytest.raises(TypeError, match="lacks submit, claim, renew"):
        Worker(_journaled(), bus=cast(Any, object()))
    with pytest.raises(TypeError, match="FlowClient needs a WorkBus"):
        FlowClient(cast(Any, object()))


# ----------------------------------------------------------------- FlowClient, the bus
async def test_emit_of_a_bare_payload_is_a_type_error_before_any_call() -> None:
    client = FlowClient(_bus())
    with pytest.raises(TypeError) as caught:
        await client.emit(cast(Any, "hello"))
    assert str(caught.value).startswith(
        "FlowClient.emit takes a Message (tenant and trace id travel with it)"
    )


async def test_emit_of_a_non_json_payload_is_a_type_error_before_any_call() -> None:
    client = FlowClient(_bus())
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        await client.emit(Message(payload=object(), headers=Headers(tenant="t")))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"url": "http://x"}, "url must be a redis://"),
        ({"app": ""}, "app must be a non-empty name"),
        ({"app": "a{b}"}, "without braces"),
        ({"result_ttl_s": 0}, "result_ttl_s must be a positive"),
        ({"block_s": -1.0}, "block_s must be a positive"),
        ({"mirror_maxlen": 0}, "mirror_maxlen must be a positive int"),
    ],
)
def test_redis_streams_bus_rejects_bad_options(kwargs: dict[str, Any], match: str) -> None:
    options: dict[str, Any] = {"url": _URL, "app": "a", **kwargs}
    url = options.pop("url")
    with pytest.raises(ValueError, match=match):
        RedisStreamsBus(url, **options)


async def test_a_bus_that_was_not_opened_says_how_to_open_it() -> None:
    from penguiflow.core import StoreClosed

    with pytest.raises(StoreClosed, match=r"RedisStreamsBus.open\(url, app=...\)"):
        await _bus().is_cancelled("t")


def test_an_old_redis_server_is_refused_naming_both_versions() -> None:
    from penguiflow.core import StoreError
    from penguiflow.core._work_redis_wire import check_version

    check_version("6.2.0")
    with pytest.raises(StoreError, match=r"RedisStreamsBus needs Redis >= 6\.2.*Redis 6\.0\.9"):
        check_version("6.0.9")
