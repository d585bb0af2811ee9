"""Resume: a trace runs again in memo mode, and only the steps that had not finished run."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from penguiflow.core import (
    WM,
    FinalAnswer,
    Headers,
    InMemoryDurableStore,
    Journal,
    Message,
    Node,
    NodePolicy,
    SQLiteDurableStore,
    create,
    current_step_id,
    idempotent,
)


class State(BaseModel):
    counter: int
    trail: list[str] = []


class Gate:
    """Blocks one node on its first run: the 'crash' point of the first process."""

    def __init__(self) -> None:
        self.reached = anyio.Event()
        self.open = False

    async def wait(self) -> None:
        if not self.open:
            self.reached.set()
            await anyio.sleep_forever()


def pipeline(runs: Counter[str], gate: Gate, journal: Journal, memoize_last: bool = True) -> Any:
    def make(name: str, blocks: bool = False) -> Node:
        async def step(msg: Message, ctx: Any) -> Message:
            runs[name] += 1
            if blocks:
                await gate.wait()
            state: State = msg.payload
            return msg.with_payload(
                state.model_copy(
                    update={"counter": state.counter + 1, "trail": [*state.trail, name]}
                )
            )

        return Node(step, name=name, policy=NodePolicy(memoize=memoize_last or name != "c"))

    a, b, c = make("a"), make("b"), make("c", blocks=True)
    return create(a.to(b), b.to(c), c.to(), journal=journal)


def message(payload: Any) -> Message:
    return Message(payload=payload, headers=Headers(tenant="acme"))


async def stopped_mid_trace(store: Any, runs: Counter[str], gate: Gate) -> str:
    """Run a trace until it blocks in ``c``, then stop the flow (the first process dies)."""
    flow = pipeline(runs, gate, Journal(store))
    msg = message(State(counter=0))
    async with flow.running():
        await flow.emit(msg)
        with anyio.fail_after(5):
            await gate.reached.wait()
    return msg.trace_id


async def test_resume_reruns_only_the_steps_that_had_not_finished(tmp_path: Path) -> None:
    runs: Counter[str] = Counter()
    gate = Gate()
    path = tmp_path / "j.db"
    async with SQLiteDurableStore.open(path) as store:
        trace_id = await stopped_mid_trace(store, runs, gate)
    assert runs == Counter(a=1, b=1, c=1)

    gate.open = True
    async with SQLiteDurableStore.open(path) as store:  # a new process, the same file
        journal = Journal(store)
        flow = pipeline(runs, gate, journal)
        async with flow.running():
            await journal.resume(flow, trace_id)
            with anyio.fail_after(5):
                result = await flow.fetch(trace_id=trace_id)
        steps = await journal.replay(trace_id)
    assert runs == Counter(a=1, b=1, c=2)  # a and b were not run again
    assert result.payload == State(counter=3, trail=["a", "b", "c"])  # typed: State is imported
    assert result.trace_id == trace_id and result.headers.tenant == "acme"
    assert [s.node for s in steps] == [None, "a", "b", "c"]  # nothing recorded twice


async def test_resuming_a_finished_trace_reruns_nothing_and_delivers_the_recorded_result() -> None:
    runs: Counter[str] = Counter()
    gate = Gate()
    gate.open = True
    store = InMemoryDurableStore()
    journal = Journal(store)
    flow = pipeline(runs, gate, journal)
    msg = message(State(counter=0))
    async with flow.running():
        await flow.emit(msg)
        with anyio.fail_after(5):
            first = await flow.fetch()
        await journal.resume(flow, msg.trace_id)
        with anyio.fail_after(5):
            again = await flow.fetch()
    assert runs == Counter(a=1, b=1, c=1)
    assert again.payload == first.payload
    assert len(await journal.replay(msg.trace_id)) == 4


async def test_memoize_false_always_runs_again() -> None:
    runs: Counter[str] = Counter()
    gate = Gate()
    gate.open = True
    store = InMemoryDurableStore()
    journal = Journal(store)
    flow = pipeline(runs, gate, journal, memoize_last=False)
    msg = message(State(counter=0))
    async with flow.running():
        await flow.emit(msg)
        with anyio.fail_after(5):
            await flow.fetch()
        await journal.resume(flow, msg.trace_id)
        with anyio.fail_after(5):
            await flow.fetch()
    assert runs == Counter(a=1, b=1, c=2)


async def test_an_unfinished_invocation_runs_again_and_its_recorded_outputs_win() -> None:
    store = InMemoryDurableStore()
    emitted: list[str] = []
    gate = Gate()

    async def fan(msg: Message, ctx: Any) -> None:
        token = f"run{len(emitted)}"
        emitted.append(token)
        await ctx.emit(msg.with_payload(f"first-{token}"))
        await gate.wait()  # dies after its first output, before the second
        await ctx.emit(msg.with_payload(f"second-{token}"))

    async def sink(msg: Message, ctx: Any) -> str:
        return msg.payload

    def build(journal: Journal) -> Any:
        a, b = Node(fan, name="fan"), Node(sink, name="sink")
        return create(a.to(b), b.to(), journal=journal)

    flow = build(Journal(store))
    msg = message("go")
    async with flow.running():
        await flow.emit(msg)
        with anyio.fail_after(5):
            assert await flow.fetch() == "first-run0"
            await gate.reached.wait()
    gate.open = True
    journal = Journal(store)
    flow = build(journal)
    async with flow.running():
        await journal.resume(flow, msg.trace_id)
        with anyio.fail_after(5):
            got = [await flow.fetch(), await flow.fetch()]
    assert emitted == ["run0", "run1"]  # fan ran again (it had not finished)...
    assert sorted(got) == ["first-run0", "second-run1"]  # ...its recorded first output won


async def test_a_controller_loop_resumes_from_its_last_recorded_hop() -> None:
    store = InMemoryDurableStore()
    hops: list[int] = []
    gate = Gate()

    async def controller(msg: Message, ctx: Any) -> Message:
        wm: WM = msg.payload
        hops.append(wm.hops)
        if wm.hops == 2:
            await gate.wait()
        if wm.hops >= 3:
            return msg.with_payload(FinalAnswer(text=",".join(map(str, wm.facts))))
        return msg.with_payload(wm.model_copy(update={"facts": [*wm.facts, wm.hops]}))

    def build(journal: Journal) -> Any:
        node = Node(controller, name="ctl", allow_cycle=True)
        return create(node.to(node), journal=journal)

    flow = build(Journal(store))
    msg = message(WM(query="q", budget_hops=10))
    async with flow.running():
        await flow.emit(msg)
        with anyio.fail_after(5):
            await gate.reached.wait()
    gate.open = True
    journal = Journal(store)
    flow = build(journal)
    async with flow.running():
        await journal.resume(flow, msg.trace_id)
        with anyio.fail_after(5):
            final = await flow.fetch()
    assert final.payload == FinalAnswer(text="0,1,2")
    assert hops == [0, 1, 2, 2, 3]  # hops 0 and 1 were replayed, not run


async def test_a_side_effect_in_idempotent_survives_a_resume_without_repeating() -> None:
    store = InMemoryDurableStore()
    charges: list[str] = []
    gate = Gate()

    async def charge(msg: Message, ctx: Any) -> Message:
        async def do_charge() -> dict[str, Any]:
            charges.append(msg.payload)
            return {"receipt": f"r-{len(charges)}"}

        receipt = await idempotent(f"charge:{msg.trace_id}:{current_step_id()}", do_charge)
        await gate.wait()  # the process dies after charging, before the step is recorded
        return msg.with_payload(receipt)

    def build(journal: Journal) -> Any:
        return create(Node(charge, name="charge").to(), journal=journal)

    flow = build(Journal(store))
    msg = message("order-1")
    async with flow.running():
        await flow.emit(msg)
        with anyio.fail_after(5):
            await gate.reached.wait()
    gate.open = True
    journal = Journal(store)
    flow = build(journal)
    async with flow.running():
        await journal.resume(flow, msg.trace_id)
        with anyio.fail_after(5):
            result = await flow.fetch()
    assert charges == ["order-1"]  # charged once, although the step ran twice
    assert result.payload == {"receipt": "r-1"}


async def test_resume_checks_its_flow_and_trace() -> None:
    store = InMemoryDurableStore()
    journal = Journal(store)

    async def echo(msg: Message, ctx: Any) -> Message:
        return msg

    other = create(Node(echo, name="e").to(), journal=Journal(store))
    plain = create(Node(echo, name="e").to())
    mine = create(Node(echo, name="e").to(), journal=journal)
    async with other.running(), plain.running(), mine.running():
        with pytest.raises(ValueError, match="created with this journal"):
            await journal.resume(other, "t")
        with pytest.raises(ValueError, match="created with this journal"):
            await journal.resume(plain, "t")
        with pytest.raises(LookupError, match="'unknown'"):
            await journal.resume(mine, "unknown")
        from penguiflow.core._flow import runtime_of

        recorder = runtime_of(mine).recorder
        assert recorder is not None and not recorder.memos
