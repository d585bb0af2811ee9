"""PlannerEvent: what a run reports to its listeners, built only when someone listens."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from ._llm import Usage

__all__ = ["PlannerEvent", "PlannerEventCallback", "PlannerEventType"]

logger = logging.getLogger("penguiflow.planner")

_EMPTY: Mapping[str, Any] = MappingProxyType({})


class PlannerEventType(StrEnum):
    """Every event a run emits; ``FINISH`` or ``PAUSE`` comes last."""

    STEP_START = "step_start"
    STEP_COMPLETE = "step_complete"
    LLM_CALL = "llm_call"
    LLM_RETRY = "llm_retry"
    LLM_STREAM_CHUNK = "llm_stream_chunk"
    REPAIR_ATTEMPT = "repair_attempt"
    TOOL_CALL_START = "tool_call_start"
    TOOL_CALL_END = "tool_call_end"
    TOOL_STREAM_CHUNK = "tool_stream_chunk"
    PAUSE = "pause"
    RESUME = "resume"
    REFLECTION_CRITIQUE = "reflection_critique"
    STEERING_RECEIVED = "steering_received"
    COMPACTION = "compaction"
    MEMORY_HEALTH = "memory_health"
    FINISH = "finish"


@dataclass(frozen=True, slots=True)
class PlannerEvent:
    """One thing that happened in a run."""

    event_type: PlannerEventType
    ts: float
    run_id: str
    trace_id: str
    step: int | None = None
    node_name: str | None = None
    latency_ms: float | None = None
    usage: Usage | None = None
    error: str | None = None
    extra: Mapping[str, Any] = _EMPTY

    def to_payload(self) -> dict[str, Any]:
        """The event as JSON-safe data."""
        usage = self.usage
        return {
            "event_type": self.event_type.value,
            "ts": self.ts,
            "run_id": self.run_id,
            "trace_id": self.trace_id,
            "step": self.step,
            "node_name": self.node_name,
            "latency_ms": self.latency_ms,
            "usage": None
            if usage is None
            else {
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "cached_tokens": usage.cached_tokens,
            },
            "error": self.error,
            "extra": dict(self.extra),
        }


PlannerEventCallback = Callable[[PlannerEvent], None]
"""A listener: called inline with each event (keep it cheap; its exceptions are logged)."""


def deliver(listeners: tuple[PlannerEventCallback, ...], event: PlannerEvent) -> None:
    """Call each listener; one that raises is logged and the run goes on."""
    for listener in listeners:
        try:
            listener(event)
        except Exception:
            logger.exception("planner event listener %r failed on %s", listener, event.event_type)
