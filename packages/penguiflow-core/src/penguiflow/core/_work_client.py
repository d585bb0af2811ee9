"""``FlowClient``: emit traces to distributed workers and read their results, from any process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from ._errors import TraceCancelled, TraceEnded
from ._node import Node
from ._types import Message, StreamChunk
from ._work_codec import decode_chunk, decode_outcome, decode_result, encode_message
from ._work_types import (
    TraceOutcome,
    TraceOutput,
    WorkBus,
    WorkItem,
    closing,
    missing_methods,
)

__all__ = ["FlowClient"]


class FlowClient:
    """Put traces on a ``WorkBus`` and read what the workers deliver for them.

    Each client keeps its own cursors per trace (results and chunks separately): a fresh client
    starts at the trace's first output, and no output is yielded twice by one client, however
    often the trace was redelivered between workers. Bound every wait with ``anyio.fail_after``.

    Example::

        async with RedisStreamsBus.open(url, app="orders") as bus:
            client = FlowClient(bus)
            trace_id = await client.emit(Message(payload=order, headers=Headers(tenant="t")))
            print(await client.fetch(trace_id))
    """

    __slots__ = ("_bus", "_chunks", "_results")

    def __init__(self, bus: WorkBus) -> None:
        missing = missing_methods(bus)
        if missing:
            raise TypeError(
                f"FlowClient needs a WorkBus; {type(bus).__name__} lacks {', '.join(missing)} "
                '(use RedisStreamsBus.open(url, app="..."))'
            )
        self._bus: WorkBus = bus
        self._results: dict[str, str] = {}
        self._chunks: dict[str, str] = {}

    @property
    def bus(self) -> WorkBus:
        """The bus this client talks through."""
        return self._bus

    async def emit(
        self, msg: Message, *, to: Node | str | Sequence[Node | str] | None = None
    ) -> str:
        """Enqueue ``msg`` as one trace and return its trace id.

        Idempotent per trace id: a trace id the bus knows is not enqueued again (the id is
        returned all the same). ``to`` names ingress nodes (default: all of them).

        Raises:
            TypeError: ``msg`` is not a ``Message``, or its payload is not JSON-serialisable.
        """
        body = encode_message(msg)
        await self._bus.submit(WorkItem(trace_id=msg.trace_id, body=body, to=_names(to)))
        return msg.trace_id

    async def fetch(self, trace_id: str, *, payload_type: Any = None) -> Any:
        """The trace's next result: a ``Message`` when the flow delivered one, else the value.

        Waits for it. ``payload_type`` validates the payload (or value) into that type.

        Raises:
            FlowError: The trace failed (code, node and message as in the worker;
                ``original_exc`` is None).
            TraceCancelled: The trace was cancelled.
            TraceEnded: The trace completed without delivering a further result.
            TraceNotFound: No such trace (at once).
        """
        cursor = self._results.get(trace_id)
        async with closing(self._bus.outputs(trace_id, after=cursor)) as outputs:
            async for position, output in outputs:
                if output.kind == "result":
                    self._results[trace_id] = position
                    return decode_result(output.body, payload_type)
                if output.kind == "end":  # the cursor stays before it: a later fetch raises again
                    _raise_outcome(trace_id, output)
                self._results[trace_id] = position  # a chunk: stream() reads those
        raise TraceEnded(trace_id)  # pragma: no cover - outputs() always ends with "end"

    async def stream(self, trace_id: str) -> AsyncIterator[StreamChunk]:
        """The trace's ``StreamChunk``s in order, from this client's chunk cursor, until the end.

        Raises ``TraceNotFound`` at once for an unknown trace.
        """
        after = self._chunks.get(trace_id)
        async with closing(self._bus.outputs(trace_id, after=after)) as outputs:
            async for position, output in outputs:
                if output.kind == "end":
                    return
                self._chunks[trace_id] = position
                if output.kind == "chunk":
                    yield decode_chunk(output.body)

    async def wait(self, trace_id: str) -> TraceOutcome:
        """Wait for the trace to end and return its outcome (cursors are not moved).

        Raises ``TraceNotFound`` at once for an unknown trace.
        """
        async with closing(self._bus.outputs(trace_id)) as outputs:
            async for _position, output in outputs:
                if output.kind == "end":
                    return decode_outcome(trace_id, output.body)
        raise TraceEnded(trace_id)  # pragma: no cover - outputs() always ends with "end"

    async def cancel(self, trace_id: str) -> bool:
        """Cancel the trace wherever it runs; True only the first time, for a live trace.

        The worker that holds it cancels it within milliseconds (pub/sub), at the latest at its
        next heartbeat; a worker that claims it later ends it without running it.

        Raises ``TraceNotFound`` for an unknown trace.
        """
        return await self._bus.request_cancel(trace_id)


def _raise_outcome(trace_id: str, output: TraceOutput) -> None:
    outcome = decode_outcome(trace_id, output.body)
    if outcome.status == "failed" and outcome.error is not None:
        raise outcome.error
    if outcome.status == "cancelled":
        raise TraceCancelled(trace_id)
    raise TraceEnded(trace_id)


def _names(to: Node | str | Sequence[Node | str] | None) -> tuple[str, ...] | None:
    if to is None:
        return None
    items: Sequence[Node | str] = [to] if isinstance(to, Node | str) else list(to)
    return tuple(item.name if isinstance(item, Node) else item for item in items)
