"""Subflows: ``call_playbook`` builds, runs and stops a child flow for one message."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._events import EventHook, Middleware
from ._flow import PenguiFlow, runtime_of
from ._subflow import PlaybookFactory, run_playbook
from ._types import Message

__all__ = ["call_playbook"]


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
        runtime_of(runtime).check_open(parent_msg.trace_id)
        if inherit_observability:
            hooks, middlewares = runtime.event_hooks, runtime.middlewares
    payload, _ = await run_playbook(
        factory, parent_msg, timeout=timeout, hooks=hooks, middlewares=middlewares
    )
    return payload
