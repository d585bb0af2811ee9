"""Task groups (§7): tasks that finish together, their patches applied together at the end.

A group is OPEN while tasks join it (``spawn_task(group_id=…)``), SEALED once no more may, and
then COMPLETE when every member COMPLETEd, else FAILED. Members' context patches wait for the
group's end and then apply together, in completion order, with one version bump (the gated
ones as one bundled pending patch; none for a FAILED group with ``apply_partial=False``).
Every group change publishes ``STATUS_CHANGE{group_id, status, previous}`` with
``task_id=None``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, ClassVar, cast

import anyio
from pydantic import BaseModel, ConfigDict, Field

from ._choices import Choice
from ._errors import GroupNotFound, GroupSealed
from ._limits import check_count
from ._merge import ContextPatch, MergeStrategy
from ._patches import PendingPatchLimit
from ._tasks import TaskStatus
from ._updates import UpdateType

if TYPE_CHECKING:
    from ._engine import Engine
    from ._records import TaskRecord

__all__ = ["GroupDesk", "GroupMethods", "GroupStatus", "TaskGroup"]


def _now() -> datetime:
    return datetime.now(UTC)


class GroupStatus(Choice):
    """Where a task group is: OPEN → SEALED → COMPLETE | FAILED."""

    OPEN = "OPEN"
    """Tasks may join it."""
    SEALED = "SEALED"
    """No more tasks may join; it ends once every member is final."""
    COMPLETE = "COMPLETE"
    """Sealed, and every member COMPLETEd."""
    FAILED = "FAILED"
    """Sealed, and some member FAILED or was CANCELLED."""


class TaskGroup(BaseModel):
    """A frozen snapshot of a task group."""

    model_config: ClassVar[ConfigDict] = ConfigDict(frozen=True)

    group_id: str
    """``"grp_<hex>"``; what ``spawn_task(group_id=…)`` names."""
    name: str
    """A label for people."""
    status: GroupStatus
    """Where the group is."""
    task_ids: list[str] = Field(default_factory=list[str])
    """Its members, in join order."""
    completed_task_ids: list[str] = Field(default_factory=list[str])
    """Members that COMPLETEd, in completion order."""
    failed_task_ids: list[str] = Field(default_factory=list[str])
    """Members that FAILED or were CANCELLED, in completion order."""
    merge_strategy: MergeStrategy | None = None
    """The strategy for every member's patch (None: each member's own)."""
    apply_partial: bool = True
    """Whether a FAILED group still applies its completed members' patches."""
    created_at: datetime = Field(default_factory=_now)
    """When it was created."""
    sealed_at: datetime | None = None
    """When it was sealed."""
    completed_at: datetime | None = None
    """When it reached COMPLETE or FAILED."""


@dataclass(eq=False)
class GroupRecord:
    """A group's mutable state; the world sees ``TaskGroup``."""

    group: TaskGroup
    members: list[TaskRecord] = field(default_factory=list["TaskRecord"])
    patches: list[tuple[ContextPatch, MergeStrategy]] = field(
        default_factory=list[tuple[ContextPatch, MergeStrategy]]
    )
    done: anyio.Event = field(default_factory=anyio.Event)

    def change(self, **fields: object) -> None:
        self.group = self.group.model_copy(update=fields)


class GroupDesk:
    """The session's task groups and their ends."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.records: dict[str, GroupRecord] = {}

    def get(self, group_id: str) -> GroupRecord:
        record = self.records.get(group_id)
        if record is None:
            raise GroupNotFound(
                f"session {self.engine.session_id!r} has no task group {group_id!r}; "
                "create it with create_group() first"
            )
        return record

    def create(
        self, name: str, merge_strategy: MergeStrategy | None, apply_partial: bool
    ) -> TaskGroup:
        if not isinstance(cast(object, name), str) or not name:
            raise ValueError(f"a group name must be a non-empty str, not {name!r}")
        group = TaskGroup(
            group_id=f"grp_{uuid.uuid4().hex}",
            name=name,
            status=GroupStatus.OPEN,
            merge_strategy=merge_strategy,
            apply_partial=apply_partial,
        )
        self.records[group.group_id] = GroupRecord(group)
        self._publish(group, None)
        return group

    def admit(self, group_id: str) -> GroupRecord:
        """The group a new task may join; raises before anything is recorded."""
        record = self.get(group_id)
        if record.group.status is not GroupStatus.OPEN:
            raise GroupSealed(
                f"task group {group_id!r} is {record.group.status}; no task can join it now — "
                "create a new group",
                group_id=group_id,
            )
        check_count(
            self.engine.limits,
            "max_tasks_per_group",
            len(record.members),
            owner=f"task group {group_id!r}",
            what="tasks",
        )
        return record

    def join(self, record: GroupRecord, task: TaskRecord) -> None:
        record.members.append(task)
        record.change(task_ids=[*record.group.task_ids, task.task_id])

    def collect(self, task: TaskRecord, patch: ContextPatch) -> None:
        """Keep a finished member's patch for the group's end."""
        assert task.spec.group_id is not None
        record = self.records[task.spec.group_id]
        record.patches.append((patch, record.group.merge_strategy or task.spec.merge_strategy))

    def member_finished(self, task: TaskRecord) -> None:
        """A member reached a final status: note it, and end the group if it may."""
        if task.spec.group_id is None:
            return
        record = self.records[task.spec.group_id]
        group = record.group
        if task.status is TaskStatus.COMPLETE:
            record.change(completed_task_ids=[*group.completed_task_ids, task.task_id])
        else:
            record.change(failed_task_ids=[*group.failed_task_ids, task.task_id])
        self._maybe_end(record)

    def seal(self, group_id: str) -> TaskGroup:
        record = self.get(group_id)
        if record.group.status is GroupStatus.OPEN:
            record.change(status=GroupStatus.SEALED, sealed_at=_now())
            self._publish(record.group, GroupStatus.OPEN)
            self._maybe_end(record)
        return record.group

    def _maybe_end(self, record: GroupRecord) -> None:
        group = record.group
        if group.status is not GroupStatus.SEALED or any(m.live for m in record.members):
            return
        status = GroupStatus.FAILED if group.failed_task_ids else GroupStatus.COMPLETE
        if record.patches and (status is GroupStatus.COMPLETE or group.apply_partial):
            desk = self.engine.desk
            try:
                merged = desk.apply(record.patches, group_id=group.group_id)
            except PendingPatchLimit as exc:
                desk.refused(
                    None,
                    f"the context patches of task group {group.group_id!r} were dropped: {exc}",
                )
            else:
                desk.announce(merged)
        record.patches.clear()
        record.change(status=status, completed_at=_now())
        self._publish(record.group, GroupStatus.SEALED)
        record.done.set()

    def _publish(self, group: TaskGroup, previous: GroupStatus | None) -> None:
        self.engine.publish(
            None,
            UpdateType.STATUS_CHANGE,
            {
                "group_id": group.group_id,
                "status": group.status.value,
                "previous": previous.value if previous is not None else None,
            },
        )


class GroupMethods:
    """Task group operations of :class:`StreamingSession` (§7)."""

    _engine: Engine

    async def create_group(
        self,
        name: str,
        *,
        merge_strategy: MergeStrategy | str | None = None,
        apply_partial: bool = True,
    ) -> TaskGroup:
        """Create an OPEN task group; tasks join with ``spawn_task(group_id=…)``.

        ``merge_strategy`` applies to every member's patch (None: each member's own);
        ``apply_partial=False`` drops all patches when the group ends FAILED.

        Raises:
            SessionClosed: the session is not open.
            ValueError: an empty ``name`` or a bad ``merge_strategy``.
        """
        self._engine.require_open()
        kind = MergeStrategy(merge_strategy) if merge_strategy is not None else None
        return self._engine.groups.create(name, kind, bool(apply_partial))

    async def seal_group(self, group_id: str) -> TaskGroup:
        """No more tasks may join; the group ends once every member is final.

        Sealing a sealed or ended group changes nothing.

        Raises:
            GroupNotFound: no such group.
        """
        return self._engine.groups.seal(group_id)

    async def wait_group(self, group_id: str) -> TaskGroup:
        """The group once sealed, every member final and its patches applied.

        Raises:
            GroupNotFound: no such group.
        """
        record = self._engine.groups.get(group_id)
        await record.done.wait()
        return record.group

    async def cancel_group(self, group_id: str, *, reason: str | None = None) -> int:
        """Seal the group and cancel its live members; how many this call cancelled.

        Raises:
            GroupNotFound: no such group.
        """
        engine = self._engine
        record = engine.groups.get(group_id)
        engine.groups.seal(group_id)
        cancelled = await engine.cancel_many(
            list(record.members), reason=reason or "group_cancelled"
        )
        return sum(cancelled)

    def get_group(self, group_id: str) -> TaskGroup | None:
        """A frozen snapshot of the group, or None if there is no such group."""
        record = self._engine.groups.records.get(group_id)
        return record.group if record is not None else None

    def list_groups(self) -> list[TaskGroup]:
        """Frozen snapshots of the groups, in creation order."""
        return [r.group for r in self._engine.groups.records.values()]
