"""LLMRetryPolicy: which failures are retried, and how long each wait is."""

import dataclasses
import random

import pytest

from penguiflow.planner import LLMError, LLMErrorType, LLMRetryPolicy


def error(kind: LLMErrorType, retry_after_s: float | None = None) -> LLMError:
    return LLMError("x", error_type=kind, retry_after_s=retry_after_s)


def test_defaults_match_the_contract() -> None:
    policy = LLMRetryPolicy()
    assert (policy.max_retries, policy.backoff_base, policy.backoff_mult) == (3, 0.5, 2.0)
    assert (policy.max_backoff, policy.jitter, policy.honour_retry_after) == (20.0, 0.1, True)
    assert policy.retry_on == {
        LLMErrorType.RATE_LIMIT,
        LLMErrorType.SERVICE_UNAVAILABLE,
        LLMErrorType.TIMEOUT,
        LLMErrorType.CONNECTION,
    }


@pytest.mark.parametrize(
    ("kind", "retryable"),
    [
        (LLMErrorType.RATE_LIMIT, True),
        (LLMErrorType.SERVICE_UNAVAILABLE, True),
        (LLMErrorType.TIMEOUT, True),
        (LLMErrorType.CONNECTION, True),
        (LLMErrorType.AUTHENTICATION, False),
        (LLMErrorType.BAD_REQUEST_OTHER, False),
        (LLMErrorType.CONTEXT_LENGTH_EXCEEDED, False),
        (LLMErrorType.UNKNOWN, False),
    ],
)
def test_retryable_types_by_default(kind: LLMErrorType, retryable: bool) -> None:
    policy = LLMRetryPolicy()
    assert policy.is_retryable(kind) is retryable
    assert policy.is_retryable(error(kind)) is retryable


def test_foreign_exceptions_are_classified() -> None:
    assert LLMRetryPolicy().is_retryable(TimeoutError())
    assert not LLMRetryPolicy().is_retryable(KeyError("x"))


def test_backoff_grows_geometrically_up_to_the_ceiling() -> None:
    policy = LLMRetryPolicy(backoff_base=0.5, backoff_mult=2.0, max_backoff=3.0)
    assert [policy.backoff_s(n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert policy.backoff_s(10_000) == 3.0  # no overflow
    with pytest.raises(ValueError, match="start at 1"):
        policy.backoff_s(0)


def test_jitter_stays_within_its_spread_and_is_reproducible() -> None:
    policy = LLMRetryPolicy(backoff_base=1.0, jitter=0.1)
    delays = [policy.delay_s(1, rng=random.Random(seed)) for seed in range(50)]
    assert all(0.9 <= d <= 1.1 for d in delays)
    assert len(set(delays)) > 1
    assert policy.delay_s(1, rng=random.Random(7)) == policy.delay_s(1, rng=random.Random(7))


def test_retry_after_is_honoured_when_longer_than_the_backoff() -> None:
    policy = LLMRetryPolicy(backoff_base=0.5, jitter=0.0)
    assert policy.delay_s(1, retry_after_s=4.0) == 4.0
    assert policy.delay_s(1, retry_after_s=0.1) == 0.5
    assert policy.next_delay(error(LLMErrorType.RATE_LIMIT, retry_after_s=30.0), 1) == 30.0


def test_retry_after_is_ignored_when_not_honoured() -> None:
    policy = LLMRetryPolicy(backoff_base=0.5, jitter=0.0, honour_retry_after=False)
    assert policy.next_delay(error(LLMErrorType.RATE_LIMIT, retry_after_s=30.0), 1) == 0.5


def test_next_delay_stops_after_max_retries() -> None:
    policy = LLMRetryPolicy(max_retries=2, backoff_base=0.5, jitter=0.0)
    failure = error(LLMErrorType.SERVICE_UNAVAILABLE)
    assert [policy.next_delay(failure, n) for n in (1, 2, 3)] == [0.5, 1.0, None]
    assert LLMRetryPolicy(max_retries=0).next_delay(failure, 1) is None


def test_next_delay_never_retries_a_type_outside_retry_on() -> None:
    policy = LLMRetryPolicy(retry_on={LLMErrorType.TIMEOUT})
    assert policy.next_delay(error(LLMErrorType.RATE_LIMIT), 1) is None
    assert policy.next_delay(error(LLMErrorType.TIMEOUT), 1) is not None
    assert isinstance(policy.retry_on, frozenset)


def test_next_delay_never_waits_past_the_deadline() -> None:
    policy = LLMRetryPolicy(backoff_base=1.0, jitter=0.0)
    failure = error(LLMErrorType.RATE_LIMIT, retry_after_s=10.0)
    assert policy.next_delay(failure, 1, remaining_s=5.0) is None
    assert policy.next_delay(failure, 1, remaining_s=11.0) == 10.0
    assert policy.next_delay(error(LLMErrorType.TIMEOUT), 1, remaining_s=1.0) is None


def test_zero_backoff_means_retry_at_once() -> None:
    policy = LLMRetryPolicy(backoff_base=0.0)
    assert policy.next_delay(error(LLMErrorType.TIMEOUT), 1) == 0.0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_retries", -1),
        ("backoff_base", -0.1),
        ("max_backoff", -1.0),
        ("backoff_mult", 0.5),
        ("jitter", 1.5),
    ],
)
def test_bad_values_are_rejected_naming_the_field(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        LLMRetryPolicy(**{field: value})  # type: ignore[arg-type]


def test_unknown_retry_on_values_are_rejected() -> None:
    with pytest.raises(ValueError):
        LLMRetryPolicy(retry_on={"not_a_type"})  # type: ignore[arg-type]


def test_the_policy_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        LLMRetryPolicy().max_retries = 5  # type: ignore[misc]
