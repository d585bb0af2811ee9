"""A flow's lifecycle: starting its workers once, serving until asked to stop, stopping.

``FlowLifecycle`` is the base class of ``PenguiFlow`` (``_flow``) and holds what starting and
stopping need: ``run()`` / ``async with running()`` check the registry and configure the node
runners, ``_serve`` runs the workers (and the listener and journal drains) in one task group
until ``stop()``, then ends every trace and flushes buffered events and journal entries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import Self

import anyio
from anyio import CancelScope
from anyio.abc import TaskStatus

from ._errors import RegistryError
from ._node import Node
from ._registry import ModelRegistry
from ._runner import NodeRunner
from ._runtime import Runtime

__all__ = ["FlowLifecycle"]

logger = logging.getLogger("penguiflow.core")


class FlowLifecycle:
    """Starting and stopping a ``PenguiFlow`` (see the module docstring)."""

    __slots__ = ("_rt", "_runners", "_serving", "_stop_requested", "_stopped")

    _rt: Runtime
    _runners: dict[Node, NodeRunner]
    _serving: asyncio.Task[None] | None
    _stop_requested: anyio.Event | None
    _stopped: anyio.Event | None

    flush_timeout_s: float = 5.0
    """How long ``stop()`` waits for buffered events to reach async listeners."""

    # ------------------------------------------------------------- lifecycle
    def _prepare(self, registry: ModelRegistry | None) -> None:
        rt = self._rt
        if rt.phase != "idle":
            raise RuntimeError(
                "this flow was already started (it is already running, or has run): a flow runs "
                "once. Build a new one with create()."
            )
        if registry is None:
            logger.info(
                "flow started without a ModelRegistry: messages are not validated "
                "(pass registry=ModelRegistry.from_annotations(flow) to validate them)"
            )
        else:
            missing = [
                n.name
                for n in rt.graph.nodes
                if n.policy.validate != "none" and n.name not in registry
            ]
            if missing:
                raise RegistryError(missing)
        for runner in self._runners.values():
            entry = None if registry is None else registry.entry(runner.name)
            if entry is None:
                runner.configure()
                continue
            mode = runner.policy.validate
            attempts = runner.attempts
            if mode in ("both", "in"):
                attempts.in_adapter = entry.in_adapter
            if mode in ("both", "out"):
                attempts.out_adapter = entry.out_adapter
                attempts.out_is_message = entry.out_is_message
            runner.configure(entry.in_model, entry.out_model)
        rt.registry = registry  # call_node validates with it; memo mode rebuilds typed payloads
        rt.phase = "running"
        self._stop_requested = anyio.Event()
        self._stopped = anyio.Event()

    def run(self, registry: ModelRegistry | None = None) -> None:
        """Start the workers in the background (needs a running event loop).

        Prefer ``async with flow.running(...)``; with ``run()`` you must ``await flow.stop()``.
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "flow.run() needs a running event loop: call it from async code, "
                "or use `async with flow.running():`"
            ) from None
        self._prepare(registry)
        self._serving = loop.create_task(self._serve(), name="penguiflow:flow")

    @asynccontextmanager
    async def running(self, registry: ModelRegistry | None = None) -> AsyncGenerator[Self]:
        """Run the flow for the duration of the block; stop it (awaiting every task) on exit."""
        self._prepare(registry)
        async with _unwrapped(), anyio.create_task_group() as tg:
            await tg.start(self._serve)
            try:
                yield self
            finally:
                with CancelScope(shield=True):
                    await self.stop()

    async def _serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        assert self._stop_requested is not None and self._stopped is not None
        rt = self._rt
        try:
            async with _unwrapped(), anyio.create_task_group() as tg:
                rt.task_group = tg
                if rt.dispatcher.buffered_sinks:
                    tg.start_soon(rt.dispatcher.run, name="penguiflow:listeners")
                if rt.recorder is not None and not rt.recorder.sync:
                    tg.start_soon(rt.recorder.drain, name="penguiflow:journal")
                for runner in self._runners.values():
                    runner.grow()
                task_status.started()
                await self._stop_requested.wait()
                rt.phase = "stopped"  # no new work while the workers unwind
                tg.cancel_scope.cancel()
        finally:
            rt.task_group = None
            rt.finish()
            with anyio.move_on_after(self.flush_timeout_s, shield=True):
                if rt.recorder is not None:
                    await rt.recorder.flush()
                await rt.dispatcher.flush()
            self._stopped.set()

    async def stop(self) -> None:
        """Stop the flow: cancel every task it started and wait for them. Idempotent.

        Blocked emitters and waiting fetchers get ``FlowStopped``. When a node raised a
        ``BaseException`` that ended the flow, ``stop()`` re-raises it.
        """
        rt = self._rt
        if rt.phase == "idle":
            rt.finish()  # fetchers waiting on a flow that never ran are answered too
            return
        if self._stop_requested is None or self._stopped is None:
            return
        self._stop_requested.set()
        await self._stopped.wait()
        if self._serving is not None:
            await self._serving

    def _require_running(self, what: str) -> None:
        phase = self._rt.phase
        if phase != "running":
            state = "has stopped" if phase == "stopped" else "is not running yet"
            raise RuntimeError(
                f"cannot {what}: the flow {state}; start it with flow.run() or "
                "`async with flow.running():` first"
            )


@asynccontextmanager
async def _unwrapped() -> AsyncGenerator[None]:
    """Let the one exception of a task group the flow owns out as itself, not as a group.

    The groups are the flow's, not the caller's: a body's exception, or a ``BaseException`` a
    node raised, reaches the caller unchanged.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) != 1:
            raise
        single = group.exceptions[0]
    else:
        return
    raise single from single.__cause__  # keeps an explicit cause; hides the group as context
