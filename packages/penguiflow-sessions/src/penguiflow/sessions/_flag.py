"""A one-shot flag that makes its ``anyio.Event`` only when someone waits for it.

A session keeps a few of these per task (``done``, the pause) and per session (``closed``);
most are set without anyone ever waiting, and an idle ``anyio.Event`` costs about 0.4 KiB.
Same semantics as ``anyio.Event``: ``wait()`` on a set flag is still a checkpoint.
"""

from __future__ import annotations

import anyio
import anyio.lowlevel

__all__ = ["Flag"]


class Flag:
    """``set()``, ``is_set()``, ``await wait()``, like ``anyio.Event``, allocated lazily."""

    __slots__ = ("_event", "_set")

    def __init__(self, *, is_set: bool = False) -> None:
        self._set = is_set
        self._event: anyio.Event | None = None

    def set(self) -> None:
        """Set the flag and wake every waiter."""
        self._set = True
        if self._event is not None:
            self._event.set()
            self._event = None

    def is_set(self) -> bool:
        """Whether :meth:`set` was called."""
        return self._set

    async def wait(self) -> None:
        """Return once the flag is set (a checkpoint even if it already is)."""
        if self._set:
            await anyio.lowlevel.checkpoint()
            return
        if self._event is None:
            self._event = anyio.Event()
        await self._event.wait()
