"""A planner's background work: spawned in its task group, counted, drained when it closes.

``ReactPlanner`` holds one ``BackgroundWork``. While the planner is open, ``spawn`` starts work
(rolling memory summaries, buffered record writes) in the planner's task group and counts it;
``drain`` waits for it, up to a bound, when the planner closes. Unopened, work runs inline.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import anyio
from anyio.abc import TaskGroup

from ._records import logged

__all__ = ["BackgroundWork"]

logger = logging.getLogger("penguiflow.planner")


class BackgroundWork:
    """The planner's background tasks (see the module docstring)."""

    __slots__ = ("_drained", "_logged_inline", "count", "group")

    def __init__(self) -> None:
        self.group: TaskGroup | None = None
        """The open planner's task group (None while it is not open)."""
        self.count = 0
        """Background tasks started and not yet ended."""
        self._drained: anyio.Event | None = None
        self._logged_inline = False

    async def spawn(self, func: Callable[[], Awaitable[None]], *, what: str) -> None:
        """Start ``func()`` in the task group, or run it inline now when there is none."""
        group = self.group
        if group is None:
            if not self._logged_inline:
                self._logged_inline = True
                logger.info(
                    "planner not opened with `async with`: background work (%s) runs inline at "
                    "the end of the run",
                    what,
                )
            await logged(func, what)
            return
        if self.count == 0:
            self._drained = anyio.Event()
        self.count += 1

        async def tracked() -> None:
            try:
                await logged(func, what)
            finally:
                self.count -= 1
                if self.count == 0 and self._drained is not None:
                    self._drained.set()

        group.start_soon(tracked, name=f"penguiflow.planner:{what}")

    async def drain(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for the running work; warn about what is left (to cancel)."""
        if self.group is None or not self.count:
            return
        drained = self._drained
        with anyio.move_on_after(timeout_s, shield=True):
            if drained is not None:
                await drained.wait()
        if self.count:
            logger.warning(
                "planner closed with %d background task(s) still running after %.1fs: cancelled",
                self.count,
                timeout_s,
            )
