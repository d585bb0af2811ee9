"""``ReactPlanner()``'s arguments: the original planner's keyword names, and values it refuses.

``migrate_old_names`` turns the old keywords (``token_budget``, ``state_store``,
``reflection_config``, ``short_term_memory``, the old budget fields) into the current ones;
``checked_client`` and ``check_arguments`` raise a named error for a bad value, saying what
to pass instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from penguiflow.core import DurableStore, NodeSpec

from ._errors import PlannerUsageError
from ._llm import JSONLLMClient
from ._setup import is_model, migrate, renamed
from ._types import CompactionConfig, PlannerBudget, ReflectionConfig

__all__ = ["check_arguments", "checked_client", "migrate_old_names"]


def migrate_old_names(
    old: dict[str, Any],
    budget: PlannerBudget | None,
    compaction: CompactionConfig | None,
    store: DurableStore | None,
    reflection: ReflectionConfig | None,
    memory: Any,
) -> tuple[
    PlannerBudget | None, CompactionConfig | None, DurableStore | None, ReflectionConfig | None, Any
]:
    """``(budget, compaction, store, reflection, memory)`` with the old keywords of ``old`` applied.

    Raises:
        PlannerUsageError: An old keyword and its new one were both given.
        TypeError: ``old`` holds a keyword that is neither current nor old.
    """
    budget = migrate(old, budget)
    token_budget = old.pop("token_budget", None)
    if token_budget is not None:  # the original's prompt-size limit: summarise beyond it
        if compaction is not None:
            raise PlannerUsageError(
                "pass compaction=CompactionConfig(max_prompt_tokens=...) or its old form "
                "token_budget=, not both"
            )
        compaction = CompactionConfig(max_prompt_tokens=token_budget)
    store = renamed(old, "state_store", "store", store)
    reflection = renamed(old, "reflection_config", "reflection", reflection)
    memory = renamed(old, "short_term_memory", "memory", memory)
    if old:
        raise TypeError(f"ReactPlanner() got unexpected keyword arguments {sorted(old)}")
    return budget, compaction, store, reflection, memory


def checked_client(llm_client: JSONLLMClient | None) -> JSONLLMClient:
    """``llm_client``, once it is known to have a ``complete`` method.

    Raises:
        TypeError: It has none (or is None).
    """
    if llm_client is None or not callable(getattr(llm_client, "complete", None)):
        raise TypeError(
            "ReactPlanner needs an llm_client with an async complete(messages=..., "
            f"response_format=...) method, got {type(llm_client).__name__}"
        )
    return llm_client


def check_arguments(
    catalog: Sequence[NodeSpec] | None,
    nodes: Sequence[Any] | None,
    output_type: object,
    *,
    max_parallel: int,
    absolute_max_parallel: int,
    llm_timeout_s: float,
    pause_ttl_s: float,
    repair_attempts: int,
    max_consecutive_arg_failures: int,
    observation_max_chars: int,
) -> None:
    """Raise for a bad argument of ``ReactPlanner()``, saying what to pass instead.

    Raises:
        PlannerUsageError: A bad value (see the messages).
    """
    if catalog is not None and nodes is not None:
        raise PlannerUsageError("pass catalog= or nodes= (built with build_catalog), not both")
    if max_parallel < 1 or max_parallel > absolute_max_parallel:
        raise PlannerUsageError(
            f"max_parallel must be within 1..absolute_max_parallel ({absolute_max_parallel}), "
            f"got {max_parallel}"
        )
    if not (output_type is str or is_model(output_type)):
        raise PlannerUsageError(
            f"output_type must be str or a pydantic BaseModel subclass, got {output_type!r}"
        )
    if not llm_timeout_s > 0 or not pause_ttl_s > 0:
        raise PlannerUsageError(
            f"llm_timeout_s and pause_ttl_s must be > 0, got {llm_timeout_s!r} and {pause_ttl_s!r}"
        )
    if repair_attempts < 0 or max_consecutive_arg_failures < 1 or observation_max_chars < 1:
        raise PlannerUsageError(
            "repair_attempts >= 0, max_consecutive_arg_failures >= 1 and "
            "observation_max_chars >= 1 are required"
        )
