"""Routing steering events: checks in order, receipts that say why, parked confirmations."""

from __future__ import annotations

import dataclasses
import uuid
from collections import deque
from typing import TYPE_CHECKING

from pydantic import JsonValue

from ._checkpoint import answer_from
from ._steering import (
    ControlPolicy,
    SteeringEvent,
    SteeringEventType,
    SteeringOutcome,
    SteeringReceipt,
    check_required,
    json_size,
    sanitise,
)
from ._updates import UpdateType

if TYPE_CHECKING:
    from ._engine import Engine
    from ._records import TaskRecord

__all__ = ["Steerer"]

S = SteeringEventType


class Steerer:
    """The session's steering desk: dedup memory, parked events, counters."""

    def __init__(self, engine: Engine, policy: ControlPolicy) -> None:
        self.engine = engine
        self.policy = policy
        self.received = 0
        self.rejected = 0
        self.parked: dict[str, SteeringEvent] = {}
        self._seen: dict[str, tuple[deque[str], set[str]]] = {}

    # ------------------------------------------------------------------------- entry
    async def steer(self, event: SteeringEvent) -> SteeringReceipt:
        self.received += 1
        receipt = await self._steer(event)
        if receipt.outcome is SteeringOutcome.REJECTED:
            self.rejected += 1
        return receipt

    async def _steer(self, event: SteeringEvent) -> SteeringReceipt:
        engine = self.engine
        if event.session_id != engine.session_id:
            return self._reject(event, "session_mismatch")
        payload, truncated = sanitise(event.payload)
        limit = engine.limits.max_steering_payload_bytes
        if limit is not None and json_size(payload) > limit:
            return self._reject(event, "payload_too_large", truncated=truncated)
        if truncated:
            event = dataclasses.replace(event, payload=payload)
        errors = check_required(event.event_type, payload)
        if errors:
            return self._reject(event, "invalid", errors=errors, truncated=truncated)
        if self._seen_before(event):
            return SteeringReceipt(
                event_id=event.event_id, outcome=SteeringOutcome.DUPLICATE, truncated=truncated
            )
        receipt = await self._route(event)
        if receipt.outcome is not SteeringOutcome.REJECTED:
            self._remember(event)  # a rejected event may be sent again with its id
        await self.engine.outbox.steering(event, receipt)
        return receipt.model_copy(update={"truncated": truncated})

    def _reject(
        self,
        event: SteeringEvent,
        reason: str,
        *,
        errors: list[str] | None = None,
        truncated: bool = False,
    ) -> SteeringReceipt:
        return SteeringReceipt(
            event_id=event.event_id,
            outcome=SteeringOutcome.REJECTED,
            reason=reason,
            errors=errors or [],
            truncated=truncated,
        )

    # ------------------------------------------------------------------------- dedup
    def _seen_before(self, event: SteeringEvent) -> bool:
        memory = self._seen.get(event.task_id)
        return memory is not None and event.event_id in memory[1]

    def _remember(self, event: SteeringEvent) -> None:
        order, ids = self._seen.setdefault(event.task_id, (deque[str](), set[str]()))
        order.append(event.event_id)
        ids.add(event.event_id)
        limit = self.engine.limits.max_steering_events_per_task
        while limit is not None and len(order) > limit:
            ids.discard(order.popleft())

    # ------------------------------------------------------------------------- route
    async def _route(self, event: SteeringEvent) -> SteeringReceipt:
        kind = event.event_type
        if kind in (S.APPROVE, S.REJECT):
            if event.source != "user":
                return self._reject(event, "approval_requires_user")
            return await self._answer(event)
        record = self.engine.records.get(event.task_id)
        if record is None:
            return self._reject(event, "unknown_task")
        if not record.live:
            return self._reject(event, "task_finished")
        if self.policy.requires_confirmation(event):
            return self._park(event, record)
        return await self._apply(event, record)

    def _park(self, event: SteeringEvent, record: TaskRecord) -> SteeringReceipt:
        token = f"steer_{uuid.uuid4().hex}"
        self.parked[token] = event
        self.engine.publish(
            record.task_id,
            UpdateType.CHECKPOINT,
            {
                "kind": "confirm_steering",
                "resume_token": token,
                "event_type": event.event_type.value,
            },
            trace_id=record.spec.trace_id,
        )
        return SteeringReceipt(
            event_id=event.event_id, outcome=SteeringOutcome.PARKED, resume_token=token
        )

    async def _answer(self, event: SteeringEvent) -> SteeringReceipt:
        approve = event.event_type is S.APPROVE
        patch_id = event.payload.get("patch_id")
        if isinstance(patch_id, str):
            strategy = event.payload.get("strategy")
            done = self.engine.answer_patch(
                patch_id, approve=approve, strategy=strategy if isinstance(strategy, str) else None
            )
            if not done:
                return self._reject(event, "unknown_patch")
            return SteeringReceipt(event_id=event.event_id, outcome=SteeringOutcome.APPLIED)
        token = event.payload.get("resume_token")
        assert isinstance(token, str)  # check_required: exactly one of the two
        if self.engine.checkpoints.answer(token, answer_from(event)):
            return SteeringReceipt(event_id=event.event_id, outcome=SteeringOutcome.APPLIED)
        parked = self.parked.pop(token, None)
        if parked is None:
            return self._reject(event, "unknown_token")
        if not approve:
            return SteeringReceipt(event_id=event.event_id, outcome=SteeringOutcome.APPLIED)
        record = self.engine.records.get(parked.task_id)
        if record is None or not record.live:
            return self._reject(event, "task_finished")
        applied = await self._apply(parked, record)
        if not applied:
            return self._reject(event, applied.reason or "rejected")
        return SteeringReceipt(event_id=event.event_id, outcome=SteeringOutcome.APPLIED)

    async def _apply(self, event: SteeringEvent, record: TaskRecord) -> SteeringReceipt:
        engine = self.engine
        kind = event.event_type
        inbox = record.inbox
        applied = SteeringReceipt(event_id=event.event_id, outcome=SteeringOutcome.APPLIED)
        if kind is S.CANCEL:
            reason = event.payload.get("reason")
            inbox.push_nowait(event)
            await engine.cancel_many(
                [record], reason=reason if isinstance(reason, str) else "cancelled"
            )
            return applied
        if kind in (S.PAUSE, S.RESUME):
            inbox.set_paused(kind is S.PAUSE)
            inbox.push_nowait(event)  # best effort: the state is in force either way
            return applied
        if kind is S.PRIORITIZE:
            priority = event.payload["priority"]
            assert isinstance(priority, int)
            self._reprioritise(record, priority)
            return applied
        token = self.engine.checkpoints.token_of(record)
        if kind is S.USER_MESSAGE and token is not None:
            self.engine.checkpoints.answer(token, answer_from(event))
            return applied
        if not inbox.push_nowait(event):
            return self._reject(event, "inbox_full")
        return SteeringReceipt(event_id=event.event_id, outcome=SteeringOutcome.DELIVERED)

    def _reprioritise(self, record: TaskRecord, priority: int) -> None:
        record.spec = dataclasses.replace(record.spec, priority=priority)
        self.engine.scheduler.reprioritise(record)

    # ------------------------------------------------------------------------- fan-out
    async def broadcast(
        self, event_type: SteeringEventType, payload: dict[str, JsonValue], source: str
    ) -> int:
        engine = self.engine
        delivered = 0
        for record in [r for r in engine.records.values() if r.live]:
            event = SteeringEvent(
                session_id=engine.session_id,
                task_id=record.task_id,
                event_type=event_type,
                payload=dict(payload),
                source=source,  # type: ignore[arg-type]  # validated by pydantic
            )
            if await self.steer(event):
                delivered += 1
        return delivered

    def drop_task(self, task_id: str) -> None:
        """Forget the parked events of a finished task (their tokens become unknown)."""
        for token in [t for t, e in self.parked.items() if e.task_id == task_id]:
            del self.parked[token]
