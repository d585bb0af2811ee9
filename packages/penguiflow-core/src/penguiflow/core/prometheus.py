"""Prometheus metrics for flow events (``pip install "penguiflow-core[prometheus]"``).

::

    from prometheus_client import CollectorRegistry, generate_latest
    from penguiflow.core.prometheus import PrometheusHook

    registry = CollectorRegistry()
    flow = create(a.to(b), b.to(), on_event=PrometheusHook(registry))

Metrics (with the default ``namespace="penguiflow"``):

- ``penguiflow_node_events_total{node, event}``: node events by type (``node_start``,
  ``node_success``, ``node_error``, ``node_retry`` …).
- ``penguiflow_flow_events_total{event}``: flow-level events (``emit``, ``fetch``,
  ``trace_cancel_*``).
- ``penguiflow_node_failures_total{node, code}``: messages that failed for good, by ``FlowError``
  code.
- ``penguiflow_traces_cancelled_total``: ``flow.cancel()`` calls that cancelled a live trace.
- ``penguiflow_node_latency_seconds{node}``: a histogram of attempt durations (from the
  ``latency_ms`` of ``node_success``, ``node_error`` and ``node_timeout``).
- ``penguiflow_node_queue_depth{node}``: messages waiting for the node when it last started one.

Labels are node names, event types and error codes only, never trace ids, so cardinality stays
bounded by the size of the graph.
"""

from __future__ import annotations

from collections.abc import Sequence

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
except ImportError as _missing:  # pragma: no cover - exercised in a subprocess
    raise ImportError(
        "penguiflow.core.prometheus needs prometheus-client: "
        'pip install "penguiflow-core[prometheus]"'
    ) from _missing

from ._events import FlowEvent, FlowEventType

__all__ = ["DEFAULT_LATENCY_BUCKETS", "PrometheusHook"]

DEFAULT_LATENCY_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
)
"""Latency buckets in seconds: from sub-millisecond hops to multi-minute LLM calls."""

_TIMED = frozenset(
    {FlowEventType.NODE_SUCCESS, FlowEventType.NODE_ERROR, FlowEventType.NODE_TIMEOUT}
)


_FLOW_KINDS = frozenset(
    {
        FlowEventType.EMIT,
        FlowEventType.FETCH,
        FlowEventType.TRACE_CANCEL_START,
        FlowEventType.TRACE_CANCEL_DROP,
        FlowEventType.TRACE_CANCEL_FINISH,
    }
)
"""Events about the flow as a whole, counted in ``flow_events`` (not per node)."""


class _NodeMetrics:
    """Label children of one node, resolved once (``labels()`` takes a lock and a dict lookup)."""

    __slots__ = ("depth", "events", "latency", "name")

    def __init__(self, hook: PrometheusHook, name: str) -> None:
        self.name = name
        self.events: dict[FlowEventType, Counter] = {}
        self.latency: Histogram = hook.node_latency.labels(name)
        self.depth: Gauge = hook.node_queue_depth.labels(name)


class PrometheusHook:
    """A sync event hook that keeps Prometheus counters and a latency histogram (see module doc).

    Args:
        registry: Where the metrics are registered (default: ``prometheus_client.REGISTRY``).
            A registry holds one set of these metrics: give each hook its own registry, or share
            one hook between flows.
        namespace: Prefix of every metric name.
        buckets: Upper bounds (seconds) of the latency histogram's buckets.

    Raises:
        ValueError: The registry already has metrics of these names.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        namespace: str = "penguiflow",
        *,
        buckets: Sequence[float] = DEFAULT_LATENCY_BUCKETS,
    ) -> None:
        registry = REGISTRY if registry is None else registry
        self.registry = registry
        """The registry holding the metrics."""
        self.node_events: Counter = Counter(
            "node_events",
            "Node events by node and event type.",
            ["node", "event"],
            namespace=namespace,
            registry=registry,
        )
        self.flow_events: Counter = Counter(
            "flow_events",
            "Flow-level events (emit, fetch, trace cancellation) by event type.",
            ["event"],
            namespace=namespace,
            registry=registry,
        )
        self.node_failures: Counter = Counter(
            "node_failures",
            "Messages that failed for good at a node, by FlowError code.",
            ["node", "code"],
            namespace=namespace,
            registry=registry,
        )
        self.traces_cancelled: Counter = Counter(
            "traces_cancelled",
            "Live traces cancelled with flow.cancel().",
            namespace=namespace,
            registry=registry,
        )
        self.node_latency: Histogram = Histogram(
            "node_latency_seconds",
            "Duration of node attempts (successful, failed and timed out).",
            ["node"],
            namespace=namespace,
            registry=registry,
            buckets=tuple(buckets),
        )
        self.node_queue_depth: Gauge = Gauge(
            "node_queue_depth",
            "Messages waiting for the node when it last started one.",
            ["node"],
            namespace=namespace,
            registry=registry,
        )
        self._nodes: dict[str, _NodeMetrics] = {}
        self._flow: dict[FlowEventType, Counter] = {}

    def __call__(self, event: FlowEvent) -> None:
        """Count ``event`` and observe its latency."""
        kind = event.event_type
        name = event.node_name
        if name is None or kind in _FLOW_KINDS:  # (cancel start/finish name OpenSea/Rookery)
            counter = self._flow.get(kind)
            if counter is None:
                counter = self._flow[kind] = self.flow_events.labels(kind.value)
            counter.inc()
            if kind is FlowEventType.TRACE_CANCEL_START:
                self.traces_cancelled.inc()
            return
        node = self._nodes.get(name)
        if node is None:
            node = self._nodes[name] = _NodeMetrics(self, name)
        counter = node.events.get(kind)
        if counter is None:
            counter = node.events[kind] = self.node_events.labels(name, kind.value)
        counter.inc()
        if kind is FlowEventType.NODE_START:
            node.depth.set(event.queue_depth_in)
        elif kind in _TIMED:
            if event.latency_ms is not None:
                node.latency.observe(event.latency_ms / 1000.0)
        elif kind is FlowEventType.NODE_FAILED:
            error = event.error_payload
            code = "UNKNOWN" if error is None else str(error.get("code", "UNKNOWN"))
            self.node_failures.labels(name, code).inc()
