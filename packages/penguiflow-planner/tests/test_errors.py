"""The planner's exception tree, and what an LLMError carries."""

import pytest

from penguiflow.core import PenguiFlowError
from penguiflow.planner import (
    InterruptAnswerError,
    LLMError,
    LLMErrorType,
    MemoryBudgetExceeded,
    PlannerError,
    PlannerNotOpen,
    PlannerUsageError,
    ResumeTokenInvalid,
)


def test_planner_error_is_rooted_in_penguiflow_error() -> None:
    assert issubclass(PlannerError, PenguiFlowError)


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (PlannerUsageError, ValueError),
        (PlannerNotOpen, RuntimeError),
        (ResumeTokenInvalid, KeyError),
        (InterruptAnswerError, ValueError),
    ],
)
def test_each_category_is_also_the_builtin_callers_expect(
    error: type[PlannerError], builtin: type[Exception]
) -> None:
    assert issubclass(error, PlannerError)
    assert issubclass(error, builtin)


def test_llm_error_and_memory_budget_are_planner_errors() -> None:
    assert issubclass(LLMError, PlannerError)
    assert issubclass(MemoryBudgetExceeded, PlannerError)


def test_the_module_docstring_draws_every_error_of_the_tree() -> None:
    from penguiflow.planner._errors import __doc__ as doc

    doc = doc or ""
    for name in (
        "PlannerError",
        "PlannerUsageError",
        "PlannerNotOpen",
        "LLMError",
        "ResumeTokenInvalid",
        "InterruptAnswerError",
        "MemoryBudgetExceeded",
    ):
        assert f"── {name}" in doc or f"└── {name}" in doc, name


def test_llm_error_type_values_are_lowercase_as_in_the_reference() -> None:
    assert {t.value for t in LLMErrorType} == {
        "context_length_exceeded",
        "rate_limit",
        "service_unavailable",
        "timeout",
        "connection",
        "authentication",
        "bad_request_other",
        "unknown",
    }


def test_llm_error_carries_its_fields_and_reads_well() -> None:
    error = LLMError(
        "slow down",
        error_type=LLMErrorType.RATE_LIMIT,
        status_code=429,
        retry_after_s=2.5,
        provider="openai",
    )
    assert (error.error_type, error.status_code, error.retry_after_s, error.provider) == (
        LLMErrorType.RATE_LIMIT,
        429,
        2.5,
        "openai",
    )
    assert error.message == "slow down"
    assert str(error) == "openai LLM call failed (rate_limit, HTTP 429): slow down"
    assert "retry_after_s=2.5" in repr(error)


def test_llm_error_defaults_to_unknown_and_accepts_the_string_value() -> None:
    assert LLMError("boom").error_type is LLMErrorType.UNKNOWN
    assert LLMError("x", error_type="timeout").error_type is LLMErrorType.TIMEOUT  # type: ignore[arg-type]


def test_resume_token_invalid_reads_as_its_message_not_as_a_quoted_key() -> None:
    assert str(ResumeTokenInvalid("unknown or used resume token")) == (
        "unknown or used resume token"
    )
    with pytest.raises(KeyError):
        raise ResumeTokenInvalid("nope")
