"""log_flow_events: structured records, cheap when silenced; JsonFormatter: a JSON object a line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any, cast

import anyio
import pytest

from penguiflow.core import (
    Context,
    FlowError,
    FlowEvent,
    FlowEventType,
    Headers,
    Message,
    Node,
    NodePolicy,
    create,
)
from penguiflow.core._logging import (
    JsonFormatter,
    configure_json_logging,
    event_log_fields,
    log_flow_events,
)

RETRY_ONCE = NodePolicy(max_retries=1, backoff_base=0.001, jitter=0.0)


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class _CountingFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def format(self, record: logging.LogRecord) -> str:
        self.calls += 1
        return super().format(record)


@pytest.fixture
def isolated_logger(request: pytest.FixtureRequest) -> Iterator[logging.Logger]:
    logger = logging.getLogger(f"pftest.{request.node.name}")
    logger.propagate = False
    yield logger
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)
    logger.propagate = True


def _field(record: logging.LogRecord, key: str) -> Any:
    """A field the record got through ``extra``."""
    return record.__dict__[key]


def _msg(payload: Any, trace_id: str) -> Message:
    return Message(payload=payload, headers=Headers(tenant="t"), trace_id=trace_id)


async def _double(msg: Message, ctx: Context) -> int:
    return msg.payload * 2


async def _always_fails(msg: Message, ctx: Context) -> None:
    raise ValueError(f"bad input {msg.payload}")


async def _run_chain_with_failure(*hooks: Any) -> list[Any]:
    """One trace through ``double -> fails`` (retried once, then failed); returns the results."""
    fails = Node(_always_fails, name="fails", policy=RETRY_ONCE)
    double = Node(_double, name="double")
    flow = create(double.to(fails), fails.to(), emit_errors_to_rookery=True)
    for hook in hooks:
        flow.add_event_hook(hook)
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(_msg(21, "trace-1"))
            return [await flow.fetch(trace_id="trace-1")]


async def test_silenced_logger_builds_no_fields_and_formats_nothing(
    isolated_logger: logging.Logger,
) -> None:
    built: list[FlowEvent] = []

    def counting_fields(event: FlowEvent) -> Mapping[str, Any]:
        built.append(event)
        return event_log_fields(event)

    formatter = _CountingFormatter()
    handler = _ListHandler()
    handler.setFormatter(formatter)
    isolated_logger.addHandler(handler)
    isolated_logger.setLevel(logging.CRITICAL)  # silences both INFO and ERROR events
    seen: list[FlowEvent] = []
    hook = log_flow_events(isolated_logger, fields=counting_fields)

    results = await _run_chain_with_failure(seen.append, hook)

    assert isinstance(results[0], FlowError)
    assert {e.event_type for e in seen} >= {FlowEventType.NODE_START, FlowEventType.NODE_FAILED}
    assert built == []
    assert formatter.calls == 0
    assert handler.records == []


async def test_enabled_logger_builds_fields_once_per_event(
    isolated_logger: logging.Logger,
) -> None:
    built: list[FlowEvent] = []

    def counting_fields(event: FlowEvent) -> Mapping[str, Any]:
        built.append(event)
        return event_log_fields(event)

    handler = _ListHandler()
    isolated_logger.addHandler(handler)
    isolated_logger.setLevel(logging.DEBUG)
    seen: list[FlowEvent] = []

    await _run_chain_with_failure(
        seen.append, log_flow_events(isolated_logger, fields=counting_fields)
    )

    assert built == seen
    assert len(handler.records) == len(seen)


async def test_error_events_are_logged_at_error_level(isolated_logger: logging.Logger) -> None:
    handler = _ListHandler()
    isolated_logger.addHandler(handler)
    isolated_logger.setLevel(logging.DEBUG)

    await _run_chain_with_failure(
        log_flow_events(isolated_logger, level=logging.DEBUG, error_level=logging.WARNING)
    )

    levels = {(_field(r, "event"), _field(r, "node_name")): r.levelno for r in handler.records}
    assert levels[("node_error", "fails")] == logging.WARNING
    assert levels[("node_failed", "fails")] == logging.WARNING
    assert levels[("node_start", "fails")] == logging.DEBUG
    assert levels[("node_retry", "fails")] == logging.DEBUG
    assert levels[("node_success", "double")] == logging.DEBUG
    assert levels[("emit", None)] == logging.DEBUG
    errors = [r for r in handler.records if _field(r, "event") == "node_error"]
    assert [_field(r, "attempt") for r in errors] == [0, 1]
    assert all(_field(r, "exception") == "ValueError('bad input 42')" for r in errors)


async def test_only_errors_are_emitted_when_the_logger_sits_between_the_levels(
    isolated_logger: logging.Logger,
) -> None:
    handler = _ListHandler()
    isolated_logger.addHandler(handler)
    isolated_logger.setLevel(logging.WARNING)

    await _run_chain_with_failure(log_flow_events(isolated_logger))

    assert [_field(r, "event") for r in handler.records] == [
        "node_error",
        "node_error",
        "node_failed",
    ]


async def test_timeout_events_are_logged_at_error_level(isolated_logger: logging.Logger) -> None:
    async def stuck(msg: Message, ctx: Context) -> None:
        await anyio.sleep_forever()

    handler = _ListHandler()
    isolated_logger.addHandler(handler)
    isolated_logger.setLevel(logging.DEBUG)
    node = Node(stuck, policy=NodePolicy(timeout_s=0.01))
    flow = create(node.to(), emit_errors_to_rookery=True, on_event=log_flow_events(isolated_logger))
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(_msg(1, "slow"))
            assert isinstance(await flow.fetch(trace_id="slow"), FlowError)

    by_event = {_field(r, "event"): r.levelno for r in handler.records}
    assert by_event["node_timeout"] == logging.ERROR
    assert by_event["node_start"] == logging.INFO


async def test_message_is_the_event_type_and_the_fields_name_node_trace_and_latency(
    isolated_logger: logging.Logger,
) -> None:
    # As the original penguiflow: code that picks records by their message keeps working.
    handler = _ListHandler()
    isolated_logger.addHandler(handler)
    isolated_logger.setLevel(logging.INFO)

    await _run_chain_with_failure(log_flow_events(isolated_logger))

    assert [r.getMessage() for r in handler.records] == [
        _field(r, "event") for r in handler.records
    ]
    success = next(r for r in handler.records if r.getMessage() == "node_success")
    assert (_field(success, "node_name"), _field(success, "trace_id")) == ("double", "trace-1")
    assert _field(success, "latency_ms") > 0


async def test_event_filter_logs_only_the_selected_types(isolated_logger: logging.Logger) -> None:
    handler = _ListHandler()
    isolated_logger.addHandler(handler)
    isolated_logger.setLevel(logging.DEBUG)

    await _run_chain_with_failure(
        log_flow_events(isolated_logger, events=["node_failed", FlowEventType.NODE_RETRY])
    )

    assert [_field(r, "event") for r in handler.records] == ["node_retry", "node_failed"]


def test_unknown_event_type_in_the_filter_is_rejected_with_the_known_types() -> None:
    with pytest.raises(ValueError, match="event types are: node_start, node_success"):
        log_flow_events(events=["node_finished"])


def test_default_logger_is_penguiflow_events() -> None:
    assert log_flow_events().logger is logging.getLogger("penguiflow.events")
    assert log_flow_events("custom.name").logger is logging.getLogger("custom.name")


def test_event_fields_that_clash_with_log_record_attributes_are_renamed(
    isolated_logger: logging.Logger,
) -> None:
    handler = _ListHandler()
    isolated_logger.addHandler(handler)
    isolated_logger.setLevel(logging.INFO)
    event = FlowEvent(
        event_type=FlowEventType.STREAM_CHUNK,
        ts=1.0,
        node_name="n",
        node_id="n#1",
        trace_id="t",
        extra=MappingProxyType({"name": "clash", "message": "clash too", "seq": 3}),
    )

    log_flow_events(isolated_logger)(event)  # logging would raise KeyError on a clash

    (record,) = handler.records
    assert _field(record, "event_name") == "clash"
    assert _field(record, "event_message") == "clash too"
    assert _field(record, "seq") == 3
    assert record.name == isolated_logger.name


async def test_json_lines_parse_and_carry_the_event_fields(
    isolated_logger: logging.Logger,
) -> None:
    stream = io.StringIO()
    configure_json_logging(isolated_logger, logging.INFO, stream=stream)
    seen: list[FlowEvent] = []

    await _run_chain_with_failure(seen.append, log_flow_events(isolated_logger))

    lines = stream.getvalue().splitlines()
    entries = [cast(dict[str, Any], json.loads(line)) for line in lines]
    assert [e["event"] for e in entries] == [e.event_type.value for e in seen]
    for entry, event in zip(entries, seen, strict=True):
        assert entry["logger"] == isolated_logger.name
        assert entry["trace_id"] == "trace-1"
        assert entry["node_name"] == event.node_name
        assert entry["latency_ms"] == event.latency_ms
        assert entry["q_depth_in"] == event.queue_depth_in
        assert entry["ts"] == event.ts
        assert entry["timestamp"].endswith("+00:00")
        assert entry["message"].startswith(event.event_type.value)
    failed = next(e for e in entries if e["event"] == "node_failed")
    assert failed["level"] == "ERROR"
    assert failed["flow_error"]["code"] == "NODE_EXCEPTION"
    assert next(e for e in entries if e["event"] == "node_start")["level"] == "INFO"


def test_json_formatter_writes_odd_values_as_their_repr() -> None:
    class Opaque:
        def __repr__(self) -> str:
            return "<opaque>"

    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "hello %s", ("world",), None)
    odd: dict[str, Any] = {
        "opaque": Opaque(),
        "proxy": MappingProxyType({"a": 1}),
        "tags": ("a", "b"),
        "level": "clashes with a base key",
    }
    for key, value in odd.items():
        setattr(record, key, value)

    entry = json.loads(JsonFormatter().format(record))

    assert entry["message"] == "hello world"
    assert entry["level"] == "WARNING"
    assert entry["level_"] == "clashes with a base key"
    assert entry["opaque"] == "<opaque>"
    assert entry["proxy"] == {"a": 1}
    assert entry["tags"] == ["a", "b"]


def test_json_formatter_survives_values_json_cannot_encode() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    loop: list[Any] = []
    loop.append(loop)
    record.__dict__.update(
        {"nan": float("nan"), "tuple_keys": {(1, 2): "v"}, "cycle": loop, "nums": {3}}
    )

    line = JsonFormatter().format(record)

    entry = json.loads(line)  # strict JSON: NaN would not parse with parse_constant raising
    assert entry["nan"] == "nan"
    assert entry["tuple_keys"] == {"(1, 2)": "v"}
    assert entry["nums"] == [3]
    assert isinstance(entry["cycle"], list)
    assert "NaN" not in line


def test_json_formatter_includes_the_exception_traceback() -> None:
    try:
        raise RuntimeError("kaboom")
    except RuntimeError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())

    entry = json.loads(JsonFormatter().format(record))

    assert "RuntimeError: kaboom" in entry["exc_info"]


def test_configure_json_logging_twice_keeps_one_json_handler(
    isolated_logger: logging.Logger,
) -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_json_logging(isolated_logger, stream=first)
    logger = configure_json_logging(isolated_logger.name, logging.WARNING, stream=second)

    logger.warning("once")
    logger.info("filtered out")

    assert logger is isolated_logger
    assert len([h for h in logger.handlers if isinstance(h.formatter, JsonFormatter)]) == 1
    assert first.getvalue() == ""
    assert [json.loads(line)["message"] for line in second.getvalue().splitlines()] == ["once"]
