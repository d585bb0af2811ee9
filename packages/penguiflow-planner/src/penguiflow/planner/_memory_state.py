"""One key's memory as stored (``planner.memory`` records), and the message a run sees.

Pure functions over an immutable :class:`MemoryState`: the manager reads a record, applies
one of these, and writes the result back with compare-and-set.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

from penguiflow.core import Scope

from ._errors import MemoryBudgetExceeded
from ._llm import LLMMessage
from ._memory_types import (
    ConversationTurn,
    MemoryBudget,
    MemoryHealth,
    MemoryKey,
    MemoryStrategy,
    TrajectoryDigest,
    quoted,
)
from ._tokens import TokenCounter

__all__ = [
    "BACKLOG_LIMIT",
    "NAMESPACE",
    "MemoryState",
    "StoredTurn",
    "append_turn",
    "clip_tail",
    "decode",
    "encode",
    "record_key",
    "render",
    "scope_of",
    "turn_view",
]

NAMESPACE = "planner.memory"
"""The ``DurableStore`` namespace of memory records."""
VERSION = 1
"""The version of the stored JSON (``"v"``)."""
BACKLOG_LIMIT = 20
"""Pending turns kept for a later summary while ``DEGRADED`` (oldest dropped beyond it)."""

_HIDDEN = (MemoryHealth.DEGRADED, MemoryHealth.RECOVERING)


def record_key(key: MemoryKey) -> str:
    """The record key ``{tenant}/{user}/{session}`` (each part escaped, so keys never collide)."""
    return "/".join(quoted(p) for p in (key.tenant_id, key.user_id, key.session_id))


def scope_of(key: MemoryKey) -> Scope:
    """The store scope of a key's record."""
    return Scope(key.tenant_id, key.user_id, key.session_id)


@dataclass(frozen=True, slots=True)
class StoredTurn:
    """A turn with its position in the key's history (identifies it across writers)."""

    seq: int
    turn: ConversationTurn


@dataclass(frozen=True, slots=True)
class MemoryState:
    """One key's memory: full zone, pending turns, summary, health."""

    turns: tuple[StoredTurn, ...] = ()
    pending: tuple[StoredTurn, ...] = ()
    summary: str = ""
    health: MemoryHealth = MemoryHealth.HEALTHY
    next_seq: int = 1


# ------------------------------------------------------------------------------ stored form
def _digest_json(digest: TrajectoryDigest) -> dict[str, Any]:
    return {
        "tools_invoked": list(digest.tools_invoked),
        "observations_summary": digest.observations_summary,
        "reasoning_summary": digest.reasoning_summary,
        "artifacts_refs": list(digest.artifacts_refs),
    }


def _turn_json(stored: StoredTurn) -> dict[str, Any]:
    turn = stored.turn
    digest = turn.trajectory_digest
    return {
        "seq": stored.seq,
        "user_message": turn.user_message,
        "assistant_response": turn.assistant_response,
        "trajectory_digest": None if digest is None else _digest_json(digest),
        "artifacts_shown": dict(turn.artifacts_shown),
        "artifacts_hidden_refs": list(turn.artifacts_hidden_refs),
        "ts": turn.ts,
    }


def _turn_from(raw: Mapping[str, Any]) -> StoredTurn:
    digest_raw = raw.get("trajectory_digest")
    digest = None
    if digest_raw is not None:
        d = cast(Mapping[str, Any], digest_raw)
        digest = TrajectoryDigest(
            tools_invoked=tuple(str(t) for t in d.get("tools_invoked", ())),
            observations_summary=str(d.get("observations_summary", "")),
            reasoning_summary=d.get("reasoning_summary"),
            artifacts_refs=tuple(str(r) for r in d.get("artifacts_refs", ())),
        )
    ts = raw.get("ts")
    turn = ConversationTurn(
        user_message=str(raw["user_message"]),
        assistant_response=str(raw["assistant_response"]),
        trajectory_digest=digest,
        artifacts_shown=dict(raw.get("artifacts_shown") or {}),
        artifacts_hidden_refs=tuple(str(r) for r in raw.get("artifacts_hidden_refs") or ()),
        ts=None if ts is None else float(ts),
    )
    return StoredTurn(seq=int(raw["seq"]), turn=turn)


def encode(state: MemoryState) -> bytes:
    """The record's value: JSON with ``"v": 1``."""
    document = {
        "v": VERSION,
        "next_seq": state.next_seq,
        "health": state.health.value,
        "summary": state.summary,
        "turns": [_turn_json(t) for t in state.turns],
        "pending": [_turn_json(t) for t in state.pending],
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def decode(value: bytes) -> MemoryState:
    """Read a record's value back.

    Raises:
        ValueError: Not a memory record of version 1 (a newer writer's records are never
            overwritten by this one).
    """
    try:
        document = cast(dict[str, Any], json.loads(value))
        version = document.get("v")
        if version != VERSION:
            raise ValueError(
                f"a {NAMESPACE} record of version {version!r}; this penguiflow-planner reads "
                f"version {VERSION} (upgrade it to share memory with newer writers)"
            )
        return MemoryState(
            turns=tuple(_turn_from(t) for t in document["turns"]),
            pending=tuple(_turn_from(t) for t in document["pending"]),
            summary=str(document["summary"]),
            health=MemoryHealth(document["health"]),
            next_seq=int(document["next_seq"]),
        )
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
        raise ValueError(f"a {NAMESPACE} record that cannot be read: {exc!r}") from exc


# ----------------------------------------------------------------------------- transitions
def append_turn(
    state: MemoryState, turn: ConversationTurn, strategy: MemoryStrategy, budget: MemoryBudget
) -> MemoryState:
    """Add ``turn`` to the full zone; older turns leave it (dropped, or pending a summary)."""
    turns = (*state.turns, StoredTurn(state.next_seq, turn))
    keep = budget.full_zone_turns
    cut = max(0, len(turns) - keep)
    leaving, turns = turns[:cut], turns[cut:]
    pending = state.pending
    if strategy == "rolling_summary":
        pending = (*pending, *leaving)
        if state.health in _HIDDEN:
            pending = pending[-BACKLOG_LIMIT:]
    return replace(state, turns=turns, pending=pending, next_seq=state.next_seq + 1)


# -------------------------------------------------------------------------------- the view
def turn_view(turn: ConversationTurn, *, include_digest: bool) -> dict[str, Any]:
    """A turn as the model sees it: ``user``, ``assistant`` and what else it carries."""
    view: dict[str, Any] = {"user": turn.user_message, "assistant": turn.assistant_response}
    if include_digest and turn.trajectory_digest is not None:
        view["trajectory_digest"] = _digest_json(turn.trajectory_digest)
    if turn.artifacts_shown:
        view["artifacts_shown"] = dict(turn.artifacts_shown)
    return view


def _message(recent: Sequence[Any], summary: str, pending: Sequence[Any]) -> LLMMessage:
    memory = {"recent_turns": list(recent), "summary": summary, "pending_turns": list(pending)}
    content = json.dumps({"conversation_memory": memory}, ensure_ascii=False, sort_keys=True)
    return {"role": "system", "content": content}


def clip_tail(text: str, fits: Callable[[str], bool]) -> str:
    """The longest end of ``text`` that ``fits`` ("" when none does)."""
    if fits(text):
        return text
    low, high = 0, len(text)  # text[-low:] fits (or is ""), text[-high:] does not
    while high - low > 1:
        middle = (low + high) // 2
        if fits(text[len(text) - middle :]):
            low = middle
        else:
            high = middle
    return text[len(text) - low :] if low else ""


def render(
    state: MemoryState,
    *,
    budget: MemoryBudget,
    counter: TokenCounter,
    include_digest: bool,
) -> LLMMessage | None:
    """The system message ``{"conversation_memory": {...}}``, within ``total_max_tokens``.

    None when there is nothing to show. While the summary is ``DEGRADED``/``RECOVERING``,
    pending turns are not shown (memory falls back to truncation).

    Raises:
        MemoryBudgetExceeded: Over ``total_max_tokens`` with ``overflow_policy="error"``.
    """
    recent = [turn_view(t.turn, include_digest=include_digest) for t in state.turns]
    pending = (
        []
        if state.health in _HIDDEN
        else [turn_view(t.turn, include_digest=include_digest) for t in state.pending]
    )
    summary = state.summary
    if not (recent or pending or summary):
        return None
    limit = budget.total_max_tokens
    message = _message(recent, summary, pending)
    if limit is None:
        return message
    tokens = counter.count_messages([message])
    if tokens <= limit:
        return message
    if budget.overflow_policy == "error":
        raise MemoryBudgetExceeded(
            f"short-term memory takes {tokens} tokens, over total_max_tokens={limit}: raise the "
            'limit, or choose overflow_policy="truncate_oldest" or "truncate_summary"'
        )

    def fits(text: str) -> bool:
        return counter.count_messages([_message(recent, text, pending)]) <= limit

    while True:
        if summary and (budget.overflow_policy == "truncate_summary" or not (pending or recent)):
            summary = clip_tail(summary, fits)
        elif pending:
            pending.pop(0)
        elif recent:
            recent.pop(0)
        else:
            return None
        if not (recent or pending or summary):
            return None
        message = _message(recent, summary, pending)
        if counter.count_messages([message]) <= limit:
            return message
