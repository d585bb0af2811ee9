"""SessionLimits (§8): validation, spawn-time limits recorded-nothing, runtime timeouts."""

from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from penguiflow.sessions import (
    SessionLimitExceeded,
    SessionLimits,
    SteeringEvent,
    SteeringEventType,
    StreamingSession,
    TaskErrorCode,
    TaskFailed,
    TaskRuntime,
    TaskState,
    TaskStatus,
    UpdateType,
)

FIELDS = [
    "max_tasks_per_session",
    "max_background_tasks",
    "max_concurrent_tasks",
    "max_task_runtime_s",
    "max_tasks_per_group",
    "max_pending_patches",
    "update_queue_size",
    "replay_buffer_size",
    "steering_queue_size",
    "max_pending_user_messages",
    "max_steering_payload_bytes",
    "max_steering_events_per_task",
]


def test_the_defaults_are_the_contracts() -> None:
    limits = SessionLimits()
    assert [getattr(limits, f) for f in FIELDS] == [
        8, 4, 3, 900, 10, 32, 500, 1000, 200, 2, 16_384, 512,
    ]  # fmt: skip


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("bad", [0, -1, True, "3"])
def test_every_field_refuses_zero_negative_and_non_numbers(field: str, bad: object) -> None:
    kwargs: dict[str, Any] = {field: bad}
    with pytest.raises(ValueError, match="None for unlimited"):
        SessionLimits(**kwargs)


@pytest.mark.parametrize("field", FIELDS)
def test_every_field_accepts_none_for_unlimited(field: str) -> None:
    kwargs: dict[str, Any] = {field: None}
    assert getattr(SessionLimits(**kwargs), field) is None


def test_a_misspelt_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="max_task_per_session"):
        SessionLimits(**{"max_task_per_session": 3})


def test_runtime_refuses_infinity_and_accepts_fractions() -> None:
    with pytest.raises(ValueError):
        SessionLimits(max_task_runtime_s=float("inf"))
    assert SessionLimits(max_task_runtime_s=0.5).max_task_runtime_s == 0.5


def state_of(session: StreamingSession, tid: str) -> TaskState:
    state = session.get_task(tid)
    assert state is not None
    return state


async def until(predicate: Callable[[], bool]) -> None:
    while not predicate():
        await anyio.lowlevel.checkpoint()


async def forever(runtime: TaskRuntime) -> None:
    await anyio.sleep_forever()


async def test_max_background_tasks_raises_before_anything_is_recorded() -> None:
    limits = SessionLimits(max_background_tasks=2, max_concurrent_tasks=1)
    async with StreamingSession("s1", limits=limits) as session:
        with anyio.fail_after(5):
            for _ in range(2):
                await session.spawn_task(forever, task_type="BACKGROUND")
            before = (session.list_tasks(), await session.list_updates())
            with pytest.raises(SessionLimitExceeded) as info:
                await session.spawn_task(forever, task_type="BACKGROUND", task_id="third")
            assert (session.list_tasks(), await session.list_updates()) == before
            # The foreground is not a background task: it may still start.
            await session.spawn_task(forever)
    error = info.value
    assert (error.limit, error.value, error.current) == ("max_background_tasks", 2, 2)
    assert str(error) == (
        "session 's1' already has 2 live background tasks (SessionLimits.max_background_tasks=2);"
        " wait for one to finish or raise the limit"
    )


async def test_max_tasks_per_session_counts_every_live_task() -> None:
    limits = SessionLimits(max_tasks_per_session=2)
    async with StreamingSession("s1", limits=limits) as session:
        with anyio.fail_after(5):
            first = await session.spawn_task(forever, task_type="BACKGROUND")
            await session.spawn_task(forever)  # foreground counts too
            with pytest.raises(SessionLimitExceeded) as info:
                await session.spawn_task(forever, task_type="BACKGROUND")
            assert info.value.limit == "max_tasks_per_session"
            assert "already has 2 live tasks" in str(info.value)
            await session.cancel_task(first)  # a finished task frees its place
            await session.spawn_task(forever, task_type="BACKGROUND")


async def test_an_interrupting_foreground_spawn_does_not_count_the_task_it_replaces() -> None:
    limits = SessionLimits(max_tasks_per_session=1)
    async with StreamingSession("s1", limits=limits) as session:
        with anyio.fail_after(5):
            old = await session.spawn_task(forever)
            with pytest.raises(SessionLimitExceeded):
                await session.spawn_task(forever, if_busy="queue")
            assert state_of(session, old).status is not TaskStatus.CANCELLED
            await session.spawn_task(forever, if_busy="interrupt")
            assert state_of(session, old).status is TaskStatus.CANCELLED


async def test_a_task_past_its_runtime_fails_with_task_timeout() -> None:
    async with StreamingSession("s1", limits=SessionLimits(max_task_runtime_s=0.05)) as session:
        with anyio.fail_after(5):
            with pytest.raises(TaskFailed) as info:
                await session.run_task(forever)
        updates = await session.list_updates()
    assert info.value.code is TaskErrorCode.TASK_TIMEOUT
    last = updates[-1].content
    assert isinstance(last, dict)
    assert (last["status"], last["previous"], last["reason"]) == ("FAILED", "RUNNING", "timeout")
    error = updates[-2]
    assert error.update_type is UpdateType.ERROR
    assert isinstance(error.content, dict) and error.content["code"] == "TASK_TIMEOUT"


async def test_time_parked_at_a_checkpoint_never_counts_toward_the_runtime() -> None:
    # The limit is far shorter than the time the task waits for its answer.
    async def ask(runtime: TaskRuntime) -> str:
        answer = await runtime.checkpoint("ok?")
        return answer.decision

    limits = SessionLimits(max_task_runtime_s=0.2)
    async with StreamingSession("s1", limits=limits) as session:
        with anyio.fail_after(5):
            tid = await session.spawn_task(ask)
            await until(lambda: state_of(session, tid).checkpoint is not None)
            state = state_of(session, tid)
            assert state.checkpoint is not None
            await anyio.sleep(0.5)
            await session.steer(
                SteeringEvent(
                    session_id="s1",
                    task_id=tid,
                    event_type=SteeringEventType.APPROVE,
                    payload={"resume_token": state.checkpoint.resume_token},
                )
            )
            final = await session.wait_task(tid)
    assert final.status is TaskStatus.COMPLETE and final.result == "approve"


async def test_time_paused_by_steering_never_counts_toward_the_runtime() -> None:
    async def steps(runtime: TaskRuntime) -> str:
        for _ in range(3):
            await runtime.pause_point()
            await anyio.sleep(0.01)
        return "done"

    async with StreamingSession("s1", limits=SessionLimits(max_task_runtime_s=0.3)) as session:
        with anyio.fail_after(5):
            tid = await session.spawn_task(steps)
            pause = SteeringEvent(session_id="s1", task_id=tid, event_type=SteeringEventType.PAUSE)
            await session.steer(pause)
            await until(lambda: state_of(session, tid).status is TaskStatus.PAUSED)
            await anyio.sleep(0.6)
            resume = SteeringEvent(
                session_id="s1", task_id=tid, event_type=SteeringEventType.RESUME
            )
            await session.steer(resume)
            assert (await session.wait_task(tid)).status is TaskStatus.COMPLETE


async def test_a_timed_out_background_task_frees_its_slot() -> None:
    limits = SessionLimits(max_task_runtime_s=0.05, max_concurrent_tasks=1)

    async def quick(runtime: TaskRuntime) -> str:
        return "ok"

    async with StreamingSession("s1", limits=limits) as session:
        with anyio.fail_after(5):
            slow = await session.spawn_task(forever, task_type="BACKGROUND")
            fast = await session.spawn_task(quick, task_type="BACKGROUND")
            error = (await session.wait_task(slow)).error
            assert error is not None and error.code is TaskErrorCode.TASK_TIMEOUT
            assert (await session.wait_task(fast)).status is TaskStatus.COMPLETE


@settings(max_examples=30, deadline=None)
@given(
    ops=st.lists(
        st.tuples(st.sampled_from(["fg", "bg", "end"]), st.integers(min_value=0, max_value=7)),
        max_size=20,
    ),
    per_session=st.integers(min_value=1, max_value=4),
    background=st.integers(min_value=1, max_value=3),
)
def test_spawns_succeed_exactly_while_under_both_limits(
    ops: list[tuple[str, int]], per_session: int, background: int
) -> None:
    async def main() -> None:
        limits = SessionLimits(
            max_tasks_per_session=per_session,
            max_background_tasks=background,
            max_concurrent_tasks=None,
        )
        async with StreamingSession("s1", limits=limits) as session:
            with anyio.fail_after(10):
                for op, pick in ops:
                    live = session.list_tasks(status="RUNNING") + session.list_tasks(
                        status="PENDING"
                    )
                    if op == "end":
                        if live:
                            await session.cancel_task(live[pick % len(live)].task_id)
                        continue
                    live_bg = [t for t in live if t.task_type == "BACKGROUND"]
                    kw: dict[str, Any] = (
                        {"task_type": "BACKGROUND"} if op == "bg" else {"if_busy": "queue"}
                    )
                    allowed = len(live) < per_session and (op == "fg" or len(live_bg) < background)
                    count = len(session.list_tasks())
                    try:
                        await session.spawn_task(forever, **kw)
                        assert allowed
                        assert len(session.list_tasks()) == count + 1
                    except SessionLimitExceeded:
                        assert not allowed
                        assert len(session.list_tasks()) == count

    anyio.run(main)
