"""Running a subflow: build a child flow for one message, run it, stop it, return its answer.

``ctx.call_playbook`` (inside a node) and ``call_playbook`` (anywhere) both run the child here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from ._errors import FlowError, FlowErrorCode
from ._events import EventHook, Middleware
from ._registry import ModelRegistry
from ._types import Message

if TYPE_CHECKING:
    from ._flow import PenguiFlow

__all__ = ["PlaybookFactory", "run_playbook"]

PlaybookFactory = Callable[[], "PenguiFlow | tuple[PenguiFlow, ModelRegistry | None]"]
"""Builds a fresh child flow (optionally with its registry) for each call."""


async def run_playbook(
    factory: PlaybookFactory,
    parent_msg: Message,
    *,
    timeout: float | None,
    hooks: Sequence[EventHook],
    middlewares: Sequence[Middleware],
) -> tuple[Any, dict[str, Any]]:
    """Run the child flow; returns its result payload and final ``meta``."""
    built = factory()
    flow, registry = built if isinstance(built, tuple) else (built, None)
    for hook in hooks:
        flow.add_event_hook(hook)
    for middleware in middlewares:
        flow.add_middleware(middleware)
    result: Any = None
    async with flow.running(registry=registry):
        with anyio.move_on_after(timeout) as scope:
            await flow.emit(parent_msg)
            result = await flow.fetch(trace_id=parent_msg.trace_id)
    if scope.cancelled_caught:
        cause = TimeoutError(f"the playbook did not finish within {timeout}s")
        error = FlowError(
            trace_id=parent_msg.trace_id,
            node_name=None,
            code=FlowErrorCode.NODE_TIMEOUT,
            message=f"the playbook did not finish within {timeout}s; the child flow was stopped",
            original_exc=cause,
            metadata={"timeout_s": timeout},
        )
        raise error from cause
    if isinstance(result, FlowError):
        raise result
    if isinstance(result, Message):
        return result.payload, result.meta
    return result, {}
