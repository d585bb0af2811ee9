"""One mapping from a failed LLM call to an :class:`LLMErrorType`, shared by every client.

The native clients map the SDKs' exception classes first and fall back on the HTTP status through
:func:`error_type_for_status`; :func:`classify_llm_error` does the same for foreign clients from
what an exception carries (an ``LLMError``'s type, a ``TimeoutError``, a ``status_code``, then
its class names).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping

from ._errors import LLMError, LLMErrorType

__all__ = [
    "classify_llm_error",
    "error_type_for_status",
    "mentions_context_length",
    "parse_retry_after",
]

_CONTEXT_WORDING = (
    "context_length_exceeded",
    "context length",
    "context window",
    "maximum context",
    "prompt is too long",
    "too many tokens",
)

# Checked against each class of the exception's MRO, most derived first; the first hit wins, so
# openai's APITimeoutError (a subclass of APIConnectionError) is a timeout.
_CLASS_NAME_HINTS: tuple[tuple[str, LLMErrorType], ...] = (
    ("contextlength", LLMErrorType.CONTEXT_LENGTH_EXCEEDED),
    ("contextwindow", LLMErrorType.CONTEXT_LENGTH_EXCEEDED),
    ("timeout", LLMErrorType.TIMEOUT),
    ("ratelimit", LLMErrorType.RATE_LIMIT),
    ("authentication", LLMErrorType.AUTHENTICATION),
    ("permissiondenied", LLMErrorType.AUTHENTICATION),
    ("overloaded", LLMErrorType.SERVICE_UNAVAILABLE),
    ("serviceunavailable", LLMErrorType.SERVICE_UNAVAILABLE),
    ("internalserver", LLMErrorType.SERVICE_UNAVAILABLE),
    ("connection", LLMErrorType.CONNECTION),
    ("badrequest", LLMErrorType.BAD_REQUEST_OTHER),
)


def mentions_context_length(text: str) -> bool:
    """Whether an error text says the prompt did not fit the model's context window."""
    lowered = text.lower()
    return any(wording in lowered for wording in _CONTEXT_WORDING)


def error_type_for_status(status_code: int, text: str = "") -> LLMErrorType:
    """The error type for an HTTP status (and, for a 400, the error's text).

    429 is a rate limit; 401 and 403 are authentication; 5xx (Anthropic's 529 too) is the service
    being unavailable; a 400 whose text mentions the context length is
    ``CONTEXT_LENGTH_EXCEEDED``; any other 4xx is ``BAD_REQUEST_OTHER``.
    """
    if status_code == 429:
        return LLMErrorType.RATE_LIMIT
    if status_code in (401, 403):
        return LLMErrorType.AUTHENTICATION
    if 500 <= status_code <= 599:
        return LLMErrorType.SERVICE_UNAVAILABLE
    if status_code == 400 and mentions_context_length(text):
        return LLMErrorType.CONTEXT_LENGTH_EXCEEDED
    if 400 <= status_code <= 499:
        return LLMErrorType.BAD_REQUEST_OTHER
    return LLMErrorType.UNKNOWN


def classify_llm_error(exc: BaseException) -> LLMErrorType:
    """Classify an exception raised by an LLM client.

    For clients that do not raise :class:`~penguiflow.planner.LLMError`: an ``LLMError`` gives its
    own type; a ``TimeoutError`` is ``TIMEOUT``; an exception with an int ``status_code`` is
    classified by that status (429, 401/403, 5xx/529, 400 with context-length wording); then the
    names of its classes (``...Timeout...``, ``...RateLimit...``, ``...Connection...``);
    anything else is ``UNKNOWN``.
    """
    if isinstance(exc, LLMError):
        return exc.error_type
    if isinstance(exc, TimeoutError):
        return LLMErrorType.TIMEOUT
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and not isinstance(status, bool):
        by_status = error_type_for_status(status, _text_of(exc))
        if by_status is not LLMErrorType.UNKNOWN:
            return by_status
    for cls in type(exc).__mro__:
        name = cls.__name__.lower().replace("_", "")
        for hint, error_type in _CLASS_NAME_HINTS:
            if hint in name:
                if error_type is LLMErrorType.BAD_REQUEST_OTHER and mentions_context_length(
                    _text_of(exc)
                ):
                    return LLMErrorType.CONTEXT_LENGTH_EXCEEDED
                return error_type
    return LLMErrorType.UNKNOWN


def parse_retry_after(
    headers: Mapping[str, str] | None, *, now: Callable[[], float] = time.time
) -> float | None:
    """Seconds to wait from a response's ``retry-after-ms`` or ``retry-after`` header.

    ``retry-after`` may be seconds or an HTTP date. Returns None when neither header is there or
    readable, or the value is negative or not finite.
    """
    if headers is None:
        return None
    lowered = {key.lower(): value for key, value in headers.items()}
    for header, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        raw = lowered.get(header)
        if raw is None:
            continue
        try:
            seconds = float(raw.strip()) / divisor
        except ValueError:
            if header == "retry-after-ms":
                continue
            import email.utils  # only for HTTP dates: keeps `import penguiflow.planner` light

            try:
                when = email.utils.parsedate_to_datetime(raw)
            except (TypeError, ValueError):
                continue
            seconds = when.timestamp() - now()
            seconds = max(seconds, 0.0)
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
    return None


def _text_of(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not hide the classification
        return ""
