"""Traceable errors: retries with backoff, then one FlowError carrying code, trace and node.

Run it with ``uv run python examples/traceable_errors/main.py``.
"""

from __future__ import annotations

import asyncio
import logging

import anyio

from penguiflow.core import (
    Context,
    FlowError,
    FlowEvent,
    Headers,
    Message,
    Node,
    NodePolicy,
    create,
)


async def main() -> None:
    # The runtime logs every terminal failure at ERROR; this example prints them itself.
    logging.getLogger("penguiflow.core").setLevel(logging.CRITICAL)
    calls: dict[str, int] = {}

    async def call_api(msg: Message, ctx: Context) -> Message:
        """Fails until its third attempt for "flaky"; always fails for "down"; hangs for "slow"."""
        kind: str = msg.payload
        calls[kind] = calls.get(kind, 0) + 1
        if kind == "slow":
            await anyio.sleep(10)  # longer than timeout_s: the attempt is cancelled
        if kind == "down" or (kind == "flaky" and calls[kind] < 3):
            raise ConnectionError(f"upstream refused attempt {calls[kind]}")
        return msg.with_payload(f"{kind}: ok after {calls[kind]} attempt(s)")

    policy = NodePolicy(
        max_retries=2,  # three attempts in all
        backoff_base=0.01,  # 10 ms, then 20 ms (each +/- 10 % jitter)
        timeout_s=0.05,  # bounds one attempt
        retry_on=(ConnectionError, TimeoutError),
    )
    api = Node(call_api, name="call_api", policy=policy)
    retries: list[str] = []

    def on_event(event: FlowEvent) -> None:
        if event.event_type == "node_retry":
            retries.append(f"{event.trace_id}#{event.attempt}")

    flow = create(api.to(), on_event=on_event, emit_errors_to_rookery=True)
    async with flow.running():
        for kind in ("flaky", "down", "slow"):
            msg = Message(payload=kind, headers=Headers(tenant="demo"), trace_id=f"trace-{kind}")
            await flow.emit(msg)
            item = await flow.fetch(trace_id=msg.trace_id)
            if isinstance(item, FlowError):
                print(f"{kind}: {item}")  # "[CODE] message trace=... node=..."
                print(f"    code={item.code} trace_id={item.trace_id} node_name={item.node_name}")
                print(f"    attempts={item.metadata['attempt'] + 1} cause={item.unwrap()!r}")
                payload = item.to_payload()  # JSON-safe, for logs and APIs
                print(f"    to_payload keys: {sorted(payload)}")
            else:
                print(item.payload)
    print(f"retry events: {sorted(retries)}")
    print("traceable_errors done")


if __name__ == "__main__":
    asyncio.run(main())
