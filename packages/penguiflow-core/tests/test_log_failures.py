"""A message's terminal failure is logged once, at the level create(log_failures=...) chooses."""

from __future__ import annotations

import logging

import anyio
import pytest

from penguiflow.core import Context, FlowError, Headers, Message, Node, PenguiFlow, create


def msg(trace_id: str) -> Message:
    return Message(payload="x", headers=Headers(tenant="t"), trace_id=trace_id)


async def boom(message: Message, ctx: Context) -> None:
    raise ValueError("bad input")


async def fail_unwatched(flow: PenguiFlow, trace_id: str) -> None:
    """Emit a failing message with nobody waiting on its trace, then learn the error late."""
    async with flow.running():
        await flow.emit(msg(trace_id))
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(FlowError):
            await flow.fetch(trace_id=trace_id)


async def test_an_unwatched_failure_is_logged_once_at_error_by_default(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="penguiflow.core")
    with anyio.fail_after(5):
        await fail_unwatched(create(Node(boom).to()), "unwatched")
    records = [r for r in caplog.records if "unwatched" in r.getMessage()]
    assert [r.levelno for r in records] == [logging.ERROR]
    assert "[NODE_EXCEPTION] ValueError: bad input" in records[0].getMessage()


@pytest.mark.parametrize(
    ("choice", "level"), [(logging.WARNING, logging.WARNING), ("info", logging.INFO)]
)
async def test_log_failures_chooses_the_level(
    caplog: pytest.LogCaptureFixture, choice: int | str, level: int
) -> None:
    caplog.set_level(logging.DEBUG, logger="penguiflow.core")
    with anyio.fail_after(5):
        await fail_unwatched(create(Node(boom).to(), log_failures=choice), "chosen")
    records = [r for r in caplog.records if "chosen" in r.getMessage()]
    assert [r.levelno for r in records] == [level]


async def test_log_failures_none_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="penguiflow.core")
    with anyio.fail_after(5):
        await fail_unwatched(create(Node(boom).to(), log_failures=None), "silent")
    assert [r for r in caplog.records if "silent" in r.getMessage()] == []


async def test_a_failure_raised_to_a_waiting_caller_is_logged_at_debug_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="penguiflow.core")
    flow = create(Node(boom).to())
    with anyio.fail_after(5), pytest.raises(FlowError):
        await flow.call(msg("watched"))
    records = [r for r in caplog.records if "watched" in r.getMessage()]
    assert [r.levelno for r in records] == [logging.DEBUG]


@pytest.mark.parametrize("bad", ["LOUD", True, 2.5])
def test_log_failures_rejects_what_is_not_a_level(bad: object) -> None:
    with pytest.raises(ValueError, match=r"log_failures must be a logging level"):
        create(Node(boom).to(), log_failures=bad)  # pyright: ignore[reportArgumentType]


async def test_silencing_the_library_logger_silences_failures(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The README's recipe: raise the level of the `penguiflow` logger."""
    caplog.set_level(logging.DEBUG)
    library = logging.getLogger("penguiflow")
    before = library.level
    library.setLevel(logging.CRITICAL)
    try:
        with anyio.fail_after(5):
            await fail_unwatched(create(Node(boom).to()), "muted")
    finally:
        library.setLevel(before)
    assert [r for r in caplog.records if "muted" in r.getMessage()] == []


async def test_a_failure_delivered_to_rookery_is_logged_at_debug_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="penguiflow.core")
    flow = create(Node(boom).to(), emit_errors_to_rookery=True)
    with anyio.fail_after(5):
        async with flow.running():
            await flow.emit(msg("as-item"))
            await anyio.wait_all_tasks_blocked()
            assert isinstance(await flow.fetch(trace_id="as-item"), FlowError)
    records = [r for r in caplog.records if "as-item" in r.getMessage()]
    assert [r.levelno for r in records] == [logging.DEBUG]
