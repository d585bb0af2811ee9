"""OpenTelemetry hook: one span per node invocation, errors recorded, traces kept apart."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import anyio
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from penguiflow.core import (
    Context,
    FlowError,
    FlowEvent,
    FlowEventType,
    Headers,
    Message,
    ModelRegistry,
    Node,
    NodePolicy,
    TraceCancelled,
    create,
)
from penguiflow.core.otel import OtelHook, otel_hook

FAST_RETRY = NodePolicy(max_retries=1, backoff_base=0.001, jitter=0.0)


class Tracing:
    def __init__(self, *, group_by_trace: bool = True) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.hook: OtelHook = otel_hook(self.provider, group_by_trace=group_by_trace)

    def spans(self) -> tuple[ReadableSpan, ...]:
        return self.exporter.get_finished_spans()

    def shutdown(self) -> None:
        self.provider.shutdown()


@pytest.fixture
def tracing() -> Iterator[Tracing]:
    tracing = Tracing()
    yield tracing
    tracing.shutdown()


def _msg(payload: Any, trace_id: str) -> Message:
    return Message(payload=payload, headers=Headers(tenant="t"), trace_id=trace_id)


def _attr(span: ReadableSpan, key: str) -> Any:
    assert span.attributes is not None
    return span.attributes.get(key)


def _by_trace(spans: Sequence[ReadableSpan], trace_id: str) -> list[ReadableSpan]:
    return [s for s in spans if _attr(s, "penguiflow.trace_id") == trace_id]


async def _add(msg: Message, ctx: Context) -> int:
    return msg.payload + 1


async def test_each_node_invocation_is_one_span_with_trace_and_node_attributes(
    tracing: Tracing,
) -> None:
    first, second = Node(_add, name="first"), Node(_add, name="second")
    flow = create(first.to(second), second.to(), on_event=tracing.hook)
    traces = ["a" * 32, "b" * 32]
    with anyio.fail_after(5):
        async with flow.running():
            for trace_id in traces:
                await flow.emit(_msg(0, trace_id))
            for trace_id in traces:
                assert await flow.fetch(trace_id=trace_id) == 2

    spans = tracing.spans()
    assert len(spans) == 4
    for trace_id in traces:
        mine = _by_trace(spans, trace_id)
        assert sorted(s.name for s in mine) == ["first", "second"]
        for span in mine:
            assert _attr(span, "penguiflow.node_name") == span.name
            assert _attr(span, "penguiflow.node_id") == flow.node(span.name).node_id
            assert _attr(span, "penguiflow.attempt") == 0
            assert _attr(span, "penguiflow.latency_ms") >= 0
            assert span.status.status_code is StatusCode.UNSET
            assert span.end_time is not None and span.start_time is not None
            assert span.end_time >= span.start_time
            # group_by_trace: a 32-hex trace id *is* the OpenTelemetry trace id.
            assert span.context is not None and span.context.trace_id == int(trace_id, 16)
            assert span.parent is not None and span.parent.is_remote
        assert mine[0].parent == mine[1].parent
    assert tracing.hook.open_spans == 0


async def test_retried_invocation_is_one_span_that_records_the_failed_attempt(
    tracing: Tracing,
) -> None:
    calls: list[int] = []

    async def flaky(msg: Message, ctx: Context) -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("first attempt drops")
        return "ok"

    flow = create(Node(flaky, policy=FAST_RETRY).to(), on_event=tracing.hook)
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(_msg(None, "retry-trace"))
            assert await flow.fetch(trace_id="retry-trace") == "ok"

    (span,) = tracing.spans()
    assert _attr(span, "penguiflow.attempt") == 1
    assert span.status.status_code is StatusCode.UNSET
    assert [e.name for e in span.events] == ["exception", "penguiflow.retry"]
    exception = span.events[0].attributes
    assert exception is not None
    assert exception["exception.type"] == "ConnectionError"
    assert exception["exception.message"] == "ConnectionError('first attempt drops')"
    assert exception["penguiflow.attempt"] == 0


async def test_failed_node_span_has_error_status_and_every_attempt_recorded(
    tracing: Tracing,
) -> None:
    async def broken(msg: Message, ctx: Context) -> None:
        raise ValueError(f"cannot handle {msg.payload}")

    flow = create(
        Node(broken, policy=FAST_RETRY).to(), on_event=tracing.hook, emit_errors_to_rookery=True
    )
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(_msg(7, "doomed"))
            error = await flow.fetch(trace_id="doomed")
    assert isinstance(error, FlowError)

    (span,) = tracing.spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description is not None
    assert span.status.description.startswith("NODE_EXCEPTION")
    assert _attr(span, "penguiflow.error_code") == "NODE_EXCEPTION"
    assert _attr(span, "penguiflow.attempt") == 1
    exceptions = [e for e in span.events if e.name == "exception"]
    assert len(exceptions) == 2
    for event in exceptions:
        assert event.attributes is not None
        assert event.attributes["exception.type"] == "ValueError"
        assert event.attributes["exception.message"] == "ValueError('cannot handle 7')"
    assert tracing.hook.open_spans == 0


async def test_timed_out_attempt_is_recorded_as_timeout_error(tracing: Tracing) -> None:
    async def stuck(msg: Message, ctx: Context) -> None:
        await anyio.sleep_forever()

    node = Node(stuck, policy=NodePolicy(timeout_s=0.01))
    flow = create(node.to(), on_event=tracing.hook, emit_errors_to_rookery=True)
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(_msg(None, "slow"))
            assert isinstance(await flow.fetch(trace_id="slow"), FlowError)

    (span,) = tracing.spans()
    assert span.status.status_code is StatusCode.ERROR
    assert _attr(span, "penguiflow.error_code") == "NODE_TIMEOUT"
    attributes = span.events[0].attributes
    assert attributes is not None and attributes["exception.type"] == "TimeoutError"


async def test_concurrent_traces_each_get_their_own_span_timing(tracing: Tracing) -> None:
    traces = [f"{i:032x}" for i in range(1, 9)]
    gates = {trace_id: anyio.Event() for trace_id in traces}
    started: list[str] = []
    all_started = anyio.Event()
    events: list[FlowEvent] = []

    async def work(msg: Message, ctx: Context) -> str:
        started.append(msg.trace_id)
        if len(started) == len(traces):
            all_started.set()
        await gates[msg.trace_id].wait()
        return msg.trace_id

    flow = create(Node(work).to(), on_event=tracing.hook)
    flow.add_event_hook(events.append)
    with anyio.fail_after(5):
        async with flow.running():
            for trace_id in traces:
                await flow.emit(_msg(None, trace_id))
            await all_started.wait()
            assert tracing.hook.open_spans == len(traces)
            for trace_id in reversed(traces):  # finish in the opposite order
                gates[trace_id].set()
                assert await flow.fetch(trace_id=trace_id) == trace_id

    spans = tracing.spans()
    assert len(spans) == len(traces)
    assert [_attr(s, "penguiflow.trace_id") for s in spans] == list(reversed(traces))
    for span in spans:
        trace_id = _attr(span, "penguiflow.trace_id")
        start = next(
            e for e in events if e.trace_id == trace_id and e.event_type == FlowEventType.NODE_START
        )
        end = next(
            e
            for e in events
            if e.trace_id == trace_id and e.event_type == FlowEventType.NODE_SUCCESS
        )
        assert span.start_time == int(start.ts * 1e9)
        assert span.end_time == int(end.ts * 1e9)
        assert span.context is not None and span.context.trace_id == int(trace_id, 16)
    assert tracing.hook.open_spans == 0


async def test_cancelled_trace_ends_its_span_and_leaves_no_open_state(tracing: Tracing) -> None:
    entered = anyio.Event()

    async def maybe_stuck(msg: Message, ctx: Context) -> str:
        if msg.trace_id == "stuck":
            entered.set()
            await anyio.sleep_forever()
        return msg.trace_id

    flow = create(Node(maybe_stuck).to(), on_event=tracing.hook)
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(_msg(None, "stuck"))
            await entered.wait()
            assert tracing.hook.open_spans == 1
            await flow.emit(_msg(None, "fine"))
            assert await flow.fetch(trace_id="fine") == "fine"
            assert await flow.cancel("stuck") is True
            with pytest.raises(TraceCancelled):
                await flow.fetch(trace_id="stuck")
            assert tracing.hook.open_spans == 0

    (cancelled,) = _by_trace(tracing.spans(), "stuck")
    assert cancelled.status.status_code is StatusCode.ERROR
    assert _attr(cancelled, "penguiflow.cancelled") is True
    (fine,) = _by_trace(tracing.spans(), "fine")
    assert fine.status.status_code is StatusCode.UNSET


async def test_trace_cancelled_during_retry_backoff_ends_its_span(tracing: Tracing) -> None:
    failed_once = anyio.Event()

    async def fails(msg: Message, ctx: Context) -> None:
        failed_once.set()
        raise RuntimeError("try again later")

    slow_retry = NodePolicy(max_retries=3, backoff_base=60.0, jitter=0.0)
    flow = create(Node(fails, policy=slow_retry).to(), on_event=tracing.hook)
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(_msg(None, "backing-off"))
            await failed_once.wait()
            assert tracing.hook.open_spans == 1
            assert await flow.cancel("backing-off") is True
            assert tracing.hook.open_spans == 0

    (span,) = tracing.spans()
    assert _attr(span, "penguiflow.cancelled") is True
    assert [e.name for e in span.events] == ["exception", "penguiflow.retry"]


async def test_stopping_a_flow_mid_invocation_leaves_spans_to_end_open_spans(
    tracing: Tracing,
) -> None:
    entered = anyio.Event()

    async def stuck(msg: Message, ctx: Context) -> None:
        entered.set()
        await anyio.sleep_forever()

    flow = create(Node(stuck).to(), on_event=tracing.hook)
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(_msg(None, "abandoned"))
            await entered.wait()

    assert tracing.spans() == ()
    assert tracing.hook.end_open_spans() == 1
    assert tracing.hook.open_spans == 0
    (span,) = tracing.spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "interrupted"


async def test_failure_before_any_attempt_gets_a_zero_length_error_span(
    tracing: Tracing,
) -> None:
    async def typed(msg: int, ctx: Context) -> int:
        return msg

    registry = ModelRegistry()
    registry.register("typed", int, int)
    flow = create(Node(typed).to(), on_event=tracing.hook, emit_errors_to_rookery=True)
    with anyio.fail_after(5):
        async with flow.running(registry=registry):
            await flow.emit("not a number", trace_id="invalid")
            error = await flow.fetch(trace_id="invalid")
    assert isinstance(error, FlowError)

    (span,) = tracing.spans()
    assert span.status.status_code is StatusCode.ERROR
    assert _attr(span, "penguiflow.error_code") == "VALIDATION_ERROR"
    assert span.start_time == span.end_time
    assert span.events[0].name == "exception"
    assert tracing.hook.open_spans == 0


async def test_traces_with_non_hex_ids_are_grouped_by_a_stable_hash(tracing: Tracing) -> None:
    first, second = Node(_add, name="first"), Node(_add, name="second")
    flow = create(first.to(second), second.to(), on_event=tracing.hook)
    with anyio.fail_after(5):
        async with flow.running():
            for trace_id in ("order-17", "order-18"):
                await flow.emit(_msg(0, trace_id))
                await flow.fetch(trace_id=trace_id)

    otel_ids: dict[str, set[int]] = {}
    for span in tracing.spans():
        assert span.context is not None
        otel_ids.setdefault(_attr(span, "penguiflow.trace_id"), set()).add(span.context.trace_id)
    assert len(otel_ids["order-17"]) == 1
    assert len(otel_ids["order-18"]) == 1
    assert otel_ids["order-17"] != otel_ids["order-18"]


async def test_without_grouping_spans_have_no_synthetic_parent() -> None:
    async def inc(item: Message | int, ctx: Context) -> int:
        return (item.payload if isinstance(item, Message) else item) + 1

    tracing = Tracing(group_by_trace=False)
    flow = create(Node(inc).to(), on_event=tracing.hook)
    try:
        with anyio.fail_after(5):
            async with flow.running():
                await flow.emit(_msg(0, "c" * 32))
                await flow.fetch(trace_id="c" * 32)
                await flow.emit(1)  # an untraced bare payload
                assert await flow.fetch() == 2
    finally:
        tracing.shutdown()

    traced, untraced = tracing.spans()
    assert traced.parent is None and untraced.parent is None
    assert _attr(traced, "penguiflow.trace_id") == "c" * 32
    assert _attr(untraced, "penguiflow.trace_id") is None
    assert _attr(untraced, "penguiflow.node_name") == "inc"


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_missing_opentelemetry_raises_import_error_with_the_install_hint() -> None:
    result = _run_python(
        "import sys\n"
        "sys.modules['opentelemetry'] = None\n"
        "try:\n"
        "    import penguiflow.core.otel\n"
        "except ImportError as exc:\n"
        "    print('IMPORT-ERROR:', exc)\n"
    )
    assert result.returncode == 0, result.stderr
    assert "IMPORT-ERROR:" in result.stdout
    assert 'pip install "penguiflow-core[otel]"' in result.stdout


def test_importing_core_does_not_import_the_optional_integrations() -> None:
    result = _run_python(
        "import sys\n"
        "import penguiflow.core\n"
        "loaded = sorted(m for m in sys.modules\n"
        "    if m.split('.')[0] in ('opentelemetry', 'prometheus_client')\n"
        "    or m in ('penguiflow.core.otel', 'penguiflow.core.prometheus'))\n"
        "print('LOADED:', loaded)\n"
    )
    assert result.returncode == 0, result.stderr
    assert "LOADED: []" in result.stdout
