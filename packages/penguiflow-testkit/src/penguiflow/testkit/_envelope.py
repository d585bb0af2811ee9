"""assert_preserves_message_envelope: does a node keep its headers, trace, deadline and meta?"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from penguiflow.core import Context, Headers, Message, Node, NodePolicy, PenguiFlow, create

from ._errors import EnvelopeNotPreserved, FlowTestTimeout

__all__ = ["assert_preserves_message_envelope", "probe_message"]

_UNSET: Any = object()


def probe_message(payload: Any = "probe") -> Message:
    """A ``Message`` whose every envelope field differs from its default, to catch any loss."""
    return Message(
        payload=payload,
        headers=Headers(tenant="testkit-tenant", topic="testkit-topic", priority=7),
        trace_id=f"testkit-{uuid.uuid4().hex}",
        deadline_s=time.time() + 3600,
        meta={"testkit_probe": uuid.uuid4().hex, "nested": {"kept": True}},
    )


@dataclass(slots=True)
class _Call:
    message: Message


@dataclass(slots=True)
class _Outcome:
    returned: Any = None
    error: BaseException | None = None
    emitted: list[Any] = field(default_factory=list[Any])


async def assert_preserves_message_envelope(
    node: Node | Callable[[Any, Any], Awaitable[Any]],
    *,
    message: Message | None = None,
    payload: Any = _UNSET,
    ctx: Any = None,
    timeout_s: float = 1.0,
) -> Message:
    """Run ``node``'s function once on a ``Message`` and check the envelope survives it.

    The function runs inside a one-node flow, so its ``ctx`` is a real ``Context``; messages it
    sends with ``ctx.emit(...)`` (without ``to=``) are checked too. It passes when

    * it returns a ``Message`` with the input's ``headers``, ``trace_id`` and ``deadline_s``,
      whose ``meta`` still holds every input key with its value (adding keys is fine); and
    * every ``Message`` it emits keeps the envelope the same way.

    Returning ``None`` passes only when the function emitted at least one ``Message``. A bare
    value, returned or emitted, fails: what a node returns is what its successors and
    ``fetch()`` get, so a bare value carries none of the envelope.

    Args:
        node: A ``Node`` or an async node function (``async def f(message, ctx)``).
        message: The input; default: :func:`probe_message` with ``payload`` (or ``"probe"``),
            whose headers, deadline and meta are all set.
        payload: Payload for the default message (for nodes that need a particular type).
        ctx: Call the function directly with this context instead (a stub of your own, say);
            then only what it returns is checked, since its emits are not seen.
        timeout_s: How long the function may run.

    Returns:
        The ``Message`` the function returned, or, when it returned ``None``, the first one it
        emitted.

    Raises:
        EnvelopeNotPreserved: Part of the envelope was dropped or changed, or the function
            produced no ``Message``; the message lists each problem with input and output values.
        FlowTestTimeout: The function did not return within ``timeout_s``.
        TypeError: ``node`` is not an async node function.
        Exception: Whatever the node function raised, unchanged.
    """
    __tracebackhide__ = True  # pytest: show the test's frame, not the testkit's
    if message is not None and payload is not _UNSET:
        raise ValueError("pass message or payload, not both")
    if message is None:
        message = probe_message("probe" if payload is _UNSET else payload)
    if not isinstance(node, Node):
        try:
            node = Node(node)  # checks the signature, with the runtime's own advice on failure
        except TypeError as exc:
            raise TypeError(
                f"assert_preserves_message_envelope expects an async node: {exc}"
            ) from None
    if ctx is None:
        outcome = await _run_in_flow(node.func, node.name, message, timeout_s)
    else:
        outcome = await _run_directly(node.func, node.name, message, ctx, timeout_s)
    if outcome.error is not None:
        raise outcome.error
    problems: list[str] = []
    for index, item in enumerate(outcome.emitted):
        where = f"ctx.emit #{index + 1}"
        if isinstance(item, Message):
            problems += _compare(message, item, where)
        else:
            problems.append(
                f"{where}: a bare {type(item).__name__} was emitted, which travels without the "
                "envelope; emit message.with_payload(...) instead"
            )
    returned = outcome.returned
    produced: Message | None = None
    if isinstance(returned, Message):
        problems += _compare(message, returned, "returned Message")
        produced = returned
    elif returned is not None:
        problems.append(
            f"the node must return a Message but returned a bare {type(returned).__name__}, "
            "which carries none of the envelope; return message.with_payload(...) instead"
        )
    else:
        produced = next((item for item in outcome.emitted if isinstance(item, Message)), None)
        if produced is None and not outcome.emitted:
            problems.append(
                "the node returned None and emitted nothing, so no Message was produced to "
                "check; pass a message it answers"
            )
    if problems or produced is None:
        raise EnvelopeNotPreserved(
            f"node {node.name!r} does not preserve the message envelope:\n"
            + "\n".join(f"  - {p}" for p in problems)
            + "\nkeep it with message.with_payload(new_payload) or message.with_meta(key=value)",
            trace_id=message.trace_id,
            problems=problems,
        )
    return produced


def _compare(sent: Message, got: Message, where: str) -> list[str]:
    problems: list[str] = []
    if got.trace_id != sent.trace_id:
        problems.append(f"{where}: trace_id changed from {sent.trace_id!r} to {got.trace_id!r}")
    if got.headers != sent.headers:
        problems.append(f"{where}: headers changed from {sent.headers!r} to {got.headers!r}")
    if got.deadline_s != sent.deadline_s:
        problems.append(
            f"{where}: deadline_s changed from {sent.deadline_s!r} to {got.deadline_s!r}"
        )
    lost = [key for key in sent.meta if key not in got.meta]
    changed = [key for key in sent.meta if key in got.meta and got.meta[key] != sent.meta[key]]
    if lost:
        problems.append(f"{where}: meta lost key(s) {lost}")
    for key in changed:
        problems.append(
            f"{where}: meta[{key!r}] changed from {sent.meta[key]!r} to {got.meta[key]!r}"
        )
    return problems


async def _run_directly(
    func: Any, name: str, message: Message, ctx: Any, timeout_s: float
) -> _Outcome:
    outcome = _Outcome()
    with anyio.move_on_after(timeout_s):
        try:
            outcome.returned = await func(message, ctx)
        except Exception as exc:
            outcome.error = exc
        return outcome
    raise _timeout(name, message, timeout_s)


def _timeout(name: str, message: Message, timeout_s: float) -> FlowTestTimeout:
    return FlowTestTimeout(
        f"node {name!r} did not return within {timeout_s:g}s while checking its envelope; "
        "pass a larger timeout_s, or a message it can finish on",
        trace_id=message.trace_id,
        timeout_s=timeout_s,
    )


async def _run_in_flow(func: Any, name: str, message: Message, timeout_s: float) -> _Outcome:
    outcome = _Outcome()

    async def probe(call: _Call, ctx: Context) -> _Outcome:
        # The message travels wrapped, so the runtime neither checks its deadline nor re-wraps
        # what the function returns: the function sees and returns exactly what the test gave.
        try:
            outcome.returned = await func(call.message, ctx)
        except Exception as exc:
            outcome.error = exc
        return outcome

    flow: PenguiFlow = create(Node(probe, name=name, policy=NodePolicy(validate="none")).to())
    async with flow.running():
        with anyio.move_on_after(timeout_s):
            await flow.emit(_Call(message), trace_id=message.trace_id)
            while True:
                # Any trace: an emitted Message with a changed trace_id must be seen too.
                item = await flow.fetch()
                if item is outcome:
                    return outcome
                outcome.emitted.append(item)
    raise _timeout(name, message, timeout_s)
