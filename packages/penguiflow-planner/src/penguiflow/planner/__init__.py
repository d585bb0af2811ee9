"""PenguiFlow planner: a ReAct planner whose tools run through the PenguiFlow runtime.

This release holds the LLM boundary: the :class:`JSONLLMClient` protocol every model client
follows, what a call returns (:class:`LLMResult`, :class:`Usage`, cost through
:class:`ModelPrice`), one error type with a stable code (:class:`LLMError`,
:class:`LLMErrorType`, :func:`classify_llm_error` for foreign clients), the retry policy the
planner applies (:class:`LLMRetryPolicy`), token counters, and native clients over the official
SDKs (installed with the ``openai`` and ``anthropic`` extras, imported only when used)::

    from penguiflow.planner import ModelPrice, OpenAIJSONClient

    async with OpenAIJSONClient("gpt-4o-mini", pricing=ModelPrice(0.15, 0.60)) as llm:
        result = await llm.complete(messages=[{"role": "user", "content": "Say hi in JSON"}])
        print(result.text, result.usage, result.cost_usd)

Test doubles (``ScriptedLLM``, ``FunctionLLM``, ``ProviderServer``) live in
``penguiflow.testkit`` (``pip install "penguiflow-testkit[planner]"``).
"""

import typing as _typing

from ._classify import classify_llm_error
from ._errors import (
    InterruptAnswerError,
    LLMError,
    LLMErrorType,
    MemoryBudgetExceeded,
    PlannerError,
    PlannerNotOpen,
    PlannerUsageError,
    ResumeTokenInvalid,
)
from ._events import PlannerEvent, PlannerEventType
from ._llm import JSONLLMClient, LLMMessage, LLMResult, ModelPrice, StreamCallback, Usage
from ._react import ReactPlanner
from ._retry import LLMRetryPolicy
from ._steering import SteeringEvent, SteeringEventType, SteeringInbox
from ._tokens import CharCounter, TiktokenCounter, TokenCounter
from ._toolctx import ToolContext
from ._trajectory import Trajectory, TrajectoryStep
from ._types import (
    Approval,
    CompactionConfig,
    FinalPayload,
    Interrupt,
    PlannerAction,
    PlannerBudget,
    PlannerFinish,
    PlannerPause,
    PlannerRequest,
    PlannerResume,
    PlannerStatistics,
    ReflectionConfig,
    ReflectionCriteria,
    ReflectionCritique,
    RunUsage,
    ToolPolicy,
)

if _typing.TYPE_CHECKING:
    from ._anthropic import AnthropicJSONClient
    from ._memory import ShortTermMemory
    from ._memory_types import (
        ConversationTurn,
        MemoryBudget,
        MemoryHealth,
        MemoryIsolation,
        MemoryKey,
        MemorySnapshot,
        ShortTermMemoryConfig,
        TrajectoryDigest,
    )
    from ._openai import OpenAIJSONClient

# Loaded on first use: memory and the native clients are not needed to plan.
_LAZY = {
    "AnthropicJSONClient": "_anthropic",
    "OpenAIJSONClient": "_openai",
    "ShortTermMemory": "_memory",
    "ConversationTurn": "_memory_types",
    "MemoryBudget": "_memory_types",
    "MemoryHealth": "_memory_types",
    "MemoryIsolation": "_memory_types",
    "MemoryKey": "_memory_types",
    "MemorySnapshot": "_memory_types",
    "ShortTermMemoryConfig": "_memory_types",
    "TrajectoryDigest": "_memory_types",
}

__all__ = [
    # the planner
    "ReactPlanner",
    "PlannerAction",
    "PlannerBudget",
    "PlannerFinish",
    "PlannerPause",
    "PlannerRequest",
    "PlannerResume",
    "PlannerStatistics",
    "FinalPayload",
    "RunUsage",
    "Interrupt",
    "Approval",
    "ToolContext",
    "ToolPolicy",
    "ReflectionConfig",
    "ReflectionCriteria",
    "ReflectionCritique",
    "CompactionConfig",
    "Trajectory",
    "TrajectoryStep",
    "PlannerEvent",
    "PlannerEventType",
    "SteeringEvent",
    "SteeringEventType",
    "SteeringInbox",
    # short-term memory (also in penguiflow.planner.memory)
    "ShortTermMemory",
    "ShortTermMemoryConfig",
    "MemoryBudget",
    "MemoryIsolation",
    "MemoryKey",
    "MemoryHealth",
    "MemorySnapshot",
    "ConversationTurn",
    "TrajectoryDigest",
    # the LLM boundary
    "JSONLLMClient",
    "LLMMessage",
    "LLMResult",
    "ModelPrice",
    "StreamCallback",
    "Usage",
    "classify_llm_error",
    "LLMRetryPolicy",
    # native clients
    "AnthropicJSONClient",
    "OpenAIJSONClient",
    # token counting
    "CharCounter",
    "TiktokenCounter",
    "TokenCounter",
    # errors
    "InterruptAnswerError",
    "LLMError",
    "LLMErrorType",
    "MemoryBudgetExceeded",
    "PlannerError",
    "PlannerNotOpen",
    "PlannerUsageError",
    "ResumeTokenInvalid",
]


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is not None:
        import importlib

        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
        globals()[name] = value
        return value
    if name == "__version__":
        from importlib.metadata import version

        return version("penguiflow-planner")
    raise AttributeError(f"module 'penguiflow.planner' has no attribute {name!r}")
