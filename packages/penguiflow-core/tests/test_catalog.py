"""The tool catalog: @tool metadata, NodeSpec checks and records, build_catalog's one report."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, get_args

import anyio
import pytest
from pydantic import BaseModel

from penguiflow.core import (
    Context,
    ModelRegistry,
    Node,
    NodePolicy,
    NodeSpec,
    SideEffect,
    ToolInputExample,
    ToolLoadingMode,
    build_catalog,
    create,
    tool,
)


class Query(BaseModel):
    text: str


class Answer(BaseModel):
    hits: int


@tool(
    desc="Search the index",
    side_effects="read",
    tags=["search", "index", "search"],
    auth_scopes=["index:read"],
    cost_hint="cheap",
    latency_hint_ms=20,
    safety_notes="read-only",
    needs_approval=True,
    loading_mode="deferred",
    examples=[ToolInputExample(args={"text": "floe"}, description="one word"), {"args": {}}],
    policy=NodePolicy(max_retries=2, backoff_base=0.0),
    extra={"owner": "team-a", "callback": print},
)
async def search(args: Query, ctx: Context) -> Answer:
    """Docstring that the explicit desc overrides."""
    return Answer(hits=len(args.text))


async def documented(args: Query, ctx: Context) -> Answer:
    """Count the words of a query.

    More text that is part of the description too.
    """
    return Answer(hits=len(args.text.split()))


def _undocumented(name: str) -> Any:
    async def func(args: Query, ctx: Context) -> Answer:
        return Answer(hits=0)

    func.__name__ = name
    return func


def _spec(**overrides: Any) -> NodeSpec:
    fields: dict[str, Any] = {
        "node": Node(documented),
        "name": "documented",
        "desc": "count words",
        "args_model": Query,
        "out_model": Answer,
    }
    fields.update(overrides)
    return NodeSpec(**fields)


# ------------------------------------------------------------------- @tool and value types


def test_tool_returns_the_function_unchanged_with_its_metadata() -> None:
    async def plain(args: Query, ctx: Context) -> Answer:
        return Answer(hits=1)

    marked = tool(desc="d")(plain)
    assert marked is plain
    meta = plain.__penguiflow_tool__  # type: ignore[attr-defined]
    assert meta.desc == "d"
    assert meta.side_effects == "pure"
    assert meta.loading_mode is ToolLoadingMode.ALWAYS
    assert meta.policy is None


def test_tool_normalises_tags_modes_and_examples() -> None:
    meta = search.__penguiflow_tool__  # type: ignore[attr-defined]
    assert meta.tags == ("search", "index")
    assert meta.loading_mode is ToolLoadingMode.DEFERRED
    assert meta.examples == (
        ToolInputExample(args={"text": "floe"}, description="one word"),
        ToolInputExample(args={}),
    )
    assert meta.policy == NodePolicy(max_retries=2, backoff_base=0.0)
    with pytest.raises(TypeError):
        meta.extra["owner"] = "someone else"  # read-only


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"side_effects": "destructive"}, ValueError, "side_effects must be one of"),
        ({"loading_mode": "lazy"}, ValueError, "loading_mode must be one of"),
        ({"latency_hint_ms": -1}, ValueError, "latency_hint_ms"),
        ({"examples": [{"args": {"when": object()}}]}, ValueError, "JSON-serialisable"),
        ({"examples": ["text"]}, TypeError, "ToolInputExample or a mapping"),
        ({"policy": {"max_retries": 1}}, TypeError, "must be a NodePolicy"),
        ({"tags": "search"}, TypeError, "not the string 'search'"),
    ],
)
def test_tool_rejects_bad_metadata_at_decoration(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        tool(**kwargs)


def test_tool_input_example_requires_json_serialisable_args() -> None:
    example = ToolInputExample(args={"n": [1, 2], "s": None})
    assert (example.description, example.tags) == (None, [])
    with pytest.raises(ValueError, match="JSON-serialisable"):
        ToolInputExample(args={"bad": {1, 2}})


def test_loading_modes_and_side_effects_are_the_documented_values() -> None:
    assert [mode.value for mode in ToolLoadingMode] == ["always", "deferred"]
    assert ToolLoadingMode.DEFERRED == "deferred"
    assert get_args(SideEffect) == ("pure", "read", "write", "external", "stateful")


# --------------------------------------------------------------------------- NodeSpec


def test_node_spec_is_frozen_and_slotted() -> None:
    spec = _spec(tags=["a"], extra={"k": 1})
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "other"  # type: ignore[misc]
    assert not hasattr(spec, "__dict__")
    assert spec.tags == ("a",)
    with pytest.raises(TypeError):
        spec.extra["k"] = 2  # type: ignore[index]


@pytest.mark.parametrize("name", ["", "has space", "x" * 65, "slash/name", "ünïcode"])
def test_node_spec_rejects_a_name_outside_the_pattern(name: str) -> None:
    async def func(args: Query, ctx: Context) -> Answer:
        return Answer(hits=0)

    node = Node(func, name=name or "placeholder")
    with pytest.raises(ValueError, match="must match") as caught:
        _spec(node=node, name=name)
    assert repr(name) in str(caught.value)


def test_node_spec_name_must_equal_the_node_name() -> None:
    with pytest.raises(ValueError, match="'renamed' must equal its node's name 'documented'"):
        _spec(name="renamed")


@pytest.mark.parametrize("name", ["final_response", "parallel"])
def test_node_spec_rejects_the_planner_reserved_names(name: str) -> None:
    with pytest.raises(ValueError, match=f"'{name}' is reserved"):
        _spec(node=Node(documented, name=name), name=name)


@pytest.mark.parametrize("role", ["args_model", "out_model"])
@pytest.mark.parametrize("model", [dict, int, Query(text="an instance")])
def test_node_spec_models_must_be_base_model_subclasses(role: str, model: object) -> None:
    with pytest.raises(TypeError, match=f"tool 'documented': {role} must be a pydantic BaseModel"):
        _spec(**{role: model})


def test_node_spec_computes_each_schema_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # Regression (fix): the original rebuilt both schemas on every to_tool_record().
    calls: list[str] = []
    original = Query.model_json_schema.__func__

    def counting(cls: type[BaseModel], *args: Any, **kwargs: Any) -> dict[str, Any]:
        calls.append(cls.__name__)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(Query, "model_json_schema", classmethod(counting))
    spec = _spec()
    assert calls == ["Query"]
    for _ in range(3):
        record = spec.to_tool_record()
        assert record["args_schema"] == Query.model_json_schema()  # counted once more, here
    assert calls == ["Query", "Query", "Query", "Query"]


def test_node_spec_schemas_are_fresh_copies() -> None:
    spec = _spec()
    spec.args_schema["properties"]["text"]["type"] = "tampered"
    record = spec.to_tool_record()
    record["out_schema"]["required"].append("tampered")
    assert spec.args_schema == Query.model_json_schema()
    assert spec.out_schema == Answer.model_json_schema()


def test_tool_record_has_the_documented_keys_and_is_json_safe() -> None:
    [spec] = build_catalog([search])
    record = spec.to_tool_record()
    assert list(record) == [
        "name",
        "desc",
        "side_effects",
        "loading_mode",
        "tags",
        "auth_scopes",
        "hints",
        "args_schema",
        "out_schema",
        "extra",
        "examples",
    ]
    assert json.loads(json.dumps(record)) == record
    assert record["name"] == "search"
    assert record["desc"] == "Search the index"
    assert record["side_effects"] == "read"
    assert record["loading_mode"] == "deferred"
    assert record["tags"] == ["search", "index"]
    assert record["auth_scopes"] == ["index:read"]
    assert record["hints"] == {
        "cost_hint": "cheap",
        "latency_hint_ms": 20,
        "safety_notes": "read-only",
        "needs_approval": True,
    }
    assert record["extra"] == {"owner": "team-a"}  # the callable is left out
    assert record["examples"] == [
        {"args": {"text": "floe"}, "description": "one word", "tags": []},
        {"args": {}, "description": None, "tags": []},
    ]
    assert record["examples"] == spec.examples_payload()


# ---------------------------------------------------------------------- build_catalog


def test_build_catalog_wraps_tool_functions_with_their_policy() -> None:
    catalog = build_catalog([search, Node(documented)])
    assert [spec.name for spec in catalog] == ["search", "documented"]
    first = catalog[0]
    assert isinstance(first.node, Node)
    assert first.node.func is search
    assert first.node.policy == NodePolicy(max_retries=2, backoff_base=0.0)
    assert (first.args_model, first.out_model) == (Query, Answer)
    assert first.needs_approval is True


def test_build_catalog_desc_falls_back_to_the_docstring_then_the_name() -> None:
    catalog = build_catalog(
        [search, documented, _undocumented("bare"), tool(side_effects="write")(_undocumented("w"))]
    )
    assert catalog[0].desc == "Search the index"
    assert catalog[1].desc == (
        "Count the words of a query.\n\nMore text that is part of the description too."
    )
    assert [catalog[2].desc, catalog[3].desc] == ["bare", "w"]


def test_build_catalog_takes_models_from_the_registry_when_it_has_the_node() -> None:
    class Wide(BaseModel):
        text: str
        lang: str = "en"

    async def untyped(args: Any, ctx: Any) -> Any:
        return None

    registry = ModelRegistry()
    registry.register("documented", Wide, Answer)
    registry.register("untyped", Query, Answer)
    catalog = build_catalog([documented, untyped], registry)
    assert (catalog[0].args_model, catalog[0].out_model) == (Wide, Answer)
    assert (catalog[1].args_model, catalog[1].out_model) == (Query, Answer)


def test_build_catalog_default_loading_mode_applies_to_undecorated_entries() -> None:
    catalog = build_catalog(
        [search, documented, tool()(_undocumented("marked"))],
        default_loading_mode=ToolLoadingMode.DEFERRED,
    )
    assert [spec.loading_mode for spec in catalog] == [
        ToolLoadingMode.DEFERRED,  # its own @tool(loading_mode="deferred")
        ToolLoadingMode.DEFERRED,  # no @tool: the default
        ToolLoadingMode.ALWAYS,  # @tool's own default
    ]
    with pytest.raises(ValueError, match="loading_mode must be one of"):
        build_catalog([documented], default_loading_mode="sometimes")


def test_build_catalog_reports_every_problem_in_one_error() -> None:
    async def unannotated(args, ctx):  # type: ignore[no-untyped-def]  # noqa: ANN001
        return None

    async def returns_int(args: Query, ctx: Context) -> int:
        return 1

    async def final_response(args: Query, ctx: Context) -> Answer:
        return Answer(hits=0)

    def not_async(args: Query, ctx: Context) -> Answer:
        return Answer(hits=0)

    with pytest.raises(ValueError) as caught:
        build_catalog(
            [
                search,
                Node(documented, name="search"),
                unannotated,
                returns_int,
                final_response,
                not_async,  # type: ignore[list-item]
                documented,
            ]
        )
    text = str(caught.value)
    assert "cannot build the tool catalog (5 problem(s))" in text
    assert "duplicate tool name 'search' (entries 0 and 1)" in text
    assert "tool 'unannotated': cannot resolve its models from annotations" in text
    assert "tool 'returns_int': out_model must be a pydantic BaseModel subclass" in text
    assert "tool name 'final_response' is reserved" in text
    assert "entry 5: Node 'not_async'" in text and "async def" in text
    assert text.count("\n- ") == 5


async def test_a_catalog_entry_runs_through_call_node_under_its_tool_policy() -> None:
    attempts: list[int] = []

    @tool(policy=NodePolicy(max_retries=1, backoff_base=0.0))
    async def flaky(args: Query, ctx: Context) -> Answer:
        attempts.append(len(attempts))
        if len(attempts) == 1:
            raise ConnectionError("first call fails")
        return Answer(hits=len(args.text))

    [spec] = build_catalog([flaky])
    flow = create(Node(documented).to())
    with anyio.fail_after(5):
        result = await flow.call_node(spec.node, Query(text="abc"))
    assert result == Answer(hits=3)
    assert attempts == [0, 1]
