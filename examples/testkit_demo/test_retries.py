"""Retry tests with simulate_error: a flaky upstream node, and how many retries it needs."""

import pytest

from penguiflow.core import FlowError, FlowErrorCode, Headers, Message, Node, NodePolicy, create
from penguiflow.testkit import FlowTestKit, run_one, simulate_error


def request() -> Message:
    return Message(payload="price of tea", headers=Headers(tenant="acme"))


def retrying(max_retries: int) -> NodePolicy:
    # backoff_base=0.0: retry at once, tests need not wait for a real backoff.
    return NodePolicy(max_retries=max_retries, backoff_base=0.0)


async def test_two_retries_absorb_two_upstream_failures() -> None:
    upstream = simulate_error("lookup", "E_UPSTREAM_503", fail_times=2, result="1.20 EUR")
    kit = FlowTestKit(create(Node(upstream, policy=retrying(2)).to()))
    msg = request()
    assert await kit.run_one(msg) == "1.20 EUR"
    assert (upstream.attempts, upstream.failures) == (3, 2)
    kit.assert_node_sequence(msg.trace_id, ["lookup"])  # retries count once


async def test_one_retry_is_not_enough_and_the_error_says_why() -> None:
    upstream = simulate_error("lookup", "E_UPSTREAM_503", fail_times=2)
    with pytest.raises(FlowError) as info:
        await run_one(create(Node(upstream, policy=retrying(1)).to()), request())
    assert info.value.code is FlowErrorCode.NODE_EXCEPTION
    assert "E_UPSTREAM_503" in info.value.message


async def test_with_errors_delivered_to_rookery_run_one_returns_the_flow_error() -> None:
    upstream = simulate_error("lookup", "E_UPSTREAM_503", fail_times=5)
    flow = create(Node(upstream, policy=retrying(1)).to(), emit_errors_to_rookery=True)
    result = await run_one(flow, request())
    assert isinstance(result, FlowError)
    assert result.node_name == "lookup"
