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
    """A re-armable wake-up: ``wait()`` returns after the next ``set()``.

    A ``set()`` with no one waiting is dropped (a waiter re-checks its condition before
    waiting). On asyncio each waiter parks on a bare loop future, a third of the cost of a fresh
    ``anyio.Event`` per wake (one wake per delivered update on a subscription that keeps up);
    elsewhere waiters share an ``anyio.Event``. Either way the wait is a cancellation point,
    and a cancelled waiter affects no other.
    """

    __slots__ = ("_event", "_futures")

    def __init__(self) -> None:
        self._futures: list[asyncio.Future[None]] = []
        self._event: anyio.Event | None = None

    def set(self) -> None:
        """Wake every waiter."""
        if self._futures:
            for future in self._futures:
                if not future.done():
                    future.set_result(None)
            self._futures.clear()
        if self._event is not None:
            self._event.set()
            self._event = None

    async def wait(self) -> None:
        """Wait for the next :meth:`set`."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not asyncio (trio): the portable way
            if self._event is None:
                self._event = anyio.Event()
            await self._event.wait()
            return
        future: asyncio.Future[None] = loop.create_future()
        self._futures.append(future)
        try:
            await future
        finally:
            if not future.done() or future.cancelled():
                try:
                    self._futures.remove(future)
                except ValueError:
                    pass
