"""A finished task's TaskResult.context_patch merges by its merge_strategy (§6)."""

from typing import Any

import anyio
from hypothesis import given, settings
from hypothesis import strategies as st

from penguiflow.sessions import (
    ContextPatch,
    MergeStrategy,
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


def returning(patch: ContextPatch, gate: anyio.Event | None = None) -> Any:
    async def pipeline(runtime: TaskRuntime) -> TaskResult:
        if gate is not None:
            await gate.wait()
        return TaskResult(payload="ok", digest=["did it"], context_patch=patch)

    return pipeline


def of(updates: list[StateUpdate], kind: UpdateType) -> list[StateUpdate]:
    return [u for u in updates if u.update_type is kind]


async def test_an_append_patch_merges_on_completion_with_its_fields_filled() -> None:
    async with StreamingSession("s1") as session:
        await session.update_context(llm_context={"k": "old"})
        snapshot = session.get_context()
        with anyio.fail_after(5):
            tid = await session.spawn_task(
                returning(ContextPatch(facts={"k": 1}, digest=["found k"])),
                spawned_from_event_id="ev-1",
            )
            await session.wait_task(tid)
        ctx = session.get_context()
        updates = await session.list_updates(task_id=tid)
    assert ctx.version == snapshot.version + 1
    assert ctx.llm_context == {"k": ["old", 1]}
    recorded = ctx.background_results[tid]
    assert (recorded.task_id, recorded.digest, recorded.facts) == (tid, ["found k"], {"k": 1})
    assert body(of(updates, UpdateType.RESULT)[0])["patch_id"] is None
    assert of(updates, UpdateType.NOTIFICATION) == []  # not diverged: no warning


async def test_filled_fields_come_from_the_task_and_its_snapshot() -> None:
    async with StreamingSession("s1") as session:
        await session.update_context(memory={"m": 1})
        at_spawn = session.get_context()
        with anyio.fail_after(5):
            tid = await session.spawn_task(
                returning(ContextPatch(digest=["x"])),
                merge_strategy="human_gated",
                spawned_from_event_id="ev-9",
            )
            await session.wait_task(tid)
        (pending,) = session.pending_patches()
    patch = pending.patch
    assert (patch.task_id, patch.spawned_from_event_id) == (tid, "ev-9")
    assert patch.source_context_version == at_spawn.version
    assert patch.source_context_hash == at_spawn.context_hash
    assert pending.task_id == tid and not pending.diverged


async def test_explicit_patch_fields_are_kept() -> None:
    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            tid = await session.spawn_task(
                returning(ContextPatch(task_id="other", source_context_hash="h")),
                merge_strategy="human_gated",
            )
            await session.wait_task(tid)
        (pending,) = session.pending_patches()
    assert (pending.patch.task_id, pending.patch.source_context_hash) == ("other", "h")


async def test_a_replace_patch_sets_the_keys_with_one_version_bump() -> None:
    async with StreamingSession("s1") as session:
        await session.update_context(llm_context={"k": [1, 2], "keep": True})
        with anyio.fail_after(5):
            await session.run_task(
                returning(ContextPatch(facts={"k": "new", "j": 0})), merge_strategy="replace"
            )
        ctx = session.get_context()
    assert ctx.llm_context == {"k": "new", "j": 0, "keep": True}
    assert ctx.version == 2


async def test_a_gated_patch_waits_its_result_carries_the_patch_id_and_approve_applies_it() -> None:
    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            tid = await session.spawn_task(
                returning(ContextPatch(facts={"k": 1}, digest=["d"])),
                task_type="BACKGROUND",
                merge_strategy=MergeStrategy.HUMAN_GATED,
            )
            await session.wait_task(tid)
            assert session.get_context().version == 0
            (pending,) = session.pending_patches()
            updates = await session.list_updates(task_id=tid)
            receipt = await session.steer(
                SteeringEvent(
                    session_id="s1",
                    task_id=tid,
                    event_type=SteeringEventType.APPROVE,
                    payload={"patch_id": pending.patch_id},
                )
            )
        ctx = session.get_context()
    assert receipt
    assert ctx.version == 1 and ctx.llm_context == {"k": [1]}
    kinds = [u.update_type for u in updates]
    tail = kinds[kinds.index(UpdateType.RESULT) :]
    assert tail == [
        UpdateType.RESULT,
        UpdateType.CHECKPOINT,
        UpdateType.NOTIFICATION,
        UpdateType.STATUS_CHANGE,
    ]
    result, checkpoint = of(updates, UpdateType.RESULT)[0], of(updates, UpdateType.CHECKPOINT)[0]
    assert body(result)["patch_id"] == pending.patch_id
    assert body(checkpoint) == {
        "kind": "context_patch",
        "patch_id": pending.patch_id,
        "task_id": tid,
        "digest": ["d"],
        "diverged": False,
    }


async def test_a_diverged_append_applies_with_a_warning_and_a_diverged_replace_waits() -> None:
    gates = [anyio.Event(), anyio.Event()]
    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            append = await session.spawn_task(
                returning(ContextPatch(facts={"a": 1}), gates[0]), task_type="BACKGROUND"
            )
            replace = await session.spawn_task(
                returning(ContextPatch(facts={"r": 1}), gates[1]),
                task_type="BACKGROUND",
                merge_strategy="replace",
            )
            await session.update_context(llm_context={"r": "newer"})  # version 1
            gates[0].set()
            await session.wait_task(append)
            gates[1].set()
            await session.wait_task(replace)
        ctx = session.get_context()
        (pending,) = session.pending_patches()
        append_updates = await session.list_updates(task_id=append)
        replace_updates = await session.list_updates(task_id=replace)
    assert ctx.llm_context == {"r": "newer", "a": [1]}  # REPLACE did not overwrite
    assert ctx.version == 2
    warning = body(of(append_updates, UpdateType.NOTIFICATION)[0])
    assert warning["severity"] == "warning"
    assert pending.diverged and pending.task_id == replace
    assert body(of(replace_updates, UpdateType.RESULT)[0])["patch_id"] == pending.patch_id
    assert body(of(replace_updates, UpdateType.CHECKPOINT)[0])["diverged"] is True


async def test_past_max_pending_patches_the_task_completes_with_an_error_notification() -> None:
    limits = SessionLimits(max_pending_patches=1)
    async with StreamingSession("s1", limits=limits) as session:
        with anyio.fail_after(5):
            tids = [
                await session.spawn_task(
                    returning(ContextPatch(facts={"k": 1})), merge_strategy="human_gated"
                )
                for _ in range(2)
            ]
            final = [await session.wait_task(t) for t in tids][1]
            tid = tids[1]
        updates = await session.list_updates(task_id=tid)
        pending = session.pending_patches()
    assert final.status is TaskStatus.COMPLETE
    assert len(pending) == 1 and session.statistics().pending_patches == 1
    assert body(of(updates, UpdateType.RESULT)[0])["patch_id"] is None
    (note,) = [body(u) for u in of(updates, UpdateType.NOTIFICATION)]
    assert (note["severity"], note["code"]) == ("error", "PENDING_PATCH_LIMIT")
    assert "max_pending_patches=1" in note["body"]


async def test_a_result_without_a_patch_leaves_the_context_alone() -> None:
    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            await session.run_task(returning(None), merge_strategy="replace")  # type: ignore[arg-type]
        assert session.get_context().version == 0


@settings(max_examples=30, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from([MergeStrategy.APPEND, MergeStrategy.REPLACE]),
            st.sampled_from(["a", "b"]),
            st.integers(min_value=0, max_value=9),
        ),
        max_size=8,
    )
)
def test_sequential_patches_bump_once_each_and_merge_in_order(
    steps: list[tuple[MergeStrategy, str, int]],
) -> None:
    async def main() -> tuple[int, dict[str, Any]]:
        async with StreamingSession("s1") as session:
            with anyio.fail_after(10):
                for strategy, key, value in steps:
                    await session.run_task(
                        returning(ContextPatch(facts={key: value})), merge_strategy=strategy
                    )
            ctx = session.get_context()
            return ctx.version, ctx.llm_context

    version, llm = anyio.run(main)
    expected: dict[str, Any] = {}
    for strategy, key, value in steps:
        if strategy is MergeStrategy.REPLACE:
            expected[key] = value
        elif key not in expected:
            expected[key] = [value]
        elif isinstance(expected[key], list):
            expected[key].append(value)
        else:
            expected[key] = [expected[key], value]
    assert version == len(steps)
    assert llm == expected
