"""FlowTestKit: running a flow for one or many messages, and per-flow recorders."""

import anyio
import anyio.lowlevel
import pytest

from penguiflow.core import Context, Headers, Message, Node, create
from penguiflow.testkit import EventRecorder, FlowTestKit, FlowTestTimeout


def make(payload: object, tenant: str = "t") -> Message:
    return Message(payload=payload, headers=Headers(tenant=tenant))


def build_flow(prefix: str) -> tuple[Node, Node]:
    """Two nodes named after ``prefix``; the second yields to the loop so traces interleave."""

    async def tag(msg: Message, ctx: Context) -> Message:
        await anyio.lowlevel.checkpoint()
        return msg.with_payload(f"{prefix}:{msg.payload}")

    async def finish(msg: Message, ctx: Context) -> Message:
        await anyio.lowlevel.checkpoint()
        return msg.with_payload(f"{msg.payload}!")

    return Node(tag, name=f"{prefix}_tag"), Node(finish, name=f"{prefix}_finish")


def linear_kit(prefix: str) -> FlowTestKit:
    first, second = build_flow(prefix)
    return FlowTestKit(create(first.to(second), second.to()))


async def test_many_concurrent_messages_through_one_running_kit_get_their_own_results() -> None:
    kit = linear_kit("a")
    messages = [make(i) for i in range(20)]
    results: dict[str, object] = {}

    async def one(msg: Message) -> None:
        results[msg.trace_id] = (await kit.run_one(msg)).payload

    with anyio.fail_after(5):
        async with kit:
            async with anyio.create_task_group() as tg:
                for msg in messages:
                    tg.start_soon(one, msg)
    assert results == {m.trace_id: f"a:{m.payload}!" for m in messages}
    for msg in messages:
        kit.assert_node_sequence(msg.trace_id, ["a_tag", "a_finish"])
    assert kit.flow.statistics().workers == 0


async def test_two_flows_running_concurrently_never_see_each_others_events() -> None:
    kit_a, kit_b = linear_kit("a"), linear_kit("b")
    sent: dict[str, list[Message]] = {"a": [], "b": []}

    async def drive(name: str, kit: FlowTestKit) -> None:
        async with kit:
            async with anyio.create_task_group() as tg:
                for i in range(10):
                    msg = make(i, tenant=name)
                    sent[name].append(msg)
                    tg.start_soon(kit.run_one, msg)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(drive, "a", kit_a)
            tg.start_soon(drive, "b", kit_b)
    for name, kit in (("a", kit_a), ("b", kit_b)):
        own = {m.trace_id for m in sent[name]}
        assert set(kit.recorder.trace_ids) == own
        names = {e.node_name for e in kit.recorder.all_events if e.node_name is not None}
        assert names == {f"{name}_tag", f"{name}_finish"}
        for msg in sent[name]:
            kit.assert_node_sequence(msg.trace_id, [f"{name}_tag", f"{name}_finish"])
    assert kit_a.recorder is not kit_b.recorder


async def test_run_one_outside_a_block_runs_the_flow_once_and_says_so_the_second_time() -> None:
    kit = linear_kit("a")
    assert (await kit.run_one(make(1))).payload == "a:1!"
    with pytest.raises(RuntimeError, match=r"a flow runs once.*async with kit:"):
        await kit.run_one(make(2))
    with pytest.raises(RuntimeError, match="a flow runs once"):
        async with kit:
            pass


async def test_the_kit_timeout_default_applies_to_run_one() -> None:
    async def hang(msg: Message, ctx: Context) -> None:
        await anyio.sleep_forever()

    kit = FlowTestKit(create(Node(hang).to()), timeout_s=0.05)
    with anyio.fail_after(5):
        with pytest.raises(FlowTestTimeout) as info:
            await kit.run_one(make(1))
    assert info.value.timeout_s == 0.05


async def test_a_kit_uses_the_recorder_it_is_given_and_describes_traces() -> None:
    recorder = EventRecorder()
    first, second = build_flow("c")
    kit = FlowTestKit(create(first.to(second), second.to()), recorder=recorder)
    msg = make("x")
    await kit.run_one(msg)
    assert kit.recorder is recorder
    assert kit.node_sequence(msg.trace_id) == ["c_tag", "c_finish"]
    assert kit.describe(msg.trace_id).startswith(f"events of trace {msg.trace_id!r} (")
    assert len(recorder) == len(recorder.all_events) > 0
    recorder.clear()
    assert (len(recorder), recorder.trace_ids) == (0, ())


async def test_an_exception_inside_the_block_stops_the_flow_and_propagates() -> None:
    kit = linear_kit("a")
    with pytest.raises(LookupError):
        async with kit:
            assert kit.flow.running_now
            raise LookupError("test body failed")
    stats = kit.flow.statistics()
    assert (stats.running, stats.workers) == (False, 0)
    assert "idle" in repr(kit)
