"""StreamingSession: the public face of a session over its private engine."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import ClassVar, Self

import anyio
from anyio.abc import TaskGroup
from pydantic import BaseModel, ConfigDict, JsonValue

from penguiflow.core import DurableStore

from ._broker import Subscription
from ._engine import Engine
from ._group_exit import exit_task_group
from ._groups import GroupMethods
from ._hydrate import ResumablePipeline, hydrate
from ._limits import SessionLimits
from ._session_context import ContextMethods
from ._session_tasks import TaskMethods
from ._steering import ControlPolicy, SteeringEvent, SteeringEventType, SteeringReceipt
from ._tasks import TaskStatus
from ._transport import Connection, ReceiptCallback, Transport, check_transport, open_connection
from ._updates import StateUpdate, UpdateType

__all__ = ["SessionStatistics", "StreamingSession"]


class SessionStatistics(BaseModel):
    """A frozen snapshot of a session's counters."""

    model_config: ClassVar[ConfigDict] = ConfigDict(frozen=True)

    live_tasks: int
    """Tasks PENDING, RUNNING or PAUSED."""
    pending: int
    """Tasks PENDING."""
    running: int
    """Tasks RUNNING."""
    paused: int
    """Tasks PAUSED."""
    subscribers: int
    """Subscriptions registered now."""
    updates_published: int
    """Updates published so far."""
    updates_dropped: int
    """Updates dropped or evicted for some subscriber (once per subscriber)."""
    last_update_id: str | None
    """The newest ``update_id`` (None before any update)."""
    steering_received: int
    """Steering events passed to ``steer()`` (broadcasts count once per task)."""
    steering_rejected: int
    """Of those, the ones REJECTED."""
    pending_patches: int = 0
    """Context patches waiting for the user."""
    store_errors: int = 0
    """Failed store writes so far (each was retried with the same idempotency key)."""
    outbox: int = 0
    """Writes queued for the store and not yet done (updates wait there to be seen)."""


class StreamingSession(TaskMethods, ContextMethods, GroupMethods):
    """One user's session: a foreground turn, background tasks, and their ordered updates.

    Use it as ``async with StreamingSession("s1") as session:``; every task runs in the
    session's task group, and leaving the block calls :meth:`aclose`.

    With ``store`` (a ``penguiflow.core.DurableStore``) every task, update and steering event is
    stored before anyone sees it, and entering hydrates the session a previous process left
    (§9): live tasks end ``INTERRUPTED``, except those parked at a checkpoint of one of the
    ``pipelines`` (:class:`ResumablePipeline`), whose answer runs ``pipeline.resume()``.
    """

    def __init__(
        self,
        session_id: str,
        *,
        tenant: str = "default",
        limits: SessionLimits | None = None,
        control_policy: ControlPolicy | None = None,
        store: DurableStore | None = None,
        pipelines: Iterable[ResumablePipeline] = (),
    ) -> None:
        if not session_id:
            raise ValueError("session_id must be a non-empty str")
        if not tenant:
            raise ValueError("tenant must be a non-empty str")
        self._engine = Engine(
            session_id,
            tenant=tenant,
            limits=limits or SessionLimits(),
            control_policy=control_policy or ControlPolicy(),
            store=store,
            pipelines=pipelines,
        )
        self._tg: TaskGroup | None = None

    @property
    def session_id(self) -> str:
        """The session's id."""
        return self._engine.session_id

    @property
    def tenant(self) -> str:
        """The session's tenant."""
        return self._engine.tenant

    @property
    def limits(self) -> SessionLimits:
        """The bounds this session enforces."""
        return self._engine.limits

    async def __aenter__(self) -> Self:
        if self._engine.phase != "new":
            raise RuntimeError("a StreamingSession can be entered once; make a new one")
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        self._engine.open(tg)
        try:
            await hydrate(self._engine)  # with a store (§9)
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._tg is not None
        try:
            with anyio.CancelScope(shield=True):
                await self._engine.aclose()
        finally:
            tg, self._tg = self._tg, None
        # Every task is stopped: an error of the caller's block comes out as itself.
        return await exit_task_group(tg, exc_type, exc, tb)

    async def aclose(self) -> None:
        """Cancel every live task (``"session_closed"``), await it, end every subscription.

        Idempotent. Afterwards :meth:`spawn_task` and :meth:`subscribe` raise
        ``SessionClosed``.
        """
        await self._engine.aclose()

    # ------------------------------------------------------------------------ steering
    async def steer(self, event: SteeringEvent) -> SteeringReceipt:
        """Route a steering event to its task; the receipt says what happened and why.

        Never raises for bad client input. Checks in order: another session's event
        (``REJECTED "session_mismatch"``); the payload is sanitised (depth 6, 64 keys,
        50 items, 4 096-char strings; ``truncated=True``) and must fit
        ``max_steering_payload_bytes`` (``"payload_too_large"``); required fields
        (``"invalid"`` with ``errors``); an ``event_id`` seen before for the task
        (``DUPLICATE``); then routing: APPROVE/REJECT only from the user
        (``"approval_requires_user"``) answer a pending patch (``"unknown_patch"``) or a
        parked event (``"unknown_token"``); events the control policy marks are PARKED with a
        ``confirm_steering`` CHECKPOINT until the user answers; ``"unknown_task"`` /
        ``"task_finished"``; CANCEL, PAUSE, RESUME, PRIORITIZE are APPLIED; INJECT_CONTEXT,
        REDIRECT, USER_MESSAGE are DELIVERED to the inbox (``"inbox_full"``).

        Raises:
            SessionClosed: the session is not open.
        """
        self._engine.require_open()
        return await self._engine.steerer.steer(event)

    async def broadcast_steer(
        self,
        event_type: SteeringEventType | str,
        payload: dict[str, JsonValue] | None = None,
        *,
        source: str = "user",
    ) -> int:
        """Steer every live task with one event each; how many were DELIVERED or APPLIED.

        Raises:
            SessionClosed: the session is not open.
            ValueError: ``event_type`` is not a steering event type.
        """
        self._engine.require_open()
        kind = SteeringEventType(event_type)
        return await self._engine.steerer.broadcast(kind, payload or {}, source)

    # ------------------------------------------------------------------------- updates
    def subscribe(
        self,
        *,
        task_ids: Collection[str] | None = None,
        update_types: Collection[UpdateType | str] | None = None,
        since_id: str | None = None,
        queue_size: int | None = None,
    ) -> Subscription:
        """A subscription to this session's updates; enter it with ``async with``.

        ``since_id`` (an ``update_id``; ``"0"`` = from the start) first replays the retained
        updates after it, then goes live with no gap and no duplicate; a cursor that is
        malformed, ahead of the log or no longer retained raises ``UnknownCursor`` on entry.
        ``queue_size`` defaults to ``limits.update_queue_size``.

        Raises:
            SessionClosed: the session is not open.
        """
        self._engine.require_open()
        return Subscription(
            self._engine.hub,
            task_ids=task_ids,
            update_types=update_types,
            since_id=since_id,
            queue_size=queue_size,
        )

    async def list_updates(
        self, *, since_id: str | None = None, task_id: str | None = None, limit: int = 500
    ) -> list[StateUpdate]:
        """The first ``limit`` retained updates after ``since_id`` (None: the oldest retained).

        Raises:
            UnknownCursor: ``since_id`` is malformed, ahead of the log or no longer retained.
            ValueError: ``limit`` is not positive.
        """
        if limit <= 0:
            raise ValueError(f"limit must be positive, not {limit!r}")
        log = self._engine.hub.log
        assert log is not None
        return await log.page(since_id, task_id=task_id, limit=limit)

    def connect(
        self,
        transport: Transport,
        *,
        since_id: str | None = None,
        task_ids: Collection[str] | None = None,
        update_types: Collection[UpdateType | str] | None = None,
        on_receipt: ReceiptCallback | None = None,
    ) -> AbstractAsyncContextManager[Connection]:
        """Serve one peer: ``async with session.connect(transport) as connection:``.

        The subscription (``since_id``, ``task_ids``, ``update_types`` as in
        :meth:`subscribe`) goes to ``transport.send``; each event ``transport.receive()``
        returns is steered as the user's (``source="user"``), its receipt passed to
        ``on_receipt``. It runs until the peer is gone (``receive()`` returned None or the
        transport raised), the session closes, or the block ends; then ``transport.aclose()``.

        Raises:
            TypeError: ``transport`` lacks ``send``/``receive``/``aclose``.
            SessionClosed: the session is not open.
            UnknownCursor: on entry, as :meth:`subscribe`.
        """
        checked = check_transport(transport)
        subscription = self.subscribe(
            task_ids=task_ids, update_types=update_types, since_id=since_id
        )
        return open_connection(subscription, checked, self.steer, on_receipt)

    def statistics(self) -> SessionStatistics:
        """A frozen snapshot of the session's counters."""
        engine = self._engine
        statuses = [r.status for r in engine.records.values()]
        pending = statuses.count(TaskStatus.PENDING)
        running = statuses.count(TaskStatus.RUNNING)
        paused = statuses.count(TaskStatus.PAUSED)
        head = engine.hub.log.head if engine.hub.log is not None else 0
        return SessionStatistics(
            live_tasks=pending + running + paused,
            pending=pending,
            running=running,
            paused=paused,
            subscribers=len(engine.hub.subscribers),
            updates_published=engine.hub.published,
            updates_dropped=engine.hub.dropped,
            last_update_id=str(head) if head else None,
            steering_received=engine.steerer.received,
            steering_rejected=engine.steerer.rejected,
            pending_patches=len(engine.desk.pending),
            store_errors=engine.outbox.errors,
            outbox=engine.outbox.pending,
        )
