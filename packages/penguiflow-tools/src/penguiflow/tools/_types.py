"""What a call takes and returns: ``ToolCallContext``, ``ToolResult``, ``ToolNodeStatistics``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from ._artifacts import ArtifactRef

__all__ = ["BreakerState", "ToolCallContext", "ToolNodeStatistics", "ToolResult"]

BreakerState = Literal["closed", "open", "half_open"]
"""The state of a source's circuit breaker."""


class ToolResult(BaseModel):
    """What a remote tool returned.

    MCP: ``structured_content`` verbatim when present, else one text block (parsed JSON when it
    is an object or array, else the string), several blocks as a list.
    """

    model_config: ClassVar[ConfigDict] = ConfigDict(arbitrary_types_allowed=True, defer_build=True)

    result: Any = None
    """The tool's value."""
    artifacts: list[ArtifactRef] = []
    """References to the large or binary parts stored apart, in the order found."""


@dataclass(frozen=True, slots=True)
class ToolCallContext:
    """The caller's context of a call when it is not a planner's tool context."""

    tool_context: Mapping[str, Any] = field(default_factory=dict[str, Any])
    """``user_id``, ``tenant``, ``session_id``, ``trace_id`` (read by the connector)."""
    pause: Callable[[str, Mapping[str, Any]], Awaitable[Any]] | None = None
    """``await pause(reason, payload)`` asks a human (consent); None when nobody can answer."""


@dataclass(frozen=True, slots=True)
class ToolNodeStatistics:
    """A snapshot of one source's counters (``ToolNode.statistics()``)."""

    calls: int
    """Calls started (validated calls, not attempts)."""
    failures: int
    """Calls that ended in a ``ToolError``."""
    retries: int
    """Attempts after the first, over all calls."""
    in_flight: int
    """Attempts in flight now."""
    max_in_flight: int
    """The most attempts ever in flight at once."""
    reconnects: int
    """Sessions opened again after one was lost."""
    breaker: BreakerState
    """The circuit breaker's state (``"closed"`` when disabled)."""
