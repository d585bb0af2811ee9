"""Node construction and NodePolicy validation: developer mistakes fail at construction."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, cast

import anyio
import pytest

from penguiflow.core import Context, Headers, Message, Node, NodePolicy, create


async def echo(message: Any, ctx: Context) -> Any:
    return message


class AsyncCallable:
    """A callable object whose ``__call__`` is a coroutine function."""

    def __init__(self, suffix: str) -> None:
        self.suffix = suffix

    async def __call__(self, message: Message, ctx: Context) -> str:
        return f"{message.payload}{self.suffix}"


# ------------------------------------------------------------------ Node construction


def test_node_name_defaults_to_function_name() -> None:
    assert Node(echo).name == "echo"
    assert Node(echo, name="renamed").name == "renamed"


def test_node_ids_are_unique_per_node() -> None:
    assert Node(echo).node_id != Node(echo).node_id


def test_sync_function_is_rejected_with_async_def_hint() -> None:
    def sync_node(message: Any, ctx: Context) -> Any:
        return message

    with pytest.raises(TypeError, match=r"must be declared with async def") as info:
        Node(cast(Any, sync_node))
    assert "sync_node" in str(info.value)
    assert "async def node(message, ctx)" in str(info.value)


def test_lambda_is_rejected_as_not_a_coroutine_function() -> None:
    with pytest.raises(TypeError, match=r"async def"):
        Node(cast(Any, lambda message, ctx: message), name="lam")  # pyright: ignore[reportUnknownLambdaType]


def test_non_callable_is_rejected() -> None:
    with pytest.raises(TypeError, match="must be an async function"):
        Node(cast(Any, 42), name="number")


@pytest.mark.parametrize(
    "func",
    [
        pytest.param(lambda: _one_arg, id="one-parameter"),
        pytest.param(lambda: _three_args, id="three-required-parameters"),
        pytest.param(lambda: _no_args, id="no-parameters"),
    ],
)
def test_wrong_arity_is_rejected_with_signature_hint(func: Any) -> None:
    target = func()
    with pytest.raises(ValueError, match=r"exactly two parameters \(message, ctx\)") as info:
        Node(target, name="bad")
    message = str(info.value)
    assert "'bad'" in message
    assert "async def node(message, ctx)" in message


async def _one_arg(message: Any) -> Any:
    return message


async def _three_args(message: Any, ctx: Any, extra: Any) -> Any:
    return message


async def _keyword_only_ctx(message: Any, *, ctx: Any) -> Any:
    return message


async def _var_keyword_ctx(message: Any, **ctx: Any) -> Any:
    return message


@pytest.mark.parametrize(
    ("func", "detail"),
    [
        pytest.param(_keyword_only_ctx, "'ctx' is keyword-only", id="keyword-only"),
        pytest.param(_var_keyword_ctx, "`**ctx` only takes keywords", id="var-keyword"),
    ],
)
def test_non_positional_ctx_is_rejected_saying_it_must_be_positional(
    func: Any, detail: str
) -> None:
    with pytest.raises(ValueError, match="Context parameter must be positional") as info:
        Node(func, name="bad")
    message = str(info.value)
    assert "'bad'" in message
    assert detail in message
    assert "async def node(message, ctx)" in message


async def _no_args() -> None:
    return None


def test_extra_parameters_with_defaults_are_accepted() -> None:
    async def with_default(message: Any, ctx: Context, retries: int = 3) -> Any:
        return message

    assert Node(with_default).name == "with_default"


def test_async_method_is_accepted() -> None:
    class Service:
        async def handle(self, message: Any, ctx: Context) -> Any:
            return message

    assert Node(Service().handle).name == "handle"


def test_callable_object_with_async_call_is_accepted() -> None:
    """**fix**: the reference rejected callable objects whose ``__call__`` is async."""
    node = Node(AsyncCallable("!"))
    assert node.name == "AsyncCallable"


def test_callable_object_with_sync_call_is_rejected() -> None:
    class SyncCallable:
        def __call__(self, message: Any, ctx: Any) -> Any:
            return message

    with pytest.raises(TypeError, match=r"async def"):
        Node(cast(Any, SyncCallable()))


async def test_callable_object_node_runs_in_a_flow() -> None:
    """**fix**: the accepted callable object is actually invoked as the node function."""
    node = Node(AsyncCallable("!"), name="shout")
    flow = create(node.to())
    async with flow.running():
        with anyio.fail_after(5):
            await flow.emit(Message(payload="hi", headers=Headers(tenant="t")))
            result = await flow.fetch()
    assert result == "hi!"


def test_empty_name_is_rejected() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        Node(echo, name="")


def test_policy_must_be_a_node_policy() -> None:
    with pytest.raises(TypeError, match="NodePolicy"):
        Node(echo, policy=cast(Any, {"timeout_s": 1}))


def test_to_returns_adjacency_and_empty_to_marks_terminal() -> None:
    a, b, c = Node(echo, name="a"), Node(echo, name="b"), Node(echo, name="c")
    assert a.to(b, c) == (a, (b, c))
    assert c.to() == (c, ())


def test_to_rejects_non_node_successor_naming_the_node() -> None:
    a = Node(echo, name="a")
    with pytest.raises(TypeError, match=r"a\.to\(\) takes Node objects, got str"):
        a.to(cast(Any, "b"))


# ------------------------------------------------------------------ functools.partial nodes


async def _scaled(factor: int, message: Message, ctx: Context) -> Message:
    return message.payload * factor


def _sync_scaled(factor: int, message: Message, ctx: Context) -> int:
    return message.payload * factor


def test_partial_of_a_coroutine_function_is_accepted_and_named_after_it() -> None:
    node = Node(functools.partial(_scaled, 3))
    assert node.name == "_scaled"
    assert Node(functools.partial(functools.partial(_scaled), 3)).name == "_scaled"
    assert Node(functools.partial(_scaled, 3), name="triple").name == "triple"


async def test_partial_node_runs_with_its_bound_argument() -> None:
    flow = create(Node(functools.partial(_scaled, 3)).to())
    async with flow.running():
        with anyio.fail_after(5):
            await flow.emit(Message(payload=7, headers=Headers(tenant="t")))
            result = await flow.fetch()
    assert result == 21


def test_partial_of_a_sync_function_is_rejected() -> None:
    with pytest.raises(TypeError, match="async def node"):
        Node(cast(Any, functools.partial(_sync_scaled, 3)))


def test_partial_signature_is_checked_on_its_remaining_parameters() -> None:
    three_open = functools.partial(_scaled)
    only_ctx_open = functools.partial(_scaled, 3, Message(payload=1, headers=Headers(tenant="t")))
    with pytest.raises(ValueError, match="exactly two parameters"):
        Node(cast(Any, three_open))
    with pytest.raises(ValueError, match="exactly two parameters"):
        Node(cast(Any, only_ctx_open))


# ------------------------------------------------------------------ NodePolicy


def test_policy_defaults() -> None:
    policy = NodePolicy()
    assert policy.validate == "both"
    assert policy.timeout_s is None
    assert policy.max_retries == 0
    assert policy.backoff_base == 0.5
    assert policy.backoff_mult == 2.0
    assert policy.max_backoff is None
    assert policy.max_concurrency >= 1
    assert policy.retry_on is None


def test_policy_is_frozen() -> None:
    policy = NodePolicy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.timeout_s = 3.0  # pyright: ignore[reportAttributeAccessIssue]


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"validate": "sometimes"}, "validate must be one of"),
        ({"timeout_s": -1.0}, "timeout_s must be > 0"),
        ({"timeout_s": 0.0}, "timeout_s must be > 0"),
        ({"timeout_s": float("nan")}, "timeout_s"),
        ({"max_retries": -1}, "max_retries must be >= 0"),
        ({"backoff_base": -0.1}, "backoff_base must be >= 0"),
        ({"max_backoff": -1.0}, "max_backoff must be >= 0"),
        ({"backoff_mult": 0.5}, "backoff_mult must be >= 1"),
        ({"jitter": -0.1}, "jitter must be between 0 and 1"),
        ({"jitter": 1.5}, "jitter must be between 0 and 1"),
        ({"max_concurrency": 0}, "max_concurrency must be >= 1"),
    ],
)
def test_invalid_policy_values_raise_value_error(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        NodePolicy(**kwargs)


@pytest.mark.parametrize(
    "retry_on",
    [pytest.param(("not an exception",), id="string"), pytest.param((int,), id="non-exception")],
)
def test_retry_on_must_hold_exception_types(retry_on: Any) -> None:
    with pytest.raises(TypeError, match="retry_on must be a tuple of exception types"):
        NodePolicy(retry_on=retry_on)


def test_retry_on_accepts_exception_types_and_predicates() -> None:
    assert NodePolicy(retry_on=(ValueError, OSError)).retry_on == (ValueError, OSError)

    def predicate(exc: BaseException) -> bool:
        return isinstance(exc, KeyError)

    assert NodePolicy(retry_on=predicate).retry_on is predicate


def test_backoff_grows_geometrically() -> None:
    policy = NodePolicy(backoff_base=0.5, backoff_mult=2.0)
    assert [policy.backoff(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]


def test_backoff_is_capped_by_max_backoff() -> None:
    policy = NodePolicy(backoff_base=1.0, backoff_mult=3.0, max_backoff=5.0)
    assert [policy.backoff(n) for n in (1, 2, 3, 4)] == [1.0, 3.0, 5.0, 5.0]


def test_backoff_with_multiplier_one_is_constant() -> None:
    policy = NodePolicy(backoff_base=0.25, backoff_mult=1.0)
    assert {policy.backoff(n) for n in range(1, 6)} == {0.25}
