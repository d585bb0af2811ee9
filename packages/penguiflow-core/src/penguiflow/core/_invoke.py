"""One invocation of a node in the caller's task: ``flow.call_node`` and ``ctx.call_node``.

An invocation runs the node once under its ``NodePolicy`` through the same ``Attempts`` a flow's
workers use (validation, timeout, retries with backoff and jitter, ``retry_on``, one final
``FlowError``); its result goes back to the caller instead of to successors. Around that loop
this module adds what the flow gives a message:

- the deadline, checked before start (and while running with ``interrupt_on_deadline``);
- the trace: an invocation with a trace id keeps that trace live while it runs, its cancel scope
  one of the trace's scopes, so ``flow.cancel(trace_id)`` interrupts it (``TraceCancelled``) and
  the trace ends by the one rule of ``TraceTable.release`` once nothing of it is left;
- the bound: at most ``max_concurrency`` invocations of one node through one flow at a time,
  across all callers (``Invocations``).

A ``BaseException`` that is not an ``Exception`` (``KeyboardInterrupt``) propagates unchanged.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from contextvars import Token
from typing import Any, cast

import anyio
from anyio import CancelScope

from ._attempts import Attempts, DeadlineReached
from ._context import Context
from ._errors import FlowError, FlowErrorCode, TraceCancelled
from ._events import FlowEventType
from ._node import Node
from ._runtime import Runtime
from ._station import Station
from ._trace import (
    TraceState,
    _current_deadline,  # pyright: ignore[reportPrivateUsage]
    _current_trace,  # pyright: ignore[reportPrivateUsage]
)
from ._types import Message

__all__ = ["KEEP_IDLE", "Invocations", "current_deadline", "invoke"]

_INVOKED: dict[str, Any] = {"invoked": True}
"""The tag of an invocation's events when the caller passed no ``extra`` (never mutated)."""


KEEP_IDLE = 256
"""Nodes whose bookkeeping a flow keeps while none of their invocations runs (then pruned)."""


class Invocations:
    """One node's invocations through one flow: what they share, and the bound on how many run.

    Kept while the node is in use (up to ``KEEP_IDLE`` idle nodes per flow), so a call reuses its
    station and default context instead of building them.
    """

    __slots__ = ("active", "context", "station", "waiters")

    def __init__(self, station: Station, context: Context) -> None:
        self.station: Station = station
        """Where the node's events are reported: its station in the graph, or a detached one."""
        self.context: Context = context
        """The ``ctx`` of a call that passes none (emits go where the station's floes go)."""
        self.active: int = 0
        self.waiters: deque[anyio.Event] = deque()

    async def acquire(self, limit: int) -> None:
        """Wait for a turn (no checkpoint when one is free: the common case costs nothing)."""
        if self.active < limit:  # with waiters queued, turns are handed over: active == limit
            self.active += 1
            return
        turn = anyio.Event()
        self.waiters.append(turn)
        try:
            await turn.wait()
        except BaseException:
            if turn.is_set():
                self.release()  # handed a turn while being cancelled: pass it on
            else:
                self.waiters.remove(turn)
            raise

    def release(self) -> None:
        """End a turn: the next waiter takes it over as it is, or it is freed."""
        if self.waiters:
            self.waiters.popleft().set()
        else:
            self.active -= 1


def _invocations(rt: Runtime, node: Node) -> Invocations:
    invocations = rt.invocations
    entry = invocations.get(node)
    if entry is None:
        if len(invocations) >= KEEP_IDLE:  # bounded: callers may build a Node per call
            for idle in [n for n, e in invocations.items() if not e.active]:
                del invocations[idle]
        station = rt.stations.get(node) or Station(node)
        entry = invocations[node] = Invocations(station, Context.wired(rt, station))
    return entry


async def invoke(
    rt: Runtime,
    node: Node,
    payload: Any,
    context: object | None,
    *,
    trace_id: str | None,
    deadline_s: float | None,
    extra: Mapping[str, Any] | None,
) -> Any:
    """Run ``node`` once on ``payload`` for the caller (see ``PenguiFlow.call_node``)."""
    _check_call(rt, node)
    state = rt.traces.get(trace_id)
    if state is not None and state.cancelled:
        raise TraceCancelled(trace_id)
    entry = _invocations(rt, node)
    attempts = _attempts(rt, node, entry, context, extra)
    if deadline_s is None and isinstance(payload, Message):
        deadline_s = payload.deadline_s
    attempts.deadline = deadline_s
    if deadline_s is not None and time.time() > deadline_s:
        raise _deadline_error(attempts, trace_id, deadline_s, "before the node started")
    tokens = _enter(trace_id, deadline_s)
    try:
        if trace_id is None:
            return await _limited(entry, attempts, payload, None, None)
        # Part of trace `trace_id`, which stays live (and cancellable) meanwhile.
        state = rt.traces.open(trace_id)
        scope = CancelScope()
        state.scopes.add(scope)
        try:
            result = None
            try:
                with scope:
                    result = await _limited(entry, attempts, payload, trace_id, state)
            except FlowError:
                if not scope.cancel_called:
                    raise
                # the node turned its cancellation into a failure: the cancellation is the outcome
            if scope.cancel_called:
                if rt.observed:
                    rt.event(
                        FlowEventType.NODE_TRACE_CANCELLED,
                        entry.station,
                        trace_id,
                        extra=attempts.tag,
                    )
                if not state.cancelled and rt.phase == "stopped":
                    raise rt.stopped_error("the flow stopped while the node was invoked")
                raise TraceCancelled(trace_id)
            return result
        finally:
            state.scopes.discard(scope)
            rt.traces.release(trace_id, state)
    finally:
        if tokens is not None:
            _leave(tokens)


def _check_call(rt: Runtime, node: Node) -> None:
    if not isinstance(node, Node):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError(
            f"call_node() takes a Node, got {type(node).__name__}: {node!r}; wrap an async "
            "function as Node(func, policy=...) first"
        )
    if rt.phase == "stopped":
        raise RuntimeError(
            f"cannot call node {node.name!r}: the flow has stopped; call nodes through a flow "
            "that is idle or running"
        )


def _attempts(
    rt: Runtime,
    node: Node,
    entry: Invocations,
    context: object | None,
    extra: Mapping[str, Any] | None,
) -> Attempts:
    """The attempt loop of one invocation, validating where the flow's registry has the node."""
    attempts = Attempts(
        rt, entry.station, entry.context if context is None else cast(Context, context)
    )
    registry = rt.registry
    if registry is not None:
        mode = node.policy.validate
        models = registry.entry(node.name) if mode != "none" else None
        if models is not None:
            if mode in ("both", "in"):
                attempts.in_adapter = models.in_adapter
            if mode in ("both", "out"):
                attempts.out_adapter = models.out_adapter
                attempts.out_is_message = models.out_is_message
    attempts.tag = _INVOKED if not extra else {**extra, "invoked": True}
    return attempts


async def _limited(
    entry: Invocations,
    attempts: Attempts,
    payload: Any,
    key: str | None,
    state: TraceState | None,
) -> Any:
    """Run the attempts once the node has a free turn in this flow."""
    rt = attempts.rt
    try:
        await entry.acquire(attempts.policy.max_concurrency)
        try:
            return await attempts.run(payload, key, state)
        finally:
            entry.release()
    except DeadlineReached:
        deadline = attempts.deadline
        assert deadline is not None
        raise _deadline_error(attempts, key, deadline, "while the node ran") from None
    except FlowError as error:
        if rt.observed and not (state is not None and state.cancelled):
            _report_failed(attempts, key, error)
        raise
    except Exception as exc:  # odd input the attempt machinery could not absorb
        error = attempts.unexpected(exc, key)
        if rt.observed:
            _report_failed(attempts, key, error)
        raise error from exc


def _deadline_error(attempts: Attempts, key: str | None, deadline: float, when: str) -> FlowError:
    station = attempts.station
    error = FlowError(
        trace_id=key,
        node_name=station.name,
        node_id=station.node_id,
        code=FlowErrorCode.DEADLINE_EXCEEDED,
        message=f"the deadline passed {when}",
        metadata={"attempt": 0, "deadline_s": deadline},
    )
    rt = attempts.rt
    if rt.observed:
        extra = {**attempts.tag, "deadline_s": deadline} if attempts.tag else None
        rt.event(FlowEventType.DEADLINE_SKIP, station, key, extra=extra)
        _report_failed(attempts, key, error)
    return error


def _report_failed(attempts: Attempts, key: str | None, error: FlowError) -> None:
    extra = {**(attempts.tag or {}), "flow_error": error.to_payload()}
    attempt = int(error.metadata.get("attempt", 0))
    attempts.rt.event(
        FlowEventType.NODE_FAILED, attempts.station, key, attempt=attempt, extra=extra
    )


_Tokens = tuple[Token[str | None] | None, Token[float | None] | None]


def _enter(key: str | None, deadline: float | None) -> _Tokens | None:
    """Make ``key`` and ``deadline`` current, so a nested ``ctx.call_node`` inherits them."""
    trace = None
    if key is not None and _current_trace.get() != key:
        trace = _current_trace.set(key)
    limit = None
    if deadline is not None and _current_deadline.get() != deadline:
        limit = _current_deadline.set(deadline)
    return None if trace is None and limit is None else (trace, limit)


def _leave(tokens: _Tokens) -> None:
    trace, limit = tokens
    if limit is not None:
        _current_deadline.reset(limit)
    if trace is not None:
        _current_trace.reset(trace)


def current_deadline() -> float | None:
    """The deadline of the message (or invocation) the calling code runs for, if any."""
    return _current_deadline.get()
