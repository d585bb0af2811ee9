"""Task groups (§7): lifecycle, membership errors, patches applied together at the end."""

from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from penguiflow.sessions import (
    ContextPatch,
    GroupNotFound,
    GroupSealed,
    GroupStatus,
    MergeStrategy,
    SessionClosed,
    SessionLimitExceeded,
    SessionLimits,
    StateUpdate,
    SteeringEvent,
    SteeringEventType,
    StreamingSession,
    TaskResult,
    TaskRuntime,
    TaskStatus,
    UpdateType,
)


def body(update: StateUpdate) -> dict[str, Any]:
    assert isinstance(update.content, dict)
    return update.content


class Member:
    """Returns a patch with fact ``key`` once its gate opens; fails when told to."""

    def __init__(self, key: str, *, fail: bool = False) -> None:
        self.key = key
        self.fail = fail
        self.gate = anyio.Event()

    async def __call__(self, runtime: TaskRuntime) -> TaskResult:
        await self.gate.wait()
        if self.fail:
            raise RuntimeError(f"{self.key} failed")
        return TaskResult(
            payload=self.key,
            context_patch=ContextPatch(facts={self.key: 1}, digest=[f"found {self.key}"]),
        )


async def spawn_members(
    session: StreamingSession, group_id: str, members: list[Member], **kw: Any
) -> list[str]:
    return [
        await session.spawn_task(m, task_type="BACKGROUND", group_id=group_id, **kw)
        for m in members
    ]


def group_changes(updates: list[StateUpdate]) -> list[dict[str, Any]]:
    return [
        body(u) for u in updates if u.update_type is UpdateType.STATUS_CHANGE and u.task_id is None
    ]


async def test_a_sealed_group_completes_when_every_member_completes() -> None:
    members = [Member("a"), Member("b")]
    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            group = await session.create_group("research")
            assert group.group_id.startswith("grp_") and group.status is GroupStatus.OPEN
            tids = await spawn_members(session, group.group_id, members)
            assert session.get_task(tids[0]).group_id == group.group_id  # type: ignore[union-attr]
            sealed = await session.seal_group(group.group_id)
            assert sealed.status is GroupStatus.SEALED and sealed.sealed_at is not None
            members[1].gate.set()
            members[0].gate.set()
            done = await session.wait_group(group.group_id)
        updates = await session.list_updates()
    assert done.status is GroupStatus.COMPLETE and done.completed_at is not None
    assert done.task_ids == tids
    assert set(done.completed_task_ids) == set(tids) and done.failed_task_ids == []
    assert group_changes(updates) == [
        {"group_id": group.group_id, "status": "OPEN", "previous": None},
        {"group_id": group.group_id, "status": "SEALED", "previous": "OPEN"},
        {"group_id": group.group_id, "status": "COMPLETE", "previous": "SEALED"},
    ]
    assert session.list_groups() == [done] and session.get_group(group.group_id) == done


async def test_member_patches_wait_for_the_end_and_apply_in_completion_order_with_one_bump() -> (
    None
):
    members = [Member("a"), Member("b"), Member("c")]
    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            group = await session.create_group("g", merge_strategy="append")
            tids = await spawn_members(session, group.group_id, members)
            await session.seal_group(group.group_id)
            for index in (2, 0):
                members[index].gate.set()
                await session.wait_task(tids[index])
            assert session.get_context().version == 0  # nothing applied before the end
            members[1].gate.set()
            done = await session.wait_group(group.group_id)
        ctx = session.get_context()
        results = [
            body(u) for u in await session.list_updates() if u.update_type is UpdateType.RESULT
        ]
    assert done.completed_task_ids == [tids[2], tids[0], tids[1]]
    assert ctx.version == 1
    assert list(ctx.llm_context) == ["c", "a", "b"]
    assert [ctx.background_results[t].group_id for t in tids] == [group.group_id] * 3
    assert all(r["patch_id"] is None for r in results)


async def test_gated_members_patches_become_one_bundled_pending_patch() -> None:
    members = [Member("a"), Member("b")]
    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            group = await session.create_group("g", merge_strategy=MergeStrategy.HUMAN_GATED)
            await spawn_members(session, group.group_id, members)
            await session.seal_group(group.group_id)
            for m in members:
                m.gate.set()
            await session.wait_group(group.group_id)
            (pending,) = session.pending_patches()
            checkpoint = [
                body(u)
                for u in await session.list_updates()
                if u.update_type is UpdateType.CHECKPOINT
            ]
            assert session.get_context().version == 0
            receipt = await session.steer(
                SteeringEvent(
                    session_id="s1",
                    task_id=pending.patch_id,
                    event_type=SteeringEventType.APPROVE,
                    payload={"patch_id": pending.patch_id},
                )
            )
        ctx = session.get_context()
    assert receipt
    assert pending.group_id == group.group_id and len(pending.bundle) == 2
    assert checkpoint == [
        {
            "kind": "context_patch",
            "patch_id": pending.patch_id,
            "task_id": None,
            "digest": ["found a", "found b"],
            "diverged": False,
            "group_id": group.group_id,
        }
    ]
    assert ctx.version == 1 and set(ctx.llm_context) == {"a", "b"}


async def test_members_own_strategies_apply_when_the_group_has_none() -> None:
    members = [Member("a"), Member("b")]
    async with StreamingSession("s1") as session:
        await session.update_context(llm_context={"a": "x", "b": "y"})
        with anyio.fail_after(5):
            group = await session.create_group("g")
            await session.spawn_task(
                members[0],
                task_type="BACKGROUND",
                group_id=group.group_id,
                merge_strategy="replace",
            )
            await session.spawn_task(members[1], task_type="BACKGROUND", group_id=group.group_id)
            await session.seal_group(group.group_id)
            for m in members:
                m.gate.set()
            await session.wait_group(group.group_id)
        ctx = session.get_context()
    assert ctx.llm_context == {"a": 1, "b": ["y", 1]}
    assert ctx.version == 2


@pytest.mark.parametrize(("apply_partial", "applied"), [(True, {"ok": [1]}), (False, {})])
async def test_a_failed_member_fails_the_group_and_apply_partial_decides_the_patches(
    apply_partial: bool, applied: dict[str, Any]
) -> None:
    members = [Member("ok"), Member("bad", fail=True)]
    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            group = await session.create_group("g", apply_partial=apply_partial)
            tids = await spawn_members(session, group.group_id, members)
            await session.seal_group(group.group_id)
            for m in members:
                m.gate.set()
            done = await session.wait_group(group.group_id)
        ctx = session.get_context()
    assert done.status is GroupStatus.FAILED
    assert done.completed_task_ids == [tids[0]] and done.failed_task_ids == [tids[1]]
    assert ctx.llm_context == applied
    assert ctx.version == (1 if applied else 0)


async def test_cancel_group_seals_it_and_cancels_its_live_members() -> None:
    members = [Member("a"), Member("b"), Member("c")]
    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            group = await session.create_group("g")
            tids = await spawn_members(session, group.group_id, members)
            members[0].gate.set()
            await session.wait_task(tids[0])
            assert await session.cancel_group(group.group_id, reason="enough") == 2
            done = await session.wait_group(group.group_id)
            assert await session.cancel_group(group.group_id) == 0
            with pytest.raises(GroupSealed):
                await session.spawn_task(Member("d"), group_id=group.group_id)
    assert done.status is GroupStatus.FAILED
    assert done.failed_task_ids == tids[1:]
    assert {session.get_task(t).cancel_reason for t in tids[1:]} == {"enough"}  # type: ignore[union-attr]


async def test_an_empty_group_completes_when_sealed_and_sealing_again_changes_nothing() -> None:
    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            group = await session.create_group("empty")
            await session.seal_group(group.group_id)
            done = await session.wait_group(group.group_id)
            assert await session.seal_group(group.group_id) == done
    assert done.status is GroupStatus.COMPLETE and done.task_ids == []


async def test_unknown_and_sealed_groups_and_the_group_limit_refuse_before_recording() -> None:
    limits = SessionLimits(max_tasks_per_group=1)
    async with StreamingSession("s1", limits=limits) as session:
        with anyio.fail_after(5):
            with pytest.raises(GroupNotFound, match="create_group"):
                await session.spawn_task(Member("x"), group_id="grp_nope")
            group = await session.create_group("g")
            member = Member("a")
            await session.spawn_task(member, task_type="BACKGROUND", group_id=group.group_id)
            count = len(await session.list_updates())
            with pytest.raises(SessionLimitExceeded) as info:
                await session.spawn_task(Member("b"), group_id=group.group_id)
            assert len(await session.list_updates()) == count and len(session.list_tasks()) == 1
            await session.seal_group(group.group_id)
            with pytest.raises(GroupSealed) as sealed:
                await session.spawn_task(Member("c"), group_id=group.group_id)
            member.gate.set()
            for call in (session.seal_group, session.wait_group, session.cancel_group):
                with pytest.raises(GroupNotFound):
                    await call("grp_nope")
            assert session.get_group("grp_nope") is None
    assert (info.value.limit, info.value.value, info.value.current) == ("max_tasks_per_group", 1, 1)
    assert str(info.value).startswith(f"task group {group.group_id!r} already has 1 tasks")
    assert sealed.value.group_id == group.group_id


async def test_bad_group_arguments_and_a_closed_session() -> None:
    session = StreamingSession("s1")
    with pytest.raises(SessionClosed):
        await session.create_group("g")
    async with session:
        with pytest.raises(ValueError):
            await session.create_group("")
        with pytest.raises(ValueError):
            await session.create_group("g", merge_strategy="sometimes")
    with pytest.raises(SessionClosed):
        await session.create_group("g")


async def test_a_member_interrupted_by_a_foreground_spawn_counts_as_failed() -> None:
    member = Member("fg")
    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            group = await session.create_group("g")
            tid = await session.spawn_task(member, group_id=group.group_id)
            await session.seal_group(group.group_id)
            other = Member("next")
            other.gate.set()
            await session.spawn_task(other, if_busy="interrupt")
            done = await session.wait_group(group.group_id)
    assert done.failed_task_ids == [tid]
    assert session.get_task(tid).status is TaskStatus.CANCELLED  # type: ignore[union-attr]


@settings(max_examples=25, deadline=None)
@given(
    outcomes=st.lists(st.sampled_from(["ok", "fail"]), min_size=1, max_size=6),
    order=st.randoms(use_true_random=False),
    apply_partial=st.booleans(),
)
def test_group_accounting_matches_its_members(
    outcomes: list[str], order: Any, apply_partial: bool
) -> None:
    async def main() -> None:
        limits = SessionLimits(
            max_background_tasks=None, max_tasks_per_session=None, max_concurrent_tasks=None
        )
        members = [Member(f"k{i}", fail=o == "fail") for i, o in enumerate(outcomes)]
        async with StreamingSession("s1", limits=limits) as session:
            with anyio.fail_after(10):
                group = await session.create_group("g", apply_partial=apply_partial)
                tids = await spawn_members(session, group.group_id, members)
                await session.seal_group(group.group_id)
                finish = list(range(len(members)))
                order.shuffle(finish)
                for index in finish:
                    members[index].gate.set()
                    await session.wait_task(tids[index])
                done = await session.wait_group(group.group_id)
            ctx = session.get_context()
            expected_done = [tids[i] for i in finish if outcomes[i] == "ok"]
            expected_failed = [tids[i] for i in finish if outcomes[i] == "fail"]
            assert done.completed_task_ids == expected_done
            assert done.failed_task_ids == expected_failed
            failed = bool(expected_failed)
            assert done.status is (GroupStatus.FAILED if failed else GroupStatus.COMPLETE)
            applies = bool(expected_done) and (not failed or apply_partial)
            assert ctx.version == (1 if applies else 0)
            expected_keys = [f"k{i}" for i in finish if outcomes[i] == "ok"] if applies else []
            assert list(ctx.llm_context) == expected_keys

    anyio.run(main)
