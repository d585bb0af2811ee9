"""RemoteNode: a node whose work is done by an external agent reached through a transport.

The transport is the only thing that knows the wire protocol (HTTP, A2A, a queue …); core defines
the protocol and the bridge. Streaming events from the remote agent become ``StreamChunk``s of the
caller's trace, and cancelling the trace cancels the remote task.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

from anyio import CancelScope, get_cancelled_exc_class

from ._context import Context
from ._distribution import RemoteBinding
from ._node import Node, NodePolicy
from ._types import Message, copy_with, merge_meta

__all__ = [
    "RemoteCallRequest",
    "RemoteCallResult",
    "RemoteNode",
    "RemoteStreamEvent",
    "RemoteTransport",
]

logger = logging.getLogger("penguiflow.core")
_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class RemoteCallRequest:
    """What a ``RemoteNode`` asks the remote agent to do."""

    message: Message
    """The message being processed (its payload is the input)."""
    skill: str
    """Which capability of the remote agent to invoke."""
    agent_url: str
    """Where the agent lives."""
    metadata: Mapping[str, Any] = field(default=_EMPTY)
    """Extra transport-specific settings."""


@dataclass(frozen=True, slots=True)
class RemoteCallResult:
    """The remote agent's answer to a non-streaming call."""

    result: Any
    """The payload the node returns."""
    context_id: str | None = None
    """The remote conversation/context id, if any."""
    task_id: str | None = None
    """The remote task id, if any."""
    agent_url: str | None = None
    """The agent that answered (defaults to the request's)."""
    meta: Mapping[str, Any] = field(default=_EMPTY)
    """Extra data merged into the message's meta."""


@dataclass(frozen=True, slots=True)
class RemoteStreamEvent:
    """One event of a streaming remote call."""

    text: str | None = None
    """A piece of streamed text (becomes a ``StreamChunk``)."""
    done: bool = False
    """The stream of text is complete."""
    result: Any = None
    """The final result, when this event carries it."""
    context_id: str | None = None
    """The remote context id, when known."""
    task_id: str | None = None
    """The remote task id, as soon as the agent assigns one (needed to cancel it)."""
    meta: Mapping[str, Any] = field(default=_EMPTY)
    """Chunk metadata."""


@runtime_checkable
class RemoteTransport(Protocol):
    """Talks to remote agents: one call, a streaming call, and cancellation."""

    async def send(self, request: RemoteCallRequest) -> RemoteCallResult:
        """Run one call to completion."""
        ...

    def stream(self, request: RemoteCallRequest) -> AsyncIterator[RemoteStreamEvent]:
        """Run a call, yielding its events as they come."""
        ...

    async def cancel(self, *, agent_url: str, task_id: str) -> None:
        """Cancel a remote task (called when the caller's trace is cancelled)."""
        ...


class _RemoteCall:
    """Node function of ``RemoteNode``."""

    def __init__(
        self,
        transport: RemoteTransport,
        skill: str,
        agent_url: str,
        streaming: bool,
        record_binding: bool,
    ) -> None:
        self.transport = transport
        self.skill = skill
        self.agent_url = agent_url
        self.streaming = streaming
        self.record_binding = record_binding

    async def __call__(self, message: Message, ctx: Context) -> Any:
        request = RemoteCallRequest(message=message, skill=self.skill, agent_url=self.agent_url)
        if not self.streaming:
            reply = await self.transport.send(request)
            if reply.task_id is not None:
                await self._bind(ctx, message, reply.context_id, reply.task_id, reply.agent_url)
            if reply.meta:  # a new envelope: the input message is never changed
                return copy_with(
                    message, payload=reply.result, meta=merge_meta(message.meta, reply.meta)
                )
            return reply.result
        task_id: str | None = None
        result: Any = None
        finished = False
        try:
            async for event in self.transport.stream(request):
                if event.task_id is not None and task_id is None:
                    task_id = event.task_id
                    await self._bind(ctx, message, event.context_id, task_id, None)
                if event.text is not None or event.done:
                    await ctx.emit_chunk(
                        parent=message,
                        text=event.text or "",
                        done=event.done,
                        meta=dict(event.meta),
                    )
                    finished = finished or event.done
                if event.result is not None:
                    result = event.result
            if not finished:
                await ctx.emit_chunk(parent=message, text="", done=True)
        except get_cancelled_exc_class():
            if task_id is not None:
                with CancelScope(shield=True):
                    await self._cancel_remote(task_id)
            raise
        return result

    async def _cancel_remote(self, task_id: str) -> None:
        try:
            await self.transport.cancel(agent_url=self.agent_url, task_id=task_id)
        except Exception:
            logger.exception("could not cancel remote task %s at %s", task_id, self.agent_url)

    async def _bind(
        self,
        ctx: Context,
        message: Message,
        context_id: str | None,
        task_id: str,
        agent_url: str | None,
    ) -> None:
        if not self.record_binding:
            return
        binding = RemoteBinding(
            trace_id=message.trace_id,
            context_id=context_id,
            task_id=task_id,
            agent_url=agent_url or self.agent_url,
        )
        await ctx.save_remote_binding(binding)


def RemoteNode(  # noqa: N802 - reads like the class it stands for
    *,
    transport: RemoteTransport,
    skill: str,
    agent_url: str,
    name: str,
    policy: NodePolicy | None = None,
    streaming: bool = False,
    record_binding: bool = True,
) -> Node:
    """A node that delegates each message to a remote agent.

    With ``streaming=True`` the transport's text events are emitted as ``StreamChunk``s of the
    message's trace (ending with a ``done`` chunk) and the final event's ``result`` is returned;
    cancelling the trace cancels the remote task (``transport.cancel``). Bindings between the trace
    and the remote task are saved to the flow's state store when there is one.
    """
    call = _RemoteCall(transport, skill, agent_url, streaming, record_binding)
    return Node(call, name=name, policy=policy or NodePolicy(validate="none"))
