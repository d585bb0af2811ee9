"""Controller loop: a node that loops on its working memory until it answers or runs out of hops.

Run it with ``uv run python examples/controller_multihop/main.py``.
"""

from __future__ import annotations

import asyncio

from penguiflow.core import (
    WM,
    BudgetExhausted,
    Context,
    FinalAnswer,
    Headers,
    Message,
    Node,
    create,
)

KNOWLEDGE = [
    "emperor penguins breed in winter",
    "males incubate the egg on their feet",
    "colonies huddle to save heat",
]


async def controller(msg: Message, ctx: Context) -> Message:
    """One hop: learn one more fact; answer once three are known, else loop with updated WM."""
    wm: WM = msg.payload
    print(f"  hop {wm.hops}: {len(wm.facts)} fact(s) known")
    if len(wm.facts) >= len(KNOWLEDGE):
        answer = FinalAnswer(text="; ".join(map(str, wm.facts)), citations=["penguin-wiki"])
        return msg.with_payload(answer)  # a FinalAnswer ends the loop and goes to the Rookery
    fact = KNOWLEDGE[len(wm.facts)]
    # Returning WM sends the message round the self-edge; the runtime counts the hop and checks
    # the hop budget, the token budget and the deadline before the next one.
    return msg.with_payload(
        wm.model_copy(update={"facts": [*wm.facts, fact], "tokens_used": wm.tokens_used + 10})
    )


async def run(budget_hops: int) -> FinalAnswer:
    node = Node(controller, allow_cycle=True)
    flow = create(node.to(node))  # the self-edge makes it a controller loop
    async with flow.running():
        wm = WM(query="how do emperor penguins survive winter?", budget_hops=budget_hops)
        msg = Message(payload=wm, headers=Headers(tenant="demo"))
        await flow.emit(msg)
        result: Message = await flow.fetch(trace_id=msg.trace_id)
    return result.payload


async def main() -> None:
    print("run 1: budget_hops=8")
    answer = await run(budget_hops=8)
    print(f"FinalAnswer: {answer.text} {answer.citations}")

    print("run 2: budget_hops=2")
    outcome = await run(budget_hops=2)
    assert isinstance(outcome, BudgetExhausted)  # a typed outcome, not a string to parse
    print(f"BudgetExhausted: code={outcome.code} text={outcome.text!r} hops={outcome.hops}")
    print(f"  facts gathered before the budget ran out: {outcome.facts}")
    print("controller_multihop done")


if __name__ == "__main__":
    asyncio.run(main())
