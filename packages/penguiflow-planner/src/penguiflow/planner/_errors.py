"""Every exception penguiflow.planner raises, in one place.

The tree::

    PenguiFlowError                     root of everything penguiflow raises (penguiflow.core)
    └── PlannerError                    root of everything the planner raises
        ├── PlannerUsageError           a developer mistake: bad arguments at construction or at
        │   (ValueError)                call start; the message says what to write instead
        ├── PlannerNotOpen              background work needs ``async with planner:`` first
        │   (RuntimeError)
        ├── LLMError                    an LLM call failed; ``error_type`` says how, ``__cause__``
        │                               is the SDK's exception
        ├── ResumeTokenInvalid          unknown, used, expired or other-scope resume token
        │   (KeyError)
        ├── InterruptAnswerError        an answer that does not fit the pending interrupts; the
        │   (ValueError)                pause record is put back, the token stays valid
        └── MemoryBudgetExceeded        short-term memory is over budget with
                                        ``overflow_policy="error"``

:class:`LLMErrorType` is the stable code of an :class:`LLMError`; ``classify_llm_error`` gives the
same code for exceptions of clients that do not raise ``LLMError`` themselves.

Besides the tree, an ``llm_client`` without a ``complete`` method is a ``TypeError``, and an
``AssertionError`` raised by a client (the testkit's doubles) propagates unchanged. Outer
cancellation is never turned into one of these errors: it propagates as is.
"""

from __future__ import annotations

from enum import StrEnum

from penguiflow.core import PenguiFlowError

__all__ = [
    "InterruptAnswerError",
    "LLMError",
    "LLMErrorType",
    "MemoryBudgetExceeded",
    "PlannerError",
    "PlannerNotOpen",
    "PlannerUsageError",
    "ResumeTokenInvalid",
]


class PlannerError(PenguiFlowError):
    """Root of every exception raised by penguiflow.planner."""


class PlannerUsageError(PlannerError, ValueError):
    """A developer mistake caught at construction or at call start.

    The message names the offending argument and says what to write instead.
    """


class PlannerNotOpen(PlannerError, RuntimeError):
    """Work that needs the planner's task group ran on a planner that is not open.

    Open it with ``async with planner:`` (or call ``aclose()`` when done with it).
    """


class ResumeTokenInvalid(PlannerError, KeyError):
    """The resume token is unknown, already used, expired, or belongs to another scope.

    A ``KeyError``, as in the original planner. The message never says which of these it is, so
    no tenant can probe another tenant's tokens.
    """

    def __str__(self) -> str:
        # KeyError.__str__ would show the message quoted, as if it were a key.
        return str(self.args[0]) if self.args else ""


class InterruptAnswerError(PlannerError, ValueError):
    """``resume`` got answers that do not fit the pending interrupts.

    Raised for an ``answer`` with several interrupts pending, unknown interrupt ids, both
    ``answer`` and ``answers``, or a value that is not JSON-serialisable. The pause record is put
    back, so the same token can be used again with a corrected answer.
    """


class MemoryBudgetExceeded(PlannerError):
    """Short-term memory exceeded its budget and its ``overflow_policy`` is ``"error"``."""


class LLMErrorType(StrEnum):
    """Stable code for why an LLM call failed (lowercase values, as in the original planner)."""

    CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"
    """The prompt did not fit the model's context window; the planner compacts once and retries."""
    RATE_LIMIT = "rate_limit"
    """The provider rate-limited the call (HTTP 429); ``retry_after_s`` carries its hint."""
    SERVICE_UNAVAILABLE = "service_unavailable"
    """The provider failed or is overloaded (HTTP 5xx, Anthropic's 529)."""
    TIMEOUT = "timeout"
    """The call took longer than the client's timeout."""
    CONNECTION = "connection"
    """The provider could not be reached (refused, reset, DNS)."""
    AUTHENTICATION = "authentication"
    """The credentials were missing, wrong or lack permission (HTTP 401/403)."""
    BAD_REQUEST_OTHER = "bad_request_other"
    """The provider rejected the request for another reason (other 4xx)."""
    UNKNOWN = "unknown"
    """Anything else."""


class LLMError(PlannerError):
    """An LLM call failed.

    Native clients raise it ``from`` the SDK's exception (its ``__cause__``).

    Attributes:
        error_type: Why the call failed.
        status_code: The HTTP status of the provider's answer, when there was one.
        retry_after_s: How long the provider asked to wait before retrying, when it said.
        provider: Which provider failed (``"openai"``, ``"anthropic"``), when known.
        message: What went wrong, in words.
    """

    def __init__(
        self,
        message: str,
        *,
        error_type: LLMErrorType = LLMErrorType.UNKNOWN,
        status_code: int | None = None,
        retry_after_s: float | None = None,
        provider: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message: str = message
        self.error_type: LLMErrorType = LLMErrorType(error_type)
        self.status_code: int | None = status_code
        self.retry_after_s: float | None = retry_after_s
        self.provider: str | None = provider

    def __str__(self) -> str:
        where = f"{self.provider} " if self.provider else ""
        status = f", HTTP {self.status_code}" if self.status_code is not None else ""
        return f"{where}LLM call failed ({self.error_type.value}{status}): {self.message}"

    def __repr__(self) -> str:
        return (
            f"LLMError({self.message!r}, error_type={self.error_type!s}, "
            f"status_code={self.status_code!r}, retry_after_s={self.retry_after_s!r}, "
            f"provider={self.provider!r})"
        )
