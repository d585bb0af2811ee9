"""A foreground turn with three background tasks, and a context patch the user must approve.

Run ``uv run python examples/sessions_background_tasks/main.py``. The user's turn spawns three
background research tasks and answers at once. Two tasks merge their finding into the session
context when they complete (APPEND); the third is HUMAN_GATED, so its patch waits for the user as
a ``CHECKPOINT{kind: "context_patch"}``. A subscriber prints every update; background tasks also
report through NOTIFICATIONs. The user approves the pending patch by steering (APPROVE with its
``patch_id``), and the next turn's context snapshot holds all three findings.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

from penguiflow.sessions import (
    ContextPatch,
    MergeStrategy,
    StateUpdate,
    SteeringEvent,
    SteeringEventType,
    StreamingSession,
    Subscription,
    TaskResult,
    TaskRuntime,
    TaskType,
    UpdateType,
)

FINDINGS = {
    "krill": "Krill swarms can exceed 10 000 animals per cubic metre.",
    "ice": "Sea ice extent peaks in September.",
    "diet": "Adelie penguins eat mostly krill.",
}
STRATEGY = {"krill": MergeStrategy.APPEND, "ice": MergeStrategy.APPEND, "diet": "human_gated"}
AFTER = {"ice": "krill", "diet": "ice"}  # each waits for the one before: a fixed order


class Research:
    """One background finding per topic, returned as a context patch."""

    def __init__(self) -> None:
        self.finished = {topic: anyio.Event() for topic in FINDINGS}

    async def __call__(self, runtime: TaskRuntime) -> TaskResult:
        topic = runtime.query or ""
        runtime.emit_update(UpdateType.PROGRESS, {"topic": topic, "stage": "reading"})
        if topic in AFTER:
            await self.finished[AFTER[topic]].wait()
        self.finished[topic].set()
        fact = FINDINGS[topic]
        return TaskResult(
            payload={"topic": topic},
            digest=[fact],
            context_patch=ContextPatch(digest=[fact], facts={"findings": fact}),
        )


def turn(research: Research) -> Callable[[TaskRuntime], Awaitable[str]]:
    """The foreground pipeline, starting ``research`` three times."""

    async def pipeline(runtime: TaskRuntime) -> str:
        """The user's turn: start the research, answer at once."""
        for topic in FINDINGS:
            await runtime.spawn_task(
                research,
                task_type=TaskType.BACKGROUND,
                query=topic,
                description=f"research {topic}",
                merge_strategy=STRATEGY[topic],
                propagate_on_cancel="isolate",
            )
        return "I started three research tasks; I will tell you what they find."

    return pipeline


async def next_turn(runtime: TaskRuntime) -> list[str]:
    """The next turn reads the findings from its context snapshot."""
    found = runtime.context.llm_context.get("findings", [])
    return [str(f) for f in found] if isinstance(found, list) else [str(found)]


def describe(update: StateUpdate, names: dict[str, str]) -> str:
    data = update.content if isinstance(update.content, dict) else {}
    who = names.get(update.task_id or "", "turn")
    kind = update.update_type
    if kind is UpdateType.STATUS_CHANGE:
        return f"{who}: {data['previous']} -> {data['status']}"
    if kind is UpdateType.PROGRESS:
        return f"{who}: {data['stage']}"
    if kind is UpdateType.RESULT:
        return f"{who}: RESULT {data['payload']} patch_id={'yes' if data['patch_id'] else None}"
    if kind is UpdateType.NOTIFICATION:
        return f"{who}: NOTIFICATION {data['title']!r}"
    if kind is UpdateType.CHECKPOINT:
        return f"{who}: CHECKPOINT {data['kind']} digest={data['digest']}"
    return f"{who}: {kind}"


async def show(session: StreamingSession, sub: Subscription, completes: int) -> None:
    """Print updates until ``completes`` tasks reached COMPLETE."""
    names: dict[str, str] = {}
    async for update in sub:
        task = session.get_task(update.task_id or "")
        if task is not None and task.query and task.task_type is TaskType.BACKGROUND:
            names[task.task_id] = task.query
        print(f"  [{update.update_id:>2}] {describe(update, names)}")
        data = update.content if isinstance(update.content, dict) else {}
        if update.update_type is UpdateType.STATUS_CHANGE and data["status"] == "COMPLETE":
            completes -= 1
            if completes == 0:
                return


async def main() -> None:
    research = Research()
    async with StreamingSession("s-bg") as session:
        with anyio.fail_after(10):
            async with session.subscribe() as sub, anyio.create_task_group() as tg:
                tg.start_soon(show, session, sub, 1 + len(FINDINGS))
                await session.run_task(turn(research), query="What do penguins eat?")
        (first,) = session.list_tasks(task_type=TaskType.FOREGROUND)
        print(f"turn answered: {first.result}")
        print(f"context findings now: {session.get_context().llm_context['findings']}")
        (pending,) = session.pending_patches()
        print(f"pending patch (diverged={pending.diverged}): {pending.patch.digest}")
        receipt = await session.steer(
            SteeringEvent(
                session_id="s-bg",
                task_id=pending.task_id or "",
                event_type=SteeringEventType.APPROVE,
                payload={"patch_id": pending.patch_id},
            )
        )
        print(f"user approves the gated patch -> {receipt.outcome}")
        with anyio.fail_after(10):
            seen = await session.run_task(next_turn, query="And then?")
        assert isinstance(seen.payload, list)
        print(f"the next turn sees {len(seen.payload)} findings: {seen.payload[-1]}")
    print("sessions_background_tasks done")


if __name__ == "__main__":
    anyio.run(main)
