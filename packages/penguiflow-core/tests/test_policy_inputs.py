"""NodePolicy takes the retry_on people naturally write, rejects the rest with a hint, and its
backoff never overflows."""

from __future__ import annotations

from typing import Any, cast

import pytest

from penguiflow.core import Context, FlowError, Headers, Message, Node, NodePolicy, create

# The testkit is not a dependency of core: these tests run in the full run and are skipped in
# core's isolated run, where no sibling package is installed (tests/test_isolation.py).
pytest.importorskip("penguiflow.testkit", reason="needs penguiflow-testkit (the full test run)")
from penguiflow.testkit import run_one  # noqa: E402

FAST_BACKOFF = 0.001


def _msg(payload: Any) -> Message:
    return Message(payload=payload, headers=Headers(tenant="t"))


# ------------------------------------------------------------------ retry_on


def test_bare_exception_class_becomes_a_one_element_tuple() -> None:
    policy = NodePolicy(retry_on=cast(Any, KeyError))
    assert policy.retry_on == (KeyError,)


async def test_bare_exception_class_does_not_retry_other_exceptions() -> None:
    attempts: list[int] = []

    async def broken(msg: Message, ctx: Context) -> str:
        attempts.append(len(attempts))
        raise ValueError("not a KeyError")

    policy = NodePolicy(retry_on=cast(Any, KeyError), max_retries=3, backoff_base=FAST_BACKOFF)
    flow = create(Node(broken, policy=policy).to(), emit_errors_to_rookery=True)
    error = await run_one(flow, _msg(1), timeout_s=5)
    assert isinstance(error, FlowError)
    assert isinstance(error.original_exc, ValueError)
    assert attempts == [0]


async def test_bare_exception_class_still_retries_its_own_exception() -> None:
    attempts: list[int] = []

    async def flaky(msg: Message, ctx: Context) -> str:
        attempts.append(len(attempts))
        if len(attempts) < 3:
            raise KeyError("not yet")
        return "ok"

    policy = NodePolicy(retry_on=cast(Any, KeyError), max_retries=3, backoff_base=FAST_BACKOFF)
    flow = create(Node(flaky, policy=policy).to(), emit_errors_to_rookery=True)
    result = await run_one(flow, _msg(1), timeout_s=5)
    assert result == "ok"
    assert attempts == [0, 1, 2]


@pytest.mark.parametrize(
    "value",
    [
        pytest.param([KeyError], id="list"),
        pytest.param("KeyError", id="string"),
        pytest.param(int, id="non-exception-class"),
        pytest.param(42, id="number"),
    ],
)
def test_retry_on_of_the_wrong_kind_says_what_to_write(value: object) -> None:
    with pytest.raises(TypeError) as caught:
        NodePolicy(retry_on=cast(Any, value))
    text = str(caught.value)
    assert "retry_on=(KeyError,)" in text
    assert "retry_on=lambda exc: ..." in text


def test_tuple_holding_a_non_exception_type_is_rejected() -> None:
    with pytest.raises(TypeError, match=r"'boom'.*not an exception type.*retry_on=\(KeyError,\)"):
        NodePolicy(retry_on=cast(Any, (KeyError, "boom")))


# ------------------------------------------------------------------ backoff


def test_backoff_for_a_huge_retry_number_is_capped_by_max_backoff() -> None:
    policy = NodePolicy(max_backoff=2)
    assert policy.backoff(5000) == 2.0
    assert isinstance(policy.backoff(5000), float)


def test_backoff_for_a_huge_retry_number_without_a_ceiling_is_infinite() -> None:
    assert NodePolicy().backoff(5000) == float("inf")
    assert NodePolicy(backoff_base=0).backoff(5000) == 0.0
    assert NodePolicy(backoff_mult=1).backoff(5000) == 0.5
