"""A trace's journal read back: entries decoded, documents rebuilt along their lineage.

One entry per step (see ``_journal_patch`` for the patch). Its JSON keys: ``s`` step, ``p`` parent
step (absent for the ingress), ``n`` node, ``i`` output index, ``k`` kind (``m`` a Message, ``c``
a bare value in its envelope, ``v`` a bare value, ``x`` the end mark of an invocation whose last
output was emitted), ``d`` the patch, ``e`` where an emitted output went (absent for a returned
one; ``null`` = the default successors, a list of names, or ``"*"`` for Rookery), ``c`` = 1 on
the output that completed its invocation, ``y`` the class of a model payload
(``module:qualname``).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, TypeAdapter

from ._durable import DurableStore, LogEntry, Scope
from ._journal_patch import apply_patch
from ._registry import ModelRegistry
from ._types import WM, BudgetExhausted, Carried, FinalAnswer, Headers, Message, StreamChunk

__all__ = ["Lineage", "journal_stream", "model_tag", "read_entries"]

logger = logging.getLogger("penguiflow.core")

_BUILTIN: dict[str, type[BaseModel]] = {
    cls.__name__: cls for cls in (WM, FinalAnswer, BudgetExhausted, StreamChunk)
}


def model_tag(payload: object) -> str | None:
    """How an entry names a model payload's class (``WM`` for core's own), else None."""
    if not isinstance(payload, BaseModel):
        return None
    cls = type(payload)
    name = cls.__name__
    if _BUILTIN.get(name) is cls:
        return name
    return f"{cls.__module__}:{cls.__qualname__}"


def _model_of(tag: str) -> type[BaseModel] | None:
    """The class ``tag`` names, if it is a model already imported (the journal imports nothing)."""
    cls = _BUILTIN.get(tag)
    if cls is not None:
        return cls
    module_name, _, qualname = tag.partition(":")
    found: object = sys.modules.get(module_name)
    for part in qualname.split("."):
        found = getattr(found, part, None)
    if isinstance(found, type) and issubclass(found, BaseModel):
        return found
    return None


def journal_stream(trace_id: str) -> str:
    """The stream that holds ``trace_id``'s journal."""
    return f"pf.journal/{trace_id}"


async def read_entries(store: DurableStore, trace_id: str) -> list[tuple[LogEntry, dict[str, Any]]]:
    """Every entry of the trace's journal in seq order, decoded."""
    stream = journal_stream(trace_id)
    out: list[tuple[LogEntry, dict[str, Any]]] = []
    after = 0
    while True:
        batch = await store.read(stream, after, limit=1000)
        for entry in batch:
            out.append((entry, json.loads(entry.value)))
        if len(batch) < 1000:
            return out
        after = batch[-1].seq


@dataclass(frozen=True, slots=True)
class Output:
    """One recorded output of an invocation, decoded."""

    seq: int
    step: str
    parent: str | None
    node: str | None
    index: int
    kind: str
    emitted: bool
    to: Any
    """Where an emitted output went (see the module docstring)."""
    tag: str | None
    ts: float


class Lineage:
    """The documents of a trace's steps, and what each invocation recorded."""

    def __init__(self, entries: Sequence[tuple[LogEntry, dict[str, Any]]]) -> None:
        self.docs: dict[str, Any] = {}
        self.outputs: dict[str, Output] = {}
        """Every step with a message, by step id, in seq order."""
        self.by_invocation: dict[tuple[str, str], list[Output]] = {}
        self.complete: set[tuple[str | None, str | None]] = set()
        self.broken: int = 0
        """Entries whose parent is not in the journal (a failed write): not replayable."""
        for log_entry, raw in entries:
            parent: str | None = raw.get("p")
            node: str | None = raw.get("n")
            if raw.get("c") or raw.get("k") == "x":
                self.complete.add((parent, node))
            if raw.get("k") == "x":
                continue
            base: Any = {} if parent is None else self.docs.get(parent)
            if base is None:
                self.broken += 1
                continue
            step: str = raw["s"]
            self.docs[step] = apply_patch(base, raw.get("d", {}))
            output = Output(
                seq=log_entry.seq,
                step=step,
                parent=parent,
                node=node,
                index=int(raw.get("i", 0)),
                kind=raw.get("k", "m"),
                emitted="e" in raw,
                to=raw.get("e"),
                tag=raw.get("y"),
                ts=log_entry.ts,
            )
            self.outputs[step] = output
            if parent is not None and node is not None:
                self.by_invocation.setdefault((parent, node), []).append(output)
        if self.broken:
            logger.warning("journal: %d entries without a recorded parent skipped", self.broken)

    def ingress(self) -> Output | None:
        """The trace's ingress step, if recorded."""
        for output in self.outputs.values():
            if output.parent is None:
                return output
        return None

    def payload(self, output: Output, registry: ModelRegistry | None, typed: bool) -> Any:
        """The step's payload: JSON, or typed when ``typed`` (resume) or a registry is given.

        Typed means the producer's registered output model when it is not a ``Message``, else
        the payload's own model class when it is imported in this process.
        """
        raw = self.docs[output.step].get("payload")
        entry = None
        if registry is not None and output.node is not None and output.node in registry:
            entry = registry.entry(output.node)
        if entry is not None and not _is_message_type(entry.out_model):
            adapter: TypeAdapter[Any] = entry.out_adapter
            return adapter.validate_python(raw)
        if (typed or registry is not None) and output.tag is not None:
            cls = _model_of(output.tag)
            if cls is not None:
                return cls.model_validate(raw)
        return raw

    def message(
        self, output: Output, registry: ModelRegistry | None, trace_id: str, typed: bool = False
    ) -> Message:
        """The step as a ``Message`` (a bare value in its envelope, or in a minimal one)."""
        payload = self.payload(output, registry, typed)
        if output.kind == "v":
            return Message(payload=payload, headers=Headers(tenant="-"), trace_id=trace_id)
        fields = dict(self.docs[output.step])
        fields["payload"] = payload
        return Message.model_validate(fields)

    def item(self, output: Output, registry: ModelRegistry | None, trace_id: str) -> Any:
        """The step as it travels again in memo mode (typed payloads where possible)."""
        if output.kind == "v":
            return self.payload(output, registry, True)
        message = self.message(output, registry, trace_id, True)
        if output.kind == "c":
            return Carried(message.payload, message)
        return message

    def returned(self, output: Output, registry: ModelRegistry | None, trace_id: str) -> Any:
        """What the invocation returned for this output (a bare value without its envelope)."""
        item = self.item(output, registry, trace_id)
        return item.value if type(item) is Carried else item


def scope_of_item(item: Any) -> Scope:
    """The durable scope of what travels: its envelope's, or tenant ``"-"`` without one."""
    if isinstance(item, Message):
        return Scope.of(item)
    if type(item) is Carried:
        return Scope.of(item.envelope)
    return Scope("-")


def _is_message_type(model: Any) -> bool:
    return isinstance(model, type) and issubclass(model, Message)
