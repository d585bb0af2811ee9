"""Every exception penguiflow.core raises, in one place.

The tree::

    PenguiFlowError                 root of everything the runtime raises
    ├── FlowError                   a message failed at run time (has trace_id, node_name, code)
    ├── TraceCancelled              the runtime cancelled the trace you were waiting on
    ├── TraceEnded                  the trace you were waiting on ended without delivering more
    ├── FlowStopped                 the flow stopped while you were waiting on it
    ├── TraceNotFound (LookupError) no such trace on a WorkBus (penguiflow.core.distributed)
    ├── GraphError (ValueError)     the graph you built cannot run; fix it before run()
    │   └── CycleError              the graph has a cycle that was not allowed
    ├── RegistryError               run(registry=...) lacks nodes that validate
    │                               (a ValueError and a RuntimeError)
    └── StoreError                  a durable store could not do what was asked
        ├── StoreUnavailable        the backend failed (connection, server); has original_exc
        ├── StoreClosed             the store was closed
        ├── VersionConflict         put(if_version=...) found another version
        └── ScopeMismatch           the record or stream belongs to another tenant

Run-time failures of a message always become one :class:`FlowError` carrying a stable
:class:`FlowErrorCode`; ``call_playbook`` raises a ``FlowError`` with code ``NODE_TIMEOUT`` when
its ``timeout`` passes. :class:`FlowStopped` is raised to callers still waiting on the flow (an
``emit`` blocked on a full floe, a waiting ``fetch``) when it stops or crashes; after a crash the
crash is its ``__cause__``.

Besides the tree, the runtime raises these builtin errors:

* ``TypeError``, ``ValueError``, ``KeyError``: developer mistakes, at construction time or for a
  bad argument, with a message that says what to write instead. For example a sync node function
  or a ``retry_on`` that is neither exception types nor a predicate (``TypeError``), an invalid
  ``NodePolicy`` value or ``fetch(from_=..., trace_id=...)`` (``ValueError``), an unknown ingress
  node in ``emit(msg, to=...)`` or an unknown successor in ``ctx.emit`` (``KeyError``, listing
  the valid names). The tool catalog checks its entries the same way: ``NodeSpec`` raises
  ``ValueError`` for a bad or reserved name and ``TypeError`` for a model that is not a pydantic
  ``BaseModel``; ``build_catalog`` collects every problem into one ``ValueError``.
* ``RuntimeError``: lifecycle misuse, such as ``emit`` on a flow that is not running (not started
  yet or already stopped), ``call_node`` on a stopped flow, or starting a flow that was already
  started (a flow runs once).
* ``asyncio.QueueFull``: ``flow.emit_nowait`` / ``ctx.emit_nowait`` when a target floe is full
  (nothing is enqueued then).
* ``asyncio.QueueEmpty``: ``flow.fetch_nowait`` / ``ctx.fetch_nowait`` when nothing is waiting.

Outer cancellation is never turned into one of these errors: it propagates as is.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from typing import Any, cast

__all__ = [
    "CycleError",
    "FlowError",
    "FlowErrorCode",
    "FlowStopped",
    "GraphError",
    "PenguiFlowError",
    "RegistryError",
    "ScopeMismatch",
    "StoreClosed",
    "StoreError",
    "StoreUnavailable",
    "TraceCancelled",
    "TraceEnded",
    "VersionConflict",
    "safe_repr",
    "safe_str",
]

_MAX_TEXT = 2000  # enough to read an error; an embedded 1 MB payload is not copied whole


def safe_str(exc: BaseException) -> str:
    """``str(exc)`` that never raises and is at most 2000 characters long.

    An exception whose ``__str__`` raises reads ``<unprintable KeyError>``; a longer text (say
    one that embeds a large payload) is cut, ending with a note of how much was left out.
    """
    return _text_of(str, exc)


def safe_repr(value: object) -> str:
    """``repr(value)`` that never raises and is at most 2000 characters long.

    An object whose ``__repr__`` raises reads ``<unprintable Payload>``; a longer text is cut,
    ending with a note of how much was left out.
    """
    return _text_of(repr, value)


def _text_of(render: Callable[[Any], str], value: object) -> str:
    try:
        text = render(value)
    except Exception:  # noqa: BLE001 - a broken __str__/__repr__ must not hide the real error
        return f"<unprintable {type(value).__name__}>"
    if len(text) <= _MAX_TEXT:
        return text
    note = f"... [cut: {len(text)} characters in all]"
    return text[: _MAX_TEXT - len(note)] + note


class FlowErrorCode(StrEnum):
    """Stable machine-readable reason for a :class:`FlowError` or a budget outcome."""

    NODE_TIMEOUT = "NODE_TIMEOUT"
    """A node attempt ran longer than ``NodePolicy.timeout_s`` (or a join waited past its
    timeout)."""
    NODE_EXCEPTION = "NODE_EXCEPTION"
    """A node raised an exception and no retry was left."""
    VALIDATION_ERROR = "VALIDATION_ERROR"
    """A message did not match the node's registered input or output model. Never retried."""
    TRACE_CANCELLED = "TRACE_CANCELLED"
    """The trace was cancelled with ``flow.cancel(trace_id)``."""
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    """The message's ``deadline_s`` passed before or while a node ran."""
    HOP_BUDGET_EXHAUSTED = "HOP_BUDGET_EXHAUSTED"
    """A controller loop reached ``WM.budget_hops``."""
    TOKEN_BUDGET_EXHAUSTED = "TOKEN_BUDGET_EXHAUSTED"
    """A controller loop reached ``WM.budget_tokens``."""
    DELIVERIES_EXHAUSTED = "DELIVERIES_EXHAUSTED"
    """A distributed trace was delivered ``max_deliveries`` times without finishing (its
    workers kept dying); it was moved to the dead-letter stream (see ``Worker``)."""


class PenguiFlowError(Exception):
    """Root of every exception raised by penguiflow."""


class GraphError(PenguiFlowError, ValueError):
    """The graph handed to ``create()`` cannot run as built."""


class CycleError(GraphError):
    """The graph contains a cycle that neither ``allow_cycles`` nor ``allow_cycle`` permits.

    Attributes:
        cycle: The node names on the cycle, in edge order (the first name is not repeated).
    """

    def __init__(self, cycle: list[str]) -> None:
        self.cycle: list[str] = list(cycle)
        path = " -> ".join([*self.cycle, self.cycle[0]]) if self.cycle else "?"
        super().__init__(
            f"cycle detected: {path}. Pass allow_cycles=True to create(), or "
            "Node(..., allow_cycle=True) for a node that loops to itself."
        )


class RegistryError(PenguiFlowError, ValueError, RuntimeError):
    """``run(registry=...)`` was given a registry that lacks nodes which validate.

    Both a ``ValueError`` (a bad argument) and a ``RuntimeError`` (the flow cannot start), so code
    written against either keeps working.

    Attributes:
        missing: The names of the nodes the registry lacks.
    """

    def __init__(self, missing: Sequence[str]) -> None:
        self.missing: list[str] = sorted(missing)
        names = ", ".join(map(repr, self.missing))
        super().__init__(
            f"ModelRegistry is missing entries for nodes requiring validation: {names}; "
            "register them (registry.register(name, In, Out)), build the registry with "
            'ModelRegistry.from_annotations(flow), or use NodePolicy(validate="none")'
        )


class StoreError(PenguiFlowError):
    """A durable store could not do what was asked."""


class StoreUnavailable(StoreError):
    """The backend failed (connection or server error).

    Attributes:
        original_exc: The backend's own exception.
    """

    def __init__(self, message: str, original_exc: BaseException | None = None) -> None:
        self.original_exc: BaseException | None = original_exc
        super().__init__(message)


class StoreClosed(StoreError):
    """The store was closed; open a new one."""


class VersionConflict(StoreError):
    """``put(..., if_version=expected)`` found the record at another version.

    Attributes:
        namespace: The record's namespace.
        key: The record's key.
        expected: The version the caller expected (0: the record must not exist).
        actual: The version found (0: there is no record).
    """

    def __init__(self, namespace: str, key: str, expected: int, actual: int) -> None:
        self.namespace: str = namespace
        self.key: str = key
        self.expected: int = expected
        self.actual: int = actual
        super().__init__(
            f"{namespace}/{key}: expected version {expected}, found {actual}; read it again "
            "and retry with if_version=<the version you read>"
        )


class ScopeMismatch(StoreError):
    """The record or stream already belongs to another tenant.

    Attributes:
        existing: The owner's scope.
        given: The scope of the call.
    """

    def __init__(self, existing: object, given: object) -> None:
        self.existing: object = existing
        self.given: object = given
        super().__init__(f"owned by {existing!r}, not {given!r}: use another key or stream")


class TraceCancelled(PenguiFlowError):
    """The trace was cancelled by ``flow.cancel(trace_id)`` (only cancellations the runtime issued).

    Attributes:
        trace_id: The cancelled trace.
    """

    def __init__(self, trace_id: str | None, message: str | None = None) -> None:
        self.trace_id = trace_id
        super().__init__(message or f"trace {trace_id!r} was cancelled")


class TraceEnded(PenguiFlowError):
    """The trace ended while you waited on it, without delivering anything more to Rookery.

    For example every message of it was dropped: a node returned ``None`` or a router chose no
    successor. Raised by a waiting ``fetch(trace_id=...)`` so that it never waits forever.

    Attributes:
        trace_id: The trace that ended.
    """

    def __init__(self, trace_id: str | None) -> None:
        self.trace_id = trace_id
        super().__init__(f"trace {trace_id!r} ended without delivering a (further) result")


class FlowStopped(PenguiFlowError):
    """The flow was stopped while the caller was waiting for an item from it."""


class FlowError(PenguiFlowError):
    """A message failed at run time: the one terminal error of that message.

    ``str(error)`` reads ``"[CODE] message trace=<id> node=<name>"``.
    """

    trace_id: str | None
    """The trace the failed message belonged to."""
    node_name: str | None
    """The node where it failed."""
    node_id: str | None
    """The unique id of that node."""
    code: FlowErrorCode
    """Why it failed."""
    message: str
    """Human-readable explanation."""
    original_exc: BaseException | None
    """The exception that caused it, if any (also ``__cause__``)."""
    metadata: dict[str, Any]
    """Extra context: ``attempt``, ``latency_ms``, ``timeout_s``, ``exception_repr`` …"""
    exception_type: str | None
    """The class name of the exception that caused it (``"ValueError"``), None without one.

    Set from ``original_exc`` when the error is built; a :meth:`detached` copy keeps it.
    """

    def __init__(
        self,
        *,
        trace_id: str | None,
        node_name: str | None,
        code: FlowErrorCode | str,
        message: str,
        node_id: str | None = None,
        original_exc: BaseException | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self.trace_id = trace_id
        self.node_name = node_name
        self.node_id = node_id
        self.code = FlowErrorCode(code)
        self.message = message
        self.original_exc = original_exc
        self.metadata = dict(metadata or {})
        self.exception_type = None if original_exc is None else type(original_exc).__name__
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"[{self.code}] {self.message} trace={self.trace_id} node={self.node_name}"

    def __repr__(self) -> str:
        return (
            f"FlowError(code={self.code.value!r}, message={self.message!r}, "
            f"trace_id={self.trace_id!r}, node_name={self.node_name!r})"
        )

    @classmethod
    def from_exception(
        cls,
        exc: BaseException,
        *,
        trace_id: str | None,
        node_name: str | None,
        node_id: str | None = None,
        code: FlowErrorCode | str = FlowErrorCode.NODE_EXCEPTION,
        message: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> FlowError:
        """Wrap ``exc`` (returned as is when it already is a ``FlowError``)."""
        if isinstance(exc, FlowError):
            return exc
        meta = {"exception_type": type(exc).__name__, "exception_repr": safe_repr(exc)}
        meta.update(metadata or {})
        error = cls(
            trace_id=trace_id,
            node_name=node_name,
            node_id=node_id,
            code=code,
            message=message or f"{type(exc).__name__}: {safe_str(exc)}",
            original_exc=exc,
            metadata=meta,
        )
        error.__cause__ = exc
        return error

    def unwrap(self) -> BaseException | None:
        """Return the original exception, if there was one."""
        return self.original_exc

    def detached(self) -> FlowError:
        """Return a copy that is safe to keep for a long time (in a history, a cache, a log).

        A ``FlowError`` holds its original exception, and through its traceback every frame of
        the failed call with all their local variables, which may be large payloads. The copy
        keeps ``code``, ``message``, ``trace_id``, ``node_name``, ``node_id`` and the notes, has
        ``original_exc=None`` and no ``__cause__``, ``__context__`` or ``__traceback__``, and
        its ``metadata`` is made JSON-safe as in :meth:`to_payload`. The cause's type and text
        survive as ``metadata["exception_type"]`` and ``metadata["exception_repr"]``.
        """
        metadata = {_as_str(key): _json_safe(value) for key, value in self.metadata.items()}
        if self.original_exc is not None:
            metadata.setdefault("exception_type", type(self.original_exc).__name__)
            metadata.setdefault("exception_repr", safe_repr(self.original_exc))
        copy = FlowError(
            trace_id=self.trace_id,
            node_name=self.node_name,
            node_id=self.node_id,
            code=self.code,
            message=self.message,
            metadata=metadata,
        )
        copy.exception_type = self.exception_type
        notes: object = getattr(self, "__notes__", None)
        if isinstance(notes, list):
            copy.__notes__ = [_as_str(note) for note in cast(list[object], notes)]
        return copy

    def to_payload(self) -> dict[str, Any]:
        """Return a JSON-safe dict describing the error.

        ``json.dumps(payload, allow_nan=False)`` always succeeds: mappings become dicts with
        string keys, lists and tuples become lists, non-finite floats become the strings
        ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``, and any other object its (capped) repr.

        Keys: ``code``, ``message``, ``trace_id``, ``node_name``, ``node_id`` (always present,
        None when unknown); ``exception_type`` and ``original_exc`` (both the cause's class
        name) when there is a cause; ``metadata`` when there is any.
        """
        payload: dict[str, Any] = {
            "code": self.code.value,
            "message": self.message,
            "trace_id": self.trace_id,
            "node_name": self.node_name,
            "node_id": self.node_id,
        }
        if self.exception_type is not None:
            payload["exception_type"] = self.exception_type
        if self.original_exc is not None:
            payload["original_exc"] = type(self.original_exc).__name__
        if self.metadata:
            payload["metadata"] = {_as_str(k): _json_safe(v) for k, v in self.metadata.items()}
        return payload

    def __reduce__(self) -> tuple[Any, ...]:
        # Exceptions unpickle as cls(*args), but FlowError's arguments are keyword-only: build it
        # with cls.__new__(cls, *args) instead (a builtin, so a pickle names only builtins and
        # this class) and restore the attributes from __dict__.
        return (FlowError.__new__, (type(self), *self.args), self.__dict__)


def _json_safe(value: Any) -> Any:
    if value is None or isinstance(value, str | int | bool):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, Mapping):
        mapping = cast(Mapping[object, object], value)
        return {_as_str(k): _json_safe(v) for k, v in mapping.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in cast(Sequence[object], value)]
    return safe_repr(value)


def _as_str(key: object) -> str:
    return key if isinstance(key, str) else _text_of(str, key)
