"""The bus-level types of distributed workers, and the ``WorkBus`` protocol they plug into.

A ``WorkBus`` carries work items (one per trace) from clients to workers, outputs of each trace
back to any client, and cancellation requests to the worker that owns a trace. ``RedisStreamsBus``
implements it on Redis Streams; another broker (NATS JetStream, Kafka) implements the same
methods (see ``penguiflow.core.distributed``).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from ._distribution import BusEnvelope
from ._errors import FlowError, PenguiFlowError

__all__ = [
    "BUS_METHODS",
    "Delivery",
    "OutputKind",
    "TraceNotFound",
    "TraceOutcome",
    "TraceOutput",
    "TraceStatus",
    "WorkBus",
    "WorkItem",
    "WorkerStatistics",
    "closing",
    "missing_methods",
]

TraceStatus = Literal["completed", "failed", "cancelled"]
"""How a distributed trace ended."""

OutputKind = Literal["result", "chunk", "end"]
"""What a ``TraceOutput`` carries: a Rookery result, a stream chunk, or the end marker."""

BUS_METHODS = (
    "submit",
    "claim",
    "renew",
    "settle",
    "release",
    "put_output",
    "outputs",
    "request_cancel",
    "is_cancelled",
    "cancellations",
    "publish",
)
"""What an object passed as a ``WorkBus`` must have (checked at ``Worker``/``FlowClient``)."""


class TraceNotFound(PenguiFlowError, LookupError):
    """No trace with that id was ever submitted to the bus (or its outputs expired).

    Attributes:
        trace_id: The id asked for.
    """

    def __init__(self, trace_id: str) -> None:
        self.trace_id: str = trace_id
        super().__init__(
            f"no trace {trace_id!r} on this bus: emit it with FlowClient.emit(msg) first "
            "(outputs stay readable result_ttl_s after a trace ends)"
        )

    def __reduce__(self) -> tuple[type[TraceNotFound], tuple[str]]:
        return (TraceNotFound, (self.trace_id,))


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One trace to run: its id, its ingress ``Message`` as JSON, and its ingress targets."""

    trace_id: str
    """The trace (the message's ``trace_id``)."""
    body: bytes
    """``Message.model_dump(mode="json")`` as JSON bytes."""
    to: tuple[str, ...] | None = None
    """Ingress node names (None: every ingress node)."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """A work item handed to one consumer: the bus's id for it and which attempt this is."""

    item: WorkItem
    """What to run."""
    delivery_id: str
    """The bus's id of the entry (a Redis stream id)."""
    attempt: int
    """1 for the first delivery; more when the item was reclaimed from a dead worker."""


@dataclass(frozen=True, slots=True)
class TraceOutput:
    """One output of a trace, as workers publish it and clients read it.

    ``output_id`` makes publishing idempotent: a second output with the same id is dropped, so
    a redelivered trace never shows a client a result twice. Results are ``r:{index}`` (their
    position among the trace's results), chunks ``c:{stream_id}:{seq}``, the end marker ``end``.
    """

    trace_id: str
    """The trace it belongs to."""
    output_id: str
    """Unique within the trace (see above)."""
    kind: OutputKind
    """``"result"``, ``"chunk"`` or ``"end"``."""
    body: bytes
    """JSON: a result or chunk (see ``FlowClient``), or the outcome for ``"end"``."""


@dataclass(frozen=True, slots=True)
class TraceOutcome:
    """How a distributed trace ended (``FlowClient.wait``)."""

    trace_id: str
    """The trace."""
    status: TraceStatus
    """``"completed"``, ``"failed"`` or ``"cancelled"``."""
    error: FlowError | None
    """The failure of a ``"failed"`` trace (``original_exc`` is None across processes)."""
    attempts: int
    """How many deliveries the trace took (1 unless a worker died or handed it back)."""
    worker: str | None
    """The consumer name of the worker that ended it (None when no worker ran it)."""


@dataclass(frozen=True, slots=True)
class WorkerStatistics:
    """A snapshot of a ``Worker``'s counters (``worker.statistics()``)."""

    inflight: int
    """Traces it holds now."""
    completed: int
    """Traces it ran to completion."""
    failed: int
    """Traces that ended failed in it (dead-lettered ones included)."""
    cancelled: int
    """Traces cancelled while it held them (or claimed already cancelled)."""
    reclaimed: int
    """Deliveries it took over from another consumer (attempt > 1)."""
    lost: int
    """Traces it found it no longer owned (reclaimed by another worker) and dropped."""
    memo_hits: int
    """Redelivered traces it resumed from their journal in memo mode."""
    dead_lettered: int
    """Poison traces it moved to the dead-letter stream (``max_deliveries`` exceeded)."""


@runtime_checkable
class WorkBus(Protocol):
    """The plug point of distributed workers: a work queue, per-trace outputs, cancellation.

    It is also a core ``MessageBus`` (``publish`` mirrors edge traffic). ``consumer`` is a
    worker's unique name. Implementations must make ``submit`` idempotent per trace id,
    ``put_output`` idempotent per ``output_id``, and fence ``renew``/``settle`` so that they act
    only on deliveries the consumer still owns.
    """

    async def submit(self, item: WorkItem) -> bool:
        """Enqueue ``item``; False (and nothing enqueued) when its trace id is already known."""
        ...

    async def claim(self, consumer: str, count: int, *, min_idle_s: float) -> list[Delivery]:
        """Up to ``count`` deliveries: first items idle over ``min_idle_s``, then new ones.

        May wait up to the bus's block time when there is nothing to claim.
        """
        ...

    async def renew(self, consumer: str, deliveries: Sequence[Delivery]) -> list[Delivery]:
        """Reset the idle time of the deliveries ``consumer`` owns; return those it lost."""
        ...

    async def settle(
        self, consumer: str, delivery: Delivery, *, dead_letter: str | None = None
    ) -> bool:
        """Remove a finished delivery (to the dead-letter stream with that reason, if given).

        False when ``consumer`` no longer owns it (nothing is done then).
        """
        ...

    async def release(self, consumer: str, deliveries: Sequence[Delivery]) -> None:
        """Hand owned deliveries back so that another consumer claims them at once."""
        ...

    async def put_output(self, output: TraceOutput) -> None:
        """Append one output to its trace (dropped when its ``output_id`` is there already)."""
        ...

    def outputs(
        self, trace_id: str, *, after: str | None = None
    ) -> AsyncIterator[tuple[str, TraceOutput]]:
        """The trace's outputs after cursor ``after``, waiting for more, ending after ``end``.

        Each comes with its cursor. Raises ``TraceNotFound`` for an unknown trace.
        """
        ...

    async def request_cancel(self, trace_id: str) -> bool:
        """Ask the trace's owner to cancel it; True only the first time, for a live trace."""
        ...

    async def is_cancelled(self, trace_id: str) -> bool:
        """Whether a cancellation of ``trace_id`` was requested."""
        ...

    def cancellations(self) -> AsyncIterator[str]:
        """Trace ids as their cancellation is requested (from now on)."""
        ...

    async def publish(self, envelope: BusEnvelope) -> None:
        """Mirror one edge crossing (core's ``MessageBus``)."""
        ...


@asynccontextmanager
async def closing[T](iterator: AsyncIterator[T]) -> AsyncGenerator[AsyncIterator[T]]:
    """Use ``iterator`` in the block, then close it when it can be (an async generator)."""
    try:
        yield iterator
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()


def missing_methods(bus: object) -> list[str]:
    """The ``WorkBus`` methods ``bus`` lacks."""
    return [name for name in BUS_METHODS if not callable(getattr(bus, name, None))]
