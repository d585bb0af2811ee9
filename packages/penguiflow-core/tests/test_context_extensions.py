"""The Context methods extensions build on: start_soon, fail, save_remote_binding."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import anyio
import pytest

from penguiflow.core import (
    Context,
    FlowError,
    FlowErrorCode,
    Headers,
    InMemoryStateStore,
    Message,
    Node,
    NodePolicy,
    RemoteBinding,
    create,
)


def msg(trace_id: str) -> Message:
    return Message(payload="x", headers=Headers(tenant="t"), trace_id=trace_id)


async def test_a_task_started_for_a_trace_is_cancelled_when_the_trace_ends() -> None:
    started = anyio.Event()
    cancelled: list[str] = []
    release = anyio.Event()

    async def node(message: Message, ctx: Context) -> str:
        async def watch() -> None:
            started.set()
            try:
                await anyio.sleep_forever()
            except anyio.get_cancelled_exc_class():
                cancelled.append(message.trace_id)
                raise

        ctx.start_soon(message.trace_id, watch)
        await release.wait()  # the trace stays live until released
        return "done"

    flow = create(Node(node).to())
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(msg("t1"))
            await started.wait()
            assert cancelled == []  # the task runs while the trace lives
            release.set()
            assert await flow.fetch(trace_id="t1") == "done"
            await anyio.wait_all_tasks_blocked()
            assert cancelled == ["t1"]
            assert flow.statistics().live_traces == 0


async def test_a_task_started_for_a_trace_does_not_keep_it_alive() -> None:
    async def node(message: Message, ctx: Context) -> str:
        ctx.start_soon(message.trace_id, anyio.sleep_forever)
        return "done"

    before = {task for task in asyncio.all_tasks() if not task.done()}
    flow = create(Node(node).to())
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(msg("t1"))
            assert await flow.fetch(trace_id="t1") == "done"
            await anyio.wait_all_tasks_blocked()
            assert flow.statistics().live_traces == 0
    assert {task for task in asyncio.all_tasks() if not task.done()} == before


async def test_a_failing_started_task_is_logged_and_never_fatal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def node(message: Message, ctx: Context) -> str:
        async def boom() -> None:
            raise ValueError("the background task broke")

        ctx.start_soon(None, boom)
        return "done"

    flow = create(Node(node).to())
    with anyio.fail_after(5), caplog.at_level(logging.ERROR, logger="penguiflow.core"):
        async with flow.running():
            await flow.emit(msg("t1"))
            assert await flow.fetch(trace_id="t1") == "done"
            await anyio.wait_all_tasks_blocked()
            await flow.emit(msg("t2"))  # the flow still serves
            assert await flow.fetch(trace_id="t2") == "done"
    assert any("failed" in r.getMessage() and r.exc_info for r in caplog.records)


async def test_start_soon_needs_a_running_flow() -> None:
    contexts: list[Context] = []

    async def node(message: Message, ctx: Context) -> None:
        contexts.append(ctx)

    flow = create(Node(node).to())
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(msg("t1"))
            await anyio.wait_all_tasks_blocked()
    with pytest.raises(RuntimeError, match="running flow"):
        contexts[0].start_soon(None, anyio.sleep_forever)


@pytest.mark.parametrize("to_rookery", [False, True])
async def test_ctx_fail_reports_the_error_as_the_traces_outcome(to_rookery: bool) -> None:
    release = anyio.Event()

    async def node(message: Message, ctx: Context) -> None:
        error = FlowError(
            trace_id=message.trace_id,
            node_name=ctx.owner.name,
            code=FlowErrorCode.NODE_TIMEOUT,
            message="found late",
        )

        async def report() -> None:
            await ctx.fail(error)
            release.set()

        ctx.start_soon(None, report)
        await release.wait()  # keep the trace live until the error is reported

    flow = create(Node(node).to(), emit_errors_to_rookery=to_rookery)
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(msg("t1"))
            if to_rookery:
                item: Any = await flow.fetch(trace_id="t1")
            else:
                with pytest.raises(FlowError) as caught:
                    await flow.fetch(trace_id="t1")
                item = caught.value
    assert isinstance(item, FlowError)
    assert (item.code, item.message, item.trace_id) == (
        FlowErrorCode.NODE_TIMEOUT,
        "found late",
        "t1",
    )


async def test_save_remote_binding_counts_a_failing_store_and_reports_a_missing_one() -> None:
    class BrokenStore(InMemoryStateStore):
        async def save_remote_binding(self, binding: RemoteBinding) -> None:
            raise OSError("disk full")

    results: list[bool] = []
    binding = RemoteBinding(trace_id="t1", context_id=None, task_id="task", agent_url="x://a")

    async def node(message: Message, ctx: Context) -> str:
        results.append(await ctx.save_remote_binding(binding))
        return "done"

    for store in (BrokenStore(), None):
        flow = create(Node(node, policy=NodePolicy(validate="none")).to(), state_store=store)
        with anyio.fail_after(5):
            async with flow.running():
                await flow.emit(msg("t1"))
                assert await flow.fetch(trace_id="t1") == "done"
        assert flow.statistics().store_errors == (1 if store is not None else 0)
    assert results == [True, False]
