"""simulate_error: retry tests in a few lines, with attempt and failure counts to assert on."""

import inspect
from typing import cast

import pytest

from penguiflow.core import (
    Context,
    FlowError,
    FlowErrorCode,
    Headers,
    Message,
    Node,
    NodePolicy,
    create,
)
from penguiflow.testkit import ErrorSimulator, FlowTestKit, run_one, simulate_error


def make(payload: object = "in") -> Message:
    return Message(payload=payload, headers=Headers(tenant="t"))


async def test_enough_retries_recover_and_the_counts_show_each_attempt() -> None:
    sim = simulate_error("fetch_quote", "E_UPSTREAM", fail_times=2, result="quote")
    kit = FlowTestKit(create(Node(sim, policy=NodePolicy(max_retries=2, backoff_base=0.0)).to()))
    assert await kit.run_one("in", trace_id="quote-trace") == "quote"
    assert (sim.attempts, sim.failures, sim.successes) == (3, 2, 1)
    retries = [e for e in kit.get_recorded_events("quote-trace") if e.event_type == "node_retry"]
    assert [e.attempt for e in retries] == [1, 2]


async def test_too_few_retries_fail_with_the_simulated_code_in_the_flow_error() -> None:
    sim = simulate_error("fetch_quote", "E_UPSTREAM", fail_times=3)
    flow = create(Node(sim, policy=NodePolicy(max_retries=1, backoff_base=0.0)).to())
    with pytest.raises(FlowError) as info:
        await run_one(flow, make())
    assert info.value.code is FlowErrorCode.NODE_EXCEPTION
    assert info.value.node_name == "fetch_quote"
    assert "E_UPSTREAM: simulated failure 2 of 3 at node 'fetch_quote'" in str(info.value)
    assert (sim.attempts, sim.failures) == (2, 2)


async def test_no_retry_policy_fails_at_the_first_simulated_error() -> None:
    sim = simulate_error("once", "E_ONCE")
    result = await run_one(create(Node(sim).to(), emit_errors_to_rookery=True), make())
    assert isinstance(result, FlowError)
    assert "E_ONCE" in result.message
    assert (sim.attempts, sim.failures) == (1, 1)


async def test_success_returns_result_factory_output_else_the_input_message() -> None:
    factory_sim = simulate_error("n", "E", fail_times=0, result_factory=lambda m: m.payload * 2)
    assert await factory_sim(make("ab"), _no_context()) == "abab"
    echo_sim = simulate_error("n", "E", fail_times=0)
    msg = make()
    assert await echo_sim(msg, _no_context()) is msg


async def test_failures_raise_the_requested_exception_type() -> None:
    sim = simulate_error("n", "E_TIMEOUTISH", exception_type=TimeoutError)
    with pytest.raises(TimeoutError, match="E_TIMEOUTISH"):
        await sim(make(), _no_context())
    assert await sim(make(), _no_context()) is not None


async def test_retry_on_decides_which_simulated_errors_are_retried() -> None:
    sim = simulate_error("n", "E_PERMANENT", fail_times=1, exception_type=KeyError)
    policy = NodePolicy(max_retries=3, retry_on=(ConnectionError,), backoff_base=0.0)
    with pytest.raises(FlowError, match="E_PERMANENT"):
        await run_one(create(Node(sim, policy=policy).to()), make())
    assert sim.attempts == 1


async def test_reset_makes_the_simulator_fail_again() -> None:
    sim = simulate_error("n", "E", fail_times=1, result="ok")
    flaky = Node(sim, policy=NodePolicy(max_retries=1, backoff_base=0.0))
    assert await run_one(create(flaky.to()), "in") == "ok"
    sim.reset()
    assert (sim.attempts, sim.failures) == (0, 0)
    assert await run_one(create(flaky.to()), "in") == "ok"
    assert (sim.attempts, sim.failures) == (2, 1)


def test_the_simulator_names_its_node_by_default() -> None:
    sim = simulate_error("lookup", "E")
    assert isinstance(sim, ErrorSimulator)
    assert Node(sim).name == "lookup"
    assert "fail_times=1" in repr(sim)


def test_bad_arguments_fail_at_construction_with_a_reason() -> None:
    with pytest.raises(ValueError, match="fail_times must be >= 0"):
        simulate_error("n", "E", fail_times=-1)
    with pytest.raises(ValueError, match="only one of result and result_factory"):
        simulate_error("n", "E", result=1, result_factory=lambda m: m)
    with pytest.raises(TypeError, match="Exception subclass"):
        simulate_error("n", "E", exception_type=KeyboardInterrupt)  # pyright: ignore[reportArgumentType]


async def test_the_counts_read_as_simulation_attempts_and_failures_as_in_3x() -> None:
    sim = simulate_error("retry", FlowErrorCode.NODE_EXCEPTION, fail_times=2)
    flow = create(Node(sim, policy=NodePolicy(max_retries=2, backoff_base=0.0)).to())
    await run_one(flow, make())
    assert (sim.simulation.attempts, sim.simulation.failures) == (3, 2)
    assert sim.simulation is sim
    with pytest.raises(AttributeError):
        sim.attempts = 0  # pyright: ignore[reportAttributeAccessIssue]


async def test_a_flow_error_code_is_carried_as_its_value() -> None:
    sim = simulate_error("n", FlowErrorCode.NODE_EXCEPTION)
    with pytest.raises(
        RuntimeError, match=r"^NODE_EXCEPTION: simulated failure 1 of 1 at node 'n'$"
    ):
        await sim(make(), None)
    assert sim.code == "NODE_EXCEPTION"


async def test_an_async_result_factory_is_awaited() -> None:
    async def build(msg: Message) -> Message:
        return msg.with_payload(f"{msg.payload}!")

    sim = simulate_error("n", "E", fail_times=1, result_factory=build)
    flow = create(Node(sim, policy=NodePolicy(max_retries=1, backoff_base=0.0)).to())
    assert (await run_one(flow, make("hi"))).payload == "hi!"


def test_the_simulator_is_a_coroutine_function_to_inspect() -> None:
    assert inspect.iscoroutinefunction(simulate_error("n", "E"))


def _no_context() -> Context:
    # The simulator never touches its context; calling it directly needs no flow.
    return cast(Context, object())
