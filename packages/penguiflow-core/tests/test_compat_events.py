"""FlowError and FlowEvent as code written for the original penguiflow 3.x uses them."""

from __future__ import annotations

import copy
import json
import pickle
from types import MappingProxyType
from typing import Any

import anyio
import pytest

from penguiflow.core import (
    Context,
    FlowError,
    FlowErrorCode,
    FlowEvent,
    FlowEventType,
    Headers,
    Message,
    Node,
    NodePolicy,
    create,
    format_flow_event,
)

# ------------------------------------------------------------------ FlowError


def _wrapped_value_error() -> FlowError:
    return FlowError.from_exception(
        exc=ValueError("boom"),
        trace_id="trace-1",
        node_name="demo",
        node_id="demo#1",
        code=FlowErrorCode.NODE_EXCEPTION,
        metadata={"attempt": 2, "latency_ms": 12.5, "ratio": float("nan")},
    )


def test_exception_type_names_the_cause_and_survives_detach_and_pickle() -> None:
    error = _wrapped_value_error()
    bare = FlowError(trace_id=None, node_name=None, code="NODE_TIMEOUT", message="slow")

    assert error.exception_type == "ValueError"
    assert bare.exception_type is None
    detached = error.detached()
    assert (detached.original_exc, detached.exception_type) == (None, "ValueError")
    assert pickle.loads(pickle.dumps(detached)).exception_type == "ValueError"


def test_payload_has_the_original_keys_and_stays_strict_json() -> None:
    payload = _wrapped_value_error().to_payload()

    assert payload["code"] == "NODE_EXCEPTION"
    assert payload["message"] == "ValueError: boom"
    assert (payload["trace_id"], payload["node_name"], payload["node_id"]) == (
        "trace-1",
        "demo",
        "demo#1",
    )
    assert payload["exception_type"] == "ValueError"
    assert payload["metadata"]["attempt"] == 2
    assert payload["metadata"]["latency_ms"] == 12.5
    assert json.loads(json.dumps(payload, allow_nan=False))["metadata"]["ratio"] == "NaN"


def test_payload_without_a_cause_has_no_exception_type() -> None:
    error = FlowError(trace_id="t", node_name="n", code="NODE_TIMEOUT", message="slow")

    assert "exception_type" not in error.to_payload()


# ------------------------------------------------------------------ FlowEvent built by hand


def _event(**fields: Any) -> FlowEvent:
    # Every field by name, as the original's FlowEvent (which has no defaults) is built.
    values: dict[str, Any] = {
        "event_type": "node_success",
        "ts": 1700000000.0,
        "node_name": "worker",
        "node_id": "worker#1",
        "trace_id": "trace-1",
        "attempt": 1,
        "latency_ms": 12.5,
        "queue_depth_in": 2,
        "queue_depth_out": 1,
        "outgoing_edges": 3,
        "queue_maxsize": 64,
        "trace_pending": 5,
        "trace_inflight": 1,
        "trace_cancelled": False,
        "extra": {},
    }
    values.update(fields)
    return FlowEvent(**values)


def test_a_string_event_type_becomes_the_member_and_works_in_payload_and_tags() -> None:
    event = _event(event_type="node_success")

    assert event.event_type is FlowEventType.NODE_SUCCESS
    payload = event.to_payload()
    assert payload["event"] == "node_success"
    assert type(payload["event"]) is str  # plain text, as json and log sinks expect
    assert event.tag_values()["event_type"] == "node_success"
    assert (payload["q_depth_total"], payload["trace_pending"]) == (3, 5)


def test_an_unknown_event_type_is_rejected_with_the_known_types() -> None:
    with pytest.raises(ValueError, match="unknown FlowEvent event_type 'node_end'.*node_start"):
        _event(event_type="node_end")


def test_extra_is_a_read_only_copy_also_after_replace() -> None:
    source = {"custom_tag": "alpha"}
    event = _event(extra=source)
    source["custom_tag"] = "changed"

    assert event.extra == {"custom_tag": "alpha"}
    with pytest.raises(TypeError):
        event.extra["custom_tag"] = "mutated"  # type: ignore[index]
    replaced = event._replace(extra={"other": 1})
    assert isinstance(replaced.extra, MappingProxyType)
    assert replaced.event_type is FlowEventType.NODE_SUCCESS


def test_error_payload_is_read_only() -> None:
    event = _event(
        event_type="node_failed", extra={"flow_error": {"code": "NODE_EXCEPTION", "message": "x"}}
    )

    payload = event.error_payload
    assert payload is not None and payload["code"] == "NODE_EXCEPTION"
    with pytest.raises(TypeError):
        payload["code"] = "MUTATED"  # type: ignore[index]
    assert _event(extra={"flow_error": "not a mapping"}).error_payload is None
    assert _event().error_payload is None


def test_queue_depth_is_the_incoming_plus_outgoing_depth() -> None:
    assert _event(queue_depth_in=4, queue_depth_out=3).queue_depth == 7


@pytest.mark.parametrize(
    ("override", "expected"),
    [("21.0", 21.0), (7, 7.0), ("slow", 12.5), (None, 12.5), (True, 12.5)],
)
def test_a_numeric_latency_in_extra_overrides_the_sampled_latency(
    override: object, expected: float
) -> None:
    samples = _event(latency_ms=12.5, extra={"latency_ms": override}).metric_samples()

    assert samples["latency_ms"] == expected
    assert (samples["queue_depth_total"], samples["trace_pending"]) == (3.0, 5.0)


def test_an_override_gives_a_latency_to_an_event_without_one() -> None:
    assert _event(latency_ms=None, extra={"latency_ms": 3}).metric_samples()["latency_ms"] == 3.0


def test_tags_carry_scalar_extras_but_never_replace_the_core_tags() -> None:
    extra = {
        "custom_tag": "alpha",
        "seq": 3,
        "ratio": 0.5,
        "ok": True,
        "nested": {"a": 1},
        "items": [1],
        "node_name": "spoofed",
        "event_type": "spoofed",
    }

    tags = _event(extra=extra).tag_values()

    assert tags == {
        "event_type": "node_success",
        "node_name": "worker",
        "node_id": "worker#1",
        "trace_id": "trace-1",
        "custom_tag": "alpha",
        "seq": "3",
        "ratio": "0.5",
        "ok": "True",
    }


# ------------------------------------------------------------------ events the runtime built


async def _events_of_a_retried_failure() -> list[FlowEvent]:
    async def fails(msg: Message, ctx: Context) -> None:
        raise RuntimeError("pop")

    seen: list[FlowEvent] = []
    node = Node(fails, policy=NodePolicy(max_retries=1, backoff_base=0.001, jitter=0.0))
    flow = create(node.to(), emit_errors_to_rookery=True, on_event=seen.append)
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(Message(payload=1, headers=Headers(tenant="t"), trace_id="t1"))
            assert isinstance(await flow.fetch(trace_id="t1"), FlowError)
    return seen


async def test_runtime_built_events_pickle_and_copy_with_their_extra_read_only() -> None:
    events = await _events_of_a_retried_failure()

    assert {e.event_type for e in events} >= {FlowEventType.NODE_RETRY, FlowEventType.NODE_FAILED}
    for event in events:
        for restored in (pickle.loads(pickle.dumps(event)), copy.deepcopy(event)):
            assert restored == event
            assert type(restored) is FlowEvent
            assert isinstance(restored.extra, MappingProxyType)


async def test_format_flow_event_flattens_the_error_payload_of_a_failure() -> None:
    events = await _events_of_a_retried_failure()
    failed = next(e for e in events if e.event_type == FlowEventType.NODE_FAILED)
    started = next(e for e in events if e.event_type == FlowEventType.NODE_START)

    formatted = format_flow_event(failed)

    assert formatted["event"] == "node_failed"
    assert formatted["flow_error_code"] == "NODE_EXCEPTION"
    assert formatted["flow_error_exception_type"] == "RuntimeError"
    assert formatted["flow_error_trace_id"] == "t1"
    assert type(formatted["flow_error"]) is dict
    assert formatted["flow_error"] == dict(failed.error_payload or {})
    json.dumps(formatted, allow_nan=False)
    assert format_flow_event(started) == started.to_payload()
