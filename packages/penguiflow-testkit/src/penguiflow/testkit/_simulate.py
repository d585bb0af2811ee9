"""simulate_error: a node function that fails a set number of times, then succeeds."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Self

from penguiflow.core import Context

__all__ = ["ErrorSimulator", "simulate_error"]


class ErrorSimulator:
    """An async node function that raises for its first ``fail_times`` calls, then succeeds.

    Use it as ``Node(sim, name=...)`` (its ``__name__`` is ``node_name``, so ``Node(sim)`` works
    too) with ``NodePolicy(max_retries=...)``, then assert on ``attempts`` and ``failures``
    (``sim.simulation.attempts``, the penguiflow 3.x spelling, reads the same counts).
    Build one with :func:`simulate_error`.
    """

    def __init__(
        self,
        node_name: str,
        code: str,
        *,
        fail_times: int,
        result: Any,
        result_factory: Callable[[Any], Awaitable[Any] | Any] | None,
        exception_type: type[Exception],
    ) -> None:
        self.__name__: str = node_name
        self.node_name: str = node_name
        """The node name the failures mention (and ``Node``'s default name)."""
        self.code: str = str(code)
        """The code every simulated failure carries in its message."""
        self.fail_times: int = fail_times
        """How many calls fail before the first success."""
        self.exception_type: type[Exception] = exception_type
        """The type raised by failing calls."""
        self._attempts = 0
        self._failures = 0
        self._result = result
        self._result_factory = result_factory
        # A coroutine function to inspect.iscoroutinefunction, as the 3.x simulator was.
        inspect.markcoroutinefunction(self)

    @property
    def attempts(self) -> int:
        """Calls so far, failed or not."""
        return self._attempts

    @property
    def failures(self) -> int:
        """Calls that raised so far."""
        return self._failures

    @property
    def simulation(self) -> Self:
        """This simulator: ``sim.simulation.attempts`` / ``.failures`` as in penguiflow 3.x."""
        return self

    @property
    def successes(self) -> int:
        """Calls that returned so far."""
        return self.attempts - self.failures

    async def __call__(self, message: Any, ctx: Context | None) -> Any:
        """Fail while ``failures < fail_times``; then return the configured result.

        ``ctx`` is never read, so a unit test may call ``await sim(message, None)``.
        """
        self._attempts += 1
        if self._failures < self.fail_times:
            self._failures += 1
            raise self.exception_type(
                f"{self.code}: simulated failure {self._failures} of {self.fail_times} "
                f"at node {self.node_name!r}"
            )
        if self._result_factory is not None:
            result = self._result_factory(message)
            return await result if inspect.isawaitable(result) else result
        if self._result is not None:
            return self._result
        return message

    def reset(self) -> None:
        """Start counting again from zero (the next ``fail_times`` calls fail again)."""
        self._attempts = 0
        self._failures = 0

    def __repr__(self) -> str:
        return (
            f"ErrorSimulator({self.node_name!r}, {self.code!r}, fail_times={self.fail_times}, "
            f"attempts={self.attempts}, failures={self.failures})"
        )


def simulate_error(
    node_name: str,
    code: str,
    *,
    fail_times: int = 1,
    result: Any = None,
    result_factory: Callable[[Any], Awaitable[Any] | Any] | None = None,
    exception_type: type[Exception] = RuntimeError,
) -> ErrorSimulator:
    """Build a node function that fails ``fail_times`` times, then succeeds; for retry tests.

    Each failing call raises ``exception_type(message)``, where the message starts with ``code``
    and names ``node_name``. After that the function returns ``result_factory(message)``
    (awaited when it returns an awaitable), else ``result``, else its input message unchanged (to
    return None, which drops the message, pass ``result_factory=lambda msg: None``).
    ``Node(sim, policy=NodePolicy(max_retries=n, backoff_base=0.0))`` then shows whether ``n``
    retries are enough.

    Args:
        node_name: Name of the node (also the function's ``__name__``).
        code: Stable code carried in each failure message (e.g. ``"E_UPSTREAM"``, or a
            ``FlowErrorCode``, which is a string).
        fail_times: How many calls fail before the first success (0: never fails, handy in
            parametrized tests).
        result: What successful calls return (None: the input message).
        result_factory: Builds what successful calls return from the input message (sync or
            async).
        exception_type: The exception type raised; it must accept one message argument.

    Raises:
        ValueError: ``fail_times`` is negative, or both ``result`` and ``result_factory`` are
            given.
        TypeError: ``exception_type`` is not an ``Exception`` subclass.
    """
    if fail_times < 0:
        raise ValueError(f"fail_times must be >= 0, got {fail_times}")
    if result is not None and result_factory is not None:
        raise ValueError("pass only one of result and result_factory, not both")
    if not (isinstance(exception_type, type) and issubclass(exception_type, Exception)):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError(
            f"exception_type must be an Exception subclass, got {exception_type!r} "
            "(cancellation-like BaseExceptions would never be retried)"
        )
    return ErrorSimulator(
        node_name,
        code,
        fail_times=fail_times,
        result=result,
        result_factory=result_factory,
        exception_type=exception_type,
    )
