"""Stored event ids are unique across flows and across processes sharing one state store."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

import anyio

from penguiflow.core import Context, Headers, InMemoryStateStore, Message, Node, create

TRACE = "shared-trace"
"""The same trace id in every run, as when several workers replay one conversation."""

# One tiny flow with a state store; prints the ids of the events it stored.
RUN_ONE_FLOW = textwrap.dedent(
    f"""
    import asyncio, json
    from penguiflow.core import Headers, InMemoryStateStore, Message, Node, create

    async def echo(message, ctx):
        return message

    async def main():
        flow = create(Node(echo).to(), state_store=InMemoryStateStore())
        async with flow.running():
            await flow.emit(Message(payload=1, headers=Headers(tenant="t"), trace_id={TRACE!r}))
            await asyncio.wait_for(flow.fetch(), 10)
            history = await flow.load_history({TRACE!r})
        print(json.dumps([event.event_id for event in history]))

    asyncio.run(main())
    """
)


def _ids_from_a_fresh_process() -> list[str]:
    completed = subprocess.run(
        [sys.executable, "-c", RUN_ONE_FLOW],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_two_processes_never_produce_the_same_event_id() -> None:
    first = _ids_from_a_fresh_process()
    second = _ids_from_a_fresh_process()
    assert first and second
    assert len(set(first)) == len(first)
    assert set(first).isdisjoint(second)


async def _echo(message: Any, ctx: Context) -> Any:
    return message


async def _ids_of_one_run() -> list[str]:
    flow = create(Node(_echo).to(), state_store=InMemoryStateStore())
    async with flow.running():
        await flow.emit(Message(payload=1, headers=Headers(tenant="t"), trace_id=TRACE))
        with anyio.fail_after(5):
            await flow.fetch()
        history = await flow.load_history(TRACE)
    return [event.event_id for event in history]


async def test_two_flows_in_one_process_never_produce_the_same_event_id() -> None:
    first = await _ids_of_one_run()
    second = await _ids_of_one_run()
    assert first and second
    assert set(first).isdisjoint(second)


async def test_one_store_shared_by_two_flows_keeps_every_event() -> None:
    store = InMemoryStateStore()
    for _ in range(2):
        flow = create(Node(_echo).to(), state_store=store)
        async with flow.running():
            await flow.emit(Message(payload=1, headers=Headers(tenant="t"), trace_id=TRACE))
            with anyio.fail_after(5):
                await flow.fetch()
    one_run = len(await _ids_of_one_run())
    history = await store.load_history(TRACE)
    assert len(history) == 2 * one_run
