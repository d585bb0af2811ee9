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

import inspect
import time
import typing
import warnings
from typing import Any

from anyio import CancelScope, get_cancelled_exc_class

from ._attempts import Attempts, DeadlineReached, is_failure
from ._context import Context
from ._errors import FlowError, FlowErrorCode, FlowStopped, TraceCancelled
from ._events import FlowEventType
from ._floe import Floe
from ._node import Node, NodeFunc, NodePolicy
from ._runtime import Runtime
from ._station import Station
from ._trace import (
    TraceState,
    _current_deadline,  # pyright: ignore[reportPrivateUsage]
    _current_trace,  # pyright: ignore[reportPrivateUsage]
)
from ._types import WM, BudgetExhausted, Carried, Message, copy_with, merge_meta

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
        "recorder",
        "rt",
        "single",
        "station",
        "wants_message",
        "warn_bare",
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
        self.context: Context = Context.wired(rt, station)
        self.attempts: Attempts = Attempts(rt, station, self.context)
        self.workers: int = 0
        self.inbox.grow = self.grow
        self.plain: bool = True
        """No validation, timeout or deadline interruption: the first attempt may run inline."""
        self.wants_message: bool = _declares_message_input(station.node)
        """The node declares a ``Message`` input: a bare value reaches it in its envelope."""
        self.warn_bare: bool = False
        """Registered Message -> Message without output validation: warn on a bare result."""
        self.recorder = recorder = rt.recorder
        if recorder is not None:  # a journaled flow: results recorded, or replayed in memo mode
            self.func = recorder.wrap(self.name, self.func)
            self.attempts.func = self.func

    def configure(self, in_model: Any = None, out_model: Any = None) -> None:
        """Recompute derived settings once the registry is attached (called by ``run``).

        ``in_model`` / ``out_model`` are the node's registered models, if it has any.
        """
        if in_model is not None:
            self.wants_message = _is_message_model(in_model)
        if out_model is not None:
            self.warn_bare = _is_message_model(out_model) and self.attempts.out_adapter is None
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
    async def _process(self, key: str | None, item: Any, state: TraceState | None) -> None:
        """Run one message through the node and deliver what it returns, unchanged.

        ``item`` is what a predecessor returned: a ``Message``, a bare value, or a bare value
        carried with the envelope it came in (``Carried``). Whatever goes wrong with one message
        ends as one ``FlowError`` for it; only a real cancellation, or a ``BaseException`` that
        ends the flow, leaves this method.
        """
        rt = self.rt
        handed_over = False
        recorder = self.recorder
        journaled = None
        if recorder is not None:  # a journaled flow: unwrap the step, open the invocation
            item, journaled = recorder.begin(self.name, key, item, state, self.policy.memoize)
        if type(item) is Carried:
            envelope: Message | None = item.envelope
            message = envelope.with_payload(item.value) if self.wants_message else item.value
        else:
            message = item
            envelope = item if isinstance(item, Message) else None
        deadline_token = None
        try:
            if envelope is not None and envelope.deadline_s is not None:
                if time.time() > envelope.deadline_s:
                    await self._deadline_outcome(key, item, envelope)
                    return
                deadline_token = _current_deadline.set(envelope.deadline_s)  # for ctx.call_node
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
            if isinstance(result, Message):
                out_key = result.trace_id
                if self.envelope_meta and out_key == key:
                    result = self._with_subflow_meta(key, result)
                if isinstance(result.payload, WM):
                    await self._loop(out_key, result, message)
                    return
            elif envelope is not None:
                if self.warn_bare:
                    _warn_bare(self.name, result)
                if self.envelope_meta:
                    envelope = self._with_subflow_meta(key, envelope)
                result = Carried(result, envelope)  # the value as returned, its trace along
                if isinstance(result.value, WM):
                    await self._loop(envelope.trace_id, result, message)
                    return
            if recorder is not None and self.forward:
                result = recorder.stepped(result)
            single = self.single
            if single is not None and out_key == key and rt.hand_off(single, key, result, state):
                handed_over = True
                return
            await rt.deliver(self.name, out_key, result, self.forward)
        except DeadlineReached:
            assert envelope is not None
            await self._deadline_outcome(key, item, envelope)
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
            if recorder is not None and journaled is not None:
                recorder.end(journaled)
            if deadline_token is not None:
                _current_deadline.reset(deadline_token)
            if self.envelope_meta:
                self.envelope_meta.pop(key, None)
            if not handed_over:
                rt.traces.leave(key)

    def _with_subflow_meta[M: Message](self, key: str | None, result: M) -> M:
        """``result`` with the final meta of the subflows this invocation ran merged in (a copy).

        The subflows wrote last, so their keys win (the merge rule of a subflow's return).
        """
        patch = self.envelope_meta.pop(key, None)
        if patch is None:
            return result
        return copy_with(result, meta=merge_meta(result.meta, patch))

    async def _deadline_outcome(self, key: str | None, item: Any, envelope: Message) -> None:
        """The message's deadline passed before the node ran: deliver the typed outcome.

        In the shape the message came in: a ``Message`` for a message, a bare outcome otherwise.
        """
        rt = self.rt
        if rt.observed:
            rt.event(
                FlowEventType.DEADLINE_SKIP,
                self.station,
                key,
                extra={"deadline_s": envelope.deadline_s},
            )
        outcome = _outcome(FlowErrorCode.DEADLINE_EXCEEDED, envelope.payload)
        delivered = Carried(outcome, envelope) if type(item) is Carried else envelope
        await rt.deliver(self.name, key, _with_payload(delivered, outcome), ())

    async def _loop(self, key: str, result: Message | Carried, incoming: Any) -> None:
        """A controller returned working memory: count the hop, check budgets, loop or stop.

        A hop is counted unless the node already counted it (returned more hops than it was
        given). A loop with no budget at all also hands every intermediate state to Rookery, so
        a reader sees it progress and a runaway loop waits for its reader.
        """
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
        wm: WM = result.payload if isinstance(result, Message) else result.value
        given = incoming.payload if isinstance(incoming, Message) else incoming
        if isinstance(given, WM) and wm.hops <= given.hops:
            wm = copy_with(wm, hops=given.hops + 1)
        looped = _with_payload(result, wm)
        envelope = looped if isinstance(looped, Message) else looped.envelope
        code: FlowErrorCode | None = None
        if wm.budget_hops is not None and wm.hops >= wm.budget_hops:
            code = FlowErrorCode.HOP_BUDGET_EXHAUSTED
        elif wm.budget_tokens is not None and wm.tokens_used >= wm.budget_tokens:
            code = FlowErrorCode.TOKEN_BUDGET_EXHAUSTED
        elif envelope.deadline_s is not None and time.time() > envelope.deadline_s:
            code = FlowErrorCode.DEADLINE_EXCEEDED
        rt = self.rt
        if code is None:
            if wm.budget_hops is None and wm.budget_tokens is None:
                await rt.deliver(self.name, key, looped.branch(), ())
            if self.recorder is not None:
                looped = self.recorder.stepped(looped)
            rt.loop_back(station, key, looped)
            return
        if rt.observed:
            event = (
                FlowEventType.DEADLINE_SKIP
                if code is FlowErrorCode.DEADLINE_EXCEEDED
                else FlowEventType.BUDGET_EXHAUSTED
            )
            rt.event(event, station, key, extra={"code": code.value, "hops": wm.hops})
        await rt.deliver(self.name, key, _with_payload(looped, _outcome(code, wm)), ())


def _with_payload[T: Message | Carried](item: T, payload: Any) -> T:
    """``item`` carrying ``payload`` instead, in the same shape and envelope."""
    if isinstance(item, Message):
        return item.with_payload(payload)
    return Carried(payload, item.envelope)  # pyright: ignore[reportReturnType]


def _warn_bare(name: str, result: Any) -> None:
    warnings.warn(
        f"node {name!r} is registered for Message -> Message but returned a bare "
        f"{type(result).__name__}; it is delivered as returned. Return "
        "message.with_payload(...) to hand on a Message (headers, trace_id and meta).",
        RuntimeWarning,
        stacklevel=2,
    )


def _outcome(code: FlowErrorCode, payload: Any) -> BudgetExhausted:
    if isinstance(payload, WM):
        return BudgetExhausted.for_code(code, facts=payload.facts, hops=payload.hops)
    return BudgetExhausted.for_code(code)


def _is_message_model(model: Any) -> bool:
    return isinstance(model, type) and issubclass(model, Message)


def _declares_message_input(node: Node) -> bool:
    """Whether the node function's first parameter is annotated with a ``Message`` type."""
    func: Any = node.func
    target = func if inspect.isfunction(func) or inspect.ismethod(func) else func.__call__
    try:
        hints = typing.get_type_hints(target)
        first = next(iter(inspect.signature(target).parameters))
    except Exception:  # unresolvable annotations, partials, builtins: undeclared
        return False
    return _is_message_model(hints.get(first))
