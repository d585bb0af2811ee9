"""Reusable patterns: bounded concurrent map and a per-trace join."""

from __future__ import annotations

import logging
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

logger = logging.getLogger("penguiflow.core")


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
    """Node function of ``join_k``: one bucket per trace id, emitted after exactly k arrivals.

    A bucket outlives a trace that ends normally (its pieces may be emitted separately, later, under
    the same trace id); it is freed when it completes, when its trace is cancelled or fails, after
    ``timeout_s`` (a ``NODE_TIMEOUT`` failure), and after ``idle_timeout_s`` without a trace to
    wait for (logged), so partial buckets never pile up.
    """

    def __init__(
        self, name: str, k: int, timeout_s: float | None, idle_timeout_s: float | None
    ) -> None:
        self.name = name
        self.k = k
        self.timeout_s = timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.buckets: dict[str, list[Any]] = {}
        self._timers: dict[str, CancelScope] = {}
        self._idle: dict[str, CancelScope] = {}

    async def __call__(self, message: Message, ctx: Context) -> Any:
        item: Any = message  # a Message, or a bare payload emitted with a trace id
        key = item.trace_id if isinstance(item, Message) else self._bare_key(item)
        bucket = self.buckets.get(key)
        if bucket is None or (self._idle and key in self._idle):
            bucket = self._watch(key, bucket, ctx)
        bucket.append(item)
        if len(bucket) < self.k:
            return None
        self._free(key)
        return _merge(bucket)

    def _bare_key(self, item: Any) -> str:
        key = current_trace_id()
        if key is None:
            own = getattr(item, "trace_id", None)  # a payload object that names its trace
            key = own if isinstance(own, str) else None
        if key is None:
            raise ValueError(
                f"join_k({self.name!r}) joins messages of one trace: emit Message objects, or "
                "bare payloads with emit(..., trace_id=...)"
            )
        return key

    def _watch(self, key: str, bucket: list[Any] | None, ctx: Context) -> list[Any]:
        """A new bucket, or one whose trace is back: watch the trace it now waits in."""
        idle = self._idle.pop(key, None)
        if idle is not None:
            idle.cancel()  # a piece emitted separately, after its trace had ended
        if bucket is None:
            bucket = self.buckets[key] = []
            if self.timeout_s is not None:
                self._timers[key] = ctx.start_soon(None, lambda: self._expire(key, ctx))
        ctx.on_trace_abort(key, lambda: self._free(key))
        ctx.on_trace_end(key, lambda: self._went_idle(key, ctx))
        return bucket

    def _free(self, key: str) -> None:
        self.buckets.pop(key, None)
        for timers in (self._timers, self._idle):
            if timers:
                timer = timers.pop(key, None)
                if timer is not None:
                    timer.cancel()

    def _went_idle(self, key: str, ctx: Context) -> None:
        """The trace ended normally with the bucket still partial: wait a while for the rest."""
        if key not in self.buckets or self.idle_timeout_s is None or key in self._idle:
            return
        try:
            self._idle[key] = ctx.start_soon(None, lambda: self._discard_idle(key))
        except RuntimeError:  # the flow is stopping: nothing more will arrive
            self._free(key)

    async def _discard_idle(self, key: str) -> None:
        assert self.idle_timeout_s is not None
        await anyio.sleep(self.idle_timeout_s)
        bucket = self.buckets.get(key)
        self._idle.pop(key, None)
        if bucket is None:
            return
        self._free(key)
        logger.warning(
            "join_k(%r) discarded %d of %d messages of trace %r: no trace to wait for within "
            "idle_timeout_s=%s",
            self.name,
            len(bucket),
            self.k,
            key,
            self.idle_timeout_s,
        )

    async def _expire(self, key: str, ctx: Context) -> None:
        assert self.timeout_s is not None
        await anyio.sleep(self.timeout_s)
        bucket = self.buckets.get(key)
        if bucket is None:
            return
        self._timers.pop(key, None)  # this task: it must not cancel itself while reporting
        self._free(key)
        owner = ctx.owner
        error = FlowError(
            trace_id=key,
            node_name=self.name,
            node_id=owner.node_id if isinstance(owner, Node) else None,
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


def join_k(
    name: str, k: int, *, timeout_s: float | None = None, idle_timeout_s: float | None = 60.0
) -> Node:
    """A node that waits for exactly ``k`` messages of one trace id, then emits them as one.

    It receives every message in its envelope (bare values come with the envelope they travel
    in) and hands on a ``Message``: a copy of the first arrival's envelope whose payload is the
    list of payloads (arrival order) and whose ``meta`` merges the arrivals' metas in arrival
    order, last write wins. Bare payloads emitted with ``emit(..., trace_id=...)`` are joined into
    a plain list. A message without a trace id is a ``ValueError`` (a ``FlowError`` for it).

    The pieces of a trace may also be emitted separately, one after another: a partial bucket
    outlives the trace that ended with it. It is freed when it completes, when its trace is
    cancelled or fails, after ``timeout_s`` from its first arrival (delivering a ``NODE_TIMEOUT``
    ``FlowError``), and ``idle_timeout_s`` after its trace ended with no piece arriving
    (discarded and logged; None keeps it until it completes).
    """
    if k < 1:
        raise ValueError(f"join_k({name!r}): k must be positive (>= 1), got {k}")
    for label, value in (("timeout_s", timeout_s), ("idle_timeout_s", idle_timeout_s)):
        if value is not None and value <= 0:
            raise ValueError(f"join_k({name!r}): {label} must be > 0 (or None), got {value}")
    join = _Join(name, k, timeout_s, idle_timeout_s)
    return Node(join, name=name, policy=NodePolicy(validate="none"))
