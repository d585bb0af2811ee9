"""The context half of StreamingSession: get/update the context, merge and gate patches."""

from __future__ import annotations

from typing import Any

from pydantic import JsonValue

from ._engine import Engine
from ._errors import PatchNotFound
from ._merge import ContextPatch, MergeStrategy, PendingPatch, SessionContext, to_session_context
from ._patches import PendingPatchLimit

__all__ = ["ContextMethods"]


class ContextMethods:
    """Session context operations of :class:`StreamingSession` (§6)."""

    _engine: Engine

    def get_context(self) -> SessionContext:
        """A frozen copy of the session context (tasks keep their own spawn-time snapshot)."""
        return to_session_context(self._engine.context)

    async def update_context(
        self,
        *,
        llm_context: dict[str, JsonValue] | None = None,
        tool_context: dict[str, Any] | None = None,
        memory: dict[str, JsonValue] | None = None,
        artifacts: list[JsonValue] | None = None,
        replace: bool = False,
    ) -> SessionContext:
        """Merge top-level keys into the context (``replace=True``: replace whole parts).

        ``version`` grows by exactly one when a hashed part changed; a no-op or a
        ``tool_context``-only call keeps it. Returns the new context.

        Raises:
            TypeError: ``llm_context``, ``memory`` or ``artifacts`` is not JSON data.
        """
        self._engine.desk.update(
            llm_context=llm_context,
            tool_context=tool_context,
            memory=memory,
            artifacts=artifacts,
            replace=replace,
        )
        await self._engine.outbox.flush()
        return self.get_context()

    def pending_patches(self) -> list[PendingPatch]:
        """The context patches waiting for the user, oldest first."""
        return list(self._engine.desk.pending.values())

    async def apply_context_patch(
        self, patch: ContextPatch, *, strategy: MergeStrategy | str = MergeStrategy.APPEND
    ) -> str | None:
        """Merge ``patch`` by ``strategy``; the ``patch_id`` if it must wait, else None.

        APPEND and REPLACE apply now. HUMAN_GATED, or REPLACE of a patch whose
        ``source_context_version`` is not the current one, waits as a pending patch and a
        ``CHECKPOINT{kind:"context_patch"}`` is published; a diverged APPEND applies with a
        warning NOTIFICATION.

        Raises:
            ValueError: a bad ``strategy``, or ``max_pending_patches`` patches already wait.
        """
        desk = self._engine.desk
        try:
            merged = desk.apply([(patch, MergeStrategy(strategy))])
        except PendingPatchLimit as exc:
            raise ValueError(str(exc)) from None
        desk.announce(merged)
        await self._engine.outbox.flush()
        return merged.patch_id

    async def apply_pending_patch(
        self, patch_id: str, *, strategy: MergeStrategy | str | None = None
    ) -> SessionContext:
        """Apply a pending patch (by ``strategy``, default APPEND); the new context.

        Raises:
            PatchNotFound: no such pending patch.
        """
        kind = MergeStrategy(strategy).value if strategy is not None else None
        if not self._engine.desk.answer(patch_id, approve=True, strategy=kind):
            raise PatchNotFound(
                f"session {self._engine.session_id!r} has no pending patch {patch_id!r}"
            )
        await self._engine.outbox.flush()
        return self.get_context()

    async def reject_pending_patch(self, patch_id: str, *, reason: str | None = None) -> None:
        """Drop a pending patch.

        Raises:
            PatchNotFound: no such pending patch.
        """
        if not self._engine.desk.answer(patch_id, approve=False, strategy=None):
            raise PatchNotFound(
                f"session {self._engine.session_id!r} has no pending patch {patch_id!r}"
            )
        await self._engine.outbox.flush()

    async def mark_background_consumed(self, task_ids: list[str]) -> int:
        """Mark background results consumed (later snapshots omit them); how many changed."""
        changed = self._engine.desk.mark_consumed(task_ids)
        await self._engine.outbox.flush()
        return changed
