"""FlowTestKit: one flow under test, its recorder, and the assertions that read it."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Protocol, Self

from penguiflow.core import FlowEvent, ModelRegistry, PenguiFlow

from ._assertions import check_node_sequence
from ._recorder import EventRecorder
from ._run import emit_and_fetch

__all__ = ["FlowKitFactory", "FlowTestKit"]


class FlowTestKit:
    """Bundles a flow with its own ``EventRecorder`` and the testkit's helpers.

    One message, flow started and stopped around it::

        kit = FlowTestKit(flow)
        result = await kit.run_one(msg)
        kit.assert_node_sequence(msg.trace_id, ["parse", "answer"])

    Several messages (concurrently, if you like) through one running flow::

        async with FlowTestKit(flow) as kit:
            first = await kit.run_one(msg_a)
            second = await kit.run_one(msg_b)

    The recorder belongs to this flow alone, so kits of flows that run at the same time never
    see each other's events.

    Args:
        flow: The flow under test; it must not have been started yet.
        registry: Used when the kit starts the flow.
        recorder: Record into this recorder (default: the one already attached to the flow, or a
            new one).
        timeout_s: Default ``timeout_s`` of :meth:`run_one`.
    """

    def __init__(
        self,
        flow: PenguiFlow,
        *,
        registry: ModelRegistry | None = None,
        recorder: EventRecorder | None = None,
        timeout_s: float = 1.0,
    ) -> None:
        self.flow: PenguiFlow = flow
        """The flow under test."""
        self.registry: ModelRegistry | None = registry
        """The registry the kit starts the flow with."""
        self.recorder: EventRecorder = (
            recorder.attach(flow) if recorder is not None else EventRecorder.for_flow(flow)
        )
        """Every event of the flow, per trace."""
        self.timeout_s: float = timeout_s
        """Default bound of :meth:`run_one`."""
        self._running: AbstractAsyncContextManager[PenguiFlow] | None = None
        self._started = False

    # ------------------------------------------------------------- running
    async def __aenter__(self) -> Self:
        self._check_can_start("async with kit:")
        running = self.flow.running(registry=self.registry)
        await running.__aenter__()
        self._running = running
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        running, self._running = self._running, None
        if running is None:
            return None
        return await running.__aexit__(exc_type, exc, tb)

    def _check_can_start(self, what: str) -> None:
        if self._running is not None:
            raise RuntimeError(f"{what}: this kit's flow is already running")
        if self._started:
            raise RuntimeError(
                f"{what}: this kit already ran its flow, and a flow runs once. Send several "
                "messages inside one `async with kit:` block, or build a new flow (and kit)."
            )
        self._started = True

    async def run_one(
        self, message: Any, *, timeout_s: float | None = None, trace_id: str | None = None
    ) -> Any:
        """Send one message and return its trace's first result (see ``run_one``).

        Inside ``async with kit:`` the running flow is used; otherwise the flow is started and
        stopped around this call (so it can be called once).
        """
        __tracebackhide__ = True  # pytest: show the test's frame, not the testkit's
        timeout = self.timeout_s if timeout_s is None else timeout_s
        if self._running is not None or self.flow.running_now:
            return await emit_and_fetch(
                self.flow, self.recorder, message, timeout_s=timeout, trace_id=trace_id
            )
        self._check_can_start("kit.run_one()")
        async with self.flow.running(registry=self.registry):
            return await emit_and_fetch(
                self.flow, self.recorder, message, timeout_s=timeout, trace_id=trace_id
            )

    # --------------------------------------------------------------- reading
    def get_recorded_events(self, trace_id: str | None) -> tuple[FlowEvent, ...]:
        """The events of ``trace_id``, in order."""
        return self.recorder.get_recorded_events(trace_id)

    def node_sequence(self, trace_id: str | None) -> list[str]:
        """The nodes ``trace_id`` went through, retries collapsed (see ``EventRecorder``)."""
        return self.recorder.node_sequence(trace_id)

    def assert_node_sequence(self, trace_id: str | None, expected: Sequence[str]) -> None:
        """Assert the trace went through exactly ``expected`` (see ``assert_node_sequence``)."""
        __tracebackhide__ = True  # pytest: show the test's frame, not the testkit's
        check_node_sequence(self.recorder, trace_id, expected)

    def describe(self, trace_id: str | None) -> str:
        """A readable account of the trace's events."""
        return self.recorder.describe(trace_id)

    def __repr__(self) -> str:
        state = "running" if self._running is not None else "idle"
        return f"FlowTestKit({self.flow!r}, {state}, {self.recorder!r})"


class FlowKitFactory(Protocol):
    """The ``flow_kit`` pytest fixture: builds a :class:`FlowTestKit` for a flow."""

    def __call__(
        self,
        flow: PenguiFlow,
        *,
        registry: ModelRegistry | None = None,
        timeout_s: float = 1.0,
    ) -> FlowTestKit:
        """Build a kit for ``flow`` (its events are shown in the report if the test fails)."""
        ...
