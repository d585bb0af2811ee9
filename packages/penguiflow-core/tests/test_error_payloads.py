"""Building, detaching, serialising and pickling a FlowError never fails and never holds on to
more than it should."""

from __future__ import annotations

import gc
import json
import math
import pickle
import weakref
from typing import Any

import pytest

from penguiflow.core import FlowError, FlowErrorCode


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ is broken")

    def __repr__(self) -> str:
        raise RuntimeError("__repr__ is broken")


class UnreprableValue:
    def __repr__(self) -> str:
        raise RuntimeError("__repr__ is broken")


class Payload:
    """Stands for a large object a failing node had in a local variable."""


class LookupFailed(KeyError):
    """A KeyError that can be weakly referenced (builtin exception instances cannot)."""


def wrap(exc: BaseException, **kwargs: Any) -> FlowError:
    return FlowError.from_exception(exc, trace_id="t1", node_name="n", node_id="n#1", **kwargs)


# ------------------------------------------------------------------ unprintable and huge texts


def test_exception_with_raising_str_and_repr_still_becomes_a_flow_error() -> None:
    error = wrap(UnprintableError())
    assert error.message == "UnprintableError: <unprintable UnprintableError>"
    assert error.metadata["exception_type"] == "UnprintableError"
    assert error.metadata["exception_repr"] == "<unprintable UnprintableError>"
    assert "UnprintableError" in str(error)
    json.dumps(error.to_payload(), allow_nan=False)


def test_metadata_value_with_raising_repr_is_serialised_as_a_placeholder() -> None:
    error = wrap(KeyError("k"), metadata={"value": UnreprableValue()})
    assert error.to_payload()["metadata"]["value"] == "<unprintable UnreprableValue>"


def test_huge_exception_text_is_capped_in_message_and_metadata() -> None:
    huge = "x" * 1_000_000
    error = wrap(ValueError(huge))
    assert len(error.message) <= 2100
    assert error.message.startswith("ValueError: xxx")
    assert "cut" in error.message
    assert len(error.metadata["exception_repr"]) <= 2000
    assert len(json.dumps(error.to_payload())) < 10_000


def test_safe_str_and_safe_repr_fall_back_and_cap() -> None:
    from penguiflow.core._errors import safe_repr, safe_str

    assert safe_str(KeyError("k")) == "'k'"
    assert safe_repr([1, 2]) == "[1, 2]"
    assert safe_str(UnprintableError()) == "<unprintable UnprintableError>"
    assert safe_repr(UnreprableValue()) == "<unprintable UnreprableValue>"
    long_text = safe_str(ValueError("y" * 5000))
    assert len(long_text) == 2000
    assert long_text.startswith("yyy")
    assert long_text.endswith("[cut: 5000 characters in all]")
    assert len(safe_repr("z" * 5000)) == 2000


def test_safe_helpers_are_not_part_of_the_public_face() -> None:
    import penguiflow.core as core
    import penguiflow.core._errors as errors

    assert {"safe_str", "safe_repr"} <= set(errors.__all__)
    assert "safe_str" not in core.__all__
    assert "safe_repr" not in core.__all__
    assert not hasattr(core, "safe_str")


# ------------------------------------------------------------------ detached()


def _fail_holding(payloads: list[weakref.ref[Payload]]) -> None:
    big = Payload()
    payloads.append(weakref.ref(big))
    raise LookupFailed("missing")


def _caught_error(payloads: list[weakref.ref[Payload]]) -> FlowError:
    try:
        _fail_holding(payloads)
    except LookupFailed as exc:  # metadata referencing the exception must not keep it either
        return wrap(exc, metadata={"attempt": 2, "opaque": exc})
    raise AssertionError("unreachable")


def test_a_kept_flow_error_keeps_the_failed_frame_alive() -> None:
    # The control for the detached test below: without detaching, the payload survives.
    payloads: list[weakref.ref[Payload]] = []
    error = _caught_error(payloads)
    gc.collect()
    assert payloads[0]() is not None
    del error


def test_detached_copy_holds_no_reference_to_the_exception_or_its_frames() -> None:
    payloads: list[weakref.ref[Payload]] = []
    error = _caught_error(payloads)
    original = weakref.ref(error.original_exc) if error.original_exc is not None else None
    kept = error.detached()
    del error
    gc.collect()
    assert original is not None and original() is None
    assert payloads[0]() is None
    assert kept.original_exc is None
    assert kept.__cause__ is None
    assert kept.__context__ is None
    assert kept.__traceback__ is None


def test_detached_copy_keeps_the_identity_and_the_cause_as_text() -> None:
    error = wrap(
        KeyError("missing"),
        code=FlowErrorCode.NODE_TIMEOUT,
        metadata={"attempt": 2, "ratio": math.inf, "opaque": object(), "nested": {"k": (1, 2)}},
    )
    error.add_note("while looking up the user")
    kept = error.detached()
    assert kept is not error
    assert (kept.code, kept.message, kept.trace_id, kept.node_name, kept.node_id) == (
        FlowErrorCode.NODE_TIMEOUT,
        error.message,
        "t1",
        "n",
        "n#1",
    )
    assert str(kept) == str(error)
    assert kept.metadata["exception_type"] == "KeyError"
    assert kept.metadata["exception_repr"] == "KeyError('missing')"
    assert kept.metadata["attempt"] == 2
    assert kept.metadata["ratio"] == "Infinity"
    assert kept.metadata["nested"] == {"k": [1, 2]}
    assert kept.metadata["opaque"].startswith("<object object at")
    assert kept.__notes__ == ["while looking up the user"]
    json.dumps(kept.to_payload(), allow_nan=False)


def test_detached_error_without_original_exception() -> None:
    error = FlowError(trace_id="t", node_name="n", code="NODE_EXCEPTION", message="m")
    kept = error.detached()
    assert kept.metadata == {}
    assert kept.to_payload() == error.to_payload()


# ------------------------------------------------------------------ to_payload() and JSON


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(math.nan, "NaN", id="nan"),
        pytest.param(math.inf, "Infinity", id="inf"),
        pytest.param(-math.inf, "-Infinity", id="-inf"),
        pytest.param(1.5, 1.5, id="finite"),
    ],
)
def test_non_finite_floats_become_strings_in_the_payload(value: float, expected: object) -> None:
    error = wrap(KeyError("k"), metadata={"x": value})
    payload = error.to_payload()
    assert payload["metadata"]["x"] == expected
    json.dumps(payload, allow_nan=False)


def test_non_finite_floats_nested_in_dicts_lists_and_tuples_become_strings() -> None:
    error = wrap(
        KeyError("k"),
        metadata={
            "scores": [1.0, math.nan, (math.inf, {"low": -math.inf})],
            "stats": {"mean": math.nan, "inner": {"max": math.inf}},
            "pair": (math.nan, 2),
        },
    )
    payload = error.to_payload()
    text = json.dumps(payload, allow_nan=False)
    assert json.loads(text)["metadata"] == {
        "scores": [1.0, "NaN", ["Infinity", {"low": "-Infinity"}]],
        "stats": {"mean": "NaN", "inner": {"max": "Infinity"}},
        "pair": ["NaN", 2],
        "exception_type": "KeyError",
        "exception_repr": "KeyError('k')",
    }


# ------------------------------------------------------------------ pickling


def test_flow_error_pickle_round_trips() -> None:
    error = wrap(KeyError("missing"), metadata={"attempt": 1})
    restored = pickle.loads(pickle.dumps(error))
    assert type(restored) is FlowError
    assert restored.code is FlowErrorCode.NODE_EXCEPTION
    assert (restored.message, restored.trace_id, restored.node_name, restored.node_id) == (
        error.message,
        "t1",
        "n",
        "n#1",
    )
    assert restored.metadata == error.metadata
    assert isinstance(restored.original_exc, KeyError)
    assert str(restored) == str(error)
    assert restored.args == error.args
