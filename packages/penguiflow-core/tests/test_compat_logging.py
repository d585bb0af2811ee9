"""log_flow_events as a middleware, its levels and latency callback; the original's formatters."""

from __future__ import annotations

import inspect
import io
import json
import logging
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from penguiflow.core import (
    Context,
    ExtraFormatter,
    FlowError,
    FlowEvent,
    FlowEventType,
    Headers,
    Message,
    Middleware,
    Node,
    NodePolicy,
    PenguiFlow,
    StructuredFormatter,
    configure_logging,
    create,
    log_flow_events,
)

RETRY_ONCE = NodePolicy(max_retries=1, backoff_base=0.001, jitter=0.0)


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def logger(request: pytest.FixtureRequest) -> Iterator[logging.Logger]:
    logger = logging.getLogger(f"pfcompat.{request.node.name}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    yield logger
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)
    logger.propagate = True


def _records(logger: logging.Logger) -> list[logging.LogRecord]:
    handler = _ListHandler()
    logger.addHandler(handler)
    return handler.records


def _msg(payload: Any, trace_id: str) -> Message:
    return Message(payload=payload, headers=Headers(tenant="t"), trace_id=trace_id)


async def _double(msg: Message, ctx: Context) -> Message:
    return msg.with_payload(msg.payload * 2)


async def _always_fails(msg: Message, ctx: Context) -> None:
    raise ValueError("boom")


def _chain(**kwargs: Any) -> PenguiFlow:
    """``double -> fails`` (retried once, then failed)."""
    fails = Node(_always_fails, name="fails", policy=RETRY_ONCE)
    double = Node(_double, name="double")
    return create(double.to(fails), fails.to(), emit_errors_to_rookery=True, **kwargs)


async def _run(flow: PenguiFlow) -> Any:
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(_msg(21, "trace-1"))
            return await flow.fetch(trace_id="trace-1")


def _events(records: list[logging.LogRecord]) -> list[tuple[str, str | None]]:
    return [(r.getMessage(), r.__dict__["node_name"]) for r in records]


EXPECTED_EVENTS = [
    ("emit", None),
    ("node_start", "double"),
    ("node_success", "double"),
    ("node_start", "fails"),
    ("node_error", "fails"),
    ("node_retry", "fails"),
    ("node_start", "fails"),
    ("node_error", "fails"),
    ("node_failed", "fails"),
    ("fetch", None),
]


# ------------------------------------------------------------------ one object, both ways


async def test_passed_as_a_middleware_it_logs_every_event_without_listener_errors(
    logger: logging.Logger,
) -> None:
    records = _records(logger)
    flow = _chain(middlewares=[log_flow_events(logger)])

    assert isinstance(await _run(flow), FlowError)

    assert _events(records) == EXPECTED_EVENTS
    assert flow.statistics().listener_errors == 0


async def test_passed_as_a_hook_it_logs_the_same_records(logger: logging.Logger) -> None:
    records = _records(logger)
    flow = _chain(on_event=log_flow_events(logger))

    assert isinstance(await _run(flow), FlowError)

    assert _events(records) == EXPECTED_EVENTS
    assert flow.statistics().listener_errors == 0


async def test_its_call_returns_an_awaitable_that_is_already_done(logger: logging.Logger) -> None:
    records = _records(logger)
    listener = log_flow_events(logger)
    middleware: Middleware = listener  # what create(middlewares=...) takes
    event = FlowEvent(FlowEventType.EMIT, 1.0, None, None, "t")

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a coroutine left unawaited would warn
        returned = listener(event)
    assert inspect.isawaitable(returned) and not inspect.iscoroutine(returned)
    with anyio.fail_after(1):
        assert await returned is None
        assert await middleware(event) is None
    assert [r.getMessage() for r in records] == ["emit", "emit"]


# ------------------------------------------------------------------ levels


async def test_start_success_error_and_other_levels_are_separate(logger: logging.Logger) -> None:
    records = _records(logger)
    listener = log_flow_events(
        logger,
        level=logging.DEBUG,
        start_level=logging.INFO,
        success_level=logging.WARNING,
        error_level=logging.CRITICAL,
    )

    await _run(_chain(middlewares=[listener]))

    levels = {r.getMessage(): r.levelno for r in records}
    assert levels == {
        "emit": logging.DEBUG,
        "node_start": logging.INFO,
        "node_success": logging.WARNING,
        "node_error": logging.CRITICAL,
        "node_retry": logging.DEBUG,
        "node_failed": logging.CRITICAL,
        "fetch": logging.DEBUG,
    }


async def test_start_and_success_levels_default_to_level(logger: logging.Logger) -> None:
    listener = log_flow_events(logger, level=logging.DEBUG)

    assert (listener.start_level, listener.success_level) == (logging.DEBUG, logging.DEBUG)
    assert log_flow_events(logger).start_level == logging.INFO


async def test_a_logger_between_start_and_success_levels_logs_successes_only(
    logger: logging.Logger,
) -> None:
    records = _records(logger)
    logger.setLevel(logging.INFO)
    listener = log_flow_events(
        logger, level=logging.DEBUG, start_level=logging.DEBUG, success_level=logging.INFO
    )

    await _run(_chain(middlewares=[listener]))

    assert [r.getMessage() for r in records] == [
        "node_success",
        "node_error",
        "node_error",
        "node_failed",
    ]


# ------------------------------------------------------------------ latency callback


async def test_latency_callback_gets_success_and_error_latencies_even_when_silenced(
    logger: logging.Logger,
) -> None:
    records = _records(logger)
    logger.setLevel(logging.CRITICAL + 1)
    seen: list[tuple[str, float, str | None]] = []

    def record_latency(event_type: str, latency_ms: float, event: FlowEvent) -> None:
        seen.append((event_type, latency_ms, event.node_name))

    listener = log_flow_events(logger, events=["node_failed"], latency_callback=record_latency)

    await _run(_chain(middlewares=[listener]))

    assert [(kind, node) for kind, _, node in seen] == [
        ("node_success", "double"),
        ("node_error", "fails"),
        ("node_error", "fails"),
    ]
    assert all(type(kind) is str and latency >= 0 for kind, latency, _ in seen)
    assert records == []


async def test_a_failing_latency_callback_is_logged_and_the_flow_goes_on(
    logger: logging.Logger,
) -> None:
    records = _records(logger)
    calls: list[str] = []

    def broken(event_type: str, latency_ms: float, event: FlowEvent) -> None:
        calls.append(event_type)
        raise RuntimeError("timer failed")

    flow = _chain(middlewares=[log_flow_events(logger, latency_callback=broken)])

    assert isinstance(await _run(flow), FlowError)

    failures = [
        r for r in records if r.__dict__.get("event") == "log_flow_events_latency_callback_error"
    ]
    assert len(failures) == len(calls) == 3
    assert all(r.levelno == logging.ERROR for r in failures)
    assert all(r.exc_info is not None and isinstance(r.exc_info[1], RuntimeError) for r in failures)
    assert [(r.__dict__["node_name"], r.__dict__["trace_id"]) for r in failures][0] == (
        "double",
        "trace-1",
    )
    assert flow.statistics().listener_errors == 0


# ------------------------------------------------------------------ StructuredFormatter


def _record(msg: str = "hello %s", args: tuple[Any, ...] = ("world",), **extra: Any) -> Any:
    record = logging.LogRecord("x.y", logging.INFO, __file__, 1, msg, args, None)
    record.__dict__.update(extra)
    return record


def test_structured_formatter_nests_the_extra_fields() -> None:
    record = _record(step=5, data={"nested": [1, 2]}, opaque=object(), ratio=float("inf"))

    line = StructuredFormatter(include_timestamp=False).format(record)

    entry = json.loads(line)
    assert (entry["level"], entry["logger"], entry["message"]) == ("INFO", "x.y", "hello world")
    assert "timestamp" not in entry
    assert entry["extra"]["step"] == 5
    assert entry["extra"]["data"] == {"nested": [1, 2]}
    assert entry["extra"]["opaque"].startswith("<object object")
    assert entry["extra"]["ratio"] == "inf"  # strict JSON: never a bare Infinity
    assert "\n" not in line


def test_structured_formatter_timestamp_indent_and_exception() -> None:
    try:
        raise ValueError("test error")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "m", None, sys.exc_info())

    output = StructuredFormatter(indent=2).format(record)

    entry = json.loads(output)
    assert "\n" in output
    assert entry["timestamp"].endswith("+00:00")
    assert "ValueError: test error" in entry["exception"]
    assert "extra" not in entry


# ------------------------------------------------------------------ ExtraFormatter


def test_extra_formatter_appends_fields_quoting_and_cutting_strings() -> None:
    record = _record(tool="search", count=42, active=True, long="x" * 200)

    output = ExtraFormatter("%(levelname)s - %(message)s").format(record)

    assert output.startswith("INFO - hello world [")
    assert 'tool="search"' in output
    assert "count=42" in output and "active=True" in output
    assert f'long="{"x" * 100}..."' in output


def test_extra_formatter_without_fields_formats_as_logging_does() -> None:
    record = _record()

    assert ExtraFormatter().format(record) == logging.Formatter().format(record) == "hello world"


def test_extra_formatter_puts_the_fields_before_the_traceback() -> None:
    try:
        raise RuntimeError("kaboom")
    except RuntimeError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    record.node_name = "parse"

    first, *rest = ExtraFormatter().format(record).splitlines()

    assert first == 'failed [node_name="parse"]'
    assert rest[-1] == "RuntimeError: kaboom"


# ------------------------------------------------------------------ configure_logging


@pytest.fixture
def configured(request: pytest.FixtureRequest) -> Iterator[logging.Logger]:
    logger = logging.getLogger(f"pfconfigure.{request.node.name}")
    yield logger
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)
    logger.propagate = True


def _capture(logger: logging.Logger) -> io.StringIO:
    (handler,) = logger.handlers
    assert isinstance(handler, logging.StreamHandler)
    stream = io.StringIO()
    handler.setStream(stream)  # pyright: ignore[reportUnknownMemberType]
    return stream


def test_configure_logging_replaces_the_handlers_and_stops_propagation(
    configured: logging.Logger,
) -> None:
    old = logging.StreamHandler()
    configured.addHandler(old)

    returned = configure_logging("WARNING", logger_name=configured.name)

    assert returned is configured
    assert len(configured.handlers) == 1 and configured.handlers[0] is not old
    assert configured.propagate is False
    assert configured.level == configured.handlers[0].level == logging.WARNING


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"structured": True}, None),
        ({}, 'INFO:{name}:action [tool="search"]\n'),
        ({"include_extras": False}, "INFO:{name}:action\n"),
    ],
)
def test_configure_logging_modes(
    configured: logging.Logger, options: dict[str, Any], expected: str | None
) -> None:
    configure_logging(logging.DEBUG, logger_name=configured.name, **options)
    stream = _capture(configured)

    configured.info("action", extra={"tool": "search"})

    if expected is None:
        entry = json.loads(stream.getvalue())
        assert (entry["message"], entry["extra"]) == ("action", {"tool": "search"})
    else:
        assert stream.getvalue() == expected.format(name=configured.name)


async def test_flow_events_through_configure_logging_read_as_json(
    configured: logging.Logger,
) -> None:
    configure_logging(logging.INFO, structured=True, logger_name=configured.name)
    stream = _capture(configured)

    await _run(_chain(middlewares=[log_flow_events(configured)]))

    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [e["message"] for e in entries] == [kind for kind, _ in EXPECTED_EVENTS]
    failed = next(e for e in entries if e["message"] == "node_failed")
    assert failed["level"] == "ERROR"
    assert failed["extra"]["node_name"] == "fails"
    assert failed["extra"]["flow_error"]["exception_type"] == "ValueError"
