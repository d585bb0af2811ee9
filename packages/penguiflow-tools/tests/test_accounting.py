"""Accounting under any mix of forced statuses (hypothesis, the real HTTP server of conftest):
attempts reaching the server, retries, failures and calls always add up, and a write is only
re-sent after a status that means "not processed"."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from penguiflow.tools import ExternalToolConfig, RetryPolicy, ToolError, ToolNode, TransportType

NOT_PROCESSED = {429, 503}
MAX_ATTEMPTS = 3
# flaky_read is read-only (idempotent), flaky_write destructive: 500 is retried for the first only
IDEMPOTENT = {"flaky_read": True, "flaky_write": False}

plans = st.lists(
    st.tuples(
        st.sampled_from(sorted(IDEMPOTENT)),
        st.lists(st.sampled_from([429, 500, 503]), max_size=MAX_ATTEMPTS + 1),
    ),
    min_size=1,
    max_size=6,
)


def expected(tool: str, statuses: list[int]) -> tuple[int, bool]:
    """Attempts the server sees, and whether the call succeeds."""
    attempts = 0
    for status in statuses:
        attempts += 1
        retried = status in NOT_PROCESSED or IDEMPOTENT[tool]
        if not retried or attempts == MAX_ATTEMPTS:
            return attempts, False
    return attempts + 1, True


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(plan=plans)
def test_attempts_retries_and_failures_add_up(
    http_server: tuple[Any, ModuleType], plan: list[tuple[str, list[int]]]
) -> None:
    gate, _ = http_server
    config = ExternalToolConfig(
        name="h",
        transport=TransportType.MCP,
        connection=gate.url,
        circuit_breaker=None,
        retry_policy=RetryPolicy(
            max_attempts=MAX_ATTEMPTS, wait_exponential_min_s=0.0, wait_exponential_max_s=0.0
        ),
    )

    async def run() -> None:
        gate.calls.clear()
        gate.forced.clear()
        seen = {tool: 0 for tool in IDEMPOTENT}
        failures = retries = 0
        with anyio.fail_after(60):
            async with ToolNode(config) as node:
                for tool, statuses in plan:
                    gate.forced.clear()
                    gate.force(tool, *statuses)
                    attempts, ok = expected(tool, statuses)
                    try:
                        await node.call(tool, {})
                        assert ok, (tool, statuses)
                    except ToolError as error:
                        assert not ok, (tool, statuses, error)
                        assert error.attempts == attempts
                        failures += 1
                    seen[tool] += attempts
                    retries += attempts - 1
                stats = node.statistics()
        assert {t: gate.calls.get(t, 0) for t in IDEMPOTENT} == seen
        assert (stats.calls, stats.failures, stats.retries) == (len(plan), failures, retries)
        assert stats.in_flight == 0

    anyio.run(run)
