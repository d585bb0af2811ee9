"""Journal patches: apply(diff(old, new)) rebuilds new exactly; untouched parts cost nothing."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from penguiflow.core._journal_patch import (
    INGRESS_STEP,
    apply_patch,
    child_step,
    diff,
    same_json,
)

json_leaves = (
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(-2, 2) | st.text(max_size=3)
)
json_values = st.recursive(
    json_leaves,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner, max_size=4)
    ),
    max_leaves=12,
)
documents = st.dictionaries(st.text(max_size=2), json_values, max_size=5)


@given(documents, documents)
def test_applying_the_patch_rebuilds_the_new_document_exactly(old: Any, new: Any) -> None:
    rebuilt = apply_patch(old, diff(old, new))
    assert same_json(rebuilt, new)
    assert json.dumps(rebuilt, sort_keys=True) == json.dumps(new, sort_keys=True)


@given(documents)
def test_an_unchanged_document_has_an_empty_patch(doc: Any) -> None:
    assert diff(doc, json.loads(json.dumps(doc))) == {}  # equal values, other objects
    assert diff(doc, doc) == {}


def test_none_values_and_removed_keys_replay_exactly() -> None:
    old = {"a": 1, "b": {"c": 2, "d": 3}, "gone": "x"}
    new = {"a": None, "b": {"c": 2}}
    patch = diff(old, new)
    assert patch == {"=": {"a": None}, "-": ["gone"], ">": {"b": {"-": ["d"]}}}
    assert apply_patch(old, patch) == new


def test_one_true_and_one_point_zero_are_different_values() -> None:
    assert diff({"x": 1}, {"x": True}) == {"=": {"x": True}}
    assert diff({"x": 1}, {"x": 1.0}) == {"=": {"x": 1.0}}


def test_a_list_that_differs_is_replaced_whole() -> None:
    assert diff({"xs": [1, 2, 3]}, {"xs": [1, 2, 4]}) == {"=": {"xs": [1, 2, 4]}}


class Big(BaseModel):
    counter: int
    blob: list[dict[str, Any]]


def test_an_untouched_part_is_skipped_by_identity_and_never_serialised() -> None:
    class Exploding:  # serialising it would fail: identity must skip it
        pass

    blob: Any = [Exploding()]
    old = {"payload": Big.model_construct(counter=1, blob=blob)}
    new = {"payload": Big.model_construct(counter=2, blob=blob)}
    assert diff(old, new) == {">": {"payload": {"=": {"counter": 2}}}}


def test_a_model_diff_applies_to_its_json_dump() -> None:
    blob = [{"role": "user", "content": "x" * 200, "i": i} for i in range(100)]
    old = Big(counter=1, blob=blob)
    new = old.model_copy(update={"counter": 2})
    patch = diff({"payload": old}, {"payload": new})
    assert len(json.dumps(patch)) < 50
    rebuilt = apply_patch({"payload": to_jsonable_python(old)}, patch)
    assert rebuilt == {"payload": to_jsonable_python(new)}


def test_a_model_with_a_custom_serialiser_is_diffed_on_its_json() -> None:
    from pydantic import field_serializer

    class Shouting(BaseModel):
        word: str

        @field_serializer("word")
        def _up(self, word: str) -> str:
            return word.upper()

    patch = diff({"p": Shouting(word="a")}, {"p": Shouting(word="b")})
    assert apply_patch({"p": {"word": "A"}}, patch) == {"p": {"word": "B"}}


def test_step_ids_are_stable_hashes_of_parent_node_and_index() -> None:
    import hashlib

    assert INGRESS_STEP == "0"
    expected = hashlib.sha256(b"0/n1/2").hexdigest()[:20]
    assert child_step("0", "n1", 2) == expected
    assert child_step("0", "n1", 2) != child_step("0", "n1", 3)
    assert len(child_step("abc", "x", 0)) == 20
