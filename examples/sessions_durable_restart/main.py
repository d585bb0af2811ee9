"""Durable sessions: two processes on one SQLite file, a checkpoint answered after a restart.

Run it with ``uv run python examples/sessions_durable_restart/main.py``.

The first process (a child of this one) opens session ``"demo"`` on a SQLite file, starts a
refund task that parks at a human checkpoint and a report task that keeps running, lets a
subscriber read a few updates, then dies without any cleanup (``os._exit``). This process
then opens the same session on the same file: the report task was live in a dead process, so
it is FAILED ``INTERRUPTED``; the refund task is still PAUSED at its checkpoint (its pipeline
is a ``ResumablePipeline``), the subscriber resumes from the cursor it had before the crash,
and the user's APPROVE runs ``Refund.resume()`` to the task's end.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

import anyio

from penguiflow.core import SQLiteDurableStore
from penguiflow.sessions import (
    CheckpointAnswer,
    CheckpointInfo,
    StateUpdate,
    SteeringEvent,
    SteeringEventType,
    StreamingSession,
    TaskRuntime,
    UpdateType,
)

SESSION = "demo"


class Refund:
    """Asks the user before refunding; ``resume`` finishes the job in a later process."""

    name = "refund"

    async def __call__(self, runtime: TaskRuntime) -> dict[str, object]:
        runtime.emit_update(UpdateType.PROGRESS, {"step": "order 7 checked"})
        answer = await runtime.checkpoint(
            "Refund 42.00 EUR for order 7?", payload={"amount": 42.0}, data={"order": 7}
        )
        return self.finish(runtime, {"order": 7}, answer)

    async def resume(
        self, runtime: TaskRuntime, checkpoint: CheckpointInfo, answer: CheckpointAnswer
    ) -> dict[str, object]:
        data = checkpoint.data
        assert isinstance(data, dict)
        return self.finish(runtime, data, answer)

    def finish(
        self, runtime: TaskRuntime, data: Mapping[str, object], answer: CheckpointAnswer
    ) -> dict[str, object]:
        refunded = 42.0 if answer.decision == "approve" else 0.0
        runtime.emit_update(UpdateType.PROGRESS, {"step": f"refunded {refunded:.2f} EUR"})
        return {"order": data["order"], "refunded": refunded}


async def report(runtime: TaskRuntime) -> None:
    """A long background job: it is RUNNING when the first process dies."""
    runtime.emit_update(UpdateType.PROGRESS, {"step": "report started"})
    await anyio.sleep_forever()


def show(update: StateUpdate) -> str:
    content = str(update.content)
    if len(content) > 72:
        content = content[:69] + "..."
    return f"  #{update.update_id:<3} {update.update_type.value:<13} {content}"


async def first_process(path: str) -> None:
    async with SQLiteDurableStore.open(path) as store:
        async with StreamingSession(SESSION, store=store, pipelines=[Refund()]) as session:
            async with session.subscribe() as client, session.subscribe() as watch:
                refund = await session.spawn_task(
                    Refund(), task_type="BACKGROUND", description="refund"
                )
                await session.spawn_task(report, task_type="BACKGROUND", description="report")
                for _ in range(4):  # a client reads four updates, each already in the file
                    print(show(await anext(client)))
                cursor = client.last_id
                print(f"first process: the client's cursor is {cursor}")
                waiting = {"refund paused", "report running"}
                async for update in watch:  # wait until both states are stored
                    content = update.content if isinstance(update.content, dict) else {}
                    if update.task_id == refund and content.get("status") == "PAUSED":
                        waiting.discard("refund paused")
                    elif update.update_type is UpdateType.PROGRESS and update.task_id != refund:
                        waiting.discard("report running")
                    if not waiting:
                        break
            print("first process: refund task paused at checkpoint, report task RUNNING")
            print(f"first process: crashes now (os._exit) CURSOR {cursor}", flush=True)
            os._exit(0)  # a crash: no aclose, nothing cleaned up


async def second_process(path: str, cursor: str) -> None:
    async with SQLiteDurableStore.open(path) as store:
        async with StreamingSession(SESSION, store=store, pipelines=[Refund()]) as session:
            tasks = {t.description: t for t in session.list_tasks()}
            refund, rep = tasks["refund"], tasks["report"]
            assert rep.error is not None and refund.checkpoint is not None
            print(
                f"second process: refund task is {refund.status.value}, report task is "
                f"{rep.status.value} ({rep.error.code.value})"
            )
            print(f"checkpoint still open: {refund.checkpoint.prompt!r}")
            async with session.subscribe(since_id=cursor) as sub:
                print(f"subscriber resumed after update {cursor}:")
                approve = SteeringEvent(
                    session_id=SESSION,
                    task_id=refund.task_id,
                    event_type=SteeringEventType.APPROVE,
                    payload={"resume_token": refund.checkpoint.resume_token},
                )
                receipt = await session.steer(approve)
                print(f"APPROVE -> {receipt.outcome.value}")
                done = await session.wait_task(refund.task_id)
                async for update in sub:
                    print(show(update))
                    content = update.content if isinstance(update.content, dict) else {}
                    if update.task_id == refund.task_id and content.get("status") == "COMPLETE":
                        break
            print(f"refund {done.status.value}: {done.result} via resume()")


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--first":
        anyio.run(first_process, sys.argv[2])
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "sessions.db")
        print("== first process")
        child = subprocess.run(
            [sys.executable, __file__, "--first", path],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        print(child.stdout, end="")
        cursor = child.stdout.split("CURSOR ")[1].split()[0]
        print("== second process (this one), same file")
        anyio.run(second_process, path, cursor)
    print("sessions_durable_restart done")


if __name__ == "__main__":
    main()
