"""Reusable patterns: bounded concurrent map and a per-trace join."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import anyio
from anyio import CancelScope

from ._context import Context
from ._errors import FlowError, FlowErrorCode
from ._node import Node, NodePolicy
from ._trace import current_trace_id
from ._types import Message, copy_with, merge_meta

__all__ = ["join_k", "map_concurrent"]


async def map_concurrent[T, R](
    items: Iterable[T],
    worker: Callable[[T], Awaitable[R]],
    *,
    max_concurrency: int = 8,
) -> list[R]:
    """Apply ``worker`` to every item, ``max_concurrency`` at a time; results keep input order.

    The first exception cancels the remaining work and is raised as is (also when several
    workers fail at once: the first to fail wins, the others are dropped).
    """
    if max_concurrency < 1:
        raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
    pending = list(enumerate(items))
    results: list[Any] = [None] * len(pending)
    feed = iter(pending)
    first: list[Exception] = []

    async def run() -> None:
        for index, item in feed:
            try:
                results[index] = await worker(item)
            except Exception as exc:
                first.append(exc)
                raise

    try:
        async with anyio.create_task_group() as tg:
            for _ in range(min(max_concurrency, len(pending))):
                tg.start_soon(run)
    except BaseExceptionGroup as group:
        if first and all(isinstance(e, Exception) for e in group.exceptions):
            raise first[0] from None
        raise
    return results


class _Join:
    """Node function of ``join_k``: one bucket per trace, emitted after exactly k arrivals."""

    def __init__(self, name: str, k: int, timeout_s: float | None) -> None:
        self.name = name
        self.k = k
        self.timeout_s = timeout_s
        self.buckets: dict[str | None, list[Any]] = {}
        self._timers: dict[str | None, CancelScope] = {}

    async def __call__(self, message: Any, ctx: Context) -> Any:
        key = message.trace_id if isinstance(message, Message) else current_trace_id()
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = []
            if key is not None:
                ctx.on_trace_end(key, lambda: self._free(key))
            if self.timeout_s is not None:
                self._timers[key] = ctx.start_soon(key, lambda: self._expire(key, ctx))
        bucket.append(message)
        if len(bucket) < self.k:
            return None
        self._free(key)
        return _merge(bucket)

    def _free(self, key: str | None) -> None:
        self.buckets.pop(key, None)
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    async def _expire(self, key: str | None, ctx: Context) -> None:
        assert self.timeout_s is not None
        await anyio.sleep(self.timeout_s)
        bucket = self.buckets.get(key)
        if bucket is None:
            return
        self._timers.pop(key, None)  # this task: it must not cancel itself while reporting
        self.buckets.pop(key, None)
        error = FlowError(
            trace_id=key,
            node_name=self.name,
            node_id=ctx.owner.node_id,
            code=FlowErrorCode.NODE_TIMEOUT,
            message=(
                f"join_k({self.k}) got {len(bucket)} of {self.k} messages within "
                f"{self.timeout_s}s; the bucket was discarded"
            ),
            metadata={"received": len(bucket), "expected": self.k, "timeout_s": self.timeout_s},
        )
        await ctx.fail(error)


def _merge(bucket: list[Any]) -> Any:
    first = bucket[0]
    if isinstance(first, Message):
        payloads = [m.payload if isinstance(m, Message) else m for m in bucket]
        metas = [m.meta for m in bucket if isinstance(m, Message)]
        return copy_with(first, payload=payloads, meta=merge_meta(*metas))
    return list(bucket)


def join_k(name: str, k: int, *, timeout_s: float | None = None) -> Node:
    """A node that waits for exactly ``k`` messages of a trace, then emits them as one.

    For ``Message`` inputs the result is a copy of the first arrival's envelope whose payload is the
    list of payloads (arrival order) and whose ``meta`` merges the branches' metas in arrival order,
    last write wins. A bucket is freed when it completes, when its trace ends, is cancelled or
    fails, and after ``timeout_s`` (which delivers a ``NODE_TIMEOUT`` ``FlowError``).
    """
    if k < 1:
        raise ValueError(f"join_k({name!r}): k must be >= 1, got {k}")
    if timeout_s is not None and timeout_s <= 0:
        raise ValueError(f"join_k({name!r}): timeout_s must be > 0, got {timeout_s}")
    return Node(_Join(name, k, timeout_s), name=name, policy=NodePolicy(validate="none"))
