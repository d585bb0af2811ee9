"""A real MCP server over stdio: discovery, calls, limits, cancellation, loss and reconnect."""

import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from penguiflow.tools import (
    ExternalToolConfig,
    ToolArgumentsError,
    ToolClientError,
    ToolConfigError,
    ToolConnectionError,
    ToolNode,
    ToolNotFoundError,
    ToolResult,
    ToolTimeoutError,
    TransportType,
)

Make = Callable[..., ExternalToolConfig]


async def test_specs_are_core_nodespecs_named_by_namespace(stdio: Make) -> None:
    with anyio.fail_after(30):
        async with ToolNode(stdio()) as node:
            specs = {s.name: s for s in node.specs}
    assert {"t.add", "t.create_item", "t.slow", "t.fail", "t.crash"} <= set(specs)
    add = specs["t.add"]
    assert add.desc == "Add two integers."
    assert add.side_effects == "read"
    assert specs["t.create_item"].side_effects == "write"
    assert specs["t.fail"].side_effects == "external"
    assert add.tags[:2] == ("mcp", "t")
    assert add.extra["source"] == "mcp" and add.extra["remote_name"] == "add"
    assert add.extra["namespace"] == "t"
    assert add.extra["annotations"]["readOnlyHint"] is True
    json.dumps(dict(add.extra))  # JSON-safe: no live objects
    assert add.node.policy.validate == "none" and add.node.policy.max_retries == 0
    assert issubclass(add.out_model, ToolResult)
    assert add.args_schema["required"] == ["a", "b"]


async def test_a_call_end_to_end_returns_structured_content(stdio: Make) -> None:
    with anyio.fail_after(30):
        async with ToolNode(stdio()) as node:
            result = await node.call("t.add", {"a": 2, "b": 3})
            via_node = await node.spec("t.add").node.func({"a": 4, "b": 5}, None)
    assert result.result == {"result": 5}
    assert isinstance(via_node, ToolResult) and via_node.result == {"result": 9}


async def test_nested_model_and_enum_arguments_reach_the_server_and_omit_unset(
    stdio: Make,
) -> None:
    with anyio.fail_after(30):
        async with ToolNode(stdio()) as node:
            result = await node.call("t.create_item", {"item": {"name": "pen", "tags": ["a"]}})
            with pytest.raises(ToolArgumentsError) as bad:
                await node.call("t.create_item", {"item": {"name": "x"}, "mode": "reckless"})
    # `note` (str, default "none" on the server) was omitted, not sent as null.
    assert result.result == {"name": "pen", "tags": ["a"], "mode": "safe", "note": "none"}
    assert bad.value.errors[0]["loc"] == ["mode"] or bad.value.errors[0]["loc"] == ("mode",)
    json.dumps(bad.value.to_payload())


async def test_unknown_tool_lists_close_matches_and_tool_errors_are_client_errors(
    stdio: Make,
) -> None:
    with anyio.fail_after(30):
        async with ToolNode(stdio()) as node:
            with pytest.raises(ToolNotFoundError, match="t.add"):
                await node.call("t.ad", {})
            with pytest.raises(ToolClientError, match="boom") as failed:
                await node.call("t.fail", {"message": "boom"})
            stats = node.statistics()
    assert failed.value.attempts == 1 and failed.value.retryable is False
    assert stats.failures == 1 and stats.retries == 0


async def test_specs_before_connect_raise_runtime_error(stdio: Make) -> None:
    node = ToolNode(stdio())
    with pytest.raises(RuntimeError, match="connect"):
        _ = node.specs


async def test_tool_filter_keeps_full_matches_only(stdio: Make) -> None:
    with anyio.fail_after(30):
        config = stdio(tool_filter=["add", "slo"], expose_resources=False, expose_prompts=False)
        async with ToolNode(config) as node:
            names = [s.name for s in node.specs]
    assert names == ["t.add"]


async def test_exactly_max_concurrency_calls_are_in_flight_at_the_server(stdio: Make) -> None:
    with anyio.fail_after(60):
        async with ToolNode(stdio(max_concurrency=5)) as node:
            await node.call("t.reset", {})
            async with anyio.create_task_group() as tg:
                for _ in range(100):
                    tg.start_soon(node.call, "t.slow", {"seconds": 0.02})
            counters = (await node.call("t.stats", {})).result
            stats = node.statistics()
    assert counters["max_in_flight"] == 5
    assert counters["completed"] == 100
    assert stats.max_in_flight == 5 and stats.in_flight == 0


async def test_cancelling_a_call_cancels_the_server_handler_and_keeps_the_session(
    stdio: Make,
) -> None:
    with anyio.fail_after(30):
        async with ToolNode(stdio()) as node:
            await node.call("t.reset", {})
            pid = (await node.call("t.stats", {})).result["pid"]
            with anyio.move_on_after(0.5):
                await node.call("t.slow", {"seconds": 30})
            counters: dict[str, int] = {}
            for _ in range(200):
                counters = (await node.call("t.stats", {})).result
                if counters["cancelled"] == 1:
                    break
                await anyio.sleep(0.02)
            stats = node.statistics()
    assert counters["cancelled"] == 1 and counters["in_flight"] == 0
    assert counters["pid"] == pid  # same stdio process: the session stayed usable
    assert stats.failures == 0 and stats.retries == 0


async def test_a_dead_stdio_server_fails_pending_calls_at_once_and_the_next_call_reconnects(
    stdio: Make,
) -> None:
    with anyio.fail_after(30):
        # One attempt: `slow` is read-only, so a lost connection would otherwise be retried.
        async with ToolNode(stdio(timeout_s=60, retry_policy={"max_attempts": 1})) as node:
            pid = (await node.call("t.stats", {})).result["pid"]
            errors: list[BaseException] = []

            async def pending() -> None:
                try:
                    await node.call("t.slow", {"seconds": 50})
                except ToolConnectionError as exc:
                    errors.append(exc)

            start = anyio.current_time()
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(pending)
                await anyio.sleep(0.3)
                with pytest.raises(ToolConnectionError):
                    await node.call("t.crash", {})
            elapsed = anyio.current_time() - start
            names_before = [s.name for s in node.specs]
            again = (await node.call("t.stats", {})).result
            stats = node.statistics()
            names_after = [s.name for s in node.specs]
    assert len(errors) == 3
    assert elapsed < 20  # not after timeout_s=60
    assert again["pid"] != pid
    assert stats.reconnects == 1
    assert names_before == names_after


async def test_connect_and_aclose_may_run_in_different_tasks(stdio: Make) -> None:
    node = ToolNode(stdio())
    with anyio.fail_after(30):
        connected = asyncio.get_running_loop().create_task(node.connect())
        await connected
        assert (await node.call("t.add", {"a": 1, "b": 1})).result == {"result": 2}
        closing = asyncio.get_running_loop().create_task(node.aclose())
        await closing
        await node.aclose()  # idempotent


async def test_aclose_ends_the_runner_task(stdio: Make) -> None:
    before = len(asyncio.all_tasks())
    with anyio.fail_after(30):
        async with ToolNode(stdio()) as node:
            await node.call("t.add", {"a": 1, "b": 1})
        await anyio.lowlevel.checkpoint()
    assert len(asyncio.all_tasks()) == before


async def test_connect_is_idempotent(stdio: Make) -> None:
    with anyio.fail_after(30):
        async with ToolNode(stdio()) as node:
            pid = (await node.call("t.stats", {})).result["pid"]
            await node.connect()
            assert (await node.call("t.stats", {})).result["pid"] == pid
            assert node.statistics().reconnects == 0
            specs = await node.refresh()
    assert "t.add" in [s.name for s in specs]


async def test_a_command_not_on_path_fails_connect_naming_it() -> None:
    config = ExternalToolConfig(
        name="t", transport=TransportType.MCP, connection="no-such-mcp-server-binary --flag"
    )
    with anyio.fail_after(30), pytest.raises(ToolConnectionError, match="no-such-mcp-server"):
        await ToolNode(config).connect()


async def test_a_server_that_never_answers_fails_connect_within_connect_timeout(
    stdio: Make,
) -> None:
    config = stdio(connection=[sys.executable, stdio().connection[1], "hang"], connect_timeout_s=1)
    with anyio.fail_after(30), pytest.raises(ToolConnectionError, match="connect_timeout_s"):
        await ToolNode(config).connect()


async def test_an_unset_variable_fails_connect_before_anything_is_spawned(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "spawned"
    monkeypatch.delenv("PENGUIFLOW_TEST_UNSET", raising=False)
    config = ExternalToolConfig(
        name="t",
        transport=TransportType.MCP,
        connection=[sys.executable, "-c", f"open({str(marker)!r}, 'w')"],
        env={"TOKEN": "${PENGUIFLOW_TEST_UNSET}"},
    )
    with pytest.raises(ToolConfigError, match=r"\$\{PENGUIFLOW_TEST_UNSET\} in env.TOKEN"):
        await ToolNode(config).connect()
    assert not marker.exists()


async def test_resources_and_prompts_are_tools_through_the_same_call_path(stdio: Make) -> None:
    with anyio.fail_after(30):
        async with ToolNode(stdio(max_concurrency=1)) as node:
            specs = {s.name: s for s in node.specs}
            listed = (await node.call("t.resources_list", {})).result
            read = (await node.call("t.resources_read", {"uri": "memo://readme"})).result
            templates = (await node.call("t.resources_templates_list", {})).result
            prompts = (await node.call("t.prompts_list", {})).result
            prompt = (
                await node.call("t.prompts_get", {"name": "greet", "arguments": {"name": "Ann"}})
            ).result
            with pytest.raises(ToolClientError, match="memo://nope"):
                await node.call("t.resources_read", {"uri": "memo://nope"})
            with pytest.raises(ToolArgumentsError):
                await node.call("t.resources_read", {})
            stats = node.statistics()
    assert [r["uri"] for r in listed["resources"]] == ["memo://readme"]
    assert read["contents"][0]["text"] == "hello from a resource"
    assert templates["resourceTemplates"][0]["uriTemplate"] == "memo://notes/{key}"
    assert [p["name"] for p in prompts["prompts"]] == ["greet"]
    assert prompt["messages"][0]["content"]["text"] == "Say hello to Ann."
    assert specs["t.resources_read"].side_effects == "read"
    assert specs["t.prompts_get"].extra["remote_name"] == "prompts/get"
    # the invalid call is rejected before it counts: nothing was sent
    assert stats.calls == 6 and stats.failures == 1 and stats.max_in_flight == 1


async def test_expose_flags_hide_resources_and_prompts(stdio: Make) -> None:
    with anyio.fail_after(30):
        async with ToolNode(stdio(expose_resources=False, expose_prompts=False)) as node:
            names = [s.name for s in node.specs]
    assert not [n for n in names if ".resources_" in n or ".prompts_" in n]


async def test_a_server_that_died_while_idle_is_reconnected_by_the_next_write(
    stdio: Make,
) -> None:
    with anyio.fail_after(30):
        async with ToolNode(stdio(retry_policy={"max_attempts": 1})) as node:
            pid = (await node.call("t.stats", {})).result["pid"]
            os.kill(pid, signal.SIGKILL)  # no call pending: nobody sees it die
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                await anyio.sleep(0.02)
            await anyio.sleep(0.2)  # the transport reads EOF
            # `reset` is neither read-only nor idempotent: it must not be sent to a dead session.
            assert (await node.call("t.reset", {})).result == {"result": "ok"}
            again = (await node.call("t.stats", {})).result
            stats = node.statistics()
    assert again["pid"] != pid and stats.reconnects == 1


async def test_an_attempt_over_timeout_s_raises_a_timeout_and_keeps_the_session(
    stdio: Make,
) -> None:
    policy = {"max_attempts": 2, "wait_exponential_min_s": 0, "wait_exponential_max_s": 0}
    with anyio.fail_after(30):
        async with ToolNode(stdio(timeout_s=0.3, retry_policy=policy)) as node:
            pid = (await node.call("t.stats", {})).result["pid"]
            with pytest.raises(ToolTimeoutError) as timed_out:
                await node.call("t.slow", {"seconds": 5})  # read-only: retried once
            with pytest.raises(ToolTimeoutError) as write_timed_out:
                await node.call("t.slow_write", {"seconds": 5})  # a write: never retried
            after = (await node.call("t.stats", {})).result
    assert timed_out.value.attempts == 2 and timed_out.value.timeout_s == 0.3
    assert write_timed_out.value.attempts == 1 and write_timed_out.value.retryable is False
    assert after["pid"] == pid


async def test_two_tools_mapping_to_one_spec_name_fail_connect(stdio: Make) -> None:
    config = stdio(env={"PF_TEST_COLLIDE": "${PF_TEST_COLLIDE_VALUE:-1}"})
    with anyio.fail_after(30):
        with pytest.raises(ToolConfigError, match="t.resources_list"):
            await ToolNode(config).connect()
        alone = stdio(env={"PF_TEST_COLLIDE": "1"}, expose_resources=False)
        async with ToolNode(alone) as node:
            assert (await node.call("t.resources_list", {})).result == {"result": "collides"}
