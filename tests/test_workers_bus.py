"""RedisStreamsBus, FlowClient and Worker in one process, on a real Redis server.

Fencing, reclaim, idempotent submit and outputs, cursors, failures, chunks, poison traces and
cancellation before a claim. The multi-process scenarios are in ``test_workers.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, cast

import anyio
import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from penguiflow.core import (
    ROOKERY,
    FlowError,
    FlowErrorCode,
    Headers,
    Journal,
    Message,
    Node,
    RedisDurableStore,
    TraceCancelled,
    TraceEnded,
    create,
)
from penguiflow.core.distributed import (
    FlowClient,
    RedisStreamsBus,
    TraceNotFound,
    TraceOutput,
    WorkBus,
    Worker,
    WorkItem,
)


@pytest.fixture
def app(redis_url: str) -> Iterator[str]:
    import redis

    name = f"wb{uuid.uuid4().hex[:10]}"
    yield name
    client: Any = cast(Any, redis).Redis.from_url(redis_url)
    try:
        for pattern in (f"pf:{{{name}}}:*", f"{name}-store:*"):
            keys = list(client.scan_iter(match=pattern, count=1000))
            if keys:
                client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
async def bus(redis_url: str, app: str) -> AsyncIterator[RedisStreamsBus]:
    async with RedisStreamsBus.open(redis_url, app=app, block_s=0.1) as opened:
        yield opened


@pytest.fixture
async def store(redis_url: str, app: str) -> AsyncIterator[RedisDurableStore]:
    async with RedisDurableStore.open(redis_url, prefix=f"{app}-store") as opened:
        yield opened


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[Any]:
    client: Any = cast(Any, aioredis).Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


async def _until(condition: Callable[[], bool]) -> None:
    """Wait (polling) until ``condition()`` holds; bound it with ``anyio.fail_after``."""
    while True:
        if condition():
            return
        await anyio.sleep(0.01)


def _msg(payload: Any) -> Message:
    return Message(payload=payload, headers=Headers(tenant="acme"))


def _item(trace_id: str) -> WorkItem:
    return WorkItem(trace_id=trace_id, body=_msg(1).model_dump_json().encode())


def _flow(store: RedisDurableStore, runs: list[str] | None = None) -> Any:
    async def double(msg: Message, ctx: Any) -> Message:
        if runs is not None:
            runs.append(msg.trace_id)
        if msg.payload == "boom":
            raise ValueError("boom")
        if msg.payload == "chunks":
            for text in ("a", "b", "c"):
                await ctx.emit_chunk(parent=msg, text=text, to=ROOKERY)
            return msg.with_payload("streamed")
        if msg.payload == "two":
            await ctx.emit(msg.with_payload("first"), to=ROOKERY)
            return msg.with_payload("second")
        if msg.payload == "sleep":
            await anyio.sleep(60)
        if msg.payload == "opaque":
            return msg.with_payload(object())
        return msg.with_payload(msg.payload * 2)

    node = Node(double, name="double")
    return create(node.to(), journal=Journal(store))


# ------------------------------------------------------------------------------ the bus
async def test_redis_streams_bus_is_a_work_bus(bus: RedisStreamsBus) -> None:
    assert isinstance(bus, WorkBus)


async def test_submit_is_idempotent_per_trace_id(bus: RedisStreamsBus, raw: Any, app: str) -> None:
    assert await bus.submit(_item("t1")) is True
    assert await bus.submit(_item("t1")) is False
    assert await raw.xlen(f"pf:{{{app}}}:work") == 1


async def test_renew_and_settle_are_fenced_once_an_entry_was_reclaimed(
    bus: RedisStreamsBus,
) -> None:
    await bus.submit(_item("t1"))
    (mine,) = await bus.claim("a", 1, min_idle_s=30.0)
    assert mine.attempt == 1
    assert await bus.renew("a", [mine]) == []
    await anyio.sleep(0.05)
    (stolen,) = await bus.claim("b", 1, min_idle_s=0.01)  # "a" looks dead: reclaimed
    assert stolen.attempt == 2
    assert stolen.delivery_id == mine.delivery_id
    assert await bus.renew("a", [mine]) == [mine]  # lost
    assert await bus.settle("a", mine) is False  # cannot ack what it no longer owns
    assert await bus.settle("b", stolen) is True
    assert await bus.claim("c", 1, min_idle_s=0.0) == []  # settled: gone


async def test_renew_keeps_a_live_consumers_entry_from_being_reclaimed(
    bus: RedisStreamsBus,
) -> None:
    await bus.submit(_item("t1"))
    (mine,) = await bus.claim("a", 1, min_idle_s=30.0)
    for _ in range(4):
        await anyio.sleep(0.1)
        assert await bus.renew("a", [mine]) == []
        assert await bus.claim("b", 1, min_idle_s=0.15) == []


async def test_released_entries_are_claimed_by_another_consumer_at_once(
    bus: RedisStreamsBus,
) -> None:
    await bus.submit(_item("t1"))
    (mine,) = await bus.claim("a", 1, min_idle_s=30.0)
    await bus.release("a", [mine])
    (taken,) = await bus.claim("b", 1, min_idle_s=30.0)
    assert taken.item.trace_id == "t1"


async def test_dead_letter_settle_moves_the_item_to_the_dead_letter_stream(
    bus: RedisStreamsBus,
) -> None:
    await bus.submit(_item("t1"))
    (mine,) = await bus.claim("a", 1, min_idle_s=30.0)
    assert await bus.settle("a", mine, dead_letter="poison") is True
    assert await bus.dead_letters() == [("t1", "poison", 1)]


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ids=st.lists(st.sampled_from(["r:0", "r:1", "r:2", "c:s:0", "c:s:1"]), max_size=12))
async def test_put_output_keeps_the_first_output_of_each_id_in_order(
    bus: RedisStreamsBus, ids: list[str]
) -> None:
    trace_id = uuid.uuid4().hex
    await bus.submit(_item(trace_id))
    for n, output_id in enumerate(ids):
        kind = "chunk" if output_id.startswith("c:") else "result"
        await bus.put_output(TraceOutput(trace_id, output_id, kind, str(n).encode()))
    await bus.put_output(TraceOutput(trace_id, "end", "end", b"{}"))
    await bus.put_output(TraceOutput(trace_id, "end", "end", b"{}"))
    seen = [(o.output_id, o.body) async for _cursor, o in bus.outputs(trace_id)]
    first = {output_id: str(ids.index(output_id)).encode() for output_id in dict.fromkeys(ids)}
    assert seen == [*first.items(), ("end", b"{}")]


async def test_outputs_of_an_unknown_trace_raise_trace_not_found_at_once(
    bus: RedisStreamsBus,
) -> None:
    client = FlowClient(bus)
    with anyio.fail_after(2):
        with pytest.raises(TraceNotFound):
            await client.fetch("nope")
        with pytest.raises(TraceNotFound):
            await client.wait("nope")
        with pytest.raises(TraceNotFound):
            [c async for c in client.stream("nope")]


async def test_mirror_stream_keeps_published_envelopes(
    bus: RedisStreamsBus, raw: Any, app: str
) -> None:
    from penguiflow.core import BusEnvelope

    envelope = BusEnvelope(edge="a->b", source="a", target="b", trace_id="t", payload={"x": 1})
    await bus.publish(envelope)
    ((_id, fields),) = await raw.xrange(f"pf:{{{app}}}:mirror")
    assert fields == {"edge": "a->b", "trace": "t", "payload": '{"x":1}'}


# ------------------------------------------------------------------------- the client
async def test_emit_rejects_a_bare_payload_and_a_non_json_one(bus: RedisStreamsBus) -> None:
    client = FlowClient(bus)
    with pytest.raises(TypeError, match="FlowClient.emit takes a Message"):
        await client.emit(cast(Any, {"n": 1}))
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        await client.emit(_msg(object()))


async def test_a_trace_emitted_twice_runs_once_and_each_client_reads_each_result_once(
    bus: RedisStreamsBus, store: RedisDurableStore
) -> None:
    runs: list[str] = []
    msg = _msg("two")
    async with Worker(_flow(store, runs), bus=bus, claim_idle_s=1.0).running():
        first, second = FlowClient(bus), FlowClient(bus)
        assert await first.emit(msg) == await first.emit(msg) == msg.trace_id
        with anyio.fail_after(10):
            assert (await first.wait(msg.trace_id)).status == "completed"
            for client in (first, second):  # independent cursors, each from the first output
                assert (await client.fetch(msg.trace_id)).payload == "first"
                assert (await client.fetch(msg.trace_id)).payload == "second"
                with pytest.raises(TraceEnded):
                    await client.fetch(msg.trace_id)
                with pytest.raises(TraceEnded):  # and again: the end is not consumed
                    await client.fetch(msg.trace_id)
    assert runs == [msg.trace_id]


async def test_fetch_raises_the_flow_error_of_a_failed_trace(
    bus: RedisStreamsBus, store: RedisDurableStore
) -> None:
    client = FlowClient(bus)
    async with Worker(_flow(store), bus=bus, claim_idle_s=1.0).running():
        trace_id = await client.emit(_msg("boom"))
        with anyio.fail_after(10):
            with pytest.raises(FlowError) as caught:
                await client.fetch(trace_id)
            outcome = await client.wait(trace_id)
    error = caught.value
    assert (error.code, error.node_name, error.trace_id) == (
        FlowErrorCode.NODE_EXCEPTION,
        "double",
        trace_id,
    )
    assert "boom" in error.message
    assert error.original_exc is None
    assert outcome.status == "failed"
    assert outcome.error is not None and outcome.error.code == FlowErrorCode.NODE_EXCEPTION


async def test_stream_yields_the_chunks_in_order_then_ends(
    bus: RedisStreamsBus, store: RedisDurableStore
) -> None:
    client = FlowClient(bus)
    async with Worker(_flow(store), bus=bus, claim_idle_s=1.0).running():
        trace_id = await client.emit(_msg("chunks"))
        with anyio.fail_after(10):
            chunks = [chunk async for chunk in client.stream(trace_id)]
            assert [chunk async for chunk in client.stream(trace_id)] == []  # own cursor
            result = await client.fetch(trace_id)  # results have their own cursor
    assert [(c.text, c.seq) for c in chunks] == [("a", 0), ("b", 1), ("c", 2)]
    assert result.payload == "streamed"


async def test_fetch_validates_into_payload_type(
    bus: RedisStreamsBus, store: RedisDurableStore
) -> None:
    client = FlowClient(bus)
    async with Worker(_flow(store), bus=bus, claim_idle_s=1.0).running():
        trace_id = await client.emit(_msg("7"))
        with anyio.fail_after(10):
            result = await client.fetch(trace_id, payload_type=int)
    assert result.payload == 77


# ------------------------------------------------------------------------- the worker
async def test_a_trace_cancelled_before_it_was_claimed_ends_without_running(
    bus: RedisStreamsBus, store: RedisDurableStore
) -> None:
    runs: list[str] = []
    client = FlowClient(bus)
    trace_id = await client.emit(_msg(1))
    assert await client.cancel(trace_id) is True
    worker = Worker(_flow(store, runs), bus=bus, claim_idle_s=1.0)
    async with worker.running():
        with anyio.fail_after(10):
            outcome = await client.wait(trace_id)
            with pytest.raises(TraceCancelled):
                await client.fetch(trace_id)
    assert outcome.status == "cancelled"
    assert runs == []
    assert worker.statistics().cancelled == 1


async def test_a_cancel_reaches_the_worker_holding_the_trace(
    bus: RedisStreamsBus, store: RedisDurableStore
) -> None:
    client = FlowClient(bus)
    worker = Worker(_flow(store), bus=bus, claim_idle_s=30.0)
    async with worker.running():
        trace_id = await client.emit(_msg("sleep"))
        with anyio.fail_after(10):
            await _until(lambda: not (worker.statistics().inflight == 0))
            await anyio.sleep(0.05)
            assert await client.cancel(trace_id) is True  # heartbeat is 10 s: pub/sub did it
            assert (await client.wait(trace_id)).status == "cancelled"
    assert worker.statistics().cancelled == 1


async def test_poison_trace_is_dead_lettered_with_deliveries_exhausted(
    bus: RedisStreamsBus, store: RedisDurableStore
) -> None:
    runs: list[str] = []
    client = FlowClient(bus)
    trace_id = await client.emit(_msg(1))
    await bus.claim("ghost-1", 1, min_idle_s=0.0)  # two workers took it and died
    await anyio.sleep(0.02)
    await bus.claim("ghost-2", 1, min_idle_s=0.0)
    await anyio.sleep(0.35)  # idle past claim_idle_s: its last owner looks dead
    worker = Worker(_flow(store, runs), bus=bus, claim_idle_s=0.3, max_deliveries=2)
    async with worker.running():
        with anyio.fail_after(10):
            outcome = await client.wait(trace_id)
    assert outcome.status == "failed"
    assert outcome.attempts == 3
    assert outcome.error is not None
    assert outcome.error.code == FlowErrorCode.DELIVERIES_EXHAUSTED
    assert runs == []
    assert await bus.dead_letters() == [(trace_id, outcome.error.message, 3)]
    stats = worker.statistics()
    assert (stats.dead_lettered, stats.failed, stats.reclaimed) == (1, 1, 1)


async def test_a_worker_that_lost_its_delivery_cancels_the_trace_and_publishes_nothing(
    bus: RedisStreamsBus, store: RedisDurableStore, raw: Any, app: str
) -> None:
    client = FlowClient(bus)
    worker = Worker(_flow(store), bus=bus, claim_idle_s=3.0, heartbeat_s=0.05)
    async with worker.running():
        trace_id = await client.emit(_msg("sleep"))
        with anyio.fail_after(10):
            await _until(lambda: not (worker.statistics().inflight == 0))
            (entry,) = await raw.xrange(f"pf:{{{app}}}:work")
            await raw.xclaim(f"pf:{{{app}}}:work", "workers", "thief", 0, [entry[0]])
            await _until(lambda: not (worker.statistics().lost == 0))
            await _until(lambda: not (worker.statistics().inflight))
    assert await raw.xlen(f"pf:{{{app}}}:o:{trace_id}") == 0  # no end marker from the loser
    stats = worker.statistics()
    assert (stats.lost, stats.cancelled, stats.completed) == (1, 0, 0)


async def test_a_redelivered_trace_resumes_without_rerunning_its_finished_steps(
    bus: RedisStreamsBus, store: RedisDurableStore
) -> None:
    runs: list[str] = []
    hang = [True]

    async def first(msg: Message, ctx: Any) -> Message:
        runs.append("first")
        return msg.with_payload(msg.payload + 1)

    async def second(msg: Message, ctx: Any) -> Message:
        runs.append("second")
        if hang[0]:
            await anyio.sleep(60)
        return msg.with_payload(msg.payload * 10)

    def build() -> Any:
        a, b = Node(first, name="first"), Node(second, name="second")
        return create(a.to(b), b.to(), journal=Journal(store))

    client = FlowClient(bus)
    quitter = Worker(build(), bus=bus, claim_idle_s=30.0, drain_timeout_s=0.0)
    async with quitter.running():
        trace_id = await client.emit(_msg(1))
        with anyio.fail_after(10):
            await _until(lambda: not (runs != ["first", "second"]))
    hang[0] = False
    taker = Worker(build(), bus=bus, claim_idle_s=30.0)
    async with taker.running():
        with anyio.fail_after(10):
            outcome = await client.wait(trace_id)
            result = await client.fetch(trace_id)
    assert runs == ["first", "second", "second"]  # "first" had finished: replayed, not run
    assert result.payload == 20
    assert (outcome.status, outcome.attempts) == ("completed", 2)
    stats = taker.statistics()
    assert (stats.memo_hits, stats.reclaimed, stats.completed) == (1, 1, 1)


async def test_stop_with_no_drain_time_hands_held_traces_to_another_worker_at_once(
    bus: RedisStreamsBus, store: RedisDurableStore
) -> None:
    client = FlowClient(bus)
    quitter = Worker(_flow(store), bus=bus, claim_idle_s=30.0, drain_timeout_s=0.0)
    async with quitter.running():
        trace_id = await client.emit(_msg("sleep"))
        with anyio.fail_after(10):
            await _until(lambda: not (quitter.statistics().inflight == 0))
    taker = Worker(_flow(store), bus=bus, claim_idle_s=30.0)
    async with taker.running():
        with anyio.fail_after(10):
            await _until(lambda: taker.statistics().inflight > 0)  # at once, not after 30 s
        assert await client.cancel(trace_id) is True
        with anyio.fail_after(10):
            outcome = await client.wait(trace_id)
    assert (outcome.status, outcome.attempts) == ("cancelled", 2)
    assert taker.statistics().memo_hits == 1


async def test_a_result_no_process_could_read_fails_its_trace_and_the_worker_goes_on(
    bus: RedisStreamsBus, store: RedisDurableStore
) -> None:
    client = FlowClient(bus)
    worker = Worker(_flow(store), bus=bus, claim_idle_s=1.0)
    async with worker.running():
        bad = await client.emit(_msg("opaque"))
        good = await client.emit(_msg(2))
        with anyio.fail_after(10):
            outcome = await client.wait(bad)
            assert (await client.fetch(good)).payload == 4
    assert outcome.status == "failed"
    assert outcome.error is not None and "JSON-serialisable" in outcome.error.message
    assert (worker.statistics().failed, worker.statistics().completed) == (1, 1)


async def test_an_unknown_ingress_node_fails_the_trace_naming_the_nodes(
    bus: RedisStreamsBus, store: RedisDurableStore
) -> None:
    client = FlowClient(bus)
    async with Worker(_flow(store), bus=bus, claim_idle_s=1.0).running():
        trace_id = await client.emit(_msg(1), to="nope")
        with anyio.fail_after(10):
            outcome = await client.wait(trace_id)
    assert outcome.status == "failed"
    assert outcome.error is not None and "double" in outcome.error.message


async def test_a_cancel_key_set_without_its_announcement_is_seen_at_the_next_heartbeat(
    bus: RedisStreamsBus, store: RedisDurableStore, raw: Any, app: str
) -> None:
    client = FlowClient(bus)
    worker = Worker(_flow(store), bus=bus, claim_idle_s=3.0, heartbeat_s=0.05)
    async with worker.running():
        trace_id = await client.emit(_msg("sleep"))
        with anyio.fail_after(10):
            await _until(lambda: worker.statistics().inflight > 0)
            await raw.set(f"pf:{{{app}}}:c:{trace_id}", "1")  # the pub/sub message was missed
            outcome = await client.wait(trace_id)
    assert outcome.status == "cancelled"


async def test_outputs_expire_result_ttl_after_the_end(
    redis_url: str, app: str, store: RedisDurableStore, raw: Any
) -> None:
    async with RedisStreamsBus.open(redis_url, app=app, result_ttl_s=120.0, block_s=0.1) as bus:
        client = FlowClient(bus)
        trace_id = await client.emit(_msg(1))
        key = f"pf:{{{app}}}:o:{trace_id}"
        assert await raw.ttl(f"pf:{{{app}}}:t:{trace_id}") == -1  # queued: no expiry
        async with Worker(_flow(store), bus=bus, claim_idle_s=1.0).running():
            with anyio.fail_after(10):
                await client.wait(trace_id)
        assert 0 < await raw.ttl(key) <= 120
        assert 0 < await raw.ttl(f"pf:{{{app}}}:t:{trace_id}") <= 120


async def test_worker_payload_type_validates_the_ingress_payload(
    bus: RedisStreamsBus, store: RedisDurableStore
) -> None:
    from pydantic import BaseModel

    class Order(BaseModel):
        qty: int

    seen: list[object] = []

    async def take(msg: Message, ctx: Any) -> Message:
        seen.append(msg.payload)
        return msg.with_payload(msg.payload.qty + 1)

    node = Node(take, name="take")
    flow = create(node.to(), journal=Journal(store))
    client = FlowClient(bus)
    async with Worker(flow, bus=bus, claim_idle_s=1.0, payload_type=Order).running():
        good = await client.emit(_msg({"qty": 2}))
        bad = await client.emit(_msg({"qty": "many"}))
        with anyio.fail_after(10):
            assert (await client.fetch(good)).payload == 3
            outcome = await client.wait(bad)
    assert seen == [Order(qty=2)]
    assert outcome.error is not None
    assert outcome.error.code == FlowErrorCode.VALIDATION_ERROR


async def test_a_result_published_before_a_worker_died_reaches_the_client_once(
    bus: RedisStreamsBus, store: RedisDurableStore
) -> None:
    from penguiflow.core._work_codec import encode_result

    client = FlowClient(bus)
    msg = _msg(5)
    trace_id = await client.emit(msg)
    (ghost,) = await bus.claim("ghost", 1, min_idle_s=0.0)  # runs it, publishes, dies: no ack
    await bus.put_output(
        TraceOutput(trace_id, "r:0", "result", encode_result(msg.with_payload(10)))
    )
    await anyio.sleep(0.35)
    worker = Worker(_flow(store), bus=bus, claim_idle_s=0.3)
    async with worker.running():
        with anyio.fail_after(10):
            outcome = await client.wait(trace_id)
            assert (await client.fetch(trace_id)).payload == 10
            with pytest.raises(TraceEnded):
                await client.fetch(trace_id)
    kinds = [o.kind async for _cursor, o in bus.outputs(trace_id)]
    assert kinds == ["result", "end"]
    assert (outcome.status, outcome.attempts, ghost.attempt) == ("completed", 2, 1)


_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("claim"), st.sampled_from("abc"), st.just(0)),
        st.tuples(st.just("renew"), st.sampled_from("abc"), st.just(0)),
        st.tuples(st.just("settle"), st.sampled_from("abc"), st.integers(0, 2)),
    ),
    max_size=14,
)


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=_OPS)
async def test_only_the_current_owner_can_renew_or_settle_an_entry(
    redis_url: str, raw: Any, ops: list[tuple[str, str, int]]
) -> None:
    app = f"wbh{uuid.uuid4().hex[:10]}"
    try:
        async with RedisStreamsBus.open(redis_url, app=app, block_s=0.01) as bus:
            items = [f"t{i}" for i in range(3)]
            for trace_id in items:
                await bus.submit(_item(trace_id))
            owner: dict[str, str] = {}
            settled: set[str] = set()
            known: dict[str, Any] = {}
            for op, consumer, index in ops:
                if op == "claim":  # min_idle_s=0: every unsettled entry is taken over
                    for delivery in await bus.claim(consumer, 10, min_idle_s=0.0):
                        known[delivery.item.trace_id] = delivery
                    for trace_id in items:
                        if trace_id not in settled:
                            owner[trace_id] = consumer
                elif op == "renew":
                    mine = [d for d in known.values() if d.item.trace_id not in settled]
                    lost = {d.item.trace_id for d in await bus.renew(consumer, mine)}
                    assert lost == {
                        d.item.trace_id for d in mine if owner.get(d.item.trace_id) != consumer
                    }
                elif items[index] in known:
                    trace_id = items[index]
                    ok = await bus.settle(consumer, known[trace_id])
                    expected = trace_id not in settled and owner.get(trace_id) == consumer
                    assert ok is expected
                    if ok:
                        settled.add(trace_id)
    finally:
        keys = [key async for key in raw.scan_iter(match=f"pf:{{{app}}}:*")]
        if keys:
            await raw.delete(*keys)
