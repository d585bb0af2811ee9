"""A branching flow: a router sends questions to `answer` and everything else to `log`."""

from penguiflow.core import Context, Headers, Message, Node, PenguiFlow, create, predicate_router
from penguiflow.testkit import FlowTestKit

# --------------------------------------------------------------- the flow under test


async def answer(msg: Message, ctx: Context) -> Message:
    return msg.with_payload(f"Good question: {msg.payload}")


async def log(msg: Message, ctx: Context) -> Message:
    return msg.with_payload("noted")


def route(msg: Message) -> str:
    return "answer" if str(msg.payload).rstrip().endswith("?") else "log"


def build_flow() -> PenguiFlow:
    answer_node, log_node = Node(answer), Node(log)
    router = predicate_router("triage", route)
    return create(router.to(answer_node, log_node), answer_node.to(), log_node.to())


def say(text: str) -> Message:
    return Message(payload=text, headers=Headers(tenant="acme"))


# ------------------------------------------------------------------------ the tests


async def test_questions_are_answered_and_statements_are_logged() -> None:
    question, statement = say("is it on?"), say("it is on.")
    async with FlowTestKit(build_flow()) as kit:
        assert (await kit.run_one(question)).payload == "Good question: is it on?"
        assert (await kit.run_one(statement)).payload == "noted"
    kit.assert_node_sequence(question.trace_id, ["triage", "answer"])
    kit.assert_node_sequence(statement.trace_id, ["triage", "log"])
