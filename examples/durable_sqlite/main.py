"""Durable SQLite: journal a flow to a file, replay a trace, resume a stopped one, erase a tenant.

Run it with ``uv run python examples/durable_sqlite/main.py``.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

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
)


class Ticket(BaseModel):
    """A support ticket: a few fields the nodes set, and a long history they never touch."""

    id: str
    history: list[str]
    category: str | None = None
    priority: int | None = None
    reply: str | None = None


RUNS: Counter[str] = Counter()
"""How many times each node ran for T-2, across both flows."""
GATE = asyncio.Event()
"""``reply`` waits for it: closed in the first flow (which is stopped there), open later."""
STARTED = asyncio.Event()


async def classify(msg: Message, ctx: Context) -> Message:
    RUNS["classify"] += 1
    ticket = Ticket.model_validate(msg.payload)  # resumed: recorded JSON
    category = "billing" if "invoice" in ticket.history[-1] else "general"
    return msg.with_payload(ticket.model_copy(update={"category": category}))


async def prioritise(msg: Message, ctx: Context) -> Message:
    RUNS["prioritise"] += 1
    ticket = Ticket.model_validate(msg.payload)  # resumed: recorded JSON
    return msg.with_payload(ticket.model_copy(update={"priority": 1 if ticket.category else 3}))


async def reply(msg: Message, ctx: Context) -> Message:
    RUNS["reply"] += 1
    STARTED.set()
    await GATE.wait()  # the first flow is stopped while this node waits here
    ticket = Ticket.model_validate(msg.payload)  # resumed: recorded JSON
    text = f"re {ticket.id}: routed to {ticket.category} (priority {ticket.priority})"
    return msg.with_payload(ticket.model_copy(update={"reply": text}))


def build(journal: Journal) -> PenguiFlow:
    a, b, c = Node(classify), Node(prioritise), Node(reply)
    return create(a.to(b), b.to(c), c.to(), journal=journal)


def ticket_message(ticket_id: str, tenant: str) -> Message:
    history = [
        f"{ticket_id} line {i}: " + "the customer wrote a long message. " * 4 for i in range(30)
    ]
    history.append("please resend the invoice")
    return Message(payload=Ticket(id=ticket_id, history=history), headers=Headers(tenant=tenant))


def fields(payload: Any) -> str:
    return f"category={payload['category']!r} priority={payload['priority']!r}"


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "journal.db"

        # 1. A trace runs to the end; every step is committed before it moves on.
        async with SQLiteDurableStore.open(path) as store:
            journal = Journal(store)
            done = ticket_message("T-1", tenant="acme")
            GATE.set()
            async with build(journal).running() as flow:
                await flow.emit(done)
                result = await flow.fetch(trace_id=done.trace_id)
            print(f"T-1 finished: {result.payload.reply}")
            entries = await store.read(f"pf.journal/{done.trace_id}")
            sizes = [len(entry.value) for entry in entries]
            print(
                f"journal of T-1: {len(entries)} entries; the ingress holds the whole ticket "
                f"({sizes[0]} B), then {sum(sizes[1:]) / len(sizes[1:]):.0f} B per step "
                f"(the fields that changed)"
            )

            steps = await journal.replay(done.trace_id)
            print(f"replay of T-1 ({len(steps)} steps):")
            for step in steps:
                print(f"  #{step.seq} {step.node or 'ingress':<10} {fields(step.message.payload)}")

            # 2. A second trace: the flow is stopped while `reply` waits (a crash, a deploy).
            RUNS.clear()
            GATE.clear()
            STARTED.clear()
            stopped = ticket_message("T-2", tenant="acme")
            async with build(journal).running() as flow:
                await flow.emit(stopped)
                await STARTED.wait()
            print(f"T-2 stopped while reply waits; runs in the first flow: {dict(RUNS)}")

        # 3. A new store on the same file and a new flow: resume T-2.
        before = Counter(RUNS)
        GATE.set()
        async with SQLiteDurableStore.open(path) as store:
            journal = Journal(store)
            async with build(journal).running() as flow:
                await journal.resume(flow, stopped.trace_id)
                result = await flow.fetch(trace_id=stopped.trace_id)
            print(f"T-2 resumed in a new flow: {result.payload.reply}")
            rerun = {
                node: RUNS[node] - before[node] for node in ("classify", "prioritise", "reply")
            }
            print(f"runs during the resume: {rerun}")
            print(f"runs of T-2 in all: {dict(RUNS)} (finished steps were not re-run)")

            # 4. The right to be forgotten: erase everything of tenant acme.
            removed = await store.erase("acme")
            print(f"erase('acme') removed {removed} streams and records")
            for msg in (done, stopped):
                print(f"replay after erase: {len(await journal.replay(msg.trace_id))} steps")
    print("durable_sqlite done")


if __name__ == "__main__":
    asyncio.run(main())
