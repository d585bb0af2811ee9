"""The retry policy for LLM calls: which failures to retry and how long to wait before each."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from ._classify import classify_llm_error
from ._errors import LLMError, LLMErrorType

__all__ = ["LLMRetryPolicy"]

_DEFAULT_RETRY_ON = frozenset(
    {
        LLMErrorType.RATE_LIMIT,
        LLMErrorType.SERVICE_UNAVAILABLE,
        LLMErrorType.TIMEOUT,
        LLMErrorType.CONNECTION,
    }
)


@dataclass(frozen=True, slots=True)
class LLMRetryPolicy:
    """How the planner retries a failed LLM call.

    The one retry layer: native clients turn their SDK's retries off. A pure policy: it
    decides, the planner applies it to every client and emits ``llm_retry`` before each wait.
    :meth:`next_delay` is the whole decision for one failure.
    """

    max_retries: int = 3
    """Retries after the first failed attempt (0 = never retry)."""
    backoff_base: float = 0.5
    """Delay before the first retry, in seconds."""
    backoff_mult: float = 2.0
    """Each later retry waits this many times longer (at least 1)."""
    max_backoff: float = 20.0
    """Ceiling on one computed delay, in seconds (a provider's ``retry_after`` may exceed it)."""
    jitter: float = 0.1
    """Spread of each computed delay: multiplied by a random factor in ``[1 - jitter,
    1 + jitter]``."""
    retry_on: AbstractSet[LLMErrorType] = field(default_factory=lambda: _DEFAULT_RETRY_ON)
    """The error types worth retrying (kept as a ``frozenset``)."""
    honour_retry_after: bool = True
    """Wait at least as long as the provider's ``retry_after_s`` asked."""

    def __post_init__(self) -> None:
        if isinstance(self.max_retries, bool) or self.max_retries < 0:
            raise ValueError(f"LLMRetryPolicy.max_retries must be >= 0, got {self.max_retries!r}")
        for name in ("backoff_base", "max_backoff"):
            value: float = getattr(self, name)
            if math.isnan(value) or value < 0:
                raise ValueError(f"LLMRetryPolicy.{name} must be >= 0, got {value!r}")
        if not self.backoff_mult >= 1:
            raise ValueError(f"LLMRetryPolicy.backoff_mult must be >= 1, got {self.backoff_mult}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"LLMRetryPolicy.jitter must be between 0 and 1, got {self.jitter}")
        retry_on: Iterable[object] = self.retry_on
        object.__setattr__(self, "retry_on", frozenset(LLMErrorType(t) for t in retry_on))

    def is_retryable(self, error: BaseException | LLMErrorType) -> bool:
        """Whether a failure of this kind is retried at all (attempts left aside)."""
        error_type = error if isinstance(error, LLMErrorType) else classify_llm_error(error)
        return error_type in self.retry_on

    def backoff_s(self, retry: int) -> float:
        """Delay before retry number ``retry`` (1-based), before jitter and ``retry_after``."""
        if retry < 1:
            raise ValueError(f"retry numbers start at 1, got {retry}")
        if self.backoff_base == 0:
            return 0.0
        try:
            delay = self.backoff_base * float(self.backoff_mult) ** (retry - 1)
        except OverflowError:
            delay = math.inf
        return float(min(delay, self.max_backoff))

    def delay_s(
        self,
        retry: int,
        *,
        retry_after_s: float | None = None,
        rng: random.Random | None = None,
    ) -> float:
        """How long to wait before retry number ``retry`` (1-based).

        The backoff with jitter applied; with ``honour_retry_after``, at least ``retry_after_s``.

        Args:
            retry: Which retry this is (1 for the first).
            retry_after_s: The provider's hint, when it gave one.
            rng: Source of the jitter (default: the ``random`` module), for deterministic tests.
        """
        delay = self.backoff_s(retry)
        if self.jitter and delay:
            delay *= (rng or random).uniform(1 - self.jitter, 1 + self.jitter)
        if self.honour_retry_after and retry_after_s is not None and retry_after_s > delay:
            delay = float(retry_after_s)
        return delay

    def next_delay(
        self,
        error: BaseException,
        retry: int,
        *,
        remaining_s: float | None = None,
        rng: random.Random | None = None,
    ) -> float | None:
        """The delay before retry number ``retry`` after ``error``, or None not to retry.

        None when the error type is not in ``retry_on``, ``retry`` exceeds ``max_retries``, or the
        wait would end past the run's deadline (``remaining_s`` seconds away; None = no deadline).

        Args:
            error: The failure (an ``LLMError`` carries its type and ``retry_after_s``; other
                exceptions are classified with ``classify_llm_error``).
            retry: Which retry this would be (1 for the first).
            remaining_s: Seconds left before the run's deadline, when it has one.
            rng: Source of the jitter, for deterministic tests.
        """
        if retry > self.max_retries or not self.is_retryable(error):
            return None
        retry_after = error.retry_after_s if isinstance(error, LLMError) else None
        delay = self.delay_s(retry, retry_after_s=retry_after, rng=rng)
        if remaining_s is not None and delay >= remaining_s:
            return None
        return delay
