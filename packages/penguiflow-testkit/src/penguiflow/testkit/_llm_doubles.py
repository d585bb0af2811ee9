"""LLM test doubles for the planner: ``ScriptedLLM`` answers in order, ``FunctionLLM`` computes.

Both follow ``penguiflow.planner.JSONLLMClient`` and record every call. Needs the planner
(``pip install "penguiflow-testkit[planner]"``); ``penguiflow.testkit`` imports this module only
when one of its names is used.
"""

from __future__ import annotations

import inspect
import json
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import anyio.lowlevel

from ._errors import ScriptExhausted

try:
    from penguiflow.planner import (
        CharCounter,
        LLMMessage,
        LLMResult,
        StreamCallback,
        TokenCounter,
        Usage,
    )
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        'the LLM test doubles need penguiflow-planner: pip install "penguiflow-testkit[planner]"'
    ) from exc

__all__ = ["FunctionLLM", "LLMAnswer", "LLMCall", "LLMCallInfo", "ScriptedLLM"]

LLMAnswer = str | Mapping[str, Any] | LLMResult | BaseException
"""What a double answers with: text, a mapping (sent as JSON), an ``LLMResult``, or an exception
instance (raised)."""

_SHOWN_CHARS = 500


@dataclass(frozen=True, slots=True)
class LLMCall:
    """One call a double received."""

    messages: list[LLMMessage]
    """The messages, copied at call time."""
    response_format: Mapping[str, Any] | None
    """The response format asked for (OpenAI's shape), if any."""
    stream: bool
    """Whether the caller asked to stream."""

    @property
    def schema_name(self) -> str | None:
        """``response_format["json_schema"]["name"]`` (``planner_action`` ...), if any."""
        return _schema_name(self.response_format)


@dataclass(frozen=True, slots=True)
class LLMCallInfo:
    """What a :class:`FunctionLLM` function learns about the call besides the messages."""

    call_index: int
    """Which call this is, from 0, in the order calls started."""
    schema_name: str | None
    """The response format's schema name (``planner_action``, ``reflection_critique``,
    ``memory_summary``, ``trajectory_summary``), if any."""
    response_format: Mapping[str, Any] | None
    """The whole response format, if any."""
    stream: bool
    """Whether the caller asked to stream."""


class _Double:
    """What both doubles share: recording calls and turning an answer into an ``LLMResult``."""

    def __init__(self, *, chunk_size: int, counter: TokenCounter | None) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.chunk_size = chunk_size
        self.counter: TokenCounter = counter if counter is not None else CharCounter()
        self.calls: list[LLMCall] = []
        """Every call received, in order."""

    def _record(
        self,
        messages: Sequence[LLMMessage],
        response_format: Mapping[str, Any] | None,
        stream: bool,
    ) -> LLMCall:
        copied = [cast(LLMMessage, dict(message)) for message in messages]
        call = LLMCall(messages=copied, response_format=response_format, stream=stream)
        self.calls.append(call)
        return call

    def _deliver(
        self,
        answer: object,
        call: LLMCall,
        on_stream_chunk: StreamCallback | None,
    ) -> LLMResult:
        if isinstance(answer, BaseException):
            raise answer
        if isinstance(answer, LLMResult):
            result = answer
        elif isinstance(answer, str):
            result = self._counted(answer, call)
        elif isinstance(answer, Mapping):
            result = self._counted(json.dumps(answer), call)
        else:
            raise TypeError(
                "a scripted answer must be a str, a mapping (sent as JSON), an LLMResult or an "
                f"exception instance; got {type(answer).__name__}"
            )
        if call.stream and on_stream_chunk is not None:
            text = result.text
            for start in range(0, len(text), self.chunk_size):
                on_stream_chunk(text[start : start + self.chunk_size], False)
            on_stream_chunk("", True)
        return result

    def _counted(self, text: str, call: LLMCall) -> LLMResult:
        usage = Usage(
            prompt_tokens=self.counter.count_messages(call.messages),
            completion_tokens=self.counter.count(text),
        )
        return LLMResult(text=text, usage=usage)


class ScriptedLLM(_Double):
    """A model that gives scripted answers, one per call, in order.

    A ``str`` is answered as is, a mapping as JSON, an ``LLMResult`` as is (its usage too), and an
    exception instance is raised. Usage of text answers is counted with ``counter``. With
    ``stream=True`` the text goes to ``on_stream_chunk`` in ``chunk_size`` pieces, then
    ``("", True)``. A call after the last answer raises :class:`ScriptExhausted`, showing that
    call's messages::

        llm = ScriptedLLM([{"next_node": "final_response", "args": {"answer": "hi"}}])
    """

    def __init__(
        self,
        responses: Iterable[LLMAnswer],
        *,
        chunk_size: int = 8,
        counter: TokenCounter | None = None,
    ) -> None:
        """Make a scripted model.

        Args:
            responses: The answers, in order.
            chunk_size: Characters per streamed piece.
            counter: Counts usage of text answers (default: ``CharCounter()``).
        """
        super().__init__(chunk_size=chunk_size, counter=counter)
        self._script: deque[LLMAnswer] = deque(responses)
        self._total = len(self._script)

    @property
    def remaining(self) -> int:
        """Answers not given yet."""
        return len(self._script)

    def assert_exhausted(self) -> None:
        """Check that every scripted answer was used.

        Raises:
            AssertionError: Some were not; the message lists them.
        """
        if self._script:
            left = "\n".join(f"  - {_short(repr(answer))}" for answer in self._script)
            raise AssertionError(
                f"ScriptedLLM used {len(self.calls)} of its {self._total} answers; "
                f"{len(self._script)} never asked for:\n{left}"
            )

    async def complete(
        self,
        *,
        messages: Sequence[LLMMessage],
        response_format: Mapping[str, Any] | None = None,
        stream: bool = False,
        on_stream_chunk: StreamCallback | None = None,
    ) -> LLMResult:
        """Answer with the next scripted answer (see the class docstring)."""
        await anyio.lowlevel.checkpoint()
        call = self._record(messages, response_format, stream)
        if not self._script:
            raise ScriptExhausted(
                f"ScriptedLLM got call {len(self.calls)} but had only {self._total} answers "
                f"scripted. The call ({call.schema_name or 'no schema'}):\n"
                f"{_show_messages(call.messages)}",
                calls=list(self.calls),
            )
        return self._deliver(self._script.popleft(), call, on_stream_chunk)

    def __repr__(self) -> str:
        return f"<ScriptedLLM calls={len(self.calls)} remaining={self.remaining}>"


LLMFunction = Callable[[list[LLMMessage], LLMCallInfo], LLMAnswer | Awaitable[LLMAnswer]]
"""``fn(messages, info)``, sync or async, returning what :class:`ScriptedLLM` accepts."""


class FunctionLLM(_Double):
    """A model whose answers a function computes: ``fn(messages, info)``, sync or async.

    It returns what :class:`ScriptedLLM` accepts (text, a mapping, an ``LLMResult``, or an
    exception instance to raise). The double for concurrent runs, since the answer can depend on
    the messages rather than on call order::

        def answer(messages, info):
            return {"next_node": "final_response", "args": {"answer": messages[-1]["content"]}}

        llm = FunctionLLM(answer)
    """

    def __init__(
        self,
        fn: LLMFunction,
        *,
        chunk_size: int = 8,
        counter: TokenCounter | None = None,
    ) -> None:
        """Make a computed model.

        Args:
            fn: ``fn(messages, info: LLMCallInfo)``, sync or async.
            chunk_size: Characters per streamed piece.
            counter: Counts usage of text answers (default: ``CharCounter()``).
        """
        if not callable(fn):
            raise TypeError(f"FunctionLLM needs a callable fn(messages, info), got {fn!r}")
        super().__init__(chunk_size=chunk_size, counter=counter)
        self.fn = fn

    async def complete(
        self,
        *,
        messages: Sequence[LLMMessage],
        response_format: Mapping[str, Any] | None = None,
        stream: bool = False,
        on_stream_chunk: StreamCallback | None = None,
    ) -> LLMResult:
        """Answer with what ``fn`` returns for these messages."""
        await anyio.lowlevel.checkpoint()
        call = self._record(messages, response_format, stream)
        info = LLMCallInfo(
            call_index=len(self.calls) - 1,
            schema_name=call.schema_name,
            response_format=response_format,
            stream=stream,
        )
        answer: object = self.fn(list(call.messages), info)
        if inspect.isawaitable(answer):
            answer = await cast(Awaitable[object], answer)
        return self._deliver(answer, call, on_stream_chunk)

    def __repr__(self) -> str:
        name = getattr(self.fn, "__qualname__", repr(self.fn))
        return f"<FunctionLLM fn={name} calls={len(self.calls)}>"


def _schema_name(response_format: Mapping[str, Any] | None) -> str | None:
    if response_format is None:
        return None
    spec: object = response_format.get("json_schema")
    if isinstance(spec, Mapping):
        name: object = cast(Mapping[str, object], spec).get("name")
        if isinstance(name, str):
            return name
    return None


def _short(text: str) -> str:
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "..."


def _show_messages(messages: Sequence[LLMMessage]) -> str:
    if not messages:
        return "  (no messages)"
    return "\n".join(f"  [{m['role']}] {_short(m['content'])}" for m in messages)
