"""Transports: a session's updates out to a peer, the peer's steering back into the session.

A :class:`Transport` is whatever carries one peer's traffic (a WebSocket, a pipe, a test
double). ``async with session.connect(transport):`` runs two pumps in a task group: the
subscription's updates go to ``transport.send`` in order, and every event ``transport.receive``
returns goes to ``session.steer`` as the user's. The connection ends when the peer is gone
(``receive()`` returned None, or the transport raised), when the session closes, or when the
block ends; either way both pumps are cancelled and awaited, and the transport is closed. A
cursor that cannot be replayed raises ``UnknownCursor`` on entry, leaving the transport open.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import anyio
from anyio.abc import TaskGroup

from ._errors import SubscriberLagged
from ._group_exit import exit_task_group
from ._steering import SteeringEvent, SteeringReceipt
from ._updates import StateUpdate

if TYPE_CHECKING:
    from ._broker import Subscription

__all__ = ["Connection", "ReceiptCallback", "Transport", "check_transport", "open_connection"]

_log = logging.getLogger("penguiflow.sessions")

ReceiptCallback = Callable[[SteeringReceipt], Awaitable[None]]
"""Called with the receipt of each event a peer sent (a WebSocket sends it back)."""


@runtime_checkable
class Transport(Protocol):
    """One peer's two-way channel: updates out, steering events in."""

    async def send(self, update: StateUpdate, /) -> None:
        """Deliver one update to the peer (in the order given)."""
        ...

    async def receive(self) -> SteeringEvent | None:
        """The peer's next steering event; None once the peer is gone."""
        ...

    async def aclose(self) -> None:
        """Release the channel; called once when the connection ends."""
        ...


class Connection:
    """A running ``session.connect(...)``: wait for the peer to go, or read its counters."""

    def __init__(self) -> None:
        self._closed = anyio.Event()
        self._sent = 0
        self._received = 0
        self._error: BaseException | None = None

    @property
    def closed(self) -> bool:
        """Whether the connection ended (peer gone, session closed, or transport failed)."""
        return self._closed.is_set()

    @property
    def sent(self) -> int:
        """Updates handed to ``transport.send`` so far."""
        return self._sent

    @property
    def received(self) -> int:
        """Steering events taken from ``transport.receive`` so far."""
        return self._received

    @property
    def error(self) -> BaseException | None:
        """What ended the connection if the transport (or the subscription) raised."""
        return self._error

    async def wait_closed(self) -> None:
        """Return once the connection ended."""
        await self._closed.wait()


class _Steer(Protocol):
    async def __call__(self, event: SteeringEvent, /) -> SteeringReceipt: ...


@asynccontextmanager
async def open_connection(
    subscription: Subscription,
    transport: Transport,
    steer: _Steer,
    on_receipt: ReceiptCallback | None,
) -> AsyncGenerator[Connection]:
    """Pump ``subscription`` into ``transport`` and its events into ``steer`` (see module)."""
    connection = Connection()
    async with subscription:  # an UnknownCursor leaves the transport to its owner
        outer = anyio.create_task_group()
        await outer.__aenter__()
        try:
            try:
                outer.start_soon(_pumps, subscription, transport, steer, on_receipt, connection)
                yield connection
            finally:
                outer.cancel_scope.cancel()
        except BaseException as exc:  # the caller's own error comes out as is, not grouped
            if not await exit_task_group(outer, type(exc), exc, exc.__traceback__):
                raise
        else:
            await exit_task_group(outer, None, None, None)
        finally:
            connection._closed.set()  # pyright: ignore[reportPrivateUsage]
            with anyio.CancelScope(shield=True):
                await transport.aclose()


async def _pumps(
    subscription: Subscription,
    transport: Transport,
    steer: _Steer,
    on_receipt: ReceiptCallback | None,
    connection: Connection,
) -> None:
    # Their own group: a pump ending cancels the other, never the caller's block.
    async with anyio.create_task_group() as tg:
        tg.start_soon(_pump_out, subscription, transport, connection, tg)
        tg.start_soon(_pump_in, transport, steer, on_receipt, connection, tg)


def _end(connection: Connection, tg: TaskGroup, error: BaseException | None) -> None:
    if error is not None and connection._error is None:  # pyright: ignore[reportPrivateUsage]
        connection._error = error  # pyright: ignore[reportPrivateUsage]
    connection._closed.set()  # pyright: ignore[reportPrivateUsage]
    tg.cancel_scope.cancel()


async def _pump_out(
    subscription: Subscription, transport: Transport, connection: Connection, tg: TaskGroup
) -> None:
    error: BaseException | None = None
    try:
        async for update in subscription:
            await transport.send(update)
            connection._sent += 1  # pyright: ignore[reportPrivateUsage]
    except SubscriberLagged as exc:
        error = exc
    except Exception as exc:  # the peer is gone: the transport says so by raising
        _log.info("transport send failed; ending the connection: %r", exc)
        error = exc
    _end(connection, tg, error)


async def _pump_in(
    transport: Transport,
    steer: _Steer,
    on_receipt: ReceiptCallback | None,
    connection: Connection,
    tg: TaskGroup,
) -> None:
    error: BaseException | None = None
    try:
        while (event := await transport.receive()) is not None:
            connection._received += 1  # pyright: ignore[reportPrivateUsage]
            receipt = await steer(dataclasses.replace(event, source="user"))
            if on_receipt is not None:
                await on_receipt(receipt)
    except Exception as exc:
        _log.info("transport receive failed; ending the connection: %r", exc)
        error = exc
    _end(connection, tg, error)


def check_transport(transport: object) -> Transport:
    """``transport`` if it has ``send``, ``receive`` and ``aclose``; else a clear TypeError."""
    if not isinstance(transport, Transport):
        raise TypeError(
            f"{transport!r} is not a Transport: give it `async def send(update)`, "
            "`async def receive() -> SteeringEvent | None` and `async def aclose()`"
        )
    return transport
