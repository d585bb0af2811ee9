"""The retry decision, the backoff and the circuit breaker of one source."""

from __future__ import annotations

import random
import time

from ._config import CircuitBreakerPolicy, RetryPolicy
from ._errors import (
    ErrorCategory,
    ToolCircuitOpenError,
    ToolConnectionError,
    ToolError,
    ToolRateLimitError,
    ToolServerError,
    ToolTimeoutError,
)
from ._types import BreakerState

__all__ = ["Breaker", "backoff_s", "should_retry"]

_NOT_PROCESSED = (429, 503)
_COUNTED = (
    ErrorCategory.CONNECTION,
    ErrorCategory.TIMEOUT,
    ErrorCategory.SERVER,
    ErrorCategory.RATE_LIMIT,
)


def should_retry(error: ToolError, *, idempotent: bool, policy: RetryPolicy) -> bool:
    """Whether another attempt may follow ``error`` (never re-running an unsafe write)."""
    ambiguous_ok = idempotent or policy.retry_non_idempotent
    status = error.status_code
    if status is not None:
        if status not in policy.retry_on_status:
            return False
        return status in _NOT_PROCESSED or ambiguous_ok
    if isinstance(error, ToolCircuitOpenError):
        return False
    if isinstance(error, ToolConnectionError):
        # Nothing left the client (spawn/connect failed): safe for every tool.
        return (not error.detail.get("sent", True)) or ambiguous_ok
    if isinstance(error, ToolTimeoutError | ToolServerError | ToolRateLimitError):
        return error.retryable and ambiguous_ok
    return False


def backoff_s(attempt: int, policy: RetryPolicy, retry_after_s: float | None) -> float:
    """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 1)."""
    if retry_after_s is not None and policy.respect_retry_after:
        return min(max(retry_after_s, 0.0), policy.wait_exponential_max_s)
    base = min(policy.wait_exponential_min_s * 2 ** (attempt - 1), policy.wait_exponential_max_s)
    return base * random.uniform(0.5, 1.0)


class Breaker:
    """Consecutive counted failures open it; after the reset timeout one trial call runs."""

    def __init__(self, policy: CircuitBreakerPolicy | None, source: str) -> None:
        self._policy = policy
        self._source = source
        self._failures = 0
        self._opened_at: float | None = None
        self._trial = False

    @property
    def state(self) -> BreakerState:
        """``closed``, ``open`` or ``half_open``."""
        if self._opened_at is None:
            return "closed"
        assert self._policy is not None
        if self._trial or time.monotonic() - self._opened_at >= self._policy.reset_timeout_s:
            return "half_open"
        return "open"

    def before_call(self, tool: str) -> bool:
        """Admit a call or raise ``ToolCircuitOpenError``; True when it is the half-open trial."""
        if self._policy is None or self._opened_at is None:
            return False
        left = self._policy.reset_timeout_s - (time.monotonic() - self._opened_at)
        if left > 0 or self._trial:
            raise ToolCircuitOpenError(
                f"circuit open for source {self._source!r} after {self._failures} consecutive "
                f"failures; retry in {max(left, 0.0):.1f}s",
                source=self._source,
                tool=tool,
                retry_after_s=max(left, 0.0),
                detail={"sent": False},
            )
        self._trial = True
        return True

    def release_trial(self) -> None:
        """A half-open trial ended without an outcome (cancelled): admit another trial."""
        self._trial = False

    def record(self, error: ToolError | None, *, trial: bool) -> None:
        """Count a call's outcome (None = success); client and auth errors do not count."""
        if self._policy is None:
            return
        if trial:
            self._trial = False
        if error is None:
            self._failures = 0
            self._opened_at = None
            return
        if error.category not in _COUNTED:
            if trial:
                self._opened_at = None
                self._failures = 0
            return
        self._failures += 1
        if trial or self._failures >= self._policy.failure_threshold:
            self._opened_at = time.monotonic()
