"""OpenTelemetry tracing: one span per node invocation, grouped by PenguiFlow trace.

Run it with ``uv run python examples/tracing_otel/main.py`` (needs
``pip install "penguiflow-core[otel]"``). Spans go to an in-memory exporter and are printed; in a
service you would add a ``BatchSpanProcessor`` with an OTLP exporter to the same provider.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from penguiflow.core import Context, FlowError, Headers, Message, Node, NodePolicy, create
from penguiflow.core.otel import otel_hook

_rank_calls: dict[str, int] = defaultdict(int)


async def retrieve(msg: Message, ctx: Context) -> Message:
    await asyncio.sleep(0.002)
    return msg.with_payload([f"{msg.payload}: passage {i}" for i in range(3)])


async def rank(msg: Message, ctx: Context) -> Message:
    _rank_calls[msg.trace_id] += 1
    if msg.headers.topic == "flaky" and _rank_calls[msg.trace_id] == 1:
        raise TimeoutError("ranker took too long")  # retried once, then fine
    if msg.headers.topic == "broken":
        raise ValueError("ranker rejected the passages")
    return msg.with_payload(sorted(msg.payload, reverse=True)[:2])


async def answer(msg: Message, ctx: Context) -> Message:
    return msg.with_payload(" | ".join(msg.payload))


def _describe(span: ReadableSpan) -> str:
    attributes = dict(span.attributes or {})
    assert span.start_time is not None and span.end_time is not None
    duration_ms = (span.end_time - span.start_time) / 1e6
    events = ",".join(e.name for e in span.events) or "-"
    line = (
        f"span {span.name:<8} attempt={attributes['penguiflow.attempt']} "
        f"status={span.status.status_code.name} events={events} ({duration_ms:.1f} ms)"
    )
    return f"{line}\n    error: {span.status.description}" if span.status.description else line


async def main() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    hook = otel_hook(provider)

    retrieve_node = Node(retrieve)
    rank_node = Node(rank, policy=NodePolicy(max_retries=1, backoff_base=0.005))
    answer_node = Node(answer)
    flow = create(
        retrieve_node.to(rank_node),
        rank_node.to(answer_node),
        answer_node.to(),
        on_event=hook,
        emit_errors_to_rookery=True,
    )
    topics = ["steady", "flaky", "broken"]
    messages = [Message(payload=t, headers=Headers(tenant="demo", topic=t)) for t in topics]
    async with flow.running():
        for msg in messages:
            await flow.emit(msg)
        for msg in messages:
            result = await flow.fetch(trace_id=msg.trace_id)
            outcome = f"[{result.code.value}]" if isinstance(result, FlowError) else result.payload
            print(f"{msg.headers.topic}: {outcome}")

    spans = exporter.get_finished_spans()
    by_trace: dict[str, list[ReadableSpan]] = defaultdict(list)
    for span in spans:
        by_trace[str((span.attributes or {})["penguiflow.trace_id"])].append(span)
    for msg in messages:
        mine = sorted(by_trace[msg.trace_id], key=lambda s: s.start_time or 0)
        otel_ids = {f"{s.context.trace_id:032x}" for s in mine if s.context is not None}
        same = "= the PenguiFlow trace id" if otel_ids == {msg.trace_id} else "(differs!)"
        print(f"\ntrace {msg.headers.topic} ({msg.trace_id}); OTel trace id {same}")
        for span in mine:
            print("  " + _describe(span))
    print(f"\ntracing_otel done: {len(spans)} spans, {hook.open_spans} left open")
    provider.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
