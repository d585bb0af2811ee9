"""``Worker``: runs traces claimed from a ``WorkBus`` in one journaled flow of this process.

One task claims work up to the free capacity, one renews the held deliveries every
``heartbeat_s`` (and re-checks their cancel keys), one listens for cancellations; each held
trace has a task that emits it into the flow (in memo mode when redelivered), publishes its
Rookery items, then the end marker, then settles the delivery (ack after completion).
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from anyio.abc import TaskGroup, TaskStatus

from ._errors import (
    PenguiFlowError,
    safe_repr,
)
from ._flow import PenguiFlow
from ._registry import ModelRegistry
from ._work_checks import check_worker_options, checked_journal
from ._work_trace import Held, TraceRunner
from ._work_types import (
    Delivery,
    WorkBus,
    WorkerStatistics,
    closing,
    missing_methods,
)

__all__ = ["Worker"]

logger = logging.getLogger("penguiflow.core")

_RETRY_S = 0.5  # after a failed bus call in a background loop
_RELEASE_S = 5.0  # how long handing entries back may take when the worker ends


class Worker:
    """Run the traces of a ``WorkBus`` in ``flow``, alongside any number of other workers.

    ``await worker.run()`` (until cancelled or :meth:`stop`) or ``async with worker.running():``.
    The flow must be built but not started, with a ``Journal`` on a store every worker reaches
    (PostgreSQL or Redis; SQLite on one host): a trace redelivered after a worker died resumes
    in memo mode, so its finished steps are not run again.

    Args:
        flow: The flow (not running) that runs the traces.
        bus: Where work comes from and outputs go (``RedisStreamsBus``).
        registry: The flow's ``ModelRegistry`` (validation); also validates ingress payloads.
        max_inflight: How many traces this worker holds at once.
        claim_idle_s: A delivery idle that long belongs to a dead or frozen worker: reclaimed.
        heartbeat_s: How often held deliveries are renewed (default ``claim_idle_s / 3``).
        max_deliveries: After this many deliveries a trace is poison: it ends failed
            (``DELIVERIES_EXHAUSTED``) and moves to the dead-letter stream.
        consumer: This worker's unique name (default ``host-pid-uuid``).
        drain_timeout_s: On stop, how long held traces may still run before they are handed back.
        payload_type: Validate each ingress payload into this type.
    """

    def __init__(
        self,
        flow: PenguiFlow,
        *,
        bus: WorkBus,
        registry: ModelRegistry | None = None,
        max_inflight: int = 32,
        claim_idle_s: float = 30.0,
        heartbeat_s: float | None = None,
        max_deliveries: int = 5,
        consumer: str | None = None,
        drain_timeout_s: float = 30.0,
        payload_type: Any = None,
    ) -> None:
        missing = missing_methods(bus)
        if missing:
            raise TypeError(
                f"Worker needs a WorkBus; {type(bus).__name__} lacks {', '.join(missing)} "
                '(use RedisStreamsBus.open(url, app="..."))'
            )
        self._journal = checked_journal(flow)
        heartbeat_s = check_worker_options(
            max_inflight=max_inflight,
            claim_idle_s=claim_idle_s,
            heartbeat_s=heartbeat_s,
            max_deliveries=max_deliveries,
            drain_timeout_s=drain_timeout_s,
            consumer=consumer,
        )
        self.flow: PenguiFlow = flow
        """The flow that runs the traces."""
        self.bus: WorkBus = bus
        """The bus work comes from."""
        self.consumer: str = (
            consumer or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        )
        """This worker's name on the bus."""
        self.max_inflight: int = max_inflight
        """How many traces it holds at once."""
        self.claim_idle_s: float = float(claim_idle_s)
        """After how long without renewal a delivery counts as a dead worker's."""
        self.heartbeat_s: float = float(heartbeat_s)
        """How often it renews what it holds (and re-checks cancel keys)."""
        self.max_deliveries: int = max_deliveries
        """How many deliveries a trace gets before it is dead-lettered."""
        self.drain_timeout_s: float = float(drain_timeout_s)
        """How long held traces may still run once it stops."""
        self._registry = registry
        self._held: dict[str, Held] = {}
        self._unsettled: list[Delivery] = []
        # Events are made in run(): anyio 4.0 cannot make one outside a running event loop.
        self._room: anyio.Event | None = None
        self._done: anyio.Event | None = None
        self._stopping = False
        self._started = False
        self._counts: dict[str, int] = dict.fromkeys(
            ("completed", "failed", "cancelled", "reclaimed", "lost", "memo_hits", "dead_lettered"),
            0,
        )
        self._runner = TraceRunner(
            flow=flow,
            bus=bus,
            journal=self._journal,
            consumer=self.consumer,
            max_deliveries=max_deliveries,
            registry=registry,
            payload_type=payload_type,
            counts=self._counts,
        )

    def __repr__(self) -> str:
        return f"<Worker {self.consumer} inflight={len(self._held)}/{self.max_inflight}>"

    # ---------------------------------------------------------------- lifecycle
    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Claim and run traces until :meth:`stop` or cancellation (works with ``tg.start``).

        On stop: no new claims, held traces get ``drain_timeout_s`` to finish, the rest are
        handed back to the other workers at once.
        """
        if self._started:
            raise RuntimeError("this Worker already ran; build a new one (and a new flow)")
        self._started = True
        done = self._done = anyio.Event()
        try:
            async with self.flow.running(self._registry), anyio.create_task_group() as tg:
                tg.start_soon(self._heartbeat, name="penguiflow:worker-heartbeat")
                tg.start_soon(self._listen, name="penguiflow:worker-cancels")
                task_status.started()
                await self._claims(tg)
                await self._drain()
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(_RELEASE_S):
                await self._hand_back()
            done.set()

    @asynccontextmanager
    async def running(self) -> AsyncGenerator[Worker]:
        """Run the worker for the duration of the block; stop it (draining) on exit."""
        async with anyio.create_task_group() as tg:
            await tg.start(self.run)
            try:
                yield self
            finally:
                with anyio.CancelScope(shield=True):
                    await self.stop()

    async def stop(self) -> None:
        """Stop claiming, let held traces drain (``drain_timeout_s``), hand back the rest."""
        self._stopping = True
        self._wake()
        if self._done is not None:
            await self._done.wait()

    def statistics(self) -> WorkerStatistics:
        """A snapshot of this worker's counters."""
        return WorkerStatistics(inflight=len(self._held), **self._counts)

    # ------------------------------------------------------------------ claiming
    async def _claims(self, tg: TaskGroup) -> None:
        while not self._stopping:
            free = self.max_inflight - len(self._held)
            if free <= 0:
                self._room = anyio.Event()
                await self._room.wait()
                continue
            try:
                found = await self.bus.claim(self.consumer, free, min_idle_s=self.claim_idle_s)
            except PenguiFlowError as exc:
                logger.warning("worker %s could not claim: %s", self.consumer, safe_repr(exc))
                await anyio.sleep(_RETRY_S)
                continue
            for delivery in found:
                if self._stopping:
                    self._unsettled.append(delivery)
                elif delivery.item.trace_id not in self._held:  # else: ours already
                    held = Held(delivery)
                    self._held[delivery.item.trace_id] = held
                    tg.start_soon(
                        self._serve, held, name=f"penguiflow:trace:{delivery.item.trace_id}"
                    )

    async def _drain(self) -> None:
        with anyio.move_on_after(self.drain_timeout_s):
            while self._held:
                self._room = anyio.Event()
                await self._room.wait()
        for held in list(self._held.values()):
            held.scope.cancel()  # handed back in run()'s finally

    async def _hand_back(self) -> None:
        handed, self._unsettled = self._unsettled, []
        if handed:
            try:
                await self.bus.release(self.consumer, handed)
            except PenguiFlowError as exc:
                logger.warning("worker %s could not hand back work: %s", self.consumer, exc)

    # -------------------------------------------------------------------- a trace
    async def _serve(self, held: Held) -> None:
        trace_id = held.delivery.item.trace_id
        try:
            with held.scope:
                await self._runner.run(held)
        except PenguiFlowError as exc:  # the bus failed: the entry stays, another worker retries
            logger.error("worker %s lost trace %s to %s", self.consumer, trace_id, safe_repr(exc))
        except Exception:  # a bug must not take the worker down: the entry is redelivered
            logger.exception("worker %s failed on trace %s", self.consumer, trace_id)
        finally:
            del self._held[trace_id]
            if not held.settled and not held.lost:
                self._unsettled.append(held.delivery)
            self._wake()

    def _wake(self) -> None:
        if self._room is not None:
            self._room.set()

    # ------------------------------------------------------- heartbeat and cancels
    async def _heartbeat(self) -> None:
        while True:
            await anyio.sleep(self.heartbeat_s)
            held = [h for h in self._held.values() if not h.settled and not h.lost]
            if not held:
                continue
            try:
                lost = await self.bus.renew(self.consumer, [h.delivery for h in held])
                for delivery in lost:
                    await self._lose(delivery)
                for each in held:
                    if not each.lost and await self.bus.is_cancelled(each.delivery.item.trace_id):
                        await self._cancel_local(each.delivery.item.trace_id)
            except PenguiFlowError as exc:
                logger.warning("worker %s heartbeat failed: %s", self.consumer, safe_repr(exc))

    async def _lose(self, delivery: Delivery) -> None:
        held = self._held.get(delivery.item.trace_id)
        if held is None or held.delivery is not delivery or held.settled:
            return
        held.lost = True
        self._counts["lost"] += 1
        logger.warning(
            "worker %s lost trace %s to another worker: cancelled here",
            self.consumer,
            delivery.item.trace_id,
        )
        await self.flow.cancel(delivery.item.trace_id)
        held.scope.cancel()

    async def _cancel_local(self, trace_id: str) -> None:
        held = self._held.get(trace_id)
        if held is None or held.cancel_requested:
            return
        held.cancel_requested = True
        await self.flow.cancel(trace_id)

    async def _listen(self) -> None:
        while True:
            try:
                async with closing(self.bus.cancellations()) as cancellations:
                    async for trace_id in cancellations:
                        if trace_id in self._held:
                            await self._cancel_local(trace_id)
            except PenguiFlowError as exc:
                logger.warning("worker %s cancel channel failed: %s", self.consumer, exc)
            await anyio.sleep(_RETRY_S)
