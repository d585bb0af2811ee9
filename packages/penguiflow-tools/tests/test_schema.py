"""json_schema_to_model: every rule of the contract, and properties over generated schemas."""

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from penguiflow.tools import json_schema_to_model
from penguiflow.tools._schema import dump_arguments


def roundtrip(schema: dict[str, Any], value: dict[str, Any]) -> dict[str, Any]:
    model = json_schema_to_model(schema, name="t.tool")
    return dump_arguments(model.model_validate(value))


def rejects(schema: dict[str, Any], value: dict[str, Any]) -> bool:
    model = json_schema_to_model(schema, name="t.tool")
    try:
        model.model_validate(value)
    except ValidationError:
        return True
    return False


def obj(props: dict[str, Any], required: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required or [], **extra}


def test_types_required_and_omitted_optionals() -> None:
    schema = obj({"a": {"type": "integer"}, "b": {"type": "string"}}, ["a"])
    assert roundtrip(schema, {"a": 1}) == {"a": 1}  # b omitted, never null
    assert rejects(schema, {})
    assert rejects(schema, {"a": "x"})
    assert rejects(schema, {"a": 1, "b": None})  # not nullable


def test_nullable_and_type_lists() -> None:
    schema = obj({"a": {"type": ["string", "null"]}, "b": {"type": ["integer", "string"]}})
    assert roundtrip(schema, {"a": None, "b": "x"}) == {"a": None, "b": "x"}
    assert roundtrip(schema, {"b": 3}) == {"b": 3}


def test_enum_and_const_become_literals() -> None:
    schema = obj({"mode": {"enum": ["a", "b"]}, "kind": {"const": "k"}})
    assert roundtrip(schema, {"mode": "a", "kind": "k"}) == {"mode": "a", "kind": "k"}
    assert rejects(schema, {"mode": "c"})
    assert rejects(schema, {"kind": "x"})


def test_defaults_and_descriptions_are_kept_and_not_sent_unless_set() -> None:
    schema = obj({"n": {"type": "integer", "default": 5, "description": "how many"}})
    model = json_schema_to_model(schema, name="t.tool")
    field = model.model_fields["n"]
    assert field.default == 5 and field.description == "how many"
    assert dump_arguments(model.model_validate({})) == {}
    assert model.model_json_schema()["properties"]["n"]["default"] == 5


def test_any_of_one_of_unions() -> None:
    schema = obj(
        {
            "x": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
            "y": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "integer"}}]},
        }
    )
    assert roundtrip(schema, {"x": None, "y": [1, 2]}) == {"x": None, "y": [1, 2]}
    assert rejects(schema, {"y": [{"a": 1}]})


def test_nested_objects_and_items() -> None:
    schema = obj(
        {
            "point": obj({"x": {"type": "number"}, "y": {"type": "number"}}, ["x", "y"]),
            "points": {"type": "array", "items": obj({"x": {"type": "number"}}, ["x"])},
        }
    )
    value = {"point": {"x": 1.0, "y": 2.0}, "points": [{"x": 3.0}]}
    assert roundtrip(schema, value) == value
    assert rejects(schema, {"point": {"x": 1.0}})


def test_refs_into_defs_and_definitions_and_recursion() -> None:
    schema = obj(
        {"tree": {"$ref": "#/$defs/Node"}, "tag": {"$ref": "#/definitions/Tag"}},
        ["tree"],
        **{
            "$defs": {
                "Node": obj(
                    {
                        "name": {"type": "string"},
                        "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                    },
                    ["name"],
                )
            },
            "definitions": {"Tag": {"enum": ["red", "blue"]}},
        },
    )
    value = {"tree": {"name": "a", "children": [{"name": "b", "children": [{"name": "c"}]}]}}
    assert roundtrip(schema, value) == value
    assert roundtrip(schema, {**value, "tag": "red"})["tag"] == "red"
    assert rejects(schema, {"tree": {"name": "a", "children": [{"name": 1}]}})
    assert rejects(schema, {"tree": {"name": "a"}, "tag": "green"})


def test_constraints() -> None:
    schema = obj(
        {
            "n": {"type": "integer", "minimum": 1, "maximum": 3},
            "x": {"type": "number", "exclusiveMinimum": 0},
            "s": {"type": "string", "minLength": 2, "maxLength": 3, "pattern": "^[a-z]+$"},
            "l": {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 2},
        }
    )
    assert roundtrip(schema, {"n": 2, "x": 0.5, "s": "ab", "l": [1]}) == {
        "n": 2,
        "x": 0.5,
        "s": "ab",
        "l": [1],
    }
    bad_values: list[dict[str, Any]] = [
        {"n": 0},
        {"n": 4},
        {"x": 0},
        {"s": "a"},
        {"s": "ABC"},
        {"l": []},
        {"l": [1, 2, 3]},
    ]
    for bad in bad_values:
        assert rejects(schema, bad), bad


def test_additional_properties_false_forbids_extras_else_they_pass() -> None:
    closed = obj({"a": {"type": "integer"}}, additionalProperties=False)
    assert rejects(closed, {"a": 1, "b": 2})
    opened = obj({"a": {"type": "integer"}})
    assert roundtrip(opened, {"a": 1, "b": 2}) == {"a": 1, "b": 2}


def test_clashing_and_non_identifier_names_get_aliases() -> None:
    schema = obj(
        {
            "from": {"type": "string"},
            "schema": {"type": "string"},
            "model_config": {"type": "integer"},
            "my-key": {"type": "integer"},
            "2nd": {"type": "integer"},
        },
        ["from"],
    )
    value = {"from": "a", "schema": "b", "model_config": 1, "my-key": 2, "2nd": 3}
    assert roundtrip(schema, value) == value
    model = json_schema_to_model(schema, name="t.tool")
    assert set(model.model_json_schema()["properties"]) == set(value)


def test_unknown_keywords_and_untypeable_schemas_never_fail() -> None:
    weird: list[Any] = [
        {},
        {"type": "object"},
        {"type": "object", "properties": {"a": {"type": "mystery"}, "b": {"$ref": "http://x"}}},
        {"type": "object", "properties": {"a": {"allOf": [{"type": "string"}, {"minLength": 1}]}}},
        {"type": "object", "properties": {"a": {"enum": [{"unhashable": 1}]}}},
        {"type": "object", "properties": "not a mapping"},
        {"type": "object", "properties": {"a": {"$ref": "#/$defs/Missing"}}},
        {
            "x-vendor": True,
            "type": "object",
            "properties": {"a": {"type": "string", "format": "uri"}},
        },
    ]
    for schema in weird:
        model = json_schema_to_model(schema, name="t.tool")
        assert issubclass(model, BaseModel)


SIMPLE = st.sampled_from(
    [
        ({"type": "integer"}, st.integers()),
        ({"type": "string"}, st.text()),
        ({"type": "boolean"}, st.booleans()),
        ({"type": "number"}, st.floats(allow_nan=False, allow_infinity=False)),
        ({"enum": ["a", "b", "c"]}, st.sampled_from(["a", "b", "c"])),
        ({"type": "array", "items": {"type": "integer"}}, st.lists(st.integers(), max_size=3)),
    ]
)
NAMES = st.sampled_from(["a", "from", "schema", "my-key", "x_1", "json", "copy", "class"])


@st.composite
def schema_and_value(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any], set[str]]:
    names = draw(st.lists(NAMES, unique=True, max_size=5))
    props: dict[str, Any] = {}
    value: dict[str, Any] = {}
    required: list[str] = []
    for name in names:
        sub, values = draw(SIMPLE)
        props[name] = sub
        if draw(st.booleans()):
            required.append(name)
            value[name] = draw(values)
        elif draw(st.booleans()):
            value[name] = draw(values)
    return obj(props, required), value, set(required)


@settings(max_examples=150, deadline=None)
@given(schema_and_value())
def test_generated_values_validate_and_round_trip_by_remote_name(
    case: tuple[dict[str, Any], dict[str, Any], set[str]],
) -> None:
    schema, value, required = case
    assert roundtrip(schema, value) == value
    if required:
        missing = {k: v for k, v in value.items() if k != sorted(required)[0]}
        assert rejects(schema, missing)


@pytest.mark.parametrize("name", ["t.tool", "ns.with-dash", "x"])
def test_any_name_gives_a_model(name: str) -> None:
    assert issubclass(json_schema_to_model(obj({}), name=name), BaseModel)
