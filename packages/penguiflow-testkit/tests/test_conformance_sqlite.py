"""The DurableStore conformance suite, run on SQLiteDurableStore (a file per test, reopened)."""

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from penguiflow.core import DurableStore, SQLiteDurableStore
from penguiflow.testkit import DurableStoreConformance
from penguiflow.testkit.stores import StoreOpener


class TestSQLiteDurableStore(DurableStoreConformance):
    persistent = True

    @pytest.fixture
    def open_store(self, tmp_path: Path) -> StoreOpener:
        path = tmp_path / "store.db"

        def open_(
            clock: Callable[[], float], /, **options: Any
        ) -> AbstractAsyncContextManager[DurableStore]:
            return SQLiteDurableStore.open(path, clock=clock, **options)

        return open_
