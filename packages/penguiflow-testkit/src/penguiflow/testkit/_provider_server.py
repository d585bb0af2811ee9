"""``ProviderServer``: a loopback HTTP server that answers like OpenAI and Anthropic do.

Real SDKs talk to it over real sockets, so a test covers the client's request building, the
SDK's parsing of JSON and SSE, its status handling and its timeouts, with no mocks::

    async with ProviderServer() as server:
        server.reply(text='{"answer": 42}', usage=(12, 3))
        client = OpenAIJSONClient("m", base_url=server.openai_base_url, api_key="test")
        result = await client.complete(messages=[{"role": "user", "content": "hi"}])
        assert server.requests[0].json["model"] == "m"
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self, cast

from ._provider_http import ProviderRequest, read_request, write_failure, write_json, write_sse
from ._provider_wire import (
    ScriptedFailure,
    ScriptedReply,
    anthropic_message,
    anthropic_sse,
    openai_completion,
    openai_sse,
)

__all__ = ["ProviderRequest", "ProviderServer"]

_OPENAI_PATH = "/v1/chat/completions"
_ANTHROPIC_PATH = "/v1/messages"
_CLOSE_TIMEOUT_S = 5.0


class ProviderServer:
    """A stdlib asyncio HTTP/1.1 server on ``127.0.0.1`` (a free port) that answers scripts.

    ``POST /v1/chat/completions`` answers in OpenAI's format and ``POST /v1/messages`` in
    Anthropic's, each as JSON or, when the request asks to ``stream``, as the provider's SSE
    events. Every request to either endpoint takes the next scripted answer, in order: a
    :meth:`reply` or a :meth:`fail`. A request with nothing scripted gets a 500 whose message says
    so. Every request is recorded in :attr:`requests`.
    """

    def __init__(self, *, model: str = "scripted-model", chunk_size: int = 8) -> None:
        """Make a server (started by ``async with`` or :meth:`start`).

        Args:
            model: The model name replies carry when a reply names none.
            chunk_size: Characters per streamed text delta, unless a reply says otherwise.
        """
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.model = model
        self.chunk_size = chunk_size
        self.requests: list[ProviderRequest] = []
        """Every request received, in arrival order."""
        self._script: deque[ScriptedReply | ScriptedFailure] = deque()
        self._server: asyncio.Server | None = None
        self._port: int | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._closing: asyncio.Event | None = None
        self._waiters: list[tuple[int, asyncio.Event]] = []
        self._seq = 0

    # ------------------------------------------------------------------ scripting

    def reply(
        self,
        text: str = "",
        *,
        usage: tuple[int, int] = (10, 5),
        cached_tokens: int = 0,
        finish_reason: str | None = None,
        delay_s: float = 0.0,
        model: str | None = None,
        chunk_size: int | None = None,
    ) -> None:
        """Script the next answer: a success with ``text``.

        Args:
            text: The model's answer.
            usage: ``(prompt_tokens, completion_tokens)`` to report.
            cached_tokens: How many of the prompt tokens to report as read from the cache.
            finish_reason: The stop reason (default ``"stop"`` for OpenAI, ``"end_turn"`` for
                Anthropic).
            delay_s: Wait this long before answering (to make a client time out).
            model: The model name to report (default: the server's ``model``).
            chunk_size: Characters per streamed delta (default: the server's ``chunk_size``).
        """
        prompt_tokens, completion_tokens = usage
        if min(prompt_tokens, completion_tokens, cached_tokens) < 0:
            raise ValueError("token counts must be >= 0")
        self._script.append(
            ScriptedReply(
                text=text,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                cached_tokens=min(cached_tokens, prompt_tokens),
                finish_reason=finish_reason,
                delay_s=delay_s,
                model=model,
                chunk_size=chunk_size or self.chunk_size,
            )
        )

    def fail(
        self,
        status: int,
        body: Mapping[str, Any] | str | None = None,
        *,
        retry_after: float | str | None = None,
        headers: Mapping[str, str] | None = None,
        delay_s: float = 0.0,
    ) -> None:
        """Script the next answer: an HTTP error.

        Args:
            status: The HTTP status (429, 500, 529 ...).
            body: A JSON body (a mapping) or a text body; None: the provider's usual error body
                for ``status`` (``{"error": {...}}`` for OpenAI, ``{"type": "error", ...}`` for
                Anthropic).
            retry_after: Sent as the ``retry-after`` header when given.
            headers: More response headers.
            delay_s: Wait this long before answering.
        """
        if not 100 <= status <= 599:
            raise ValueError(f"status must be an HTTP status (100-599), got {status}")
        self._script.append(
            ScriptedFailure(
                status=status,
                body=body,
                retry_after=retry_after,
                headers=dict(headers or {}),
                delay_s=delay_s,
            )
        )

    async def wait_for_requests(self, count: int) -> None:
        """Wait until at least ``count`` requests arrived (bound it with ``anyio.fail_after``).

        A request counts as soon as it is read, before its answer (or its ``delay_s``) starts.
        """
        if len(self.requests) >= count:
            return
        arrived = asyncio.Event()
        self._waiters.append((count, arrived))
        try:
            await arrived.wait()
        finally:
            self._waiters = [(n, e) for n, e in self._waiters if e is not arrived]

    @property
    def pending(self) -> int:
        """Scripted answers not given yet."""
        return len(self._script)

    # ------------------------------------------------------------------ addresses

    @property
    def port(self) -> int:
        """The port the server listens on (only once started)."""
        if self._port is None:
            raise RuntimeError("ProviderServer is not started: use `async with ProviderServer()`")
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """The ``base_url`` for an OpenAI client (``.../v1``)."""
        return f"{self.url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        """The ``base_url`` for an Anthropic client (the SDK adds ``/v1/messages``)."""
        return self.url

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start listening on ``127.0.0.1`` on a free port."""
        if self._server is not None:
            raise RuntimeError("ProviderServer is already started")
        self._closing = asyncio.Event()
        self._server = await asyncio.start_server(self._serve, host="127.0.0.1", port=0)
        self._port = int(self._server.sockets[0].getsockname()[1])

    async def aclose(self) -> None:
        """Stop listening and end every open connection (waits for their handlers)."""
        server, self._server = self._server, None
        if server is None:
            return
        if self._closing is not None:
            self._closing.set()  # wakes handlers waiting out a reply's delay_s
        server.close()
        # Closing the transports ends the handlers' reads; cancelling them instead would make
        # asyncio's stream callback log the CancelledError.
        for writer in self._connections.values():
            writer.close()
        tasks = list(self._connections)
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=_CLOSE_TIMEOUT_S)
            for task in stuck:
                task.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), _CLOSE_TIMEOUT_S)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ HTTP

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = cast("asyncio.Task[None] | None", asyncio.current_task())
        if task is not None:
            self._connections[task] = writer
        try:
            while True:
                request = await read_request(reader)
                if request is None:
                    break
                self.requests.append(request)
                for count, arrived in self._waiters:
                    if len(self.requests) >= count:
                        arrived.set()
                await self._answer(request, writer)
                if request.headers.get("connection", "").lower() == "close":
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass  # the client went away or sent something that is not HTTP: drop it
        finally:
            if task is not None:
                self._connections.pop(task, None)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, request: ProviderRequest, writer: asyncio.StreamWriter) -> None:
        provider = {_OPENAI_PATH: "openai", _ANTHROPIC_PATH: "anthropic"}.get(request.path)
        if request.method != "POST" or provider is None:
            await write_json(writer, 404, {"error": {"message": f"no route {request.path}"}})
            return
        if not self._script:
            note = (
                f"ProviderServer has no answer scripted for request {len(self.requests)} "
                "(call server.reply(...) or server.fail(...) first)"
            )
            await write_json(writer, 500, {"error": {"message": note, "type": "server_error"}})
            return
        answer = self._script.popleft()
        if answer.delay_s > 0 and self._closing is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), answer.delay_s)
            if self._closing.is_set():
                return
        if isinstance(answer, ScriptedFailure):
            await write_failure(writer, answer, provider)
            return
        self._seq += 1
        model = answer.model or self.model
        parsed: object = request.json
        payload = cast(dict[str, Any], parsed) if isinstance(parsed, dict) else {}
        stream = payload.get("stream") is True
        if provider == "openai":
            if stream:
                options = payload.get("stream_options")
                include_usage = isinstance(options, dict) and bool(
                    cast(dict[str, Any], options).get("include_usage")
                )
                events = openai_sse(answer, model=model, seq=self._seq, include_usage=include_usage)
                await write_sse(writer, events)
            else:
                completion = openai_completion(answer, model=model, seq=self._seq)
                await write_json(writer, 200, completion)
        elif stream:
            await write_sse(writer, anthropic_sse(answer, model=model, seq=self._seq))
        else:
            await write_json(writer, 200, anthropic_message(answer, model=model, seq=self._seq))

    def __repr__(self) -> str:
        where = self.url if self._port is not None else "not started"
        return f"<ProviderServer {where} pending={self.pending} requests={len(self.requests)}>"
