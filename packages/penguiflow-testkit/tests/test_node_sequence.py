"""assert_node_sequence: what counts as an entry, and failure messages a person can act on."""

import pytest

from penguiflow.core import (
    WM,
    Context,
    FinalAnswer,
    Headers,
    Message,
    Node,
    NodePolicy,
    create,
)
from penguiflow.testkit import (
    EventRecorder,
    FlowTestKit,
    NodeSequenceMismatch,
    assert_node_sequence,
    get_recorded_events,
    recorder_of,
    run_one,
    simulate_error,
)


def make(payload: object = "x") -> Message:
    return Message(payload=payload, headers=Headers(tenant="t"))


async def first(msg: Message, ctx: Context) -> str:
    return "first"


async def second(msg: Message, ctx: Context) -> str:
    return "second"


async def run_linear() -> tuple[FlowTestKit, Message]:
    a, b = Node(first), Node(second)
    kit = FlowTestKit(create(a.to(b), b.to()))
    msg = make()
    await kit.run_one(msg)
    return kit, msg


async def test_mismatch_message_shows_expected_actual_and_first_difference() -> None:
    kit, msg = await run_linear()
    with pytest.raises(NodeSequenceMismatch) as info:
        kit.assert_node_sequence(msg.trace_id, ["first", "third"])
    lines = str(info.value).splitlines()
    assert lines[0] == f"node sequence of trace {msg.trace_id!r} differs from the expected one"
    assert lines[1] == "  expected: ['first', 'third']"
    assert lines[2] == "  actual:   ['first', 'second']"
    assert lines[3] == "  first difference at position 1: expected 'third', got 'second'"
    assert lines[4].startswith(f"events of trace {msg.trace_id!r}")
    assert (info.value.expected, info.value.actual) == (["first", "third"], ["first", "second"])
    assert isinstance(info.value, AssertionError)


async def test_mismatch_message_names_missing_and_extra_nodes() -> None:
    kit, msg = await run_linear()
    with pytest.raises(NodeSequenceMismatch, match=r"stopped after 2 node\(s\); missing: \['x'\]"):
        kit.assert_node_sequence(msg.trace_id, ["first", "second", "x"])
    with pytest.raises(NodeSequenceMismatch, match=r"1 more node\(s\) than expected: \['second'\]"):
        kit.assert_node_sequence(msg.trace_id, ["first"])


async def test_unknown_trace_message_lists_the_traces_that_were_recorded() -> None:
    kit, msg = await run_linear()
    with pytest.raises(NodeSequenceMismatch) as info:
        kit.assert_node_sequence("no-such-trace", ["first"])
    assert "no event was recorded for trace 'no-such-trace'" in str(info.value)
    assert repr(msg.trace_id) in str(info.value)


async def test_a_string_instead_of_a_list_is_a_clear_type_error() -> None:
    kit, msg = await run_linear()
    with pytest.raises(TypeError, match=r"write \['first'\]"):
        kit.assert_node_sequence(msg.trace_id, "first")


async def test_retries_of_one_invocation_collapse_into_one_entry() -> None:
    sim = simulate_error("flaky", "E_FLAKY", fail_times=2)
    flaky = Node(sim, policy=NodePolicy(max_retries=2, backoff_base=0.0))
    last = Node(second)
    kit = FlowTestKit(create(flaky.to(last), last.to()))
    msg = make()
    await kit.run_one(msg)
    starts = [e for e in kit.get_recorded_events(msg.trace_id) if e.event_type == "node_start"]
    assert [(e.node_name, e.attempt) for e in starts] == [
        ("flaky", 0),
        ("flaky", 1),
        ("flaky", 2),
        ("second", 0),
    ]
    kit.assert_node_sequence(msg.trace_id, ["flaky", "second"])


async def test_each_hop_of_a_controller_loop_is_its_own_entry() -> None:
    async def controller(msg: Message, ctx: Context) -> Message:
        wm = msg.payload
        assert isinstance(wm, WM)
        if wm.hops >= 2:
            return msg.with_payload(FinalAnswer(text=f"done after {wm.hops}"))
        return msg.with_payload(wm)

    node = Node(controller, allow_cycle=True)
    kit = FlowTestKit(create(node.to(node)))
    msg = make(WM(query="q"))
    assert (await kit.run_one(msg)).payload == FinalAnswer(text="done after 2")
    kit.assert_node_sequence(msg.trace_id, ["controller"] * 3)
    with pytest.raises(NodeSequenceMismatch) as info:
        kit.assert_node_sequence(msg.trace_id, ["controller"])  # how penguiflow 3.x counted
    assert "penguiflow 3.x collapsed such repeats, so expect ['controller', 'controller'," in str(
        info.value
    )


async def test_module_helpers_accept_a_recorder_a_kit_or_a_flow() -> None:
    a = Node(first)
    flow = create(a.to())
    msg = make()
    await run_one(flow, msg)
    recorder = recorder_of(flow)
    kit = FlowTestKit(flow)
    assert kit.recorder is recorder
    for source in (flow, recorder, kit):
        assert_node_sequence(source, msg.trace_id, ["first"])
        events = get_recorded_events(source, msg.trace_id)
        assert [e.event_type.value for e in events] == [
            "emit",
            "node_start",
            "node_success",
            "fetch",
        ]


def test_a_flow_without_recorder_says_how_to_attach_one() -> None:
    flow = create(Node(first).to())
    with pytest.raises(ValueError, match=r"EventRecorder\(\)\.attach\(flow\)"):
        assert_node_sequence(flow, "t", ["first"])


def test_attaching_a_recorder_twice_registers_it_once() -> None:
    flow = create(Node(first).to())
    recorder = EventRecorder()
    recorder.attach(flow).attach(flow)
    assert flow.event_hooks == (recorder,)
    assert EventRecorder.for_flow(flow) is recorder
