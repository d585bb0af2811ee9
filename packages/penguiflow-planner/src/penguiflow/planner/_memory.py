"""``ShortTermMemory``: the manager a planner owns (its machine is ``_memory_engine``)."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import anyio

from penguiflow.core import DurableStore

from ._errors import PlannerUsageError
from ._llm import JSONLLMClient, LLMMessage
from ._memory_engine import HIDDEN, MemoryEngine, MemoryEventCallback
from ._memory_state import NAMESPACE, MemoryState, append_turn, record_key, render, scope_of
from ._memory_types import (
    ConversationTurn,
    MemoryHealth,
    MemoryKey,
    MemorySnapshot,
    ShortTermMemoryConfig,
)
from ._tokens import TokenCounter

__all__ = ["MemoryEventCallback", "ShortTermMemory"]


def _key_of(parts: list[object]) -> MemoryKey | None:
    tenant, user, session = parts
    if isinstance(tenant, str) and isinstance(user, str) and isinstance(session, str):
        if tenant and user and session:
            return MemoryKey(tenant, user, session)
    return None


class ShortTermMemory:
    """The short-term memory a planner owns: one conversation per :class:`MemoryKey`.

    State lives in ``store`` (namespace ``planner.memory``, key ``{tenant}/{user}/{session}``,
    the key's ``Scope``, TTL ``config.ttl_s``): instances and processes sharing the store share
    memory, and concurrent writers of one key never lose a turn. With
    ``strategy="rolling_summary"``, turns leaving the full zone stay visible as pending turns
    until a ``memory_summary`` call folds them into the summary: in the task group of
    :meth:`running` when open (no run waits for it), else at the end of :meth:`record`.
    """

    def __init__(
        self,
        config: ShortTermMemoryConfig,
        *,
        store: DurableStore,
        llm: JSONLLMClient | None,
        token_counter: TokenCounter,
        on_event: MemoryEventCallback | None = None,
        time_source: Callable[[], float] = time.time,
    ) -> None:
        """Make the manager.

        Args:
            config: Strategy, budget, isolation and summary retries.
            store: Where memory lives.
            llm: The summariser when ``config.summarizer`` is None (the planner's client).
            token_counter: Measures the memory message against ``total_max_tokens``.
            on_event: Called ``("memory_health", extra)`` when a key's health changes; ``extra``
                has ``memory_key`` (its ``composite()``), ``health``, ``previous``,
                ``attempt`` and ``error``.
            time_source: Stamps turns recorded without ``ts``; paces recovery attempts.

        Raises:
            PlannerUsageError: ``rolling_summary`` with no summariser.
            TypeError: ``config`` is not a ``ShortTermMemoryConfig``, or ``llm`` has no
                ``complete``.
        """
        if not isinstance(config, ShortTermMemoryConfig):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(f"config must be a ShortTermMemoryConfig, got {config!r}")
        if llm is not None and not callable(getattr(llm, "complete", None)):
            raise TypeError(f"llm must have an async complete() method, got {llm!r}")
        summarizer = config.summarizer if config.summarizer is not None else llm
        if config.strategy == "rolling_summary" and summarizer is None:
            raise PlannerUsageError(
                'strategy="rolling_summary" needs a summariser: pass '
                "ShortTermMemoryConfig(summarizer=client), or give the planner an llm_client"
            )
        self._config = config
        self._engine = MemoryEngine(
            config,
            store=store,
            llm=summarizer,
            counter=token_counter,
            on_event=on_event,
            time=time_source,
        )

    def __repr__(self) -> str:
        state = "running" if self._engine.group is not None else "not running"
        return f"<ShortTermMemory strategy={self._config.strategy!r} {state}>"

    @property
    def config(self) -> ShortTermMemoryConfig:
        """The configuration."""
        return self._config

    # ------------------------------------------------------------------------------ keys
    def resolve_key(
        self,
        memory_key: MemoryKey | Mapping[str, Any] | None,
        tool_context: Mapping[str, Any] | None,
    ) -> MemoryKey | None:
        """The key a run's memory is read and written under, or None: no memory (fail-closed).

        An explicit ``memory_key`` wins: a ``MemoryKey``, or a mapping with the isolation's
        three key names. Without one, and only with ``require_explicit_key=False``, a
        ``tool_context`` holding all three as non-empty strings gives the key; anything less
        gives None.

        Raises:
            PlannerUsageError: ``memory_key`` is given but is not a complete key.
        """
        isolation = self._config.isolation
        names = (isolation.tenant_key, isolation.user_key, isolation.session_key)
        if isinstance(memory_key, MemoryKey):
            return memory_key
        if memory_key is not None:
            if not isinstance(memory_key, Mapping):  # pyright: ignore[reportUnnecessaryIsInstance]
                raise PlannerUsageError(
                    f"memory_key must be a MemoryKey or a mapping, got {type(memory_key).__name__}"
                )
            key = _key_of([memory_key.get(name) for name in names])
            if key is None:
                raise PlannerUsageError(
                    f"memory_key needs non-empty strings under {', '.join(map(repr, names))}; "
                    f"got {dict(memory_key)!r}. Write MemoryKey(tenant_id, user_id, session_id)"
                )
            return key
        if isolation.require_explicit_key or tool_context is None:
            return None
        return _key_of([tool_context.get(name) for name in names])

    # --------------------------------------------------------------------------- the API
    async def load(self, key: MemoryKey) -> LLMMessage | None:
        """The system message a run starts with, or None (nothing stored, or strategy "none").

        Its content is JSON ``{"conversation_memory": {"recent_turns", "summary",
        "pending_turns"}}``, within ``total_max_tokens`` per the overflow policy.

        Raises:
            MemoryBudgetExceeded: Over budget with ``overflow_policy="error"``.
        """
        if self._config.strategy == "none":
            return None
        state = await self._engine.read(key)
        if state is None:
            return None
        return render(
            state,
            budget=self._config.budget,
            counter=self._engine.counter,
            include_digest=self._config.include_trajectory_digest,
        )

    async def record(self, key: MemoryKey, turn: ConversationTurn) -> None:
        """Append a finished run's turn to ``key``'s memory (after every earlier one).

        Turns leaving the full zone are dropped (``"truncation"``) or become pending turns
        (``"rolling_summary"``), whose summary is started in the background when running,
        else awaited here.
        """
        if self._config.strategy == "none":
            return
        if turn.ts is None:
            turn = replace(turn, ts=self._engine.time())
        strategy, budget = self._config.strategy, self._config.budget
        engine = self._engine
        _, state = await engine.update(
            key, lambda old: append_turn(old or MemoryState(), turn, strategy, budget)
        )
        if state is None or strategy != "rolling_summary" or not state.pending:
            return
        if state.health in HIDDEN and engine.time() < engine.recovery_after.get(key, 0.0):
            return
        await engine.request_summary(key)

    async def snapshot(self, key: MemoryKey) -> MemorySnapshot:
        """What ``key``'s memory holds now (as stored)."""
        state = await self._engine.read(key) or MemoryState()
        return MemorySnapshot(
            turns=tuple(t.turn for t in state.turns),
            pending_turns=tuple(t.turn for t in state.pending),
            summary=state.summary,
            health=state.health,
        )

    async def clear(self, key: MemoryKey) -> None:
        """Forget ``key``'s memory (a summary in flight for it is discarded)."""
        engine = self._engine
        await engine.store.delete(NAMESPACE, record_key(key), scope=scope_of(key))
        engine.health.pop(key, None)
        engine.recovery_after.pop(key, None)

    async def flush(self, key: MemoryKey | None = None) -> None:
        """Wait for pending summaries: of ``key`` (starting one if its turns wait), or of all."""
        jobs = self._engine.jobs
        if key is None:
            while jobs:
                await next(iter(jobs.values())).done.wait()
            return
        if key not in jobs and self._config.strategy == "rolling_summary":
            state = await self._engine.read(key)
            if state is not None and state.pending and state.health not in HIDDEN:
                await self._engine.request_summary(key)
        while (job := jobs.get(key)) is not None:
            await job.done.wait()

    def health(self, key: MemoryKey) -> MemoryHealth:
        """The health of ``key``'s rolling summary, as this instance last saw it."""
        return self._engine.health.get(key, MemoryHealth.HEALTHY)

    @asynccontextmanager
    async def running(self, *, drain_timeout_s: float = 10.0) -> AsyncGenerator[ShortTermMemory]:
        """Run summaries in a task group of their own while the block runs.

        On leaving, pending summaries get up to ``drain_timeout_s`` to finish, then the rest are
        cancelled (their turns stay pending in the store for a later summary); no task outlives
        the block.

        Raises:
            PlannerUsageError: The memory is already running.
        """
        engine = self._engine
        if engine.group is not None:
            raise PlannerUsageError("this ShortTermMemory is already running: enter it once")
        failure: Exception | None = None
        async with anyio.create_task_group() as group:
            engine.group = group
            try:
                yield self
            except Exception as exc:
                failure = exc  # raised below as is, not wrapped in the group's ExceptionGroup
            else:
                with anyio.move_on_after(drain_timeout_s):
                    await self.flush()
            finally:
                engine.group = None
                group.cancel_scope.cancel()
        if failure is not None:
            raise failure
