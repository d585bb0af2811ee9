"""Nodes and their execution policy."""

from __future__ import annotations

import functools
import inspect
import itertools
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast, get_args

if TYPE_CHECKING:
    from ._context import Context
    from ._registry import ModelRegistry

__all__ = ["Node", "NodeFunc", "NodePolicy", "RetryOn", "ValidateMode", "calls_playbooks"]

ValidateMode = Literal["both", "in", "out", "none"]
NodeFunc = Callable[[Any, Any], Awaitable[Any]]
"""An ``async def f(message, ctx)`` (or an object whose ``__call__`` is one); ``ctx`` is a
``Context`` in a flow, or whatever ``call_node`` passes (the planner's ``ToolContext``)."""
RetryOn = tuple[type[BaseException], ...] | Callable[[BaseException], bool]
"""Exception types to retry, or a predicate that says whether to retry an exception."""

_VALIDATE_MODES: tuple[str, ...] = get_args(ValidateMode)
_node_ids = itertools.count(1)


@dataclass(frozen=True, slots=True)
class NodePolicy:
    """How the runtime runs one node: validation, timeouts, retries and concurrency."""

    validate: ValidateMode = "both"
    """Which side the registry validates: ``"both"``, ``"in"``, ``"out"`` or ``"none"``."""
    timeout_s: float | None = None
    """Bound on one attempt, in seconds (None = unbounded). Checked while the attempt runs."""
    max_retries: int = 0
    """Retries after the first failed attempt (0 = fail at once)."""
    backoff_base: float = 0.5
    """Delay before the first retry, in seconds."""
    backoff_mult: float = 2.0
    """Each later retry waits this many times longer."""
    max_backoff: float | None = None
    """Ceiling on one retry delay, in seconds (None = no ceiling)."""
    max_concurrency: int = 1024
    """How many messages of *different* traces the node processes at once. Messages of one trace
    are always processed one at a time, in arrival order."""
    retry_on: RetryOn | None = None
    """What to retry: a tuple of exception types (a bare exception class is taken as a one-element
    tuple) or a predicate ``exc -> bool``. None: every exception except validation errors
    (cancellation never is)."""
    jitter: float = 0.1
    """Spread of each delay: it is multiplied by a random factor in ``[1 - jitter, 1 + jitter]``."""
    interrupt_on_deadline: bool = False
    """Cancel a running attempt when its message's ``deadline_s`` passes (else checked before
    start)."""
    memoize: bool = True
    """In a journaled flow's memo mode (``Journal.resume``), skip an invocation whose outputs were
    all recorded and route them instead. False for nodes whose outputs depend on state kept
    between messages (they always run again)."""

    def __post_init__(self) -> None:
        if self.validate not in _VALIDATE_MODES:
            raise ValueError(
                f"NodePolicy.validate must be one of {_VALIDATE_MODES}, got {self.validate!r}"
            )
        _check_number("timeout_s", self.timeout_s, positive=True)
        if self.max_retries < 0:
            raise ValueError(f"NodePolicy.max_retries must be >= 0, got {self.max_retries}")
        _check_number("backoff_base", self.backoff_base)
        _check_number("max_backoff", self.max_backoff)
        if self.backoff_mult < 1:
            raise ValueError(f"NodePolicy.backoff_mult must be >= 1, got {self.backoff_mult}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"NodePolicy.jitter must be between 0 and 1, got {self.jitter}")
        if self.max_concurrency < 1:
            raise ValueError(f"NodePolicy.max_concurrency must be >= 1, got {self.max_concurrency}")
        # A bare class is callable, so it would pass for a predicate and retry everything.
        object.__setattr__(self, "retry_on", _normalise_retry_on(self.retry_on))

    def backoff(self, retry: int) -> float:
        """Delay before retry number ``retry`` (1-based), before jitter.

        Grows without bound (to ``inf``) for huge retry numbers unless ``max_backoff`` caps it.
        """
        if self.backoff_base == 0:
            return 0.0
        try:
            delay = self.backoff_base * float(self.backoff_mult) ** (retry - 1)
        except OverflowError:
            delay = math.inf
        return delay if self.max_backoff is None else float(min(delay, self.max_backoff))


_RETRY_ON_HINT = (
    "Write retry_on=(KeyError,) for exception types, or retry_on=lambda exc: ... for a predicate"
)


def _normalise_retry_on(value: object) -> RetryOn | None:
    if value is None:
        return None
    if _is_exception_type(value):
        return (cast(type[BaseException], value),)
    if isinstance(value, tuple):
        kinds = cast(tuple[object, ...], value)
        wrong = [k for k in kinds if not _is_exception_type(k)]
        if wrong:
            raise TypeError(
                "NodePolicy.retry_on must be a tuple of exception types or a predicate; "
                f"{kinds!r} holds {wrong[0]!r}, which is not an exception type. " + _RETRY_ON_HINT
            )
        return cast(tuple[type[BaseException], ...], kinds)
    if callable(value) and not isinstance(value, type):
        return cast(Callable[[BaseException], bool], value)
    raise TypeError(
        "NodePolicy.retry_on must be a tuple of exception types or a predicate, "
        f"got {value!r}. " + _RETRY_ON_HINT
    )


def _is_exception_type(value: object) -> bool:
    return isinstance(value, type) and issubclass(value, BaseException)


def _check_number(name: str, value: float | None, *, positive: bool = False) -> None:
    if value is None:
        return
    if math.isnan(value) or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"NodePolicy.{name} must be {bound} (or None), got {value}")


class Node:
    """A named async function in a flow graph.

    Args:
        func: ``async def f(message, ctx)``; a callable object whose ``__call__`` is such a
            coroutine function works too, and so does a ``functools.partial`` of a coroutine
            function that leaves the two parameters ``(message, ctx)`` open.
        name: Unique name in the flow; defaults to the function's ``__name__`` (for a partial,
            the wrapped function's).
        policy: Validation, timeout, retry and concurrency settings.
        allow_cycle: Let this node have a self-edge (a controller loop).
    """

    __slots__ = ("allow_cycle", "func", "name", "node_id", "policy", "subflows")

    def __init__(
        self,
        func: NodeFunc,
        name: str | None = None,
        policy: NodePolicy | None = None,
        allow_cycle: bool = False,
    ) -> None:
        self.name: str = name if name is not None else _default_name(func)
        if not isinstance(self.name, str) or not self.name:  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ValueError(f"Node name must be a non-empty string, got {self.name!r}")
        _check_signature(func, self.name)
        self.func: NodeFunc = func
        self.policy: NodePolicy = policy if policy is not None else NodePolicy()
        if not isinstance(self.policy, NodePolicy):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(f"Node {self.name!r}: policy must be a NodePolicy")
        self.allow_cycle: bool = allow_cycle
        self.node_id: str = f"{self.name}#{next(_node_ids)}"
        self.subflows: tuple[str, ...] = tuple(getattr(func, "__penguiflow_subflows__", ()))
        """Names of playbooks this node calls (for visualisation); see ``calls_playbooks``."""

    async def invoke(
        self, message: Any, ctx: Context, *, registry: ModelRegistry | None = None
    ) -> Any:
        """Run this node once on ``message``, outside any flow (for unit tests of one node).

        With a ``registry`` the message and the result are validated with the node's registered
        adapters, as ``policy.validate`` says (``KeyError`` if the node is not registered);
        a failure raises pydantic's ``ValidationError`` itself. A result of None is returned
        unvalidated. ``ctx`` is handed to the function as it is. Retries, timeouts and
        envelopes are the runtime's job: here the function is awaited once and its result
        returned as it is.
        """
        in_adapter = out_adapter = None
        mode = self.policy.validate
        if registry is not None and mode != "none":
            in_adapter, out_adapter = registry.adapters(self.name)
        if in_adapter is not None and mode in ("both", "in"):
            message = in_adapter.validate_python(message)
        result = await self.func(message, ctx)
        if result is not None and out_adapter is not None and mode in ("both", "out"):
            result = out_adapter.validate_python(result)
        return result

    def to(self, *successors: Node) -> tuple[Node, tuple[Node, ...]]:
        """Return the adjacency ``self -> successors``; ``node.to()`` marks a terminal node."""
        for succ in successors:
            if not isinstance(succ, Node):  # pyright: ignore[reportUnnecessaryIsInstance]
                raise TypeError(
                    f"{self.name}.to() takes Node objects, got {type(succ).__name__}: {succ!r}"
                )
        return (self, tuple(successors))

    def __repr__(self) -> str:
        return f"Node({self.name!r})"


def calls_playbooks(*names: str) -> Callable[[Any], Any]:
    """Mark a node function as calling the named subflows, so visualisers can show them."""

    def mark(func: Any) -> Any:
        func.__penguiflow_subflows__ = tuple(names)
        return func

    return mark


def _default_name(func: Any) -> str:
    while isinstance(func, functools.partial):
        func = cast(functools.partial[Any], func).func
    name = getattr(func, "__name__", None) or type(func).__name__
    return str(name)


def _check_signature(func: Any, name: str) -> None:
    if not callable(func):
        raise TypeError(f"Node {name!r}: func must be an async function, got {func!r}")
    target = func
    # inspect sees through functools.partial; a callable object is judged by its bound __call__.
    if not (
        inspect.iscoroutinefunction(func)
        or inspect.isfunction(func)
        or inspect.ismethod(func)
        or isinstance(func, type)
    ):
        target = func.__call__
    if not inspect.iscoroutinefunction(target):
        raise TypeError(
            f"Node {name!r}: {func!r} must be declared with async def (the runtime awaits it). "
            "Write `async def node(message, ctx): ...`."
        )
    try:
        params = list(inspect.signature(target).parameters.values())
    except (TypeError, ValueError):  # builtins without signatures: trust the caller
        return
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    if len(positional) >= 2 and len(required) <= 2:
        return
    named = [p for p in params if p.kind in (p.KEYWORD_ONLY, p.VAR_KEYWORD)]
    if len(positional) == 1 and named:
        extra = named[0]
        how = (
            f"`**{extra.name}` only takes keywords"
            if extra.kind is extra.VAR_KEYWORD
            else f"{extra.name!r} is keyword-only (it comes after `*`)"
        )
        raise ValueError(
            f"Node {name!r}: Context parameter must be positional, but {how}; the runtime passes "
            "it by position. Write `async def node(message, ctx): ...`."
        )
    raise ValueError(
        f"Node {name!r}: the function must accept exactly two parameters (message, ctx), both "
        f"positional; it takes ({', '.join(p.name for p in params)}). Write "
        "`async def node(message, ctx): ...`."
    )


def adjacency_nodes(adjacencies: Sequence[tuple[Node, Sequence[Node]]]) -> list[Node]:
    """All nodes named in ``adjacencies``, in first-seen order."""
    seen: dict[int, Node] = {}
    for node, successors in adjacencies:
        seen.setdefault(id(node), node)
        for succ in successors:
            seen.setdefault(id(succ), succ)
    return list(seen.values())
