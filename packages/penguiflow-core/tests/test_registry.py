"""ModelRegistry: cached adapters, typed flows from annotations, validation that is not retried."""

from __future__ import annotations

import logging
from typing import Any, cast

import anyio
import pytest
from pydantic import BaseModel

from penguiflow.core import (
    Context,
    FlowError,
    FlowErrorCode,
    FlowEvent,
    Headers,
    Message,
    ModelRegistry,
    Node,
    NodePolicy,
    create,
)


class Query(BaseModel):
    text: str


class Answer(BaseModel):
    text: str
    length: int


async def answer(message: Query, ctx: Context) -> Answer:
    return Answer(text=message.text, length=len(message.text))


async def untyped(message: Any, ctx: Context) -> Any:
    return message


untyped.__annotations__ = {}  # as if written `async def untyped(message, ctx):`


class Answerer:
    """A callable-object node whose annotations live on ``__call__``."""

    async def __call__(self, message: Query, ctx: Context) -> Answer:
        return Answer(text=message.text.upper(), length=len(message.text))


def not_validated_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "not validated" in r.getMessage()]


# ------------------------------------------------------------------ registration


def test_register_and_lookup() -> None:
    registry = ModelRegistry()
    registry.register("answer", Query, Answer)
    assert "answer" in registry
    assert registry.names() == ["answer"]
    in_adapter, out_adapter = registry.adapters("answer")
    assert in_adapter.validate_python({"text": "hi"}) == Query(text="hi")
    assert out_adapter.validate_python({"text": "hi", "length": 2}) == Answer(text="hi", length=2)


def test_duplicate_registration_raises() -> None:
    registry = ModelRegistry()
    registry.register("answer", Query, Answer)
    with pytest.raises(ValueError, match="'answer' is already registered"):
        registry.register("answer", Query, Query)


def test_unregistered_node_lookup_says_how_to_register() -> None:
    with pytest.raises(KeyError, match=r"registry\.register\('ghost'"):
        ModelRegistry().adapters("ghost")


def test_adapters_are_cached_per_model() -> None:
    registry = ModelRegistry()
    registry.register("first", Query, Answer)
    registry.register("second", Query, Query)
    first_in, first_out = registry.adapters("first")
    second_in, second_out = registry.adapters("second")
    assert first_in is second_in
    assert second_out is second_in
    assert first_out is not first_in


# ------------------------------------------------------------------ from_annotations


def test_from_annotations_reads_the_node_signatures() -> None:
    flow = create(Node(answer).to())
    registry = ModelRegistry.from_annotations(flow)
    entry = registry.entry("answer")
    assert entry is not None
    assert (entry.in_model, entry.out_model) == (Query, Answer)


def test_from_annotations_accepts_a_list_of_nodes() -> None:
    registry = ModelRegistry.from_annotations([Node(answer)])
    assert registry.names() == ["answer"]


def test_from_annotations_works_on_callable_objects() -> None:
    registry = ModelRegistry.from_annotations([Node(Answerer(), name="answerer")])
    entry = registry.entry("answerer")
    assert entry is not None
    assert (entry.in_model, entry.out_model) == (Query, Answer)


def test_from_annotations_skips_nodes_that_do_not_validate() -> None:
    skipped = Node(untyped, name="skipped", policy=NodePolicy(validate="none"))
    registry = ModelRegistry.from_annotations([Node(answer), skipped])
    assert registry.names() == ["answer"]


def test_from_annotations_names_every_node_missing_annotations() -> None:
    async def no_return(message: Query, ctx: Context):  # noqa: ANN202
        return None

    nodes = [Node(untyped, name="bare"), Node(no_return), Node(answer)]
    with pytest.raises(ValueError) as info:
        ModelRegistry.from_annotations(nodes)
    message = str(info.value)
    assert "'bare'" in message
    assert "'no_return'" in message
    assert "'answer'" not in message
    assert 'validate="none"' in message


def test_from_annotations_names_a_node_with_unresolvable_annotations() -> None:
    async def dangling(message: Any, ctx: Context) -> Any:
        return message

    dangling.__annotations__ = {"message": "DoesNotExist", "return": "Answer"}
    with pytest.raises(ValueError, match="'dangling'"):
        ModelRegistry.from_annotations([Node(dangling)])


async def test_flow_typed_from_annotations_validates_and_converts_input() -> None:
    node = Node(answer)
    flow = create(node.to())
    async with flow.running(registry=ModelRegistry.from_annotations(flow)):
        with anyio.fail_after(5):
            await flow.emit({"text": "hello"}, trace_id="t1")
            result = await flow.fetch(trace_id="t1")
    assert result == Answer(text="hello", length=5)


# ------------------------------------------------------------------ running with a registry


async def test_run_with_registry_missing_nodes_lists_them() -> None:
    first, second = Node(answer, name="first"), Node(answer, name="second")
    third = Node(answer, name="third")
    skipped = Node(untyped, name="skipped", policy=NodePolicy(validate="none"))
    flow = create(first.to(second), second.to(third, skipped), third.to(), skipped.to())
    registry = ModelRegistry()
    registry.register("second", Query, Answer)
    with pytest.raises(ValueError) as info:
        flow.run(registry=registry)
    message = str(info.value)
    assert "'first'" in message and "'third'" in message
    assert "'second'" not in message and "'skipped'" not in message
    assert not flow.running_now


async def test_running_without_registry_logs_once_that_nothing_is_validated(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """**fix**: the reference skipped validation silently."""
    flow = create(Node(answer).to())
    with caplog.at_level(logging.INFO, logger="penguiflow.core"):
        async with flow.running():
            with anyio.fail_after(5):
                for index in range(3):
                    await flow.emit(Query(text="x"), trace_id=f"t{index}")
                for index in range(3):
                    await flow.fetch(trace_id=f"t{index}")
    records = not_validated_records(caplog)
    assert len(records) == 1
    assert records[0].levelno == logging.INFO
    assert "ModelRegistry" in records[0].getMessage()


async def test_running_with_registry_does_not_log_the_no_validation_notice(
    caplog: pytest.LogCaptureFixture,
) -> None:
    flow = create(Node(answer).to())
    with caplog.at_level(logging.INFO, logger="penguiflow.core"):
        async with flow.running(registry=ModelRegistry.from_annotations(flow)):
            pass
    assert not_validated_records(caplog) == []


async def test_input_validation_failure_is_a_validation_error_and_not_retried() -> None:
    calls = 0
    events: list[FlowEvent] = []

    async def counted(message: Query, ctx: Context) -> Answer:
        nonlocal calls
        calls += 1
        return Answer(text=message.text, length=1)

    node = Node(counted, policy=NodePolicy(max_retries=3, backoff_base=0.0))
    flow = create(node.to(), emit_errors_to_rookery=True, on_event=events.append)
    async with flow.running(registry=ModelRegistry.from_annotations(flow)):
        with anyio.fail_after(5):
            await flow.emit({"wrong": "shape"}, trace_id="bad")
            error = await flow.fetch(trace_id="bad")
    assert isinstance(error, FlowError)
    assert error.code is FlowErrorCode.VALIDATION_ERROR
    assert error.node_name == "counted"
    assert error.trace_id == "bad"
    assert "input" in error.message
    assert calls == 0
    assert not [e for e in events if e.event_type == "node_retry"]


async def test_output_validation_failure_is_a_validation_error_and_not_retried() -> None:
    calls = 0
    events: list[FlowEvent] = []

    async def sloppy(message: Query, ctx: Context) -> Answer:
        nonlocal calls
        calls += 1
        return cast(Any, {"text": message.text})  # missing "length"

    node = Node(sloppy, policy=NodePolicy(max_retries=3, backoff_base=0.0))
    flow = create(node.to(), emit_errors_to_rookery=True, on_event=events.append)
    async with flow.running(registry=ModelRegistry.from_annotations(flow)):
        with anyio.fail_after(5):
            await flow.emit(Query(text="hi"), trace_id="bad")
            error = await flow.fetch(trace_id="bad")
    assert isinstance(error, FlowError)
    assert error.code is FlowErrorCode.VALIDATION_ERROR
    assert "output" in error.message
    assert error.node_name == "sloppy"
    assert calls == 1
    assert not [e for e in events if e.event_type == "node_retry"]
    assert [e.event_type for e in events if e.event_type == "node_failed"] == ["node_failed"]


async def test_bare_payload_for_message_output_is_a_validation_error() -> None:
    async def lazy(message: Message, ctx: Context) -> Any:
        return f"{message.payload}!"

    registry = ModelRegistry()
    registry.register("lazy", Message, Message)
    flow = create(Node(lazy).to(), emit_errors_to_rookery=True)
    query = Message(payload="a", headers=Headers(tenant="acme", topic="t"), meta={"k": 1})
    async with flow.running(registry=registry):
        with anyio.fail_after(5):
            await flow.emit(query)
            error = await flow.fetch(trace_id=query.trace_id)
    assert isinstance(error, FlowError)
    assert error.code is FlowErrorCode.VALIDATION_ERROR
    assert error.node_name == "lazy"
    assert error.trace_id == query.trace_id
    assert "registered to return a Message but returned a bare str" in error.message


@pytest.mark.parametrize("validate", ["in", "none"])
async def test_bare_payload_for_message_output_without_output_validation_warns_and_is_delivered(
    validate: Any,
) -> None:
    async def lazy(message: Message, ctx: Context) -> Any:
        return f"{message.payload}!"

    async def keep(message: Message, ctx: Context) -> Message:
        return message  # declares a Message input: gets the bare value in the last envelope

    registry = ModelRegistry()
    registry.register("lazy", Message, Message)
    registry.register("keep", Message, Message)
    bare, enveloped = Node(lazy, policy=NodePolicy(validate=validate)), Node(keep)
    first = Message(payload="a", headers=Headers(tenant="acme", topic="t"), meta={"k": 1})
    second = Message(payload="b", headers=Headers(tenant="globex"), deadline_s=9e9)
    with pytest.warns(RuntimeWarning, match=r"'lazy'.*Message -> Message.*bare str") as caught:
        flow = create(bare.to())
        async with flow.running(registry=registry):
            with anyio.fail_after(5):
                await flow.emit(first)
                assert await flow.fetch(trace_id=first.trace_id) == "a!"  # delivered as returned
        flow = create(bare.to(enveloped), enveloped.to())
        async with flow.running(registry=registry):
            with anyio.fail_after(5):
                await flow.emit(first)
                await flow.emit(second)
                out_first = await flow.fetch(trace_id=first.trace_id)
                out_second = await flow.fetch(trace_id=second.trace_id)
    assert all(issubclass(w.category, RuntimeWarning) for w in caught)
    for out, original in ((out_first, first), (out_second, second)):
        assert isinstance(out, Message)
        assert out.payload == f"{original.payload}!"
        assert out.headers == original.headers
        assert out.trace_id == original.trace_id
        assert out.deadline_s == original.deadline_s
        assert out.meta == original.meta
