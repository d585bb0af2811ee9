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
from ._durable import Scope
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
    agent_card: Mapping[str, Any] | None = None
    """The agent's card (capabilities descriptor), as given to ``RemoteNode``."""
    metadata: Mapping[str, Any] = field(default=_EMPTY)
    """Settings for the transport: a read-only copy of the message's meta, from a ``RemoteNode``."""
    timeout_s: float | None = None
    """How long the call may take: the node policy's ``timeout_s`` (None = no limit)."""
    context_id: str | None = None
    """The remote context to continue: the message's ``remote_context_id`` (or ``context_id``)
    meta entry, if any."""
    task_id: str | None = None
    """The remote task to continue: the message's ``remote_task_id`` meta entry, if any."""


@dataclass(frozen=True, slots=True)
class RemoteCallResult:
    """The remote agent's answer to a non-streaming call."""

    result: Any
    """The payload the node returns."""
    context_id: str | None = None
    """The remote conversation/context id, if any (default: the request's)."""
    task_id: str | None = None
    """The remote task id, if any."""
    agent_url: str | None = None
    """The agent that answered (defaults to the request's)."""
    meta: Mapping[str, Any] | None = None
    """Extra data merged into the message's meta (the node then returns a ``Message``)."""


@dataclass(frozen=True, slots=True)
class RemoteStreamEvent:
    """One event of a streaming remote call."""

    text: str | None = None
    """A piece of streamed text: it becomes a ``StreamChunk`` (an event without text, none)."""
    done: bool = False
    """The stream of text is complete (the chunk of this event's text is the ``done`` one)."""
    meta: Mapping[str, Any] | None = None
    """Chunk metadata."""
    context_id: str | None = None
    """The remote context id, when known."""
    task_id: str | None = None
    """The remote task id, as soon as the agent assigns one (needed to cancel it)."""
    agent_url: str | None = None
    """The agent that produced the event, when it differs from the node's (a redirect): the
    binding and a cancellation go there."""
    result: Any = None
    """The final result, when this event carries it."""


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
        agent_card: Mapping[str, Any] | None,
        timeout_s: float | None,
        streaming: bool,
        record_binding: bool,
    ) -> None:
        self.transport = transport
        self.skill = skill
        self.agent_url = agent_url
        self.agent_card = agent_card
        self.timeout_s = timeout_s
        self.streaming = streaming
        self.record_binding = record_binding

    def request(self, message: Message) -> RemoteCallRequest:
        meta = message.meta
        return RemoteCallRequest(
            message=message,
            skill=self.skill,
            agent_url=self.agent_url,
            agent_card=self.agent_card,
            metadata=MappingProxyType(dict(meta)) if meta else _EMPTY,
            timeout_s=self.timeout_s,
            context_id=_meta_text(meta, "remote_context_id", "context_id"),
            task_id=_meta_text(meta, "remote_task_id"),
        )

    async def __call__(self, message: Message, ctx: Context) -> Any:
        if not isinstance(message, Message):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(
                f"RemoteNode {self.skill!r} needs a Message input, got {type(message).__name__}"
            )
        request = self.request(message)
        if not self.streaming:
            reply = await self.transport.send(request)
            if reply.task_id is not None:
                context_id = reply.context_id or request.context_id
                agent_url = reply.agent_url or self.agent_url
                await self._bind(ctx, message, context_id, reply.task_id, agent_url)
            if reply.meta:  # a new envelope: the input message is never changed
                return copy_with(
                    message, payload=reply.result, meta=merge_meta(message.meta, reply.meta)
                )
            return reply.result
        task_id: str | None = None
        agent_url = self.agent_url
        result: Any = None
        try:
            async for event in self.transport.stream(request):
                if event.task_id is not None and task_id is None:
                    task_id = event.task_id
                    agent_url = event.agent_url or agent_url
                    context_id = event.context_id or request.context_id
                    await self._bind(ctx, message, context_id, task_id, agent_url)
                if event.text is not None:
                    await ctx.emit_chunk(
                        parent=message,
                        text=event.text,
                        done=event.done,
                        meta=dict(event.meta) if event.meta else None,
                    )
                if event.result is not None:
                    result = event.result
        except get_cancelled_exc_class():
            if task_id is not None:
                with CancelScope(shield=True):
                    await self._cancel_remote(agent_url, task_id)
            raise
        return result

    async def _cancel_remote(self, agent_url: str, task_id: str) -> None:
        try:
            await self.transport.cancel(agent_url=agent_url, task_id=task_id)
        except Exception:
            logger.exception("could not cancel remote task %s at %s", task_id, agent_url)

    async def _bind(
        self,
        ctx: Context,
        message: Message,
        context_id: str | None,
        task_id: str,
        agent_url: str,
    ) -> None:
        if not self.record_binding:
            return
        meta = message.meta
        binding = RemoteBinding(
            trace_id=message.trace_id,
            context_id=context_id,
            task_id=task_id,
            agent_url=agent_url,
            router_session_id=_meta_text(meta, "session_id"),
            remote_skill=self.skill,
            tenant_id=_meta_text(meta, "tenant_id", "tenant") or message.headers.tenant,
            user_id=_meta_text(meta, "user_id"),
            last_remote_task_id=task_id,
            metadata=MappingProxyType({"source": "remote_node"}),
            scope=Scope.of(message),
        )
        await ctx.save_remote_binding(binding)


def _meta_text(meta: Mapping[str, Any], *keys: str) -> str | None:
    """The first of ``keys`` in ``meta`` with a non-blank value, as stripped text."""
    for key in keys:
        value = meta.get(key)
        if value is not None:
            text = str(value).strip()
            if text:
                return text
    return None


def RemoteNode(  # noqa: N802 - reads like the class it stands for
    *,
    transport: RemoteTransport,
    skill: str,
    agent_url: str,
    name: str,
    agent_card: Mapping[str, Any] | None = None,
    policy: NodePolicy | None = None,
    streaming: bool = False,
    record_binding: bool = True,
) -> Node:
    """A node that delegates each message to a remote agent.

    Each message becomes a ``RemoteCallRequest`` carrying ``agent_card``, the message's meta, the
    policy's ``timeout_s`` and the remote context/task to continue (the ``remote_context_id`` /
    ``context_id`` and ``remote_task_id`` meta entries). Without ``streaming`` the node returns
    the ``result`` of ``transport.send`` (in a new envelope with the result's ``meta`` merged in
    when there is any). With ``streaming=True`` each event's ``text`` is emitted as a
    ``StreamChunk`` of the message's trace (``done`` as the event says; no chunk is added), and
    the last ``result`` an event carried is returned. Cancelling the trace cancels the remote task
    (``transport.cancel``). Bindings between the trace and the remote task are saved to the
    flow's state store when there is one (``record_binding``).
    """
    node_policy = policy or NodePolicy(validate="none")
    call = _RemoteCall(
        transport, skill, agent_url, agent_card, node_policy.timeout_s, streaming, record_binding
    )
    return Node(call, name=name, policy=node_policy)
