"""Session context models and merge strategies: APPEND, REPLACE, HUMAN_GATED pending patches."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, cast

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from ._choices import Choice
from ._context import ContextState

__all__ = [
    "BackgroundResult",
    "ContextPatch",
    "MergeStrategy",
    "PendingPatch",
    "SessionContext",
    "merge",
]


def _now() -> datetime:
    return datetime.now(UTC)


class MergeStrategy(Choice):
    """How a completed task's :class:`ContextPatch` reaches the session context."""

    APPEND = "append"
    """Each ``facts[k]`` is appended to ``llm_context[k]``."""
    REPLACE = "replace"
    """Each ``facts[k]`` replaces ``llm_context[k]``."""
    HUMAN_GATED = "human_gated"
    """The patch waits as a :class:`PendingPatch` until the user approves or rejects it."""


class BackgroundResult(BaseModel):
    """What a merged patch left in ``SessionContext.background_results``."""

    model_config: ClassVar[ConfigDict] = ConfigDict(frozen=True)

    task_id: str
    """The task whose patch it was."""
    group_id: str | None = None
    """Its task group, if any."""
    digest: list[str] = Field(default_factory=list[str])
    """Short summary lines."""
    facts: dict[str, JsonValue] = Field(default_factory=dict[str, JsonValue])
    """The facts it contributed."""
    artifacts: list[JsonValue] = Field(default_factory=list[JsonValue])
    """Its artifacts."""
    sources: list[JsonValue] = Field(default_factory=list[JsonValue])
    """Its sources."""
    consumed: bool = False
    """Whether a later turn has taken it into account (``mark_background_consumed``)."""
    completed_at: datetime = Field(default_factory=_now)
    """When its task completed."""


class ContextPatch(BaseModel):
    """A completed task's contribution to the session context."""

    model_config: ClassVar[ConfigDict] = ConfigDict(frozen=True)

    task_id: str | None = None
    """The task it comes from (filled from the task when None)."""
    spawned_from_event_id: str | None = None
    """The steering event that spawned that task, if any."""
    source_context_version: int | None = None
    """The context version the task saw (filled from its snapshot when None)."""
    source_context_hash: str | None = None
    """The context hash the task saw (filled from its snapshot when None)."""
    context_diverged: bool = False
    """Whether the context changed since the task's snapshot (set when merged)."""
    completed_at: datetime = Field(default_factory=_now)
    """When the task completed."""
    digest: list[str] = Field(default_factory=list[str])
    """Short summary lines."""
    facts: dict[str, JsonValue] = Field(default_factory=dict[str, JsonValue])
    """Keys to merge into ``llm_context``."""
    artifacts: list[JsonValue] = Field(default_factory=list[JsonValue])
    """Artifacts to record."""
    sources: list[JsonValue] = Field(default_factory=list[JsonValue])
    """Sources to record."""
    recommended_next_steps: list[str] = Field(default_factory=list[str])
    """What the task suggests doing next."""
    assumptions: list[str] = Field(default_factory=list[str])
    """What the task assumed."""


class PendingPatch(BaseModel):
    """A patch waiting for the user's APPROVE/REJECT."""

    model_config: ClassVar[ConfigDict] = ConfigDict(frozen=True)

    patch_id: str
    """What APPROVE/REJECT ``{patch_id}`` names."""
    task_id: str | None
    """The task it comes from."""
    patch: ContextPatch
    """The patch itself."""
    created_at: datetime = Field(default_factory=_now)
    """When it started waiting."""
    diverged: bool = False
    """Whether the context had changed since the task's snapshot."""
    group_id: str | None = None
    """The task group whose members' patches it bundles, if any."""
    bundle: list[ContextPatch] = Field(default_factory=list[ContextPatch])
    """A group's gated patches, applied together in this order (``patch`` sums them up)."""


class SessionContext(BaseModel):
    """A copy of the session's context; ``context_hash`` covers all but ``tool_context``."""

    model_config: ClassVar[ConfigDict] = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    llm_context: dict[str, JsonValue]
    """LLM-visible context."""
    tool_context: dict[str, Any]
    """In-process objects for tools (never persisted, never hashed)."""
    memory: dict[str, JsonValue]
    """Session memory."""
    artifacts: list[JsonValue]
    """Session artifacts."""
    background_results: dict[str, BackgroundResult]
    """Merged background results by task id."""
    version: int
    """Grows by one per change of the hashed parts."""
    context_hash: str
    """sha256 hex of the canonical JSON of llm_context, memory, artifacts, background_results."""


def to_session_context(state: ContextState) -> SessionContext:
    """A frozen copy of ``state``."""
    return SessionContext(
        llm_context=copy.deepcopy(state.llm_context),
        tool_context=dict(state.tool_context),
        memory=copy.deepcopy(state.memory),
        artifacts=copy.deepcopy(state.artifacts),
        background_results={
            k: BackgroundResult.model_validate(v) for k, v in state.background_results.items()
        },
        version=state.version,
        context_hash=state.context_hash(),
    )


def new_patch_id() -> str:
    """A fresh pending patch id."""
    return f"patch_{uuid.uuid4().hex}"


def merge(
    state: ContextState,
    items: Sequence[tuple[ContextPatch, MergeStrategy]],
    *,
    group_id: str | None = None,
) -> None:
    """Merge each patch by its APPEND or REPLACE, in order, with one version bump in all."""
    for patch, strategy in items:
        _merge_one(state, patch, strategy, group_id)
    if items:
        state.version += 1


def _merge_one(
    state: ContextState, patch: ContextPatch, strategy: MergeStrategy, group_id: str | None
) -> None:
    llm = state.llm_context
    for key, value in patch.facts.items():
        if strategy is MergeStrategy.REPLACE:
            llm[key] = copy.deepcopy(value)
        elif key not in llm:
            llm[key] = [copy.deepcopy(value)]
        else:
            current = llm[key]
            if isinstance(current, list):
                current.append(copy.deepcopy(value))
            else:
                llm[key] = [current, copy.deepcopy(value)]
    task_id = patch.task_id or new_patch_id()
    result = BackgroundResult(
        task_id=task_id,
        group_id=group_id,
        digest=patch.digest,
        facts=patch.facts,
        artifacts=patch.artifacts,
        sources=patch.sources,
        completed_at=patch.completed_at,
    )
    state.background_results[task_id] = cast(JsonValue, result.model_dump(mode="json"))
