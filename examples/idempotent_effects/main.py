"""Idempotent effects: a charge in ``idempotent()`` survives a resume without charging twice.

Run it with ``uv run python examples/idempotent_effects/main.py``.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections import Counter
from pathlib import Path

from pydantic import BaseModel

from penguiflow.core import (
    Context,
    Headers,
    Journal,
    Message,
    Node,
    PenguiFlow,
    SQLiteDurableStore,
    create,
    current_step_id,
    idempotent,
)


class Order(BaseModel):
    id: str
    amount_cents: int
    receipt: str | None = None


class Receipt(BaseModel):
    id: str
    amount_cents: int


class PaymentGateway:
    """A stand-in for the payment provider: every call is a real charge."""

    def __init__(self) -> None:
        self.charges: list[tuple[str, int]] = []

    async def charge(self, order: Order, idempotency_key: str) -> Receipt:
        # A real provider gets `idempotency_key` too, for the gap between charging and recording.
        self.charges.append((order.id, order.amount_cents))
        return Receipt(id=f"rcpt-{len(self.charges):04d}", amount_cents=order.amount_cents)


GATEWAY = PaymentGateway()
RUNS: Counter[str] = Counter()
"""How many times the charge step ran, per order."""
NOTIFIED = asyncio.Event()
"""The confirmation email waits for it: closed in the first flow, which is stopped there."""
CHARGED = asyncio.Semaphore(0)


async def charge(msg: Message, ctx: Context) -> Message:
    order = Order.model_validate(msg.payload)  # on a resume, recorded messages are JSON
    RUNS[order.id] += 1
    # Step ids are stable across re-runs but repeat from trace to trace (the ingress is step
    # "0" in every trace), so the key names the trace too.
    key = f"charge:{msg.trace_id}:{current_step_id()}"
    receipt = await idempotent(
        key, lambda: GATEWAY.charge(order, idempotency_key=key), result_type=Receipt
    )
    print(f"  charge step of {order.id}, run {RUNS[order.id]}: receipt {receipt.id}")
    CHARGED.release()
    await NOTIFIED.wait()  # "send the confirmation email": the first flow is stopped here
    return msg.with_payload(order.model_copy(update={"receipt": receipt.id}))


async def ship(msg: Message, ctx: Context) -> Message:
    order = Order.model_validate(msg.payload)
    return msg.with_payload(f"{order.id} shipped, paid with {order.receipt}")


def build(journal: Journal) -> PenguiFlow:
    a, b = Node(charge), Node(ship)
    return create(a.to(b), b.to(), journal=journal)


async def main() -> None:
    orders = [
        Message(
            payload=Order(id=f"order-{n}", amount_cents=n * 600), headers=Headers(tenant="shop")
        )
        for n in (7, 8)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "journal.db"
        print("first flow: both cards are charged, then the flow stops inside the charge step")
        async with SQLiteDurableStore.open(path) as store:
            async with build(Journal(store)).running() as flow:
                for order in orders:
                    await flow.emit(order)
                for _ in orders:
                    await CHARGED.acquire()
        print(f"charges after the stop: {len(GATEWAY.charges)}")

        print("resume both in a new flow on the same file: the charge step runs again")
        NOTIFIED.set()
        async with SQLiteDurableStore.open(path) as store:
            journal = Journal(store)
            async with build(journal).running() as flow:
                for order in orders:
                    await journal.resume(flow, order.trace_id)
                for order in orders:
                    print(f"result: {(await flow.fetch(trace_id=order.trace_id)).payload}")
        print(f"charge step runs per order: {dict(RUNS)}")
        print(f"gateway charges: {len(GATEWAY.charges)} {GATEWAY.charges}")
        charged_once = len(GATEWAY.charges) == len(orders) == len(set(GATEWAY.charges))
        print(f"each order charged exactly once: {charged_once}")
    print("idempotent_effects done")


if __name__ == "__main__":
    asyncio.run(main())
