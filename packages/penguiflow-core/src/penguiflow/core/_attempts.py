"""One node invocation: validation, timeout, retries with backoff, and the one final FlowError.

``Attempts`` belongs to one node in one flow (the runner holds one; ``call_node`` builds one per
invocation, see ``_invoke``). Whatever an attempt raises —
an ``Exception``, a ``CancelledError`` that nobody issued, a predicate or validator that itself
fails — ends as exactly one ``FlowError`` for that message; only a real cancellation of the
worker, or a ``BaseException`` that is not an ``Exception``, propagates.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

import anyio
import anyio.lowlevel
from pydantic import TypeAdapter, ValidationError

from ._context import Context
from ._errors import FlowError, FlowErrorCode, TraceCancelled, safe_repr, safe_str
from ._events import FlowEventType
from ._node import NodeFunc, NodePolicy
from ._runtime import Runtime
from ._station import Station
from ._trace import TraceState
from ._types import Message

__all__ = ["Attempts", "DeadlineReached", "is_failure"]

logger = logging.getLogger("penguiflow.core")


class DeadlineReached(Exception):
    """Internal: an attempt was interrupted at its message's deadline."""


def is_failure(exc: BaseException) -> bool:
    """Whether ``exc`` raised by node code is a failure of that message (not a cancellation).

    Every ``Exception`` is, and so is a ``CancelledError`` that no one issued (node code that
    awaited a future someone else cancelled): the task itself is not being cancelled then.
    """
    if isinstance(exc, Exception):
        return True
    if isinstance(exc, asyncio.CancelledError):
        task = asyncio.current_task()
        return task is not None and not task.cancelling()
    return False


class Attempts:
    """How one node runs one message (see the module docstring)."""

    __slots__ = (
        "context",
        "deadline",
        "func",
        "in_adapter",
        "out_adapter",
        "out_is_message",
        "policy",
        "rt",
        "station",
        "tag",
    )

    def __init__(self, rt: Runtime, station: Station, context: Context) -> None:
        self.rt: Runtime = rt
        self.station: Station = station
        self.context: Context = context
        self.policy: NodePolicy = station.node.policy
        self.func: NodeFunc = station.node.func
        """What an attempt calls: the node's function (journaled, in a flow with a journal)."""
        self.in_adapter: TypeAdapter[Any] | None = None
        self.out_adapter: TypeAdapter[Any] | None = None
        self.out_is_message: bool = False
        self.tag: dict[str, Any] | None = None
        """Fields every event of these attempts carries (an invocation's ``extra``)."""
        self.deadline: float | None = None
        """An invocation's deadline; a node's attempts use their message's ``deadline_s``."""

    # ------------------------------------------------------------ bookkeeping
    def started(self, key: str | None, state: TraceState | None, attempt: int) -> None:
        """An attempt starts (callers check ``rt.observed`` first)."""
        if state is not None:
            state.inflight += 1
        self.rt.event(FlowEventType.NODE_START, self.station, key, attempt=attempt, extra=self.tag)

    def ended(
        self,
        key: str | None,
        state: TraceState | None,
        attempt: int,
        started: float,
        failure: BaseException | None = None,
        timed_out: bool = False,
    ) -> float:
        """An attempt ended (callers check ``rt.observed`` first); returns its latency in ms."""
        if state is not None:
            state.inflight -= 1
        latency_ms = (time.perf_counter() - started) * 1000
        if failure is None:
            kind = FlowEventType.NODE_SUCCESS
            extra = self.tag
        else:
            kind = FlowEventType.NODE_TIMEOUT if timed_out else FlowEventType.NODE_ERROR
            extra = self._tagged({"exception": safe_repr(failure)})
        self.rt.event(kind, self.station, key, attempt=attempt, latency_ms=latency_ms, extra=extra)
        return latency_ms

    # ------------------------------------------------------------ the loop
    async def run(
        self,
        message: Any,
        key: str | None,
        state: TraceState | None,
        first: tuple[BaseException, float] | None = None,
    ) -> Any:
        """Run the node with validation, timeout and retries; raise one FlowError on failure.

        ``first`` is ``(exception, perf_counter at start)`` of a first attempt the runner already
        made inline (its events were reported there).
        """
        node = self.station.node
        policy = self.policy
        rt = self.rt
        if self.in_adapter is not None:
            try:
                message = self.in_adapter.validate_python(message)
            except Exception as exc:  # a validator may raise TypeError etc., not ValidationError
                raise self._error(
                    exc, key, FlowErrorCode.VALIDATION_ERROR, "input failed validation", 0
                ) from exc
        attempt = 0
        while True:
            timed_out = False
            if first is not None:
                failure, started = first
                first = None
                latency = (time.perf_counter() - started) * 1000
            else:
                observed = rt.observed
                if observed:
                    self.started(key, state, attempt)
                started = time.perf_counter()
                failure = result = None
                try:
                    limit = self._attempt_limit(message)
                    if limit is None:
                        result = await self.func(message, self.context)
                    else:
                        with anyio.move_on_after(limit[0]) as scope:
                            result = await self.func(message, self.context)
                        if scope.cancelled_caught:
                            if limit[1]:
                                raise DeadlineReached
                            timed_out = True
                            failure = TimeoutError(
                                f"node {node.name!r} timed out after {limit[0]:.3g}s"
                            )
                except DeadlineReached:
                    if observed and state is not None:
                        state.inflight -= 1
                    raise
                except BaseException as exc:
                    if not is_failure(exc):
                        raise
                    failure = exc
                if observed:
                    latency = self.ended(key, state, attempt, started, failure, timed_out)
                else:
                    latency = (time.perf_counter() - started) * 1000
                if failure is None:
                    if result is not None and self.out_adapter is not None:
                        result = self._validate_out(message, result, key, attempt)
                    return result
            if attempt < policy.max_retries and self._retryable(failure, key, attempt):
                attempt += 1
                delay = policy.backoff(attempt)
                if policy.jitter:
                    delay *= random.uniform(1 - policy.jitter, 1 + policy.jitter)
                if rt.observed:
                    rt.event(
                        FlowEventType.NODE_RETRY,
                        self.station,
                        key,
                        attempt=attempt,
                        extra=self._tagged({"sleep_s": delay}),
                    )
                await anyio.sleep(delay)
                if state is not None and state.cancelled:
                    # A cancellation during the backoff lands here.
                    await anyio.lowlevel.checkpoint()
                continue
            raise self._error(failure, key, _code_of(failure, timed_out), None, attempt, latency)

    def _tagged(self, extra: dict[str, Any]) -> dict[str, Any]:
        return extra if self.tag is None else {**self.tag, **extra}

    def _attempt_limit(self, message: Any) -> tuple[float, bool] | None:
        """``(seconds, is_deadline)`` bounding one attempt, or None when unbounded."""
        timeout = self.policy.timeout_s
        if self.policy.interrupt_on_deadline:
            deadline = self.deadline
            if deadline is None and isinstance(message, Message):
                deadline = message.deadline_s
            if deadline is not None:
                remaining = max(deadline - time.time(), 0.0)
                if timeout is None or remaining < timeout:
                    return (remaining, True)
        return None if timeout is None else (timeout, False)

    def _retryable(self, exc: BaseException, key: str | None, attempt: int) -> bool:
        if isinstance(exc, ValidationError | TraceCancelled | asyncio.CancelledError):
            return False
        retry_on = self.policy.retry_on
        if retry_on is None:
            return True
        if isinstance(retry_on, tuple):
            return isinstance(exc, retry_on)
        try:
            return bool(retry_on(exc))
        except Exception as broken:
            error = self._error(
                exc,
                key,
                _code_of(exc, False),
                f"NodePolicy.retry_on raised {safe_repr(broken)} deciding whether to retry",
                attempt,
            )
            error.metadata["retry_on_error"] = safe_repr(broken)
            raise error from exc

    def _validate_out(self, message: Any, result: Any, key: str | None, attempt: int) -> Any:
        assert self.out_adapter is not None
        try:
            return self.out_adapter.validate_python(result)
        except Exception as exc:
            text = "output failed validation"
            if self.out_is_message and not isinstance(result, Message):
                text = (
                    f"node is registered to return a Message but returned a bare "
                    f"{type(result).__name__} (return message.with_payload(...)); {text}"
                )
            raise self._error(exc, key, FlowErrorCode.VALIDATION_ERROR, text, attempt) from exc

    def unexpected(self, exc: Exception, key: str | None) -> FlowError:
        """The ``FlowError`` for an exception that escaped the attempt machinery itself."""
        return self._error(exc, key, FlowErrorCode.NODE_EXCEPTION, None, 0)

    def _error(
        self,
        exc: BaseException,
        key: str | None,
        code: FlowErrorCode,
        message: str | None,
        attempt: int,
        latency_ms: float | None = None,
    ) -> FlowError:
        metadata: dict[str, Any] = {"attempt": attempt}
        if latency_ms is not None:
            metadata["latency_ms"] = latency_ms
        if self.policy.timeout_s is not None:
            metadata["timeout_s"] = self.policy.timeout_s
        station = self.station
        if isinstance(exc, FlowError):  # e.g. a failed subflow: keep its code, name this node
            error = FlowError(
                trace_id=key,
                node_name=station.name,
                node_id=station.node_id,
                code=exc.code,
                message=exc.message,
                original_exc=exc,
                metadata={**exc.metadata, **metadata},
            )
            error.__cause__ = exc
            return error
        text = None if message is None else f"{message}: {safe_str(exc)}"
        return FlowError.from_exception(
            exc,
            trace_id=key,
            node_name=station.name,
            node_id=station.node_id,
            code=code,
            message=text,
            metadata=metadata,
        )


def _code_of(failure: BaseException, timed_out: bool) -> FlowErrorCode:
    if isinstance(failure, ValidationError):
        return FlowErrorCode.VALIDATION_ERROR
    if isinstance(failure, TraceCancelled):  # e.g. a subflow's trace was cancelled
        return FlowErrorCode.TRACE_CANCELLED
    if timed_out:  # only the runtime's own timeout; a TimeoutError raised by node code is not one
        return FlowErrorCode.NODE_TIMEOUT
    return FlowErrorCode.NODE_EXCEPTION
