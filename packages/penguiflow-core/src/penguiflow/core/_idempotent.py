"""``idempotent``: run a side effect once per key, across retries, resumes and processes."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, overload

import anyio
from pydantic import TypeAdapter
from pydantic_core import to_json

from ._durable import DurableStore, Scope, check_key, check_ttl
from ._errors import VersionConflict
from ._journal_record import current_invocation

__all__ = ["idempotent"]

ONCE_NAMESPACE = "pf.once"
"""The namespace of ``idempotent``'s records (a lease while running, then the result)."""

_POLL_S = (0.005, 0.25)
"""First and longest wait between looks at another caller's lease."""


@overload
async def idempotent[T](
    key: str,
    fn: Callable[[], Awaitable[Any]],
    *,
    store: DurableStore | None = None,
    scope: Scope | None = None,
    ttl_s: float = 604800.0,
    lease_s: float = 60.0,
    result_type: type[T],
) -> T: ...
@overload
async def idempotent[T](
    key: str,
    fn: Callable[[], Awaitable[T]],
    *,
    store: DurableStore | None = None,
    scope: Scope | None = None,
    ttl_s: float = 604800.0,
    lease_s: float = 60.0,
    result_type: None = None,
) -> T: ...
async def idempotent(
    key: str,
    fn: Callable[[], Awaitable[Any]],
    *,
    store: DurableStore | None = None,
    scope: Scope | None = None,
    ttl_s: float = 604800.0,
    lease_s: float = 60.0,
    result_type: Any = None,
) -> Any:
    """Run ``await fn()`` once per ``key`` and return its result, recorded in ``pf.once``.

    Later calls with the same key, in any process sharing the store, return the recorded result
    without calling ``fn``. Every call, the first too, returns the result as recorded: its JSON
    form, or that validated into ``result_type``. Concurrent callers: the
    first claims a lease of ``lease_s`` seconds and the others wait for its result; a lease whose
    holder died expires and is taken over. When ``fn`` raises, the lease is released and the
    exception propagates (a later call tries again).

    Inside a node of a journaled flow, ``store`` and ``scope`` default to the journal's store
    and the trace's scope; for an effect done once per step, key it by the trace and the step:
    ``f"charge:{msg.trace_id}:{current_step_id()}"`` (step ids repeat across traces).
    This prevents a second effect once the first was recorded; for the gap between doing it and
    recording it, give ``key`` to the external system too, as its own idempotency key.

    Raises:
        ValueError: ``store`` or ``scope`` is missing outside a journaled node, or a bad
            ``key``, ``ttl_s`` or ``lease_s``.
    """
    check_key(key)
    check_ttl(ttl_s)
    check_ttl(lease_s)
    if store is None or scope is None:
        inv = current_invocation()
        if inv is None:
            raise ValueError(
                "idempotent() outside a node of a journaled flow needs store= and scope=, "
                'e.g. idempotent(key, fn, store=store, scope=Scope("acme"))'
            )
        store = inv.recorder.store if store is None else store
        scope = inv.scope if scope is None else scope
    adapter: TypeAdapter[Any] | None = None if result_type is None else TypeAdapter(result_type)
    holder = uuid.uuid4().hex
    wait = _POLL_S[0]
    while True:
        record = await store.get(ONCE_NAMESPACE, key, scope=scope)
        if record is not None:
            state = json.loads(record.value)
            if state.get("done"):
                result = state.get("result")
                return result if adapter is None else adapter.validate_python(result)
            await anyio.sleep(wait)  # another caller holds the lease: wait for its result
            wait = min(wait * 2, _POLL_S[1])
            continue
        lease = to_json({"lease": holder})
        try:
            version = await store.put(
                ONCE_NAMESPACE, key, lease, scope=scope, ttl_s=lease_s, if_version=0
            )
        except VersionConflict:
            continue  # someone claimed it between our get and put
        return await _run_once(store, key, scope, fn, version, ttl_s, adapter)


async def _run_once(
    store: DurableStore,
    key: str,
    scope: Scope,
    fn: Callable[[], Awaitable[Any]],
    version: int,
    ttl_s: float,
    adapter: TypeAdapter[Any] | None,
) -> Any:
    """We hold the lease: run ``fn``, record its result (or release the lease on failure)."""
    try:
        result = await fn()
    except BaseException:
        with anyio.CancelScope(shield=True):
            record = await store.get(ONCE_NAMESPACE, key, scope=scope)
            if record is not None and record.version == version:
                await store.delete(ONCE_NAMESPACE, key, scope=scope)
        raise
    value = to_json({"done": True, "result": result})
    with anyio.CancelScope(shield=True):  # the effect happened: its record must be written
        try:
            await store.put(
                ONCE_NAMESPACE, key, value, scope=scope, ttl_s=ttl_s, if_version=version
            )
        except VersionConflict:  # our lease expired and was taken over: record ours anyway
            await store.put(ONCE_NAMESPACE, key, value, scope=scope, ttl_s=ttl_s)
    if adapter is not None:
        return adapter.validate_python(json.loads(to_json(result)))
    return json.loads(to_json(result))
