"""What the model is shown: the system prompt, the action schema, and each step's messages.

Prompts are deterministic (no ids, no clocks): the same inputs give the same messages.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from penguiflow.core import NodeSpec

from ._llm import LLMMessage
from ._trajectory import Trajectory, TrajectoryStep
from ._types import PlannerAction

__all__ = [
    "action_format",
    "build_messages",
    "output_schema",
    "parse_action",
    "render",
    "system_prompt",
]

FINAL = "final_response"
PARALLEL = "parallel"

_GUIDE = """You are a planner. Solve the user's query step by step with the tools below.
Reply with exactly one JSON object per turn, and nothing else:
{"thought": "<reasoning>", "next_node": "<a tool | parallel | final_response>", "args": {...}}
- To call a tool: "next_node" is its name and "args" its arguments (matching its args_schema).
- To run tools at once: "next_node": "parallel", "args": {"steps": [{"node": ..., "args": ...}],
  "join": {"node": ..., "args": {...}, "inject": {"<field>": "$results"}}} ("join" optional;
  $results, $branches, $failures, $success_count, $failure_count, $expect may be injected).
- To answer: "next_node": "final_response", "args": {"answer": <the answer>} (optionally with
  "sources", "confidence", "suggested_actions", "warnings", "language").
Each tool result comes back as {"observation": ...}, each failure as {"error": ...}."""


def output_schema(output_type: type[Any]) -> dict[str, Any]:
    """The JSON schema of ``args.answer``."""
    if issubclass(output_type, BaseModel):
        return output_type.model_json_schema()
    return {"type": "string"}


def system_prompt(tools: Sequence[NodeSpec], output_type: type[Any], extra: str | None) -> str:
    """The planner's system prompt (built once per planner)."""
    records = [spec.to_tool_record() for spec in tools]
    parts = [_GUIDE]
    if records:
        parts.append("Tools:\n" + json.dumps(records, sort_keys=True, default=str))
    else:
        parts.append("There are no tools: answer with final_response.")
    parts.append("The answer's schema:\n" + json.dumps(output_schema(output_type), sort_keys=True))
    if extra:
        parts.append(extra)
    return "\n\n".join(parts)


def action_format(tools: Sequence[NodeSpec], output_type: type[Any]) -> dict[str, Any]:
    """The ``planner_action`` response format: the visible tools, ``parallel`` and the answer."""
    names = [spec.name for spec in tools]
    args_options: list[dict[str, Any]] = [spec.args_schema for spec in tools]
    args_options.append(
        {
            "type": "object",
            "properties": {"answer": output_schema(output_type)},
            "required": ["answer"],
        }
    )
    if tools:
        names.append(PARALLEL)
        args_options.append(
            {
                "type": "object",
                "properties": {"steps": {"type": "array"}, "join": {"type": "object"}},
                "required": ["steps"],
            }
        )
    names.append(FINAL)
    schema = {
        "type": "object",
        "properties": {
            "thought": {"type": "string"},
            "next_node": {"type": "string", "enum": names},
            "args": {"anyOf": args_options},
        },
        "required": ["thought", "next_node", "args"],
    }
    return {
        "type": "json_schema",
        "json_schema": {"name": "planner_action", "schema": schema, "strict": False},
    }


def render(value: Any, limit: int) -> str:
    """``value`` as compact JSON, clamped to ``limit`` characters."""
    text = json.dumps(value, ensure_ascii=False, default=str, sort_keys=True)
    if len(text) > limit:
        return text[:limit] + f"... [truncated {len(text) - limit} chars]"
    return text


def _step_messages(step: TrajectoryStep, limit: int) -> list[LLMMessage]:
    messages: list[LLMMessage] = [
        {"role": "assistant", "content": json.dumps(step.action, sort_keys=True, default=str)}
    ]
    if step.error is not None:
        content = render({"error": step.error}, limit)
    else:
        content = render({"observation": step.observation}, limit)
    messages.append({"role": "user", "content": content})
    return messages


def build_messages(
    system: str,
    trajectory: Trajectory,
    *,
    memory: LLMMessage | None,
    limit: int,
    extra: Sequence[LLMMessage] = (),
) -> list[LLMMessage]:
    """The messages of the next planning call."""
    messages: list[LLMMessage] = [{"role": "system", "content": system}]
    if memory is not None:
        messages.append(memory)
    query: dict[str, Any] = {"query": trajectory.query}
    if trajectory.llm_context:
        query["llm_context"] = trajectory.llm_context
    messages.append({"role": "user", "content": json.dumps(query, sort_keys=True, default=str)})
    if trajectory.summary:
        messages.append(
            {
                "role": "user",
                "content": json.dumps({"summary_of_earlier_steps": trajectory.summary}),
            }
        )
    for step in trajectory.steps[int(trajectory.metadata.get("compacted_steps", 0)) :]:
        messages.extend(_step_messages(step, limit))
    messages.extend(extra)
    return messages


_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.S)


def parse_action(text: str) -> PlannerAction:
    """The action in the model's reply (code fences tolerated); ``ValueError`` saying why not."""
    match = _FENCE.match(text)
    body = match.group(1) if match else text.strip()
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        start, end = body.find("{"), body.rfind("}")
        if start < 0 or end <= start:
            raise ValueError(f"the reply is not JSON: {exc}") from None
        try:
            data = json.loads(body[start : end + 1])
        except json.JSONDecodeError:
            raise ValueError(f"the reply is not JSON: {exc}") from None
    if not isinstance(data, Mapping):
        raise ValueError("the reply must be a JSON object with next_node and args")
    try:
        return PlannerAction.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"the reply is not a planner action: {json_errors(exc)}") from None


def json_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """Validation errors as JSON-safe data (a validator's own exception never breaks this)."""
    errors = exc.errors(include_url=False, include_context=False)
    return json.loads(json.dumps(errors, default=str))
