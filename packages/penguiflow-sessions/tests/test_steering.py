"""Steering (§5): checks in order, receipts with reasons, parked agent events, task effects."""

from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from penguiflow.planner import SteeringEvent as PlannerSteeringEvent
from penguiflow.planner import SteeringInbox as PlannerSteeringInbox
from penguiflow.sessions import (
    ControlPolicy,
    SessionLimits,
    SteeringEvent,
    SteeringEventType,
    SteeringInbox,
    SteeringOutcome,
    StreamingSession,
    TaskRuntime,
    TaskStatus,
    TaskType,
    UpdateType,
)

E = SteeringEventType


class Parked:
    """Runs until cancelled; exposes its runtime."""

    def __init__(self) -> None:
        self.running = anyio.Event()
        self.runtime: TaskRuntime | None = None

    async def __call__(self, runtime: TaskRuntime) -> None:
        self.runtime = runtime
        self.running.set()
        await anyio.sleep_forever()


def ev(tid: str, kind: SteeringEventType, sid: str = "s1", **kw: Any) -> SteeringEvent:
    return SteeringEvent(session_id=sid, task_id=tid, event_type=kind, **kw)


async def started(session: StreamingSession) -> tuple[str, Parked]:
    pipe = Parked()
    tid = await session.spawn_task(pipe)
    await pipe.running.wait()
    return tid, pipe


def test_session_types_are_the_planners() -> None:
    assert isinstance(ev("t", E.CANCEL), PlannerSteeringEvent)
    assert issubclass(SteeringInbox, PlannerSteeringInbox)
    with pytest.raises(ValidationError):
        ev("t", E.INJECT_CONTEXT, payload={"text": object()})


async def test_session_mismatch_invalid_and_unknown_task_are_rejected_with_reasons() -> None:
    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            tid, _ = await started(session)
            r = await session.steer(ev(tid, E.PAUSE, sid="other"))
            assert (r.outcome, r.reason, bool(r)) == (
                SteeringOutcome.REJECTED,
                "session_mismatch",
                False,
            )
            r = await session.steer(ev(tid, E.REDIRECT, payload={}))
            assert r.reason == "invalid" and r.errors
            r = await session.steer(ev(tid, E.PRIORITIZE, payload={"priority": True}))
            assert r.reason == "invalid"
            r = await session.steer(ev("nope", E.INJECT_CONTEXT, payload={"text": "x"}))
            assert r.reason == "unknown_task"
            assert session.statistics().steering_rejected == 4
            assert session.statistics().steering_received == 4


async def test_payloads_are_clamped_and_oversized_ones_rejected() -> None:
    limits = SessionLimits(max_steering_payload_bytes=20_000)
    async with StreamingSession("s1", limits=limits) as session:
        with anyio.fail_after(5):
            tid, pipe = await started(session)
            deep: Any = "leaf"
            for _ in range(10):
                deep = {"d": deep}
            payload = {"text": "x" * 5000, "many": list(range(80)), "deep": deep}
            r = await session.steer(ev(tid, E.INJECT_CONTEXT, payload=payload))
            assert r.outcome is SteeringOutcome.DELIVERED and r.truncated
            assert pipe.runtime is not None
            (got,) = pipe.runtime.steering.drain()
            assert got.payload["text"] == "x" * 4096
            assert got.payload["many"] == list(range(50))
            big = {"text": "y", **{f"k{i}": "z" * 4000 for i in range(10)}}
            r = await session.steer(ev(tid, E.INJECT_CONTEXT, payload=big))
            assert (r.outcome, r.reason) == (SteeringOutcome.REJECTED, "payload_too_large")


async def test_a_repeated_event_id_is_a_duplicate_and_delivered_once() -> None:
    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            tid, pipe = await started(session)
            event = ev(tid, E.INJECT_CONTEXT, payload={"text": "hi"})
            assert (await session.steer(event)).outcome is SteeringOutcome.DELIVERED
            assert (await session.steer(event)).outcome is SteeringOutcome.DUPLICATE
            assert pipe.runtime is not None and len(pipe.runtime.steering) == 1


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=12))
def test_dedup_delivers_each_event_id_exactly_once_in_first_seen_order(ids: list[str]) -> None:
    async def scenario() -> None:
        limits = SessionLimits(steering_queue_size=100, max_pending_user_messages=None)
        async with StreamingSession("s1", limits=limits) as session:
            with anyio.fail_after(5):
                tid, pipe = await started(session)
                outcomes = [
                    (
                        await session.steer(
                            ev(tid, E.INJECT_CONTEXT, event_id=i, payload={"text": i})
                        )
                    ).outcome
                    for i in ids
                ]
                assert pipe.runtime is not None
                delivered = [e.event_id for e in pipe.runtime.steering.drain()]
        assert delivered == list(dict.fromkeys(ids))
        assert outcomes.count(SteeringOutcome.DUPLICATE) == len(ids) - len(set(ids))

    anyio.run(scenario)


async def test_inbox_full_and_user_message_limit_are_rejected() -> None:
    limits = SessionLimits(steering_queue_size=3, max_pending_user_messages=1)
    async with StreamingSession("s1", limits=limits) as session:
        with anyio.fail_after(5):
            tid, pipe = await started(session)
            assert await session.steer(ev(tid, E.USER_MESSAGE, payload={"text": "1"}))
            r = await session.steer(ev(tid, E.USER_MESSAGE, payload={"text": "2"}))
            assert r.reason == "inbox_full"
            assert await session.steer(ev(tid, E.INJECT_CONTEXT, payload={"text": "a"}))
            assert await session.steer(ev(tid, E.REDIRECT, payload={"instruction": "b"}))
            r = await session.steer(ev(tid, E.INJECT_CONTEXT, payload={"text": "c"}))
            assert r.reason == "inbox_full"
            assert pipe.runtime is not None
            first = await pipe.runtime.steering.next()
            assert first.event_type is E.USER_MESSAGE and pipe.runtime.steering.has_event()


async def test_user_cancel_is_applied_and_ends_the_task_cancelled() -> None:
    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            tid, pipe = await started(session)
            r = await session.steer(ev(tid, E.CANCEL, payload={"reason": "enough"}))
            assert r.outcome is SteeringOutcome.APPLIED
            state = await session.wait_task(tid)
            assert (state.status, state.cancel_reason) == (TaskStatus.CANCELLED, "enough")
            assert pipe.runtime is not None and pipe.runtime.steering.cancel_reason == "enough"
            r = await session.steer(ev(tid, E.PAUSE))
            assert r.reason == "task_finished"


async def test_an_agent_cancel_is_parked_until_the_user_approves() -> None:
    async with StreamingSession("s1") as session:
        async with session.subscribe(update_types=[UpdateType.CHECKPOINT]) as sub:
            with anyio.fail_after(5):
                tid, _ = await started(session)
                cancel = ev(tid, E.CANCEL, source="agent", payload={"confirmed": True})
                r = await session.steer(cancel)
                assert r.outcome is SteeringOutcome.PARKED and r.resume_token
                checkpoint = await anext(sub)
                assert checkpoint.content == {
                    "kind": "confirm_steering",
                    "resume_token": r.resume_token,
                    "event_type": "cancel",
                }
                assert session.get_task(tid).status is TaskStatus.RUNNING  # type: ignore[union-attr]
                token = {"resume_token": r.resume_token}
                agent_ok = await session.steer(ev(tid, E.APPROVE, source="agent", payload=token))
                assert agent_ok.reason == "approval_requires_user"
                ok = await session.steer(ev(tid, E.APPROVE, payload=token))
                assert ok.outcome is SteeringOutcome.APPLIED
                assert (await session.wait_task(tid)).status is TaskStatus.CANCELLED
                again = await session.steer(ev(tid, E.APPROVE, payload=token))
                assert again.reason == "unknown_token"


async def test_a_rejected_parked_redirect_is_dropped() -> None:
    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            tid, pipe = await started(session)
            r = await session.steer(
                ev(tid, E.REDIRECT, source="agent", payload={"instruction": "x"})
            )
            assert r.outcome is SteeringOutcome.PARKED
            no = await session.steer(ev(tid, E.REJECT, payload={"resume_token": r.resume_token}))
            assert no.outcome is SteeringOutcome.APPLIED
            assert pipe.runtime is not None and len(pipe.runtime.steering) == 0
            assert (await session.steer(ev(tid, E.APPROVE, payload={"patch_id": "p"}))).reason == (
                "unknown_patch"
            )


async def test_a_policy_without_confirmation_applies_agent_cancels() -> None:
    async with StreamingSession(
        "s1", control_policy=ControlPolicy(require_confirmation=False)
    ) as s:
        with anyio.fail_after(5):
            tid, _ = await started(s)
            r = await s.steer(ev(tid, E.CANCEL, source="agent"))
            assert r.outcome is SteeringOutcome.APPLIED


async def test_pause_parks_at_pause_point_and_resume_continues() -> None:
    gate = anyio.Event()

    async def stepper(runtime: TaskRuntime) -> str:
        await gate.wait()
        await runtime.pause_point()
        return "done"

    async with StreamingSession("s1") as session:
        async with session.subscribe(update_types=[UpdateType.STATUS_CHANGE]) as sub:
            with anyio.fail_after(5):
                tid = await session.spawn_task(stepper)
                assert await session.steer(ev(tid, E.PAUSE, payload={"reason": "hold"}))
                gate.set()
                reasons: list[object] = []
                async for update in sub:
                    content = update.content
                    assert isinstance(content, dict)
                    reasons.append(content["reason"])
                    if content["status"] == "PAUSED":
                        assert await session.steer(ev(tid, E.RESUME))
                    if content["status"] == "COMPLETE":
                        break
                state = await session.wait_task(tid)
    assert state.status is TaskStatus.COMPLETE
    assert reasons == ["created", "started", "paused", "resumed", "completed"]


async def test_prioritize_reorders_pending_background_tasks() -> None:
    order: list[str] = []

    def named(name: str) -> Any:
        async def pipe(runtime: TaskRuntime) -> None:
            order.append(name)

        return pipe

    blocker = Parked()
    limits = SessionLimits(max_concurrent_tasks=1)
    async with StreamingSession("s1", limits=limits) as session:
        with anyio.fail_after(5):
            b = await session.spawn_task(blocker, task_type=TaskType.BACKGROUND)
            await blocker.running.wait()
            low = await session.spawn_task(named("low"), task_type=TaskType.BACKGROUND)
            high = await session.spawn_task(named("high"), task_type=TaskType.BACKGROUND)
            r = await session.steer(ev(low, E.PRIORITIZE, payload={"priority": 5}))
            assert r.outcome is SteeringOutcome.APPLIED
            assert session.get_task(low).priority == 5  # type: ignore[union-attr]
            await session.cancel_task(b)
            await session.wait_task(low)
            await session.wait_task(high)
    assert order == ["low", "high"]


async def test_broadcast_steer_reaches_every_live_task() -> None:
    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            _, one = await started(session)
            two = Parked()
            await session.spawn_task(two, task_type=TaskType.BACKGROUND)
            await two.running.wait()
            n = await session.broadcast_steer(E.INJECT_CONTEXT, {"text": "note"})
            assert n == 2
            assert one.runtime is not None and two.runtime is not None
            assert len(one.runtime.steering) == len(two.runtime.steering) == 1
