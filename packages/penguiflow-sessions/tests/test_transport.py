"""session.connect(transport): updates out in order, the peer's steering in as the user's."""

import math
from collections.abc import Callable

import anyio
import pytest

from penguiflow.sessions import (
    SessionClosed,
    StateUpdate,
    SteeringEvent,
    SteeringEventType,
    SteeringOutcome,
    SteeringReceipt,
    StreamingSession,
    TaskRuntime,
    TaskStatus,
    Transport,
    UnknownCursor,
    UpdateType,
)


class MemoryTransport:
    """A peer at the other end of two memory streams."""

    def __init__(self) -> None:
        self.sent: list[StateUpdate] = []
        self.got_update = anyio.Event()
        self._send, self._receive = anyio.create_memory_object_stream[SteeringEvent | None](
            math.inf
        )
        self.closed = 0
        self.fail_send = False

    async def send(self, update: StateUpdate) -> None:
        if self.fail_send:
            raise ConnectionResetError("peer reset")
        self.sent.append(update)
        self.got_update.set()
        self.got_update = anyio.Event()

    async def receive(self) -> SteeringEvent | None:
        return await self._receive.receive()

    async def aclose(self) -> None:
        self.closed += 1
        self._send.close()
        self._receive.close()

    def peer_sends(self, event: SteeringEvent | None) -> None:
        self._send.send_nowait(event)

    async def wait_for(self, predicate: Callable[[StateUpdate], bool]) -> None:
        while not any(predicate(u) for u in self.sent):
            await self.got_update.wait()


def content_of(update: StateUpdate) -> dict[str, object]:
    assert isinstance(update.content, dict)
    return dict(update.content)


class Gate:
    def __init__(self) -> None:
        self.release = anyio.Event()

    async def __call__(self, runtime: TaskRuntime) -> str:
        runtime.emit_update(UpdateType.PROGRESS, {"step": 1})
        await self.release.wait()
        return "ok"


async def test_a_transport_double_satisfies_the_protocol() -> None:
    transport = MemoryTransport()
    assert isinstance(transport, Transport)
    await transport.aclose()


async def test_connect_forwards_updates_in_order_then_closes_the_transport() -> None:
    transport = MemoryTransport()
    gate = Gate()
    async with StreamingSession("s1") as session:
        async with session.connect(transport) as connection:
            with anyio.fail_after(5):
                tid = await session.spawn_task(gate)
                gate.release.set()
                await session.wait_task(tid)
                await transport.wait_for(
                    lambda u: (
                        u.update_type is UpdateType.STATUS_CHANGE
                        and u.content == {**content_of(u), "status": "COMPLETE"}
                    )
                )
        assert connection.closed
        assert connection.sent == len(transport.sent)
    assert transport.closed == 1
    assert [u.seq for u in transport.sent] == list(range(1, len(transport.sent) + 1))


async def test_events_from_the_peer_are_steered_as_the_users_with_their_receipts() -> None:
    transport = MemoryTransport()
    gate = Gate()
    receipts: list[SteeringReceipt] = []
    got = anyio.Event()

    async def on_receipt(receipt: SteeringReceipt) -> None:
        receipts.append(receipt)
        got.set()

    async with StreamingSession("s1") as session:
        tid = await session.spawn_task(gate)
        async with session.connect(transport, on_receipt=on_receipt):
            # An agent claiming CANCEL would be parked; from a peer it is the user's own.
            transport.peer_sends(
                SteeringEvent(
                    session_id="s1",
                    task_id=tid,
                    event_type=SteeringEventType.CANCEL,
                    source="agent",
                )
            )
            with anyio.fail_after(5):
                await got.wait()
                state = await session.wait_task(tid)
        assert receipts[0].outcome is SteeringOutcome.APPLIED
        assert state.status is TaskStatus.CANCELLED


async def test_connection_ends_when_the_peer_is_gone_without_ending_the_block() -> None:
    transport = MemoryTransport()
    async with StreamingSession("s1") as session:
        async with session.connect(transport) as connection:
            transport.peer_sends(None)
            with anyio.fail_after(5):
                await connection.wait_closed()
            assert connection.error is None
            # the block goes on: the caller decides when to leave
            assert session.statistics().subscribers == 1
        assert session.statistics().subscribers == 0
    assert transport.closed == 1


async def test_a_failing_send_ends_the_connection_and_records_why() -> None:
    transport = MemoryTransport()
    transport.fail_send = True
    async with StreamingSession("s1") as session:
        async with session.connect(transport) as connection:
            await session.spawn_task(Gate(), task_id="t1")
            with anyio.fail_after(5):
                await connection.wait_closed()
        assert isinstance(connection.error, ConnectionResetError)
        await session.cancel_task("t1")


async def test_connection_ends_when_the_session_closes() -> None:
    transport = MemoryTransport()
    async with StreamingSession("s1") as session:
        async with session.connect(transport) as connection:
            await session.aclose()
            with anyio.fail_after(5):
                await connection.wait_closed()


async def test_connect_replays_from_since_id_and_refuses_an_unknown_cursor() -> None:
    async def three(runtime: TaskRuntime) -> None:
        for i in range(3):
            runtime.emit_update(UpdateType.PROGRESS, {"i": i})

    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            await session.run_task(three)
        head = session.statistics().last_update_id
        assert head is not None
        transport = MemoryTransport()
        async with session.connect(transport, since_id="2"):
            with anyio.fail_after(5):
                await transport.wait_for(lambda u: u.update_id == head)
        assert transport.sent[0].seq == 3
        unused = MemoryTransport()
        with pytest.raises(UnknownCursor):
            async with session.connect(unused, since_id="999"):
                pass
        await unused.aclose()


async def test_connect_refuses_a_non_transport_and_a_closed_session() -> None:
    session = StreamingSession("s1")
    with pytest.raises(TypeError, match="not a Transport"):
        session.connect(object())  # type: ignore[arg-type]
    transport = MemoryTransport()
    with pytest.raises(SessionClosed):
        session.connect(transport)
    await transport.aclose()


async def test_an_error_in_the_connect_block_is_raised_as_is_and_the_transport_closed() -> None:
    transport = MemoryTransport()
    async with StreamingSession("s1") as session:
        with pytest.raises(LookupError, match="boom"):
            async with session.connect(transport):
                raise LookupError("boom")
        assert session.statistics().subscribers == 0
    assert transport.closed == 1
