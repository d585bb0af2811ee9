"""Prometheus hook: counters and a latency histogram that match what the flow did."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from types import MappingProxyType
from typing import Any

import anyio
import pytest
from prometheus_client import CollectorRegistry

from penguiflow.core import (
    Context,
    FlowError,
    FlowEvent,
    FlowEventType,
    Headers,
    Message,
    Node,
    NodePolicy,
    TraceCancelled,
    create,
)
from penguiflow.core.prometheus import PrometheusHook

FAST_RETRY = NodePolicy(max_retries=1, backoff_base=0.001, jitter=0.0)


def _msg(payload: Any, trace_id: str) -> Message:
    return Message(payload=payload, headers=Headers(tenant="t"), trace_id=trace_id)


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    assert value is not None, f"no sample {name}{labels}"
    return value


def _event(kind: FlowEventType, **fields: Any) -> FlowEvent:
    values: dict[str, Any] = {"ts": 1.0, "node_name": "n", "node_id": "n#1", "trace_id": "t"}
    values.update(fields)
    return FlowEvent(event_type=kind, **values)


async def test_counters_and_histogram_match_the_flow_activity() -> None:
    async def parse(msg: Message, ctx: Context) -> int:
        return int(msg.payload)

    async def invert(msg: Message, ctx: Context) -> float:
        return 1 / msg.payload

    registry = CollectorRegistry()
    seen: list[FlowEvent] = []
    parse_node, invert_node = Node(parse), Node(invert, policy=FAST_RETRY)
    flow = create(
        parse_node.to(invert_node),
        invert_node.to(),
        on_event=PrometheusHook(registry),
        emit_errors_to_rookery=True,
    )
    flow.add_event_hook(seen.append)
    payloads = {"t1": "1", "t2": "2", "t4": "4", "t0": "0"}  # 1/0 fails twice, then for good
    with anyio.fail_after(5):
        async with flow.running():
            for trace_id, payload in payloads.items():
                await flow.emit(_msg(payload, trace_id))
            results = {t: await flow.fetch(trace_id=t) for t in payloads}
    assert isinstance(results["t0"], FlowError)
    assert results["t4"] == 0.25

    name = "penguiflow_node_events_total"
    assert _value(registry, name, node="parse", event="node_start") == 4
    assert _value(registry, name, node="parse", event="node_success") == 4
    assert _value(registry, name, node="invert", event="node_start") == 5
    assert _value(registry, name, node="invert", event="node_success") == 3
    assert _value(registry, name, node="invert", event="node_error") == 2
    assert _value(registry, name, node="invert", event="node_retry") == 1
    assert _value(registry, name, node="invert", event="node_failed") == 1
    # Every (node, event) pair the flow reported is counted exactly.
    counts = Counter((e.node_name, e.event_type.value) for e in seen if e.node_name is not None)
    for (node, event), count in counts.items():
        assert _value(registry, name, node=node, event=event) == count
    assert _value(registry, "penguiflow_flow_events_total", event="emit") == 4
    assert _value(registry, "penguiflow_flow_events_total", event="fetch") == 4
    assert (
        _value(registry, "penguiflow_node_failures_total", node="invert", code="NODE_EXCEPTION")
        == 1
    )
    # One latency observation per attempt: 4 at parse; 3 successes + 2 errors at invert.
    assert _value(registry, "penguiflow_node_latency_seconds_count", node="parse") == 4
    assert _value(registry, "penguiflow_node_latency_seconds_count", node="invert") == 5
    assert _value(registry, "penguiflow_node_latency_seconds_bucket", node="invert", le="+Inf") == 5
    latencies = [e.latency_ms for e in seen if e.node_name == "invert" and e.latency_ms is not None]
    assert _value(registry, "penguiflow_node_latency_seconds_sum", node="invert") == pytest.approx(
        sum(latencies) / 1000
    )
    assert _value(registry, "penguiflow_traces_cancelled_total") == 0


async def test_cancelled_traces_are_counted_once() -> None:
    entered = anyio.Event()

    async def stuck(msg: Message, ctx: Context) -> None:
        entered.set()
        await anyio.sleep_forever()

    registry = CollectorRegistry()
    flow = create(Node(stuck).to(), on_event=PrometheusHook(registry))
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(_msg(None, "stuck"))
            await entered.wait()
            assert await flow.cancel("stuck") is True
            assert await flow.cancel("stuck") is False
            with pytest.raises(TraceCancelled):
                await flow.fetch(trace_id="stuck")

    assert _value(registry, "penguiflow_traces_cancelled_total") == 1
    assert _value(registry, "penguiflow_flow_events_total", event="trace_cancel_start") == 1
    assert _value(registry, "penguiflow_flow_events_total", event="trace_cancel_finish") == 1
    assert (
        _value(registry, "penguiflow_node_events_total", node="stuck", event="node_trace_cancelled")
        == 1
    )


def test_latency_lands_in_the_right_buckets() -> None:
    registry = CollectorRegistry()
    hook = PrometheusHook(registry, buckets=(0.005, 0.5, 5.0))

    hook(_event(FlowEventType.NODE_SUCCESS, latency_ms=3.0))
    hook(_event(FlowEventType.NODE_ERROR, latency_ms=300.0))
    hook(_event(FlowEventType.NODE_TIMEOUT, latency_ms=4000.0))
    hook(_event(FlowEventType.NODE_RETRY))  # no latency: not observed

    bucket = "penguiflow_node_latency_seconds_bucket"
    assert _value(registry, bucket, node="n", le="0.005") == 1
    assert _value(registry, bucket, node="n", le="0.5") == 2
    assert _value(registry, bucket, node="n", le="5.0") == 3
    assert _value(registry, "penguiflow_node_latency_seconds_sum", node="n") == pytest.approx(4.303)


def test_queue_depth_gauge_follows_node_starts() -> None:
    registry = CollectorRegistry()
    hook = PrometheusHook(registry)

    hook(_event(FlowEventType.NODE_START, queue_depth_in=7))
    assert _value(registry, "penguiflow_node_queue_depth", node="n") == 7
    hook(_event(FlowEventType.NODE_START, queue_depth_in=2))
    assert _value(registry, "penguiflow_node_queue_depth", node="n") == 2


def test_failure_without_an_error_payload_is_counted_as_unknown() -> None:
    registry = CollectorRegistry()
    hook = PrometheusHook(registry)

    hook(_event(FlowEventType.NODE_FAILED))
    hook(_event(FlowEventType.NODE_FAILED, extra=MappingProxyType({"flow_error": {"code": "X"}})))

    failures = "penguiflow_node_failures_total"
    assert _value(registry, failures, node="n", code="UNKNOWN") == 1
    assert _value(registry, failures, node="n", code="X") == 1


async def test_trace_ids_never_become_labels() -> None:
    async def echo(msg: Message, ctx: Context) -> str:
        return msg.payload

    registry = CollectorRegistry()
    flow = create(Node(echo).to(), on_event=PrometheusHook(registry))
    traces = [f"trace-{i}" for i in range(5)]
    with anyio.fail_after(5):
        async with flow.running():
            for trace_id in traces:
                await flow.emit(_msg("x", trace_id))
                await flow.fetch(trace_id=trace_id)

    label_names: set[str] = set()
    label_values: set[str] = set()
    for metric in registry.collect():
        for sample in metric.samples:
            label_names.update(sample.labels)
            label_values.update(sample.labels.values())
    assert label_names <= {"node", "event", "code", "le"}
    assert label_values.isdisjoint(traces)


def test_namespace_prefixes_every_metric() -> None:
    registry = CollectorRegistry()
    hook = PrometheusHook(registry, namespace="myapp")

    hook(_event(FlowEventType.NODE_START))

    assert _value(registry, "myapp_node_events_total", node="n", event="node_start") == 1
    assert registry.get_sample_value("penguiflow_node_events_total", {}) is None


def test_a_registry_holds_one_hook() -> None:
    registry = CollectorRegistry()
    PrometheusHook(registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        PrometheusHook(registry)


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_missing_prometheus_client_raises_import_error_with_the_install_hint() -> None:
    result = _run_python(
        "import sys\n"
        "sys.modules['prometheus_client'] = None\n"
        "try:\n"
        "    import penguiflow.core.prometheus\n"
        "except ImportError as exc:\n"
        "    print('IMPORT-ERROR:', exc)\n"
    )
    assert result.returncode == 0, result.stderr
    assert "IMPORT-ERROR:" in result.stdout
    assert 'pip install "penguiflow-core[prometheus]"' in result.stdout
