"""``AnthropicJSONClient``: the planner's client for Anthropic's Messages API."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, cast

from ._classify import error_type_for_status, mentions_context_length, parse_retry_after
from ._errors import LLMError, LLMErrorType, PlannerUsageError
from ._llm import LLMMessage, LLMResult, ModelPrice, ResponseFormat, StreamCallback, Usage
from ._native import NativeClient

if TYPE_CHECKING:
    import anthropic
    from anthropic.types import MessageParam

__all__ = ["AnthropicJSONClient", "map_anthropic_error", "to_anthropic_messages"]

_INSTALL_HINT = (
    'AnthropicJSONClient needs the anthropic SDK: pip install "penguiflow-planner[anthropic]"'
)
_PROVIDER = "anthropic"
_JSON_MODES = ("schema", "off")
# The `type` of an error event inside a stream that already answered 200.
_STREAM_ERROR_TYPES = {
    "overloaded_error": LLMErrorType.SERVICE_UNAVAILABLE,
    "api_error": LLMErrorType.SERVICE_UNAVAILABLE,
    "rate_limit_error": LLMErrorType.RATE_LIMIT,
    "timeout_error": LLMErrorType.TIMEOUT,
}


def _import_anthropic() -> Any:
    try:
        import anthropic
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc
    return anthropic


def to_anthropic_messages(messages: Sequence[LLMMessage]) -> tuple[str, list[dict[str, str]]]:
    """Split a conversation into Anthropic's ``system`` text and its ``messages``.

    System messages are joined (blank line between) into ``system``; consecutive messages of the
    same role are merged, since the API wants user and assistant turns to alternate.
    """
    system: list[str] = []
    turns: list[dict[str, str]] = []
    for message in messages:
        role, content = message["role"], message["content"]
        if role == "system":
            system.append(content)
        elif turns and turns[-1]["role"] == role:
            turns[-1]["content"] += "\n\n" + content
        else:
            turns.append({"role": role, "content": content})
    return "\n\n".join(system), turns


class AnthropicJSONClient(NativeClient):
    """A :class:`~penguiflow.planner.JSONLLMClient` over the official ``anthropic`` SDK.

    The planner's JSON schema goes out as ``output_config={"format": {"type": "json_schema",
    "schema": ...}}`` (structured outputs). The SDK's own retries are off (``max_retries=0``):
    the planner's :class:`~penguiflow.planner.LLMRetryPolicy` is the one retry layer. SDK
    exceptions become :class:`~penguiflow.planner.LLMError` (``from`` the SDK's exception).
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        max_tokens: int = 4096,
        timeout_s: float = 60.0,
        temperature: float | None = None,
        json_mode: Literal["schema", "off"] = "schema",
        pricing: ModelPrice | None = None,
        client: anthropic.AsyncAnthropic | None = None,
    ) -> None:
        """Make a client.

        Args:
            model: The model name.
            base_url: The API root (default: ``ANTHROPIC_BASE_URL``, else Anthropic's).
            api_key: The key (default: ``ANTHROPIC_API_KEY``).
            max_tokens: Bound on the answer's tokens (the API requires one).
            timeout_s: Bound on one request, in seconds.
            temperature: Sampling temperature (None: the API's default); sent as a body field,
                since the SDK's ``messages.create`` no longer takes it as a keyword.
            json_mode: ``"schema"`` sends the caller's JSON schema as ``output_config``,
                ``"off"`` sends none (Anthropic has no schema-less JSON mode).
            pricing: Prices to report ``cost_usd`` with (None: no cost).
            client: An ``AsyncAnthropic`` to use instead of making one (its SDK retries are
                turned off on a copy; ``aclose()`` does not close it).

        Raises:
            ImportError: The anthropic SDK is not installed; the message has the install
                command.
            PlannerUsageError: A bad ``json_mode``, ``max_tokens`` or ``timeout_s``.
        """
        sdk = _import_anthropic()
        if json_mode not in _JSON_MODES:
            raise PlannerUsageError(f"json_mode must be one of {_JSON_MODES}, got {json_mode!r}")
        if isinstance(max_tokens, bool) or max_tokens < 1:
            raise PlannerUsageError(f"max_tokens must be an int >= 1, got {max_tokens!r}")
        if not timeout_s > 0:
            raise PlannerUsageError(f"timeout_s must be > 0, got {timeout_s!r}")
        self.model: str = model
        self.max_tokens: int = max_tokens
        self.temperature: float | None = temperature
        self.json_mode: Literal["schema", "off"] = json_mode
        self.pricing: ModelPrice | None = pricing
        self._owns_client = client is None
        if client is not None:
            self._client: anthropic.AsyncAnthropic = client.with_options(max_retries=0)
        else:
            self._client = cast(
                "anthropic.AsyncAnthropic",
                sdk.AsyncAnthropic(
                    api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=0
                ),
            )

    @property
    def sdk_client(self) -> anthropic.AsyncAnthropic:
        """The ``AsyncAnthropic`` this client sends through."""
        return self._client

    def output_config_for(self, response_format: ResponseFormat | None) -> dict[str, Any] | None:
        """The ``output_config`` sent for a caller's ``response_format`` (OpenAI's shape)."""
        if response_format is None or self.json_mode == "off":
            return None
        spec: object = response_format.get("json_schema")
        schema: object = (
            cast(Mapping[str, object], spec).get("schema") if isinstance(spec, Mapping) else None
        )
        if not isinstance(schema, Mapping):
            return None
        return {"format": {"type": "json_schema", "schema": dict(cast(Mapping[str, Any], schema))}}

    async def complete(
        self,
        *,
        messages: Sequence[LLMMessage],
        response_format: ResponseFormat | None = None,
        stream: bool = False,
        on_stream_chunk: StreamCallback | None = None,
    ) -> LLMResult:
        """Send one Messages API request and return the answer's text.

        With ``stream=True`` the text of every ``content_block_delta`` goes to
        ``on_stream_chunk(delta, False)``, then ``("", True)`` once. Input (and cached) tokens
        come from ``message_start``, output tokens from the last ``message_delta`` (its counts
        are cumulative).

        Raises:
            LLMError: The request failed; ``error_type`` says how, ``__cause__`` is the SDK's
                exception.
        """
        sdk = _import_anthropic()
        system, turns = to_anthropic_messages(messages)
        params: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "messages": cast("list[MessageParam]", turns),
        }
        if system:
            params["system"] = system
        if self.temperature is not None:
            # anthropic 2.x dropped `temperature` from messages.create's keywords; the API field
            # still goes out in the body.
            params["extra_body"] = {"temperature": self.temperature}
        output_config = self.output_config_for(response_format)
        if output_config is not None:
            params["output_config"] = output_config
        try:
            if stream:
                return await self._stream(params, on_stream_chunk)
            reply = await self._client.messages.create(stream=False, **params)
        except sdk.AnthropicError as exc:
            raise map_anthropic_error(exc) from exc
        usage = Usage(
            prompt_tokens=reply.usage.input_tokens
            + (reply.usage.cache_creation_input_tokens or 0)
            + (reply.usage.cache_read_input_tokens or 0),
            completion_tokens=reply.usage.output_tokens,
            cached_tokens=reply.usage.cache_read_input_tokens or 0,
        )
        text = "".join(block.text for block in reply.content if block.type == "text")
        return LLMResult(
            text=text,
            usage=usage,
            cost_usd=self._cost(usage),
            model=reply.model,
            finish_reason=reply.stop_reason,
            raw=reply,
        )

    async def _stream(self, params: dict[str, Any], on_chunk: StreamCallback | None) -> LLMResult:
        parts: list[str] = []
        prompt_tokens = cached_tokens = output_tokens = 0
        saw_usage = False
        model: str | None = None
        stop_reason: str | None = None
        events = await self._client.messages.create(stream=True, **params)
        async with events:
            async for event in events:
                if event.type == "message_start":
                    start = event.message.usage
                    model = event.message.model
                    cached_tokens = start.cache_read_input_tokens or 0
                    prompt_tokens = (
                        start.input_tokens
                        + (start.cache_creation_input_tokens or 0)
                        + cached_tokens
                    )
                    output_tokens = start.output_tokens
                    saw_usage = True
                elif event.type == "content_block_delta":
                    if event.delta.type == "text_delta" and event.delta.text:
                        parts.append(event.delta.text)
                        if on_chunk is not None:
                            on_chunk(event.delta.text, False)
                elif event.type == "message_delta":
                    output_tokens = event.usage.output_tokens  # cumulative: take, never add
                    saw_usage = True
                    if event.delta.stop_reason is not None:
                        stop_reason = event.delta.stop_reason
        if on_chunk is not None:
            on_chunk("", True)
        usage = (
            Usage(
                prompt_tokens=prompt_tokens,
                completion_tokens=output_tokens,
                cached_tokens=cached_tokens,
            )
            if saw_usage
            else None
        )
        return LLMResult(
            text="".join(parts),
            usage=usage,
            cost_usd=self._cost(usage),
            model=model,
            finish_reason=stop_reason,
        )

    def __repr__(self) -> str:
        return f"AnthropicJSONClient(model={self.model!r}, json_mode={self.json_mode!r})"


def map_anthropic_error(exc: anthropic.AnthropicError) -> LLMError:
    """The :class:`LLMError` for an exception of the anthropic SDK, by class and then status."""
    sdk = _import_anthropic()
    message = str(getattr(exc, "message", None) or exc)
    status: int | None = None
    retry_after: float | None = None
    if isinstance(exc, sdk.APIStatusError):
        status_error = cast("anthropic.APIStatusError", exc)
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
        error_type = (
            LLMErrorType.CONTEXT_LENGTH_EXCEEDED
            if mentions_context_length(message)
            else LLMErrorType.BAD_REQUEST_OTHER
        )
    elif isinstance(exc, sdk.InternalServerError):  # 5xx, OverloadedError (529) among them
        error_type = LLMErrorType.SERVICE_UNAVAILABLE
    elif status is not None and status < 400:
        # An `error` event inside a stream whose response had already said 200.
        error_type = _STREAM_ERROR_TYPES.get(_stream_error_type(exc), LLMErrorType.UNKNOWN)
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


def _stream_error_type(exc: BaseException) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping):
        error = cast(Mapping[str, Any], body).get("error")
        if isinstance(error, Mapping):
            kind = cast(Mapping[str, Any], error).get("type")
            if isinstance(kind, str):
                return kind
    return ""
