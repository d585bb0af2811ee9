"""``A2ATransport``: core ``RemoteNode``s call remote A2A agents through the a2a-sdk client."""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from typing import Any

import anyio
import httpx
from a2a.client import A2ACardResolver, Client, ClientConfig, ClientFactory
from a2a.types import (
    AgentCard,
    Artifact,
    CancelTaskRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    StreamResponse,
    TaskState,
)
from a2a.utils.errors import A2AError, TaskNotCancelableError
from anyio import CancelScope, get_cancelled_exc_class

from penguiflow.core import RemoteCallRequest, RemoteCallResult, RemoteStreamEvent

from ._a2a_parts import from_parts, metadata_of, to_parts
from ._errors import (
    ToolAuthError,
    ToolClientError,
    ToolConnectionError,
    ToolError,
    ToolServerError,
    ToolTimeoutError,
)

__all__ = ["A2ATransport"]

RESULT = "result"
_ANNOUNCE_TIMEOUT_S = 10.0
"""How long a cancelled call still waits for the agent to name its task (so it can cancel it)."""
_TERMINAL = {
    TaskState.TASK_STATE_COMPLETED,
    TaskState.TASK_STATE_FAILED,
    TaskState.TASK_STATE_CANCELED,
    TaskState.TASK_STATE_REJECTED,
    TaskState.TASK_STATE_INPUT_REQUIRED,
    TaskState.TASK_STATE_AUTH_REQUIRED,
}


class _Tracker:
    """Folds a task's stream of events into its ids, state, artifacts and new texts."""

    def __init__(self, agent_url: str) -> None:
        self.agent_url = agent_url
        self.task_id: str | None = None
        self.context_id: str | None = None
        self.state: TaskState = TaskState.TASK_STATE_UNSPECIFIED
        self.status_text = ""
        self.artifacts: dict[str, list[Part]] = {}  # insertion order = arrival order
        self.reply: Message | None = None  # the agent answered with a message, no task

    @property
    def finished(self) -> bool:
        return self.reply is not None or self.state in _TERMINAL

    def _ids(self, task_id: str, context_id: str) -> None:
        self.task_id = self.task_id or task_id or None
        self.context_id = self.context_id or context_id or None

    def feed(self, event: StreamResponse) -> list[str]:
        """Take one event; return the streamed texts it carries (non-``result`` artifacts)."""
        if event.HasField("task"):
            task = event.task
            self._ids(task.id, task.context_id)
            self._status(task.status.state, task.status.message)
            for artifact in task.artifacts:
                self.artifacts[artifact.artifact_id] = list(artifact.parts)
        elif event.HasField("message"):
            self.reply = event.message
            self._ids(event.message.task_id, event.message.context_id)
        elif event.HasField("status_update"):
            update = event.status_update
            self._ids(update.task_id, update.context_id)
            self._status(update.status.state, update.status.message)
        elif event.HasField("artifact_update"):
            update = event.artifact_update
            self._ids(update.task_id, update.context_id)
            return self._artifact(update.artifact, update.append)
        return []

    def _status(self, state: TaskState, message: Message) -> None:
        self.state = state
        texts = [part.text for part in message.parts if part.HasField("text")]
        if texts:
            self.status_text = "\n".join(texts)

    def _artifact(self, artifact: Artifact, append: bool) -> list[str]:
        key = artifact.artifact_id
        parts = list(artifact.parts)
        if append and key in self.artifacts:
            self.artifacts[key].extend(parts)
        else:
            self.artifacts.pop(key, None)
            self.artifacts[key] = parts
        if key == RESULT or artifact.name == RESULT:
            return []
        return [part.text for part in parts if part.HasField("text")]

    def result(self) -> Any:
        """The call's result, or the ``ToolError`` its final state means."""
        if self.reply is not None:
            return from_parts(self.reply.parts)
        state = self.state
        if state == TaskState.TASK_STATE_COMPLETED:
            parts = self.artifacts.get(RESULT)
            if parts is None and self.artifacts:
                parts = list(self.artifacts.values())[-1]
            return from_parts(parts or [])
        name = TaskState.Name(state).removeprefix("TASK_STATE_")
        detail = {"state": name, "task_id": self.task_id, "context_id": self.context_id}
        said = f": {self.status_text}" if self.status_text else ""
        where = f"remote task {self.task_id} at {self.agent_url}"
        kwargs: dict[str, Any] = {"source": "a2a", "tool": self.agent_url, "detail": detail}
        if state == TaskState.TASK_STATE_AUTH_REQUIRED:
            raise ToolAuthError(f"{where} needs authentication{said}", **kwargs)
        if state == TaskState.TASK_STATE_INPUT_REQUIRED:
            raise ToolClientError(f"{where} needs more input{said}", **kwargs)
        if state == TaskState.TASK_STATE_REJECTED:
            raise ToolClientError(f"{where} was rejected{said}", **kwargs)
        if state == TaskState.TASK_STATE_FAILED:
            raise ToolServerError(f"{where} failed{said}", **kwargs)
        if state == TaskState.TASK_STATE_CANCELED:
            raise ToolServerError(f"{where} was cancelled by the agent{said}", **kwargs)
        raise ToolServerError(f"{where} ended its stream in state {name}{said}", **kwargs)


def _outgoing(request: RemoteCallRequest) -> SendMessageRequest:
    meta = metadata_of(request.metadata)
    meta.setdefault("skill", request.skill)
    message = Message(
        message_id=uuid.uuid4().hex,
        role=Role.ROLE_USER,
        parts=to_parts(request.message.payload),
        metadata=meta,
    )
    context_id = request.context_id or _text(request.metadata.get("context_id"))
    if context_id:
        message.context_id = context_id
    if request.task_id:
        message.task_id = request.task_id
    return SendMessageRequest(message=message)


def _text(value: object) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _adapt(exc: Exception, url: str) -> ToolError:
    """A client-side failure as a ``ToolError`` (its ``__cause__`` is ``exc``)."""
    if isinstance(exc, ToolError):
        return exc
    if isinstance(exc, httpx.TransportError | OSError):
        error: ToolError = ToolConnectionError(
            f"could not reach the A2A agent at {url}: {exc}", source="a2a", tool=url
        )
    elif isinstance(exc, httpx.HTTPStatusError):
        status = exc.response.status_code
        kind = ToolServerError if status >= 500 else ToolClientError
        if status in (401, 403):
            kind = ToolAuthError
        error = kind(
            f"the A2A agent at {url} answered {status}", source="a2a", tool=url, status_code=status
        )
    elif isinstance(exc, A2AError):
        error = ToolClientError(
            f"the A2A agent at {url} refused the call: {type(exc).__name__}: {exc}",
            source="a2a",
            tool=url,
        )
    else:
        error = ToolServerError(
            f"A2A call to {url} failed: {type(exc).__name__}: {exc}", source="a2a", tool=url
        )
    error.__cause__ = exc
    return error


class A2ATransport:
    """A core ``RemoteTransport`` over the a2a-sdk client (JSON-RPC, streaming when offered).

    One client per agent URL (its card resolved once), sharing one ``httpx.AsyncClient``
    (yours, or one the transport owns and closes in ``aclose()``). ``send()`` streams too, so it
    knows the task id early and cancels the remote task when the caller is cancelled.
    """

    def __init__(
        self,
        *,
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
        httpx_client: httpx.AsyncClient | None = None,
    ) -> None:
        if timeout_s is not None and timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0 (or None for no limit), got {timeout_s}")
        self._headers = dict(headers or {})
        self._timeout_s = timeout_s
        self._http = httpx_client
        self._owns_http = httpx_client is None
        self._clients: dict[str, Client] = {}
        self._cards: dict[str, AgentCard] = {}
        self._lock = anyio.Lock()

    async def __aenter__(self) -> A2ATransport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every agent client and the owned HTTP client. Idempotent."""
        clients, self._clients = list(self._clients.values()), {}
        self._cards = {}
        with CancelScope(shield=True):
            for client in clients:
                await client.close()
            if self._owns_http and self._http is not None:
                await self._http.aclose()
                self._http = None

    async def agent_card(self, agent_url: str, *, refresh: bool = False) -> AgentCard:
        """The agent's card, resolved once per URL (``refresh=True``: fetch it again).

        Raises:
            ToolConnectionError: The card cannot be fetched or parsed (the message names the URL).
        """
        async with self._lock:
            if refresh:
                stale = self._clients.pop(agent_url, None)
                self._cards.pop(agent_url, None)
                if stale is not None:
                    with CancelScope(shield=True):
                        await stale.close()
            return await self._card(agent_url)

    async def _card(self, url: str) -> AgentCard:
        card = self._cards.get(url)
        if card is not None:
            return card
        if self._http is None:
            # no read timeout: an SSE stream is quiet while the agent works
            self._http = httpx.AsyncClient(
                headers=self._headers, timeout=httpx.Timeout(30.0, read=None)
            )
        try:
            card = await A2ACardResolver(self._http, url).get_agent_card(
                http_kwargs={"headers": self._headers} if self._headers else None
            )
        except Exception as exc:
            cause = exc.__cause__ if isinstance(exc.__cause__, Exception) else exc
            error = ToolConnectionError(
                f"could not resolve the agent card of {url}: {exc}",
                source="a2a",
                tool=url,
                detail={"sent": False},
            )
            raise error from cause
        self._cards[url] = card
        return card

    async def _client(self, url: str) -> Client:
        async with self._lock:
            client = self._clients.get(url)
            if client is None:
                card = await self._card(url)
                assert self._http is not None
                config = ClientConfig(streaming=True, httpx_client=self._http)
                client = ClientFactory(config).create(card)
                self._clients[url] = client
            return client

    async def _events(
        self, request: RemoteCallRequest, tracker: _Tracker
    ) -> AsyncGenerator[list[str]]:
        client = await self._client(request.agent_url)
        events = client.send_message(_outgoing(request))
        try:
            # Until the agent names the task, a cancellation waits (bounded): without the id
            # the remote task could not be cancelled, and would run on unobserved.
            early: list[list[str]] = []
            ended = False
            with CancelScope(shield=True), anyio.move_on_after(_ANNOUNCE_TIMEOUT_S):
                while tracker.task_id is None and not tracker.finished:
                    try:
                        event = await anext(events)
                    except StopAsyncIteration:
                        ended = True
                        break
                    early.append(tracker.feed(event))
            for texts in early:
                yield texts
            if ended or tracker.finished:
                return
            async for event in events:
                yield tracker.feed(event)
                if tracker.finished:
                    return
        except (get_cancelled_exc_class(), ToolError, GeneratorExit):
            raise
        except Exception as exc:
            raise _adapt(exc, request.agent_url) from exc
        finally:
            aclose = getattr(events, "aclose", None)  # the SDK's stream is an async generator
            if aclose is not None:
                with CancelScope(shield=True):
                    await aclose()

    async def send(self, request: RemoteCallRequest) -> RemoteCallResult:
        """Run one call to completion; cancelling the caller cancels the remote task."""
        tracker = _Tracker(request.agent_url)
        limit = request.timeout_s or self._timeout_s
        try:
            with anyio.fail_after(limit):
                async with aclosing(self._events(request, tracker)) as events:
                    async for _ in events:
                        pass
        except get_cancelled_exc_class():
            await self._cancel_quietly(request.agent_url, tracker.task_id)
            raise
        except TimeoutError as exc:
            await self._cancel_quietly(request.agent_url, tracker.task_id)
            assert limit is not None
            raise ToolTimeoutError(
                f"A2A call to {request.agent_url} took longer than {limit}s",
                source="a2a",
                tool=request.agent_url,
                timeout_s=limit,
            ) from exc
        return RemoteCallResult(
            result=tracker.result(),
            context_id=tracker.context_id,
            task_id=tracker.task_id,
            agent_url=request.agent_url,
        )

    async def stream(self, request: RemoteCallRequest) -> AsyncGenerator[RemoteStreamEvent]:
        """Yield the task id first, then one event per streamed text, then the result (``done``).

        ``timeout_s`` is not applied here (a deadline spanning the caller's iteration belongs to
        the caller: ``RemoteNode`` runs under its policy's ``timeout_s``).
        """
        tracker = _Tracker(request.agent_url)
        announced = False
        async with aclosing(self._events(request, tracker)) as events:
            async for texts in events:
                if not announced and tracker.task_id is not None:
                    announced = True
                    yield RemoteStreamEvent(task_id=tracker.task_id, context_id=tracker.context_id)
                for text in texts:
                    yield RemoteStreamEvent(
                        text=text, task_id=tracker.task_id, context_id=tracker.context_id
                    )
        result = tracker.result()
        yield RemoteStreamEvent(
            done=True, result=result, task_id=tracker.task_id, context_id=tracker.context_id
        )

    async def cancel(self, *, agent_url: str, task_id: str) -> None:
        """Cancel a remote task (a task that already ended is left alone)."""
        client = await self._client(agent_url)
        try:
            await client.cancel_task(CancelTaskRequest(id=task_id))
        except TaskNotCancelableError:
            return
        except Exception as exc:
            raise _adapt(exc, agent_url) from exc

    async def _cancel_quietly(self, agent_url: str, task_id: str | None) -> None:
        if task_id is None:
            return
        with CancelScope(shield=True):
            try:
                await self.cancel(agent_url=agent_url, task_id=task_id)
            except ToolError:
                pass
