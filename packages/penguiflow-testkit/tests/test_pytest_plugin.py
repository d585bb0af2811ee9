"""The pytest plugin: the flow_kit and event_recorder fixtures, and events in failure reports."""

import textwrap

import pytest

from penguiflow.core import Context, Headers, Message, Node, create
from penguiflow.testkit import EventRecorder, FlowKitFactory, FlowTestKit

pytest_plugins = ["pytester"]


async def shout(msg: Message, ctx: Context) -> Message:
    return msg.with_payload(str(msg.payload).upper())


async def test_flow_kit_fixture_builds_a_kit_for_the_flow(flow_kit: FlowKitFactory) -> None:
    flow = create(Node(shout).to())
    kit = flow_kit(flow, timeout_s=0.5)
    assert isinstance(kit, FlowTestKit)
    assert (kit.flow, kit.timeout_s) == (flow, 0.5)
    msg = Message(payload="hi", headers=Headers(tenant="t"))
    assert (await kit.run_one(msg)).payload == "HI"
    kit.assert_node_sequence(msg.trace_id, ["shout"])


async def test_event_recorder_fixture_is_fresh_and_records_once_attached(
    event_recorder: EventRecorder,
) -> None:
    assert len(event_recorder) == 0
    flow = create(Node(shout).to())
    event_recorder.attach(flow)
    kit = FlowTestKit(flow)
    assert kit.recorder is event_recorder
    msg = Message(payload="hi", headers=Headers(tenant="t"))
    await kit.run_one(msg)
    assert event_recorder.node_sequence(msg.trace_id) == ["shout"]


def test_the_plugin_is_registered_through_the_pytest11_entry_point(
    pytestconfig: pytest.Config,
) -> None:
    plugin = pytestconfig.pluginmanager.get_plugin("penguiflow")
    assert plugin is not None
    assert plugin.__name__ == "penguiflow.testkit.pytest_plugin"


INNER_TESTS = """
    from penguiflow.core import Headers, Message, Node, create
    from penguiflow.testkit import EventRecorder, FlowKitFactory


    async def loud(msg, ctx):
        return str(msg.payload).upper()


    async def test_fails_after_running_a_flow(flow_kit: FlowKitFactory) -> None:
        kit = flow_kit(create(Node(loud).to()))
        msg = Message(payload="hi", headers=Headers(tenant="t"), trace_id="inner-trace")
        await kit.run_one(msg)
        kit.assert_node_sequence(msg.trace_id, ["quiet"])


    async def test_passes_with_a_recorder(event_recorder: EventRecorder) -> None:
        flow = create(Node(loud).to())
        event_recorder.attach(flow)
        assert len(event_recorder) == 0
"""


def test_a_failing_test_reports_the_events_of_its_kits(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    pytester.makepyfile(test_inner=textwrap.dedent(INNER_TESTS))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*- penguiflow events -*",
            "recorder 1: 4 event(s)",
            "trace 'inner-trace':",
            "*node_start*loud*attempt=0*",
        ]
    )
    output = result.stdout.str()
    assert "expected: ['quiet']" in output and "actual:   ['loud']" in output
    assert output.count("penguiflow events") == 1
    # The testkit's own frames are hidden: the traceback ends in the test.
    assert "_assertions.py" not in output
