"""Session context models and merge strategies: APPEND, REPLACE, HUMAN_GATED pending patches."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar, cast

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from ._context import ContextState
from ._updates import to_json

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


class MergeStrategy(StrEnum):
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


def merge(state: ContextState, patch: ContextPatch, strategy: MergeStrategy) -> None:
    """Merge ``patch`` into ``state`` by APPEND or REPLACE with one version bump."""
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
        digest=patch.digest,
        facts=patch.facts,
        artifacts=patch.artifacts,
        sources=patch.sources,
        completed_at=patch.completed_at,
    )
    state.background_results[task_id] = cast(JsonValue, result.model_dump(mode="json"))
    state.version += 1


class ContextDesk:
    """The session's context operations: updates, explicit patches, pending patches."""

    def __init__(self, state: ContextState, max_pending: int | None) -> None:
        self.state = state
        self.max_pending = max_pending
        self.pending: dict[str, PendingPatch] = {}

    def update(
        self,
        *,
        llm_context: dict[str, JsonValue] | None,
        tool_context: dict[str, Any] | None,
        memory: dict[str, JsonValue] | None,
        artifacts: list[JsonValue] | None,
        replace: bool,
    ) -> int:
        """Merge (or replace) the given parts; one version bump iff a hashed part changed."""
        state = self.state
        for name, value in (("llm_context", llm_context), ("memory", memory)):
            if value is not None:
                to_json(value, what=name)
        if artifacts is not None:
            to_json(artifacts, what="artifacts")
        before = state.context_hash()
        if llm_context is not None:
            new = copy.deepcopy(llm_context)
            state.llm_context = new if replace else {**state.llm_context, **new}
        if memory is not None:
            new = copy.deepcopy(memory)
            state.memory = new if replace else {**state.memory, **new}
        if artifacts is not None:
            new_list = copy.deepcopy(artifacts)
            state.artifacts = new_list if replace else [*state.artifacts, *new_list]
        if tool_context is not None:
            state.tool_context = (
                dict(tool_context) if replace else {**state.tool_context, **tool_context}
            )
        if state.context_hash() != before:
            state.version += 1
        return state.version

    def apply(self, patch: ContextPatch, strategy: MergeStrategy) -> str | None:
        """Merge ``patch``; a pending patch id when it must wait (HUMAN_GATED, diverged REPLACE)."""
        source = patch.source_context_version
        diverged = source is not None and source != self.state.version
        patch = patch.model_copy(update={"context_diverged": diverged})
        if strategy is MergeStrategy.HUMAN_GATED or (
            diverged and strategy is MergeStrategy.REPLACE
        ):
            if self.max_pending is not None and len(self.pending) >= self.max_pending:
                raise PendingPatchLimit(
                    f"{len(self.pending)} patches already wait for the user "
                    f"(SessionLimits.max_pending_patches={self.max_pending}); answer one first"
                )
            pending = PendingPatch(
                patch_id=new_patch_id(), task_id=patch.task_id, patch=patch, diverged=diverged
            )
            self.pending[pending.patch_id] = pending
            return pending.patch_id
        merge(self.state, patch, strategy)
        return None

    def answer(self, patch_id: str, *, approve: bool, strategy: str | None) -> bool:
        """Apply (by ``strategy``, default APPEND) or drop a pending patch; False if unknown."""
        pending = self.pending.pop(patch_id, None)
        if pending is None:
            return False
        if approve:
            merge(self.state, pending.patch, MergeStrategy(strategy or "append"))
        return True

    def mark_consumed(self, task_ids: list[str]) -> int:
        """Mark background results consumed; how many changed (one version bump if any)."""
        changed = 0
        for task_id in task_ids:
            result = self.state.background_results.get(task_id)
            if isinstance(result, dict) and not result.get("consumed"):
                result["consumed"] = True
                changed += 1
        if changed:
            self.state.version += 1
        return changed


class PendingPatchLimit(ValueError):
    """A patch would exceed ``max_pending_patches`` (internal; reported, never leaked)."""
