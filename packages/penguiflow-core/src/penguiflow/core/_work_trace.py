"""How a worker runs one delivery: emit (or resume) the trace, publish its items, end, settle.

The trace's Rookery items are published as they come (results ``r:{index}``, chunks
``c:{stream_id}:{seq}``), then the end marker, then the delivery is settled: ack after completion.
A redelivered trace (attempt > 1) resumes from its journal in memo mode. A delivery found lost
publishes nothing more.
"""

from __future__ import annotations

from typing import Any

import anyio
from pydantic import ValidationError

from ._errors import FlowError, FlowErrorCode, FlowStopped, TraceCancelled, TraceEnded
from ._flow import PenguiFlow, runtime_of
from ._journal import Journal
from ._registry import ModelRegistry
from ._types import Message
from ._work_checks import ingress_type
from ._work_codec import chunk_of, decode_message, encode_chunk, encode_end, encode_result
from ._work_types import Delivery, TraceOutput, TraceStatus, WorkBus

__all__ = ["Held", "TraceRunner"]


class Held:
    """One delivery a worker holds, and what became of it."""

    __slots__ = ("cancel_requested", "delivery", "lost", "scope", "settled")

    def __init__(self, delivery: Delivery) -> None:
        self.delivery = delivery
        self.scope = anyio.CancelScope()
        self.lost = False
        self.settled = False
        self.cancel_requested = False


class TraceRunner:
    """Runs the deliveries of one worker in its flow, counting outcomes in ``counts``."""

    def __init__(
        self,
        *,
        flow: PenguiFlow,
        bus: WorkBus,
        journal: Journal,
        consumer: str,
        max_deliveries: int,
        registry: ModelRegistry | None,
        payload_type: Any,
        counts: dict[str, int],
    ) -> None:
        self.flow = flow
        self.bus = bus
        self.journal = journal
        self.consumer = consumer
        self.max_deliveries = max_deliveries
        self.registry = registry
        self.payload_type = payload_type
        self.counts = counts

    def _payload_types(self, to: tuple[str, ...] | None) -> Any:
        if self.payload_type is not None or self.registry is None:
            return self.payload_type
        return ingress_type(self.registry, to or [n.name for n in self.flow.graph.ingress])

    async def run(self, held: Held) -> None:
        """Run one delivery to its end marker and settle it (or leave it to be handed back)."""
        delivery = held.delivery
        trace_id = delivery.item.trace_id
        if delivery.attempt > 1:
            self.counts["reclaimed"] += 1
        if delivery.attempt > self.max_deliveries:
            error = FlowError(
                trace_id=trace_id,
                node_name=None,
                code=FlowErrorCode.DELIVERIES_EXHAUSTED,
                message=(
                    f"trace {trace_id!r} was delivered {delivery.attempt - 1} times without "
                    f"finishing (max_deliveries={self.max_deliveries}); it was moved to the "
                    "dead-letter stream"
                ),
            )
            self.counts["dead_lettered"] += 1
            await self._finish(held, "failed", error, dead_letter=error.message)
            return
        if await self.bus.is_cancelled(trace_id):
            await self._finish(held, "cancelled", None)
            return
        try:
            msg = decode_message(delivery.item.body, self._payload_types(delivery.item.to))
        except ValidationError as exc:
            error = FlowError.from_exception(
                exc, trace_id=trace_id, node_name=None, code=FlowErrorCode.VALIDATION_ERROR
            ).detached()
            await self._finish(held, "failed", error)
            return
        try:
            await self._start(held, msg)
        except (KeyError, TypeError, ValueError) as exc:  # say an unknown ingress node in `to`
            error = FlowError.from_exception(exc, trace_id=trace_id, node_name=None).detached()
            await self._finish(held, "failed", error)
            return
        await self._deliver(held)

    async def _start(self, held: Held, msg: Message) -> None:
        delivery = held.delivery
        trace_id = delivery.item.trace_id
        to = None if delivery.item.to is None else list(delivery.item.to)
        resumed = False
        if delivery.attempt > 1:
            try:
                await self.journal.resume(self.flow, trace_id)
                resumed = True
                self.counts["memo_hits"] += 1
            except LookupError:  # the first attempt died before recording its ingress
                pass
        if not resumed:
            await self.flow.emit(msg, to=to)
        if held.cancel_requested:  # asked while the trace was not in the flow yet
            await self.flow.cancel(trace_id)

    async def _deliver(self, held: Held) -> None:
        trace_id = held.delivery.item.trace_id
        rt = runtime_of(self.flow)
        index = 0
        while True:
            # A fetch that starts after the trace ended waits on (a new trace of) that id: check
            # first. No await between this and the fetch's waiter, so no ending is missed.
            if not rt.rookery.depth(trace_id) and rt.traces.get(trace_id) is None:
                if rt.fetch_outcome(trace_id) is None:
                    return await self._finish(held, "completed", None)
            try:
                item = await self.flow.fetch(trace_id=trace_id)
            except FlowStopped:  # the worker is stopping: the delivery is handed back
                return None
            except TraceEnded:
                return await self._finish(held, "completed", None)
            except TraceCancelled:
                return await self._finish(held, "cancelled", None)
            except FlowError as exc:
                return await self._finish(held, "failed", exc.detached())
            if isinstance(item, FlowError):  # emit_errors_to_rookery=True
                return await self._finish(held, "failed", item.detached())
            if held.lost:
                continue
            chunk = chunk_of(item)
            if chunk is not None:
                piece, envelope = chunk
                output_id, kind, body = (
                    f"c:{piece.stream_id}:{piece.seq}",
                    "chunk",
                    encode_chunk(piece, envelope),
                )
            else:
                try:
                    output_id, kind, body = f"r:{index}", "result", encode_result(item)
                except TypeError as exc:  # a result no other process could read
                    await self.flow.cancel(trace_id)
                    error = FlowError.from_exception(exc, trace_id=trace_id, node_name=None)
                    return await self._finish(held, "failed", error.detached())
                index += 1
            await self.bus.put_output(TraceOutput(trace_id, output_id, kind, body))

    async def _finish(
        self,
        held: Held,
        status: TraceStatus,
        error: FlowError | None,
        *,
        dead_letter: str | None = None,
    ) -> None:
        if held.lost:
            return
        delivery = held.delivery
        trace_id = delivery.item.trace_id
        body = encode_end(status, error, delivery.attempt, self.consumer)
        await self.bus.put_output(TraceOutput(trace_id, "end", "end", body))
        held.settled = True
        if await self.bus.settle(self.consumer, delivery, dead_letter=dead_letter):
            self.counts[status] += 1
        else:
            held.lost = True
            self.counts["lost"] += 1
