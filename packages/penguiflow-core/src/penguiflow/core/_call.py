"""One-call runs: ``await flow.call(message)`` and ``flow.run_sync(message)``.

Both are ``emit`` followed by a trace-scoped ``fetch``: no second delivery path. A flow that is
not running is started for the call and stopped after it (a flow runs once, so that flow cannot
be started again); a running flow is only used.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import anyio
from anyio import CancelScope

from ._errors import FlowError
from ._node import Node
from ._types import Message

if TYPE_CHECKING:
    from ._flow import PenguiFlow
    from ._registry import ModelRegistry

__all__ = ["call", "run_sync"]

Targets = Node | str | Sequence[Node | str] | None


def _check_timeout(timeout_s: float | None) -> float:
    if timeout_s is None:
        return math.inf
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError(f"timeout_s must be a number of seconds or None, got {timeout_s!r}")
    if not (timeout_s > 0 and math.isfinite(timeout_s)):
        raise ValueError(
            f"timeout_s must be a positive number of seconds (or None: no bound), got {timeout_s!r}"
        )
    return float(timeout_s)


async def call(
    flow: PenguiFlow,
    message: Any,
    *,
    timeout_s: float | None = None,
    to: Targets = None,
    registry: ModelRegistry | None = None,
) -> Any:
    """Emit ``message`` and return the first Rookery item of its trace (see ``PenguiFlow.call``)."""
    bound = _check_timeout(timeout_s)
    if flow.running_now:
        if registry is not None:
            raise ValueError(
                "the flow is already running, so registry= cannot apply; pass the registry "
                "where the flow is started (flow.running(registry=...)) or leave it out"
            )
        return await _emit_and_fetch(flow, message, bound, to)
    async with flow.running(registry=registry):
        return await _emit_and_fetch(flow, message, bound, to)


async def _emit_and_fetch(flow: PenguiFlow, message: Any, bound: float, to: Targets) -> Any:
    if isinstance(message, Message):
        key = message.trace_id
        trace_id = None
    else:  # a bare payload gets a trace of its own, so the fetch below sees only its result
        key = trace_id = uuid.uuid4().hex
    done = False
    try:
        with anyio.move_on_after(bound):
            # No await separates a non-blocking emit from the fetch registering its waiter, so
            # however the trace ends, the fetch is waiting and answered.
            await flow.emit(message, to=to, trace_id=trace_id)
            result = await flow.fetch(trace_id=key)
            done = True
            if isinstance(result, FlowError):  # create(..., emit_errors_to_rookery=True)
                raise result
            return result
        raise TimeoutError(
            f"flow.call: trace {key!r} gave no result within {bound} s (it was cancelled); "
            "raise timeout_s, or find the node that holds it with log_flow_events()"
        )
    finally:
        if not done and flow.running_now:  # timed out or the caller was cancelled: free it
            with CancelScope(shield=True):
                await flow.cancel(key)


def run_sync(
    flow: PenguiFlow,
    message: Any,
    *,
    timeout_s: float | None = None,
    to: Targets = None,
    registry: ModelRegistry | None = None,
) -> Any:
    """Start the flow, run one message through it, stop it (see ``PenguiFlow.run_sync``)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError(
            "flow.run_sync() cannot run inside an event loop; in async code write "
            "`await flow.call(message)`"
        )
    if flow.running_now:
        raise RuntimeError("flow.run_sync() starts the flow, but it is already running")
    return asyncio.run(call(flow, message, timeout_s=timeout_s, to=to, registry=registry))
