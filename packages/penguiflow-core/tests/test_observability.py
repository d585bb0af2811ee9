"""Events, listeners and distribution hooks: informative, off the hot path, never fatal."""

from __future__ import annotations

import ast
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import anyio
import pytest

import penguiflow.core as core
from penguiflow.core import (
    BusEnvelope,
    Context,
    FlowEvent,
    FlowEventType,
    Headers,
    InMemoryStateStore,
    Message,
    Node,
    NodePolicy,
    PenguiFlow,
    StoredEvent,
    TraceCancelled,
    create,
)
from penguiflow.core import _runtime as flow_module

FAST_RETRY = NodePolicy(max_retries=1, backoff_base=0.001, jitter=0.0)


def _msg(payload: Any, trace_id: str) -> Message:
    return Message(payload=payload, headers=Headers(tenant="t"), trace_id=trace_id)


async def _echo(item: Any, ctx: Context) -> Any:
    return item.payload if isinstance(item, Message) else item


class _Bus:
    def __init__(self) -> None:
        self.envelopes: list[BusEnvelope] = []

    async def publish(self, envelope: BusEnvelope) -> None:
        self.envelopes.append(envelope)


async def _run_traces(flow: PenguiFlow, traces: Sequence[str], payload: Any = 1) -> list[Any]:
    with anyio.fail_after(5):
        async with flow.running():
            for trace_id in traces:
                await flow.emit(_msg(payload, trace_id))
            return [await flow.fetch(trace_id=trace_id) for trace_id in traces]


# ------------------------------------------------------------------- events
async def test_node_events_carry_trace_node_time_latency_and_queue_depths() -> None:
    first = Node(_echo, name="first", policy=NodePolicy(max_concurrency=1))
    second = Node(_echo, name="second")
    flow = create(first.to(second), second.to())
    seen: list[tuple[FlowEvent, int]] = []
    flow.add_event_hook(lambda event: seen.append((event, flow.statistics().queued)))
    traces = ["t1", "t2", "t3"]
    before = time.time()

    await _run_traces(flow, traces)

    after = time.time()
    events = [event for event, _ in seen]
    for event, queued_now in seen:
        assert before <= event.ts <= after
        if event.node_name == "first":
            # The depths are the live floe sizes: here they add up to everything queued.
            assert event.queue_depth_in + event.queue_depth_out == queued_now
            assert event.outgoing_edges == 1
        assert event.queue_maxsize == 64
    starts = [e for e in events if e.event_type == FlowEventType.NODE_START]
    successes = [e for e in events if e.event_type == FlowEventType.NODE_SUCCESS]
    assert len(starts) == len(successes) == 6
    for event in starts + successes:
        assert event.trace_id in traces
        assert event.node_name in ("first", "second")
        assert event.node_id == flow.node(event.node_name).node_id
        assert event.attempt == 0
    assert all(e.latency_ms is None for e in starts)
    assert all(e.latency_ms is not None and e.latency_ms >= 0 for e in successes)
    # One worker at "first": the three traces were queued behind each other.
    first_starts = [e for e in starts if e.node_name == "first"]
    assert [e.trace_id for e in first_starts] == traces
    assert [e.queue_depth_in for e in first_starts] == [2, 1, 0]
    # Per trace: emitted, then first, then second, then fetched.
    for trace_id in traces:
        kinds = [(e.event_type.value, e.node_name) for e in events if e.trace_id == trace_id]
        assert kinds == [
            ("emit", None),
            ("node_start", "first"),
            ("node_success", "first"),
            ("node_start", "second"),
            ("node_success", "second"),
            ("fetch", None),
        ]
    payload = successes[0].to_payload()
    assert {"trace_id", "node_name", "ts", "latency_ms", "q_depth_in", "q_depth_out"} <= set(
        payload
    )


def test_flow_events_are_built_in_one_place_only() -> None:
    # The "no listener, no event" tests count the calls of _runtime._new_event; an event built
    # anywhere else would escape them.
    package = Path(core.__file__).parent
    sites: list[tuple[str, str]] = []
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("FlowEvent", "_new_event")
            ):
                sites.append((path.name, node.func.id))
    assert sites == [("_runtime.py", "_new_event")]


def _count_built_events(monkeypatch: pytest.MonkeyPatch) -> list[FlowEvent]:
    built: list[FlowEvent] = []
    real: Callable[[type[FlowEvent], tuple[Any, ...]], FlowEvent]
    real = flow_module._new_event  # pyright: ignore[reportPrivateUsage]

    def counting(cls: type[FlowEvent], values: tuple[Any, ...]) -> FlowEvent:
        event = real(cls, values)
        built.append(event)
        return event

    monkeypatch.setattr(flow_module, "_new_event", counting)
    return built


async def _busy_workload(flow: PenguiFlow, stuck_entered: anyio.Event) -> None:
    """Success, a retried failure, a stream chunk, a cancelled invocation, a drop and fetches."""
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(_msg("flaky", "flaky"))
            assert await flow.fetch(trace_id="flaky") == "flaky"
            await flow.emit(_msg("chunk", "chunk"))
            chunk = (await flow.fetch(trace_id="chunk")).payload
            assert isinstance(chunk, core.StreamChunk) and chunk.text == "hi"
            assert await flow.fetch(trace_id="chunk") == "spoke"
            await flow.emit(_msg("stuck", "stuck"))
            await stuck_entered.wait()
            await flow.emit(_msg("parked", "stuck"))  # queued behind it: the cancel drops it
            assert await flow.cancel("stuck") is True
            with pytest.raises(TraceCancelled):
                await flow.fetch(trace_id="stuck")


def _busy_flow(**kwargs: Any) -> tuple[PenguiFlow, anyio.Event]:
    failed: list[bool] = []
    stuck_entered = anyio.Event()

    async def worker(msg: Message, ctx: Context) -> Any:
        if msg.payload == "flaky" and not failed:
            failed.append(True)
            raise RuntimeError("first attempt fails")
        if msg.payload == "chunk":
            await ctx.emit_chunk(parent=msg, text="hi", done=True)
            return "spoke"
        if msg.payload == "stuck":
            stuck_entered.set()
            await anyio.sleep_forever()
        return msg.payload

    return create(Node(worker, policy=FAST_RETRY).to(), **kwargs), stuck_entered


async def test_no_listener_builds_no_event(monkeypatch: pytest.MonkeyPatch) -> None:
    built = _count_built_events(monkeypatch)

    await _busy_workload(*_busy_flow())

    assert built == []


async def test_a_message_bus_alone_builds_no_event(monkeypatch: pytest.MonkeyPatch) -> None:
    built = _count_built_events(monkeypatch)
    bus = _Bus()

    await _busy_workload(*_busy_flow(message_bus=bus))

    assert built == []
    assert bus.envelopes  # the bus was fed all the same


async def test_a_listener_sees_every_kind_of_event_of_the_workload(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built = _count_built_events(monkeypatch)  # proves the patch above would have counted
    seen: list[FlowEvent] = []

    await _busy_workload(*_busy_flow(on_event=seen.append))

    assert built == seen
    kinds = {e.event_type for e in seen}
    assert kinds >= {
        FlowEventType.EMIT,
        FlowEventType.FETCH,
        FlowEventType.NODE_START,
        FlowEventType.NODE_SUCCESS,
        FlowEventType.NODE_ERROR,
        FlowEventType.NODE_RETRY,
        FlowEventType.STREAM_CHUNK,
        FlowEventType.TRACE_CANCEL_START,
        FlowEventType.TRACE_CANCEL_DROP,
        FlowEventType.TRACE_CANCEL_FINISH,
        FlowEventType.NODE_TRACE_CANCELLED,
    }


# ---------------------------------------------------------------- listeners
async def test_raising_hooks_and_middlewares_are_logged_counted_and_harmless(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="penguiflow.core")
    seen: list[FlowEvent] = []

    def bad_hook(event: FlowEvent) -> None:
        raise ValueError("hook bug")

    async def bad_middleware(event: FlowEvent) -> None:
        raise RuntimeError("middleware bug")

    flow = create(Node(_echo).to(), on_event=bad_hook, middlewares=[bad_middleware])
    flow.add_event_hook(seen.append)  # runs after the failing hook

    results = await _run_traces(flow, ["a", "b", "c"], payload="ok")

    assert results == ["ok", "ok", "ok"]
    assert len(seen) == 12  # emit, start, success, fetch per trace
    assert flow.statistics().listener_errors == 2 * len(seen)
    hook_logs = [r for r in caplog.records if str(r.msg).startswith("event hook")]
    middleware_logs = [r for r in caplog.records if str(r.msg).startswith("middleware")]
    assert len(hook_logs) == len(middleware_logs) == len(seen)
    assert all(r.exc_info is not None for r in hook_logs + middleware_logs)
    assert "middleware bug" in caplog.text and "hook bug" in caplog.text


async def test_slow_middleware_never_holds_up_the_flow() -> None:
    release = anyio.Event()
    blocked = anyio.Event()
    delivered: list[FlowEvent] = []
    seen: list[FlowEvent] = []

    async def slow(event: FlowEvent) -> None:
        delivered.append(event)
        blocked.set()
        await release.wait()

    flow = create(Node(_echo).to(), middlewares=[slow], on_event=seen.append)
    traces = [f"t{i}" for i in range(20)]
    with anyio.fail_after(5):
        async with flow.running():
            for trace_id in traces:
                await flow.emit(_msg(trace_id, trace_id))
            results = [await flow.fetch(trace_id=t) for t in traces]
            await blocked.wait()
            # Every result arrived while the middleware sat on its first event.
            assert results == traces
            assert delivered == seen[:1]
            release.set()

    assert delivered == seen
    assert len(seen) == 4 * len(traces)
    assert flow.statistics().events_dropped == 0


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
async def test_full_listener_buffer_drops_by_policy_and_counts(
    policy: Literal["drop_oldest", "drop_newest"],
) -> None:
    release = anyio.Event()
    blocked = anyio.Event()
    delivered: list[FlowEvent] = []
    seen: list[FlowEvent] = []

    async def slow(event: FlowEvent) -> None:
        delivered.append(event)
        blocked.set()
        await release.wait()

    flow = create(
        Node(_echo).to(),
        middlewares=[slow],
        on_event=seen.append,
        event_buffer_size=3,
        event_overflow=policy,
    )
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(_msg("warm-up", "t0"))
            await blocked.wait()  # the middleware holds seen[0]; at most 2 events are buffered
            assert await flow.fetch(trace_id="t0") == "warm-up"
            for i in range(1, 6):
                await flow.emit(_msg(i, f"t{i}"))
                assert await flow.fetch(trace_id=f"t{i}") == i
            release.set()

    assert len(seen) == 24
    assert flow.statistics().events_dropped == len(seen) - 4  # one in hand, three buffered
    assert delivered[0] is seen[0]
    if policy == "drop_newest":
        assert delivered == seen[:4]
    else:
        assert delivered == [seen[0], *seen[-3:]]


async def test_middleware_added_while_running_receives_later_events() -> None:
    delivered: list[FlowEvent] = []

    async def record(event: FlowEvent) -> None:
        delivered.append(event)

    flow = create(Node(_echo).to())
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(_msg("before", "before"))
            await flow.fetch(trace_id="before")
            flow.add_middleware(record)
            await flow.emit(_msg("after", "after"))
            await flow.fetch(trace_id="after")

    assert {e.trace_id for e in delivered} == {"after"}
    assert [e.event_type.value for e in delivered] == [
        "emit",
        "node_start",
        "node_success",
        "fetch",
    ]


def test_invalid_buffer_settings_fail_at_create() -> None:
    with pytest.raises(ValueError, match="event_buffer_size"):
        create(Node(_echo).to(), event_buffer_size=0)
    with pytest.raises(ValueError, match="event_overflow"):
        create(Node(_echo).to(), event_overflow="drop_everything")  # pyright: ignore[reportArgumentType]


# ------------------------------------------------------------- state store
async def test_state_store_history_is_the_trace_events_in_order() -> None:
    store = InMemoryStateStore()
    seen: list[FlowEvent] = []
    first, second = Node(_echo, name="first"), Node(_echo, name="second")
    flow = create(first.to(second), second.to(), state_store=store, on_event=seen.append)
    traces = ["alpha", "beta"]
    with anyio.fail_after(5):
        async with flow.running():
            for trace_id in traces:
                await flow.emit(_msg(trace_id, trace_id))
            for trace_id in traces:
                await flow.fetch(trace_id=trace_id)
            live_history = await flow.load_history("alpha")  # flushes pending events first
        history = await flow.load_history("alpha")

    expected = [e for e in seen if e.trace_id == "alpha"]
    assert [(h.kind, h.node_name, h.ts) for h in history] == [
        (e.event_type.value, e.node_name, e.ts) for e in expected
    ]
    assert [h.kind for h in history] == [
        "emit",
        "node_start",
        "node_success",
        "node_start",
        "node_success",
        "fetch",
    ]
    assert list(live_history) == list(history)
    assert all(h.trace_id == "alpha" for h in history)
    assert len({h.event_id for h in history}) == len(history)
    assert history[2].payload["latency_ms"] == expected[2].latency_ms
    assert len(store) == len(seen)


async def test_state_store_save_is_idempotent() -> None:
    store = InMemoryStateStore()
    event = StoredEvent(
        event_id="e1", trace_id="t", ts=1.0, kind="emit", node_name=None, node_id=None
    )

    await store.save_event(event)
    await store.save_event(event)

    assert list(await store.load_history("t")) == [event]
    assert list(await store.load_history("unknown")) == []


async def test_load_history_without_a_store_says_how_to_add_one() -> None:
    flow = create(Node(_echo).to())
    with pytest.raises(RuntimeError, match="state_store=InMemoryStateStore"):
        await flow.load_history("t")


async def test_slow_state_store_never_holds_up_the_flow() -> None:
    release = anyio.Event()
    blocked = anyio.Event()

    class SlowStore(InMemoryStateStore):
        async def save_event(self, event: StoredEvent) -> None:
            blocked.set()
            await release.wait()
            await super().save_event(event)

    store = SlowStore()
    flow = create(Node(_echo).to(), state_store=store)
    traces = [f"t{i}" for i in range(10)]
    with anyio.fail_after(5):
        async with flow.running():
            for trace_id in traces:
                await flow.emit(_msg(trace_id, trace_id))
            results = [await flow.fetch(trace_id=t) for t in traces]
            await blocked.wait()
            assert results == traces
            assert len(store) == 0
            release.set()
            history = await flow.load_history("t3")

    assert [h.kind for h in history] == ["emit", "node_start", "node_success", "fetch"]
    assert len(store) == 4 * len(traces)


async def test_failing_store_and_bus_are_logged_counted_and_harmless(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="penguiflow.core")

    class BrokenStore(InMemoryStateStore):
        async def save_event(self, event: StoredEvent) -> None:
            raise OSError("disk full")

    class BrokenBus:
        async def publish(self, envelope: BusEnvelope) -> None:
            raise ConnectionError("broker down")

    seen: list[FlowEvent] = []
    flow = create(
        Node(_echo).to(), state_store=BrokenStore(), message_bus=BrokenBus(), on_event=seen.append
    )
    traces = ["a", "b", "c"]

    results = await _run_traces(flow, traces, payload="ok")

    assert results == ["ok"] * 3
    stats = flow.statistics()
    assert stats.store_errors == len(seen) == 12
    assert stats.bus_errors == 2 * len(traces)  # OpenSea->_echo and _echo->Rookery per trace
    assert stats.listener_errors == 0
    templates = [str(r.msg) for r in caplog.records]
    assert sum(m.startswith("state_store_save_failed") for m in templates) == stats.store_errors
    assert sum(m.startswith("message_bus_publish_failed") for m in templates) == stats.bus_errors


# -------------------------------------------------------------- message bus
async def test_bus_sees_every_edge_crossing_of_a_chain() -> None:
    bus = _Bus()
    first, second = Node(_echo, name="first"), Node(_echo, name="second")
    flow = create(first.to(second), second.to(), message_bus=bus)
    traces = ["t1", "t2"]

    await _run_traces(flow, traces, payload="x")

    for trace_id in traces:
        mine = [e for e in bus.envelopes if e.trace_id == trace_id]
        assert [(e.edge, e.source, e.target) for e in mine] == [
            ("OpenSea->first", "OpenSea", "first"),
            ("first->second", "first", "second"),
            ("second->Rookery", "second", "Rookery"),
        ]
        emitted = mine[0].payload  # the emitted Message, then the bare values the nodes returned
        assert isinstance(emitted, Message)
        assert emitted.trace_id == trace_id
        assert [e.payload for e in mine[1:]] == ["x", "x"]
        for envelope in mine:  # every crossing carries the trace's envelope
            assert envelope.headers == {
                "tenant": "t",
                "topic": None,
                "priority": 0,
                "user": None,
                "session": None,
            }
            assert envelope.meta == {}
    assert len(bus.envelopes) == 3 * len(traces)


async def test_bus_sees_fan_out_broadcast_and_bare_payload_crossings() -> None:
    bus = _Bus()
    source = Node(_echo, name="source")
    left, right = Node(_echo, name="left"), Node(_echo, name="right")
    side = Node(_echo, name="side")
    flow = create(source.to(left, right), left.to(), right.to(), side.to(), message_bus=bus)

    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(_msg("fan", "fan"))  # broadcast to both ingress nodes
            results = [await flow.fetch(trace_id="fan") for _ in range(3)]
            await flow.emit("bare", to="side", trace_id="bare")
            assert await flow.fetch(trace_id="bare") == "bare"

    assert sorted(results) == ["fan", "fan", "fan"]
    fan = sorted(e.edge for e in bus.envelopes if e.trace_id == "fan")
    assert fan == sorted(
        [
            "OpenSea->source",
            "OpenSea->side",
            "source->left",
            "source->right",
            "left->Rookery",
            "right->Rookery",
            "side->Rookery",
        ]
    )
    bare = [e for e in bus.envelopes if e.trace_id == "bare"]
    assert [(e.edge, e.payload, e.headers, e.meta) for e in bare] == [
        ("OpenSea->side", "bare", None, None),
        ("side->Rookery", "bare", None, None),
    ]
