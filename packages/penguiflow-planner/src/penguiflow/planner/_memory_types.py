"""The value types of short-term memory: configuration, keys, turns, health and snapshots."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal
from urllib.parse import quote

from ._llm import JSONLLMClient

__all__ = [
    "ConversationTurn",
    "MemoryBudget",
    "MemoryHealth",
    "MemoryIsolation",
    "MemoryKey",
    "MemorySnapshot",
    "MemoryStrategy",
    "OverflowPolicy",
    "ShortTermMemoryConfig",
    "TrajectoryDigest",
    "quoted",
]

MemoryStrategy = Literal["none", "truncation", "rolling_summary"]
"""``"none"`` (off), ``"truncation"`` (the last turns only) or ``"rolling_summary"``."""

OverflowPolicy = Literal["truncate_oldest", "truncate_summary", "error"]
"""What loading does when memory is over ``total_max_tokens``."""

_STRATEGIES = ("none", "truncation", "rolling_summary")
_POLICIES = ("truncate_oldest", "truncate_summary", "error")


def _check_count(owner: str, name: str, value: object, *, optional: bool) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        unlimited = " (or None for unlimited)" if optional else ""
        raise ValueError(f"{owner}.{name} must be an int >= 0{unlimited}, got {value!r}")


@dataclass(frozen=True, slots=True)
class MemoryBudget:
    """How much memory a run sees, and what happens when it is over.

    Limits are ``int | None`` (None = unlimited).
    """

    full_zone_turns: int = 5
    """Latest turns shown verbatim as ``recent_turns``; older ones leave the full zone when a
    turn is recorded (dropped with ``"truncation"``, pending a summary with
    ``"rolling_summary"``)."""
    summary_max_tokens: int | None = 1000
    """Ceiling on the rolling summary, checked when a summary is written (the summariser is
    asked to stay under it; a longer answer keeps its most recent part)."""
    total_max_tokens: int | None = 10000
    """Ceiling on the whole memory message (``token_counter.count_messages``), checked at every
    load; over it, ``overflow_policy`` applies."""
    overflow_policy: OverflowPolicy = "truncate_oldest"
    """``"truncate_oldest"``: drop the oldest pending, then recent turns, then shorten the
    summary; ``"truncate_summary"``: shorten the summary first, then drop the oldest turns;
    ``"error"``: raise :class:`~penguiflow.planner.MemoryBudgetExceeded`."""

    def __post_init__(self) -> None:
        _check_count("MemoryBudget", "full_zone_turns", self.full_zone_turns, optional=False)
        _check_count("MemoryBudget", "summary_max_tokens", self.summary_max_tokens, optional=True)
        _check_count("MemoryBudget", "total_max_tokens", self.total_max_tokens, optional=True)
        if self.overflow_policy not in _POLICIES:
            raise ValueError(
                f"MemoryBudget.overflow_policy must be one of {', '.join(map(repr, _POLICIES))}, "
                f"got {self.overflow_policy!r}"
            )


@dataclass(frozen=True, slots=True)
class MemoryIsolation:
    """Where a run's memory key comes from: fail-closed by default."""

    require_explicit_key: bool = True
    """Only an explicit ``memory_key`` enables memory; with False, a ``tool_context`` holding all
    three of the keys below (non-empty strings) also does."""
    tenant_key: str = "tenant_id"
    """The ``tool_context`` (or key mapping) entry naming the tenant."""
    user_key: str = "user_id"
    """The entry naming the user."""
    session_key: str = "session_id"
    """The entry naming the session."""

    def __post_init__(self) -> None:
        for name in ("tenant_key", "user_key", "session_key"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(
                    f"MemoryIsolation.{name} must be a non-empty string, got {value!r}"
                )


@dataclass(frozen=True, slots=True)
class ShortTermMemoryConfig:
    """Short-term memory of a planner: what is kept, how it is budgeted, how it is keyed."""

    strategy: MemoryStrategy = "none"
    """``"none"``: memory off; ``"truncation"``: the last ``full_zone_turns`` turns;
    ``"rolling_summary"``: those plus a summary of older turns, written in the background."""
    budget: MemoryBudget = field(default_factory=MemoryBudget)
    """Sizes and the overflow policy."""
    isolation: MemoryIsolation = field(default_factory=MemoryIsolation)
    """Where the memory key comes from."""
    summarizer: JSONLLMClient | None = None
    """The client of ``memory_summary`` calls (None: the planner's client)."""
    include_trajectory_digest: bool = True
    """Show each turn's ``trajectory_digest`` to the model (and the summariser)."""
    ttl_s: float | None = 86_400
    """Seconds the memory of a key lives after its last write (None: no expiry)."""
    retry_attempts: int = 3
    """Retries of a failed summary before memory is ``DEGRADED``."""
    retry_backoff_base_s: float = 2.0
    """Wait before the first retry; each later one waits twice as long."""

    def __post_init__(self) -> None:
        if self.strategy not in _STRATEGIES:
            raise ValueError(
                "ShortTermMemoryConfig.strategy must be one of "
                f"{', '.join(map(repr, _STRATEGIES))}, got {self.strategy!r}"
            )
        if not isinstance(self.budget, MemoryBudget):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(f"budget must be a MemoryBudget, got {self.budget!r}")
        if not isinstance(self.isolation, MemoryIsolation):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(f"isolation must be a MemoryIsolation, got {self.isolation!r}")
        if self.summarizer is not None and not callable(getattr(self.summarizer, "complete", None)):
            raise TypeError(
                f"summarizer must have an async complete() method, got {self.summarizer!r}"
            )
        if self.ttl_s is not None and (not math.isfinite(self.ttl_s) or self.ttl_s <= 0):
            raise ValueError(f"ShortTermMemoryConfig.ttl_s must be > 0 or None, got {self.ttl_s!r}")
        _check_count("ShortTermMemoryConfig", "retry_attempts", self.retry_attempts, optional=False)
        base = self.retry_backoff_base_s
        if not math.isfinite(base) or base < 0:
            raise ValueError(
                f"ShortTermMemoryConfig.retry_backoff_base_s must be >= 0, got {base!r}"
            )


def quoted(part: str) -> str:
    """``part`` with everything but letters, digits and ``_.-~`` percent-escaped."""
    # Escaping "/" and ":" keeps keys of different owners apart ("a/b"+"c" is not "a"+"b/c").
    return quote(part, safe="")


@dataclass(frozen=True, slots=True)
class MemoryKey:
    """Whose memory: a tenant, a user of it, one session of that user.

    Every field is a non-empty string; no key reads another's memory.
    """

    tenant_id: str
    """The tenant."""
    user_id: str
    """The user within the tenant."""
    session_id: str
    """The session of that user."""

    def __post_init__(self) -> None:
        for name in ("tenant_id", "user_id", "session_id"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"MemoryKey.{name} must be a non-empty string, got {value!r}")

    def composite(self) -> str:
        """The key as one string, ``"tenant:user:session"`` (``:``, ``/``, ``%`` escaped)."""
        return ":".join(quoted(p) for p in (self.tenant_id, self.user_id, self.session_id))


def _json_safe(owner: str, name: str, value: object) -> None:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{owner}.{name} must be JSON-serialisable: {exc}") from None


@dataclass(frozen=True, slots=True)
class TrajectoryDigest:
    """What a run did, in brief: kept with its turn so later runs know how an answer was found."""

    tools_invoked: tuple[str, ...] = ()
    """The tools the run called, in order."""
    observations_summary: str = ""
    """What those calls returned, in a few words."""
    reasoning_summary: str | None = None
    """How the run got to its answer, if summarised."""
    artifacts_refs: tuple[str, ...] = ()
    """References to artifacts the run produced."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "tools_invoked", tuple(self.tools_invoked))
        object.__setattr__(self, "artifacts_refs", tuple(self.artifacts_refs))


@dataclass(frozen=True, slots=True)
class ConversationTurn:
    """One finished exchange: what the user asked and what the planner answered."""

    user_message: str
    """The run's query."""
    assistant_response: str
    """The run's answer, as text."""
    trajectory_digest: TrajectoryDigest | None = None
    """What the run did (shown when ``include_trajectory_digest``)."""
    artifacts_shown: Mapping[str, Any] = field(default_factory=lambda: {})
    """Artifacts shown to the model with the turn (JSON-serialisable)."""
    artifacts_hidden_refs: tuple[str, ...] = ()
    """References to artifacts kept out of the prompt."""
    ts: float | None = None
    """When the turn finished (None: stamped by ``record`` from its ``time_source``)."""

    def __post_init__(self) -> None:
        for name in ("user_message", "assistant_response"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"ConversationTurn.{name} must be a str")
        _json_safe("ConversationTurn", "artifacts_shown", dict(self.artifacts_shown))
        object.__setattr__(self, "artifacts_shown", dict(self.artifacts_shown))
        object.__setattr__(self, "artifacts_hidden_refs", tuple(self.artifacts_hidden_refs))


class MemoryHealth(StrEnum):
    """How the rolling summary of a key is doing."""

    HEALTHY = "healthy"
    """Summaries succeed (or none was needed)."""
    RETRY = "retry"
    """A summary failed and is being retried; pending turns are still shown."""
    DEGRADED = "degraded"
    """Retries ran out: memory falls back to truncation (pending turns are kept, not shown)."""
    RECOVERING = "recovering"
    """A summary is being tried again after ``DEGRADED``; success makes memory ``HEALTHY``."""


@dataclass(frozen=True, slots=True)
class MemorySnapshot:
    """The memory of one key as stored, at one moment."""

    turns: tuple[ConversationTurn, ...]
    """The full zone: the latest turns, oldest first."""
    pending_turns: tuple[ConversationTurn, ...]
    """Turns that left the full zone and wait to be folded into ``summary``, oldest first."""
    summary: str
    """The rolling summary ("" when none)."""
    health: MemoryHealth
    """The health of the rolling summary."""
