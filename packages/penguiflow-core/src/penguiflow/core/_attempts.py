"""One node invocation: validation, timeout, retries with backoff, and the one final FlowError.

``NodeRunner`` inherits this; it is kept apart so that the rules for an attempt read on their own.
"""

from __future__ import annotations

import logging
import random
import time
from typing import TYPE_CHECKING, Any, cast

import anyio
import anyio.lowlevel
from pydantic import TypeAdapter, ValidationError

from ._context import Context
from ._errors import FlowError, FlowErrorCode, TraceCancelled
from ._events import FlowEventType
from ._node import Node, NodePolicy
from ._trace import TraceState, _current_trace  # pyright: ignore[reportPrivateUsage]
from ._types import Message

if TYPE_CHECKING:
    from ._flow import PenguiFlow
    from ._runner import NodeRunner

__all__ = ["Attempts", "DeadlineReached"]

logger = logging.getLogger("penguiflow.core")


class DeadlineReached(Exception):
    """Internal: an attempt was interrupted at its message's deadline."""


class Attempts:
    """How a node runs one message: the attempt loop of ``NodeRunner``."""

    __slots__ = ()

    flow: PenguiFlow
    node: Node
    name: str
    policy: NodePolicy
    context: Context
    in_adapter: TypeAdapter[Any] | None
    out_adapter: TypeAdapter[Any] | None
    out_is_message: bool
    _warned_rewrap: bool

    def _report(
        self,
        event_type: FlowEventType,
        trace_id: str | None,
        *,
        attempt: int = 0,
        latency_ms: float | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Report an event about this node (callers check ``flow.observed`` first)."""
        runner = cast("NodeRunner", self)
        self.flow.event(
            event_type, runner, trace_id, attempt=attempt, latency_ms=latency_ms, extra=extra
        )

    def _attempt_started(self, key: str | None, state: TraceState | None) -> None:
        if state is not None:
            state.inflight += 1
        self._report(FlowEventType.NODE_START, key)

    def _attempt_succeeded(self, key: str | None, state: TraceState | None, started: float) -> None:
        if state is not None:
            state.inflight -= 1
        latency_ms = (time.perf_counter() - started) * 1000
        self._report(FlowEventType.NODE_SUCCESS, key, latency_ms=latency_ms)

    async def _invoke(
        self,
        message: Any,
        state: TraceState | None,
        first_failure: tuple[Exception, float] | None,
    ) -> Any:
        """Run the node with validation, timeout and retries; raise one FlowError on failure.

        ``first_failure`` is ``(exception, perf_counter at start)`` of an attempt the fast path
        already made.
        """
        node = self.node
        policy = self.policy
        flow = self.flow
        trace_id = message.trace_id if isinstance(message, Message) else _current_trace.get()
        if self.in_adapter is not None:
            try:
                message = self.in_adapter.validate_python(message)
            except ValidationError as exc:
                raise self._error(
                    exc, trace_id, FlowErrorCode.VALIDATION_ERROR, "input failed validation", 0
                ) from exc
        attempt = 0
        while True:
            result: Any = None
            if first_failure is not None:
                failure, started = first_failure
                first_failure = None
            else:
                failure = None
                if flow.observed:
                    self._report(FlowEventType.NODE_START, trace_id, attempt=attempt)
                started = time.perf_counter()
                if state is not None:
                    state.inflight += 1
                try:
                    limit = self._attempt_limit(message)
                    if limit is None:
                        result = await node.func(message, self.context)
                    else:
                        with anyio.move_on_after(limit[0]) as scope:
                            result = await node.func(message, self.context)
                        if scope.cancelled_caught:
                            if limit[1]:
                                raise DeadlineReached
                            failure = TimeoutError(
                                f"node {node.name!r} timed out after {limit[0]:.3g}s"
                            )
                except DeadlineReached:
                    raise
                except Exception as exc:
                    failure = exc
                finally:
                    if state is not None:
                        state.inflight -= 1
            if failure is None:
                if flow.observed:
                    self._report(
                        FlowEventType.NODE_SUCCESS,
                        trace_id,
                        attempt=attempt,
                        latency_ms=(time.perf_counter() - started) * 1000,
                    )
                if result is not None and self.out_adapter is not None:
                    result = self._validate_out(message, result, trace_id, attempt)
                return result
            latency = (time.perf_counter() - started) * 1000
            timed_out = isinstance(failure, TimeoutError)
            if flow.observed:
                self._report(
                    FlowEventType.NODE_TIMEOUT if timed_out else FlowEventType.NODE_ERROR,
                    trace_id,
                    attempt=attempt,
                    latency_ms=latency,
                    extra={"exception": repr(failure)},
                )
            if attempt < policy.max_retries and self._retryable(failure):
                attempt += 1
                delay = policy.backoff(attempt)
                if policy.jitter:
                    delay *= random.uniform(1 - policy.jitter, 1 + policy.jitter)
                if flow.observed:
                    self._report(
                        FlowEventType.NODE_RETRY,
                        trace_id,
                        attempt=attempt,
                        extra={"sleep_s": delay},
                    )
                await anyio.sleep(delay)
                if state is not None and state.cancelled:
                    await (
                        anyio.lowlevel.checkpoint()
                    )  # a cancellation during the backoff lands here
                continue
            if isinstance(failure, ValidationError):
                code = FlowErrorCode.VALIDATION_ERROR
            elif isinstance(failure, TraceCancelled):  # e.g. a subflow's trace was cancelled
                code = FlowErrorCode.TRACE_CANCELLED
            elif timed_out:
                code = FlowErrorCode.NODE_TIMEOUT
            else:
                code = FlowErrorCode.NODE_EXCEPTION
            raise self._error(failure, trace_id, code, None, attempt, latency) from failure

    def _attempt_limit(self, message: Any) -> tuple[float, bool] | None:
        """``(seconds, is_deadline)`` bounding one attempt, or None when unbounded."""
        timeout = self.policy.timeout_s
        if (
            self.policy.interrupt_on_deadline
            and isinstance(message, Message)
            and message.deadline_s is not None
        ):
            remaining = max(message.deadline_s - time.time(), 0.0)
            if timeout is None or remaining < timeout:
                return (remaining, True)
        return None if timeout is None else (timeout, False)

    def _retryable(self, exc: Exception) -> bool:
        if isinstance(exc, ValidationError | TraceCancelled):
            return False
        retry_on = self.policy.retry_on
        if retry_on is None:
            return True
        if isinstance(retry_on, tuple):
            return isinstance(exc, retry_on)
        return bool(retry_on(exc))

    def _validate_out(self, message: Any, result: Any, trace_id: str | None, attempt: int) -> Any:
        assert self.out_adapter is not None
        if self.out_is_message and isinstance(message, Message) and not isinstance(result, Message):
            if not self._warned_rewrap:
                self._warned_rewrap = True
                logger.warning(
                    "node %r is registered to return a Message but returned a bare %s; "
                    "re-wrapping it in the input's envelope (return message.with_payload(...) "
                    "to silence this)",
                    self.name,
                    type(result).__name__,
                )
            result = message.with_payload(result)
        try:
            return self.out_adapter.validate_python(result)
        except ValidationError as exc:
            raise self._error(
                exc, trace_id, FlowErrorCode.VALIDATION_ERROR, "output failed validation", attempt
            ) from exc

    def _error(
        self,
        exc: BaseException,
        trace_id: str | None,
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
        text = f"{message}: {exc}" if message else None
        if isinstance(exc, FlowError):  # e.g. a failed subflow: keep its code, name this node
            error = FlowError(
                trace_id=trace_id,
                node_name=self.name,
                node_id=self.node.node_id,
                code=exc.code,
                message=exc.message,
                original_exc=exc,
                metadata={**exc.metadata, **metadata},
            )
            error.__cause__ = exc
            return error
        return FlowError.from_exception(
            exc,
            trace_id=trace_id,
            node_name=self.name,
            node_id=self.node.node_id,
            code=code,
            message=text,
            metadata=metadata,
        )
