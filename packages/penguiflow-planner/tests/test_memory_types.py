"""Short-term memory's value types, its configuration checks, and its public face."""

import dataclasses
import types

import pytest

import penguiflow.planner.memory as memory
from penguiflow.planner import MemoryBudgetExceeded, PlannerError
from penguiflow.planner.memory import (
    ConversationTurn,
    MemoryBudget,
    MemoryHealth,
    MemoryIsolation,
    MemoryKey,
    ShortTermMemoryConfig,
    TrajectoryDigest,
)

EXPECTED = {
    "MemoryBudget",
    "MemoryIsolation",
    "ShortTermMemoryConfig",
    "ConversationTurn",
    "MemoryKey",
    "MemorySnapshot",
    "TrajectoryDigest",
    "MemoryHealth",
    "ShortTermMemory",
    "MemoryBudgetExceeded",
}


def test_memory_module_all_is_exactly_its_public_surface() -> None:
    assert set(memory.__all__) == EXPECTED
    assert len(memory.__all__) == len(EXPECTED)
    public = {
        name
        for name, value in vars(memory).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == EXPECTED
    assert memory.__doc__


def test_every_public_memory_class_is_documented() -> None:
    for name in memory.__all__:
        value = getattr(memory, name)
        if isinstance(value, type):
            assert value.__doc__, name


def test_memory_budget_exceeded_is_a_planner_error() -> None:
    assert memory.MemoryBudgetExceeded is MemoryBudgetExceeded
    assert issubclass(MemoryBudgetExceeded, PlannerError)


def test_defaults_follow_the_spec() -> None:
    config = ShortTermMemoryConfig()
    assert config.strategy == "none"
    assert config.budget == MemoryBudget(5, 1000, 10000, "truncate_oldest")
    assert config.isolation == MemoryIsolation(True, "tenant_id", "user_id", "session_id")
    assert config.summarizer is None
    assert config.include_trajectory_digest is True
    assert config.ttl_s == 86_400
    assert (config.retry_attempts, config.retry_backoff_base_s) == (3, 2.0)


@pytest.mark.parametrize(
    "make",
    [
        lambda: MemoryBudget(full_zone_turns=-1),
        lambda: MemoryBudget(full_zone_turns=None),  # type: ignore[arg-type]
        lambda: MemoryBudget(summary_max_tokens=-5),
        lambda: MemoryBudget(total_max_tokens=True),
        lambda: MemoryBudget(overflow_policy="drop"),  # type: ignore[arg-type]
        lambda: MemoryIsolation(tenant_key=""),
        lambda: ShortTermMemoryConfig(strategy="vector"),  # type: ignore[arg-type]
        lambda: ShortTermMemoryConfig(ttl_s=0),
        lambda: ShortTermMemoryConfig(retry_attempts=-1),
        lambda: ShortTermMemoryConfig(retry_backoff_base_s=float("nan")),
    ],
)
def test_bad_configuration_fails_at_construction(make: object) -> None:
    with pytest.raises(ValueError):
        make()  # type: ignore[operator]


def test_config_rejects_a_summarizer_without_complete() -> None:
    with pytest.raises(TypeError, match="complete"):
        ShortTermMemoryConfig(summarizer=object())  # type: ignore[arg-type]


def test_none_limits_mean_unlimited() -> None:
    budget = MemoryBudget(summary_max_tokens=None, total_max_tokens=None)
    assert budget.total_max_tokens is None


def test_memory_key_is_frozen_and_non_empty() -> None:
    key = MemoryKey("acme", "u1", "s1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        key.tenant_id = "other"  # type: ignore[misc]
    for parts in (("", "u", "s"), ("t", "", "s"), ("t", "u", ""), ("t", "u", None)):
        with pytest.raises(ValueError, match="non-empty"):
            MemoryKey(*parts)  # type: ignore[arg-type]
    assert key == MemoryKey("acme", "u1", "s1")
    assert hash(key) == hash(MemoryKey("acme", "u1", "s1"))


def test_composite_is_the_original_form_and_never_ambiguous() -> None:
    assert MemoryKey("acme", "u1", "s1").composite() == "acme:u1:s1"
    assert MemoryKey("a:b", "c", "d").composite() != MemoryKey("a", "b:c", "d").composite()


def test_turns_copy_their_collections_and_reject_non_json_artifacts() -> None:
    shown = {"chart": {"n": 1}}
    turn = ConversationTurn(
        "q",
        "a",
        TrajectoryDigest(["search"], "found it"),  # type: ignore[arg-type]
        artifacts_shown=shown,
        artifacts_hidden_refs=["r1"],  # type: ignore[arg-type]
    )
    shown["chart"] = {"n": 2}
    assert turn.artifacts_shown == {"chart": {"n": 1}}
    assert turn.artifacts_hidden_refs == ("r1",)
    assert turn.trajectory_digest is not None
    assert turn.trajectory_digest.tools_invoked == ("search",)
    with pytest.raises(TypeError, match="artifacts_shown"):
        ConversationTurn("q", "a", artifacts_shown={"x": object()})


def test_health_values_are_lowercase() -> None:
    assert [h.value for h in MemoryHealth] == ["healthy", "retry", "degraded", "recovering"]
