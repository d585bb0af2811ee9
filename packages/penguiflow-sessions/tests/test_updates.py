"""StateUpdate and UpdateType: wire values, the critical set, update_id, JSON content."""

from datetime import UTC

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
