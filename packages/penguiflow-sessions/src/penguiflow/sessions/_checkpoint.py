"""Human checkpoints: a task parks in ``runtime.checkpoint()`` until the user answers.

The desk keeps every open checkpoint by its ``resume_token``. Parking publishes the
``CHECKPOINT`` update, then the task's PAUSED ``STATUS_CHANGE`` (``"checkpoint"``), and gives
back the task's background slot; an answer (APPROVE/REJECT with the token, or a USER_MESSAGE
to the task) clears ``TaskState.checkpoint``, re-acquires a slot and shows RUNNING
(``"checkpoint_answered"``) before the pipeline sees the :class:`CheckpointAnswer`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

import anyio
from pydantic import JsonValue

from ._errors import SessionError
from ._steering import SteeringEvent
from ._steering import SteeringEventType as S
from ._tasks import CheckpointAnswer, CheckpointInfo, TaskStatus
from ._updates import UpdateType, to_json

if TYPE_CHECKING:
    from ._engine import Engine
    from ._records import TaskRecord

__all__ = ["CheckpointAnswer", "CheckpointDesk", "CheckpointInfo", "OpenCheckpoint"]


@dataclass(eq=False)
class OpenCheckpoint:
    """A checkpoint waiting for its answer."""

    record: TaskRecord
    info: CheckpointInfo
    answered: anyio.Event = field(default_factory=anyio.Event)
    answer: CheckpointAnswer | None = None


def answer_from(event: SteeringEvent) -> CheckpointAnswer:
    """The answer an APPROVE, REJECT or USER_MESSAGE event gives."""
    payload = event.payload
    if event.event_type is S.APPROVE:
        return CheckpointAnswer(
            decision="approve", input=payload.get("input"), event_id=event.event_id
        )
    if event.event_type is S.REJECT:
        reason = payload.get("reason")
        return CheckpointAnswer(
            decision="reject",
            reason=reason if isinstance(reason, str) else None,
            event_id=event.event_id,
        )
    return CheckpointAnswer(decision="message", input=payload.get("text"), event_id=event.event_id)


class CheckpointDesk:
    """The session's open checkpoints by resume token."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.open: dict[str, OpenCheckpoint] = {}

    def token_of(self, record: TaskRecord) -> str | None:
        """The resume token of the task's open checkpoint, if it has one."""
        return record.checkpoint.resume_token if record.checkpoint is not None else None

    async def park(
        self,
        record: TaskRecord,
        prompt: str,
        *,
        kind: str,
        payload: object,
        options: Sequence[str],
        token: str | None,
        data: object,
    ) -> CheckpointAnswer:
        """Publish the CHECKPOINT, show PAUSED, wait for the answer, show RUNNING again."""
        info = self._validate(record, prompt, kind, payload, options, token, data)
        engine = self.engine
        waiting = OpenCheckpoint(record, info)
        self.open[info.resume_token] = waiting
        record.checkpoint = info
        engine.publish(
            record.task_id,
            UpdateType.CHECKPOINT,
            {
                "kind": info.kind,
                "resume_token": info.resume_token,
                "prompt": info.prompt,
                "payload": info.payload,
                "options": list[JsonValue](info.options),
            },
            trace_id=record.spec.trace_id,
        )
        try:
            async with engine.parked(
                record, "checkpoint", resumed="checkpoint_answered", release_slot=True
            ):
                await waiting.answered.wait()
                record.checkpoint = None
            assert waiting.answer is not None
            return waiting.answer
        finally:
            self.open.pop(info.resume_token, None)
            if waiting.answer is None:  # cancelled while waiting
                record.checkpoint = None

    def answer(self, token: str, answer: CheckpointAnswer) -> bool:
        """Answer the open checkpoint ``token``; False when there is none."""
        waiting = self.open.pop(token, None)
        if waiting is None or not waiting.record.live:
            return False
        waiting.answer = answer
        waiting.answered.set()
        return True

    def _validate(
        self,
        record: TaskRecord,
        prompt: str,
        kind: str,
        payload: object,
        options: Sequence[str],
        token: str | None,
        data: object,
    ) -> CheckpointInfo:
        if not record.live:
            raise SessionError(
                f"task {record.task_id!r} has ended; a pipeline can ask only while it runs"
            )
        if record.checkpoint is not None:
            raise SessionError(
                f"task {record.task_id!r} already waits at checkpoint "
                f"{record.checkpoint.resume_token!r}; one open checkpoint per task: await it first"
            )
        if record.status is not TaskStatus.RUNNING:
            raise SessionError(
                f"task {record.task_id!r} is {record.status}; it can ask only while RUNNING "
                "(not while parked at a pause point)"
            )
        if not isinstance(cast(object, prompt), str):
            raise TypeError(f"prompt must be a str, not {type(prompt).__name__}")
        if not isinstance(cast(object, kind), str) or not kind:
            raise ValueError(f"kind must be a non-empty str, not {kind!r}")
        if isinstance(cast(object, options), str):
            raise TypeError("options must be a sequence of strs, e.g. ('approve', 'reject')")
        checked: list[str] = []
        for option in cast(Sequence[object], options):
            if not isinstance(option, str):
                raise TypeError(f"options must be strs, not {option!r}")
            checked.append(option)
        if token is not None and (not isinstance(cast(object, token), str) or not token):
            raise ValueError(f"token must be a non-empty str or None, not {token!r}")
        if token is not None and token in self.open:
            raise ValueError(
                f"resume token {token!r} is already open in this session; pick another"
            )
        return CheckpointInfo(
            resume_token=token if token is not None else f"ckpt_{uuid.uuid4().hex}",
            kind=kind,
            prompt=prompt,
            payload=to_json(payload, what="the checkpoint payload"),
            options=tuple(checked),
            data=to_json(data, what="the checkpoint data"),
        )
