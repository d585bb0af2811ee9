"""The support server over streamable HTTP: calls, status-aware retries, the circuit breaker."""

from collections.abc import Callable
from types import ModuleType
from typing import Any

import anyio
import pytest

from penguiflow.tools import (
    ExternalToolConfig,
    ToolCircuitOpenError,
    ToolConnectionError,
    ToolNode,
    ToolRateLimitError,
    ToolServerError,
    TransportType,
)

Make = Callable[..., ExternalToolConfig]
Gate = Any  # the conftest gate (conftest is not importable under importlib mode)


async def test_a_call_over_streamable_http(http_config: Make, gate: Gate) -> None:
    with anyio.fail_after(30):
        async with ToolNode(http_config()) as node:
            result = await node.call("h.add", {"a": 20, "b": 22})
            item = await node.call("h.create_item", {"item": {"name": "n"}, "mode": "fast"})
    assert result.result == {"result": 42}
    assert item.result["mode"] == "fast"
    assert gate.calls == {"add": 1, "create_item": 1}


async def test_503_is_retried_even_for_a_write(http_config: Make, gate: Gate) -> None:
    gate.force("flaky_write", 503, 503)
    with anyio.fail_after(30):
        async with ToolNode(http_config()) as node:
            result = await node.call("h.flaky_write", {})
            stats = node.statistics()
    assert result.result == {"result": "written"}
    assert gate.calls["flaky_write"] == 3
    assert stats.retries == 2 and stats.failures == 0


async def test_500_is_never_retried_for_a_non_idempotent_write(
    http_config: Make, gate: Gate
) -> None:
    gate.force("flaky_write", 500)
    with anyio.fail_after(30):
        async with ToolNode(http_config()) as node:
            with pytest.raises(ToolServerError) as failed:
                await node.call("h.flaky_write", {})
            after = await node.call("h.add", {"a": 1, "b": 1})
    assert failed.value.status_code == 500
    assert failed.value.attempts == 1 and failed.value.retryable is False
    assert gate.calls["flaky_write"] == 1
    assert after.result == {"result": 2}  # the session survives an error status


async def test_500_is_retried_for_a_read_only_tool(http_config: Make, gate: Gate) -> None:
    gate.force("flaky_read", 500, 502)
    with anyio.fail_after(30):
        async with ToolNode(http_config()) as node:
            result = await node.call("h.flaky_read", {})
    assert result.result == {"result": "read"}
    assert gate.calls["flaky_read"] == 3


async def test_retry_non_idempotent_opts_writes_in(http_config: Make, gate: Gate) -> None:
    gate.force("flaky_write", 500)
    config = http_config(
        retry_policy={
            "wait_exponential_min_s": 0,
            "wait_exponential_max_s": 0,
            "retry_non_idempotent": True,
        }
    )
    with anyio.fail_after(30):
        async with ToolNode(config) as node:
            await node.call("h.flaky_write", {})
    assert gate.calls["flaky_write"] == 2


async def test_exhausted_429_raises_rate_limit_with_retry_after_and_attempts(
    http_config: Make, gate: Gate
) -> None:
    gate.force("flaky_read", 429, 429, 429, retry_after="0")
    with anyio.fail_after(30):
        async with ToolNode(http_config()) as node:
            with pytest.raises(ToolRateLimitError) as limited:
                await node.call("h.flaky_read", {})
    assert limited.value.attempts == 3
    assert limited.value.retry_after_s == 0.0
    assert limited.value.status_code == 429
    assert gate.calls["flaky_read"] == 3


async def test_the_breaker_opens_rejects_without_contact_and_a_trial_closes_it(
    http_config: Make, gate: Gate
) -> None:
    gate.force("flaky_write", 500, 500)
    config = http_config(circuit_breaker={"failure_threshold": 2, "reset_timeout_s": 0.3})
    with anyio.fail_after(30):
        async with ToolNode(config) as node:
            for _ in range(2):
                with pytest.raises(ToolServerError):
                    await node.call("h.flaky_write", {})
            assert node.statistics().breaker == "open"
            with pytest.raises(ToolCircuitOpenError) as rejected:
                await node.call("h.flaky_write", {})
            assert gate.calls["flaky_write"] == 2  # nothing was sent
            assert rejected.value.retry_after_s is not None
            assert rejected.value.retry_after_s <= 0.3
            await anyio.sleep(0.35)
            assert node.statistics().breaker == "half_open"
            await node.call("h.flaky_write", {})
            assert node.statistics().breaker == "closed"


async def test_client_errors_do_not_count_towards_the_breaker(
    http_config: Make, gate: Gate
) -> None:
    config = http_config(circuit_breaker={"failure_threshold": 1, "reset_timeout_s": 30})
    with anyio.fail_after(30):
        async with ToolNode(config) as node:
            for _ in range(3):
                with pytest.raises(Exception, match="nope"):
                    await node.call("h.fail", {"message": "nope"})
            assert node.statistics().breaker == "closed"


async def test_a_refused_connection_fails_connect_naming_the_url() -> None:
    config = ExternalToolConfig(
        name="h",
        transport=TransportType.MCP,
        connection="http://127.0.0.1:9/mcp",
        connect_timeout_s=5,
    )
    with anyio.fail_after(30), pytest.raises(ToolConnectionError, match="127.0.0.1:9"):
        await ToolNode(config).connect()


async def test_concurrency_is_exact_over_http(
    http_config: Make, http_server: tuple[Gate, ModuleType]
) -> None:
    _, module = http_server
    with anyio.fail_after(60):
        async with ToolNode(http_config(max_concurrency=5)) as node:
            await node.call("h.reset", {})
            async with anyio.create_task_group() as tg:
                for _ in range(100):
                    tg.start_soon(node.call, "h.slow", {"seconds": 0.01})
    assert module.STATS["max_in_flight"] == 5
    assert module.STATS["completed"] == 100


async def test_a_call_over_sse_picked_by_auto_from_the_path(sse_url: str) -> None:
    config = ExternalToolConfig(name="s", transport=TransportType.MCP, connection=sse_url)
    assert config.effective_mcp_mode.value == "sse"
    with anyio.fail_after(30):
        async with ToolNode(config) as node:
            result = await node.call("s.add", {"a": 1, "b": 2})
            names = [s.name for s in node.specs]
    assert result.result == {"result": 3}
    assert "s.create_item" in names


async def test_a_gone_http_session_is_a_connection_error_and_the_next_call_reconnects(
    http_config: Make, gate: Gate
) -> None:
    gate.force("flaky_write", 404)  # what a server answers for a session it no longer knows
    with anyio.fail_after(30):
        async with ToolNode(http_config()) as node:
            with pytest.raises(ToolConnectionError, match="session .* is gone"):
                await node.call("h.flaky_write", {})
            names = [s.name for s in node.specs]
            again = await node.call("h.add", {"a": 2, "b": 3})
            stats = node.statistics()
    assert again.result == {"result": 5}
    assert stats.reconnects == 1
    assert names == [s.name for s in node.specs]
    assert gate.calls["flaky_write"] == 1  # a write whose session vanished is not re-sent
