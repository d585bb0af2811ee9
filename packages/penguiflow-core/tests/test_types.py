"""Message models: defaults, copy helpers that never mutate, and the meta merge rule."""

from __future__ import annotations

import time
from typing import Any, cast

import pytest
from pydantic import ValidationError

from penguiflow.core import (
    WM,
    BudgetExhausted,
    FinalAnswer,
    FlowErrorCode,
    Headers,
    Message,
    StreamChunk,
    merge_meta,
)


def make(**kwargs: Any) -> Message:
    return Message(payload=kwargs.pop("payload", "p"), headers=Headers(tenant="acme"), **kwargs)


# ------------------------------------------------------------------ Headers and Message


def test_headers_require_a_tenant() -> None:
    with pytest.raises(ValidationError, match="tenant"):
        Headers(**cast(Any, {}))


def test_headers_defaults() -> None:
    headers = Headers(tenant="acme")
    assert (headers.topic, headers.priority) == (None, 0)


def test_message_defaults() -> None:
    before = time.time()
    msg = make()
    assert msg.deadline_s is None
    assert msg.meta == {}
    assert before <= msg.ts <= time.time()
    assert len(msg.trace_id) == 32
    int(msg.trace_id, 16)  # a uuid4 hex


def test_each_message_gets_a_fresh_trace_id() -> None:
    assert len({make().trace_id for _ in range(100)}) == 100


def test_each_message_gets_a_fresh_meta_dict() -> None:
    first, second = make(), make()
    first.meta["k"] = 1
    assert second.meta == {}
    assert first.meta is not second.meta


def test_message_requires_headers() -> None:
    with pytest.raises(ValidationError, match="headers"):
        Message(**cast(Any, {"payload": 1}))


# ------------------------------------------------------------------ copy helpers


def test_with_meta_returns_a_copy_and_leaves_the_original_alone() -> None:
    original = make(meta={"a": 1})
    updated = original.with_meta(b=2, a=3)
    assert original.meta == {"a": 1}
    assert updated.meta == {"a": 3, "b": 2}
    assert updated.meta is not original.meta
    assert (updated.trace_id, updated.headers, updated.payload) == (
        original.trace_id,
        original.headers,
        original.payload,
    )


def test_with_payload_keeps_the_envelope_and_copies_meta() -> None:
    original = make(meta={"a": 1}, deadline_s=123.0)
    copy = original.with_payload("new")
    assert copy.payload == "new"
    assert original.payload == "p"
    assert (copy.trace_id, copy.headers, copy.deadline_s, copy.ts) == (
        original.trace_id,
        original.headers,
        original.deadline_s,
        original.ts,
    )
    copy.meta["b"] = 2
    assert original.meta == {"a": 1}


def test_merged_meta_merges_in_order_without_mutating() -> None:
    original = make(meta={"a": 1, "shared": "base"})
    merged = original.merged_meta({"shared": "first", "b": 2}, {"shared": "second"})
    assert merged.meta == {"a": 1, "b": 2, "shared": "second"}
    assert original.meta == {"a": 1, "shared": "base"}


def test_merge_meta_last_write_wins_and_returns_a_new_dict() -> None:
    first, second, third = {"k": 1, "a": 1}, {"k": 2, "b": 2}, {"k": 3}
    merged = merge_meta(first, second, third)
    assert merged == {"k": 3, "a": 1, "b": 2}
    assert list(merged) == ["k", "a", "b"]
    assert first == {"k": 1, "a": 1} and second == {"k": 2, "b": 2}
    assert merged is not first


def test_merge_meta_of_nothing_is_empty() -> None:
    assert merge_meta() == {}


# ------------------------------------------------------------------ payload models


def test_stream_chunk_defaults() -> None:
    chunk = StreamChunk(stream_id="s", seq=0, text="hi")
    assert chunk.done is False
    assert chunk.meta == {}
    assert StreamChunk(stream_id="s", seq=1, text="").meta is not chunk.meta


def test_wm_defaults() -> None:
    wm = WM(query="q")
    assert wm.facts == []
    assert (wm.hops, wm.budget_hops, wm.tokens_used, wm.budget_tokens) == (0, 8, 0, None)
    assert wm.confidence == 0.0
    assert WM(query="r").facts is not wm.facts


@pytest.mark.parametrize("field", ["budget_hops", "budget_tokens"])
def test_negative_budgets_are_rejected(field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        WM(**cast(Any, {"query": "q", field: -1}))


def test_unlimited_budgets_are_none() -> None:
    wm = WM(query="q", budget_hops=None, budget_tokens=None)
    assert (wm.budget_hops, wm.budget_tokens) == (None, None)


def test_final_answer_defaults() -> None:
    answer = FinalAnswer(text="done")
    assert answer.citations == []
    assert FinalAnswer(text="other").citations is not answer.citations


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (FlowErrorCode.HOP_BUDGET_EXHAUSTED, "Hop budget exhausted"),
        (FlowErrorCode.TOKEN_BUDGET_EXHAUSTED, "Token budget exhausted"),
        (FlowErrorCode.DEADLINE_EXCEEDED, "Deadline exceeded"),
    ],
)
def test_budget_exhausted_is_a_typed_final_answer(code: FlowErrorCode, text: str) -> None:
    outcome = BudgetExhausted.for_code(code, facts=["f"], hops=3)
    assert isinstance(outcome, FinalAnswer)
    assert (outcome.code, outcome.text, outcome.facts, outcome.hops) == (code, text, ["f"], 3)


def test_fast_copies_behave_like_model_copy() -> None:
    class Tagged(Message):
        tag: str = "x"

    original = Tagged(payload=[1], headers=Headers(tenant="t"), meta={"k": 1}, tag="y")
    branch = original.branch()
    assert type(branch) is Tagged
    assert branch == original
    assert branch.meta is not original.meta
    assert branch.payload is original.payload  # shallow, like model_copy
    rewrapped = original.with_payload("new")
    assert rewrapped.model_dump(exclude_unset=True)["payload"] == "new"
    assert rewrapped.tag == "y" and rewrapped.trace_id == original.trace_id
    assert original.payload == [1] and original.meta == {"k": 1}
