"""The connection half of ``RedisDurableStore``: options, clients, the server check, scripts.

``RedisClient`` is the store's base class (``_store_redis`` adds the operations). Entering it
checks the server's version (``check_redis_version``) and loads the Lua scripts. ``_script``
queues one script call; whoever finds no batch in flight starts a flush, which sends everything
queued as one pipeline on one connection (a lone call is one plain ``EVALSHA``), so calls reach
the server in the order they were made. redis errors become ``StoreUnavailable`` here, in one
place (``_unavailable``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Self

from ._durable import DEFAULT_MAX_VALUE_BYTES, check_options
from ._errors import StoreClosed, StoreError, StoreUnavailable
from ._store_history import StoreBase
from ._store_redis_lua import SCRIPTS

__all__ = ["MIN_REDIS_VERSION", "RedisClient", "check_redis_version", "text"]

MIN_REDIS_VERSION = (6, 2)
"""The oldest server this store runs on (``ZRANGE … BYLEX``, ``XTRIM MINID``)."""

_INSTALL = 'RedisDurableStore needs redis: pip install "penguiflow-core[redis]"'
_MAX_BATCH = 1024  # script calls per pipeline: bounds one round trip
_MAX_CONNECTIONS = 64  # per store; more concurrent calls queue for a connection
_logger = logging.getLogger("penguiflow.core")


def check_redis_version(found: str) -> None:
    """Raise ``StoreError`` unless the server version ``found`` (``"7.0.15"``) is 6.2 or later."""
    parts: list[int] = []
    for part in found.split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    if tuple(parts) < MIN_REDIS_VERSION:
        needed = ".".join(map(str, MIN_REDIS_VERSION))
        raise StoreError(
            f"RedisDurableStore needs Redis >= {needed}, but the server is Redis {found}: "
            "upgrade the server"
        )


def _import_redis() -> tuple[Any, Any]:
    try:
        import redis.asyncio as redis_asyncio
        import redis.exceptions as redis_exceptions
    except ImportError as exc:
        raise ImportError(_INSTALL) from exc
    return redis_asyncio, redis_exceptions


def text(value: object) -> str:
    """``value`` as text (redis replies are bytes)."""
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(slots=True)
class _Op:
    name: str
    args: list[object]
    future: asyncio.Future[Any]


class RedisClient(StoreBase):
    """The connection half of ``RedisDurableStore`` (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "pf",
        clock: Callable[[], float] = time.time,
        retention: Mapping[str, float] | None = None,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
    ) -> None:
        """Check the options; the store connects once entered (prefer ``open``)."""
        if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ValueError(f"url must be a redis://, rediss:// or unix:// URL, got {url!r}")
        if not isinstance(prefix, str) or not prefix:  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ValueError(f"prefix must be a non-empty string, got {prefix!r}")
        if not callable(clock):
            raise TypeError(f"clock must be a callable returning seconds, got {clock!r}")
        table = check_options(max_value_bytes, retention)
        redis_asyncio, redis_exceptions = _import_redis()
        self._url = url
        self._prefix = prefix
        self._clock = clock
        self._retention = table
        self._max_value_bytes = max_value_bytes
        self._redis_error: type[Exception] = redis_exceptions.RedisError
        self._noscript_error: type[Exception] = redis_exceptions.NoScriptError
        # A blocking pool: a burst of callers waits for a connection instead of failing.
        pool = redis_asyncio.BlockingConnectionPool.from_url(
            url, max_connections=_MAX_CONNECTIONS, decode_responses=False
        )
        self._client: Any = redis_asyncio.Redis.from_pool(pool)
        # Lone script calls go one at a time (the flush awaits each), so they keep one
        # connection of the pool: no pool checkout per call (a blocking pool's costs ~18 µs).
        self._lone: Any = redis_asyncio.Redis(connection_pool=pool, single_connection_client=True)
        self._shas: dict[str, str] = {}
        self._queue: deque[_Op] = deque()
        self._flushing: asyncio.Task[None] | None = None
        self._state: Literal["new", "open", "closed"] = "new"

    async def __aenter__(self) -> Self:
        """Connect, check the server's version (and persistence), and return the store."""
        if self._state == "closed":
            raise StoreClosed(f"the RedisDurableStore at {self._url} is closed; open a new one")
        if self._state == "new":
            self._state = "open"
            try:
                info: dict[str, Any] = await self._run(lambda c: c.info("server"))
                check_redis_version(text(info.get("redis_version", "0")))
                persistence: dict[str, Any] = await self._run(lambda c: c.info("persistence"))
                if str(persistence.get("aof_enabled", "0")) != "1":
                    _logger.warning(
                        "Redis at %s has appendonly off: a server crash may lose recent writes "
                        "of the RedisDurableStore (enable appendonly for durability)",
                        self._url,
                    )
                await self._load_scripts()
            except BaseException:
                await self.aclose()
                raise
        return self

    async def aclose(self) -> None:
        """Close the connections (idempotent); any later call raises ``StoreClosed``."""
        if self._state == "closed":
            return
        self._state = "closed"
        if self._flushing is not None:  # let the batch in flight finish
            await asyncio.shield(self._flushing)
        try:
            await self._lone.aclose()
            await self._client.aclose()
        except self._redis_error:  # pragma: no cover - closing is best effort
            pass

    # ------------------------------------------------------------------------ the boundary
    def _check_open(self) -> None:
        if self._state != "open":
            raise StoreClosed(
                f"the RedisDurableStore at {self._url} is closed; open a new one"
                if self._state == "closed"
                else "the store is not open: use `async with RedisDurableStore.open(url)`"
            )

    async def _run(self, call: Callable[[Any], Awaitable[Any]]) -> Any:
        self._check_open()
        try:
            return await call(self._client)
        except self._redis_error as exc:
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        error = StoreUnavailable(f"Redis store {self._url}: {exc}", original_exc=exc)
        error.__cause__ = exc
        return error

    async def _load_scripts(self) -> None:
        for name, source in SCRIPTS.items():
            self._shas[name] = text(await self._run(lambda c, s=source: c.script_load(s)))

    async def _script(self, name: str, *args: object) -> Any:
        self._check_open()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append(_Op(name, [self._prefix, *args], future))
        if self._flushing is None:
            # The flush is a task of its own, so a cancelled caller only stops waiting (its
            # future is cancelled; the flush skips it) while the calls go on in order. It starts
            # eagerly: a lone call is on the wire before this returns, with no loop iteration.
            flushing = asyncio.Task(self._flush(), loop=loop, eager_start=True)
            if not flushing.done():
                self._flushing = flushing
        return await future

    async def _flush(self) -> None:
        try:
            while self._queue:
                count = min(len(self._queue), _MAX_BATCH)
                batch = [self._queue.popleft() for _ in range(count)]
                results: list[Any]
                try:
                    results = await self._pipeline(batch)
                except Exception as exc:  # the round trip failed: so did every call in it
                    results = [exc] * len(batch)
                for op, result in zip(batch, results, strict=True):
                    if op.future.done():
                        continue
                    if isinstance(result, self._redis_error):
                        op.future.set_exception(self._unavailable(result))
                    elif isinstance(result, BaseException):
                        op.future.set_exception(result)
                    else:
                        op.future.set_result(result)
        finally:
            self._flushing = None

    async def _pipeline(self, batch: list[_Op]) -> list[Any]:
        results = await self._send(batch)
        lost = [i for i, r in enumerate(results) if isinstance(r, self._noscript_error)]
        if lost:  # the server forgot the scripts (restart, SCRIPT FLUSH): those did not run
            await self._load_scripts()
            for i, result in zip(lost, await self._send([batch[i] for i in lost]), strict=True):
                results[i] = result
        return results

    async def _send(self, batch: list[_Op]) -> list[Any]:
        if len(batch) == 1:  # a lone call: one EVALSHA, without a pipeline's bookkeeping
            op = batch[0]
            try:
                return [await self._lone.evalsha(self._shas[op.name], 0, *op.args)]
            except self._redis_error as exc:
                return [exc]
        pipe = self._client.pipeline(transaction=False)
        for op in batch:
            pipe.evalsha(self._shas[op.name], 0, *op.args)
        return list(await pipe.execute(raise_on_error=False))
