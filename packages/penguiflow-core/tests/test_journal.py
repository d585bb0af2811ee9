"""The journal records one entry per step, before the step moves on, and replays every message."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from penguiflow.core import (
    ROOKERY,
    WM,
    FinalAnswer,
    FlowError,
    FlowErrorCode,
    Headers,
    InMemoryDurableStore,
    Journal,
    Message,
    ModelRegistry,
    Node,
    NodePolicy,
    Scope,
    SQLiteDurableStore,
    StoreUnavailable,
    create,
    current_step_id,
)
from penguiflow.core._journal_patch import child_step


class State(BaseModel):
    counter: int
    blob: list[dict[str, Any]] = []


async def bump(msg: Message, ctx: Any) -> Message:
    state: State = msg.payload
    return msg.with_payload(state.model_copy(update={"counter": state.counter + 1}))


def chain(n: int, journal: Journal, func: Any = bump, **kwargs: Any) -> Any:
    nodes = [Node(func, name=f"n{i}", **kwargs) for i in range(n)]
    adjacencies = [a.to(b) for a, b in zip(nodes, nodes[1:], strict=False)] + [nodes[-1].to()]
    return create(*adjacencies, journal=journal)


def message(payload: Any, tenant: str = "acme", **kwargs: Any) -> Message:
    return Message(payload=payload, headers=Headers(tenant=tenant, **kwargs))


async def entries(store: Any, trace_id: str) -> list[dict[str, Any]]:
    return [json.loads(e.value) for e in await store.read(f"pf.journal/{trace_id}")]


async def test_one_entry_per_step_holding_only_what_changed() -> None:
    store = InMemoryDurableStore()
    journal = Journal(store)
    blob = [{"role": "user", "content": "x" * 200, "i": i} for i in range(100)]
    flow = chain(3, journal)
    msg = message(State(counter=0, blob=blob))
    async with flow.running():
        await flow.emit(msg)
        with anyio.fail_after(5):
            result = await flow.fetch()
    assert result.payload.counter == 3
    raw = await store.read(f"pf.journal/{msg.trace_id}")
    assert len(raw) == 4  # the ingress and one per node
    decoded = [json.loads(e.value) for e in raw]
    assert decoded[0]["s"] == "0" and decoded[0]["d"]["="]["payload"]["blob"] == blob
    changed = len(json.dumps({"counter": 1}, separators=(",", ":")))
    for entry, record in zip(decoded[1:], raw[1:], strict=True):
        assert entry["d"] == {
            ">": {"payload": {"=": {"counter": entry["d"][">"]["payload"]["="]["counter"]}}}
        }
        assert len(record.value) <= changed + 300  # the changed JSON plus at most 300 of framing
    assert [e["n"] for e in decoded[1:]] == ["n0", "n1", "n2"]
    assert [e["p"] for e in decoded[1:]] == ["0", decoded[1]["s"], decoded[2]["s"]]


async def test_replay_rebuilds_every_message_along_its_lineage() -> None:
    store = InMemoryDurableStore()
    journal = Journal(store)
    flow = chain(3, journal)
    msg = message(State(counter=0), topic="t", user="u1")
    async with flow.running():
        await flow.emit(msg)
        with anyio.fail_after(5):
            await flow.fetch()
    steps = await journal.replay(msg.trace_id)
    assert [s.step for s in steps][0] == "0"
    assert [s.node for s in steps] == [None, "n0", "n1", "n2"]
    assert [s.message.payload["counter"] for s in steps] == [0, 1, 2, 3]
    assert all(s.message.headers == msg.headers for s in steps)
    assert all(s.message.trace_id == msg.trace_id for s in steps)
    assert [s.seq for s in steps] == [1, 2, 3, 4]
    assert steps[1].step == child_step("0", "n0", 0)
    assert steps[2].parent == steps[1].step


async def test_replay_validates_payloads_with_the_registered_output_models() -> None:
    async def to_state(msg: Message, ctx: Any) -> State:
        return State(counter=msg.payload * 2)

    node = Node(to_state, name="to_state")
    store = InMemoryDurableStore()
    journal = Journal(store)
    flow = create(node.to(), journal=journal)
    registry = ModelRegistry()
    registry.register("to_state", Message, State)
    msg = message(21)
    async with flow.running(registry=registry):
        await flow.emit(msg)
        with anyio.fail_after(5):
            assert await flow.fetch() == State(counter=42)  # a bare value, as returned
    plain = await journal.replay(msg.trace_id)
    assert plain[1].message.payload == {"counter": 42, "blob": []}
    typed = await journal.replay(msg.trace_id, registry=registry)
    assert typed[1].message.payload == State(counter=42)
    assert typed[1].message.headers == msg.headers  # the envelope the bare value travelled in


async def test_a_sync_entry_is_committed_before_the_successor_runs() -> None:
    store = InMemoryDurableStore()
    journal = Journal(store)
    seen: list[int] = []

    async def first(msg: Message, ctx: Any) -> Message:
        return msg.with_payload("first")

    async def second(msg: Message, ctx: Any) -> Message:
        seen.append(len(await store.read(f"pf.journal/{msg.trace_id}")))
        return msg

    a, b = Node(first, name="a"), Node(second, name="b")
    flow = create(a.to(b), b.to(), journal=journal)
    msg = message("x")
    async with flow.running():
        await flow.emit(msg)
        with anyio.fail_after(5):
            await flow.fetch()
        # Rookery got the result only after its entry: replayable when fetch returns.
        assert len(await store.read(f"pf.journal/{msg.trace_id}")) == 3
    assert seen == [2]  # the ingress and a's output were written when b ran


async def test_emitted_outputs_are_numbered_and_keep_their_targets() -> None:
    store = InMemoryDurableStore()
    journal = Journal(store)
    steps: list[str | None] = []

    async def split(msg: Message, ctx: Any) -> None:
        steps.append(current_step_id())
        await ctx.emit(msg.with_payload("to-b"), to="b")
        await ctx.emit(msg.with_payload("to-c"), to=c)
        await ctx.emit(msg.with_payload("done"), to=ROOKERY)

    async def leaf(msg: Message, ctx: Any) -> str:
        steps.append(current_step_id())
        return f"{msg.payload}!"

    a, b, c = Node(split, name="a"), Node(leaf, name="b"), Node(leaf, name="c")
    flow = create(a.to(b, c), b.to(), c.to(), journal=journal)
    msg = message("x")
    async with flow.running():
        await flow.emit(msg, to="a")
        with anyio.fail_after(5):
            got = [await flow.fetch() for _ in range(3)]
    assert {g if isinstance(g, str) else g.payload for g in got} == {"to-b!", "to-c!", "done"}
    decoded = await entries(store, msg.trace_id)
    assert decoded[0]["e"] == ["a"]  # the ingress keeps its targets
    by_index = {e["i"]: e for e in decoded if e.get("n") == "a" and e["k"] != "x"}
    assert [by_index[i]["e"] for i in range(3)] == [["b"], ["c"], "*"]
    assert all("c" not in by_index[i] for i in range(3))
    end = [e for e in decoded if e.get("k") == "x"]
    assert len(end) == 1 and end[0]["n"] == "a"  # emitted, then returned None: marked finished
    assert steps[0] == "0"
    assert set(steps[1:]) == {child_step("0", "a", 0), child_step("0", "a", 1)}


async def test_bare_values_and_unenveloped_payloads_are_journaled() -> None:
    store = InMemoryDurableStore()
    journal = Journal(store)

    async def double(value: int, ctx: Any) -> int:
        return value * 2

    node = Node(double, name="double")
    flow = create(node.to(), journal=journal)
    async with flow.running():
        await flow.emit(5, trace_id="bare-trace")
        with anyio.fail_after(5):
            assert await flow.fetch() == 10
    steps = await journal.replay("bare-trace")
    assert [s.message.payload for s in steps] == [5, 10]
    assert steps[0].message.trace_id == "bare-trace"


async def test_controller_loops_journal_each_hop_with_typed_working_memory() -> None:
    store = InMemoryDurableStore()
    journal = Journal(store)

    async def controller(msg: Message, ctx: Any) -> Message:
        wm: WM = msg.payload
        if wm.hops >= 2:
            return msg.with_payload(FinalAnswer(text="done"))
        return msg.with_payload(wm.model_copy(update={"facts": [*wm.facts, wm.hops]}))

    node = Node(controller, name="ctl", allow_cycle=True)
    flow = create(node.to(node), journal=journal)
    msg = message(WM(query="q"))
    async with flow.running():
        await flow.emit(msg)
        with anyio.fail_after(5):
            final = await flow.fetch()
    assert final.payload == FinalAnswer(text="done")
    assert (await journal.replay(msg.trace_id))[0].message.payload["query"] == "q"  # JSON
    steps = await journal.replay(msg.trace_id, registry=ModelRegistry())  # typed
    payloads = [s.message.payload for s in steps]
    assert isinstance(payloads[0], WM) and isinstance(payloads[-1], FinalAnswer)
    assert [p.facts for p in payloads[1:-1]] == [[0], [0, 1]]


async def test_stream_chunks_are_journaled_only_with_chunks_true() -> None:
    async def talk(msg: Message, ctx: Any) -> None:
        for word in ("a", "b"):
            await ctx.emit_chunk(parent=msg, text=word, to=ROOKERY)

    for chunks, expected in ((False, 1), (True, 4)):  # ingress (+2 chunks + end mark)
        store = InMemoryDurableStore()
        flow = create(Node(talk, name="talk").to(), journal=Journal(store, chunks=chunks))
        msg = message("go")
        async with flow.running():
            await flow.emit(msg)
            with anyio.fail_after(5):
                assert [(await flow.fetch()).payload.text for _ in range(2)] == ["a", "b"]
        assert len(await entries(store, msg.trace_id)) == expected


class FailingStore(InMemoryDurableStore):
    """A real in-memory store whose next ``fail`` appends raise (a backend going away)."""

    fail = 0

    async def append(self, stream: str, value: bytes, **kwargs: Any) -> int:
        if self.fail and stream.startswith("pf.journal/") and b'"n"' in value:
            self.fail -= 1
            raise StoreUnavailable("the disk went away")
        return await super().append(stream, value, **kwargs)


async def test_a_failed_write_is_logged_counted_and_the_step_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FailingStore()
    store.fail = 1
    flow = chain(2, Journal(store))
    msg = message(State(counter=0))
    async with flow.running():
        with caplog.at_level(logging.ERROR, logger="penguiflow.core"):
            await flow.emit(msg)
            with anyio.fail_after(5):
                assert (await flow.fetch()).payload.counter == 2
        assert flow.statistics().store_errors == 1
    assert "journal_write_failed" in caplog.text
    # n0's output went on unjournaled, so n1 (its child) was not journaled either.
    assert [e.get("n") for e in await entries(store, msg.trace_id)] == [None]


async def test_strict_fails_the_invocation_and_its_retry_policy_handles_it() -> None:
    store = FailingStore()
    store.fail = 1
    runs = 0

    async def counted(msg: Message, ctx: Any) -> Message:
        nonlocal runs
        runs += 1
        return msg.with_payload(runs)

    retried = chain(
        1, Journal(store, strict=True), counted, policy=NodePolicy(max_retries=1, backoff_base=0)
    )
    msg = message("x")
    async with retried.running():
        await retried.emit(msg)
        with anyio.fail_after(5):
            assert (await retried.fetch()).payload == 2  # the second attempt was recorded
    assert [e.get("n") for e in await entries(store, msg.trace_id)] == [None, "n0"]

    store.fail = 1
    failing = create(
        Node(counted, name="n0").to(),
        journal=Journal(store, strict=True),
        emit_errors_to_rookery=True,
    )
    async with failing.running():
        await failing.emit(message("y"))
        with anyio.fail_after(5):
            error = await failing.fetch()
    assert isinstance(error, FlowError)
    assert error.code == FlowErrorCode.NODE_EXCEPTION
    assert isinstance(error.original_exc, FlowError)
    assert isinstance(error.original_exc.original_exc, StoreUnavailable)


async def test_an_async_journal_buffers_and_writes_everything_by_stop() -> None:
    store = InMemoryDurableStore()
    journal = Journal(store, durability="async")
    flow = chain(3, journal)
    msgs = [message(State(counter=i)) for i in range(20)]
    async with flow.running():
        for msg in msgs:
            flow.emit_nowait(msg)  # an async journal accepts emit_nowait
        with anyio.fail_after(5):
            for _ in msgs:
                await flow.fetch()
        assert len(await journal.replay(msgs[0].trace_id)) == 4  # replay flushes the buffer
    for msg in msgs:
        assert len(await store.read(f"pf.journal/{msg.trace_id}")) == 4


async def test_a_sync_journal_refuses_emit_nowait_with_the_fix() -> None:
    flow = chain(1, Journal(InMemoryDurableStore()))
    async with flow.running():
        with pytest.raises(RuntimeError, match="durability='async'"):
            flow.emit_nowait(message("x"))


async def test_journal_ttl_applies_to_each_trace_stream() -> None:
    now = [1000.0]
    store = InMemoryDurableStore(clock=lambda: now[0])
    journal = Journal(store, ttl_s=60)
    flow = chain(1, journal)
    msg = message(State(counter=0))
    async with flow.running():
        await flow.emit(msg)
        with anyio.fail_after(5):
            await flow.fetch()
    assert len(await journal.replay(msg.trace_id)) == 2
    now[0] += 61
    assert await journal.replay(msg.trace_id) == []


async def test_erase_forgets_a_tenants_journal_and_replay_of_unknown_is_empty() -> None:
    store = InMemoryDurableStore()
    journal = Journal(store)
    flow = chain(1, journal)
    mine, theirs = message(State(counter=0), tenant="a"), message(State(counter=0), tenant="b")
    async with flow.running():
        await flow.emit(mine)
        await flow.emit(theirs)
        with anyio.fail_after(5):
            await flow.fetch()
            await flow.fetch()
    assert await store.erase("a") >= 1
    assert await journal.replay(mine.trace_id) == []
    assert len(await journal.replay(theirs.trace_id)) == 2
    assert await journal.replay("never-ran") == []
    assert (await store.read(f"pf.journal/{theirs.trace_id}", scope=Scope("b")))[0].seq == 1


async def test_a_payload_pydantic_cannot_serialise_is_refused_at_emit() -> None:
    flow = chain(1, Journal(InMemoryDurableStore()))
    async with flow.running():
        with pytest.raises(ValueError, match="JSON-serialisable"):
            await flow.emit(message(object()))


async def test_a_first_run_never_reads_the_journal() -> None:
    class CountingStore(InMemoryDurableStore):
        reads = 0

        async def read(self, *args: Any, **kwargs: Any) -> Any:
            self.reads += 1
            return await super().read(*args, **kwargs)

    store = CountingStore()
    flow = chain(3, Journal(store))
    async with flow.running():
        for i in range(5):
            await flow.emit(message(State(counter=i)))
        with anyio.fail_after(5):
            for _ in range(5):
                await flow.fetch()
    assert store.reads == 0


async def test_journal_and_create_check_their_arguments() -> None:
    with pytest.raises(TypeError, match="lacks append, read"):
        Journal(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="durability"):
        Journal(InMemoryDurableStore(), durability="later")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ttl_s"):
        Journal(InMemoryDurableStore(), ttl_s=0)
    with pytest.raises(TypeError, match=r"journal=Journal\(store\)"):
        create(Node(bump, name="n").to(), journal=InMemoryDurableStore())  # type: ignore[arg-type]


async def test_the_journal_works_on_a_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    async with SQLiteDurableStore.open(path) as store:
        journal = Journal(store)
        flow = chain(3, journal)
        msg = message(State(counter=0))
        async with flow.running():
            await flow.emit(msg)
            with anyio.fail_after(5):
                await flow.fetch()
    async with SQLiteDurableStore.open(path) as reopened:
        steps = await Journal(reopened).replay(msg.trace_id)
    assert [s.message.payload["counter"] for s in steps] == [0, 1, 2, 3]


async def test_per_trace_state_is_freed_when_the_run_ends() -> None:
    from penguiflow.core._flow import runtime_of

    store = InMemoryDurableStore()
    journal = Journal(store, durability="async")
    flow = chain(2, journal)
    async with flow.running():
        for i in range(50):
            await flow.emit(message(State(counter=i)))
        with anyio.fail_after(5):
            for _ in range(50):
                await flow.fetch()
        recorder = runtime_of(flow).recorder
        assert recorder is not None
        await recorder.flush()
        assert not recorder.buffer and not recorder.memos
        assert flow.statistics().live_traces == 0


# ----------------------------------------------------------------- property: replay is exact
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_edits = st.sampled_from(["bump", "append", "meta", "drop_meta", "topic", "none_field", "same"])


@settings(max_examples=25, deadline=None)
@given(st.lists(st.lists(_edits, min_size=1, max_size=4), min_size=1, max_size=4))
def test_replay_rebuilds_exactly_what_every_node_returned(plans: list[list[str]]) -> None:
    """Random edits per node and trace: each replayed step equals what the node returned."""

    class Doc(BaseModel):
        counter: int = 0
        items: list[int] = []
        note: str | None = "n"

    def edit(msg: Message, kind: str) -> Message:
        doc: Doc = msg.payload
        if kind == "bump":
            return msg.with_payload(doc.model_copy(update={"counter": doc.counter + 1}))
        if kind == "append":
            return msg.with_payload(doc.model_copy(update={"items": [*doc.items, doc.counter]}))
        if kind == "meta":
            return msg.with_meta(k=len(msg.meta))
        if kind == "drop_meta":
            return msg.model_copy(update={"meta": {}})
        if kind == "topic":
            return msg.model_copy(update={"headers": msg.headers.model_copy(update={"topic": "t"})})
        if kind == "none_field":
            return msg.with_payload(doc.model_copy(update={"note": None}))
        return msg

    async def main() -> None:
        returned: dict[tuple[str, str], dict[str, Any]] = {}
        length = max(len(plan) for plan in plans)

        def make(i: int) -> Node:
            async def node(msg: Message, ctx: Any) -> Message:
                plan = plans[plan_of[msg.trace_id]]
                out = edit(msg, plan[i % len(plan)])
                returned[(msg.trace_id, f"n{i}")] = out.model_dump(mode="json")
                return out

            return Node(node, name=f"n{i}")

        store = InMemoryDurableStore()
        journal = Journal(store)
        nodes = [make(i) for i in range(length)]
        adjacencies = [a.to(b) for a, b in zip(nodes, nodes[1:], strict=False)]
        flow = create(*adjacencies, nodes[-1].to(), journal=journal)
        msgs = [Message(payload=Doc(), headers=Headers(tenant="t"), meta={"m": 1}) for _ in plans]
        plan_of = {msg.trace_id: p for p, msg in enumerate(msgs)}
        async with flow.running():
            for msg in msgs:
                await flow.emit(msg)
            with anyio.fail_after(5):
                for msg in msgs:
                    await flow.fetch(trace_id=msg.trace_id)
        for msg in msgs:
            steps = await journal.replay(msg.trace_id)
            assert steps[0].message.model_dump(mode="json") == msg.model_dump(mode="json")
            for step in steps[1:]:
                assert step.node is not None
                assert step.message.model_dump(mode="json") == returned[(msg.trace_id, step.node)]

    anyio.run(main)


async def test_a_state_store_or_bus_missing_methods_is_refused_at_create() -> None:
    class HalfStore:
        async def save_event(self, event: Any) -> None: ...

    with pytest.raises(TypeError, match="lacks load_history, save_remote_binding"):
        create(Node(bump, name="n").to(), state_store=HalfStore())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="lacks publish"):
        create(Node(bump, name="n").to(), message_bus=object())  # type: ignore[arg-type]
    create(Node(bump, name="n").to(), state_store=InMemoryDurableStore())  # a backend serves it
