"""Node.invoke: run one node directly, outside a flow, as unit tests of a single node do."""

from __future__ import annotations

import functools
from typing import Any, cast

import pytest
from pydantic import BaseModel, ValidationError

from penguiflow.core import Context, FlowError, Message, ModelRegistry, Node, NodePolicy


class Query(BaseModel):
    text: str


class Answer(BaseModel):
    text: str
    length: int


class StubContext:
    """Stands in for a Context: the node function just receives it."""


def stub() -> Context:
    return cast(Context, StubContext())


def registry_for(name: str, in_model: Any = Query, out_model: Any = Answer) -> ModelRegistry:
    registry = ModelRegistry()
    registry.register(name, in_model, out_model)
    return registry


class Recording:
    """A node function that records what it was given and returns a fixed result."""

    def __init__(self, result: Any) -> None:
        self.result = result
        self.calls: list[tuple[Any, Any]] = []

    async def __call__(self, message: Any, ctx: Context) -> Any:
        self.calls.append((message, ctx))
        return self.result


async def test_invoke_without_registry_calls_the_function_once_and_returns_its_result() -> None:
    func = Recording({"anything": 1})
    ctx = stub()
    message = {"raw": True}
    result = await Node(func, name="n").invoke(message, ctx)
    assert result == {"anything": 1}
    assert len(func.calls) == 1
    assert func.calls[0][0] is message
    assert func.calls[0][1] is ctx


async def test_invoke_with_registry_validates_input_and_output() -> None:
    func = Recording({"text": "hi", "length": "2"})
    node = Node(func, name="n")
    result = await node.invoke({"text": "hi"}, stub(), registry=registry_for("n"))
    assert func.calls[0][0] == Query(text="hi")
    assert result == Answer(text="hi", length=2)


async def test_invoke_invalid_input_raises_validation_error_before_calling() -> None:
    func = Recording(None)
    node = Node(func, name="n", policy=NodePolicy(validate="in"))
    with pytest.raises(ValidationError):
        await node.invoke({}, stub(), registry=registry_for("n"))
    assert func.calls == []


async def test_invoke_invalid_output_raises_validation_error_not_flow_error() -> None:
    node = Node(Recording({"text": "hi"}), name="n", policy=NodePolicy(validate="out"))
    with pytest.raises(ValidationError) as info:
        await node.invoke(Query(text="hi"), stub(), registry=registry_for("n"))
    assert not isinstance(info.value, FlowError)


@pytest.mark.parametrize(
    ("mode", "input_checked", "output_checked"),
    [("both", True, True), ("in", True, False), ("out", False, True), ("none", False, False)],
)
async def test_invoke_validates_only_the_sides_the_policy_names(
    mode: str, input_checked: bool, output_checked: bool
) -> None:
    func = Recording({"text": "hi", "length": 2})
    node = Node(func, name="n", policy=NodePolicy(validate=cast(Any, mode)))
    result = await node.invoke({"text": "hi"}, stub(), registry=registry_for("n"))
    assert func.calls[0][0] == (Query(text="hi") if input_checked else {"text": "hi"})
    assert result == (
        Answer(text="hi", length=2) if output_checked else {"text": "hi", "length": 2}
    )


async def test_invoke_does_not_validate_a_none_result() -> None:
    node = Node(Recording(None), name="n")
    assert await node.invoke({"text": "hi"}, stub(), registry=registry_for("n")) is None


async def test_invoke_of_an_unregistered_node_says_how_to_register() -> None:
    func = Recording(None)
    with pytest.raises(KeyError, match=r"registry\.register\('n'"):
        await Node(func, name="n").invoke({}, stub(), registry=ModelRegistry())
    assert func.calls == []


async def test_invoke_of_a_node_that_does_not_validate_needs_no_registration() -> None:
    node = Node(Recording("done"), name="n", policy=NodePolicy(validate="none"))
    assert await node.invoke("x", stub(), registry=ModelRegistry()) == "done"


async def test_invoke_lets_the_functions_exception_through_without_retrying() -> None:
    calls = 0

    async def broken(message: Any, ctx: Context) -> Any:
        nonlocal calls
        calls += 1
        raise RuntimeError("broke")

    node = Node(broken, policy=NodePolicy(max_retries=3, backoff_base=0))
    with pytest.raises(RuntimeError, match="broke"):
        await node.invoke("x", stub())
    assert calls == 1


async def test_invoke_returns_a_bare_value_for_a_message_as_it_is() -> None:
    async def upper(message: Message, ctx: Context) -> str:
        return str(message.payload).upper()

    message = Message.model_validate({"payload": "hi", "headers": {"tenant": "t"}})
    assert await Node(upper).invoke(message, stub()) == "HI"


async def test_invoke_runs_a_partial_with_its_bound_argument() -> None:
    async def scaled(factor: int, message: int, ctx: Context) -> int:
        return message * factor

    node = Node(functools.partial(scaled, 3), name="triple")
    assert await node.invoke(7, stub()) == 21
