"""Construction checks of ``Worker``: named errors saying what to pass instead."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, cast

from ._flow import PenguiFlow, runtime_of
from ._journal import Journal
from ._registry import ModelRegistry
from ._types import Message

__all__ = ["check_worker_options", "checked_journal", "ingress_type"]


def check_worker_options(
    *,
    max_inflight: int,
    claim_idle_s: float,
    heartbeat_s: float | None,
    max_deliveries: int,
    drain_timeout_s: float,
    consumer: str | None,
) -> float:
    """Check a ``Worker``'s options (``ValueError`` naming the bad one); the heartbeat period."""
    if not isinstance(max_inflight, int) or max_inflight < 1:  # pyright: ignore[reportUnnecessaryIsInstance]
        raise ValueError(f"max_inflight must be an int >= 1, got {max_inflight!r}")
    if not isinstance(max_deliveries, int) or max_deliveries < 1:  # pyright: ignore[reportUnnecessaryIsInstance]
        raise ValueError(f"max_deliveries must be an int >= 1, got {max_deliveries!r}")
    _positive("claim_idle_s", claim_idle_s)
    if heartbeat_s is None:
        heartbeat_s = claim_idle_s / 3
    _positive("heartbeat_s", heartbeat_s)
    if heartbeat_s > claim_idle_s / 3:
        raise ValueError(
            f"heartbeat_s={heartbeat_s!r} is more than claim_idle_s / 3 "
            f"({claim_idle_s / 3:g}): a live worker's work could be reclaimed; pass "
            f"heartbeat_s <= {claim_idle_s / 3:g} or leave it None"
        )
    if not isinstance(drain_timeout_s, int | float) or drain_timeout_s < 0:  # pyright: ignore[reportUnnecessaryIsInstance]
        raise ValueError(f"drain_timeout_s must be >= 0 seconds, got {drain_timeout_s!r}")
    if consumer is not None and (not isinstance(consumer, str) or not consumer):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise ValueError(f"consumer must be a non-empty string, got {consumer!r}")
    return heartbeat_s


def _positive(name: str, value: object) -> None:
    if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")


def checked_journal(flow: object) -> Journal:
    """The journal of ``flow``, a built, not running, journaled flow on a shared store."""
    from ._store_memory import InMemoryDurableStore

    if not isinstance(flow, PenguiFlow):
        raise TypeError(f"Worker needs a PenguiFlow (from create(...)), got {type(flow).__name__}")
    rt = runtime_of(flow)
    if rt.phase != "idle":
        raise ValueError(
            "Worker needs a flow that is built but not started: the worker runs it; pass a "
            "fresh create(...) and do not call flow.run() or flow.running() yourself"
        )
    recorder = rt.recorder
    if recorder is None:
        raise ValueError(
            "Worker needs a journaled flow, so that a trace taken over from a dead worker "
            "resumes where it stopped: create(..., journal=Journal(store)) with a store every "
            "worker reaches (PostgresDurableStore or RedisDurableStore)"
        )
    if isinstance(recorder.journal.store, InMemoryDurableStore):
        raise ValueError(
            "Worker needs a journal every worker process reaches, not an InMemoryDurableStore: "
            "use Journal(RedisDurableStore/PostgresDurableStore) (SQLiteDurableStore on one host)"
        )
    return recorder.journal


def ingress_type(registry: ModelRegistry, names: Sequence[str]) -> Any:
    """The payload model of the one ingress node ``names`` holds (None: keep JSON values)."""
    if len(names) != 1:
        return None
    entry = registry.entry(names[0])
    model: object = None if entry is None else entry.in_model
    if not isinstance(model, type) or issubclass(model, Message):
        return None
    return cast(Any, model)
