"""The session's context desk: updates, patch merges by strategy, pending patches.

One mechanism for every way a patch arrives: ``apply_context_patch``, a completed task's
``TaskResult.context_patch`` and a task group's patches at its end all go through
:meth:`ContextDesk.apply` (merge now, or wait as a pending patch) and
:meth:`ContextDesk.announce` (the ``context_patch`` CHECKPOINT, or the diverged warning).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import JsonValue

from ._context import ContextState, TaskContextSnapshot
from ._merge import ContextPatch, MergeStrategy, PendingPatch, merge, new_patch_id
from ._tasks import NotificationPayload
from ._updates import UpdateType, to_json

__all__ = ["ContextDesk", "Merged", "PendingPatchLimit", "fill_patch"]

Publish = Callable[[str | None, UpdateType, JsonValue], object]


class PendingPatchLimit(ValueError):
    """A patch would exceed ``max_pending_patches`` (reported; a task still completes)."""


@dataclass(frozen=True)
class Merged:
    """What :meth:`ContextDesk.apply` did with one patch (or a group's bundle)."""

    task_id: str | None
    patch_id: str | None
    """The pending patch it became, or None when it merged now."""
    digest: list[str]
    diverged: bool
    source_version: int | None


def fill_patch(
    patch: ContextPatch,
    *,
    task_id: str,
    spawned_from_event_id: str | None,
    snapshot: TaskContextSnapshot,
) -> ContextPatch:
    """``patch`` with its None fields filled from the task and its spawn-time snapshot."""
    filled: dict[str, Any] = {}
    if patch.task_id is None:
        filled["task_id"] = task_id
    if patch.spawned_from_event_id is None:
        filled["spawned_from_event_id"] = spawned_from_event_id
    if patch.source_context_version is None:
        filled["source_context_version"] = snapshot.context_version
    if patch.source_context_hash is None:
        filled["source_context_hash"] = snapshot.context_hash
    return patch.model_copy(update=filled) if filled else patch


class ContextDesk:
    """The session's context operations: updates, patch merges, pending patches."""

    def __init__(self, state: ContextState, max_pending: int | None, publish: Publish) -> None:
        self.state = state
        self.max_pending = max_pending
        self.pending: dict[str, PendingPatch] = {}
        self._publish = publish

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

    def _diverged(self, patch: ContextPatch) -> bool:
        source = patch.source_context_version
        return source is not None and source != self.state.version

    def apply(
        self,
        items: Sequence[tuple[ContextPatch, MergeStrategy]],
        *,
        group_id: str | None = None,
    ) -> Merged:
        """Merge the patches now (one version bump in all), or keep the ones that must wait.

        HUMAN_GATED patches, and REPLACE patches whose ``source_context_version`` is not the
        current one, wait as one pending patch (a group's bundle); the others merge now.

        Raises:
            PendingPatchLimit: a patch would wait while ``max_pending_patches`` already do;
                nothing changed.
        """
        now: list[tuple[ContextPatch, MergeStrategy]] = []
        gated: list[ContextPatch] = []
        diverged = False
        for patch, strategy in items:
            patch_diverged = self._diverged(patch)
            diverged = diverged or patch_diverged
            patch = patch.model_copy(update={"context_diverged": patch_diverged})
            if strategy is MergeStrategy.HUMAN_GATED or (
                patch_diverged and strategy is MergeStrategy.REPLACE
            ):
                gated.append(patch)
            else:
                now.append((patch, strategy))
        if gated and self.max_pending is not None and len(self.pending) >= self.max_pending:
            raise PendingPatchLimit(
                f"{len(self.pending)} patches already wait for the user "
                f"(SessionLimits.max_pending_patches={self.max_pending}); answer one first"
            )
        first = items[0][0] if items else None
        task_id = first.task_id if first is not None and group_id is None else None
        merge(self.state, now, group_id=group_id)
        patch_id: str | None = None
        if gated:
            pending = _pending(gated, task_id=task_id, group_id=group_id)
            self.pending[pending.patch_id] = pending
            patch_id = pending.patch_id
        return Merged(
            task_id=task_id,
            patch_id=patch_id,
            digest=[line for p in gated for line in p.digest],
            diverged=diverged,
            source_version=first.source_context_version if first is not None else None,
        )

    def announce(self, merged: Merged) -> None:
        """Publish what a merge asks of the user: the CHECKPOINT, or the diverged warning."""
        if merged.patch_id is not None:
            pending = self.pending[merged.patch_id]
            content: dict[str, JsonValue] = {
                "kind": "context_patch",
                "patch_id": merged.patch_id,
                "task_id": merged.task_id,
                "digest": list[JsonValue](merged.digest),
                "diverged": pending.diverged,
            }
            if pending.group_id is not None:
                content["group_id"] = pending.group_id
            self._publish(merged.task_id, UpdateType.CHECKPOINT, content)
        elif merged.diverged:
            note = NotificationPayload(
                severity="warning",
                title="Context changed while the task ran",
                body=f"merged a patch from context version {merged.source_version} into "
                f"version {self.state.version - 1}",
            )
            self._publish(merged.task_id, UpdateType.NOTIFICATION, note.model_dump(mode="json"))

    def refused(self, task_id: str | None, reason: str) -> None:
        """Report a patch refused at ``max_pending_patches`` (the task still completes)."""
        note = NotificationPayload(
            severity="error",
            code="PENDING_PATCH_LIMIT",
            title="Context patch refused",
            body=reason,
        )
        self._publish(task_id, UpdateType.NOTIFICATION, note.model_dump(mode="json"))

    def answer(self, patch_id: str, *, approve: bool, strategy: str | None) -> bool:
        """Apply (by ``strategy``, default APPEND) or drop a pending patch; False if unknown."""
        pending = self.pending.pop(patch_id, None)
        if pending is None:
            return False
        if approve:
            kind = MergeStrategy(strategy or "append")
            if kind is MergeStrategy.HUMAN_GATED:
                kind = MergeStrategy.APPEND
            patches = pending.bundle or [pending.patch]
            merge(self.state, [(p, kind) for p in patches], group_id=pending.group_id)
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


def _pending(
    gated: list[ContextPatch], *, task_id: str | None, group_id: str | None
) -> PendingPatch:
    diverged = any(p.context_diverged for p in gated)
    if group_id is None and len(gated) == 1:
        return PendingPatch(
            patch_id=new_patch_id(), task_id=task_id, patch=gated[0], diverged=diverged
        )
    summary = ContextPatch(
        digest=[line for p in gated for line in p.digest],
        context_diverged=diverged,
        sources=[s for p in gated for s in p.sources],
        artifacts=[a for p in gated for a in p.artifacts],
    )
    return PendingPatch(
        patch_id=new_patch_id(),
        task_id=task_id,
        patch=summary,
        diverged=diverged,
        group_id=group_id,
        bundle=gated,
    )
