"""How a journaled flow records its steps, and how memo mode replays finished invocations.

A ``Recorder`` belongs to one flow with a ``Journal``. The runtime calls it at three places:
the ingress (``flow.emit``), a node invocation's returned result and its ``ctx.emit`` outputs.
Each output gets its step id and one entry (``_journal_lineage`` documents the format) before
it reaches a successor (``durability="sync"``), then travels as ``Stepped`` so that the
successor's invocation knows its parent step. In memo mode (a trace being resumed) a node
invocation whose outputs were all recorded is not run: the recorded outputs are routed instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Mapping, Sequence
from contextvars import Token
from typing import TYPE_CHECKING, Any

import anyio
from pydantic_core import to_json as _dumps

from ._durable import DurableStore, Scope
from ._errors import FlowError, FlowErrorCode, safe_repr
from ._journal_invocation import Invocation, current_invocation, output_entry, tag_model
from ._journal_invocation import invocation_var as _invocation
from ._journal_lineage import Lineage, journal_stream, scope_of_item
from ._journal_patch import INGRESS_STEP, child_step, fields_of, to_json
from ._node import NodeFunc
from ._registry import ModelRegistry
from ._types import Message, Stepped

if TYPE_CHECKING:
    from ._context import Context
    from ._journal import Journal
    from ._runtime import Runtime
    from ._trace import TraceState

__all__ = ["Invocation", "Recorder", "current_invocation"]

logger = logging.getLogger("penguiflow.core")

_BUFFER_LIMIT = 1024
"""Entries an async journal buffers before producers wait for the writer."""


class Recorder:
    """The journal's side of one running flow (see the module docstring)."""

    def __init__(self, journal: Journal, rt: Runtime) -> None:
        self.journal: Journal = journal
        self.rt: Runtime = rt
        self.store: DurableStore = journal.store
        self.sync: bool = journal.durability == "sync"
        self.memos: dict[str, Lineage] = {}
        """Traces being resumed (memo mode), with what their journal holds."""
        self.buffer: deque[tuple[str, bytes, Scope, str]] = deque()
        self.ready: anyio.Event | None = None
        """Set when an entry is buffered while ``drain`` waits (made there: anyio 4.0 cannot
        make an event outside a running loop, and a journaled flow may be built outside one)."""
        self.room: anyio.Event | None = None
        self.writing: asyncio.Lock = asyncio.Lock()

    @property
    def registry(self) -> ModelRegistry | None:
        """The flow's registry (memo mode validates recorded payloads with it)."""
        return self.rt.registry

    # ---------------------------------------------------------------- ingress
    async def ingress(self, key: str | None, item: Any, to: Sequence[str] | None) -> Any:
        """Record a message put in through OpenSea (step ``"0"``); what to deliver instead."""
        if key is None:
            return item  # an untraced payload has no journal
        entry = self._ingress_entry(key, item, to)
        if entry is None or await self._write(key, entry, scope_of_item(item), INGRESS_STEP, None):
            return Stepped(item, INGRESS_STEP)
        return item

    def ingress_nowait(self, key: str | None, item: Any, to: Sequence[str] | None) -> Any:
        """:meth:`ingress` for ``flow.emit_nowait``: only an async journal can record it now."""
        if key is None:
            return item
        if self.sync:
            raise RuntimeError(
                "flow.emit_nowait cannot wait for a sync journal's write; use `await "
                "flow.emit(...)`, or Journal(store, durability='async')"
            )
        entry = self._ingress_entry(key, item, to)
        if entry is not None:
            self._buffer(key, entry, scope_of_item(item), INGRESS_STEP)
        return Stepped(item, INGRESS_STEP)

    def _ingress_entry(
        self, key: str, item: Any, to: Sequence[str] | None
    ) -> dict[str, Any] | None:
        memo = self.memos.get(key)
        if memo is not None and INGRESS_STEP in memo.outputs:
            return None  # resume: the recorded ingress itself
        kind, fields = fields_of(item)
        entry: dict[str, Any] = {"s": INGRESS_STEP, "k": kind, "d": {"=": to_json(fields)}}
        entry["e"] = None if to is None else list(to)
        tag_model(entry, fields)
        return entry

    # ------------------------------------------------------------ invocations
    def begin(
        self, node: str, key: str | None, item: Any, state: TraceState | None, memoize: bool
    ) -> tuple[Any, Token[Invocation | None] | None]:
        """Unwrap ``item`` for a node about to process it; a journaled step opens an invocation.

        A node with ``memoize=False`` runs in memo mode as on a first run: its outputs go on
        (the journal keeps what was recorded first).
        """
        if type(item) is not Stepped:
            return item, None  # an unjournaled message (its parent step was not recorded)
        inner = item.item
        if key is None:
            return inner, None
        owner = None if state is None else state.owner
        scope = owner if owner is not None else scope_of_item(inner)
        memo = self.memos.get(key) if self.memos and memoize else None
        inv = Invocation(self, key, item.step, node, inner, scope, memo)
        return inner, _invocation.set(inv)

    def end(self, token: Token[Invocation | None]) -> None:
        """The invocation opened by :meth:`begin` is over."""
        _invocation.reset(token)

    def stepped(self, result: Any) -> Any:
        """``result`` as it goes on a floe: with the step it was recorded as, if it was."""
        inv = _invocation.get()
        if inv is None or inv.result_step is None:
            return result
        return Stepped(result, inv.result_step)

    def wrap(self, node: str, func: NodeFunc) -> NodeFunc:
        """``func`` journaled: its result recorded, or (memo mode) its recorded outputs replayed."""

        async def journaled(message: Any, ctx: Context) -> Any:
            inv = _invocation.get()
            if inv is None or inv.recorder is not self or inv.node != node:
                return await func(message, ctx)
            inv.index = 0  # each attempt outputs the same steps again
            inv.result_step = None
            inv.outputs.clear()
            memo = inv.memo
            if memo is not None and (inv.step, node) in memo.complete:
                return await self._replay(inv, memo, ctx)
            return await self._returned(inv, await func(message, ctx))

        journaled.__name__ = getattr(func, "__name__", node)
        journaled.__qualname__ = getattr(func, "__qualname__", node)
        return journaled

    async def _replay(self, inv: Invocation, memo: Lineage, ctx: Context) -> Any:
        from ._graph import ROOKERY

        for output in memo.by_invocation.get((inv.step, inv.node), ()):
            inv.index = output.index  # so the output gets its recorded step (and message) again
            if not output.emitted:
                return await self._returned(inv, memo.returned(output, self.registry, inv.key))
            item = memo.item(output, self.registry, inv.key)
            await ctx.emit(item, to=ROOKERY if output.to == "*" else output.to)
        return None

    async def _returned(self, inv: Invocation, result: Any) -> Any:
        if result is None:
            if inv.index:  # outputs were emitted, then nothing returned: mark it finished
                step = child_step(inv.step, inv.node, "end")
                if inv.memo is None or (inv.step, inv.node) not in inv.memo.complete:
                    entry = {"s": step, "p": inv.step, "n": inv.node, "k": "x"}
                    await self._write(inv.key, entry, inv.scope, step, inv)
            return None
        index = inv.index
        inv.index += 1
        step = child_step(inv.step, inv.node, index)
        memo = inv.memo
        if memo is not None and step in memo.outputs:  # recorded before: the recorded one wins
            inv.result_step = step
            return memo.returned(memo.outputs[step], self.registry, inv.key)
        fields: Mapping[str, Any]
        if isinstance(result, Message):
            kind, fields = "m", result.__dict__
        elif inv.envelope is not None:
            kind, fields = "c", {**inv.envelope.__dict__, "payload": result}
        else:
            kind, fields = "v", {"payload": result}
        entry = output_entry(inv, step, index, kind, fields)
        entry["c"] = 1
        if await self._write(inv.key, entry, inv.scope, step, inv):
            inv.result_step = step
            inv.outputs.append((result, step))
        return result

    # ------------------------------------------------------------------ emits
    async def emitted(self, item: Any, to: Any, rookery: bool) -> Any:
        """Record an output a node emits (``ctx.emit``); what to deliver instead."""
        inv = self._emitting(item)
        if inv is None:
            return item
        step, entry = self._emit_entry(inv, item, to)
        if entry is not None and not await self._write(inv.key, entry, inv.scope, step, inv):
            return item
        return self._emit_result(inv, item, step, rookery)

    def emitted_nowait(self, item: Any, to: Any, rookery: bool) -> Any:
        """:meth:`emitted` for ``ctx.emit_nowait``: only an async journal can record it now."""
        inv = self._emitting(item)
        if inv is None:
            return item
        if self.sync:
            raise RuntimeError(
                "ctx.emit_nowait cannot wait for a sync journal's write; use `await ctx.emit(...)`"
                ", or Journal(store, durability='async')"
            )
        step, entry = self._emit_entry(inv, item, to)
        if entry is not None:
            self._buffer(inv.key, entry, inv.scope, step)
        return self._emit_result(inv, item, step, rookery)

    def _emitting(self, item: Any) -> Invocation | None:
        inv = _invocation.get()
        if inv is None or inv.recorder is not self:
            return None
        if isinstance(item, Message) and item.trace_id != inv.key:
            return None  # an output for another trace is not part of this one's journal
        return inv

    def _emit_entry(self, inv: Invocation, item: Any, to: Any) -> tuple[str, dict[str, Any] | None]:
        index = inv.index
        inv.index += 1
        step = child_step(inv.step, inv.node, index)
        if inv.memo is not None and step in inv.memo.outputs:
            return step, None
        kind, fields = fields_of(item)
        entry = output_entry(inv, step, index, kind, fields)
        entry["e"] = to
        return step, entry

    def _emit_result(self, inv: Invocation, item: Any, step: str, rookery: bool) -> Any:
        memo = inv.memo
        if memo is not None and step in memo.outputs:
            item = memo.item(memo.outputs[step], self.registry, inv.key)
        inv.outputs.append((item, step))
        return item if rookery else Stepped(item, step)

    # ---------------------------------------------------------------- writing
    async def _write(
        self, key: str, entry: dict[str, Any], scope: Scope, step: str, inv: Invocation | None
    ) -> bool:
        """Append one entry (sync: now; async: buffered). False when it could not be written."""
        if not self.sync:
            self._buffer(key, entry, scope, step)
            if len(self.buffer) >= _BUFFER_LIMIT:
                await self._wait_for_room()
            return True
        try:
            await self.store.append(
                journal_stream(key),
                _dumps(entry),
                scope=scope,
                idempotency_key=step,
                ttl_s=self.journal.ttl_s,
            )
        except Exception as exc:
            return self._failed(exc, key, step, inv)
        return True

    def _failed(self, exc: Exception, key: str, step: str, inv: Invocation | None) -> bool:
        self.rt.dispatcher.store_errors += 1
        if self.journal.strict:
            raise FlowError(
                trace_id=key,
                node_name=None if inv is None else inv.node,
                code=FlowErrorCode.NODE_EXCEPTION,
                message=f"the journal could not record step {step}: {safe_repr(exc)}",
                original_exc=exc,
            ) from exc
        logger.error(
            "journal_write_failed: step %s of trace %s goes on unjournaled: %s",
            step,
            key,
            safe_repr(exc),
        )
        return False

    def _buffer(self, key: str, entry: dict[str, Any], scope: Scope, step: str) -> None:
        self.buffer.append((key, _dumps(entry), scope, step))
        if self.ready is not None:
            self.ready.set()

    async def _wait_for_room(self) -> None:
        if self.room is None:
            self.room = anyio.Event()
        await self.room.wait()

    async def drain(self) -> None:
        """Write buffered entries until cancelled (an async journal's task in the flow)."""
        while True:
            if not self.buffer:
                self.ready = anyio.Event()
                await self.ready.wait()
            self.ready = None
            await self.flush()

    async def flush(self) -> None:
        """Write every buffered entry, in order (one writer at a time)."""
        async with self.writing:
            buffer = self.buffer
            while buffer:
                key, data, scope, step = buffer.popleft()
                try:
                    with anyio.CancelScope(shield=True):
                        await self.store.append(
                            journal_stream(key),
                            data,
                            scope=scope,
                            idempotency_key=step,
                            ttl_s=self.journal.ttl_s,
                        )
                except Exception as exc:
                    self.rt.dispatcher.store_errors += 1
                    logger.error("journal_write_failed: step %s of trace %s: %s", step, key, exc)
                if self.room is not None and len(buffer) < _BUFFER_LIMIT // 2:
                    self.room.set()
                    self.room = None

    # ----------------------------------------------------------------- resume
    def adopt(self, key: str, memo: Lineage) -> None:
        """Run trace ``key`` in memo mode with what its journal holds."""
        self.memos[key] = memo

    def adopted(self, key: str) -> None:
        """The resumed trace is in the flow: forget its memo when it ends."""
        state = self.rt.traces.get(key)
        if state is None:
            self.memos.pop(key, None)
        else:
            state.cleanups.append(lambda: self._forget(key))

    def _forget(self, key: str) -> None:
        self.memos.pop(key, None)
