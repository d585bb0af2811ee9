"""Predicate routing: a router node picks successors per message by name, node, list or None.

Run it with ``uv run python examples/routing_predicate/main.py``.
"""

from __future__ import annotations

import asyncio
import logging

from penguiflow.core import (
    Context,
    FlowError,
    FlowEvent,
    Headers,
    Message,
    Node,
    create,
    predicate_router,
)


async def metrics(msg: Message, ctx: Context) -> Message:
    return msg.with_payload(f"metrics handled {msg.payload!r}")


async def logs(msg: Message, ctx: Context) -> Message:
    return msg.with_payload(f"logs handled {msg.payload!r}")


async def archive(msg: Message, ctx: Context) -> Message:
    return msg.with_payload(f"archive kept {msg.payload!r}")


metrics_node, logs_node, archive_node = Node(metrics), Node(logs), Node(archive)


def choose(msg: Message) -> str | Node | list[str] | None:
    """Return a successor name, a node, several of them, or None to drop the message."""
    text: str = msg.payload
    if text.startswith("cpu"):
        return "metrics"  # by name
    if text.startswith("error"):
        return logs_node  # by node object
    if text.startswith("audit"):
        return ["logs", "archive"]  # several successors: one copy each
    if text.startswith("noise"):
        return None  # dropped: nothing reaches the Rookery
    return "nowhere"  # not a successor: the message fails with a FlowError naming the valid ones


async def main() -> None:
    # The runtime logs each terminal failure at ERROR; this example prints them itself.
    logging.getLogger("penguiflow.core").setLevel(logging.CRITICAL)
    router = predicate_router("route", choose)
    dropped = asyncio.Event()
    drop_trace = "trace-noise"

    def on_event(event: FlowEvent) -> None:
        if event.node_name == "route" and event.trace_id == drop_trace:
            if event.event_type == "node_success":
                dropped.set()

    flow = create(
        router.to(metrics_node, logs_node, archive_node),
        metrics_node.to(),
        logs_node.to(),
        archive_node.to(),
        on_event=on_event,
        emit_errors_to_rookery=True,  # a failed message delivers its FlowError as a result
    )
    texts = {
        "trace-cpu": "cpu=93%",
        "trace-error": "error: disk full",
        "trace-audit": "audit: login root",
        drop_trace: "noise: heartbeat",
        "trace-typo": "unknown event",
    }
    expected = {"trace-audit": 2}  # two successors answer the audit message
    async with flow.running():
        for trace_id, text in texts.items():
            await flow.emit(Message(payload=text, headers=Headers(tenant="ops"), trace_id=trace_id))
        for trace_id in texts:
            if trace_id == drop_trace:
                await dropped.wait()
                print(f"{trace_id}: dropped by the predicate (no result)")
                continue
            results: list[str] = []
            for _ in range(expected.get(trace_id, 1)):
                item = await flow.fetch(trace_id=trace_id)
                if isinstance(item, FlowError):
                    results.append(f"FlowError {item.code}: {item.message}")
                else:
                    results.append(item.payload)
            print(f"{trace_id}: {' | '.join(sorted(results))}")
    print("routing_predicate done:", flow.statistics().live_traces, "live traces left")


if __name__ == "__main__":
    asyncio.run(main())
