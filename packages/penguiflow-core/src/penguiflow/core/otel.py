"""OpenTelemetry spans for flow events (``pip install "penguiflow-core[otel]"``).

::

    from penguiflow.core.otel import otel_hook

    flow = create(a.to(b), b.to(), on_event=otel_hook(tracer_provider))

**One span per node invocation**, retries included: the span starts at the invocation's first
``node_start`` and ends when the invocation is over (``node_success``, ``node_failed``, an
interrupting ``deadline_skip``, or cancellation). Each failed attempt is recorded on the span as
an ``exception`` event, each retry as a ``penguiflow.retry`` event, and ``penguiflow.attempt``
holds the last attempt number. A terminal failure sets the span's status to ERROR with the
``FlowError`` code. A failure with no attempt running (input or output validation, a misrouted
``WM``) gets a zero-length ERROR span of its own.

Spans carry ``penguiflow.trace_id``, ``penguiflow.node_name``, ``penguiflow.node_id`` and
``penguiflow.attempt``. Open spans are keyed by (trace id, node id), so concurrent traces never
mix; a cancelled trace's open spans are ended (status ERROR, ``penguiflow.cancelled=True``) by
``node_trace_cancelled`` and, at the latest, ``trace_cancel_finish``. Stopping a flow while nodes
run emits no event: call :meth:`OtelHook.end_open_spans` after ``stop()`` if that matters.

With ``group_by_trace=True`` (the default) every span of one PenguiFlow trace belongs to one
OpenTelemetry trace: the OTel trace id is the PenguiFlow trace id when that is 32 hex digits (the
default ``Message.trace_id``), else a hash of it, and the spans' parent is a remote span id derived
from it (never recorded itself).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

try:
    from opentelemetry import trace
    from opentelemetry.context import Context
    from opentelemetry.trace import (
        NonRecordingSpan,
        Span,
        SpanContext,
        Status,
        StatusCode,
        TraceFlags,
        Tracer,
        TracerProvider,
    )
except ImportError as _missing:  # pragma: no cover - exercised in a subprocess
    raise ImportError(
        'penguiflow.core.otel needs OpenTelemetry: pip install "penguiflow-core[otel]"'
    ) from _missing

from ._events import FlowEvent, FlowEventType

__all__ = ["OtelHook", "otel_hook"]

_ATTR_TRACE = "penguiflow.trace_id"
_ATTR_NODE = "penguiflow.node_name"
_ATTR_NODE_ID = "penguiflow.node_id"
_ATTR_ATTEMPT = "penguiflow.attempt"
_ATTR_LATENCY = "penguiflow.latency_ms"
_ATTR_CODE = "penguiflow.error_code"
_ATTR_CANCELLED = "penguiflow.cancelled"


def _ns(ts: float) -> int:
    return int(ts * 1e9)


def _exception_type(text: str) -> str:
    name = text.partition("(")[0]
    return name if name.isidentifier() else "Exception"


class _TraceSpans:
    """The open spans of one PenguiFlow trace, by node id."""

    __slots__ = ("parent", "spans")

    def __init__(self, parent: Context | None) -> None:
        self.parent = parent
        self.spans: dict[str | None, Span] = {}


class OtelHook:
    """A sync event hook that turns node invocations into OpenTelemetry spans (see module doc)."""

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        *,
        group_by_trace: bool = True,
        tracer_name: str = "penguiflow",
    ) -> None:
        self.tracer: Tracer = trace.get_tracer(tracer_name, tracer_provider=tracer_provider)
        """The tracer spans come from."""
        self.group_by_trace = group_by_trace
        """Whether a trace's spans share one OTel trace id (see module doc)."""
        self._traces: dict[str | None, _TraceSpans] = {}
        self._handlers: dict[FlowEventType, Callable[[FlowEvent], None]] = {
            FlowEventType.NODE_START: self._on_start,
            FlowEventType.NODE_SUCCESS: self._on_success,
            FlowEventType.NODE_ERROR: self._on_error,
            FlowEventType.NODE_TIMEOUT: self._on_error,
            FlowEventType.NODE_RETRY: self._on_retry,
            FlowEventType.NODE_FAILED: self._on_failed,
            FlowEventType.DEADLINE_SKIP: self._on_deadline,
            FlowEventType.NODE_TRACE_CANCELLED: self._on_node_cancelled,
            FlowEventType.TRACE_CANCEL_FINISH: self._on_trace_cancelled,
        }

    def __call__(self, event: FlowEvent) -> None:
        """Update spans for ``event`` (events that concern no span are ignored)."""
        handler = self._handlers.get(event.event_type)
        if handler is not None:
            handler(event)

    # ------------------------------------------------------------ bookkeeping
    @property
    def open_spans(self) -> int:
        """Spans started and not yet ended."""
        return sum(len(t.spans) for t in self._traces.values())

    def end_open_spans(self) -> int:
        """End every open span as interrupted (e.g. after stopping a flow); returns the count."""
        count = 0
        for spans in self._traces.values():
            for span in spans.spans.values():
                span.set_status(Status(StatusCode.ERROR, "interrupted"))
                span.end()
                count += 1
        self._traces.clear()
        return count

    def _parent(self, trace_id: str | None) -> Context | None:
        if not self.group_by_trace or trace_id is None:
            return None
        otel_id = 0
        if len(trace_id) == 32:
            try:
                otel_id = int(trace_id, 16)
            except ValueError:
                otel_id = 0
        digest = hashlib.blake2b(trace_id.encode(), digest_size=24).digest()
        if otel_id == 0:
            otel_id = int.from_bytes(digest[:16]) or 1
        span_id = int.from_bytes(digest[16:]) or 1
        context = SpanContext(
            trace_id=otel_id,
            span_id=span_id,
            is_remote=True,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
        )
        return trace.set_span_in_context(NonRecordingSpan(context))

    def _start(self, event: FlowEvent) -> Span:
        key = event.trace_id
        spans = self._traces.get(key)
        if spans is None:
            spans = self._traces[key] = _TraceSpans(self._parent(key))
        attributes: dict[str, Any] = {_ATTR_ATTEMPT: event.attempt}
        if key is not None:
            attributes[_ATTR_TRACE] = key
        if event.node_name is not None:
            attributes[_ATTR_NODE] = event.node_name
        if event.node_id is not None:
            attributes[_ATTR_NODE_ID] = event.node_id
        span = self.tracer.start_span(
            event.node_name or "penguiflow.node",
            context=spans.parent,
            attributes=attributes,
            start_time=_ns(event.ts),
        )
        spans.spans[event.node_id] = span
        return span

    def _open(self, event: FlowEvent) -> Span | None:
        spans = self._traces.get(event.trace_id)
        return None if spans is None else spans.spans.get(event.node_id)

    def _pop(self, event: FlowEvent) -> Span | None:
        key = event.trace_id
        spans = self._traces.get(key)
        if spans is None:
            return None
        span = spans.spans.pop(event.node_id, None)
        if not spans.spans:
            del self._traces[key]
        return span

    # --------------------------------------------------------------- handlers
    def _on_start(self, event: FlowEvent) -> None:
        span = self._open(event)
        if span is None:
            self._start(event)
        else:  # a retry of the same invocation
            span.set_attribute(_ATTR_ATTEMPT, event.attempt)

    def _on_success(self, event: FlowEvent) -> None:
        span = self._pop(event)
        if span is None:
            return
        if event.latency_ms is not None:
            span.set_attribute(_ATTR_LATENCY, event.latency_ms)
        span.end(end_time=_ns(event.ts))

    def _on_error(self, event: FlowEvent) -> None:
        span = self._open(event)
        if span is None:
            return
        text = str(event.extra.get("exception", event.event_type.value))
        attributes: dict[str, Any] = {
            "exception.type": (
                "TimeoutError"
                if event.event_type is FlowEventType.NODE_TIMEOUT
                else _exception_type(text)
            ),
            "exception.message": text,
            _ATTR_ATTEMPT: event.attempt,
        }
        if event.latency_ms is not None:
            attributes[_ATTR_LATENCY] = event.latency_ms
        span.add_event("exception", attributes, timestamp=_ns(event.ts))

    def _on_retry(self, event: FlowEvent) -> None:
        span = self._open(event)
        if span is None:
            return
        attributes: dict[str, Any] = {_ATTR_ATTEMPT: event.attempt}
        sleep_s = event.extra.get("sleep_s")
        if isinstance(sleep_s, int | float):
            attributes["penguiflow.sleep_s"] = float(sleep_s)
        span.add_event("penguiflow.retry", attributes, timestamp=_ns(event.ts))

    def _on_failed(self, event: FlowEvent) -> None:
        span = self._pop(event)
        error = event.error_payload or {}
        code = str(error.get("code", "NODE_EXCEPTION"))
        text = str(error.get("message", ""))
        if span is None:  # no attempt was running: validation, a misrouted WM...
            span = self._start(event)
            self._pop(event)
            span.add_event(
                "exception",
                {"exception.type": code, "exception.message": text},
                timestamp=_ns(event.ts),
            )
        span.set_attribute(_ATTR_ATTEMPT, event.attempt)
        span.set_attribute(_ATTR_CODE, code)
        span.set_status(Status(StatusCode.ERROR, f"{code}: {text}" if text else code))
        span.end(end_time=_ns(event.ts))

    def _on_deadline(self, event: FlowEvent) -> None:
        span = self._pop(event)  # only an attempt interrupted at its deadline has a span
        if span is None:
            return
        span.set_attribute(_ATTR_CODE, "DEADLINE_EXCEEDED")
        span.set_status(Status(StatusCode.ERROR, "DEADLINE_EXCEEDED"))
        span.end(end_time=_ns(event.ts))

    def _on_node_cancelled(self, event: FlowEvent) -> None:
        span = self._pop(event)
        if span is not None:
            _end_cancelled(span, event.ts)

    def _on_trace_cancelled(self, event: FlowEvent) -> None:
        spans = self._traces.pop(event.trace_id, None)
        if spans is not None:
            for span in spans.spans.values():
                _end_cancelled(span, event.ts)


def _end_cancelled(span: Span, ts: float) -> None:
    span.set_attribute(_ATTR_CANCELLED, True)
    span.set_status(Status(StatusCode.ERROR, "TRACE_CANCELLED"))
    span.end(end_time=_ns(ts))


def otel_hook(
    tracer_provider: TracerProvider | None = None,
    *,
    group_by_trace: bool = True,
    tracer_name: str = "penguiflow",
) -> OtelHook:
    """An event hook recording one OpenTelemetry span per node invocation (see module doc).

    Args:
        tracer_provider: Where spans go (default: the global tracer provider).
        group_by_trace: Give all spans of one PenguiFlow trace one OTel trace id.
        tracer_name: The instrumentation scope name of the tracer.
    """
    return OtelHook(tracer_provider, group_by_trace=group_by_trace, tracer_name=tracer_name)
