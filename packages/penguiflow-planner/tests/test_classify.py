"""classify_llm_error for foreign clients, and reading retry-after headers."""

import email.utils

import pytest

from penguiflow.planner import LLMError, LLMErrorType, classify_llm_error
from penguiflow.planner._classify import error_type_for_status, parse_retry_after

CONTEXT = LLMErrorType.CONTEXT_LENGTH_EXCEEDED


class StatusError(Exception):
    def __init__(self, status_code: int, message: str = "") -> None:
        super().__init__(message)
        self.status_code = status_code


def test_an_llm_error_keeps_its_own_type() -> None:
    error = LLMError("x", error_type=LLMErrorType.AUTHENTICATION, status_code=500)
    assert classify_llm_error(error) is LLMErrorType.AUTHENTICATION


@pytest.mark.parametrize("exc", [TimeoutError(), TimeoutError()])
def test_timeouts_are_timeouts(exc: BaseException) -> None:
    assert classify_llm_error(exc) is LLMErrorType.TIMEOUT


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        (429, "", LLMErrorType.RATE_LIMIT),
        (401, "", LLMErrorType.AUTHENTICATION),
        (403, "", LLMErrorType.AUTHENTICATION),
        (500, "", LLMErrorType.SERVICE_UNAVAILABLE),
        (503, "", LLMErrorType.SERVICE_UNAVAILABLE),
        (529, "", LLMErrorType.SERVICE_UNAVAILABLE),
        (
            400,
            "This model's maximum context length is 8192 tokens",
            LLMErrorType.CONTEXT_LENGTH_EXCEEDED,
        ),
        (400, "prompt is too long: 210000 tokens > 200000", LLMErrorType.CONTEXT_LENGTH_EXCEEDED),
        (400, "invalid temperature", LLMErrorType.BAD_REQUEST_OTHER),
        (404, "", LLMErrorType.BAD_REQUEST_OTHER),
    ],
)
def test_an_int_status_code_decides(status: int, message: str, expected: LLMErrorType) -> None:
    assert classify_llm_error(StatusError(status, message)) is expected


def test_a_bool_or_non_int_status_code_is_ignored() -> None:
    error = StatusError(429)
    error.status_code = True
    assert classify_llm_error(error) is LLMErrorType.UNKNOWN


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("APITimeoutError", LLMErrorType.TIMEOUT),
        ("RateLimitError", LLMErrorType.RATE_LIMIT),
        ("APIConnectionError", LLMErrorType.CONNECTION),
        ("AuthenticationError", LLMErrorType.AUTHENTICATION),
        ("PermissionDeniedError", LLMErrorType.AUTHENTICATION),
        ("OverloadedError", LLMErrorType.SERVICE_UNAVAILABLE),
        ("ServiceUnavailableError", LLMErrorType.SERVICE_UNAVAILABLE),
        ("InternalServerError", LLMErrorType.SERVICE_UNAVAILABLE),
        ("ContextLengthExceededError", LLMErrorType.CONTEXT_LENGTH_EXCEEDED),
        ("BadRequestError", LLMErrorType.BAD_REQUEST_OTHER),
        ("SomethingElse", LLMErrorType.UNKNOWN),
    ],
)
def test_class_names_decide_when_nothing_else_does(name: str, expected: LLMErrorType) -> None:
    error_class = type(name, (Exception,), {})
    assert classify_llm_error(error_class("x")) is expected


def test_the_most_derived_class_name_wins() -> None:
    connection = type("APIConnectionError", (Exception,), {})
    timeout = type("APITimeoutError", (connection,), {})  # as in the openai SDK
    assert classify_llm_error(timeout()) is LLMErrorType.TIMEOUT


def test_a_bad_request_by_name_with_context_wording_is_context_length() -> None:
    error_class = type("BadRequestError", (Exception,), {})
    error = error_class("context_length_exceeded: too many tokens")
    assert classify_llm_error(error) is LLMErrorType.CONTEXT_LENGTH_EXCEEDED


def test_builtin_connection_errors_are_connection_errors() -> None:
    assert classify_llm_error(ConnectionRefusedError()) is LLMErrorType.CONNECTION


def test_a_broken_str_does_not_break_classification() -> None:
    class Broken(Exception):
        status_code = 400

        def __str__(self) -> str:
            raise RuntimeError("no")

    assert classify_llm_error(Broken()) is LLMErrorType.BAD_REQUEST_OTHER


def test_status_outside_4xx_and_5xx_is_unknown() -> None:
    assert error_type_for_status(302) is LLMErrorType.UNKNOWN


def test_retry_after_in_seconds_milliseconds_and_http_dates() -> None:
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"Retry-After": "1.5"}) == 1.5
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    when = email.utils.formatdate(1_000_030.0, usegmt=True)
    assert parse_retry_after({"retry-after": when}, now=lambda: 1_000_000.0) == 30.0
    past = email.utils.formatdate(999_000.0, usegmt=True)
    assert parse_retry_after({"retry-after": past}, now=lambda: 1_000_000.0) == 0.0


@pytest.mark.parametrize(
    "headers", [None, {}, {"retry-after": "soon"}, {"retry-after": "-1"}, {"retry-after": "inf"}]
)
def test_unreadable_retry_after_is_none(headers: dict[str, str] | None) -> None:
    assert parse_retry_after(headers) is None
