"""Subflows: ``call_playbook`` builds, runs and stops a child flow for one message."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio

from ._errors import FlowError, TraceCancelled
from ._registry import ModelRegistry
from ._types import Message

if TYPE_CHECKING:
    from ._flow import PenguiFlow

__all__ = ["PlaybookFactory", "call_playbook"]

PlaybookFactory = Callable[[], "PenguiFlow | tuple[PenguiFlow, ModelRegistry | None]"]
"""Builds a fresh child flow (optionally with its registry) for each call."""


async def call_playbook(
    factory: PlaybookFactory,
    parent_msg: Message,
    *,
    timeout: float | None = None,
    runtime: PenguiFlow | None = None,
    inherit_observability: bool = True,
) -> Any:
    """Run a child flow on ``parent_msg`` and return the payload of its first result.

    The child runs inside the caller's trace: cancelling the parent trace cancels the child (it is
    stopped, every task awaited), and a parent trace that is already cancelled raises
    ``TraceCancelled`` at once. The child's final ``meta`` is merged into ``parent_msg.meta`` (last
    write wins). A ``FlowError`` returned by the child is raised; ``timeout`` bounds the whole call
    (``TimeoutError``).

    Args:
        factory: Returns the child flow, or ``(flow, registry)``.
        parent_msg: The message to run; its trace id is kept in the child.
        timeout: Seconds for the whole subflow (None = unbounded).
        runtime: The parent flow (``ctx.call_playbook`` passes it); observability is inherited
            from it.
        inherit_observability: Copy the parent's event hooks and middlewares onto the child.
    """
    if runtime is not None:
        state = runtime.traces.get(parent_msg.trace_id)
        if state is not None and state.cancelled:
            raise TraceCancelled(parent_msg.trace_id)
    built = factory()
    flow, registry = built if isinstance(built, tuple) else (built, None)
    if runtime is not None and inherit_observability:
        for hook in runtime.event_hooks:
            flow.add_event_hook(hook)
        for middleware in runtime.middlewares:
            flow.add_middleware(middleware)
    async with flow.running(registry=registry):
        with anyio.fail_after(timeout):
            await flow.emit(parent_msg)
            result = await flow.fetch(trace_id=parent_msg.trace_id)
    if isinstance(result, FlowError):
        raise result
    if isinstance(result, Message):
        parent_msg.meta.update(result.meta)
        return result.payload
    return result
