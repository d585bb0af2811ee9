"""The trajectory: every step of a run, serialisable for pauses and for the record."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Trajectory", "TrajectoryStep"]


@dataclass(slots=True)
class TrajectoryStep:
    """One step: the action, and what came of it."""

    index: int
    action: dict[str, Any]
    """The ``PlannerAction`` as JSON (``next_node``, ``args``, ``thought``)."""
    observation: Any = None
    """The tool's output as JSON (whole; the prompt shows it clamped)."""
    error: str | None = None
    """What went wrong, when the step failed (shown to the model instead)."""
    failure: dict[str, Any] | None = None
    """Structured details of the failure (validation errors, the FlowError code)."""
    branches: list[dict[str, Any]] | None = None
    """For a parallel step: each branch's node, args and outcome."""
    usage: dict[str, int] | None = None
    """Tokens of the step's planning call(s), repairs included (None for a resumed step)."""
    latency_ms: float | None = None
    """How long the step's tool calls took."""

    def to_json(self) -> dict[str, Any]:
        """The step as JSON data."""
        return {
            "index": self.index,
            "action": self.action,
            "observation": self.observation,
            "error": self.error,
            "failure": self.failure,
            "branches": self.branches,
            "usage": self.usage,
            "latency_ms": self.latency_ms,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrajectoryStep:
        """Rebuild a step from :meth:`to_json` data."""
        return cls(**data)


@dataclass(slots=True)
class Trajectory:
    """What a run did, in order."""

    query: str
    llm_context: dict[str, Any] = field(default_factory=dict[str, Any])
    steps: list[TrajectoryStep] = field(default_factory=list[TrajectoryStep])
    summary: str | None = None
    """A summary of steps compacted away (see ``CompactionConfig``)."""
    steering_inputs: list[dict[str, Any]] = field(default_factory=list[dict[str, Any]])
    metadata: dict[str, Any] = field(default_factory=dict[str, Any])

    def to_json(self) -> str:
        """The trajectory as a JSON string."""
        return json.dumps(
            {
                "query": self.query,
                "llm_context": self.llm_context,
                "steps": [step.to_json() for step in self.steps],
                "summary": self.summary,
                "steering_inputs": self.steering_inputs,
                "metadata": self.metadata,
            },
            default=str,
        )

    @classmethod
    def from_json(cls, text: str | dict[str, Any]) -> Trajectory:
        """Rebuild a trajectory from :meth:`to_json` output (a string or its parsed dict)."""
        data: dict[str, Any] = json.loads(text) if isinstance(text, str) else text
        return cls(
            query=data["query"],
            llm_context=data.get("llm_context", {}),
            steps=[TrajectoryStep.from_json(step) for step in data.get("steps", [])],
            summary=data.get("summary"),
            steering_inputs=data.get("steering_inputs", []),
            metadata=data.get("metadata", {}),
        )
