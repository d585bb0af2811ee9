"""What a planner is configured with and what a run returns."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from ._errors import PlannerUsageError
from ._llm import JSONLLMClient

if TYPE_CHECKING:
    from ._trajectory import Trajectory

__all__ = [
    "Approval",
    "CompactionConfig",
    "Exhausted",
    "FinalPayload",
    "FinishReason",
    "Interrupt",
    "InterruptReason",
    "PlannerAction",
    "PlannerBudget",
    "PlannerFinish",
    "PlannerPause",
    "PlannerRequest",
    "PlannerResume",
    "PlannerStatistics",
    "ReflectionConfig",
    "ReflectionCriteria",
    "ReflectionCritique",
    "RunUsage",
    "ToolPolicy",
]

FinishReason = Literal["answer_complete", "no_path", "budget_exhausted", "cancelled"]
"""Why a run finished."""
Exhausted = Literal["max_iters", "hops", "deadline", "tokens", "cost"]
"""Which budget ended a run."""
InterruptReason = Literal["approval_required", "await_input", "external_event"]
"""Why a tool paused."""

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class PlannerBudget:
    """Limits of one run; ``None`` means unlimited. Each has one typed outcome.

    ``max_iters`` counts planning LLM calls (repairs excluded), ``max_hops`` tool invocations
    (each branch and the join count one; checked before each batch), ``deadline_s`` is seconds
    from the run's start (one deadline over the whole run: calls still running are cancelled),
    ``max_tokens`` / ``max_cost_usd`` are checked before each LLM call.
    """

    max_iters: int | None = 8
    """Planning LLM calls."""
    max_hops: int | None = None
    """Tool invocations."""
    deadline_s: float | None = None
    """Seconds from the run's start."""
    max_tokens: int | None = None
    """Prompt plus completion tokens over the run."""
    max_cost_usd: float | None = None
    """US dollars over the run (the client must report cost: give it ``pricing=``)."""

    def __post_init__(self) -> None:
        for name in ("max_iters", "max_hops", "deadline_s", "max_tokens", "max_cost_usd"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int | float) or math.isnan(value)):
                raise PlannerUsageError(f"PlannerBudget.{name} must be a number or None")
            if value is not None and value < 0:
                raise PlannerUsageError(
                    f"PlannerBudget.{name} must be >= 0 (or None for unlimited), got {value!r}"
                )


class PlannerAction(BaseModel):
    """One decision of the model: call a tool, run branches in parallel, or answer."""

    model_config: ClassVar[ConfigDict] = ConfigDict(extra="ignore", defer_build=True)

    next_node: str
    """A tool's name, ``"parallel"`` or ``"final_response"``."""
    args: dict[str, Any] = Field(default_factory=dict)
    """The tool's arguments (for ``final_response``: ``answer`` and the payload fields)."""
    thought: str = ""
    """The model's reasoning, kept in the trajectory."""


@dataclass(frozen=True, slots=True)
class FinalPayload:
    """The final answer's details, as the model gave them."""

    raw_answer: Any
    """``args.answer`` before validation into ``output_type``."""
    sources: tuple[Any, ...] = ()
    confidence: float | None = None
    suggested_actions: tuple[Any, ...] = ()
    requires_followup: bool = False
    """True when reflection ran out of revisions without passing."""
    warnings: tuple[str, ...] = ()
    language: str | None = None
    extra: Mapping[str, Any] = _EMPTY


@dataclass(frozen=True, slots=True)
class RunUsage:
    """What a run consumed."""

    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float | None = None
    """None when no call reported a cost."""
    tool_calls: int = 0
    hops: int = 0
    estimated: bool = False
    """Some token counts were estimated by the planner's ``token_counter``."""
    by_purpose: Mapping[str, int] = _EMPTY
    """LLM calls by what they were for (``planner_action``, ``reflection_critique`` ...)."""


@dataclass(frozen=True, slots=True)
class Interrupt:
    """One pause of one tool invocation, answered by ``resume``."""

    interrupt_id: str
    """``"{run_id}:{step}:{branch}:{n}"``: stable across resumes."""
    reason: InterruptReason
    payload: Any
    tool: str
    args: Mapping[str, Any]
    step: int
    branch: int


@dataclass(frozen=True, slots=True)
class Approval:
    """An answer to an ``approval_required`` interrupt."""

    approved: bool
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class PlannerFinish[OutputT]:
    """A finished run."""

    reason: FinishReason
    output: OutputT | None
    """The answer validated into ``output_type`` (None unless ``answer_complete``)."""
    payload: FinalPayload | None
    exhausted: Exhausted | None
    error: str | None
    run_id: str
    trace_id: str
    usage: RunUsage
    trajectory: Trajectory
    metadata: Mapping[str, Any] = _EMPTY
    """``steps``, ``step_count``, ``cost`` ..."""


@dataclass(frozen=True, slots=True)
class PlannerPause:
    """A run waiting for answers: pass ``resume_token`` to ``planner.resume``."""

    reason: InterruptReason
    payload: Any
    """The first interrupt's payload."""
    resume_token: str
    interrupts: tuple[Interrupt, ...]
    run_id: str
    trace_id: str
    usage: RunUsage
    expires_at: float


@dataclass(frozen=True, slots=True)
class ToolPolicy:
    """Which tools the model sees and may call."""

    allowed_tools: frozenset[str] | None = None
    """Only these (None: all)."""
    denied_tools: frozenset[str] = frozenset()
    require_tags: frozenset[str] = frozenset()
    """A tool must carry every one of these tags."""

    def allows(self, name: str, tags: tuple[str, ...] | list[str]) -> bool:
        """Whether the tool called ``name`` with ``tags`` is visible."""
        if self.allowed_tools is not None and name not in self.allowed_tools:
            return False
        return name not in self.denied_tools and self.require_tags <= set(tags)


@dataclass(frozen=True, slots=True)
class ReflectionCriteria:
    """What the critique checks."""

    completeness: bool = True
    accuracy: bool = True
    clarity: bool = True


@dataclass(frozen=True, slots=True)
class ReflectionConfig:
    """Critique the answer before finishing; revise while it scores below the threshold."""

    criteria: ReflectionCriteria = field(default_factory=ReflectionCriteria)
    quality_threshold: float = 0.8
    max_revisions: int = 2
    llm: JSONLLMClient | None = None
    """The critic (default: the planner's client)."""

    def __post_init__(self) -> None:
        if not 0 <= self.quality_threshold <= 1:
            raise PlannerUsageError("ReflectionConfig.quality_threshold must be within [0, 1]")
        if self.max_revisions < 0:
            raise PlannerUsageError("ReflectionConfig.max_revisions must be >= 0")


class ReflectionCritique(BaseModel):
    """What a ``reflection_critique`` call returns."""

    model_config: ClassVar[ConfigDict] = ConfigDict(defer_build=True)

    score: float
    passed: bool
    feedback: str = ""
    issues: list[str] = Field(default_factory=list)
    suggestions: list[str] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class CompactionConfig:
    """Summarise older steps once a prompt would exceed ``max_prompt_tokens``."""

    max_prompt_tokens: int
    keep_last_steps: int = 4
    llm: JSONLLMClient | None = None
    """The summariser (default: the planner's client)."""

    def __post_init__(self) -> None:
        if self.max_prompt_tokens < 1 or self.keep_last_steps < 0:
            raise PlannerUsageError(
                "CompactionConfig needs max_prompt_tokens >= 1 and keep_last_steps >= 0"
            )


class PlannerRequest(BaseModel):
    """A planner node's input: a query with its context."""

    query: str
    llm_context: dict[str, Any] = Field(default_factory=dict)
    memory_key: Any = None
    budget: PlannerBudget | None = None

    model_config: ClassVar[ConfigDict] = ConfigDict(arbitrary_types_allowed=True, defer_build=True)


class PlannerResume(BaseModel):
    """A planner node's input that answers a pause."""

    model_config: ClassVar[ConfigDict] = ConfigDict(defer_build=True)

    token: str
    answers: dict[str, Any] = Field(default_factory=dict)
    memory_key: Any = None


@dataclass(frozen=True, slots=True)
class PlannerStatistics:
    """A snapshot of a planner's counters."""

    active_runs: int
    background_tasks: int
    llm_calls: int
    tool_calls: int
    pauses_issued: int
    resumes: int
