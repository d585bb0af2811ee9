"""Durability: the session's outbox writes to its ``DurableStore`` before anyone sees a thing.

Every update of a session passes through its :class:`Outbox`. Without a store it goes straight
to the subscribers. With one, the emitter only queues it (it never waits for the store); one
writer task then, in emission order, brings the session's records up to date (tasks, context,
pending patches, groups), appends each queued update to ``sessions.updates/{sid}`` with the
idempotency key ``u{seq}``, and only after that append hands the update to the subscribers, so
every update id a client ever saw is durable. A failed write is logged, counted
(``statistics().store_errors``) and retried with the same key until it lands; one the store
refuses for good (``ValueError``/``TypeError``/``ScopeMismatch``, e.g. a value over its
``max_value_bytes``) is not retried, and a refused update is stored as a stand-in
``{"not_stored": reason}`` under its seq, so the log never has a gap. Steering events are
appended to ``sessions.steering/{sid}`` (key = ``event_id``) with their outcome.

Records are brought up to date *before* the updates queued since the last pass are appended,
so a stored task is never behind its own updates: a task the log shows live is live in its
record too, and a restart marks it ``INTERRUPTED`` after its last update (``_hydrate``).
Everything is written under ``Scope(tenant, session=session_id)``; ``tool_context`` never is.
"""

from __future__ import annotations

import functools
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import anyio
from anyio.abc import TaskGroup
from pydantic import JsonValue, TypeAdapter

from penguiflow.core import DurableStore, Scope, ScopeMismatch

from ._flag import Flag
from ._persist_layout import RecordSync, dumps, steering_stream, updates_stream
from ._tasks import TaskStatus
from ._updates import StateUpdate

if TYPE_CHECKING:
    from ._engine import Engine
    from ._hydrate import ResumablePipeline
    from ._records import TaskRecord
    from ._steering import SteeringEvent, SteeringReceipt

__all__ = ["Outbox"]

_logger = logging.getLogger("penguiflow.sessions")

_FIRST_DELAY_S: Final = 0.01
_MAX_DELAY_S: Final = 1.0
_CLOSE_ATTEMPTS: Final = 5  # while closing, give up on a write after this many failures
_WAKE_EVERY: Final = 8  # through a backlog, subscribers are woken every this many appends


@dataclass(eq=False, slots=True)
class _Item:
    """One queued write: an update, a steering entry, a callback, or a plain sync marker."""

    update: StateUpdate | None = None
    data: bytes = b""
    stream: str = ""
    key: str | None = None
    after: Callable[[], object] | None = None


class Outbox:
    """The path of every update from its emitter to the store, then to the subscribers."""

    def __init__(
        self,
        engine: Engine,
        store: DurableStore | None,
        resumable: dict[str, ResumablePipeline],
    ) -> None:
        self.engine = engine
        self.store: DurableStore | None = store
        self.resumable = resumable
        """The session's resumable pipelines by name (``pipelines=``)."""
        self.scope = Scope(engine.tenant, session=engine.session_id)
        self.records = RecordSync(engine)
        self.errors = 0
        """Failed store writes so far (each retried)."""
        self._stream = updates_stream(engine.session_id)
        self._queue: deque[_Item] = deque()
        self._queued = 0  # items ever queued
        self._written = 0  # items ever written (or given up)
        self._waiters: list[tuple[int, anyio.Event]] = []
        self._wakeup = anyio.Event()
        self._idle = False  # the writer waits for _wakeup
        self._refused = False  # the last _retry gave up because the store refused for good
        self._stopping = False
        self._running = False
        self._finished = Flag()

    @property
    def pending(self) -> int:
        """Writes queued and not yet done."""
        return len(self._queue)

    # ------------------------------------------------------------------------ closing
    def detach(self, records: list[TaskRecord]) -> None:
        """At close: leave each task parked at a resumable checkpoint PAUSED in the store.

        Its record is stored as it is now and nothing it does while it is stopped is
        recorded as its end (the engine releases it quietly: :meth:`detached`).
        """
        for record in records:
            if self.can_leave(record):
                self.records.freeze(record)

    def can_leave(self, record: TaskRecord) -> bool:
        """Whether a close would leave ``record`` PAUSED in the store for the next process.

        True for a task parked at a checkpoint of a pipeline in ``pipelines=`` when the session
        has a store (a ``SessionManager`` may evict such a session).
        """
        return (
            self.store is not None
            and record.status is TaskStatus.PAUSED
            and record.checkpoint is not None
            and record.pipeline_name in self.resumable
        )

    def detached(self, record: TaskRecord) -> bool:
        """Whether ``record`` was left PAUSED in the store at close."""
        return record.task_id in self.records.frozen

    # ------------------------------------------------------------------------ emitters
    def publish(self, update: StateUpdate) -> None:
        """Queue ``update`` (with a store) or hand it to the subscribers at once; never waits."""
        if self.store is None:
            self.engine.hub.publish(update)
            return
        item = _Item(update=update, data=update.model_dump_json().encode(), key=f"u{update.seq}")
        self._push(item)

    def then(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` once everything queued so far is written (at once without a store)."""
        if self.store is None:
            callback()
            return
        self._push(_Item(after=callback))

    async def steering(self, event: SteeringEvent, receipt: SteeringReceipt) -> None:
        """Append a routed steering event with its outcome and wait until it is stored.

        An accepted event is keyed by its ``event_id`` (a restart remembers it for dedup); a
        rejected one is recorded unkeyed, so sending it again later can still succeed.
        """
        if self.store is None:
            return
        from ._steering import SteeringOutcome

        accepted = receipt.outcome is not SteeringOutcome.REJECTED
        entry: dict[str, JsonValue] = {
            "event": _event_json(event),
            "outcome": receipt.outcome.value,
            "reason": receipt.reason,
        }
        self._push(
            _Item(
                data=dumps(entry),
                stream=steering_stream(self.engine.session_id),
                key=event.event_id if accepted else None,
            )
        )
        await self.flush()

    async def flush(self) -> None:
        """Wait until every record change and everything queued so far is stored."""
        if self.store is None:
            return
        self._push(_Item())  # a pass also writes records changed without an update
        mark = self._queued
        if self._written >= mark:
            return
        done = anyio.Event()
        self._waiters.append((mark, done))
        await done.wait()

    def _push(self, item: _Item) -> None:
        self._queued += 1
        if self._finished.is_set():  # the writer is gone (closed or cancelled): nothing is
            self._done(item, stored=False)  # stored any more, but no one waits forever
            return
        self._queue.append(item)
        if self._idle:
            self._idle = False
            self._wakeup.set()

    # ------------------------------------------------------------------------- writer
    def start(self, tg: TaskGroup) -> None:
        """Start the writer in the session's task group (with a store)."""
        if self.store is not None and not self._running:
            self._running = True
            tg.start_soon(self._run, name=f"penguiflow.sessions outbox {self.engine.session_id}")

    async def aclose(self) -> None:
        """Write what is queued (giving up on a write after a few failures), stop the writer."""
        if self.store is None or not self._running:
            self._drain_unwritten()
            return
        self._stopping = True
        self._idle = False
        self._wakeup.set()
        await self._finished.wait()

    async def _run(self) -> None:
        try:
            while True:
                if not self._queue:
                    if self._stopping:
                        return
                    self._wakeup = anyio.Event()
                    self._idle = True
                    await self._wakeup.wait()
                    continue
                # Only what was queued before the records are read: each of those updates is
                # then older than (or as old as) the records written for it.
                batch = len(self._queue)
                await self._write_records()
                for index in range(batch):
                    item = self._queue[0]
                    stored = await self._write_item(item)
                    self._queue.popleft()
                    self._done(item, stored=stored, wake=False)
                    # Through a backlog the subscribers are woken every _WAKE_EVERY stored
                    # updates and once it is written, not after each: a reader keeping up
                    # then takes several at once instead of contending with the store's
                    # thread for every one (an update waits at most _WAKE_EVERY appends).
                    if index % _WAKE_EVERY == _WAKE_EVERY - 1 or index == batch - 1:
                        self.engine.hub.wake()
        finally:
            self._drain_unwritten()
            self.engine.hub.wake()
            self._finished.set()

    def _drain_unwritten(self) -> None:
        # Never stored (cancelled, or the store is gone): no subscriber may see them, but
        # whoever waits for them is released.
        while self._queue:
            self._done(self._queue.popleft(), stored=self.store is None)

    def _done(self, item: _Item, *, stored: bool, wake: bool = True) -> None:
        self._written += 1
        if item.update is not None and stored:
            self.engine.hub.publish(item.update, wake=wake)
        if item.after is not None:
            item.after()
        if self._waiters:
            written = self._written
            keep: list[tuple[int, anyio.Event]] = []
            for mark, event in self._waiters:
                if written >= mark:
                    event.set()
                else:
                    keep.append((mark, event))
            self._waiters = keep

    async def _write_records(self) -> None:
        for namespace, key, value, commit in self.records.changes():
            if await self._write_record(namespace, key, value):
                commit()

    async def _write_record(self, namespace: str, key: str, value: bytes | None) -> bool:
        store = self.store
        assert store is not None
        what = f"{namespace} {key!r}"
        if value is None:
            done = await self._retry(what, lambda: store.delete(namespace, key, scope=self.scope))
        else:
            done = await self._retry(
                what, lambda: store.put(namespace, key, value, scope=self.scope)
            )
        return done is not None or self._refused  # a refused record is not tried every pass

    async def _write_item(self, item: _Item) -> bool:
        store = self.store
        assert store is not None
        update = item.update
        if update is None and not item.stream:
            return True
        stream = self._stream if update is not None else item.stream
        seq: int | None
        try:  # the common case, without the retry machinery
            seq = await store.append(stream, item.data, scope=self.scope, idempotency_key=item.key)
        except Exception as exc:
            what = f"update {update.seq}" if update is not None else f"steering {item.key}"
            seq = await self._retry(
                what,
                lambda: store.append(stream, item.data, scope=self.scope, idempotency_key=item.key),
                first_error=exc,
            )
            if seq is None and update is not None and not self._stopping:
                # The store refuses this update for good (too large, say): keep the log's seqs
                # equal to the updates' with a stand-in saying what happened.
                stand_in = update.model_copy(
                    update={"content": {"not_stored": f"{type(exc).__name__}: {exc}"[:500]}}
                )
                data = stand_in.model_dump_json().encode()
                seq = await self._retry(
                    f"a stand-in for update {update.seq}",
                    lambda: store.append(stream, data, scope=self.scope, idempotency_key=item.key),
                )
        if update is not None and seq is not None and seq != update.seq:
            _logger.error(
                "session %r: update %d was stored as entry %d of %s; is another process "
                "writing this session? (one process owns a session at a time)",
                self.engine.session_id,
                update.seq,
                seq,
                stream,
            )
        return seq is not None

    async def _retry[T](
        self, what: str, op: Callable[[], Awaitable[T]], *, first_error: Exception | None = None
    ) -> T | None:
        """Run ``op`` until it succeeds; each failure is logged and counted.

        While closing, it gives up after ``_CLOSE_ATTEMPTS`` failures (returning None).
        """
        delay = _FIRST_DELAY_S
        attempts = 0
        error = first_error
        self._refused = False
        while True:
            if error is None:
                try:
                    return await op()
                except Exception as exc:
                    error = exc
            self.errors += 1
            attempts += 1
            if isinstance(error, (TypeError, ValueError, ScopeMismatch)):  # no retry can succeed
                _logger.error(
                    "session %r: the store refused %s for good, not retrying: %r",
                    self.engine.session_id,
                    what,
                    error,
                )
                self._refused = True
                return None
            if self._stopping and attempts >= _CLOSE_ATTEMPTS:
                _logger.error(
                    "session %r: writing %s failed %d times while closing; giving up: %r",
                    self.engine.session_id,
                    what,
                    attempts,
                    error,
                )
                return None
            _logger.warning(
                "session %r: writing %s failed (attempt %d), retrying in %.2fs: %r",
                self.engine.session_id,
                what,
                attempts,
                delay,
                error,
            )
            error = None
            await anyio.sleep(delay)
            delay = min(delay * 2, _MAX_DELAY_S)


@functools.cache
def _event_adapter() -> TypeAdapter[SteeringEvent]:
    from ._steering import SteeringEvent as Event

    return TypeAdapter(Event)


def _event_json(event: SteeringEvent) -> JsonValue:
    return _event_adapter().dump_python(event, mode="json")
