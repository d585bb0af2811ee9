"""``Cassette``: record a planner's LLM and tool calls once, replay them without model or tools.

Calls are keyed by the SHA-256 of their canonical JSON (sorted keys, no spaces): an LLM call by
its messages and response format (not ``stream``), a tool call by the tool's name and arguments.
Matching by key rather than by position is what lets concurrent runs replay in any order. Each key
holds its recorded answers in order; a key asked for more often than it was recorded keeps
answering with its last one. Needs the planner (``pip install "penguiflow-testkit[planner]"``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import anyio.lowlevel
from pydantic_core import to_jsonable_python

from penguiflow.core import Node, NodeSpec

from ._cassette_store import Entry, Kind, Recordings, canonical, key_of, mismatch

try:
    from penguiflow.planner import (
        JSONLLMClient,
        LLMMessage,
        LLMResult,
        StreamCallback,
        Usage,
    )
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        'Cassette needs penguiflow-planner: pip install "penguiflow-testkit[planner]"'
    ) from exc

__all__ = ["Cassette"]

VERSION = 1
"""The cassette file format's version (the file's ``version`` field)."""

_SECTIONS: dict[Kind, str] = {"llm": "llm_calls", "tool": "tool_calls"}


class Cassette:
    """Recorded LLM and tool calls, kept in one JSON file.

    Record a run, then replay it in tests without the model or the tools::

        cassette = Cassette(path)
        planner = ReactPlanner(cassette.record_llm(llm), catalog=cassette.record_tools(specs))
        await planner.run("what is 2 + 3?")
        cassette.save()

        replay = Cassette.load(path)
        planner = ReactPlanner(replay.replay_llm(), catalog=replay.replay_tools(specs))

    An unrecorded call raises :class:`~penguiflow.testkit.ReplayMismatch` naming the nearest
    recorded one. LLM failures and cancelled tool calls are not recorded (a retried failure
    replays as the answer that followed it); tool exceptions are, and replay as a
    ``RuntimeError`` subclass with the original type's name and message, so the planner's
    observation of the failure is the same. Tools that pause (``ctx.pause``) are not replayable.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """An empty cassette that :meth:`save` writes to ``path`` (not read: see :meth:`load`)."""
        self.path: Path = Path(path)
        """Where :meth:`save` writes and :meth:`load` read."""
        self._recordings = Recordings(self.path)

    # ---------------------------------------------------------------- the file
    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Cassette:
        """Read a cassette written by :meth:`save`.

        Raises:
            FileNotFoundError: There is no file at ``path``.
            ValueError: The file is not a cassette of this version.
        """
        cassette = cls(path)
        data: object = json.loads(cassette.path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or cast(dict[str, Any], data).get("version") != VERSION:
            raise ValueError(
                f"{cassette.path} is not a version-{VERSION} cassette; record it again "
                "with Cassette(path).record_llm(...) / record_tools(...) and save()"
            )
        document = cast(dict[str, Any], data)
        for kind, section in _SECTIONS.items():
            for item in cast(list[dict[str, Any]], document.get(section, [])):
                for answer in item["responses"]:
                    cassette._recordings.add(kind, item["request"], answer)
        return cassette

    def save(self) -> None:
        """Write every recorded call to :attr:`path` as JSON (replacing the file atomically).

        The output is stable: sorted keys, LLM calls ordered by message count, then content;
        tool calls by tool name, then arguments; answers in the order they were recorded. So the
        same recordings always give the same bytes, however concurrent runs interleaved.
        """
        document: dict[str, Any] = {"version": VERSION}
        for kind, section in _SECTIONS.items():
            document[section] = [
                {"request": entry.request, "responses": entry.answers}
                for entry in sorted(self._recordings.entries[kind].values(), key=_order)
            ]
        text = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text(text, encoding="utf-8")
        partial.replace(self.path)

    @property
    def recorded_llm_calls(self) -> int:
        """LLM answers recorded (or loaded)."""
        return self._recordings.count("llm")

    @property
    def recorded_tool_calls(self) -> int:
        """Tool outcomes recorded (or loaded)."""
        return self._recordings.count("tool")

    # ---------------------------------------------------------------- recording
    def record_llm(self, client: JSONLLMClient) -> JSONLLMClient:
        """A client that calls ``client`` and records each answer (text, usage, cost, model).

        Streaming calls stream from ``client`` as usual; their full text is recorded.
        """
        return _RecordingLLM(self._recordings, client)

    def record_tools(self, catalog: Iterable[NodeSpec]) -> list[NodeSpec]:
        """The same specs, whose nodes run the real functions and record each outcome.

        An outcome is the result as JSON, or the exception's type and message (the exception
        is re-raised).
        """
        return [_with_func(spec, _recorder(self._recordings, spec)) for spec in catalog]

    # ---------------------------------------------------------------- replaying
    def replay_llm(self, *, chunk_size: int = 8) -> JSONLLMClient:
        """A client that answers from the recordings and calls no model.

        With ``stream=True`` the recorded text goes to ``on_stream_chunk`` in ``chunk_size``
        pieces, then ``("", True)``. Each client keeps its own place in the recordings.

        Raises:
            ValueError: ``chunk_size`` is below 1.
        """
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        return _ReplayingLLM(_Player(self._recordings, "llm"), chunk_size)

    def replay_tools(self, catalog: Iterable[NodeSpec]) -> list[NodeSpec]:
        """The same specs, whose nodes answer from the recordings; the functions are not called.

        A recorded result is validated into the tool's ``out_model`` (``null`` stays None); a
        recorded exception is raised again as a ``RuntimeError`` subclass named like the
        original (same ``__name__``, ``__module__`` and message). Node policies still apply,
        so a retried failure replays its recorded failures and then its recorded success.
        """
        player = _Player(self._recordings, "tool")
        return [_with_func(spec, _replayer(player, spec)) for spec in catalog]

    def __repr__(self) -> str:
        return (
            f"<Cassette {str(self.path)!r} llm_calls={self.recorded_llm_calls} "
            f"tool_calls={self.recorded_tool_calls}>"
        )


class _Player:
    """A replay's place in one kind of recordings: the next answer per key."""

    def __init__(self, recordings: Recordings, kind: Kind) -> None:
        self.recordings = recordings
        self.kind: Kind = kind
        self.played: dict[str, int] = {}

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        text = canonical(request)
        key = key_of(text)
        entries = self.recordings.entries[self.kind]
        entry = entries.get(key)
        if entry is None:
            raise mismatch(self.recordings.path, self.kind, request, text, entries)
        played = self.played.get(key, 0)
        self.played[key] = played + 1
        # Past the recorded count the last answer repeats: the same request got it before.
        return entry.answers[min(played, len(entry.answers) - 1)]


class _RecordingLLM:
    """Calls the real client and records each answer in the cassette."""

    def __init__(self, recordings: Recordings, client: JSONLLMClient) -> None:
        self._recordings = recordings
        self._client = client

    async def complete(
        self,
        *,
        messages: Sequence[LLMMessage],
        response_format: Mapping[str, Any] | None = None,
        stream: bool = False,
        on_stream_chunk: StreamCallback | None = None,
    ) -> LLMResult:
        request = _llm_request(messages, response_format)  # before the caller can change them
        result = LLMResult.coerce(
            await self._client.complete(
                messages=messages,
                response_format=response_format,
                stream=stream,
                on_stream_chunk=on_stream_chunk,
            )
        )
        usage = result.usage
        answer = {
            "text": result.text,
            "usage": None if usage is None else _usage_json(usage),
            "cost_usd": result.cost_usd,
            "model": result.model,
            "finish_reason": result.finish_reason,
        }
        self._recordings.add("llm", request, answer)
        return result

    def __repr__(self) -> str:
        return f"<Cassette recording {self._client!r}>"


class _ReplayingLLM:
    """Answers from the recordings."""

    def __init__(self, player: _Player, chunk_size: int) -> None:
        self._player = player
        self._chunk_size = chunk_size

    async def complete(
        self,
        *,
        messages: Sequence[LLMMessage],
        response_format: Mapping[str, Any] | None = None,
        stream: bool = False,
        on_stream_chunk: StreamCallback | None = None,
    ) -> LLMResult:
        await anyio.lowlevel.checkpoint()
        answer = self._player.answer(_llm_request(messages, response_format))
        usage: dict[str, int] | None = answer.get("usage")
        result = LLMResult(
            text=answer["text"],
            usage=None if usage is None else Usage(**usage),
            cost_usd=answer.get("cost_usd"),
            model=answer.get("model"),
            finish_reason=answer.get("finish_reason"),
        )
        if stream and on_stream_chunk is not None:
            text, size = result.text, self._chunk_size
            for start in range(0, len(text), size):
                on_stream_chunk(text[start : start + size], False)
            on_stream_chunk("", True)
        return result

    def __repr__(self) -> str:
        return f"<Cassette replaying {str(self._player.recordings.path)!r}>"


class _ReplayedToolError(RuntimeError):
    """A recorded tool exception, raised again on replay (subclassed per original type)."""


_error_types: dict[tuple[str, str], type[_ReplayedToolError]] = {}


def _replayed_error(error: dict[str, str]) -> _ReplayedToolError:
    module, qualname = error.get("module", "builtins"), error["type"]
    kind = _error_types.get((module, qualname))
    if kind is None:
        name = qualname.rpartition(".")[2]
        namespace = {"__module__": module, "__qualname__": qualname}
        kind = _error_types[module, qualname] = type(name, (_ReplayedToolError,), namespace)
    return kind(error["message"])


def _recorder(recordings: Recordings, spec: NodeSpec) -> Any:
    func = spec.node.func

    async def recorded(message: Any, ctx: Any) -> Any:
        request = _tool_request(spec.name, message)
        try:
            result = await func(message, ctx)
        except Exception as exc:  # a BaseException (cancellation, a pause) is not recorded
            kind = type(exc)
            error = {"type": kind.__qualname__, "module": kind.__module__, "message": str(exc)}
            recordings.add("tool", request, {"error": error})
            raise
        recordings.add("tool", request, {"output": to_jsonable_python(result, fallback=str)})
        return result

    return recorded


def _replayer(player: _Player, spec: NodeSpec) -> Any:
    async def replayed(message: Any, ctx: Any) -> Any:
        await anyio.lowlevel.checkpoint()
        answer = player.answer(_tool_request(spec.name, message))
        if "error" in answer:
            raise _replayed_error(answer["error"])
        output = answer["output"]
        return None if output is None else spec.out_model.model_validate(output)

    return replayed


def _with_func(spec: NodeSpec, func: Any) -> NodeSpec:
    node = spec.node
    func.__name__ = func.__qualname__ = node.name
    func.__penguiflow_subflows__ = node.subflows
    wrapped = Node(func, name=node.name, policy=node.policy, allow_cycle=node.allow_cycle)
    return replace(spec, node=wrapped)


def _llm_request(
    messages: Sequence[LLMMessage], response_format: Mapping[str, Any] | None
) -> dict[str, Any]:
    return cast(
        dict[str, Any],
        to_jsonable_python({"messages": list(messages), "response_format": response_format}),
    )


def _tool_request(name: str, args: Any) -> dict[str, Any]:
    return {"tool": name, "args": to_jsonable_python(args)}


def _usage_json(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "cached_tokens": usage.cached_tokens,
    }


def _order(entry: Entry) -> tuple[int, str, str]:
    request = entry.request
    if "tool" in request:
        return (0, str(request["tool"]), entry.canonical)
    return (len(request.get("messages") or ()), "", entry.canonical)
