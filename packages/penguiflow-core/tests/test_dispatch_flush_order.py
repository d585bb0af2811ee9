"""Events reach the state store in the order they happened, even when flushes overlap."""

import asyncio
from collections.abc import Sequence
from typing import Any

import anyio

from penguiflow.core import Headers, InMemoryStateStore, Message, Node, StoredEvent, create


class _SlowFirstSave(InMemoryStateStore):
    """A store with concurrent writers: the first save is slow, later ones are fast."""

    def __init__(self) -> None:
        super().__init__()
        self.saves = 0

    async def save_event(self, event: StoredEvent) -> None:
        self.saves += 1
        await asyncio.sleep(0.05 if self.saves == 1 else 0)
        await super().save_event(event)


async def test_load_history_during_a_slow_delivery_keeps_the_event_order() -> None:
    async def shout(message: Message, _ctx: Any) -> Message:
        return message.with_payload(str(message.payload).upper())

    store = _SlowFirstSave()
    flow = create(Node(shout, name="shout").to(), state_store=store)
    message = Message(payload="hi", headers=Headers(tenant="acme"))
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(message)
            await flow.fetch(trace_id=message.trace_id)
            # The drain is inside the slow first save; this flush must wait for it.
            events: Sequence[StoredEvent] = await flow.load_history(message.trace_id)
            while "node_success" not in [e.kind for e in events]:
                await anyio.sleep(0.001)  # pragma: no cover - flushed above
                events = await flow.load_history(message.trace_id)  # pragma: no cover
    kinds = [e.kind for e in events]
    assert kinds.index("emit") < kinds.index("node_start") < kinds.index("node_success")
