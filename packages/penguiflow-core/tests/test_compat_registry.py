"""ModelRegistry: models(), and what register() accepts as a model."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from penguiflow.core import Context, Headers, Message, ModelRegistry, Node


class Query(BaseModel):
    text: str


class Answer(BaseModel):
    text: str


@dataclasses.dataclass
class Point:
    x: int


class Opaque:
    """A plain class pydantic has no schema for."""


def test_models_returns_the_registered_in_and_out_models() -> None:
    registry = ModelRegistry()
    registry.register("answer", Query, Answer)
    registry.register("count", str, int)
    assert registry.models("answer") == (Query, Answer)
    assert registry.models("count") == (str, int)


def test_models_of_an_unregistered_node_says_how_to_register() -> None:
    with pytest.raises(KeyError, match=r"registry\.register\('ghost', InModel, OutModel\)"):
        ModelRegistry().models("ghost")


@pytest.mark.parametrize(
    ("model", "valid", "invalid"),
    [
        (str, "hi", 3),
        (list[int], ["1", 2], ["x"]),
        (int | None, None, "x"),
        (Point, {"x": "1"}, {"x": "y"}),
        (Message, {"payload": 1, "headers": {"tenant": "t"}}, {"payload": 1}),
    ],
    ids=["str", "list-of-int", "optional-int", "dataclass", "message"],
)
def test_any_type_pydantic_validates_is_a_model(model: Any, valid: Any, invalid: Any) -> None:
    registry = ModelRegistry()
    registry.register("node", model, model)
    in_adapter, _ = registry.adapters("node")
    in_adapter.validate_python(valid)
    with pytest.raises(ValidationError):
        in_adapter.validate_python(invalid)


@pytest.mark.parametrize(
    ("in_model", "out_model", "role", "fragment"),
    [
        (
            Query(text="x"),
            Answer,
            "in_model",
            "is an instance of Query, not a type; pass the class",
        ),
        (Query, "Answer", "out_model", "is the string 'Answer', not a type"),
        (Opaque, Answer, "in_model", "is not a type pydantic can validate"),
        (3, Answer, "in_model", "is not a type pydantic can validate"),
    ],
    ids=["model-instance", "string", "plain-class", "number"],
)
def test_registering_something_that_is_not_a_model_is_a_type_error(
    in_model: Any, out_model: Any, role: str, fragment: str
) -> None:
    registry = ModelRegistry()
    with pytest.raises(TypeError, match=f"register\\('node', ...\\): {role}") as info:
        registry.register("node", in_model, out_model)
    assert fragment in str(info.value)
    assert "node" not in registry  # nothing half-registered
    registry.register("node", Query, Answer)  # the name is still free


def test_from_annotations_reports_an_annotation_pydantic_cannot_validate() -> None:
    async def odd(message: Opaque, ctx: Context) -> Answer:
        return Answer(text="x")

    async def fine(message: Query, ctx: Context) -> Answer:
        return Answer(text=message.text)

    with pytest.raises(ValueError, match=r"node\(s\) 'odd' \(.*is not a type pydantic") as info:
        ModelRegistry.from_annotations([Node(odd), Node(fine)])
    assert "'fine'" not in str(info.value)


def test_from_annotations_accepts_primitive_and_message_annotations() -> None:
    async def shout(message: str, ctx: Context) -> str:
        return message.upper()

    async def wrap(message: Message, ctx: Context) -> Message:
        return message

    registry = ModelRegistry.from_annotations([Node(shout), Node(wrap)])
    assert registry.models("shout") == (str, str)
    assert registry.models("wrap") == (Message, Message)
    in_adapter, _ = registry.adapters("wrap")
    valid = in_adapter.validate_python({"payload": 1, "headers": Headers(tenant="t")})
    assert isinstance(valid, Message)
