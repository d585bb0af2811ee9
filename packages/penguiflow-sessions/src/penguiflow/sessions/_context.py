"""The context a task sees: a snapshot of the session's context taken at spawn."""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import JsonValue

__all__ = ["ContextState", "TaskContextSnapshot"]


@dataclass(kw_only=True)
class TaskContextSnapshot:
    """What a task sees of its session's context, copied when it was spawned.

    Mutating it never reaches the session, and later session changes never reach it.
    """

    llm_context: dict[str, JsonValue] = field(default_factory=dict[str, JsonValue])
    """LLM-visible context (a deep copy)."""
    tool_context: dict[str, Any] = field(default_factory=dict[str, Any])
    """In-process objects for tools (a shallow copy: clients are shared, the dict is not)."""
    memory: dict[str, JsonValue] = field(default_factory=dict[str, JsonValue])
    """Session memory (a deep copy)."""
    artifacts: list[JsonValue] = field(default_factory=list[JsonValue])
    """Session artifacts (a deep copy)."""
    background_results: list[JsonValue] = field(default_factory=list[JsonValue])
    """The background results not yet consumed (deep copies)."""
    context_version: int = 0
    """The session context version the snapshot was taken at."""
    context_hash: str = ""
    """sha256 hex of the canonical JSON of the hashed parts at that version."""
    parent_task_id: str | None = None
    """The task that spawned this one, if any."""
    spawned_from_event_id: str | None = None
    """The steering event that caused the spawn, if any."""


@dataclass
class ContextState:
    """The session's own context, which snapshots copy."""

    llm_context: dict[str, JsonValue] = field(default_factory=dict[str, JsonValue])
    tool_context: dict[str, Any] = field(default_factory=dict[str, Any])
    memory: dict[str, JsonValue] = field(default_factory=dict[str, JsonValue])
    artifacts: list[JsonValue] = field(default_factory=list[JsonValue])
    background_results: dict[str, JsonValue] = field(default_factory=dict[str, JsonValue])
    version: int = 0

    def context_hash(self) -> str:
        hashed = {
            "llm_context": self.llm_context,
            "memory": self.memory,
            "artifacts": self.artifacts,
            "background_results": self.background_results,
        }
        canonical = json.dumps(hashed, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def snapshot(
        self, *, parent_task_id: str | None, spawned_from_event_id: str | None
    ) -> TaskContextSnapshot:
        return TaskContextSnapshot(
            llm_context=copy.deepcopy(self.llm_context),
            tool_context=dict(self.tool_context),
            memory=copy.deepcopy(self.memory),
            artifacts=copy.deepcopy(self.artifacts),
            background_results=[
                copy.deepcopy(r)
                for r in self.background_results.values()
                if not (isinstance(r, dict) and r.get("consumed"))
            ],
            context_version=self.version,
            context_hash=self.context_hash(),
            parent_task_id=parent_task_id,
            spawned_from_event_id=spawned_from_event_id,
        )
