"""Fixtures of the short-term memory tests: a store, a manager factory, recorded events."""

from collections.abc import Callable, Mapping
from typing import Any

import pytest

from penguiflow.core import DurableStore, InMemoryDurableStore
from penguiflow.planner import CharCounter, JSONLLMClient
from penguiflow.planner.memory import (
    MemoryBudget,
    ShortTermMemory,
    ShortTermMemoryConfig,
)

Events = list[tuple[str, dict[str, Any]]]
MakeMemory = Callable[..., ShortTermMemory]


@pytest.fixture
def store() -> InMemoryDurableStore:
    return InMemoryDurableStore()


@pytest.fixture
def events() -> Events:
    return []


@pytest.fixture
def make_memory(store: InMemoryDurableStore, events: Events) -> MakeMemory:
    def make(
        strategy: str = "truncation",
        *,
        llm: JSONLLMClient | None = None,
        on_store: DurableStore | None = None,
        budget: MemoryBudget | None = None,
        **options: Any,
    ) -> ShortTermMemory:
        config = ShortTermMemoryConfig(
            strategy=strategy,  # type: ignore[arg-type]
            budget=budget or MemoryBudget(),
            retry_backoff_base_s=options.pop("retry_backoff_base_s", 0.0),
            **options,
        )

        def on_event(kind: str, extra: Mapping[str, Any]) -> None:
            events.append((kind, dict(extra)))

        return ShortTermMemory(
            config,
            store=on_store if on_store is not None else store,
            llm=llm,
            token_counter=CharCounter(),
            on_event=on_event,
        )

    return make
