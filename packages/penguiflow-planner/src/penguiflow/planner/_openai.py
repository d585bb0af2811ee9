"""``OpenAIJSONClient``: the planner's client for OpenAI and OpenAI-compatible servers."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, cast

from ._classify import error_type_for_status, mentions_context_length, parse_retry_after
from ._errors import LLMError, LLMErrorType, PlannerUsageError
from ._llm import LLMMessage, LLMResult, ModelPrice, ResponseFormat, StreamCallback, Usage
from ._native import NativeClient

if TYPE_CHECKING:
    import openai
    from openai.types.chat import ChatCompletionMessageParam
    from openai.types.completion_usage import CompletionUsage

__all__ = ["JSONMode", "OpenAIJSONClient", "map_openai_error"]

JSONMode = Literal["schema", "object", "off"]
"""How a client asks for JSON: the planner's schema, any JSON object, or not at all."""

_INSTALL_HINT = 'OpenAIJSONClient needs the openai SDK: pip install "penguiflow-planner[openai]"'
_PROVIDER = "openai"
_JSON_MODES = ("schema", "object", "off")


def _import_openai() -> Any:
    try:
        import openai
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc
    return openai


class OpenAIJSONClient(NativeClient):
    """A :class:`~penguiflow.planner.JSONLLMClient` over the official ``openai`` SDK.

    Speaks chat completions to OpenAI or any compatible server: vLLM (``http://host:8000/v1``),
    Ollama (``http://host:11434/v1``), LM Studio (``http://host:1234/v1``); choose ``json_mode``
    per server. The SDK's own retries are off (``max_retries=0``): the planner's
    :class:`~penguiflow.planner.LLMRetryPolicy` is the one retry layer. SDK exceptions become
    :class:`~penguiflow.planner.LLMError` (``from`` the SDK's exception)::

        async with OpenAIJSONClient("gpt-4o-mini", pricing=ModelPrice(0.15, 0.60)) as llm:
            result = await llm.complete(messages=[{"role": "user", "content": "hi"}])
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        temperature: float | None = None,
        max_tokens: int | None = None,
        json_mode: JSONMode = "schema",
        pricing: ModelPrice | None = None,
        extra_body: Mapping[str, Any] | None = None,
        default_headers: Mapping[str, str] | None = None,
        client: openai.AsyncOpenAI | None = None,
    ) -> None:
        """Make a client.

        Args:
            model: The model name the server knows.
            base_url: The API root (default: ``OPENAI_BASE_URL``, else OpenAI's).
            api_key: The key (default: ``OPENAI_API_KEY``; a placeholder when only a
                ``base_url`` is set, as local servers need none).
            timeout_s: Bound on one request, in seconds.
            temperature: Sampling temperature (None: the server's default).
            max_tokens: Bound on the answer's tokens (None: the server's default).
            json_mode: ``"schema"`` sends the caller's ``response_format`` (JSON schema),
                ``"object"`` sends ``{"type": "json_object"}`` instead, ``"off"`` sends none.
            pricing: Prices to report ``cost_usd`` with (None: no cost).
            extra_body: Extra JSON fields for every request (server-specific options).
            default_headers: Extra HTTP headers for every request.
            client: An ``AsyncOpenAI`` to use instead of making one (its SDK retries are turned
                off on a copy; ``aclose()`` does not close it).

        Raises:
            ImportError: The openai SDK is not installed; the message has the install command.
            PlannerUsageError: A bad ``json_mode`` or ``timeout_s``, or no API key for OpenAI.
        """
        sdk = _import_openai()
        if json_mode not in _JSON_MODES:
            raise PlannerUsageError(f"json_mode must be one of {_JSON_MODES}, got {json_mode!r}")
        if not timeout_s > 0:
            raise PlannerUsageError(f"timeout_s must be > 0, got {timeout_s!r}")
        self.model: str = model
        self.temperature: float | None = temperature
        self.max_tokens: int | None = max_tokens
        self.json_mode: JSONMode = json_mode
        self.pricing: ModelPrice | None = pricing
        self.extra_body: dict[str, Any] | None = dict(extra_body) if extra_body else None
        self._owns_client = client is None
        if client is not None:
            self._client: openai.AsyncOpenAI = client.with_options(max_retries=0)
            return
        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        api_key = api_key or os.environ.get("OPENAI_API_KEY") or None
        if api_key is None:
            if base_url is None:
                raise PlannerUsageError(
                    "OpenAIJSONClient needs an API key: pass api_key=... or set OPENAI_API_KEY "
                    "(or give base_url= for a local server that needs none)"
                )
            api_key = "unused"  # vLLM, Ollama and LM Studio accept any key
        self._client = cast(
            "openai.AsyncOpenAI",
            sdk.AsyncOpenAI(
                api_key=api_key,
                base_url=base_url,
                timeout=timeout_s,
                max_retries=0,
                default_headers=dict(default_headers) if default_headers else None,
            ),
        )

    @property
    def sdk_client(self) -> openai.AsyncOpenAI:
        """The ``AsyncOpenAI`` this client sends through."""
        return self._client

    def response_format_for(self, response_format: ResponseFormat | None) -> dict[str, Any] | None:
        """The ``response_format`` sent for a caller's one under this client's ``json_mode``."""
        if response_format is None or self.json_mode == "off":
            return None
        if self.json_mode == "object":
            return {"type": "json_object"}
        return dict(response_format)

    async def complete(
        self,
        *,
        messages: Sequence[LLMMessage],
        response_format: ResponseFormat | None = None,
        stream: bool = False,
        on_stream_chunk: StreamCallback | None = None,
    ) -> LLMResult:
        """Send one chat completion request and return the answer.

        With ``stream=True`` every text delta goes to ``on_stream_chunk(delta, False)``, then
        ``("", True)`` once; usage comes from the final usage chunk (``include_usage``).

        Raises:
            LLMError: The request failed; ``error_type`` says how, ``__cause__`` is the SDK's
                exception.
        """
        sdk = _import_openai()
        params: dict[str, Any] = {
            "model": self.model,
            "messages": cast("list[ChatCompletionMessageParam]", [dict(m) for m in messages]),
        }
        if self.temperature is not None:
            params["temperature"] = self.temperature
        if self.max_tokens is not None:
            params["max_tokens"] = self.max_tokens
        sent_format = self.response_format_for(response_format)
        if sent_format is not None:
            params["response_format"] = sent_format
        if self.extra_body:
            params["extra_body"] = self.extra_body
        try:
            if stream:
                return await self._stream(params, on_stream_chunk)
            completion = await self._client.chat.completions.create(stream=False, **params)
        except sdk.OpenAIError as exc:
            raise map_openai_error(exc) from exc
        usage = _usage_of(completion.usage)
        choice = completion.choices[0] if completion.choices else None
        return LLMResult(
            text=(choice.message.content or "") if choice is not None else "",
            usage=usage,
            cost_usd=self._cost(usage),
            model=completion.model,
            finish_reason=choice.finish_reason if choice is not None else None,
            raw=completion,
        )

    async def _stream(self, params: dict[str, Any], on_chunk: StreamCallback | None) -> LLMResult:
        parts: list[str] = []
        usage: Usage | None = None
        finish_reason: str | None = None
        model: str | None = None
        chunks = await self._client.chat.completions.create(
            stream=True, stream_options={"include_usage": True}, **params
        )
        async with chunks:
            async for chunk in chunks:
                model = chunk.model or model
                if chunk.usage is not None:
                    usage = _usage_of(chunk.usage)
                for choice in chunk.choices:
                    if choice.finish_reason is not None:
                        finish_reason = choice.finish_reason
                    delta = choice.delta.content
                    if delta:
                        parts.append(delta)
                        if on_chunk is not None:
                            on_chunk(delta, False)
        if on_chunk is not None:
            on_chunk("", True)
        return LLMResult(
            text="".join(parts),
            usage=usage,
            cost_usd=self._cost(usage),
            model=model,
            finish_reason=finish_reason,
        )

    def __repr__(self) -> str:
        return f"OpenAIJSONClient(model={self.model!r}, json_mode={self.json_mode!r})"


def _usage_of(usage: CompletionUsage | None) -> Usage | None:
    if usage is None:
        return None
    details = usage.prompt_tokens_details
    cached = (details.cached_tokens or 0) if details is not None else 0
    return Usage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        cached_tokens=cached,
    )


def map_openai_error(exc: openai.OpenAIError) -> LLMError:
    """The :class:`LLMError` for an exception of the openai SDK, by class and then status."""
    sdk = _import_openai()
    message = str(getattr(exc, "message", None) or exc)
    status: int | None = None
    retry_after: float | None = None
    if isinstance(exc, sdk.APIStatusError):
        status_error = cast("openai.APIStatusError", exc)
        status = status_error.status_code
        retry_after = parse_retry_after(dict(status_error.response.headers))
    if isinstance(exc, sdk.APITimeoutError):
        error_type = LLMErrorType.TIMEOUT
    elif isinstance(exc, sdk.APIConnectionError):
        error_type = LLMErrorType.CONNECTION
    elif isinstance(exc, sdk.RateLimitError):
        error_type = LLMErrorType.RATE_LIMIT
    elif isinstance(exc, sdk.AuthenticationError | sdk.PermissionDeniedError):
        error_type = LLMErrorType.AUTHENTICATION
    elif isinstance(exc, sdk.BadRequestError):
        code = cast("openai.BadRequestError", exc).code
        # Compatible servers (vLLM, Ollama) often send no code, only the wording.
        if code == "context_length_exceeded" or mentions_context_length(message):
            error_type = LLMErrorType.CONTEXT_LENGTH_EXCEEDED
        else:
            error_type = LLMErrorType.BAD_REQUEST_OTHER
    elif status is not None:
        error_type = error_type_for_status(status, message)
    else:
        error_type = LLMErrorType.UNKNOWN
    return LLMError(
        message,
        error_type=error_type,
        status_code=status,
        retry_after_s=retry_after,
        provider=_PROVIDER,
    )
