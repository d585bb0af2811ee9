"""ToolContext: what a tool gets as its ``ctx`` when the planner calls it."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from ._types import InterruptReason

__all__ = ["PauseRequested", "ToolContext"]


_REASONS = ("approval_required", "await_input", "external_event")


class PauseRequested(BaseException):
    """Internal: a tool asked to pause. A ``BaseException``, so no retry policy catches it."""

    def __init__(self, reason: InterruptReason, payload: Any, n: int) -> None:
        super().__init__(reason)
        self.reason: InterruptReason = reason
        self.payload = payload
        self.n = n


class ToolContext:
    """One per tool call: the run's context, pauses, and streaming to the run's listeners."""

    def __init__(
        self,
        *,
        llm_context: Mapping[str, Any],
        tool_context: Mapping[str, Any],
        run_id: str,
        trace_id: str,
        call_id: str,
        memory_key: Any,
        flow_context: Any,
        answers: Mapping[int, Any] | None,
        pause_enabled: bool,
        on_chunk: Callable[[dict[str, Any]], None],
    ) -> None:
        # A deep copy: a tool changing a nested value must not change what the model sees.
        self._llm_context = MappingProxyType(
            copy.deepcopy(dict(llm_context)) if llm_context else {}
        )
        self.tool_context: Mapping[str, Any] = tool_context
        """Tool-only values (clients, secrets): never shown to the LLM, never persisted."""
        self.run_id: str = run_id
        self.trace_id: str = trace_id
        self.call_id: str = call_id
        """Unique per tool call: ``{run_id}:{step}:{branch}``."""
        self.memory_key: Any = memory_key
        self.flow_context: Any = flow_context
        """The core ``Context`` when the planner runs as a node of a flow, else None."""
        self._answers = dict(answers or {})
        self._pause_enabled = pause_enabled
        self._pauses = 0
        self._on_chunk = on_chunk
        self._seq: dict[str, int] = {}

    @property
    def llm_context(self) -> Mapping[str, Any]:
        """What the model sees of the run's context (read-only)."""
        return self._llm_context

    async def pause(self, reason: InterruptReason = "await_input", payload: Any = None) -> Any:
        """Pause the run until this interrupt is answered; return the answer.

        On resume the tool runs again with the same arguments and its n-th ``pause()`` returns
        the n-th answer, so a tool must be idempotent up to its pauses.
        """
        if reason not in _REASONS:
            raise ValueError(f"pause reason must be one of {_REASONS}, got {reason!r}")
        n = self._pauses
        self._pauses += 1
        if n in self._answers:
            return self._answers[n]
        if not self._pause_enabled:
            raise RuntimeError(
                "this planner was built with pause_enabled=False: tools cannot pause"
            )
        raise PauseRequested(reason, payload, n)

    async def emit_chunk(
        self,
        *,
        text: str,
        stream_id: str | None = None,
        seq: int | None = None,
        done: bool = False,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        """Stream a piece of output to the run's listeners (a ``tool_stream_chunk`` event).

        ``stream_id`` defaults to the call id; ``seq`` counts per stream from 0 unless given, and
        ``done=True`` ends the stream (the next chunk starts again at 0).
        """
        stream = stream_id or self.call_id
        if seq is None:
            seq = self._seq.get(stream, 0)
        self._seq[stream] = 0 if done else seq + 1
        self._on_chunk(
            {
                "stream_id": stream,
                "seq": seq,
                "text": text,
                "done": done,
                "meta": dict(meta or {}),
                "call_id": self.call_id,
            }
        )

    def __repr__(self) -> str:
        return f"ToolContext(run_id={self.run_id!r}, call_id={self.call_id!r})"
