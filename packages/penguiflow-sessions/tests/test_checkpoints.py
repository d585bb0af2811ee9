"""runtime.checkpoint() (§3): CHECKPOINT then PAUSED, answers by token or message, slots."""

from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from penguiflow.sessions import (
    CheckpointAnswer,
    CheckpointInfo,
    SessionError,
    SessionLimits,
    StateUpdate,
    SteeringEvent,
    SteeringEventType,
    SteeringOutcome,
    StreamingSession,
    TaskRuntime,
    TaskStatus,
    UpdateType,
)

E = SteeringEventType


class Asker:
    """Asks once at a checkpoint and returns the answer it got."""

    def __init__(self, **kw: Any) -> None:
        self.kw = kw
        self.answer: CheckpointAnswer | None = None

    async def __call__(self, runtime: TaskRuntime) -> dict[str, Any]:
        self.answer = await runtime.checkpoint("Send the email?", **self.kw)
        return self.answer.model_dump(mode="json")


def ev(tid: str, kind: SteeringEventType, **kw: Any) -> SteeringEvent:
    return SteeringEvent(session_id="s1", task_id=tid, event_type=kind, **kw)


async def parked(session: StreamingSession, tid: str) -> CheckpointInfo:
    while True:
        state = session.get_task(tid)
        assert state is not None
        if state.status is TaskStatus.PAUSED and state.checkpoint is not None:
            return state.checkpoint
        assert state.status in (TaskStatus.PENDING, TaskStatus.RUNNING, TaskStatus.PAUSED), state
        await anyio.lowlevel.checkpoint()


def body(update: StateUpdate) -> dict[str, Any]:
    assert isinstance(update.content, dict)
    return update.content


def statuses(updates: list[StateUpdate], tid: str) -> list[tuple[str, str]]:
    return [
        (body(u)["status"], body(u)["reason"])
        for u in updates
        if u.task_id == tid and u.update_type is UpdateType.STATUS_CHANGE
    ]


async def test_checkpoint_publishes_checkpoint_before_paused_and_approve_resumes() -> None:
    asker = Asker(payload={"to": "bob"}, data={"planner_token": "p1"})
    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            tid = await session.spawn_task(asker)
            info = await parked(session, tid)
            assert info.kind == "approval_required"
            assert info.prompt == "Send the email?"
            assert info.options == ("approve", "reject")
            assert info.data == {"planner_token": "p1"}
            receipt = await session.steer(
                ev(tid, E.APPROVE, payload={"resume_token": info.resume_token, "input": 7})
            )
            assert receipt.outcome is SteeringOutcome.APPLIED
            final = await session.wait_task(tid)
        updates = await session.list_updates(task_id=tid)
    assert final.status is TaskStatus.COMPLETE and final.checkpoint is None
    assert asker.answer == CheckpointAnswer(
        decision="approve", input=7, reason=None, event_id=receipt.event_id
    )
    kinds = [u.update_type for u in updates]
    ckpt = kinds.index(UpdateType.CHECKPOINT)
    assert updates[ckpt + 1].content == {
        "status": "PAUSED",
        "previous": "RUNNING",
        "reason": "checkpoint",
        "task_type": "FOREGROUND",
    }
    assert updates[ckpt].content == {
        "kind": "approval_required",
        "resume_token": info.resume_token,
        "prompt": "Send the email?",
        "payload": {"to": "bob"},
        "options": ["approve", "reject"],
    }
    assert statuses(updates, tid) == [
        ("PENDING", "created"),
        ("RUNNING", "started"),
        ("PAUSED", "checkpoint"),
        ("RUNNING", "checkpoint_answered"),
        ("COMPLETE", "completed"),
    ]


async def test_the_checkpoint_data_is_never_published() -> None:
    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            tid = await session.spawn_task(Asker(data={"secret": "planner-token-xyz"}))
            info = await parked(session, tid)
            await session.steer(ev(tid, E.REJECT, payload={"resume_token": info.resume_token}))
            await session.wait_task(tid)
        updates = await session.list_updates()
    assert all("planner-token-xyz" not in u.model_dump_json() for u in updates)


async def test_reject_answers_with_its_reason() -> None:
    asker = Asker()
    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            tid = await session.spawn_task(asker)
            info = await parked(session, tid)
            r = await session.steer(
                ev(tid, E.REJECT, payload={"resume_token": info.resume_token, "reason": "no"})
            )
            assert r.outcome is SteeringOutcome.APPLIED
            await session.wait_task(tid)
    assert asker.answer is not None
    assert (asker.answer.decision, asker.answer.reason) == ("reject", "no")


async def test_a_user_message_to_the_task_answers_its_checkpoint() -> None:
    asker = Asker(token="my-token")
    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            tid = await session.spawn_task(asker)
            info = await parked(session, tid)
            assert info.resume_token == "my-token"
            r = await session.steer(ev(tid, E.USER_MESSAGE, payload={"text": "only to alice"}))
            assert r.outcome is SteeringOutcome.APPLIED
            await session.wait_task(tid)
    assert asker.answer is not None
    assert (asker.answer.decision, asker.answer.input) == ("message", "only to alice")
    assert asker.answer.event_id == r.event_id


async def test_unknown_answered_and_agent_tokens_are_rejected() -> None:
    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            tid = await session.spawn_task(Asker())
            info = await parked(session, tid)
            token = {"resume_token": info.resume_token}
            r = await session.steer(ev(tid, E.APPROVE, payload={"resume_token": "nope"}))
            assert r.reason == "unknown_token"
            r = await session.steer(ev(tid, E.APPROVE, payload=token, source="agent"))
            assert r.reason == "approval_requires_user"
            assert (await session.steer(ev(tid, E.APPROVE, payload=token))).outcome is (
                SteeringOutcome.APPLIED
            )
            await session.wait_task(tid)
            r = await session.steer(ev(tid, E.APPROVE, payload=token))
            assert r.reason == "unknown_token"


async def test_a_background_task_at_a_checkpoint_holds_no_slot() -> None:
    release = anyio.Event()

    async def other(runtime: TaskRuntime) -> str:
        await release.wait()
        return "done"

    async with StreamingSession("s1", limits=SessionLimits(max_concurrent_tasks=1)) as session:
        with anyio.fail_after(5):
            asker = await session.spawn_task(Asker(), task_type="BACKGROUND")
            info = await parked(session, asker)
            blocker = await session.spawn_task(other, task_type="BACKGROUND")
            await anyio.wait_all_tasks_blocked()
            assert [t.task_id for t in session.list_tasks(status="RUNNING")] == [blocker]
            # Answered while the only slot is taken: it waits PAUSED for the slot.
            await session.steer(ev(asker, E.APPROVE, payload={"resume_token": info.resume_token}))
            await anyio.wait_all_tasks_blocked()
            state = session.get_task(asker)
            assert state is not None
            assert state.status is TaskStatus.PAUSED and state.checkpoint is None
            release.set()
            assert (await session.wait_task(asker)).status is TaskStatus.COMPLETE
        updates = await session.list_updates()
    changes: list[tuple[str | None, str]] = [
        (u.task_id, body(u)["reason"]) for u in updates if u.update_type is UpdateType.STATUS_CHANGE
    ]
    assert changes.index((blocker, "completed")) < changes.index((asker, "checkpoint_answered"))


async def test_one_open_checkpoint_per_task() -> None:
    raised: list[BaseException] = []

    async def twice(runtime: TaskRuntime) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(runtime.checkpoint, "first?")
            await anyio.wait_all_tasks_blocked()
            try:
                await runtime.checkpoint("second?")
            except SessionError as exc:
                raised.append(exc)
            tg.cancel_scope.cancel()

    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            await session.run_task(twice)
    assert len(raised) == 1 and "one open checkpoint per task" in str(raised[0])


async def test_bad_checkpoint_arguments_fail_at_the_call() -> None:
    errors: list[type[BaseException]] = []

    async def bad(runtime: TaskRuntime) -> None:
        cases: list[dict[str, Any]] = [
            {"prompt": 3},
            {"prompt": "x", "payload": object()},
            {"prompt": "x", "data": {1: 2}},
            {"prompt": "x", "kind": ""},
            {"prompt": "x", "options": "approve"},
            {"prompt": "x", "token": ""},
        ]
        for kw in cases:
            try:
                await runtime.checkpoint(**kw)
            except (TypeError, ValueError) as exc:
                errors.append(type(exc))

    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            await session.run_task(bad)
    assert errors == [TypeError, TypeError, TypeError, ValueError, TypeError, ValueError]


async def test_a_token_open_in_another_task_is_refused() -> None:
    async def same_token(runtime: TaskRuntime) -> str:
        try:
            await runtime.checkpoint("again?", token="tok")
        except ValueError as exc:
            return str(exc)
        return "no error"

    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            first = await session.spawn_task(Asker(token="tok"), task_type="BACKGROUND")
            await parked(session, first)
            message = await session.run_task(same_token)
    assert "already open" in str(message.payload)


async def test_cancelling_a_parked_task_ends_it_cancelled_and_forgets_its_token() -> None:
    async with StreamingSession("s1", limits=SessionLimits(max_concurrent_tasks=1)) as session:
        with anyio.fail_after(5):
            tid = await session.spawn_task(Asker(), task_type="BACKGROUND")
            info = await parked(session, tid)
            assert await session.cancel_task(tid)
            final = await session.wait_task(tid)
            r = await session.steer(ev(tid, E.APPROVE, payload={"resume_token": info.resume_token}))
            # The slot was given back once, not twice: one background task runs after, not two.
            block = anyio.Event()

            async def wait(runtime: TaskRuntime) -> None:
                await block.wait()

            a = await session.spawn_task(wait, task_type="BACKGROUND")
            b = await session.spawn_task(wait, task_type="BACKGROUND")
            await anyio.wait_all_tasks_blocked()
            running = session.statistics().running
            block.set()
            await session.wait_task(a)
            await session.wait_task(b)
    assert running == 1
    assert final.status is TaskStatus.CANCELLED and final.checkpoint is None
    assert r.reason in ("unknown_token", "task_finished")
    assert session.statistics().running == 0


async def test_a_checkpoint_after_the_task_ended_raises() -> None:
    kept: list[TaskRuntime] = []

    async def keep(runtime: TaskRuntime) -> None:
        kept.append(runtime)

    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            await session.run_task(keep)
            with pytest.raises(SessionError, match="has ended"):
                await kept[0].checkpoint("late?")


@settings(max_examples=25, deadline=None)
@given(
    limit=st.integers(min_value=1, max_value=3),
    asks=st.lists(st.booleans(), min_size=1, max_size=6),
    seed=st.randoms(use_true_random=False),
)
def test_parked_tasks_never_push_running_background_tasks_past_the_limit(
    limit: int, asks: list[bool], seed: Any
) -> None:
    async def main() -> list[StateUpdate]:
        async def maybe_ask(runtime: TaskRuntime) -> None:
            if runtime.query == "ask":
                await runtime.checkpoint("ok?")
            await anyio.lowlevel.checkpoint()

        limits = SessionLimits(
            max_concurrent_tasks=limit, max_tasks_per_session=None, max_background_tasks=None
        )
        async with StreamingSession("s1", limits=limits) as session:
            with anyio.fail_after(10):
                tids = [
                    await session.spawn_task(
                        maybe_ask, task_type="BACKGROUND", query="ask" if a else "no"
                    )
                    for a in asks
                ]
                waiting = [t for t, a in zip(tids, asks, strict=True) if a]
                seed.shuffle(waiting)
                for tid in waiting:
                    info = await parked(session, tid)
                    await session.steer(
                        ev(tid, E.APPROVE, payload={"resume_token": info.resume_token})
                    )
                for tid in tids:
                    assert (await session.wait_task(tid)).status is TaskStatus.COMPLETE
            return await session.list_updates(limit=10_000)

    updates = anyio.run(main)
    running: set[str] = set()
    for u in updates:
        if u.update_type is UpdateType.STATUS_CHANGE:
            assert u.task_id is not None
            if body(u)["status"] == "RUNNING":
                running.add(u.task_id)
            else:
                running.discard(u.task_id)
            assert len(running) <= limit


async def test_a_pipeline_that_abandons_its_own_checkpoint_runs_on() -> None:
    # Regression: the task stayed PAUSED after its pipeline cancelled its own wait, and its
    # completion then broke the state machine.
    async def abandon(runtime: TaskRuntime) -> str:
        with anyio.move_on_after(0.01):
            await runtime.checkpoint("quick?")
        return "went on"

    async with StreamingSession("s1", limits=SessionLimits(max_concurrent_tasks=1)) as session:
        with anyio.fail_after(5):
            tid = await session.spawn_task(abandon, task_type="BACKGROUND")
            final = await session.wait_task(tid)
        updates = await session.list_updates(task_id=tid)
    assert final.status is TaskStatus.COMPLETE and final.checkpoint is None
    assert statuses(updates, tid)[2:] == [
        ("PAUSED", "checkpoint"),
        ("RUNNING", "checkpoint_answered"),
        ("COMPLETE", "completed"),
    ]
    assert session.statistics().running == 0


async def test_aclose_cancels_a_task_parked_at_a_checkpoint() -> None:
    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            tid = await session.spawn_task(Asker(), task_type="BACKGROUND")
            await parked(session, tid)
    final = session.get_task(tid)
    assert final is not None
    assert (final.status, final.cancel_reason) == (TaskStatus.CANCELLED, "session_closed")


async def test_the_task_listing_shows_the_open_checkpoint() -> None:
    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            tid = await session.spawn_task(Asker(payload={"n": 1}, options=["yes", "no"]))
            info = await parked(session, tid)
            listed = [t for t in session.list_tasks(status="PAUSED")]
            served = listed[0].model_dump(mode="json")["checkpoint"]
            await session.cancel_task(tid)
    assert served["resume_token"] == info.resume_token
    assert (served["payload"], served["options"]) == ({"n": 1}, ["yes", "no"])


async def test_a_child_spawned_from_the_runtime_joins_a_group_with_its_strategy() -> None:
    async def child(runtime: TaskRuntime) -> str:
        return "child"

    async def parent(runtime: TaskRuntime) -> str:
        return await runtime.spawn_task(
            child, task_type="BACKGROUND", group_id=runtime.query, merge_strategy="replace"
        )

    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            group = await session.create_group("kids")
            result = await session.run_task(parent, query=group.group_id)
            state = await session.wait_task(str(result.payload))
    assert (state.group_id, state.merge_strategy, state.parent_task_id) == (
        group.group_id,
        "replace",
        session.list_tasks()[0].task_id,
    )
