"""Public classes and functions report the public module, and still validate, pickle and rebuild."""

from __future__ import annotations

import dataclasses
import inspect
import json
import pickle
import subprocess
import sys
import textwrap
import time
import typing

import pytest
from pydantic import BaseModel, TypeAdapter

import penguiflow.core as core
from penguiflow.core import FlowError, FlowEvent, FlowEventType, Headers, Message

KEPT_IN_THEIR_MODULE = {
    "BusEnvelope",
    "FlowEvent",
    "FlowStatistics",
    "JournalStep",
    "LogEntry",
    "NodeSpec",
    "NodePolicy",
    "Record",
    "RemoteBinding",
    "RemoteCallRequest",
    "RemoteCallResult",
    "RemoteStreamEvent",
    "RoutingRequest",
    "Scope",
    "StoredEvent",
}
"""Stdlib dataclasses and NamedTuples: pydantic resolves their string annotations in their
module's namespace, so they keep their real module (see ``penguiflow.core.__init__``)."""


def _public_objects() -> dict[str, object]:
    # getattr loads the lazy names too.
    return {
        name: value
        for name in core.__all__
        if inspect.isclass(value := getattr(core, name)) or inspect.isfunction(value)
    }


def test_public_classes_and_functions_report_the_public_module() -> None:
    objects = _public_objects()
    assert {"Message", "FlowError", "Node", "create", "join_k", "RemoteNode"} <= objects.keys()
    wrong = {
        name: getattr(value, "__module__", None)
        for name, value in objects.items()
        if name not in KEPT_IN_THEIR_MODULE and getattr(value, "__module__", None) != core.__name__
    }
    assert wrong == {}
    assert repr(core.Message) == "<class 'penguiflow.core.Message'>"
    assert repr(core.FlowError) == "<class 'penguiflow.core.FlowError'>"


def _is_dataclass_or_named_tuple(value: object) -> bool:
    if not isinstance(value, type):
        return False
    cls = typing.cast(type[object], value)
    named_tuple = tuple in cls.__mro__ and hasattr(cls, "_fields")
    return named_tuple or dataclasses.is_dataclass(cls)


def test_classes_kept_in_their_module_are_exactly_the_dataclasses_and_named_tuples() -> None:
    kept = {
        name for name, value in _public_objects().items() if _is_dataclass_or_named_tuple(value)
    }
    assert kept == KEPT_IN_THEIR_MODULE


# RoutingRequest and NodeSpec hold runtime objects (a Context, a Node) pydantic has no schema for.
@pytest.mark.parametrize("name", sorted(KEPT_IN_THEIR_MODULE - {"RoutingRequest", "NodeSpec"}))
def test_dataclasses_still_work_with_pydantic_and_get_type_hints(name: str) -> None:
    cls = getattr(core, name)
    assert typing.get_type_hints(cls)
    TypeAdapter(cls).core_schema  # noqa: B018 - builds the schema; raises when it cannot

    class Holder(BaseModel):
        value: cls | None = None  # pyright: ignore[reportInvalidTypeForm]

    assert Holder.model_validate({}).model_dump() == {"value": None}


def test_lazy_names_report_the_public_module_once_loaded() -> None:
    for name in ("join_k", "map_concurrent", "union_router", "DictRoutingPolicy", "to_mermaid"):
        assert getattr(core, name).__module__ == "penguiflow.core"


# ------------------------------------------------------------------ pickling


def test_message_pickle_round_trips() -> None:
    message = Message(payload=1, headers=Headers(tenant="t"), meta={"k": [1, 2]})
    restored = pickle.loads(pickle.dumps(message))
    assert restored == message
    assert type(restored) is Message


def test_flow_error_pickle_round_trips_through_the_public_path() -> None:
    error = FlowError.from_exception(KeyError("x"), trace_id="t", node_name="n")
    data = pickle.dumps(error)
    assert b"penguiflow.core" in data
    assert b"_errors" not in data
    restored = pickle.loads(data)
    assert (type(restored), str(restored), restored.code) == (FlowError, str(error), error.code)


def test_flow_event_pickle_round_trips() -> None:
    event = FlowEvent(FlowEventType.NODE_START, time.time(), "n", "n#1", "t", extra={"a": 1})
    assert pickle.loads(pickle.dumps(event)) == event


def test_public_functions_and_enums_pickle_by_their_public_path() -> None:
    for value in (core.create, core.join_k, core.FlowErrorCode.NODE_TIMEOUT, core.Message):
        assert pickle.loads(pickle.dumps(value)) is value


# ------------------------------------------------------------------ pydantic models, fresh process

MODELS_IN_A_FRESH_PROCESS = textwrap.dedent(
    """
    import json, pickle
    from pydantic import ValidationError
    import penguiflow.core as core

    cases = {
        "Headers": ({"tenant": "t"}, {"priority": "high"}),
        "Message": ({"payload": 1, "headers": {"tenant": "t"}}, {"payload": 1}),
        "WM": ({"query": "q"}, {"query": "q", "budget_hops": -1}),
        "StreamChunk": ({"stream_id": "s", "seq": 0, "text": "x"}, {"stream_id": "s"}),
        "FinalAnswer": ({"text": "t"}, {}),
        "BudgetExhausted": (
            {"text": "t", "code": "HOP_BUDGET_EXHAUSTED"}, {"text": "t", "code": "NOPE"}
        ),
    }
    report = {}
    for name, (good, bad) in cases.items():
        cls = getattr(core, name)
        first_use = cls(**good)  # the deferred schema is built here, after the move
        try:
            cls(**bad)
            rejected = False
        except ValidationError:
            rejected = True
        cls.model_rebuild(force=True)
        try:
            cls(**bad)
            rejected_after_rebuild = False
        except ValidationError:
            rejected_after_rebuild = True

        class Sub(cls):
            extra_field: int = 0

        report[name] = {
            "module": cls.__module__,
            "repr": repr(cls),
            "rejected": rejected,
            "rejected_after_rebuild": rejected_after_rebuild,
            "pickle": pickle.loads(pickle.dumps(first_use)) == first_use,
            "subclass": Sub(**good, extra_field=2).extra_field == 2,
            "schema": cls.model_json_schema()["title"],
        }
    print(json.dumps(report))
    """
)


def test_pydantic_models_validate_rebuild_and_pickle_in_a_fresh_process() -> None:
    completed = subprocess.run(
        [sys.executable, "-c", MODELS_IN_A_FRESH_PROCESS],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert set(report) == {
        "Headers",
        "Message",
        "WM",
        "StreamChunk",
        "FinalAnswer",
        "BudgetExhausted",
    }
    for name, facts in report.items():
        assert facts == {
            "module": "penguiflow.core",
            "repr": f"<class 'penguiflow.core.{name}'>",
            "rejected": True,
            "rejected_after_rebuild": True,
            "pickle": True,
            "subclass": True,
            "schema": name,
        }, name


def test_publishing_does_not_load_the_lazy_submodules() -> None:
    code = (
        "import json, sys, penguiflow.core; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('penguiflow.core.'))))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = set(json.loads(completed.stdout))
    lazy = {f"penguiflow.core.{module}" for module in ("_patterns", "_remote", "_routing", "_viz")}
    assert loaded & lazy == set()
