"""The machine under ``ShortTermMemory``: store access, health, summary jobs.

Summary jobs run one per key per instance, in the manager's task group or inline.

No lock is held across an await: every change is a read, a pure transition from
``_memory_state`` and a ``put(if_version=...)``, retried on ``VersionConflict``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import anyio
import anyio.abc

from penguiflow.core import DurableStore, VersionConflict

from ._llm import JSONLLMClient
from ._memory_state import (
    BACKLOG_LIMIT,
    NAMESPACE,
    MemoryState,
    clip_tail,
    decode,
    encode,
    record_key,
    scope_of,
    turn_view,
)
from ._memory_summary import summarise
from ._memory_types import MemoryHealth, MemoryKey, ShortTermMemoryConfig
from ._tokens import TokenCounter

__all__ = ["HIDDEN", "MemoryEngine", "MemoryEventCallback"]

logger = logging.getLogger("penguiflow.planner")

MemoryEventCallback = Callable[[str, Mapping[str, Any]], None]
"""``on_event(kind, extra)``; ``kind`` is ``"memory_health"``."""

HIDDEN = (MemoryHealth.DEGRADED, MemoryHealth.RECOVERING)
"""Health in which pending turns are kept but not shown (truncation fallback)."""

_Change = Callable[[MemoryState | None], MemoryState | None]


@dataclass(slots=True)
class _Job:
    """The summary work of one key on this instance; ``again`` asks for one more pass."""

    done: anyio.Event = field(default_factory=anyio.Event)
    again: bool = False


class MemoryEngine:
    """The state and jobs of one ``ShortTermMemory`` (its public methods are thin over these)."""

    def __init__(
        self,
        config: ShortTermMemoryConfig,
        *,
        store: DurableStore,
        llm: JSONLLMClient | None,
        counter: TokenCounter,
        on_event: MemoryEventCallback | None,
        time: Callable[[], float],
    ) -> None:
        self.config = config
        self.store = store
        self.llm = llm
        self.counter = counter
        self.on_event = on_event
        self.time = time
        self.health: dict[MemoryKey, MemoryHealth] = {}
        """Keys not HEALTHY, as last seen by this instance."""
        self.recovery_after: dict[MemoryKey, float] = {}
        """When a DEGRADED key may try a summary again (``time`` seconds)."""
        self.jobs: dict[MemoryKey, _Job] = {}
        self.group: anyio.abc.TaskGroup | None = None

    # ------------------------------------------------------------------------ the store
    async def read(self, key: MemoryKey) -> MemoryState | None:
        record = await self.store.get(NAMESPACE, record_key(key), scope=scope_of(key))
        state = None if record is None else decode(record.value)
        self._seen(key, state)
        return state

    async def update(
        self, key: MemoryKey, change: _Change
    ) -> tuple[MemoryState | None, MemoryState | None]:
        """Apply ``change`` with compare-and-set until it sticks; returns (old, new) states.

        ``change`` returning None writes nothing (then new is None).
        """
        name, scope = record_key(key), scope_of(key)
        while True:
            record = await self.store.get(NAMESPACE, name, scope=scope)
            old = None if record is None else decode(record.value)
            new = change(old)
            if new is None:
                self._seen(key, old)
                return old, None
            try:
                await self.store.put(
                    NAMESPACE,
                    name,
                    encode(new),
                    scope=scope,
                    ttl_s=self.config.ttl_s,
                    if_version=0 if record is None else record.version,
                )
            except VersionConflict:
                continue  # another writer got in first: apply the change to what it wrote
            self._seen(key, new)
            return old, new

    def _seen(self, key: MemoryKey, state: MemoryState | None) -> None:
        if state is None or state.health is MemoryHealth.HEALTHY:
            self.health.pop(key, None)
        else:
            self.health[key] = state.health

    async def set_health(
        self, key: MemoryKey, health: MemoryHealth, *, attempt: int, error: BaseException | None
    ) -> None:
        def change(old: MemoryState | None) -> MemoryState | None:
            if old is None or old.health is health:
                return None  # cleared meanwhile (never resurrect it), or nothing to say
            pending = old.pending[-BACKLOG_LIMIT:] if health in HIDDEN else old.pending
            return replace(old, health=health, pending=pending)

        old, new = await self.update(key, change)
        if old is not None and new is not None:
            self._emit(key, old.health, health, attempt=attempt, error=error)

    def _emit(
        self,
        key: MemoryKey,
        previous: MemoryHealth,
        health: MemoryHealth,
        *,
        attempt: int,
        error: BaseException | None,
    ) -> None:
        logger.log(
            logging.WARNING if health is MemoryHealth.DEGRADED else logging.INFO,
            "short-term memory of %s: %s -> %s",
            key.composite(),
            previous.value,
            health.value,
        )
        if self.on_event is None:
            return
        extra = {
            "memory_key": key.composite(),
            "health": health.value,
            "previous": previous.value,
            "attempt": attempt,
            "error": None if error is None else f"{type(error).__name__}: {error}",
        }
        try:
            self.on_event("memory_health", extra)
        except Exception:
            logger.exception("a memory_health listener failed")

    # ------------------------------------------------------------------------ summaries
    async def request_summary(self, key: MemoryKey) -> None:
        job = self.jobs.get(key)
        if job is not None:
            job.again = True  # the pass in flight goes once more, so no turn waits for it
            return
        job = self.jobs[key] = _Job()
        if self.group is not None:
            self.group.start_soon(self._drive, key, job)
        else:
            await self._drive(key, job)

    async def _drive(self, key: MemoryKey, job: _Job) -> None:
        try:
            while True:
                job.again = False
                await self._summarise(key)
                if not job.again or key in self.recovery_after:
                    break  # a DEGRADED key waits for its next record to try again
        except AssertionError:
            raise  # a test double's complaint (ScriptExhausted) must reach the test
        except Exception:
            # The store failed: the turns stay pending for the next record or flush.
            logger.exception("summary of short-term memory %s failed", key.composite())
        finally:
            if self.jobs.get(key) is job:
                del self.jobs[key]
            job.done.set()

    async def _summarise(self, key: MemoryKey) -> None:
        assert self.llm is not None  # checked at construction for rolling_summary
        config = self.config
        state = await self.read(key)
        if state is None or not state.pending:
            return
        recovering = state.health in HIDDEN
        attempts = 1 if recovering else config.retry_attempts + 1
        if recovering:
            await self.set_health(key, MemoryHealth.RECOVERING, attempt=1, error=None)
        for attempt in range(1, attempts + 1):
            state = await self.read(key)  # fresh: turns recorded meanwhile are folded too
            if state is None:
                return
            if not state.pending:  # folded by another instance meanwhile
                if state.health is not MemoryHealth.HEALTHY:
                    await self.set_health(key, MemoryHealth.HEALTHY, attempt=attempt, error=None)
                return
            batch = tuple(t.seq for t in state.pending)
            views = [
                turn_view(t.turn, include_digest=config.include_trajectory_digest)
                for t in state.pending
            ]
            try:
                summary = await summarise(
                    self.llm,
                    previous=state.summary,
                    views=views,
                    max_tokens=config.budget.summary_max_tokens,
                )
            except AssertionError:
                raise
            except Exception as exc:
                if attempt < attempts:
                    await self.set_health(key, MemoryHealth.RETRY, attempt=attempt, error=exc)
                    await anyio.sleep(config.retry_backoff_base_s * 2 ** (attempt - 1))
                    continue
                await self.set_health(key, MemoryHealth.DEGRADED, attempt=attempt, error=exc)
                self.recovery_after[key] = self.time() + config.retry_backoff_base_s * (
                    2**config.retry_attempts
                )
                return
            await self._fold(key, previous=state.summary, batch=batch, summary=summary)
            return

    async def _fold(
        self, key: MemoryKey, *, previous: str, batch: tuple[int, ...], summary: str
    ) -> None:
        limit = self.config.budget.summary_max_tokens
        if limit is not None:
            summary = clip_tail(summary, lambda text: self.counter.count(text) <= limit)

        def change(old: MemoryState | None) -> MemoryState | None:
            if old is None or old.summary != previous:
                return None  # cleared, or another instance folded these turns first
            if tuple(t.seq for t in old.pending[: len(batch)]) != batch:
                return None
            return replace(
                old,
                summary=summary,
                pending=old.pending[len(batch) :],
                health=MemoryHealth.HEALTHY,
            )

        old, new = await self.update(key, change)
        self.recovery_after.pop(key, None)
        if old is not None and new is not None and old.health is not MemoryHealth.HEALTHY:
            self._emit(key, old.health, MemoryHealth.HEALTHY, attempt=1, error=None)
