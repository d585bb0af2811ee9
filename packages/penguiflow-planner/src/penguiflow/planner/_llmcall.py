"""One LLM call of a run: budgets first, the retry policy, usage accounting, and compaction.

Every LLM request of a run (planning, repair, critique, summary) goes through :func:`call_llm`:
the token and cost budgets are checked before it, each attempt emits ``llm_call``, retryable
failures wait per ``LLMRetryPolicy`` (``llm_retry``; never past the run's deadline), and a
``CONTEXT_LENGTH_EXCEEDED`` compacts the trajectory once and retries.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio

from ._classify import classify_llm_error
from ._errors import LLMError, LLMErrorType, PlannerUsageError
from ._events import PlannerEventType
from ._llm import LLMMessage, LLMResult, Usage
from ._prompts import render
from ._stream import AnswerStream
from ._types import PlannerFinish, PlannerPause

if TYPE_CHECKING:
    from ._run import Run

__all__ = ["Finished", "call_llm", "compact", "maybe_compact"]


class Finished(Exception):
    """Internal: the run ends with this outcome."""

    def __init__(self, result: PlannerFinish[Any] | PlannerPause) -> None:
        super().__init__(result)
        self.result = result


def check_llm_budgets(run: Run) -> None:
    """End the run (``Finished``) when its token or cost budget is used up."""
    budget = run.budget
    if budget.max_tokens is not None and run.prompt_tokens + run.completion_tokens >= (
        budget.max_tokens
    ):
        raise Finished(
            run.finish("budget_exhausted", exhausted="tokens", error="max_tokens reached")
        )
    if budget.max_cost_usd is not None and (run.cost or 0.0) >= budget.max_cost_usd:
        raise Finished(
            run.finish("budget_exhausted", exhausted="cost", error="max_cost_usd reached")
        )


async def call_llm(
    run: Run,
    messages: list[LLMMessage],
    purpose: str,
    response_format: Mapping[str, Any],
    *,
    client: Any = None,
    stream: AnswerStream | None = None,
    rebuild: Callable[[], list[LLMMessage]] | None = None,
) -> str:
    """One LLM request with the planner's retry policy; returns the reply's text.

    ``rebuild`` gives the messages again after a compaction (None: the call cannot be compacted,
    so a ``CONTEXT_LENGTH_EXCEEDED`` is raised as it is).
    """
    planner = run.planner
    client = client or planner.llm_client
    retry = 0
    while True:
        check_llm_budgets(run)
        run.event(PlannerEventType.LLM_CALL, extra={"purpose": purpose, "attempt": retry})
        try:
            # asyncio's own timeout: an anyio scope per call costs ~1 KiB and ~15 % of a step
            async with asyncio.timeout(planner.llm_timeout_s):
                raw = await client.complete(
                    messages=messages,
                    response_format=response_format,
                    stream=stream is not None,
                    on_stream_chunk=None if stream is None else stream.feed,
                )
            result = LLMResult.coerce(raw)
        except AssertionError:
            raise  # a test double's complaint reaches the test
        except Exception as exc:
            error = _as_llm_error(exc)
            if error.error_type is LLMErrorType.CONTEXT_LENGTH_EXCEEDED:
                if rebuild is not None and not run.compacted_for_length:
                    run.compacted_for_length = True
                    if await compact(run, force=True):
                        messages = rebuild()
                        continue
                raise error from exc
            retry += 1
            delay = planner.llm_retry.next_delay(error, retry, remaining_s=run.remaining_s())
            if delay is None:
                raise error from exc
            run.event(
                PlannerEventType.LLM_RETRY,
                error=str(error),
                extra={"purpose": purpose, "retry": retry, "delay_s": delay},
            )
            await anyio.sleep(delay)
            continue
        _account(run, result, messages, purpose)
        return result.text


def _as_llm_error(exc: Exception) -> LLMError:
    if isinstance(exc, LLMError):
        return exc
    error = LLMError(f"{type(exc).__name__}: {exc}", error_type=classify_llm_error(exc))
    error.__cause__ = exc
    return error


def _account(run: Run, result: LLMResult, messages: list[LLMMessage], purpose: str) -> None:
    usage = result.usage
    if usage is None:
        counter = run.planner.token_counter
        usage = Usage(counter.count_messages(messages), counter.count(result.text))
        run.estimated = True
    run.prompt_tokens += usage.prompt_tokens
    run.completion_tokens += usage.completion_tokens
    run.llm_calls += 1
    run.planner.counters["llm_calls"] += 1
    run.by_purpose[purpose] += 1
    if result.cost_usd is not None:
        run.cost = (run.cost or 0.0) + result.cost_usd
    elif run.budget.max_cost_usd is not None:
        raise PlannerUsageError(
            "PlannerBudget(max_cost_usd=...) needs an LLM client that reports cost; give it "
            "pricing=ModelPrice(...)"
        )


# ------------------------------------------------------------------ compaction
async def maybe_compact(run: Run) -> None:
    """Compact when the next planning prompt would exceed ``CompactionConfig.max_prompt_tokens``."""
    config = run.planner.compaction
    if config is None:
        return
    if run.planner.token_counter.count_messages(run.messages()) > config.max_prompt_tokens:
        await compact(run)


async def compact(run: Run, force: bool = False) -> bool:
    """Fold older steps into ``trajectory.summary``; False when there is nothing to fold.

    The steps stay in the trajectory; ``metadata["compacted_steps"]`` says how many of the first
    ones the prompt now shows as the summary only.
    """
    config = run.planner.compaction
    keep = 4 if config is None else config.keep_last_steps
    trajectory = run.trajectory
    done = int(trajectory.metadata.get("compacted_steps", 0))
    live = trajectory.steps[done:]
    old = live[: max(len(live) - keep, 0)]
    if not old:
        return False
    messages: list[LLMMessage] = [
        {"role": "system", "content": _SUMMARISER},
        {
            "role": "user",
            "content": render(
                {"previous_summary": trajectory.summary, "steps": [s.to_json() for s in old]},
                50_000,
            ),
        },
    ]
    text = await call_llm(
        run,
        messages,
        "trajectory_summary",
        _SUMMARY_FORMAT,
        client=None if config is None else config.llm,
    )
    try:
        summary = json.loads(text).get("summary")
    except (ValueError, AttributeError):
        summary = None
    trajectory.summary = summary if isinstance(summary, str) else text
    trajectory.metadata["compacted_steps"] = done + len(old)
    run.event(PlannerEventType.COMPACTION, extra={"steps": len(old), "forced": force})
    return True


_SUMMARISER = (
    "Summarise these planner steps for the planner's own memory. "
    'Reply with JSON: {"summary": str}.'
)
_SUMMARY_FORMAT = {
    "type": "json_schema",
    "json_schema": {
        "name": "trajectory_summary",
        "schema": {
            "type": "object",
            "properties": {"summary": {"type": "string"}},
            "required": ["summary"],
        },
        "strict": False,
    },
}
