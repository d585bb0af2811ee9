"""Session context (§6): versions and hash, update_context, merge strategies, pending patches."""

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import JsonValue

from penguiflow.sessions import (
    ContextPatch,
    MergeStrategy,
    PatchNotFound,
    SessionLimits,
    SteeringEvent,
    SteeringEventType,
    SteeringOutcome,
    StreamingSession,
    TaskRuntime,
    UpdateType,
)


async def test_update_context_bumps_the_version_once_per_real_change() -> None:
    async with StreamingSession("s1") as session:
        start = session.get_context()
        assert start.version == 0 and len(start.context_hash) == 64
        ctx = await session.update_context(llm_context={"a": 1}, memory={"m": "x"})
        assert ctx.version == 1 and ctx.context_hash != start.context_hash
        assert (await session.update_context(llm_context={"a": 1})).version == 1  # no-op
        assert (await session.update_context(tool_context={"client": object()})).version == 1
        ctx = await session.update_context(llm_context={"b": 2})
        assert ctx.llm_context == {"a": 1, "b": 2} and ctx.version == 2
        ctx = await session.update_context(llm_context={"c": 3}, replace=True)
        assert ctx.llm_context == {"c": 3} and ctx.version == 3
        with pytest.raises(TypeError):
            await session.update_context(llm_context={"x": object()})  # type: ignore[dict-item]
        assert session.get_context().version == 3


async def test_a_task_snapshot_never_sees_later_session_changes() -> None:
    seen: list[object] = []
    go = anyio.Event()

    async def pipe(runtime: TaskRuntime) -> None:
        await go.wait()
        seen.append(runtime.context.llm_context)
        seen.append(runtime.context.context_version)
        runtime.context.llm_context["mine"] = True

    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            await session.update_context(llm_context={"k": [1]})
            tid = await session.spawn_task(pipe)
            await session.update_context(llm_context={"k": [1, 2], "later": 1})
            go.set()
            await session.wait_task(tid)
        assert seen == [{"k": [1], "mine": True}, 1]
        assert session.get_context().llm_context == {"k": [1, 2], "later": 1}


async def test_append_and_replace_merge_facts_with_one_bump_each() -> None:
    async with StreamingSession("s1") as session:
        await session.update_context(llm_context={"x": "old"})
        patch = ContextPatch(task_id="t1", facts={"x": "new", "y": 1}, digest=["d"])
        assert await session.apply_context_patch(patch) is None
        ctx = session.get_context()
        assert ctx.llm_context == {"x": ["old", "new"], "y": [1]} and ctx.version == 2
        assert ctx.background_results["t1"].digest == ["d"]
        await session.apply_context_patch(ContextPatch(task_id="t2", facts={"y": 2}))
        assert session.get_context().llm_context["y"] == [1, 2]
        await session.apply_context_patch(
            ContextPatch(task_id="t3", facts={"x": "only"}), strategy=MergeStrategy.REPLACE
        )
        ctx = session.get_context()
        assert ctx.llm_context["x"] == "only" and ctx.version == 4


async def test_human_gated_waits_and_a_user_approve_applies_it() -> None:
    async with StreamingSession("s1") as session:
        async with session.subscribe(update_types=[UpdateType.CHECKPOINT]) as sub:
            with anyio.fail_after(5):
                patch = ContextPatch(task_id="t1", facts={"f": 1}, digest=["sum"])
                pid = await session.apply_context_patch(patch, strategy="human_gated")
                assert pid is not None and session.get_context().version == 0
                checkpoint = await anext(sub)
                assert checkpoint.content == {
                    "kind": "context_patch",
                    "patch_id": pid,
                    "task_id": "t1",
                    "digest": ["sum"],
                    "diverged": False,
                }
                assert [p.patch_id for p in session.pending_patches()] == [pid]
                approve = SteeringEvent(
                    session_id="s1",
                    task_id="t1",
                    event_type=SteeringEventType.APPROVE,
                    payload={"patch_id": pid, "strategy": "replace"},
                )
                agent = SteeringEvent(
                    session_id="s1",
                    task_id="t1",
                    event_type=SteeringEventType.APPROVE,
                    payload={"patch_id": pid},
                    source="agent",
                )
                assert (await session.steer(agent)).reason == "approval_requires_user"
                receipt = await session.steer(approve)
                assert receipt.outcome is SteeringOutcome.APPLIED
                assert session.get_context().llm_context == {"f": 1}
                assert session.pending_patches() == []


async def test_reject_drops_and_unknown_patch_ids_raise() -> None:
    async with StreamingSession("s1") as session:
        pid = await session.apply_context_patch(
            ContextPatch(facts={"f": 1}), strategy=MergeStrategy.HUMAN_GATED
        )
        assert pid is not None
        await session.reject_pending_patch(pid, reason="no")
        assert session.get_context().llm_context == {}
        with pytest.raises(PatchNotFound):
            await session.reject_pending_patch(pid)
        with pytest.raises(PatchNotFound):
            await session.apply_pending_patch("nope")


async def test_a_diverged_replace_waits_but_a_diverged_append_applies() -> None:
    async with StreamingSession("s1") as session:
        await session.update_context(llm_context={"x": 1})  # version 1
        stale = ContextPatch(task_id="t", facts={"x": 0}, source_context_version=0)
        pid = await session.apply_context_patch(stale, strategy=MergeStrategy.REPLACE)
        assert pid is not None and session.pending_patches()[0].diverged
        assert session.get_context().llm_context == {"x": 1}
        await session.apply_pending_patch(pid, strategy="replace")
        assert session.get_context().llm_context == {"x": 0}
        async with session.subscribe(update_types=[UpdateType.NOTIFICATION]) as sub:
            with anyio.fail_after(5):
                assert await session.apply_context_patch(stale) is None  # APPEND still applies
                warning = await anext(sub)
        assert session.get_context().llm_context == {"x": [0, 0]}
        assert isinstance(warning.content, dict) and warning.content["severity"] == "warning"


async def test_pending_patches_are_bounded() -> None:
    async with StreamingSession("s1", limits=SessionLimits(max_pending_patches=1)) as session:
        gated = MergeStrategy.HUMAN_GATED
        assert await session.apply_context_patch(ContextPatch(), strategy=gated)
        with pytest.raises(ValueError, match="max_pending_patches"):
            await session.apply_context_patch(ContextPatch(), strategy=gated)


async def test_consumed_background_results_leave_later_snapshots() -> None:
    got: list[int] = []

    async def pipe(runtime: TaskRuntime) -> None:
        got.append(len(runtime.context.background_results))

    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            await session.apply_context_patch(ContextPatch(task_id="b1", facts={"a": 1}))
            await session.run_task(pipe)
            assert await session.mark_background_consumed(["b1", "nope"]) == 1
            await session.run_task(pipe)
    assert got == [1, 0]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("ab"), st.integers(0, 9)), max_size=8))
def test_append_keeps_every_fact_in_merge_order(facts: list[tuple[str, int]]) -> None:
    async def scenario() -> dict[str, JsonValue]:
        async with StreamingSession("s1") as session:
            for i, (key, value) in enumerate(facts):
                await session.apply_context_patch(ContextPatch(task_id=f"t{i}", facts={key: value}))
            ctx = session.get_context()
            assert ctx.version == len(facts)
            return ctx.llm_context

    llm = anyio.run(scenario)
    for key in "ab":
        expected = [v for k, v in facts if k == key]
        assert llm.get(key, []) == expected
