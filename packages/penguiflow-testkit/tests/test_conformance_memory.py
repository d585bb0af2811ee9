"""The DurableStore conformance suite, run on InMemoryDurableStore (the testkit dogfoods it)."""

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from penguiflow.core import DurableStore, InMemoryDurableStore
from penguiflow.testkit import DurableStoreConformance, ManualClock
from penguiflow.testkit.stores import StoreOpener


class TestInMemoryDurableStore(DurableStoreConformance):
    persistent = False

    @pytest.fixture
    def open_store(self) -> StoreOpener:
        def open_(
            clock: Callable[[], float], /, **options: Any
        ) -> AbstractAsyncContextManager[DurableStore]:
            return InMemoryDurableStore(clock=clock, **options)

        return open_


def test_manual_clock_starts_now_or_where_told_and_moves_only_forward() -> None:
    import time

    before = time.time()
    clock = ManualClock()
    assert before <= clock() <= time.time()
    fixed = ManualClock(100)
    assert fixed() == 100.0
    fixed.advance(2.5)
    assert fixed() == 102.5
    fixed.advance(0)
    assert fixed() == 102.5
    with pytest.raises(ValueError, match="forward"):
        fixed.advance(-1)
    assert repr(fixed) == "ManualClock(102.5)"


def test_the_suite_has_at_least_25_tests_all_marked_asyncio() -> None:
    tests = [name for name in dir(DurableStoreConformance) if name.startswith("test_")]
    assert len(tests) >= 25
    for name in tests:
        marks = getattr(getattr(DurableStoreConformance, name), "pytestmark", [])
        assert any(mark.name == "asyncio" for mark in marks), name
