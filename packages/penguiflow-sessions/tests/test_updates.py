"""StateUpdate and UpdateType: wire values, the critical set, update_id, JSON content."""

from datetime import UTC

import anyio
import pytest
from pydantic import BaseModel, ValidationError

from penguiflow.sessions import CRITICAL_UPDATE_TYPES, StateUpdate, UpdateType


def test_update_types_have_the_reference_wire_values_plus_stream() -> None:
    assert [t.value for t in UpdateType] == [
        "THINKING",
        "PROGRESS",
        "TOOL_CALL",
        "STREAM",
        "RESULT",
        "ERROR",
        "CHECKPOINT",
        "STATUS_CHANGE",
        "NOTIFICATION",
    ]


def test_critical_types_include_checkpoint_and_exclude_stream() -> None:
    assert CRITICAL_UPDATE_TYPES == {
        UpdateType.RESULT,
        UpdateType.ERROR,
        UpdateType.CHECKPOINT,
        UpdateType.STATUS_CHANGE,
        UpdateType.NOTIFICATION,
    }


def test_update_id_is_the_seq_and_is_in_the_json() -> None:
    update = StateUpdate(session_id="s", seq=7, update_type=UpdateType.PROGRESS, content={"a": 1})
    assert update.update_id == "7"
    payload = update.to_payload()
    assert payload["update_id"] == "7"
    assert payload["update_type"] == "PROGRESS"
    assert payload["task_id"] is None
    assert update.created_at.tzinfo is UTC
    assert StateUpdate.model_validate_json(update.model_dump_json()) == update


def test_a_state_update_is_frozen_and_its_seq_starts_at_one() -> None:
    update = StateUpdate(session_id="s", seq=1, update_type=UpdateType.THINKING)
    with pytest.raises(ValidationError):
        update.seq = 2
    with pytest.raises(ValidationError):
        StateUpdate(session_id="s", seq=0, update_type=UpdateType.THINKING)


def test_a_state_update_refuses_non_json_content() -> None:
    class Opaque:
        pass

    with pytest.raises(ValidationError):
        StateUpdate(session_id="s", seq=1, update_type="THINKING", content=Opaque())  # type: ignore[arg-type]


def test_pydantic_content_is_not_accepted_raw_but_emit_converts_it() -> None:
    class Step(BaseModel):
        n: int

    # The runtime converts models in JSON mode (tested in test_runtime); the model holds JSON.
    update = StateUpdate(
        session_id="s", seq=1, update_type=UpdateType.PROGRESS, content=Step(n=1).model_dump()
    )
    assert update.content == {"n": 1}


def test_a_session_built_update_equals_a_validated_one_and_dumps_the_same_json() -> None:
    from penguiflow.sessions._updates import UpdateRow, build_update

    validated = StateUpdate(
        session_id="s1",
        seq=7,
        update_type=UpdateType.PROGRESS,
        task_id="t1",
        trace_id="tr",
        content={"i": [1, 2.5, None, "x", True]},
        step_index=2,
        total_steps=3,
    )
    built = build_update(
        "s1",
        7,
        UpdateType.PROGRESS,
        "t1",
        "tr",
        {"i": [1, 2.5, None, "x", True]},
        2,
        3,
        validated.created_at,
    )
    assert built == validated
    assert built.update_id == validated.update_id == "7"
    assert built.model_dump_json() == validated.model_dump_json()
    assert built.to_payload() == validated.to_payload()
    assert StateUpdate.model_validate_json(built.model_dump_json()) == validated
    copied = built.model_copy(update={"seq": 8})
    assert (copied.seq, copied.update_id, built.seq) == (8, "8", 7)
    # the replay log's compact row gives back an equal update
    assert UpdateRow.of(built).update() == validated


async def test_emitted_content_is_a_copy_so_mutating_it_later_changes_no_update() -> None:
    from penguiflow.sessions import StreamingSession, TaskRuntime

    shared: dict[str, object] = {"items": [1]}

    async def emit(runtime: TaskRuntime) -> None:
        runtime.emit_update(UpdateType.PROGRESS, shared)
        shared["items"].append(2)  # type: ignore[union-attr]
        shared["later"] = True

    async with StreamingSession("s1") as session:
        async with session.subscribe(update_types=["PROGRESS"]) as sub:
            with anyio.fail_after(5):
                await session.run_task(emit)
                live = await anext(sub)
        with anyio.fail_after(5):
            replayed = await session.list_updates(since_id="0")
    assert live.content == {"items": [1]}
    assert [u.content for u in replayed if u.update_type is UpdateType.PROGRESS] == [{"items": [1]}]
