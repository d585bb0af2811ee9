"""SessionManager: many sessions in one task group, shared by id, evicted when idle.

Each open session is held by one host task of the manager's task group (``async with session``
until the session closes), so every task a session starts is the manager's too and leaving the
manager closes them all. Per session id the manager keeps one ``_Entry``; the host removes it
when its session ends, however it ended, so nothing kept per id outlives its session.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import ClassVar, Self

import anyio
from anyio.abc import TaskGroup
from pydantic import BaseModel, ConfigDict

from penguiflow.core import DurableStore

from ._engine import Engine
from ._errors import SessionClosed, SessionLimitExceeded, SessionTenantMismatch
from ._group_exit import exit_task_group
from ._hydrate import ResumablePipeline
from ._limits import SessionLimits
from ._session import StreamingSession
from ._steering import ControlPolicy
from ._tasks import TaskStatus

__all__ = ["ManagerStatistics", "SessionManager"]

_log = logging.getLogger("penguiflow.sessions")


def _engine(session: StreamingSession) -> Engine:
    # The manager hosts sessions, so it watches their lifecycle (same package, one owner).
    return session._engine  # pyright: ignore[reportPrivateUsage]


class ManagerStatistics(BaseModel):
    """A frozen snapshot of a :class:`SessionManager`'s counters."""

    model_config: ClassVar[ConfigDict] = ConfigDict(frozen=True)

    sessions: int
    """Sessions open now."""
    created: int
    """Sessions opened so far (a rehydrated one counts again)."""
    evicted: int
    """Sessions closed for being idle or least recently used."""


@dataclass(eq=False)
class _Entry:
    session: StreamingSession
    tenant: str
    last_active: float
    ready: anyio.Event = field(default_factory=anyio.Event)
    gone: anyio.Event = field(default_factory=anyio.Event)
    error: BaseException | None = None
    closing: bool = False
    seen: tuple[int, int, int] = (0, 0, 0)  # (updates, steering, subscribers) at last look


class SessionManager:
    """Sessions by id for a server: ``async with SessionManager() as manager:``.

    ``get_or_create`` opens a session once (concurrent callers share it; with a ``store`` it
    hydrates); a sweep every ``sweep_interval_s`` closes sessions idle for
    ``idle_timeout_s`` by ``clock``; at ``max_sessions`` the least recently used idle session
    makes room. Leaving the block closes every session.
    """

    def __init__(
        self,
        *,
        store: DurableStore | None = None,
        limits: SessionLimits | None = None,
        control_policy: ControlPolicy | None = None,
        pipelines: Sequence[ResumablePipeline] = (),
        idle_timeout_s: float | None = 1800,
        sweep_interval_s: float | None = 60,
        max_sessions: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for name, value in (
            ("idle_timeout_s", idle_timeout_s),
            ("sweep_interval_s", sweep_interval_s),
        ):
            if value is not None and not 0 < value < math.inf:
                raise ValueError(
                    f"{name} must be a positive number of seconds or None, not {value!r}"
                )
        if max_sessions is not None and (isinstance(max_sessions, bool) or max_sessions <= 0):
            raise ValueError(f"max_sessions must be a positive int or None, not {max_sessions!r}")
        self._store = store
        self._limits = limits or SessionLimits()
        self._policy = control_policy
        self._pipelines = tuple(pipelines)
        self._idle_timeout_s = idle_timeout_s
        self._sweep_interval_s = sweep_interval_s
        self._max_sessions = max_sessions
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._tg: TaskGroup | None = None
        self._phase = "new"
        self._created = 0
        self._evicted = 0

    @property
    def is_running(self) -> bool:
        """Whether the manager was entered and has not been left."""
        return self._phase == "open"

    @property
    def store(self) -> DurableStore | None:
        """The store every session of this manager uses, if any."""
        return self._store

    # ----------------------------------------------------------------------- lifecycle
    async def __aenter__(self) -> Self:
        if self._phase != "new":
            raise RuntimeError("a SessionManager can be entered once; make a new one")
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        self._phase = "open"
        if self._sweep_interval_s is not None and self._idle_timeout_s is not None:
            tg.start_soon(self._sweep, self._sweep_interval_s, name="penguiflow.sessions sweep")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._tg is not None
        self._phase = "closing"
        try:
            with anyio.CancelScope(shield=True):
                for session_id in list(self._entries):
                    await self.drop(session_id)
        finally:
            self._phase = "closed"
            tg, self._tg = self._tg, None
            tg.cancel_scope.cancel()  # the sweep
        # Every session is closed and the sweep cancelled: the caller's own error propagates
        # as is instead of inside an ExceptionGroup.
        return await exit_task_group(tg, exc_type, exc, tb)

    def _require_open(self) -> TaskGroup:
        if self._phase == "new":
            raise SessionClosed(
                "the SessionManager is not running; use it inside `async with manager:`"
            )
        if self._phase != "open" or self._tg is None:
            raise SessionClosed("the SessionManager is closed; make a new one")
        return self._tg

    # ------------------------------------------------------------------------ sessions
    async def get_or_create(self, session_id: str, *, tenant: str = "default") -> StreamingSession:
        """The open session ``session_id``, opening (and, with a store, hydrating) it once.

        Raises:
            SessionTenantMismatch: the session belongs to another tenant.
            SessionLimitExceeded: ``max_sessions`` are open and none of them is idle.
            SessionClosed: the manager is not running.
        """
        if not session_id:
            raise ValueError(f"session_id must be a non-empty str, not {session_id!r}")
        while True:
            tg = self._require_open()
            entry = self._entries.get(session_id)
            if entry is None:
                if not await self._make_room():
                    continue  # awaited an eviction: look again
                entry = self._open(tg, session_id, tenant)
            elif entry.closing or (entry.ready.is_set() and _engine(entry.session).phase != "open"):
                await entry.gone.wait()  # closing (also by its own aclose): open it anew
                continue
            elif entry.tenant != tenant:
                raise SessionTenantMismatch(
                    f"session {session_id!r} belongs to another tenant; pass its tenant or "
                    "use another session id"
                )
            await entry.ready.wait()
            if entry.error is not None:
                raise entry.error
            if entry.gone.is_set():
                continue  # it closed while we waited: open it again
            entry.last_active = self._clock()
            return entry.session

    def get(self, session_id: str) -> StreamingSession | None:
        """The open session ``session_id``, or None (this counts as activity)."""
        entry = self._entries.get(session_id)
        if entry is None or not entry.ready.is_set() or entry.error is not None or entry.closing:
            return None
        entry.last_active = self._clock()
        return entry.session

    async def drop(self, session_id: str) -> bool:
        """Close session ``session_id`` and forget it; False if it was not open.

        With a store its records stay (a later ``get_or_create`` hydrates it).
        """
        entry = self._entries.get(session_id)
        if entry is None:
            return False
        await self._close(entry)
        return True

    async def erase(self, session_id: str, *, tenant: str | None = None) -> int:
        """Drop the session, then erase everything the store holds of it; records removed.

        ``tenant`` defaults to the open session's tenant, else ``"default"``.
        """
        entry = self._entries.get(session_id)
        owner = tenant or (entry.tenant if entry is not None else "default")
        await self.drop(session_id)
        if self._store is None:
            return 0
        return await self._store.erase(owner, session=session_id)

    async def evict_idle(self) -> list[str]:
        """One sweep: close and forget every session idle for ``idle_timeout_s``; their ids.

        Idle means no PENDING or RUNNING task, no PAUSED task it could not leave in the store
        (a checkpoint of one of ``pipelines``, with a store), no subscriber, and no activity
        (a lookup, an update, a steering event, a subscriber coming or going; noticed at
        lookups and sweeps, so never early) for ``idle_timeout_s`` by ``clock``.
        """
        if self._idle_timeout_s is None:
            return []
        now = self._clock()
        evicted: list[str] = []
        for session_id, entry in list(self._entries.items()):
            self._observe(entry, now)
            if now - entry.last_active >= self._idle_timeout_s and self._idle(entry):
                await self._close(entry)
                self._evicted += 1
                evicted.append(session_id)
        return evicted

    def statistics(self) -> ManagerStatistics:
        """A frozen snapshot: sessions open, opened so far, evicted so far."""
        return ManagerStatistics(
            sessions=len(self._entries), created=self._created, evicted=self._evicted
        )

    # ------------------------------------------------------------------------- private
    def _open(self, tg: TaskGroup, session_id: str, tenant: str) -> _Entry:
        session = StreamingSession(
            session_id,
            tenant=tenant,
            limits=self._limits,
            control_policy=self._policy,
            store=self._store,
            pipelines=self._pipelines,
        )
        entry = _Entry(session, tenant, self._clock())
        self._entries[session_id] = entry
        self._created += 1
        tg.start_soon(self._host, session_id, entry, name=f"penguiflow.sessions {session_id}")
        return entry

    async def _host(self, session_id: str, entry: _Entry) -> None:
        session = entry.session
        try:
            async with session:
                entry.ready.set()
                await _engine(session).closed.wait()
        except Exception as exc:
            if entry.ready.is_set():
                _log.exception("session %r ended with an error", session_id)
            else:
                entry.error = exc  # hydrating failed: get_or_create raises it
        finally:
            if self._entries.get(session_id) is entry:
                del self._entries[session_id]
            entry.ready.set()
            entry.gone.set()

    async def _close(self, entry: _Entry) -> None:
        entry.closing = True
        with anyio.CancelScope(shield=True):
            await entry.ready.wait()
            if entry.error is None:
                await entry.session.aclose()
            await entry.gone.wait()

    def _observe(self, entry: _Entry, now: float) -> None:
        if not entry.ready.is_set() or entry.error is not None:
            return
        stats = entry.session.statistics()
        seen = (stats.updates_published, stats.steering_received, stats.subscribers)
        if seen != entry.seen:
            entry.seen = seen
            entry.last_active = now

    def _idle(self, entry: _Entry) -> bool:
        if not entry.ready.is_set() or entry.error is not None or entry.closing:
            return False
        session = entry.session
        stats = session.statistics()
        if stats.pending or stats.running or stats.subscribers:
            return False
        if stats.paused:
            engine = _engine(session)  # what a close would leave PAUSED in the store
            return all(
                engine.outbox.can_leave(r)
                for r in engine.records.values()
                if r.status is TaskStatus.PAUSED
            )
        return True

    async def _make_room(self) -> bool:
        """True if there is room for one more session now; False after evicting one."""
        limit = self._max_sessions
        if limit is None or len(self._entries) < limit:
            return True
        now = self._clock()
        for entry in self._entries.values():
            self._observe(entry, now)
        idle = [e for e in self._entries.values() if self._idle(e)]
        if not idle:
            raise SessionLimitExceeded(
                f"the manager already has {len(self._entries)} open sessions "
                f"(max_sessions={limit}) and none is idle; close one or raise max_sessions",
                limit="max_sessions",
                value=limit,
                current=len(self._entries),
            )
        await self._close(min(idle, key=lambda e: e.last_active))
        self._evicted += 1
        return False

    async def _sweep(self, interval: float) -> None:
        while True:
            await anyio.sleep(interval)
            try:
                await self.evict_idle()
            except Exception:
                _log.exception("idle sweep failed")
