"""Cheap wake-ups: a lazy one-shot :class:`Flag` and a re-armable :class:`Wakeup`.

A session keeps a few flags per task (``done``, the pause) and per session (``closed``); most
are set without anyone ever waiting, and an idle ``anyio.Event`` costs about 0.4 KiB, so a
:class:`Flag` makes its event only when someone waits (same semantics as ``anyio.Event``:
``wait()`` on a set flag is still a checkpoint). A subscription waits once per update it
delivers; its :class:`Wakeup` avoids a new ``anyio.Event`` per wait.
"""

from __future__ import annotations

import asyncio

import anyio
import anyio.lowlevel

__all__ = ["Flag", "Wakeup"]


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


class Wakeup:
    """A re-armable wake-up for one waiter: ``wait()`` returns after the next ``set()``.

    A ``set()`` with no one waiting is dropped (the waiter re-checks its condition before
    waiting). On asyncio the waiter parks on a bare loop future, a third of the cost of a fresh
    ``anyio.Event`` per wake (one wake per delivered update on a subscription that keeps up);
    elsewhere it uses an ``anyio.Event``. Either way the wait is a cancellation point.
    """

    __slots__ = ("_waiter",)

    def __init__(self) -> None:
        self._waiter: asyncio.Future[None] | anyio.Event | None = None

    def set(self) -> None:
        """Wake the waiter, if one waits."""
        waiter = self._waiter
        if waiter is None:
            return
        self._waiter = None
        if isinstance(waiter, anyio.Event):
            waiter.set()
        elif not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> None:
        """Wait for the next :meth:`set`."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not asyncio (trio): the portable way
            event = self._waiter = anyio.Event()
            await event.wait()
            return
        future = self._waiter = loop.create_future()
        try:
            await future
        finally:
            if self._waiter is future:
                self._waiter = None
