"""Subflows: ``call_playbook`` builds, runs and stops a child flow for one message."""

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

__all__ = ["PlaybookFactory", "call_playbook", "run_playbook"]

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
    ``TraceCancelled`` at once. A ``FlowError`` returned by the child is raised; ``timeout`` bounds
    the whole call and raises a ``FlowError`` with code ``NODE_TIMEOUT``. ``parent_msg`` is never
    changed: inside a node, ``ctx.call_playbook`` carries the child's final ``meta`` on with the
    node's result.

    Args:
        factory: Returns the child flow, or ``(flow, registry)``.
        parent_msg: The message to run; its trace id is kept in the child.
        timeout: Seconds for the whole subflow (None = unbounded).
        runtime: The parent flow (``ctx.call_playbook`` passes it); observability is inherited
            from it.
        inherit_observability: Copy the parent's event hooks and middlewares onto the child.
    """
    hooks: Sequence[EventHook] = ()
    middlewares: Sequence[Middleware] = ()
    if runtime is not None:
        from ._flow import runtime_of

        runtime_of(runtime).check_open(parent_msg.trace_id)
        if inherit_observability:
            hooks, middlewares = runtime.event_hooks, runtime.middlewares
    payload, _ = await run_playbook(
        factory, parent_msg, timeout=timeout, hooks=hooks, middlewares=middlewares
    )
    return payload


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
