"""The planner as a flow node: a query, request or resume in; the outcome (and its stream) out."""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, cast

import anyio

from penguiflow.core import Message

from ._types import PlannerFinish, PlannerRequest, PlannerResume

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectSendStream

    from ._react import ReactPlanner

__all__ = ["serve"]


async def serve(
    planner: ReactPlanner[Any], message: Message, ctx: Any, tool_context: dict[str, Any]
) -> Any:
    """Run one planner node invocation: a query, request or resume in, the outcome out."""
    payload = message.payload
    memory_key = getattr(payload, "memory_key", None)
    if memory_key is None:
        memory_key = {"tenant_id": message.headers.tenant}
    deadline_at = None
    if message.deadline_s is not None:  # wall-clock epoch seconds -> the planner's clock
        deadline_at = planner.time_source() + (message.deadline_s - time.time())
    if isinstance(payload, PlannerResume):
        async with _chunks_to(ctx, message, planner.stream_final_response) as sink:
            result = await planner.resume(
                payload.token,
                answers=payload.answers,
                memory_key=memory_key,
                tool_context=tool_context,
                _flow_context=ctx,
                _deadline_at=deadline_at,
                _chunk_sink=None if sink is None else sink.feed,
            )
            if sink is not None:
                sink.finished(result)
            return result
    request = payload if isinstance(payload, PlannerRequest) else PlannerRequest(query=str(payload))
    async with _chunks_to(ctx, message, planner.stream_final_response) as sink:
        result = await planner.run(
            request.query,
            llm_context=request.llm_context,
            tool_context=tool_context,
            memory_key=memory_key,
            budget=request.budget,
            trace_id=message.trace_id,
            _flow_context=ctx,
            _deadline_at=deadline_at,
            _chunk_sink=None if sink is None else sink.feed,
        )
        if sink is not None:
            sink.finished(result)
        return result


class _ChunkSink:
    """Where a planner node's answer deltas go: a queue a forwarder task turns into chunks."""

    __slots__ = ("send", "streamed")

    def __init__(self, send: MemoryObjectSendStream[str | None]) -> None:
        self.send = send
        self.streamed = False

    def feed(self, text: str) -> None:
        """One delta of the answer (called synchronously from the model's stream callback)."""
        self.streamed = True
        self.send.send_nowait(text)

    def finished(self, result: object) -> None:
        """The run ended: a finished answer that did not stream goes out as one chunk."""
        if self.streamed or not isinstance(result, PlannerFinish):
            return
        finish = cast("PlannerFinish[Any]", result)
        if finish.reason != "answer_complete" or finish.payload is None:
            return
        answer = finish.payload.raw_answer
        text = answer if isinstance(answer, str) else json.dumps(answer, default=str)
        if text:
            self.send.send_nowait(text)


@asynccontextmanager
async def _chunks_to(
    ctx: Any, message: Message, enabled: bool
) -> AsyncGenerator[_ChunkSink | None]:
    """A sink for answer deltas that emits them as ``StreamChunk``s of ``message``, in order.

    The deltas arrive synchronously from the model's stream callback, so they are queued
    (unbounded: at most the answer's text) and a forwarder task emits them with
    ``ctx.emit_chunk`` (which obeys backpressure), then one ``done`` chunk when the run ends.
    """
    if not enabled:
        yield None
        return
    send, receive = anyio.create_memory_object_stream[str | None](max_buffer_size=math.inf)

    async def forward() -> None:
        async with receive:
            async for text in receive:
                if text is None:
                    await ctx.emit_chunk(parent=message, text="", done=True)
                    return
                await ctx.emit_chunk(parent=message, text=text)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(forward)
            with send:
                sink = _ChunkSink(send)
                try:
                    yield sink
                except BaseException:
                    tg.cancel_scope.cancel()  # the run failed or was cancelled: no done chunk
                    raise
                send.send_nowait(None)
    except BaseExceptionGroup as group:  # this group is ours: let the one error out as itself
        if len(group.exceptions) != 1:
            raise
        single = group.exceptions[0]
        raise single from single.__cause__
