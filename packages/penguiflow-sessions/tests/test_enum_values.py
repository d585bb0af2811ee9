"""Enum arguments take their wire value in any letter case; a wrong one names the choices."""

import anyio
import pytest

from penguiflow.sessions import (
    GroupStatus,
    MergeStrategy,
    StreamingSession,
    TaskRuntime,
    TaskStatus,
    TaskType,
    UpdateType,
)


async def answer(runtime: TaskRuntime) -> str:
    return "ok"


async def test_spawn_task_takes_a_task_type_and_merge_strategy_in_any_case() -> None:
    async with StreamingSession("s1") as session:
        with anyio.fail_after(5):
            task_id = await session.spawn_task(
                answer, task_type="background", merge_strategy="REPLACE"
            )
            state = await session.wait_task(task_id)
    assert state.task_type is TaskType.BACKGROUND
    assert state.merge_strategy is MergeStrategy.REPLACE
    assert state.status is TaskStatus.COMPLETE


async def test_a_wrong_task_type_names_the_choices_before_anything_is_recorded() -> None:
    async with StreamingSession("s1") as session:
        with pytest.raises(ValueError, match=r"'bg' is not a TaskType; use one of 'FOREGROUND'"):
            await session.spawn_task(answer, task_type="bg")
        assert session.list_tasks() == []
        assert await session.list_updates() == []


@pytest.mark.parametrize(
    ("enum", "text", "member"),
    [
        (UpdateType, "progress", UpdateType.PROGRESS),
        (TaskStatus, "complete", TaskStatus.COMPLETE),
        (MergeStrategy, "Human_Gated", MergeStrategy.HUMAN_GATED),
        (GroupStatus, "sealed", GroupStatus.SEALED),
    ],
)
def test_every_session_enum_looks_up_its_value_in_any_case(
    enum: type[UpdateType | TaskStatus | MergeStrategy | GroupStatus], text: str, member: object
) -> None:
    assert enum(text) is member


def test_a_value_that_is_not_a_string_is_refused_naming_the_choices() -> None:
    with pytest.raises(ValueError, match=r"3 is not a UpdateType; use one of 'THINKING'"):
        UpdateType(3)
