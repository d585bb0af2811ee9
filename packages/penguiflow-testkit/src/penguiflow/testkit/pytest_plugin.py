"""pytest plugin of penguiflow-testkit (loaded automatically through the ``pytest11`` entry point).

Fixtures:
    flow_kit: A factory, ``flow_kit(flow, *, registry=None, timeout_s=1.0) -> FlowTestKit``.
    event_recorder: A fresh ``EventRecorder`` (attach it with ``event_recorder.attach(flow)``).

When a test that used them fails, the events recorded by its kits and recorders are added to the
failure report under "penguiflow events", one block per trace.

The testkit itself is imported only when a fixture is used, so the plugin costs nothing in
sessions that never touch a flow.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from penguiflow.core import ModelRegistry, PenguiFlow

    from ._kit import FlowKitFactory, FlowTestKit
    from ._recorder import EventRecorder

__all__ = ["event_recorder", "flow_kit"]

_RECORDERS = pytest.StashKey[list["EventRecorder"]]()
_MAX_REPORTED_EVENTS = 200


def _register(item: pytest.Item, recorder: EventRecorder) -> None:
    recorders = item.stash.setdefault(_RECORDERS, [])
    if not any(known is recorder for known in recorders):
        recorders.append(recorder)


@pytest.fixture
def flow_kit(request: pytest.FixtureRequest) -> FlowKitFactory:
    """Build ``FlowTestKit`` objects whose events are shown when the test fails.

    Example::

        async def test_answer(flow_kit: FlowKitFactory) -> None:
            kit = flow_kit(build_flow())
            result = await kit.run_one(msg)
    """
    from ._kit import FlowTestKit

    item = request.node

    def build(
        flow: PenguiFlow, *, registry: ModelRegistry | None = None, timeout_s: float = 1.0
    ) -> FlowTestKit:
        kit = FlowTestKit(flow, registry=registry, timeout_s=timeout_s)
        if isinstance(item, pytest.Item):
            _register(item, kit.recorder)
        return kit

    return build


@pytest.fixture
def event_recorder(request: pytest.FixtureRequest) -> EventRecorder:
    """A fresh ``EventRecorder``; its events are shown when the test fails."""
    from ._recorder import EventRecorder

    recorder = EventRecorder()
    if isinstance(request.node, pytest.Item):
        _register(request.node, recorder)
    return recorder


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the recorded events of a failed test's kits and recorders to its report."""
    report = yield
    recorders = item.stash.get(_RECORDERS, None)
    if recorders and report.failed and call.when == "call":
        report.sections.append(("penguiflow events", _render(recorders)))
    return report


def _render(recorders: list[EventRecorder]) -> str:
    from ._recorder import format_events

    blocks: list[str] = []
    for number, recorder in enumerate(recorders, start=1):
        events = recorder.all_events
        header = f"recorder {number}: {len(events)} event(s)"
        if len(events) > _MAX_REPORTED_EVENTS:
            header += f", last {_MAX_REPORTED_EVENTS} shown"
        blocks.append(header)
        shown = {id(event) for event in events[-_MAX_REPORTED_EVENTS:]}
        for trace_id in recorder.trace_ids:
            trace_events = [e for e in recorder.get_recorded_events(trace_id) if id(e) in shown]
            if trace_events:
                blocks.append(f"trace {trace_id!r}:\n{format_events(trace_events)}")
    return "\n".join(blocks)
