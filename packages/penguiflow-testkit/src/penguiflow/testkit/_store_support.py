"""What the conformance checks share: ``ManualClock``, the ``open_store`` type, scopes, helpers."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol

import anyio
import pytest

from penguiflow.core import (
    DurableStore,
    Scope,
    StateStore,
    StoredEvent,
    as_state_store,
)

__all__ = [
    "A",
    "A_U1",
    "A_U1_S1",
    "B",
    "BOUND_S",
    "MAX_VALUE_BYTES",
    "ManualClock",
    "StoreOpener",
    "asyncio_test",
    "bounded",
    "stored_event",
    "gather",
    "history_of",
]

MAX_VALUE_BYTES = 16 * 1024 * 1024  # the protocol's default max_value_bytes
BOUND_S = 10.0  # every test finishes well within this; a hang fails instead of blocking CI
A = Scope("acme")
B = Scope("beta")
A_U1 = Scope("acme", "u1")
A_U1_S1 = Scope("acme", "u1", "s1")
asyncio_test = pytest.mark.asyncio


class ManualClock:
    """A clock that moves only when told: pass it as a store's ``clock`` to drive TTLs.

    Args:
        start: The initial time in seconds (default: ``time.time()`` when created).
    """

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else float(start)

    def __call__(self) -> float:
        """The current time in seconds."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (>= 0)."""
        if seconds < 0:
            raise ValueError(f"a ManualClock only moves forward; got advance({seconds})")
        self._now += seconds

    def __repr__(self) -> str:
        return f"ManualClock({self._now!r})"


class StoreOpener(Protocol):
    """What the ``open_store`` fixture returns: opens the test's store on its storage."""

    def __call__(
        self, clock: Callable[[], float], /, **options: Any
    ) -> AbstractAsyncContextManager[DurableStore]:
        """Open the store with ``clock`` (and ``options`` such as ``retention``)."""
        ...


@asynccontextmanager
async def bounded(
    opening: AbstractAsyncContextManager[DurableStore],
) -> AsyncGenerator[DurableStore]:
    # The whole test body is bounded: a store that hangs fails the test instead of CI.
    with anyio.fail_after(BOUND_S):
        async with opening as store:
            yield store


def history_of(store: DurableStore) -> StateStore:
    return store if isinstance(store, StateStore) else as_state_store(store)


def stored_event(trace_id: str, n: int, *, scope: Scope | None = None) -> StoredEvent:
    return StoredEvent(
        event_id=f"{trace_id}:{n}",
        trace_id=trace_id,
        ts=1.0,  # equal timestamps: only the store's order tells events apart
        kind="node_start",
        node_name=f"node{n}",
        node_id=f"id{n}",
        payload={"n": n},
        scope=scope,
    )


async def gather[T](calls: Sequence[Callable[[], Any]], kind: type[T]) -> list[T | BaseException]:
    """Run ``calls`` concurrently; their results (or exceptions) in call order."""
    results: list[T | BaseException] = [ValueError("not run")] * len(calls)

    async def run(i: int) -> None:
        try:
            results[i] = await calls[i]()
        except Exception as exc:
            results[i] = exc

    with anyio.fail_after(BOUND_S):
        async with anyio.create_task_group() as tg:
            for i in range(len(calls)):
                tg.start_soon(run, i)
    return results
