"""``RedisStreamsBus``: the ``WorkBus`` on Redis Streams (redis-py asyncio, extra ``redis``).

Keys, all under ``pf:{app}:`` (the hash tag keeps an app on one cluster slot): ``work`` (the
work stream, consumer group ``workers``), ``t:{trace}`` (a hash: ``status`` queued or ended),
``o:{trace}`` (the trace's output stream) with ``oi:{trace}`` (its output ids, for idempotent
publishing), ``c:{trace}`` (the cancel key, announced on channel ``cancel``), ``dead`` (the
dead-letter stream) and ``mirror`` (edge mirroring, ``XADD MAXLEN ~``). A trace's keys expire
``result_ttl_s`` after its end marker. Ownership-sensitive operations are Lua scripts
(``_work_redis_lua``). redis errors become ``StoreUnavailable`` in one place (``_run``).
"""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Self

from pydantic_core import to_json

from ._distribution import BusEnvelope
from ._errors import StoreClosed, StoreUnavailable, safe_repr
from ._work_redis_lua import SCRIPTS
from ._work_redis_wire import (
    check_version,
    entry_fields,
    import_redis,
    output_kind,
    text,
    work_item,
)
from ._work_types import Delivery, TraceNotFound, TraceOutput, WorkItem

__all__ = ["GROUP", "RedisStreamsBus"]

GROUP = "workers"
"""The consumer group every worker of an app reads the work stream in."""

_MAX_CONNECTIONS = 64


class RedisStreamsBus:
    """A ``WorkBus`` on a Redis server (6.2 or later): open it with ``RedisStreamsBus.open``.

    ``async with RedisStreamsBus.open("redis://localhost:6379/0", app="orders") as bus:`` gives
    an open bus for ``Worker(flow, bus=bus)`` and ``FlowClient(bus)``; leaving the block closes
    its connections. Apps with different ``app`` names share a server without meeting.
    """

    def __init__(
        self,
        url: str,
        *,
        app: str,
        result_ttl_s: float = 3600.0,
        mirror_maxlen: int = 10_000,
        block_s: float = 1.0,
    ) -> None:
        """Check the options; the bus connects once entered (prefer ``open``)."""
        if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ValueError(f"url must be a redis://, rediss:// or unix:// URL, got {url!r}")
        if not isinstance(app, str) or not app or any(c in app for c in "{}\0"):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ValueError(f"app must be a non-empty name without braces, got {app!r}")
        for name, value in (("result_ttl_s", result_ttl_s), ("block_s", block_s)):
            if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:  # pyright: ignore[reportUnnecessaryIsInstance]
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        if not isinstance(mirror_maxlen, int) or mirror_maxlen < 1:  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ValueError(f"mirror_maxlen must be a positive int, got {mirror_maxlen!r}")
        redis_asyncio, redis_exceptions = import_redis()
        self.app: str = app
        """The application name (keys live under ``pf:{app}:``)."""
        self.result_ttl_s: float = float(result_ttl_s)
        """How long a trace's outputs stay readable after it ended."""
        self.mirror_maxlen: int = mirror_maxlen
        """About how many mirrored envelopes the mirror stream keeps."""
        self.block_s: float = float(block_s)
        """The longest a ``claim`` or an output read waits on the server."""
        self._url = url
        self._base = f"pf:{{{app}}}:"
        self._error: type[Exception] = redis_exceptions.RedisError
        self._noscript: type[Exception] = redis_exceptions.NoScriptError
        pool = redis_asyncio.BlockingConnectionPool.from_url(
            url, max_connections=_MAX_CONNECTIONS, decode_responses=False
        )
        self._client: Any = redis_asyncio.Redis.from_pool(pool)
        self._shas: dict[str, str] = {}
        self._cursors: dict[str, str] = {}
        self._state = "new"

    @classmethod
    def open(
        cls,
        url: str,
        *,
        app: str,
        result_ttl_s: float = 3600.0,
        mirror_maxlen: int = 10_000,
        block_s: float = 1.0,
    ) -> AbstractAsyncContextManager[RedisStreamsBus]:
        """Connect to the server at ``url`` for application ``app``.

        Args:
            url: ``redis://[user:password@]host[:port][/db]``, ``rediss://…`` or
                ``unix:///path/to/redis.sock``.
            app: The application's name: its keys are ``pf:{app}:…``.
            result_ttl_s: How long a trace's outputs stay readable after its end.
            mirror_maxlen: About how many envelopes the mirror stream keeps.
            block_s: The longest one server call waits for work or outputs.

        Raises:
            ImportError: redis-py is not installed (the message says what to install).
            ValueError: An option is out of range (at once).
            StoreError: The server is older than Redis 6.2 (on entering).
            StoreUnavailable: The server could not be reached (on entering).
        """
        bus = cls(
            url, app=app, result_ttl_s=result_ttl_s, mirror_maxlen=mirror_maxlen, block_s=block_s
        )
        return _opened(bus)

    def __repr__(self) -> str:
        return f"<RedisStreamsBus {self._state} app={self.app!r}>"

    async def __aenter__(self) -> Self:
        """Connect, check the server version, create the consumer group, load the scripts."""
        if self._state == "closed":
            raise StoreClosed("this RedisStreamsBus is closed; open a new one")
        if self._state == "new":
            self._state = "open"
            try:
                info: dict[str, Any] = await self._run(lambda c: c.info("server"))
                check_version(text(info.get("redis_version", "0")))
                await self._ensure_group()
                for name, source in SCRIPTS.items():
                    self._shas[name] = text(await self._run(lambda c, s=source: c.script_load(s)))
            except BaseException:
                await self.aclose()
                raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Close the connections."""
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections (idempotent); later calls raise ``StoreClosed``."""
        if self._state == "closed":
            return
        self._state = "closed"
        try:
            await self._client.aclose()
        except self._error:  # pragma: no cover - closing is best effort
            pass

    # ------------------------------------------------------------------ the boundary
    def _key(self, kind: str, trace_id: str = "") -> str:
        return f"{self._base}{kind}{':' + trace_id if trace_id else ''}"

    async def _run(self, call: Callable[[Any], Awaitable[Any]]) -> Any:
        if self._state != "open":
            raise StoreClosed(
                "this RedisStreamsBus is closed; open a new one"
                if self._state == "closed"
                else "the bus is not open: use `async with RedisStreamsBus.open(url, app=...)`"
            )
        try:
            return await call(self._client)
        except self._error as exc:
            error = StoreUnavailable(f"RedisStreamsBus {self._url}: {exc}", original_exc=exc)
            raise error from exc

    async def _script(self, name: str, keys: Sequence[str], *args: object) -> Any:
        async def call(client: Any) -> Any:
            try:
                return await client.evalsha(self._shas[name], len(keys), *keys, *args)
            except self._noscript:  # the server was restarted or flushed: load it again
                self._shas[name] = text(await client.script_load(SCRIPTS[name]))
                return await client.evalsha(self._shas[name], len(keys), *keys, *args)

        return await self._run(call)

    async def _ensure_group(self) -> None:
        async def create(client: Any) -> None:
            try:
                await client.xgroup_create(self._key("work"), GROUP, id="0", mkstream=True)
            except self._error as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

        await self._run(create)

    # --------------------------------------------------------------------- the queue
    async def submit(self, item: WorkItem) -> bool:
        """Enqueue ``item`` unless its trace id is known (then False, nothing enqueued)."""
        to = "" if item.to is None else to_json(list(item.to)).decode()
        keys = (self._key("t", item.trace_id), self._key("work"))
        return bool(await self._script("submit", keys, item.trace_id, item.body, to))

    async def claim(self, consumer: str, count: int, *, min_idle_s: float) -> list[Delivery]:
        """Up to ``count`` deliveries: idle ones first (``XAUTOCLAIM``), then new ones.

        Waits up to ``block_s`` for new entries when there are no idle ones.
        """
        if count < 1:
            return []
        work = self._key("work")
        start = self._cursors.get(consumer, "0-0")
        idle_ms = max(0, math.ceil(min_idle_s * 1000))
        cursor, found = await self._script("claim", (work,), GROUP, consumer, idle_ms, count, start)
        self._cursors[consumer] = text(cursor)
        deliveries = [
            Delivery(work_item(entry_fields(fields)), text(entry_id), int(n))
            for entry_id, fields, n in found
        ]
        if len(deliveries) < count:
            block_ms = 0 if deliveries else max(1, math.ceil(self.block_s * 1000))
            read: Any = await self._run(
                lambda c: c.xreadgroup(
                    GROUP,
                    consumer,
                    {work: ">"},
                    count=count - len(deliveries),
                    block=block_ms if block_ms else None,
                )
            )
            for _stream, entries in read or ():
                for entry_id, fields in entries:
                    deliveries.append(Delivery(work_item(entry_fields(fields)), text(entry_id), 1))
        return deliveries

    async def renew(self, consumer: str, deliveries: Sequence[Delivery]) -> list[Delivery]:
        """Reset the idle time of owned deliveries (``XCLAIM … JUSTID``); return the lost ones."""
        if not deliveries:
            return []
        ids = [d.delivery_id for d in deliveries]
        lost = {
            text(i)
            for i in await self._script("renew", (self._key("work"),), GROUP, consumer, *ids)
        }
        return [d for d in deliveries if d.delivery_id in lost]

    async def settle(
        self, consumer: str, delivery: Delivery, *, dead_letter: str | None = None
    ) -> bool:
        """Acknowledge and delete an owned entry (dead-lettering it with a reason, if given)."""
        keys = (self._key("work"), self._key("dead"))
        item = delivery.item
        args = (GROUP, consumer, delivery.delivery_id, dead_letter or "", item.trace_id, item.body)
        return bool(await self._script("settle", keys, *args))

    async def release(self, consumer: str, deliveries: Sequence[Delivery]) -> None:
        """Hand owned entries back: they look idle for a day, so the next claim takes them."""
        if deliveries:
            ids = [d.delivery_id for d in deliveries]
            await self._script("release", (self._key("work"),), GROUP, consumer, 86_400_000, *ids)

    async def dead_letters(self, *, limit: int = 100) -> list[tuple[str, str, int]]:
        """The dead-letter stream, oldest first: ``(trace_id, reason, deliveries)`` each."""
        entries: Any = await self._run(lambda c: c.xrange(self._key("dead"), count=limit))
        out: list[tuple[str, str, int]] = []
        for _entry_id, raw in entries:
            fields = entry_fields(raw)
            out.append(
                (fields["trace"].decode(), fields["reason"].decode(), int(fields["deliveries"]))
            )
        return out

    # ------------------------------------------------------------------- outputs
    async def put_output(self, output: TraceOutput) -> None:
        """Append ``output`` to its trace's stream unless its ``output_id`` is there already."""
        tid = output.trace_id
        keys = (self._key("o", tid), self._key("oi", tid), self._key("t", tid), self._key("c", tid))
        ttl = max(1, math.ceil(self.result_ttl_s))
        await self._script("put_output", keys, output.output_id, output.kind, output.body, ttl)

    async def known(self, trace_id: str) -> bool:
        """Whether ``trace_id`` was submitted (and has not expired)."""
        return bool(await self._run(lambda c: c.exists(self._key("t", trace_id))))

    async def outputs(
        self, trace_id: str, *, after: str | None = None
    ) -> AsyncIterator[tuple[str, TraceOutput]]:
        """The trace's outputs after cursor ``after``, waiting for more, ending after ``end``.

        Raises ``TraceNotFound`` at once for an unknown trace (or one whose outputs expired).
        """
        stream = self._key("o", trace_id)
        cursor = after or "0-0"
        block_ms = max(1, math.ceil(self.block_s * 1000))
        block: int | None = None  # the first read does not wait: an unknown trace fails at once
        while True:
            read: Any = await self._run(
                lambda c, at=cursor, wait=block: c.xread({stream: at}, count=100, block=wait)
            )
            if not read:
                if not await self.known(trace_id):
                    raise TraceNotFound(trace_id)
                block = block_ms
                continue
            for _stream, entries in read:
                for entry_id, raw in entries:
                    cursor = text(entry_id)
                    fields = entry_fields(raw)
                    kind = fields["kind"].decode()
                    output = TraceOutput(
                        trace_id=trace_id,
                        output_id=fields["id"].decode(),
                        kind=output_kind(kind),
                        body=fields["body"],
                    )
                    yield cursor, output
                    if output.kind == "end":
                        return

    # -------------------------------------------------------------- cancellation
    async def request_cancel(self, trace_id: str) -> bool:
        """Set the trace's cancel key and announce it (True: first request, live trace).

        Raises ``TraceNotFound`` for an unknown trace.
        """
        keys = (self._key("t", trace_id), self._key("c", trace_id))
        answer = int(await self._script("cancel", keys, self._key("cancel"), trace_id))
        if answer < 0:
            raise TraceNotFound(trace_id)
        return answer == 1

    async def is_cancelled(self, trace_id: str) -> bool:
        """Whether a cancellation of ``trace_id`` was requested."""
        return bool(await self._run(lambda c: c.exists(self._key("c", trace_id))))

    async def cancellations(self) -> AsyncIterator[str]:
        """Trace ids as their cancellation is announced on the channel (from now on)."""
        pubsub: Any = await self._run(lambda c: _subscribed(c, self._key("cancel")))
        try:
            while True:
                message: Any = await self._run(
                    lambda _c: pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=self.block_s
                    )
                )
                if message is not None and message.get("type") == "message":
                    yield text(message["data"])
        finally:
            await pubsub.aclose()

    # ------------------------------------------------------------------- mirror
    async def publish(self, envelope: BusEnvelope) -> None:
        """Mirror one edge crossing to the ``mirror`` stream (about ``mirror_maxlen`` kept)."""
        payload = to_json(envelope.payload, fallback=safe_repr)
        fields = {
            "edge": envelope.edge,
            "trace": envelope.trace_id or "",
            "payload": payload,
        }
        await self._run(
            lambda c: c.xadd(
                self._key("mirror"), fields, maxlen=self.mirror_maxlen, approximate=True
            )
        )


async def _subscribed(client: Any, channel: str) -> Any:
    pubsub = client.pubsub()
    await pubsub.subscribe(channel)
    return pubsub


@asynccontextmanager
async def _opened(bus: RedisStreamsBus) -> AsyncGenerator[RedisStreamsBus]:
    async with bus:
        yield bus
