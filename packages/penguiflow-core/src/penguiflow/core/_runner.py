"""How one node runs: a lazily grown pool of workers, per-trace lanes, and what a result becomes.

Messages of different traces run concurrently (up to ``NodePolicy.max_concurrency``); messages of
one trace run one at a time, in arrival order. A worker that takes a message of a trace another
worker is already running *parks* it in that trace's lane (see ``_floe``) and goes on; the owner
runs the parked messages after its own. Workers beyond the first few leave when they find nothing
to do, so a burst grows the pool and an idle node costs a couple of tasks.

The path of one message: ``_serve_lanes`` takes it from the inbox, ``_process`` runs the node
(inline when nothing needs the attempt loop, else through ``Attempts``) and hands the result to
the runtime's one delivery path; failures become one ``FlowError`` reported by ``Runtime.fail``.
"""

from __future__ import annotations

import time
from typing import Any

from anyio import CancelScope, get_cancelled_exc_class

from ._attempts import Attempts, DeadlineReached, is_failure
from ._context import Context
from ._errors import FlowError, FlowErrorCode, FlowStopped, TraceCancelled
from ._events import FlowEventType
from ._floe import Floe
from ._node import NodeFunc, NodePolicy
from ._runtime import Runtime
from ._station import Station
from ._trace import TraceState, _current_trace  # pyright: ignore[reportPrivateUsage]
from ._types import WM, BudgetExhausted, Message, copy_with, merge_meta

__all__ = ["NodeRunner"]

IDLE_WORKERS = 2
"""Idle workers a node keeps; more leave when they find the inbox empty."""


class NodeRunner:
    """The runtime side of one node in one flow."""

    __slots__ = (
        "attempts",
        "context",
        "envelope_meta",
        "forward",
        "func",
        "inbox",
        "name",
        "plain",
        "policy",
        "rt",
        "single",
        "station",
        "workers",
    )

    def __init__(self, rt: Runtime, station: Station) -> None:
        self.rt: Runtime = rt
        self.station: Station = station
        self.name: str = station.name
        self.func: NodeFunc = station.node.func
        self.policy: NodePolicy = station.node.policy
        self.inbox = station.inbox
        # The station's wiring, read on every message.
        self.single: Floe | None = station.single
        self.forward: tuple[Floe, ...] = station.forward
        self.envelope_meta: dict[str | None, dict[str, Any]] = station.envelope_meta
        self.context: Context = Context(rt, station)
        self.attempts: Attempts = Attempts(rt, station, self.context)
        self.workers: int = 0
        self.inbox.grow = self.grow
        self.plain: bool = True
        """No validation, timeout or deadline interruption: the first attempt may run inline."""

    def configure(self) -> None:
        """Recompute derived settings once the registry is attached (called by ``run``)."""
        policy = self.policy
        attempts = self.attempts
        self.plain = (
            attempts.in_adapter is None
            and attempts.out_adapter is None
            and policy.timeout_s is None
            and not policy.interrupt_on_deadline
        )

    # --------------------------------------------------------------- workers
    def grow(self) -> None:
        """Start one more worker if the node is below its concurrency (called on backlog)."""
        if self.workers >= self.policy.max_concurrency:
            return
        task_group = self.rt.task_group
        if task_group is None:
            return
        self.workers += 1
        self.inbox.starting += 1
        task_group.start_soon(self._work, name=f"penguiflow:{self.name}")

    async def _work(self) -> None:
        self.inbox.starting -= 1
        try:
            await self._serve_inbox()
        except BaseException as exc:
            if not isinstance(exc, get_cancelled_exc_class()):
                self.rt.crashed(exc)  # other callers learn it now, before the workers unwind
            raise
        finally:
            self.workers -= 1

    async def _serve_inbox(self) -> None:
        # One cancel scope per worker, not per message: an anyio scope costs more than the rest of
        # a hop. While the worker runs a trace's lane, the scope is registered with that trace, so
        # flow.cancel(trace) cancels exactly that lane (shields in node code are honoured). A
        # cancelled scope is spent: the worker leaves it and opens a fresh one before more work.
        lane_key: list[str | None] = [None]
        while True:
            retired = False
            with CancelScope() as scope:
                retired = await self._serve_lanes(scope, lane_key)
            if scope.cancelled_caught and self.rt.observed:
                self.rt.event(FlowEventType.NODE_TRACE_CANCELLED, self.station, lane_key[0])
            if retired or (not self.inbox.items and self.inbox.waiting >= IDLE_WORKERS):
                return  # (checked before opening a new scope: a scope costs more than a hop)

    async def _serve_lanes(self, scope: CancelScope, lane_key: list[str | None]) -> bool:
        """Run lanes until ``scope`` is cancelled (False) or the worker is not needed (True)."""
        inbox = self.inbox
        lanes = inbox.lanes
        traces = self.rt.traces
        live = traces.states
        while True:
            if inbox.items:
                _, key, message = inbox.get_nowait()
            elif inbox.waiting >= IDLE_WORKERS:
                return True  # enough idle workers already: this one leaves
            else:
                _, key, message = await inbox.get()
            if key in lanes:  # the trace is running here: queue behind it, in order
                inbox.park(key, message)
                continue
            state = None if key is None else live.get(key)
            if state is not None and state.cancelled:
                traces.leave(key)  # a straggler of a trace being cancelled: drop it
                continue
            lanes[key] = None
            lane_key[0] = key
            token = _current_trace.set(key)
            try:
                if state is not None:
                    state.scopes.add(scope)
                await self._process(key, message, state)
                while lanes[key]:  # messages of this trace parked behind the one just run
                    message = inbox.unpark(key)
                    if state is not None and state.cancelled:
                        traces.leave(key)
                        continue
                    await self._process(key, message, state)
            finally:
                inbox.close_lane(key)
                _current_trace.reset(token)
                if state is not None:
                    state.scopes.discard(scope)
                    if state.pending <= 0 and not state.scopes:  # TraceTable.release, inlined
                        traces.end(key, state)  # pyright: ignore[reportArgumentType]
            # An idle worker must not keep the last trace's state (its error, its frames) or its
            # message alive while it waits for more work.
            state = message = None
            if scope.cancel_called:
                return False

    # ------------------------------------------------------------ processing
    async def _process(self, key: str | None, message: Any, state: TraceState | None) -> None:
        """Run one message through the node and deliver what it returns.

        Whatever goes wrong with one message ends as one ``FlowError`` for it; only a real
        cancellation, or a ``BaseException`` that ends the flow, leaves this method.
        """
        rt = self.rt
        handed_over = False
        try:
            is_message = isinstance(message, Message)
            if is_message and message.deadline_s is not None and time.time() > message.deadline_s:
                await self._deadline_outcome(key, message)
                return
            if not self.plain:
                result = await self.attempts.run(message, key, state)
            else:  # first attempt inline; a failure (and its retries) goes through Attempts
                observed = rt.observed
                if observed:
                    self.attempts.started(key, state, 0)
                started = time.perf_counter()
                try:
                    result = await self.func(message, self.context)
                except BaseException as exc:
                    if not is_failure(exc):
                        raise
                    if observed:
                        self.attempts.ended(key, state, 0, started, exc)
                    result = await self.attempts.run(message, key, state, (exc, started))
                else:
                    if observed:
                        self.attempts.ended(key, state, 0, started)
            if result is None:
                return
            out_key = key
            if is_message and not isinstance(result, Message):
                result = self._envelope(key, message, result)
            if isinstance(result, Message):
                out_key = result.trace_id
                if self.envelope_meta and out_key == key:
                    result = self._with_subflow_meta(key, result)
                if isinstance(result.payload, WM):
                    await self._loop(out_key, result)
                    return
            single = self.single
            if single is not None and out_key == key and rt.hand_off(single, key, result, state):
                handed_over = True
                return
            await rt.deliver(self.name, out_key, result, self.forward)
        except DeadlineReached:
            await self._deadline_outcome(key, message)
        except FlowError as error:
            await rt.fail(self.station, key, error)
        except (TraceCancelled, FlowStopped):
            pass  # the result came after its trace's cancellation (or the flow's stop): dropped
        except Exception as exc:  # odd input the attempt machinery could not absorb
            await rt.fail(self.station, key, self.attempts.unexpected(exc, key))
        except BaseException as exc:
            if not isinstance(exc, get_cancelled_exc_class()):
                rt.crashed(exc)  # a node raised e.g. KeyboardInterrupt: the flow ends
            raise
        finally:
            if self.envelope_meta:
                self.envelope_meta.pop(key, None)
            if not handed_over:
                rt.traces.leave(key)

    def _envelope(self, key: str | None, message: Message, result: Any) -> Message:
        """A bare result in the input's envelope."""
        envelope = message.with_payload(result)
        return self._with_subflow_meta(key, envelope) if self.envelope_meta else envelope

    def _with_subflow_meta(self, key: str | None, result: Message) -> Message:
        """``result`` with the final meta of the subflows this invocation ran merged in (a copy).

        The subflows wrote last, so their keys win (the merge rule of a subflow's return).
        """
        patch = self.envelope_meta.pop(key, None)
        if patch is None:
            return result
        return copy_with(result, meta=merge_meta(result.meta, patch))

    async def _deadline_outcome(self, key: str | None, message: Message) -> None:
        rt = self.rt
        if rt.observed:
            rt.event(
                FlowEventType.DEADLINE_SKIP,
                self.station,
                key,
                extra={"deadline_s": message.deadline_s},
            )
        outcome = message.with_payload(_outcome(FlowErrorCode.DEADLINE_EXCEEDED, message))
        await rt.deliver(self.name, key, outcome, ())

    async def _loop(self, key: str, result: Message) -> None:
        """A controller returned working memory: count the hop, check budgets, loop or stop."""
        station = self.station
        if station.loop_floe is None:
            raise FlowError(
                trace_id=key,
                node_name=self.name,
                node_id=station.node_id,
                code=FlowErrorCode.NODE_EXCEPTION,
                message=(
                    f"node {self.name!r} returned WM but has no self-edge; add "
                    f"{self.name}.to({self.name}) and Node(..., allow_cycle=True)"
                ),
            )
        wm: WM = result.payload
        wm = copy_with(wm, hops=wm.hops + 1)
        looped = copy_with(result, payload=wm)
        code: FlowErrorCode | None = None
        if wm.budget_hops is not None and wm.hops >= wm.budget_hops:
            code = FlowErrorCode.HOP_BUDGET_EXHAUSTED
        elif wm.budget_tokens is not None and wm.tokens_used >= wm.budget_tokens:
            code = FlowErrorCode.TOKEN_BUDGET_EXHAUSTED
        elif looped.deadline_s is not None and time.time() > looped.deadline_s:
            code = FlowErrorCode.DEADLINE_EXCEEDED
        rt = self.rt
        if code is None:
            rt.loop_back(station, key, looped)
            return
        if rt.observed:
            event = (
                FlowEventType.DEADLINE_SKIP
                if code is FlowErrorCode.DEADLINE_EXCEEDED
                else FlowEventType.BUDGET_EXHAUSTED
            )
            rt.event(event, station, key, extra={"code": code.value, "hops": wm.hops})
        await rt.deliver(self.name, key, looped.with_payload(_outcome(code, looped)), ())


def _outcome(code: FlowErrorCode, message: Message) -> BudgetExhausted:
    payload = message.payload
    if isinstance(payload, WM):
        return BudgetExhausted.for_code(code, facts=payload.facts, hops=payload.hops)
    return BudgetExhausted.for_code(code)
