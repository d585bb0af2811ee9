"""The retry decision, the backoff and the breaker, as pure rules."""

import time

import pytest

from penguiflow.tools import (
    CircuitBreakerPolicy,
    RetryPolicy,
    ToolArgumentsError,
    ToolAuthError,
    ToolCircuitOpenError,
    ToolClientError,
    ToolConnectionError,
    ToolError,
    ToolRateLimitError,
    ToolServerError,
    ToolTimeoutError,
)
from penguiflow.tools._resilience import Breaker, backoff_s, should_retry

POLICY = RetryPolicy()


@pytest.mark.parametrize(
    ("error", "idempotent", "expected"),
    [
        (ToolRateLimitError("", status_code=429, retryable=True), False, True),
        (ToolServerError("", status_code=503, retryable=True), False, True),
        (ToolServerError("", status_code=500, retryable=True), False, False),
        (ToolServerError("", status_code=500, retryable=True), True, True),
        (ToolServerError("", status_code=502, retryable=True), True, True),
        (ToolServerError("", status_code=501), True, False),  # not in retry_on_status
        (ToolTimeoutError("", retryable=True), False, False),
        (ToolTimeoutError("", retryable=True), True, True),
        (ToolConnectionError("", retryable=True, detail={"sent": False}), False, True),
        (ToolConnectionError("", retryable=True), False, False),  # lost mid-call
        (ToolConnectionError("", retryable=True), True, True),
        (ToolCircuitOpenError("", detail={"sent": False}), True, False),
        (ToolClientError("tool said no"), True, False),
        (ToolArgumentsError("bad"), True, False),
        (ToolAuthError("", status_code=401), True, False),
    ],
)
def test_should_retry(error: ToolError, idempotent: bool, expected: bool) -> None:
    assert should_retry(error, idempotent=idempotent, policy=POLICY) is expected


def test_retry_non_idempotent_opts_in_ambiguous_failures_only() -> None:
    policy = RetryPolicy(retry_non_idempotent=True)
    assert should_retry(ToolTimeoutError("", retryable=True), idempotent=False, policy=policy)
    assert not should_retry(ToolClientError(""), idempotent=False, policy=policy)


def test_backoff_doubles_with_jitter_and_retry_after_is_capped() -> None:
    policy = RetryPolicy(wait_exponential_min_s=0.1, wait_exponential_max_s=1.0)
    for attempt, base in ((1, 0.1), (2, 0.2), (3, 0.4), (6, 1.0)):
        wait = backoff_s(attempt, policy, None)
        assert base * 0.5 <= wait <= base
    assert backoff_s(1, policy, 0.7) == 0.7
    assert backoff_s(1, policy, 60) == 1.0
    ignore = RetryPolicy(respect_retry_after=False, wait_exponential_min_s=0.1)
    assert backoff_s(1, ignore, 60) <= 0.1


def test_breaker_counts_consecutive_counted_failures_only() -> None:
    breaker = Breaker(CircuitBreakerPolicy(failure_threshold=2, reset_timeout_s=60), "s")
    breaker.record(ToolServerError(""), trial=False)
    breaker.record(None, trial=False)  # a success resets the count
    breaker.record(ToolServerError(""), trial=False)
    breaker.record(ToolClientError(""), trial=False)  # client errors do not count
    assert breaker.state == "closed"
    breaker.record(ToolTimeoutError(""), trial=False)
    assert breaker.state == "open"
    with pytest.raises(ToolCircuitOpenError) as rejected:
        breaker.before_call("s.t")
    assert rejected.value.retry_after_s is not None and 59 < rejected.value.retry_after_s <= 60


def test_half_open_admits_one_trial_and_its_failure_reopens() -> None:
    breaker = Breaker(CircuitBreakerPolicy(failure_threshold=1, reset_timeout_s=0.01), "s")
    breaker.record(ToolConnectionError(""), trial=False)
    time.sleep(0.02)
    assert breaker.state == "half_open"
    assert breaker.before_call("s.t") is True
    with pytest.raises(ToolCircuitOpenError):
        breaker.before_call("s.t")  # one trial at a time
    breaker.record(ToolServerError(""), trial=True)
    assert breaker.state == "open"
    time.sleep(0.02)
    assert breaker.before_call("s.t") is True
    breaker.release_trial()  # a cancelled trial: another may run
    assert breaker.before_call("s.t") is True
    breaker.record(None, trial=True)
    assert breaker.state == "closed"


def test_a_disabled_breaker_admits_everything() -> None:
    breaker = Breaker(None, "s")
    for _ in range(10):
        breaker.record(ToolServerError(""), trial=False)
    assert breaker.before_call("s.t") is False and breaker.state == "closed"
