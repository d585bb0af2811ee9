"""Leaving a task group that an ``async with`` owns, with the block's own error kept as is.

``StreamingSession``, ``SessionManager`` and ``connect`` each run their work in a task group
that spans the caller's block. Once the owner has stopped that work, an ``Exception`` raised in
the caller's block must come out as itself, not wrapped in an ``ExceptionGroup`` by the group's
exit; a cancellation (or another ``BaseException``) goes through the group as usual.
"""

from __future__ import annotations

from types import TracebackType

from anyio.abc import TaskGroup

__all__ = ["exit_task_group"]


async def exit_task_group(
    tg: TaskGroup,
    exc_type: type[BaseException] | None,
    exc: BaseException | None,
    tb: TracebackType | None,
) -> bool | None:
    """``tg.__aexit__`` for an owner whose block ended with ``exc`` (its work stopped already).

    Returns what ``__aexit__`` should: None for an ``Exception`` of the block, which then
    propagates unwrapped (an error of the group's own tasks still comes out of the group,
    with the block's error as its context), else the group's own verdict.
    """
    if isinstance(exc, Exception):
        await tg.__aexit__(None, None, None)
        return None
    return await tg.__aexit__(exc_type, exc, tb)
