"""The message envelope and the built-in payload models."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ._errors import FlowErrorCode

__all__ = [
    "WM",
    "Carried",
    "BudgetExhausted",
    "FinalAnswer",
    "Headers",
    "Message",
    "Stepped",
    "StreamChunk",
    "copy_with",
    "merge_meta",
    "trusted",
]


def _new_trace_id() -> str:
    return uuid.uuid4().hex


class Headers(BaseModel):
    """Routing-relevant facts about a message."""

    model_config: ClassVar[ConfigDict] = ConfigDict(defer_build=True)

    tenant: str
    """The tenant the message belongs to (routing policies often key on it)."""
    topic: str | None = None
    """Optional topic label."""
    priority: int = 0
    """Higher means more urgent; informational for routing policies."""
    user: str | None = None
    """The user the message acts for, if any (part of its durable ``Scope``)."""
    session: str | None = None
    """The session it belongs to, if any (part of its durable ``Scope``)."""


class Message(BaseModel):
    """The envelope that carries a payload through a flow.

    A node that returns a ``Message`` keeps ``headers``, ``trace_id``, ``deadline_s`` and ``meta``
    unless it changes them; a node that returns a bare payload for a ``Message`` input has it
    re-wrapped in the input's envelope.
    """

    model_config: ClassVar[ConfigDict] = ConfigDict(arbitrary_types_allowed=True, defer_build=True)

    payload: Any
    """What the nodes work on."""
    headers: Headers
    """Tenant, topic and priority."""
    trace_id: str = Field(default_factory=_new_trace_id)
    """Correlates every message of one run; a fresh uuid4 hex by default."""
    ts: float = Field(default_factory=time.time)
    """Creation time, wall-clock epoch seconds."""
    deadline_s: float | None = None
    """Absolute wall-clock deadline (epoch seconds); checked before each node runs."""
    meta: dict[str, Any] = Field(default_factory=dict)
    """Free-form debug/cost/context data; a fresh dict per message."""

    def with_payload(self, payload: Any) -> Self:
        """Return a copy carrying ``payload`` in this envelope (``meta`` is copied, not shared)."""
        # copy_with, unrolled: this runs on every re-wrap and every stream chunk.
        copy = _new(type(self))
        fields = self.__dict__.copy()
        fields["payload"] = payload
        fields["meta"] = fields["meta"].copy()
        _set(copy, "__dict__", fields)
        _set(copy, "__pydantic_fields_set__", self.__pydantic_fields_set__ | _PAYLOAD_META)
        extra, private = self.__pydantic_extra__, self.__pydantic_private__
        _set(copy, "__pydantic_extra__", None if extra is None else dict(extra))
        _set(copy, "__pydantic_private__", None if private is None else dict(private))
        return copy

    def with_meta(self, **values: Any) -> Self:
        """Return a copy whose ``meta`` has ``values`` set; this message is left unchanged."""
        return copy_with(self, meta={**self.meta, **values})

    def merged_meta(self, *metas: Mapping[str, Any]) -> Self:
        """Return a copy whose ``meta`` is this one's merged with ``metas`` (last write wins)."""
        return copy_with(self, meta=merge_meta(self.meta, *metas))

    def branch(self) -> Self:
        """Return a copy with its own ``meta`` dict (what each fan-out branch receives)."""
        return copy_with(self, meta=dict(self.meta))


_new = object.__new__
_set = object.__setattr__
_PAYLOAD_META = frozenset(("payload", "meta"))


def copy_with[M: BaseModel](model: M, **changes: Any) -> M:
    """``model.model_copy(update=changes)`` without its overhead (no validation either way).

    Messages are copied on every re-wrap and fan-out, where ``model_copy`` costs twice as much.
    """
    copy = _new(type(model))
    fields = model.__dict__.copy()
    fields.update(changes)
    _set(copy, "__dict__", fields)
    _set(copy, "__pydantic_fields_set__", model.__pydantic_fields_set__ | changes.keys())
    extra, private = model.__pydantic_extra__, model.__pydantic_private__
    _set(copy, "__pydantic_extra__", None if extra is None else dict(extra))
    _set(copy, "__pydantic_private__", None if private is None else dict(private))
    return copy


def trusted[M: BaseModel](cls: type[M], fields: dict[str, Any], fields_set: set[str]) -> M:
    """Build ``cls`` from ``fields`` known to be valid and complete (no validation).

    ``fields_set`` becomes the instance's own ``model_fields_set``: pass a fresh set.
    """
    model = _new(cls)
    _set(model, "__dict__", fields)
    _set(model, "__pydantic_fields_set__", fields_set)
    _set(model, "__pydantic_extra__", None)
    _set(model, "__pydantic_private__", None)
    return model


class Carried:
    """Internal: a bare value a node returned, travelling with the envelope it came in.

    The runtime never changes what a node returns, yet a bare value keeps its trace: the envelope
    (trace id, headers, deadline, meta) of the message the node was given goes along with it
    through floes and lanes. Rookery hands back ``value`` alone; a successor that declares a
    ``Message`` input gets ``envelope.with_payload(value)``, any other successor ``value``.
    """

    __slots__ = ("envelope", "value")

    def __init__(self, value: Any, envelope: Message) -> None:
        self.value: Any = value
        self.envelope: Message = envelope

    def branch(self) -> Carried:
        """A copy for one more fan-out branch (its own ``meta`` dict)."""
        return Carried(self.value, self.envelope.branch())

    def __repr__(self) -> str:
        return f"Carried({self.value!r}, trace_id={self.envelope.trace_id!r})"


class Stepped:
    """Internal: what travels on a floe of a journaled flow, with the step id it was recorded as.

    The successor's invocation is then a child of that step (see ``Journal``). Only floes carry
    it: Rookery and listeners see the item alone.
    """

    __slots__ = ("item", "step")

    def __init__(self, item: Any, step: str) -> None:
        self.item: Any = item
        self.step: str = step

    def branch(self) -> Stepped:
        """A copy for one more fan-out branch (the same step, a copy of the item)."""
        item = self.item
        return Stepped(item.branch() if isinstance(item, Message | Carried) else item, self.step)

    def __repr__(self) -> str:
        return f"Stepped({self.item!r}, step={self.step!r})"


def merge_meta(*metas: Mapping[str, Any]) -> dict[str, Any]:
    """Merge meta dicts in order into a new dict; a later key overwrites an earlier one.

    This is the rule the runtime applies at ``join_k`` (branches in arrival order) and when a
    subflow
    returns (the subflow's final meta over the caller's).
    """
    merged: dict[str, Any] = {}
    for meta in metas:
        merged.update(meta)
    return merged


class StreamChunk(BaseModel):
    """One piece of a streamed answer (for example an LLM token)."""

    model_config: ClassVar[ConfigDict] = ConfigDict(defer_build=True)

    stream_id: str
    """Which stream the chunk belongs to (defaults to the parent message's trace id)."""
    seq: int
    """Position in the stream, counted from 0 per stream."""
    text: str
    """The chunk's text."""
    done: bool = False
    """True on the last chunk of the stream."""
    meta: dict[str, Any] = Field(default_factory=dict)
    """Free-form chunk metadata."""


class WM(BaseModel):
    """Working memory of a controller loop (a node with a self-edge that returns ``WM``)."""

    model_config: ClassVar[ConfigDict] = ConfigDict(defer_build=True)

    query: str
    """What the loop is working on."""
    facts: list[Any] = Field(default_factory=list)
    """What it has found so far."""
    hops: int = 0
    """How many hops the loop has made; the runtime increments it after each one."""
    budget_hops: int | None = 8
    """Stop after this many hops (None = unlimited). Checked after each hop."""
    tokens_used: int = 0
    """Tokens spent so far; user code increments it."""
    budget_tokens: int | None = None
    """Stop once ``tokens_used`` reaches this (None = unlimited). Checked after each hop."""
    confidence: float = 0.0
    """User-maintained confidence in the current answer."""

    @field_validator("budget_hops", "budget_tokens")
    @classmethod
    def _budget_not_negative(cls, value: int | None) -> int | None:
        if value is not None and value < 0:
            raise ValueError("a budget must be >= 0 (or None for unlimited)")
        return value


class FinalAnswer(BaseModel):
    """The terminal result of a controller loop."""

    model_config: ClassVar[ConfigDict] = ConfigDict(defer_build=True)

    text: str
    """The answer."""
    citations: list[str] = Field(default_factory=list)
    """Sources backing the answer."""


class BudgetExhausted(FinalAnswer):
    """A run that stopped on a budget or its deadline rather than with an answer.

    Delivered to the Rookery like any final answer; ``code`` says which limit ended it.
    """

    code: FlowErrorCode
    """``HOP_BUDGET_EXHAUSTED``, ``TOKEN_BUDGET_EXHAUSTED`` or ``DEADLINE_EXCEEDED``."""
    facts: list[Any] = Field(default_factory=list)
    """What the loop had found when it stopped."""
    hops: int | None = None
    """Hops made when it stopped, for controller loops."""

    @classmethod
    def for_code(
        cls, code: FlowErrorCode, *, facts: Iterable[Any] = (), hops: int | None = None
    ) -> BudgetExhausted:
        """Build the outcome for ``code`` with its familiar text."""
        return cls(text=_OUTCOME_TEXT[code], code=code, facts=list(facts), hops=hops)


_OUTCOME_TEXT = {
    FlowErrorCode.HOP_BUDGET_EXHAUSTED: "Hop budget exhausted",
    FlowErrorCode.TOKEN_BUDGET_EXHAUSTED: "Token budget exhausted",
    FlowErrorCode.DEADLINE_EXCEEDED: "Deadline exceeded",
}
