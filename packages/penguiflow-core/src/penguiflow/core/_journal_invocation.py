"""One node invocation of a journaled trace, and the journal entries of its outputs.

``Recorder`` (``_journal_record``) opens an ``Invocation`` around each journaled node call and
sets it as the current one; ``current_invocation`` is how ``ctx.emit``, ``idempotent`` and the
recorder find it again. Re-exported by ``_journal_record``.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from ._durable import Scope
from ._journal_lineage import Lineage, model_tag
from ._journal_patch import diff, fields_of
from ._types import Carried, Message

if TYPE_CHECKING:
    from ._journal_record import Recorder

__all__ = ["Invocation", "current_invocation", "invocation_var", "output_entry", "tag_model"]

invocation_var: ContextVar[Invocation | None] = ContextVar("penguiflow_invocation", default=None)


def current_invocation() -> Invocation | None:
    """The journaled node invocation the caller runs in, if any."""
    return invocation_var.get()


class Invocation:
    """One node invocation of a journaled trace: its parent step and what it has output."""

    __slots__ = (
        "envelope",
        "fields",
        "index",
        "input",
        "key",
        "memo",
        "node",
        "outputs",
        "recorder",
        "result_step",
        "scope",
        "step",
    )

    def __init__(
        self,
        recorder: Recorder,
        key: str,
        step: str,
        node: str,
        item: Any,
        scope: Scope,
        memo: Lineage | None,
    ) -> None:
        self.recorder = recorder
        self.key = key
        self.step = step
        """The step of the message being processed (the parent of every output)."""
        self.node = node
        self.input = item
        self.envelope: Message | None = (
            item if isinstance(item, Message) else item.envelope if type(item) is Carried else None
        )
        self.fields: Mapping[str, Any] = fields_of(item)[1]
        self.scope = scope
        self.memo = memo
        self.index = 0
        self.result_step: str | None = None
        self.outputs: list[tuple[Any, str]] = []

    def step_of(self, message: Any) -> str | None:
        """The step of ``message`` if it is this invocation's input or one of its outputs."""
        inner = self.input
        if message is inner or message is self.envelope:
            return self.step
        if type(inner) is Carried and isinstance(message, Message):
            if message.payload is inner.value:  # the envelope the node was given the value in
                return self.step
        for output, step in self.outputs:
            if output is message:
                return step
        return None


def output_entry(
    inv: Invocation, step: str, index: int, kind: str, fields: Mapping[str, Any]
) -> dict[str, Any]:
    """The entry of output ``index`` of ``inv``: its step, lineage, kind and patch."""
    entry: dict[str, Any] = {"s": step, "p": inv.step, "n": inv.node, "i": index, "k": kind}
    entry["d"] = diff(inv.fields, fields)
    tag_model(entry, fields)
    return entry


def tag_model(entry: dict[str, Any], fields: Mapping[str, Any]) -> None:
    """Note in ``entry`` the registered model of the message's payload, when it has one."""
    tag = model_tag(fields.get("payload"))
    if tag is not None:
        entry["y"] = tag
