"""Short-term memory of the ReAct planner: one conversation per tenant, user and session.

Opt-in and fail-closed: a run without a :class:`MemoryKey` neither reads nor writes memory,
and no key sees another's. Memory lives in a ``DurableStore`` (namespace ``planner.memory``),
so every planner instance and process sharing the store shares it::

    from penguiflow.planner.memory import MemoryBudget, MemoryKey, ShortTermMemoryConfig

    config = ShortTermMemoryConfig(
        strategy="rolling_summary", budget=MemoryBudget(full_zone_turns=4)
    )
    key = MemoryKey("acme", "user-7", "session-1")

A run starts with one system message ``{"conversation_memory": {"recent_turns", "summary",
"pending_turns"}}`` and its turn is recorded when it finishes. With ``"rolling_summary"``,
turns leaving the full zone stay visible as pending turns until a background
``memory_summary`` call folds them into the summary; when the summariser keeps failing, memory
becomes :attr:`MemoryHealth.DEGRADED` (truncation) until a later summary succeeds.
:class:`ShortTermMemory` is the manager the planner owns (``planner.memory``).
"""

from ._errors import MemoryBudgetExceeded
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

__all__ = [
    # configuration
    "MemoryBudget",
    "MemoryIsolation",
    "ShortTermMemoryConfig",
    # keys and contents
    "ConversationTurn",
    "MemoryKey",
    "MemorySnapshot",
    "TrajectoryDigest",
    # the manager
    "MemoryHealth",
    "ShortTermMemory",
    # errors
    "MemoryBudgetExceeded",
]
