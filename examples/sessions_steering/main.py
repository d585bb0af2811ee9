"""Steer a running background task: pause, resume, redirect, and a cancel the user must confirm.

Run ``uv run python examples/sessions_steering/main.py``. A ``research`` task loops over steps,
calling ``runtime.pause_point()`` and reading its inbox between them. The user pauses it (the
task shows PAUSED once it has parked), resumes it, redirects it to a new topic (delivered to the
inbox, where the pipeline reads it), and finally an *agent* asks to cancel it: the session parks
that CANCEL behind a ``confirm_steering`` checkpoint, refuses the agent's own approval, drops it on
the user's REJECT, and applies the next one on the user's APPROVE.
"""

from __future__ import annotations

from typing import cast

import anyio
from pydantic import JsonValue

from penguiflow.sessions import (
    StateUpdate,
    SteeringEvent,
    SteeringEventType,
    StreamingSession,
    Subscription,
    TaskRuntime,
    TaskType,
    UpdateType,
)

S = SteeringEventType


async def research(runtime: TaskRuntime) -> str:
    """Works on a topic step by step; a REDIRECT changes the topic."""
    topic = runtime.query or "nothing"
    step = 0
    while True:
        await runtime.pause_point()
        while runtime.steering.has_event():
            event = await runtime.steering.next()
            if event.event_type is S.REDIRECT:
                topic = str(event.payload["instruction"])
                runtime.emit_update(UpdateType.THINKING, {"redirected_to": topic})
        step += 1
        runtime.emit_update(UpdateType.PROGRESS, {"step": step, "topic": topic})
        await anyio.sleep(0.01)


async def until(sub: Subscription, update_type: UpdateType, **values: object) -> dict[str, object]:
    """The content of the next update of ``update_type`` that has these values."""
    async for update in sub:
        data = content(update)
        if update.update_type is update_type and all(data.get(k) == v for k, v in values.items()):
            return data
    raise RuntimeError("the session closed first")


def content(update: StateUpdate) -> dict[str, object]:
    """An update's content as a dict (empty if it is not one)."""
    return dict(update.content) if isinstance(update.content, dict) else {}


def status(session: StreamingSession, task_id: str) -> str:
    """The task's status now."""
    task = session.get_task(task_id)
    return task.status.value if task is not None else "unknown"


async def main() -> None:
    async with StreamingSession("s-steer") as session:
        async with session.subscribe() as sub:
            tid = await session.spawn_task(
                research, task_type=TaskType.BACKGROUND, query="krill", description="research"
            )

            def event(
                kind: SteeringEventType, source: str = "user", **payload: object
            ) -> SteeringEvent:
                return SteeringEvent(
                    session_id="s-steer",
                    task_id=tid,
                    event_type=kind,
                    payload=cast(dict[str, JsonValue], payload),
                    source=source,  # type: ignore[arg-type]
                )

            with anyio.fail_after(10):
                await until(sub, UpdateType.PROGRESS, step=1)
                receipt = await session.steer(event(S.PAUSE, reason="coffee"))
                await until(sub, UpdateType.STATUS_CHANGE, status="PAUSED")
                print(f"pause -> {receipt.outcome}; task is {status(session, tid)}")

                receipt = await session.steer(event(S.RESUME))
                await until(sub, UpdateType.STATUS_CHANGE, status="RUNNING", reason="resumed")
                print(f"resume -> {receipt.outcome}; task is {status(session, tid)}")

                receipt = await session.steer(event(S.REDIRECT, instruction="penguins"))
                seen = await until(sub, UpdateType.THINKING)
                print(f"redirect -> {receipt.outcome}; the pipeline says {seen}")
                progress = await until(sub, UpdateType.PROGRESS, topic="penguins")
                print(f"now working on: {progress['topic']}")

                parked = await session.steer(event(S.CANCEL, source="agent", reason="done?"))
                checkpoint = await until(sub, UpdateType.CHECKPOINT, kind="confirm_steering")
                print(
                    f"agent cancel -> {parked.outcome}, checkpoint {checkpoint['kind']}"
                    f" for {checkpoint['event_type']}"
                )
                own = await session.steer(
                    event(S.APPROVE, source="agent", resume_token=parked.resume_token)
                )
                print(f"agent approves its own cancel -> {own.outcome} {own.reason}")
                no = await session.steer(event(S.REJECT, resume_token=parked.resume_token))
                print(f"user rejects -> {no.outcome}; task is {status(session, tid)}")

                parked = await session.steer(event(S.CANCEL, source="agent", reason="really"))
                yes = await session.steer(event(S.APPROVE, resume_token=parked.resume_token))
                final = await session.wait_task(tid)
                print(
                    f"user approves -> {yes.outcome}; "
                    f"task is {final.status} ({final.cancel_reason})"
                )
    print("sessions_steering done")


if __name__ == "__main__":
    anyio.run(main)
