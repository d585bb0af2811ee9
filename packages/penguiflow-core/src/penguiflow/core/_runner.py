"""How one node runs: a lazily grown pool of workers, per-trace lanes, attempts and delivery.

Messages of different traces run concurrently (up to ``NodePolicy.max_concurrency``); messages of
one trace run one at a time, in arrival order. A worker that takes a message of a trace another
worker is already running *parks* it in that trace's lane (see ``_floe``) and goes on; the owner
runs the parked messages after its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from anyio import CancelScope
from pydantic import TypeAdapter

from ._attempts import Attempts, DeadlineReached
from ._context import Context
from ._errors import FlowError, FlowErrorCode
from ._events import FlowEventType
from ._floe import Floe, Inbox
from ._graph import ROOKERY
from ._node import Node, NodePolicy
from ._trace import TraceState, _current_trace  # pyright: ignore[reportPrivateUsage]
from ._types import WM, BudgetExhausted, Message, copy_with

if TYPE_CHECKING:
    from ._flow import PenguiFlow

__all__ = ["NodeRunner"]

logger = logging.getLogger("penguiflow.core")


class NodeRunner(Attempts):
    """The runtime side of one node in one flow."""

    __slots__ = (
        "_warned_rewrap",
        "context",
        "flow",
        "forward",
        "in_adapter",
        "inbox",
        "loop_floe",
        "name",
        "node",
        "out_adapter",
        "out_by_name",
        "out_floes",
        "out_is_message",
        "plain",
        "policy",
        "single",
        "workers",
    )

    def __init__(self, flow: PenguiFlow, node: Node) -> None:
        self.flow: PenguiFlow = flow
        self.node: Node = node
        self.name: str = node.name
        self.policy: NodePolicy = node.policy
        self.inbox: Inbox = Inbox()
        self.context: Context = Context(self)
        self.workers: int = 0
        self.inbox.grow = self.grow
        self.forward: tuple[Floe, ...] = ()
        """Floes to non-self successors; empty means results go to Rookery."""
        self.single: Floe | None = None
        """The only forward floe, when there is exactly one (the fast path's target)."""
        self.loop_floe: Floe | None = None
        """The self-edge of a controller loop."""
        self.out_by_name: dict[str, Floe] = {}
        self.out_floes: tuple[Floe, ...] = ()
        """Every outgoing floe (self-edge included)."""
        self.in_adapter: TypeAdapter[Any] | None = None
        self.out_adapter: TypeAdapter[Any] | None = None
        self.out_is_message: bool = False
        self.plain: bool = True
        """No validation, timeout or deadline interruption: the fast path may run the node."""
        self._warned_rewrap = False

    def configure(self) -> None:
        """Recompute derived settings once the registry is attached (called by ``run``)."""
        policy = self.policy
        self.single = self.forward[0] if len(self.forward) == 1 else None
        self.out_floes = tuple(self.out_by_name.values())
        self.plain = (
            self.in_adapter is None
            and self.out_adapter is None
            and policy.timeout_s is None
            and not policy.interrupt_on_deadline
        )

    # --------------------------------------------------------------- workers
    def grow(self) -> None:
        """Start one more worker if the node is below its concurrency (called on backlog)."""
        if self.workers >= self.policy.max_concurrency:
            return
        task_group = self.flow.task_group_or_none
        if task_group is None:
            return
        self.workers += 1
        self.inbox.starting += 1
        task_group.start_soon(self._work, name=f"penguiflow:{self.name}")

    async def _work(self) -> None:
        self.inbox.starting -= 1
        try:
            await self._serve_inbox()
        finally:
            self.workers -= 1

    async def _serve_inbox(self) -> None:
        # One cancel scope per worker, not per message: an anyio scope costs more than the rest of
        # a hop. While the worker runs a trace's lane, the scope is registered with that trace, so
        # flow.cancel(trace) cancels exactly that lane (shields in node code are honoured). A
        # cancelled scope is spent: the worker leaves it and opens a fresh one before more work.
        lane_key: list[str | None] = [None]
        while True:
            with CancelScope() as scope:
                await self._serve_lanes(scope, lane_key)
            if scope.cancelled_caught and self.flow.observed:
                self.flow.event(FlowEventType.NODE_TRACE_CANCELLED, self, lane_key[0])

    async def _serve_lanes(self, scope: CancelScope, lane_key: list[str | None]) -> None:
        """Run lanes until ``scope`` is cancelled; ``lane_key[0]`` is the trace of the last lane."""
        inbox = self.inbox
        lanes = inbox.lanes
        live = self.flow.traces.states
        traces = self.flow.traces
        while True:
            _, key, message = inbox.get_nowait() if inbox.items else await inbox.get()
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
                    if state.pending <= 0 and not state.scopes:
                        traces.end(key, state)  # pyright: ignore[reportArgumentType]
            if scope.cancel_called:
                return

    # ------------------------------------------------------------ processing
    async def _process(self, key: str | None, message: Any, state: TraceState | None) -> None:
        """Run one message through the node and deliver what it returns.

        The common case (no validation, timeout or listener; one successor; same trace out as in)
        runs inline: the message's pending count is handed straight to its output.
        """
        flow = self.flow
        handed_over = False
        try:
            is_message = isinstance(message, Message)
            if is_message and message.deadline_s is not None and time.time() > message.deadline_s:
                await self._deadline_outcome(key, message)
                return
            if not self.plain:
                result = await self._invoke(message, state, None)
            else:  # first attempt inline; failures (and retries) go through _invoke
                observed = flow.observed
                if observed:
                    self._attempt_started(key, state)
                started = time.perf_counter()
                try:
                    result = await self.node.func(message, self.context)
                except Exception as exc:
                    if observed and state is not None:
                        state.inflight -= 1
                    result = await self._invoke(message, state, (exc, started))
                else:
                    if observed:
                        self._attempt_succeeded(key, state, started)
            if result is None:
                return
            out_key = key
            if is_message and not isinstance(result, Message):
                result = message.with_payload(result)
            if isinstance(result, Message):
                out_key = result.trace_id
                if isinstance(result.payload, WM):
                    await self._loop(out_key, result)
                    return
            single = self.single
            if (
                single is not None
                and not flow.tapped
                and out_key == key
                and single.size < single.limit
                and key not in single.inbox.lanes  # (else the trace's lane there may be full)
                and (state is None or not state.cancelled)
            ):
                single.put_nowait(key, result)
                handed_over = True
                return
            await self.send(out_key, result, self.forward)
        except DeadlineReached:
            await self._deadline_outcome(key, message)
        except FlowError as error:
            await self.fail(key, error, state)
        finally:
            if not handed_over:
                flow.traces.leave(key)

    async def fail(self, key: str | None, error: FlowError, state: TraceState | None) -> None:
        """Report a message's terminal failure: event, log, then Rookery or the trace's record."""
        flow = self.flow
        if flow.observed:
            flow.event(
                FlowEventType.NODE_FAILED,
                self,
                key,
                attempt=int(error.metadata.get("attempt", 0)),
                extra={"flow_error": error.to_payload()},
            )
        if state is not None and state.cancelled:
            return  # the cancellation is the trace's outcome
        logger.error("%s", error)
        if flow.emit_errors_to_rookery:
            await self.to_rookery(key, error)
        elif state is not None:
            state.error = error

    async def _deadline_outcome(self, key: str | None, message: Message) -> None:
        flow = self.flow
        if flow.observed:
            flow.event(
                FlowEventType.DEADLINE_SKIP, self, key, extra={"deadline_s": message.deadline_s}
            )
        await self.to_rookery(
            key, message.with_payload(_outcome(FlowErrorCode.DEADLINE_EXCEEDED, message))
        )

    # -------------------------------------------------------------- delivery
    async def _loop(self, key: str, result: Message) -> None:
        """A controller returned working memory: count the hop, check budgets, loop or stop."""
        if self.loop_floe is None:
            raise FlowError(
                trace_id=key,
                node_name=self.name,
                node_id=self.node.node_id,
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
        flow = self.flow
        if code is None:
            state = flow.traces.get(key)
            if state is not None and state.cancelled:
                return
            # Never wait for room on our own self-edge: only this node drains it.
            self.loop_floe.push_unbounded(key, looped)
            flow.traces.enter(key)
            if flow.tapped:
                flow.dispatcher.publish(self.name, self.name, key, looped)
            return
        if flow.observed:
            event = (
                FlowEventType.DEADLINE_SKIP
                if code is FlowErrorCode.DEADLINE_EXCEEDED
                else FlowEventType.BUDGET_EXHAUSTED
            )
            flow.event(event, self, key, extra={"code": code.value, "hops": wm.hops})
        await self.to_rookery(key, looped.with_payload(_outcome(code, looped)))

    async def send(self, key: str | None, item: Any, floes: Sequence[Floe]) -> None:
        """Put ``item`` on ``floes`` (Rookery when empty), counting it for its trace."""
        flow = self.flow
        if not floes:
            await self.to_rookery(key, item)
            return
        traces = flow.traces
        state = traces.get(key)
        if state is not None and state.cancelled:
            return
        copy = False
        for floe in floes:
            if copy and isinstance(item, Message):
                item = item.branch()
            if floe.full_for(key):
                await floe.wait_for_space(key)
                if state is not None and state.cancelled:
                    return  # cancelled while we waited: the put must not land after the drop
            floe.put_nowait(key, item)
            traces.enter(key)
            if flow.tapped:
                flow.dispatcher.publish(self.name, floe.target, key, item)
            copy = True

    async def to_rookery(self, key: str | None, item: Any) -> None:
        """Deliver a result (or error, or outcome) of trace ``key`` to Rookery."""
        flow = self.flow
        rookery = flow.rookery
        state = flow.traces.get(key)
        if state is not None and state.cancelled:
            return  # finished after its cancellation (e.g. in a shielded section): drop it
        if rookery.full(key):
            await rookery.wait_for_space(key)
            if state is not None and state.cancelled:
                return  # cancelled while we waited: its results were already dropped
        if flow.tapped:
            flow.dispatcher.publish(self.name, ROOKERY.name, key, item)
        rookery.put_nowait(self.name, key, item)


def _outcome(code: FlowErrorCode, message: Message) -> BudgetExhausted:
    payload = message.payload
    if isinstance(payload, WM):
        return BudgetExhausted.for_code(code, facts=payload.facts, hops=payload.hops)
    return BudgetExhausted.for_code(code)
