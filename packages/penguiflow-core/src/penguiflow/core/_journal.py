"""The journal: per-trace event sourcing on a ``DurableStore``, with replay and resume.

``create(..., journal=Journal(store))`` records, for every message a node returns or emits (and
every ingress message), one entry in the stream ``pf.journal/{trace_id}``: its step id, parent
step, node, output index and the patch from the node's input to that output. ``replay`` rebuilds
every step's message; ``resume`` runs a trace again in *memo mode*, where invocations that had
finished are not run again: their recorded outputs are routed instead.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from ._durable import DurableStore, check_ttl
from ._journal_lineage import Lineage, read_entries
from ._journal_record import Recorder, current_invocation
from ._registry import ModelRegistry
from ._types import Message

if TYPE_CHECKING:
    from ._flow import PenguiFlow
    from ._runtime import Runtime

__all__ = ["Durability", "Journal", "JournalStep", "current_step_id"]

Durability = Literal["sync", "async"]
"""``"sync"``: each entry is committed before its output moves on; ``"async"``: buffered."""

_STORE_METHODS = ("append", "read", "put", "get", "delete")


def current_step_id() -> str | None:
    """The step id of the message the calling node invocation processes (None outside nodes).

    Stable across re-runs of the same step, so with the trace id it is the idempotency key for
    anything a node does once per step: ``f"{msg.trace_id}:{current_step_id()}"``. Step ids are
    unique within a trace only (every trace's ingress is ``"0"``). Only journaled flows have steps.
    """
    inv = current_invocation()
    return None if inv is None else inv.step


@dataclass(frozen=True, slots=True)
class JournalStep:
    """One recorded step of a trace, with its message rebuilt (see ``Journal.replay``)."""

    seq: int
    """Its entry's position in the trace's journal stream."""
    step: str
    """The step id (``"0"`` for the ingress message)."""
    parent: str | None
    """The step the producing invocation processed (None for the ingress)."""
    node: str | None
    """The node that returned or emitted it (None for the ingress)."""
    index: int
    """Its position among the outputs of that invocation."""
    message: Message
    """The message (a bare value appears in the envelope it travelled with)."""
    ts: float
    """When the entry was written (the store's clock)."""


class Journal:
    """Record a flow's steps in ``store`` (pass it to ``create(..., journal=...)``).

    Args:
        store: Any ``DurableStore`` (SQLite for one host, PostgreSQL or Redis to share).
        durability: ``"sync"`` commits each entry before the output reaches a successor or
            Rookery (so a result is replayable when ``fetch`` returns); ``"async"`` buffers
            entries and writes them from a background task.
        ttl_s: Expiry of each trace's journal, renewed by each write (None: the store's
            retention default for ``pf.journal/``, else no expiry).
        chunks: Also journal stream chunks (``ctx.emit_chunk``).
        strict: A failed write fails the invocation with a ``FlowError`` (``NODE_EXCEPTION``,
            ``original_exc`` the store's error), which its retry policy handles; by default the
            failure is logged, counted in ``statistics().store_errors`` and the step goes on
            unjournaled.

    Payloads must be JSON-serialisable through pydantic. A journaled trace has one ingress
    message; each node invocation's outputs are numbered in the order it emits and returns them.
    """

    __slots__ = ("__weakref__", "_recorders", "chunks", "durability", "store", "strict", "ttl_s")

    def __init__(
        self,
        store: DurableStore,
        *,
        durability: Durability = "sync",
        ttl_s: float | None = None,
        chunks: bool = False,
        strict: bool = False,
    ) -> None:
        missing = [name for name in _STORE_METHODS if not callable(getattr(store, name, None))]
        if missing:
            raise TypeError(
                f"Journal needs a DurableStore; {type(store).__name__} lacks "
                f"{', '.join(missing)} (use SQLiteDurableStore.open(path), for example)"
            )
        if durability not in ("sync", "async"):
            raise ValueError(f"durability must be 'sync' or 'async', got {durability!r}")
        check_ttl(ttl_s)
        self.store: DurableStore = store
        """Where the entries go."""
        self.durability: Durability = durability
        """``"sync"`` or ``"async"``."""
        self.ttl_s: float | None = ttl_s
        """Expiry of each trace's journal, in seconds (None: the store's default)."""
        self.chunks: bool = chunks
        """Whether stream chunks are journaled."""
        self.strict: bool = strict
        """Whether a failed write fails the invocation."""
        self._recorders: weakref.WeakSet[Recorder] = weakref.WeakSet()

    def attach(self, rt: Runtime) -> Recorder:
        """Internal: the recorder of one flow built with this journal."""
        recorder = Recorder(self, rt)
        self._recorders.add(recorder)
        return recorder

    async def replay(
        self, trace_id: str, *, registry: ModelRegistry | None = None
    ) -> list[JournalStep]:
        """Every recorded step of ``trace_id`` in seq order, each message rebuilt.

        Payloads are JSON values. With a ``registry`` they are validated with the producing
        node's registered output model when it is not a ``Message``, else into the payload's own
        model class when that is imported in this process (``WM``, your models). An unknown or
        erased trace gives ``[]``.
        """
        for recorder in list(self._recorders):
            await recorder.flush()  # an async journal's buffered entries first
        lineage = Lineage(await read_entries(self.store, trace_id))
        return [
            JournalStep(
                seq=output.seq,
                step=output.step,
                parent=output.parent,
                node=output.node,
                index=output.index,
                message=lineage.message(output, registry, trace_id),
                ts=output.ts,
            )
            for output in lineage.outputs.values()
        ]

    async def resume(self, flow: PenguiFlow, trace_id: str) -> None:
        """Run ``trace_id`` again in ``flow`` (running, built with this journal), in memo mode.

        The recorded ingress message is emitted again; an invocation whose outputs were all
        recorded is not run (its recorded outputs are routed instead), one that produced nothing
        or did not finish runs again, and when a re-run output's step was recorded, the recorded
        message wins. Nodes with ``NodePolicy(memoize=False)`` always run. Fetch the results as
        usual.

        Raises:
            ValueError: ``flow`` was not created with this journal.
            LookupError: The journal holds no ingress message for ``trace_id``.
        """
        from ._flow import runtime_of

        recorder = runtime_of(flow).recorder
        if recorder is None or recorder.journal is not self:
            raise ValueError(
                "journal.resume needs a flow created with this journal: "
                "create(..., journal=journal)"
            )
        for each in list(self._recorders):
            await each.flush()
        lineage = Lineage(await read_entries(self.store, trace_id))
        ingress = lineage.ingress()
        if ingress is None:
            raise LookupError(f"trace {trace_id!r} has no journal (never recorded, or erased)")
        item = lineage.item(ingress, recorder.registry, trace_id)
        to: list[str] | None = ingress.to
        recorder.adopt(trace_id, lineage)
        try:
            await flow.emit(item, to=to, trace_id=None if isinstance(item, Message) else trace_id)
        except BaseException:
            recorder.memos.pop(trace_id, None)
            raise
        recorder.adopted(trace_id)

    def step_of(self, message: object) -> str | None:
        """The step id of ``message`` when the calling node invocation processes or output it.

        Ingress messages are step ``"0"``; an output's step is the first 20 hex digits of
        sha256(``parent/node/index``), stable across re-runs. None for any other message.
        """
        inv = current_invocation()
        if inv is None or inv.recorder.journal is not self:
            return None
        return inv.step_of(message)

    def __repr__(self) -> str:
        return f"Journal({type(self.store).__name__}, durability={self.durability!r})"
