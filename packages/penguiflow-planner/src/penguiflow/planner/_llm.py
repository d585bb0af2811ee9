"""The LLM boundary: the messages, the client protocol, what a call returns, usage and price."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypedDict, cast, runtime_checkable

__all__ = [
    "JSONLLMClient",
    "LLMMessage",
    "LLMResult",
    "ModelPrice",
    "ResponseFormat",
    "StreamCallback",
    "Usage",
]

ResponseFormat = Mapping[str, Any]
"""A response format in OpenAI's shape:
``{"type": "json_schema", "json_schema": {"name": ..., "schema": ..., "strict": ...}}``."""


class StreamCallback(Protocol):
    """``on_stream_chunk(delta, done)``: each text delta with ``False``, then ``("", True)`` once.

    Any callable taking ``(str, bool)`` positionally fits (a function, a lambda, a bound method).
    """

    def __call__(self, delta: str, done: bool, /) -> None:
        """Receive one delta (``done=False``), or the end of the stream (``("", True)``)."""
        ...


class LLMMessage(TypedDict):
    """One chat message sent to the model."""

    role: Literal["system", "user", "assistant"]
    """Who speaks: the instructions (``system``), the user or observations (``user``), or the
    model's earlier answers (``assistant``)."""
    content: str
    """The text of the message."""


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens one or more LLM calls used.

    ``cached_tokens`` is the part of ``prompt_tokens`` the provider served from its prompt cache
    (billed at the cached price when a :class:`ModelPrice` has one). Usages add up with ``+``.
    """

    prompt_tokens: int = 0
    """Input tokens, cached ones included."""
    completion_tokens: int = 0
    """Output tokens."""
    cached_tokens: int = 0
    """Input tokens read from the provider's prompt cache (a part of ``prompt_tokens``)."""

    def __post_init__(self) -> None:
        for name in ("prompt_tokens", "completion_tokens", "cached_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"Usage.{name} must be an int >= 0, got {value!r}")

    @property
    def total_tokens(self) -> int:
        """Prompt and completion tokens together."""
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):  # pyright: ignore[reportUnnecessaryIsInstance]
            return NotImplemented
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
        )


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """What a model costs, in US dollars per million tokens.

    There is no built-in price table (prices move): give the native clients ``pricing=`` and they
    report ``cost_usd`` for every call.
    """

    input_per_mtok: float
    """Price of one million input tokens that were not served from the prompt cache."""
    output_per_mtok: float
    """Price of one million output tokens."""
    cached_input_per_mtok: float | None = None
    """Price of one million cached input tokens (None: the same as ``input_per_mtok``)."""

    def __post_init__(self) -> None:
        for name in ("input_per_mtok", "output_per_mtok", "cached_input_per_mtok"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"ModelPrice.{name} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"ModelPrice.{name} must be a finite number >= 0, got {value!r}")

    def cost(self, usage: Usage) -> float:
        """The price of ``usage``, in US dollars."""
        cached = min(usage.cached_tokens, usage.prompt_tokens)
        cached_price = (
            self.input_per_mtok
            if self.cached_input_per_mtok is None
            else self.cached_input_per_mtok
        )
        return (
            (usage.prompt_tokens - cached) * self.input_per_mtok
            + cached * cached_price
            + usage.completion_tokens * self.output_per_mtok
        ) / 1_000_000


@dataclass(frozen=True, slots=True)
class LLMResult:
    """What one LLM call returned."""

    text: str
    """The model's answer (JSON text when a response format was asked for)."""
    usage: Usage | None = None
    """Tokens the call used, as the provider reported them (None: not reported)."""
    cost_usd: float | None = None
    """What the call cost, in US dollars (None: unknown; native clients need ``pricing=``)."""
    model: str | None = None
    """The model that answered, as the provider named it."""
    finish_reason: str | None = None
    """Why the model stopped (``"stop"``, ``"length"``, ``"end_turn"`` ...), when reported."""
    raw: object | None = None
    """The provider's response object, for debugging (never persisted)."""

    @classmethod
    def coerce(cls, value: object) -> LLMResult:
        """Turn what a client's ``complete`` returned into an :class:`LLMResult`.

        Args:
            value: An ``LLMResult`` (returned as is), a ``str`` (the text), or a
                ``(text, cost_usd)`` tuple, as reference clients return.

        Raises:
            TypeError: For anything else, naming what was returned.
        """
        returned: object = value
        kind = type(returned).__name__
        if isinstance(value, LLMResult):
            return value
        if isinstance(value, str):
            return cls(text=value)
        if isinstance(value, tuple):
            pair = cast(tuple[object, ...], value)
            if len(pair) == 2:
                text, cost = pair
                if isinstance(text, str) and isinstance(cost, int | float):
                    if not isinstance(cost, bool):
                        return cls(text=text, cost_usd=float(cost))
        raise TypeError(
            "an LLM client's complete() must return an LLMResult, a str, or a (text, cost_usd) "
            f"tuple; got {kind}: {_short_repr(returned)}"
        )


def _short_repr(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "..."


@runtime_checkable
class JSONLLMClient(Protocol):
    """What the planner calls to talk to a model.

    Any object with this ``complete`` method works; a reference client that returns a ``str`` or
    a ``(text, cost_usd)`` tuple keeps working (see :meth:`LLMResult.coerce`). Failures should be
    :class:`~penguiflow.planner.LLMError`; other exceptions are classified with
    :func:`~penguiflow.planner.classify_llm_error`.
    """

    async def complete(
        self,
        *,
        messages: Sequence[LLMMessage],
        response_format: ResponseFormat | None = None,
        stream: bool = False,
        on_stream_chunk: StreamCallback | None = None,
    ) -> LLMResult | str | tuple[str, float]:
        """Send ``messages`` and return the model's answer.

        Args:
            messages: The conversation, in order.
            response_format: OpenAI's shape, ``{"type": "json_schema", "json_schema": {"name",
                "schema", "strict"}}``; ``name`` says what the call is for (``planner_action``,
                ``reflection_critique``, ``memory_summary``, ``trajectory_summary``).
            stream: Stream the answer through ``on_stream_chunk``.
            on_stream_chunk: With ``stream=True``: called ``(delta, False)`` for every text
                delta, then ``("", True)`` once at the end.
        """
        ...
