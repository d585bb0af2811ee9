"""Building a planner: argument checks, the original planner's keywords, the private tool flow."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from penguiflow.core import Node, NodeSpec, PenguiFlow, create

from ._errors import PlannerUsageError
from ._types import PlannerBudget

__all__ = ["check_json_context", "has_run", "is_model", "migrate", "renamed", "tool_flow"]


def tool_flow(
    specs: Sequence[NodeSpec], middlewares: Sequence[Any], on_flow_event: Any
) -> PenguiFlow:
    """The planner's private flow: its tools' nodes, with its middlewares and event hook.

    Tool calls go through ``flow.call_node`` on it (no workers needed); opening the planner
    runs it so that async middlewares get the events.
    """
    nodes = [spec.node.to() for spec in specs]
    if not nodes:
        placeholder = Node(_idle, name="planner-idle")
        nodes = [placeholder.to()]
    return create(*nodes, middlewares=middlewares, on_event=on_flow_event)


def has_run(flow: PenguiFlow) -> bool:
    """Whether ``flow`` was started once (a flow cannot run twice)."""
    return flow._rt.phase != "idle"  # pyright: ignore[reportPrivateUsage]


async def _idle(message: Any, ctx: Any) -> Any:
    return message


def check_json_context(context: Mapping[str, Any]) -> None:
    for key, value in context.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            raise PlannerUsageError(
                f"llm_context[{key!r}] is not JSON-serialisable ({type(value).__name__}); the LLM "
                "sees llm_context — pass clients and secrets in tool_context instead"
            ) from None


def is_model(value: object) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def renamed(old: dict[str, Any], old_name: str, new_name: str, value: Any) -> Any:
    """The original planner's ``old_name`` keyword, now ``new_name``."""
    if old_name not in old:
        return value
    if value is not None:
        raise PlannerUsageError(f"pass {new_name}= or its old name {old_name}=, not both")
    return old.pop(old_name)


def migrate(old: dict[str, Any], budget: PlannerBudget | None) -> PlannerBudget | None:
    """The original planner's budget keywords, mapped onto ``PlannerBudget``."""
    fields = {
        "max_iters": old.pop("max_iters", None),
        "max_hops": old.pop("hop_budget", None),
        "deadline_s": old.pop("deadline_s", None),
    }
    given = {k: v for k, v in fields.items() if v is not None}
    if not given:
        return budget
    if budget is not None:
        raise PlannerUsageError(
            f"pass budget=PlannerBudget(...) or the old keywords {sorted(given)}, not both"
        )
    return PlannerBudget(**given)
