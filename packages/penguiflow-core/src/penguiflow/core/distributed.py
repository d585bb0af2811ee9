"""Distributed workers: traces spread over many processes and machines, on Redis Streams.

``pip install "penguiflow-core[redis]"``. A trace runs inside one worker process at a time (so
every core semantic holds: per-trace FIFO, joins, controller loops, stream order, cancellation);
traces spread over any number of workers; a worker that dies hands its traces to the others,
whose journal memo mode re-runs only the steps that had not finished::

    from penguiflow.core import Headers, Journal, Message, RedisDurableStore, create
    from penguiflow.core.distributed import FlowClient, RedisStreamsBus, Worker

    # each worker process
    async with RedisDurableStore.open(url) as store, RedisStreamsBus.open(url, app="orders") as bus:
        flow = create(..., journal=Journal(store))
        await Worker(flow, bus=bus, max_inflight=32).run()

    # any client process
    async with RedisStreamsBus.open(url, app="orders") as bus:
        client = FlowClient(bus)
        trace_id = await client.emit(Message(payload=order, headers=Headers(tenant="acme")))
        result = await client.fetch(trace_id)
        outcome = await client.wait(trace_id)      # TraceOutcome(status="completed", ...)

Delivery is at least once for unfinished node invocations, results reach each client exactly
once (output ids), and side effects happen once when keyed with ``idempotent()``. Work is
acknowledged only after a trace ended; a worker renews what it holds every ``heartbeat_s``, so
only a dead or frozen worker's traces are reclaimed (after ``claim_idle_s``), however long its
steps run. After ``max_deliveries`` a trace ends failed with
``FlowErrorCode.DELIVERIES_EXHAUSTED`` and its item moves to the dead-letter stream.

Other brokers plug in by implementing :class:`WorkBus`.
"""

from ._work_client import FlowClient
from ._work_redis import RedisStreamsBus
from ._work_types import (
    Delivery,
    TraceNotFound,
    TraceOutcome,
    TraceOutput,
    WorkBus,
    WorkerStatistics,
    WorkItem,
)
from ._work_worker import Worker

for _public in (FlowClient, RedisStreamsBus, TraceNotFound, WorkBus, Worker):
    _public.__module__ = __name__  # reprs, docs and tracebacks show the public path
del _public

__all__ = [
    "Delivery",
    "FlowClient",
    "RedisStreamsBus",
    "TraceNotFound",
    "TraceOutcome",
    "TraceOutput",
    "WorkBus",
    "WorkItem",
    "Worker",
    "WorkerStatistics",
]
