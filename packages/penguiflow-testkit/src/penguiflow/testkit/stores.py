"""Conformance tests for ``DurableStore`` backends, and ``ManualClock`` to drive their TTLs.

Subclass ``DurableStoreConformance`` in a test module and provide one fixture, ``open_store``,
returning a function ``open_(clock, **options)`` that opens your store on the same fresh storage
each time within a test (``options`` may carry ``retention``)::

    import pytest
    from penguiflow.testkit.stores import DurableStoreConformance

    class TestMyStore(DurableStoreConformance):
        persistent = True  # False skips the reopen test

        @pytest.fixture
        def open_store(self, tmp_path):
            return lambda clock, **options: MyStore.open(tmp_path / "db", clock=clock, **options)

The tests carry their own ``pytest.mark.asyncio`` marks (pytest-asyncio, strict or auto mode).
They cover the protocol (versions, scopes, TTLs, retention, gap-free logs, idempotency, erase,
bad input) and flow history on the store (``save_event``, ``load_history``,
``save_remote_binding``, a real flow with ``create(..., state_store=store)``). This module
imports pytest; ``import penguiflow.testkit`` does not load it.
"""

from __future__ import annotations

from typing import ClassVar

from ._store_log_checks import LogChecks
from ._store_record_checks import RecordChecks
from ._store_support import ManualClock, StoreOpener

__all__ = ["DurableStoreConformance", "ManualClock", "StoreOpener"]


class DurableStoreConformance(RecordChecks, LogChecks):
    """The ``DurableStore`` contract as tests: subclass it and provide ``open_store``.

    ``open_store`` is a pytest fixture returning ``open_(clock, **options)``, an async context
    manager that yields the store and closes it on exit, on the same fresh storage every time it
    is called within one test.
    """

    persistent: ClassVar[bool] = True
    """Whether data survives closing and reopening the store (False skips that test)."""
