"""assert_node_sequence(trace_id, expected) and get_recorded_events(trace_id): no flow to name.

The recorder that saw a trace is found from the trace id alone; the lookup is safe while other
flows run, holds recorders weakly, and is bounded.
"""

import gc
import time
import weakref

import anyio
import anyio.lowlevel
import pytest

from penguiflow.core import Context, FlowEvent, FlowEventType, Headers, Message, Node, create
from penguiflow.testkit import (
    EventRecorder,
    FlowTestKit,
    NodeSequenceMismatch,
    assert_node_sequence,
    get_recorded_events,
    recorder_of,
    run_one,
)
from penguiflow.testkit._traces import MAX_INDEXED_TRACES, PINNED_RUNS, TRACES, TraceIndex


def make(payload: object = "x") -> Message:
    return Message(payload=payload, headers=Headers(tenant="t"))


def start_event(trace_id: str, node: str = "n") -> FlowEvent:
    return FlowEvent(FlowEventType.NODE_START, time.time(), node, f"{node}-id", trace_id)


def linear(prefix: str) -> tuple[Node, Node]:
    async def tag(msg: Message, ctx: Context) -> Message:
        await anyio.lowlevel.checkpoint()  # let traces of other flows interleave
        return msg.with_payload(f"{prefix}:{msg.payload}")

    async def finish(msg: Message, ctx: Context) -> Message:
        await anyio.lowlevel.checkpoint()
        return msg.with_payload(f"{msg.payload}!")

    return Node(tag, name=f"{prefix}_tag"), Node(finish, name=f"{prefix}_finish")


async def test_the_sequence_and_events_of_a_run_are_found_by_trace_id_alone() -> None:
    first, second = linear("a")
    flow = create(first.to(second), second.to())
    msg = make()
    assert (await run_one(flow, msg)).payload == "a:x!"
    assert_node_sequence(msg.trace_id, ["a_tag", "a_finish"])
    events = get_recorded_events(msg.trace_id)
    assert [str(e.event_type) for e in events] == [
        "emit",
        "node_start",
        "node_success",
        "node_start",
        "node_success",
        "fetch",
    ]
    assert events == recorder_of(flow).get_recorded_events(msg.trace_id)


async def test_keyword_calls_and_the_explicit_source_form_still_work() -> None:
    first, second = linear("k")
    kit = FlowTestKit(create(first.to(second), second.to()))
    msg = make()
    await kit.run_one(msg)
    assert_node_sequence(trace_id=msg.trace_id, expected=["k_tag", "k_finish"])
    assert_node_sequence(kit, msg.trace_id, ["k_tag", "k_finish"])
    assert_node_sequence(source=kit.flow, trace_id=msg.trace_id, expected=["k_tag", "k_finish"])
    assert get_recorded_events(trace_id=msg.trace_id) == get_recorded_events(kit, msg.trace_id)


async def test_a_flow_built_inline_in_run_one_can_still_be_checked() -> None:
    first, second = linear("inline")
    msg = make()
    await run_one(create(first.to(second), second.to()), msg)
    gc.collect()  # nothing references the flow any more
    assert_node_sequence(msg.trace_id, ["inline_tag", "inline_finish"])


async def test_concurrent_flows_each_answer_for_their_own_traces() -> None:
    kits = {
        prefix: FlowTestKit(create(a.to(b), b.to()))
        for prefix, (a, b) in ((p, linear(p)) for p in ("left", "right"))
    }
    sent: dict[str, list[Message]] = {"left": [], "right": []}

    async def drive(prefix: str) -> None:
        async with kits[prefix] as kit, anyio.create_task_group() as tg:
            for i in range(10):
                msg = make(i)
                sent[prefix].append(msg)
                tg.start_soon(kit.run_one, msg)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for prefix in kits:
                tg.start_soon(drive, prefix)
    for prefix, messages in sent.items():
        for msg in messages:
            assert_node_sequence(msg.trace_id, [f"{prefix}_tag", f"{prefix}_finish"])
            assert {e.node_name for e in get_recorded_events(msg.trace_id)} >= {f"{prefix}_tag"}


async def test_when_two_flows_ran_one_trace_id_the_later_one_answers() -> None:
    msg = make()
    a_first, a_second = linear("earlier")
    b_first, b_second = linear("later")
    earlier = create(a_first.to(a_second), a_second.to())
    later = create(b_first.to(b_second), b_second.to())
    await run_one(earlier, msg)
    await run_one(later, msg)
    assert_node_sequence(msg.trace_id, ["later_tag", "later_finish"])
    assert_node_sequence(earlier, msg.trace_id, ["earlier_tag", "earlier_finish"])


def test_an_unknown_trace_fails_saying_how_to_check_it() -> None:
    with pytest.raises(NodeSequenceMismatch) as info:
        assert_node_sequence("never-ran", ["node"])
    text = str(info.value)
    assert text.startswith("No recorded events for trace 'never-ran'")
    assert "assert_node_sequence(kit, trace_id, expected)" in text
    assert (info.value.expected, info.value.actual) == (["node"], [])
    assert get_recorded_events("never-ran") == ()


def test_a_string_for_expected_is_caught_even_for_an_unknown_trace() -> None:
    with pytest.raises(TypeError, match=r"write \['node'\]"):
        assert_node_sequence("never-ran", "node")


def test_wrong_calls_say_both_forms_and_none_needs_a_source() -> None:
    with pytest.raises(TypeError, match=r"assert_node_sequence\(kit, trace_id, expected\)"):
        assert_node_sequence(None, ["n"])  # pyright: ignore[reportArgumentType]
    with pytest.raises(TypeError, match=r"get_recorded_events\(kit, trace_id\)"):
        get_recorded_events(None)  # pyright: ignore[reportArgumentType]
    with pytest.raises(TypeError, match=r"or assert_node_sequence\(source, trace_id, expected\)"):
        assert_node_sequence("t")  # pyright: ignore[reportCallIssue]
    with pytest.raises(TypeError, match="expected an EventRecorder, a FlowTestKit or a PenguiFlow"):
        assert_node_sequence(42, "t", ["n"])  # pyright: ignore[reportArgumentType]


def test_the_index_does_not_keep_a_recorder_alive() -> None:
    recorder = EventRecorder()
    recorder(start_event("weak-trace", "solo"))
    assert_node_sequence("weak-trace", ["solo"])
    before = len(TRACES)
    ref = weakref.ref(recorder)
    del recorder
    gc.collect()
    assert ref() is None
    assert get_recorded_events("weak-trace") == ()
    assert len(TRACES) < before  # its entries are swept, not just dead


def test_a_cleared_recorder_no_longer_answers_for_its_traces() -> None:
    recorder = EventRecorder()
    recorder(start_event("cleared-trace"))
    recorder.clear()
    assert get_recorded_events("cleared-trace") == ()


def test_the_index_remembers_a_bounded_number_of_traces() -> None:
    recorder = EventRecorder()
    traces = [f"bounded-{i}" for i in range(MAX_INDEXED_TRACES + 1)]
    for trace_id in traces:
        recorder(start_event(trace_id))
    assert len(TRACES) <= MAX_INDEXED_TRACES
    assert get_recorded_events(traces[0]) == ()  # forgotten by the index ...
    assert recorder.get_recorded_events(traces[0])  # ... still there for its recorder
    assert_node_sequence(traces[-1], ["n"])


def test_a_small_index_evicts_oldest_first_and_sweeps_freed_recorders() -> None:
    index = TraceIndex(max_traces=2, pinned=0)
    keep = EventRecorder()
    for trace_id in ("t1", "t2", "t3"):
        keep(start_event(trace_id))
        index.note(trace_id, keep)
    assert [index.lookup(t) is keep for t in ("t1", "t2", "t3")] == [False, True, True]
    gone = EventRecorder()
    gone(start_event("t4"))
    index.note("t4", gone)
    del gone
    gc.collect()
    assert (len(index), index.lookup("t4"), index.lookup("t3")) == (1, None, keep)


async def test_recorders_of_old_runs_are_released_after_later_runs() -> None:
    first, second = linear("old")
    flow = create(first.to(second), second.to())
    msg = make()
    await run_one(flow, msg)
    ref = weakref.ref(recorder_of(flow))
    del flow
    for _ in range(PINNED_RUNS):
        await run_one(create(linear("new")[0].to()), make())
    gc.collect()
    assert ref() is None
    assert get_recorded_events(msg.trace_id) == ()


def test_events_built_with_string_types_are_read_like_enum_ones() -> None:
    recorder = EventRecorder()
    raw = start_event("str-trace")._replace(event_type="node_start")
    recorder(raw)
    assert recorder.node_sequence("str-trace") == ["n"]
    assert "node_start" in recorder.describe("str-trace")
