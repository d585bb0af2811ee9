"""The point of the testkit: a linear and a branching flow, each tested in fewer than 10 lines.

The node functions below stand for application code; each test body is the whole test.
"""

from penguiflow.core import Context, Headers, Message, Node, create, predicate_router
from penguiflow.testkit import FlowTestKit, assert_node_sequence, run_one


async def parse(msg: Message, ctx: Context) -> Message:
    return msg.with_payload(str(msg.payload).strip())


async def shout(msg: Message, ctx: Context) -> Message:
    return msg.with_payload(str(msg.payload).upper())


async def answer(msg: Message, ctx: Context) -> Message:
    return msg.with_payload("because")


async def echo(msg: Message, ctx: Context) -> Message:
    return msg


def ask(text: str) -> Message:
    return Message(payload=text, headers=Headers(tenant="demo"))


async def test_linear_flow_returns_the_result_and_visits_each_node_once() -> None:
    parse_node, shout_node = Node(parse), Node(shout)
    flow = create(parse_node.to(shout_node), shout_node.to())
    msg = ask("  hello ")
    assert (await run_one(flow, msg)).payload == "HELLO"
    assert_node_sequence(flow, msg.trace_id, ["parse", "shout"])


async def test_branching_flow_sends_each_message_down_the_branch_its_router_picks() -> None:
    answerer, echoer = Node(answer), Node(echo)
    route = predicate_router("route", lambda m: "answer" if m.payload.endswith("?") else "echo")
    question, statement = ask("why?"), ask("hello")
    async with FlowTestKit(create(route.to(answerer, echoer), answerer.to(), echoer.to())) as kit:
        assert (await kit.run_one(question)).payload == "because"
        assert (await kit.run_one(statement)).payload == "hello"
    kit.assert_node_sequence(question.trace_id, ["route", "answer"])
    kit.assert_node_sequence(statement.trace_id, ["route", "echo"])
