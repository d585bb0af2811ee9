"""The records layout of a stored session (§9), and its update log read back.

Records under ``Scope(tenant, session=session_id)``: ``sessions.meta`` ``{sid}`` (tenant,
created_at), ``sessions.tasks`` ``{sid}/{task_id}`` (the ``TaskState`` JSON and what a restart
needs besides), ``sessions.context`` ``{sid}`` (everything but ``tool_context``),
``sessions.patches`` ``{sid}/{patch_id}``, ``sessions.groups`` ``{sid}/{group_id}`` (the
``TaskGroup`` and the members' patches waiting for its end). Logs: ``sessions.updates/{sid}``
(one ``StateUpdate`` per entry, the entry's seq its ``seq``) and ``sessions.steering/{sid}``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from penguiflow.core import DurableStore, Scope

from ._updates import StateUpdate

if TYPE_CHECKING:
    from ._engine import Engine
    from ._groups import GroupRecord
    from ._records import TaskRecord

__all__ = [
    "NS_CONTEXT",
    "NS_GROUPS",
    "NS_META",
    "NS_PATCHES",
    "NS_TASKS",
    "RecordSync",
    "StoreLog",
    "dumps",
    "encode_group",
    "encode_task",
    "steering_stream",
    "task_fingerprint",
    "updates_stream",
]

NS_META: Final = "sessions.meta"
NS_TASKS: Final = "sessions.tasks"
NS_CONTEXT: Final = "sessions.context"
NS_PATCHES: Final = "sessions.patches"
NS_GROUPS: Final = "sessions.groups"


def updates_stream(session_id: str) -> str:
    """The log of a session's updates."""
    return f"sessions.updates/{session_id}"


def steering_stream(session_id: str) -> str:
    """The log of a session's steering events and their outcomes."""
    return f"sessions.steering/{session_id}"


def dumps(data: object) -> bytes:
    return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()


def task_fingerprint(record: TaskRecord) -> Hashable:
    """What changes whenever a task's stored record must change (progress alone does not)."""
    return (
        record.status,
        record.updated_at,
        id(record.spec),
        record.cancel_reason,
        record.error,
        id(record.checkpoint),
    )


def encode_group(group: GroupRecord) -> bytes:
    """A group's stored record: its ``TaskGroup`` JSON and the patches waiting for its end."""
    return dumps(
        {
            "group": group.group.model_dump(mode="json"),
            "patches": [
                [patch.model_dump(mode="json"), strategy.value] for patch, strategy in group.patches
            ],
        }
    )


def encode_task(engine: Engine, record: TaskRecord) -> bytes:
    """A task's stored record: its ``TaskState`` JSON plus what a restart needs besides."""
    state = record.state(engine.session_id, engine.tenant)
    return dumps(
        {
            "state": state.model_dump(mode="json"),
            "order": record.order,
            "spawned_from_event_id": record.spec.spawned_from_event_id,
        }
    )


class RecordSync:
    """The session's records as last written, so each pass writes only what changed."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.tasks: dict[str, Hashable] = {}
        self.context_version: int | None = None
        self.patches: set[str] = set()
        self.groups: dict[str, Hashable] = {}
        self.meta_written = False
        self.frozen: dict[str, tuple[Hashable, bytes]] = {}  # left PAUSED: stored as it was
        # A pass looks only at tasks that may still change: a final task whose final state is
        # stored is settled and never looked at again (tasks are only ever added).
        self._open: dict[str, TaskRecord] = {}
        self._settled: set[str] = set()
        self._known = 0

    def freeze(self, record: TaskRecord) -> None:
        """Store ``record`` as it is now, whatever happens to it later (it is left PAUSED)."""
        self.frozen[record.task_id] = (task_fingerprint(record), encode_task(self.engine, record))

    def mark(self, record: TaskRecord) -> None:
        """``record`` is stored as it is now (hydrated)."""
        self.tasks[record.task_id] = task_fingerprint(record)

    def changes(self) -> list[tuple[str, str, bytes | None, Callable[[], None]]]:
        """(namespace, key, value or None to delete, commit) for each record to write."""
        engine = self.engine
        sid = engine.session_id
        out: list[tuple[str, str, bytes | None, Callable[[], None]]] = []
        if not self.meta_written:
            meta = dumps({"session_id": sid, "tenant": engine.tenant, "created_at": _utc_now()})
            out.append((NS_META, sid, meta, self._meta_done))
        records = engine.records
        if len(records) != self._known:
            self._known = len(records)
            self._open = {t: r for t, r in records.items() if t not in self._settled}
        for record in list(self._open.values()):
            if record.status is None:
                continue
            frozen = self.frozen.get(record.task_id)
            mark = task_fingerprint(record) if frozen is None else frozen[0]
            if self.tasks.get(record.task_id) == mark:
                if not record.live:
                    self._settled.add(record.task_id)
                    del self._open[record.task_id]
            else:
                out.append(
                    (
                        NS_TASKS,
                        f"{sid}/{record.task_id}",
                        encode_task(engine, record) if frozen is None else frozen[1],
                        _setter(self.tasks, record.task_id, mark),
                    )
                )
        context = engine.context
        if context.version != self.context_version:
            version = context.version
            data = dumps(
                {
                    "llm_context": context.llm_context,
                    "memory": context.memory,
                    "artifacts": context.artifacts,
                    "background_results": context.background_results,
                    "version": version,
                }
            )
            out.append((NS_CONTEXT, sid, data, lambda: setattr(self, "context_version", version)))
        pending = engine.desk.pending
        for patch_id in pending.keys() - self.patches:
            data = pending[patch_id].model_dump_json().encode()
            out.append((NS_PATCHES, f"{sid}/{patch_id}", data, _adder(self.patches, patch_id)))
        for patch_id in self.patches - pending.keys():
            out.append((NS_PATCHES, f"{sid}/{patch_id}", None, _remover(self.patches, patch_id)))
        for group_id, group in engine.groups.records.items():
            mark = (id(group.group), len(group.patches))
            if self.groups.get(group_id) != mark:
                out.append(
                    (
                        NS_GROUPS,
                        f"{sid}/{group_id}",
                        encode_group(group),
                        _setter(self.groups, group_id, mark),
                    )
                )
        return out

    def _meta_done(self) -> None:
        self.meta_written = True


def _utc_now() -> str:
    return datetime.now(UTC).isoformat()


def _setter(table: dict[str, Hashable], key: str, value: Hashable) -> Callable[[], None]:
    def commit() -> None:
        table[key] = value

    return commit


def _adder(table: set[str], key: str) -> Callable[[], None]:
    return lambda: table.add(key)


def _remover(table: set[str], key: str) -> Callable[[], None]:
    return lambda: table.discard(key)


class StoreLog:
    """A session's ``sessions.updates/{sid}`` stream, read as a replay log's source."""

    def __init__(self, store: DurableStore, session_id: str, scope: Scope) -> None:
        self.store = store
        self.stream = updates_stream(session_id)
        self.scope = scope

    async def oldest(self) -> int:
        """The oldest stored seq (a number above any head when the stream is empty)."""
        entries = await self.store.read(self.stream, 0, limit=1, scope=self.scope)
        return entries[0].seq if entries else 1 << 62

    async def read(self, after: int, limit: int) -> list[StateUpdate]:
        """Up to ``limit`` stored updates with ``seq > after``, ascending."""
        entries = await self.store.read(self.stream, after, limit=limit, scope=self.scope)
        return [StateUpdate.model_validate_json(e.value) for e in entries]

    async def last_seq(self) -> int:
        """The newest stored seq (0 for none), in O(log n) reads of one entry each."""
        read = self.store.read

        async def beyond(seq: int) -> bool:
            return bool(await read(self.stream, seq, limit=1, scope=self.scope))

        if not await beyond(0):
            return 0
        low, high = 1, 2  # beyond(low - 1) holds; find high with not beyond(high)
        while await beyond(high):
            low, high = high + 1, high * 2
        while low < high:  # the answer is in [low, high]: the largest seq that exists
            mid = (low + high + 1) // 2
            if await beyond(mid - 1):
                low = mid
            else:
                high = mid - 1
        return low
