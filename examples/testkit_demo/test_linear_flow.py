"""A linear flow (clean -> summarize -> sign) and its tests.

The flow at the top stands for application code; the tests below it are the point of the demo.
"""

from penguiflow.core import Context, Headers, Message, ModelRegistry, Node, PenguiFlow, create
from penguiflow.testkit import FlowKitFactory, FlowTestKit, assert_node_sequence, run_one

# --------------------------------------------------------------- the flow under test


async def clean(msg: Message, ctx: Context) -> Message:
    return msg.with_payload(" ".join(str(msg.payload).split()))


async def summarize(msg: Message, ctx: Context) -> Message:
    words = str(msg.payload).split()
    return msg.with_payload(" ".join(words[:3])).with_meta(words=len(words))


async def sign(msg: Message, ctx: Context) -> Message:
    return msg.with_payload(f"{msg.payload} -- the bot")


def build_flow() -> PenguiFlow:
    """A fresh flow per test: a flow runs once."""
    clean_node, summarize_node, sign_node = Node(clean), Node(summarize), Node(sign)
    return create(clean_node.to(summarize_node), summarize_node.to(sign_node), sign_node.to())


def ticket(text: str) -> Message:
    return Message(payload=text, headers=Headers(tenant="acme"))


# ------------------------------------------------------------------------ the tests


async def test_a_ticket_is_cleaned_summarized_and_signed() -> None:
    msg = ticket("  my   printer is on   fire  ")
    result = await run_one(build_flow(), msg)
    assert result.payload == "my printer is -- the bot"
    assert result.meta == {"words": 5}


async def test_every_ticket_goes_through_the_three_steps_in_order() -> None:
    flow = build_flow()
    msg = ticket("hello")
    await run_one(flow, msg)
    assert_node_sequence(flow, msg.trace_id, ["clean", "summarize", "sign"])


async def test_the_flow_validates_with_a_registry_built_from_annotations() -> None:
    flow = build_flow()
    kit = FlowTestKit(flow, registry=ModelRegistry.from_annotations(flow))
    assert (await kit.run_one(ticket("a b c d"))).payload == "a b c -- the bot"


async def test_many_tickets_through_one_running_flow(flow_kit: FlowKitFactory) -> None:
    async with flow_kit(build_flow()) as kit:
        for text in ["one", "two", "three"]:
            assert (await kit.run_one(ticket(text))).payload == f"{text} -- the bot"
