"""State history: a state store records every event of a trace; ``flow.load_history`` reads it.

Run it with ``uv run python examples/state_history/main.py``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence

from penguiflow.core import (
    Context,
    FlowError,
    Headers,
    InMemoryStateStore,
    Message,
    Node,
    NodePolicy,
    StoredEvent,
    configure_json_logging,
    create,
    log_flow_events,
)


async def plan(msg: Message, ctx: Context) -> Message:
    return msg.with_payload([f"step {i} of {msg.payload}" for i in range(2)])


async def act(msg: Message, ctx: Context) -> Message:
    await asyncio.sleep(0.001)
    if msg.headers.topic == "refund":
        raise PermissionError("refunds need a human")
    return msg.with_payload([f"did {step}" for step in msg.payload])


async def report(msg: Message, ctx: Context) -> Message:
    return msg.with_payload("; ".join(msg.payload))


def _details(event: StoredEvent) -> str:
    payload = event.payload
    parts: list[str] = []
    if payload.get("latency_ms") is not None:
        parts.append(f"{payload['latency_ms']:.2f} ms")
    if event.kind in ("node_error", "node_retry", "node_failed"):
        parts.append(f"attempt {payload['attempt']}")
    if "exception" in payload:
        parts.append(str(payload["exception"]))
    if "flow_error" in payload:
        parts.append(f"code {payload['flow_error']['code']}")
    return ", ".join(parts)


def _print_history(topic: str, history: Sequence[StoredEvent]) -> None:
    print(f"\nhistory of trace {topic!r} ({len(history)} events):")
    start = history[0].ts
    for event in history:
        node = event.node_name or ""
        line = (
            f"  +{(event.ts - start) * 1000:7.2f} ms  {event.kind:<13} {node:<7} {_details(event)}"
        )
        print(line.rstrip())


async def main() -> None:
    # Failures also go out as JSON log lines (stdout here, to keep the example's output together).
    configure_json_logging("penguiflow.events", logging.INFO, stream=sys.stdout)
    store = InMemoryStateStore()
    plan_node = Node(plan)
    act_node = Node(act, policy=NodePolicy(max_retries=1, backoff_base=0.005, jitter=0.0))
    report_node = Node(report)
    flow = create(
        plan_node.to(act_node),
        act_node.to(report_node),
        report_node.to(),
        state_store=store,
        on_event=log_flow_events(events=["node_failed"]),
        emit_errors_to_rookery=True,
    )
    orders = [
        Message(payload=t, headers=Headers(tenant="shop", topic=t)) for t in ("ship", "refund")
    ]
    async with flow.running():
        for msg in orders:
            await flow.emit(msg)
        for msg in orders:
            result = await flow.fetch(trace_id=msg.trace_id)
            outcome = f"[{result.code.value}]" if isinstance(result, FlowError) else result.payload
            print(f"{msg.headers.topic}: {outcome}")
        for msg in orders:  # load_history flushes events still on their way to the store
            _print_history(str(msg.headers.topic), await flow.load_history(msg.trace_id))
    print(f"\nstore holds {len(store)} events of {len(orders)} traces")
    print("state_history done")


if __name__ == "__main__":
    asyncio.run(main())
