"""Prometheus metrics: counters and a latency histogram fed by a sync event hook.

Run it with ``uv run python examples/metrics_prometheus/main.py`` (needs
``pip install "penguiflow-core[prometheus]"``).
"""

from __future__ import annotations

import asyncio

import anyio
from prometheus_client import CollectorRegistry, generate_latest

from penguiflow.core import Context, FlowError, Headers, Message, Node, NodePolicy, create
from penguiflow.core.prometheus import PrometheusHook

DOCS = [f"doc-{i}" for i in range(10)]
FLAKY = "doc-3"  # its first summary attempt fails, the retry succeeds
BROKEN = "doc-7"  # every summary attempt fails: one failure for good
SLOW = "doc-9"  # cancelled while it is being fetched
_attempts: dict[str, int] = {}
_slow_started = asyncio.Event()


async def fetch(msg: Message, ctx: Context) -> Message:
    await asyncio.sleep(0.001 * (1 + len(msg.payload) % 3))
    return msg.with_payload(f"text of {msg.payload}")


async def summarize(msg: Message, ctx: Context) -> Message:
    doc = msg.payload.removeprefix("text of ")
    _attempts[doc] = _attempts.get(doc, 0) + 1
    if doc == BROKEN or (doc == FLAKY and _attempts[doc] == 1):
        raise ConnectionError(f"summarizer unavailable for {doc}")
    if doc == SLOW:
        _slow_started.set()
        await anyio.sleep_forever()
    return msg.with_payload(f"summary of {doc}")


async def publish(msg: Message, ctx: Context) -> Message:
    return msg.with_payload(msg.payload.upper())


async def main() -> None:
    registry = CollectorRegistry()  # a fresh registry: nothing else in this process shares it
    fetch_node = Node(fetch)
    summarize_node = Node(summarize, policy=NodePolicy(max_retries=1, backoff_base=0.005))
    publish_node = Node(publish)
    flow = create(
        fetch_node.to(summarize_node),
        summarize_node.to(publish_node),
        publish_node.to(),
        on_event=PrometheusHook(registry),
        emit_errors_to_rookery=True,
    )
    async with flow.running():
        messages = {doc: Message(payload=doc, headers=Headers(tenant="demo")) for doc in DOCS}
        for msg in messages.values():
            await flow.emit(msg)
        for doc, msg in messages.items():
            if doc == SLOW:
                continue
            result = await flow.fetch(trace_id=msg.trace_id)
            if isinstance(result, FlowError):
                print(f"{doc}: failed [{result.code.value}]")
        await _slow_started.wait()
        await flow.cancel(messages[SLOW].trace_id)
        print(f"{SLOW}: cancelled while summarizing")

    print("\nselected metrics (prometheus_client.generate_latest):")
    for line in generate_latest(registry).decode().splitlines():
        if line.startswith("#") or "_created" in line:
            continue
        if "_bucket" in line and 'le="+Inf"' not in line:
            continue  # keep the exposition short: one bucket line per node
        if "node_events_total" in line and "node_start" not in line and "node_retry" not in line:
            continue
        print(" ", line)
    print("metrics_prometheus done")


if __name__ == "__main__":
    asyncio.run(main())
