"""Routing as the original penguiflow 3.x does it: trace-keyed tables, drops, loaders."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import anyio
import anyio.lowlevel
import pytest

from penguiflow.core import (
    Context,
    DictRoutingPolicy,
    FlowError,
    FlowErrorCode,
    Headers,
    Message,
    Node,
    NodePolicy,
    PenguiFlow,
    RoutingRequest,
    TraceEnded,
    create,
    evaluate_policy,
    predicate_router,
)


def sink(name: str) -> Node:
    async def handle(message: Message, ctx: Context) -> Message:
        return message.with_meta(handled_by=ctx.owner.name)

    return Node(handle, name=name, policy=NodePolicy(validate="none"))


def routed_flow(router: Node, *names: str, **kwargs: Any) -> PenguiFlow:
    sinks = [sink(name) for name in names]
    return create(router.to(*sinks), *(s.to() for s in sinks), **kwargs)


def msg(payload: object = "x", *, trace_id: str) -> Message:
    return Message(payload=payload, headers=Headers(tenant="acme"), trace_id=trace_id)


def request(trace_id: str | None = "t", proposed: Sequence[str] = ("a",)) -> RoutingRequest:
    router = sink("router")
    return RoutingRequest(
        message=msg(trace_id=trace_id or "unused"),
        context=cast(Context, None),
        node=router,
        proposed=tuple(sink(name) for name in proposed),
        trace_id=trace_id,
    )


# -------------------------------------------------------------- trace-keyed routing tables


async def test_dict_policy_routes_each_trace_by_its_id_in_a_running_flow() -> None:
    policy = DictRoutingPolicy({"t-left": "left", "t-both": ["left", "right"]}, default="right")
    flow = routed_flow(predicate_router("route", lambda m: "left", policy=policy), "left", "right")
    routes: dict[str, list[str]] = {}
    async with flow.running():
        for trace, count in [("t-left", 1), ("t-both", 2), ("t-other", 1)]:
            await flow.emit(msg(trace_id=trace))
            with anyio.fail_after(5):
                items = [await flow.fetch(trace_id=trace) for _ in range(count)]
            routes[trace] = sorted(str(item.meta["handled_by"]) for item in items)
    assert routes == {"t-left": ["left"], "t-both": ["left", "right"], "t-other": ["right"]}


async def test_dict_policy_without_default_drops_unmapped_traces() -> None:
    policy = DictRoutingPolicy({"t-keep": "left"})
    flow = routed_flow(predicate_router("route", lambda m: "left", policy=policy), "left")
    async with flow.running():
        await flow.emit(msg(trace_id="t-drop"))
        await flow.emit(msg(trace_id="t-keep"))
        with anyio.fail_after(5):
            kept = await flow.fetch(trace_id="t-keep")
            with pytest.raises(TraceEnded):
                await flow.fetch(trace_id="t-drop")
        assert kept.trace_id == "t-keep"
        assert flow.statistics().rookery_buffered == 0


def test_dict_policy_accepts_node_objects_as_decisions() -> None:
    left = sink("left")
    policy = DictRoutingPolicy({"t": left, "u": [left, "right"]}, default=left)
    assert policy.select(request("t")) is left
    assert policy.targets() == {"left", "right"}


@pytest.mark.parametrize(
    ("mapping", "default", "fragment"),
    [
        ({"a": 3}, None, r"the mapping\['a'\] must be a successor name.* got int"),
        ({"a": {"x": "y"}}, None, r"the mapping\['a'\] .* got dict"),
        ({}, 1.5, "default must be a successor name.* got float"),
    ],
    ids=["number", "dict", "bad-default"],
)
def test_dict_policy_rejects_decisions_that_are_not_names_or_nodes(
    mapping: dict[str, Any], default: Any, fragment: str
) -> None:
    with pytest.raises(TypeError, match=fragment):
        DictRoutingPolicy(mapping, default=default)
    policy = DictRoutingPolicy({"a": "x"})
    with pytest.raises(TypeError, match=fragment):
        if default is None:
            policy.update_mapping(mapping)
        else:
            policy.set_default(default)
    assert policy.mapping == {"a": "x"}  # a rejected update changes nothing


# ------------------------------------------------------------------------------ from_env


def test_from_env_with_a_loader_and_a_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PF_TEST_ROUTES", "t=premium;u=batch")

    def loader(text: str) -> dict[str, str]:
        return dict(pair.split("=") for pair in text.split(";"))

    policy = DictRoutingPolicy.from_env("PF_TEST_ROUTES", loader=loader, default="standard")
    assert policy.mapping == {"t": "premium", "u": "batch"}
    assert policy.select(request("u")) == "batch"
    assert policy.select(request("other")) == "standard"


def test_from_env_default_and_key_getter_apply_to_json_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PF_TEST_ROUTES", '{"vip": "premium"}')
    policy = DictRoutingPolicy.from_env(
        "PF_TEST_ROUTES", default="standard", key_getter=lambda r: "vip"
    )
    assert policy.select(request("anything")) == "premium"
    plain = DictRoutingPolicy.from_env("PF_TEST_ROUTES", default="standard")
    assert plain.select(request("anything")) == "standard"


def test_from_env_loader_that_returns_no_mapping_is_a_type_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PF_TEST_ROUTES", "premium")
    with pytest.raises(TypeError, match=r"loader given to .*'PF_TEST_ROUTES'.* got list"):
        DictRoutingPolicy.from_env("PF_TEST_ROUTES", loader=lambda text: cast(Any, [text]))


# ------------------------------------------------------------------------- evaluate_policy


class SyncPolicy:
    def select(self, request: RoutingRequest) -> str:
        return f"sync:{request.trace_id}"


class AsyncPolicy:
    async def select(self, request: RoutingRequest) -> str:
        await anyio.lowlevel.checkpoint()
        return f"async:{request.trace_id}"


def plain(request: RoutingRequest) -> tuple[Node, ...]:
    return request.proposed


async def async_plain(request: RoutingRequest) -> None:
    await anyio.lowlevel.checkpoint()


async def test_evaluate_policy_calls_select_or_the_callable_and_awaits_async_results() -> None:
    req = request("t")
    assert await evaluate_policy(SyncPolicy(), req) == "sync:t"
    assert await evaluate_policy(AsyncPolicy(), req) == "async:t"
    assert await evaluate_policy(plain, req) == req.proposed
    assert await evaluate_policy(async_plain, req) is None


# ------------------------------------------------------------------- malformed decisions


@pytest.mark.parametrize("decision", [123, [123], ["left", 4.5], {"left": 1}], ids=str)
async def test_a_decision_that_is_not_names_or_nodes_fails_with_type_error(decision: Any) -> None:
    flow = routed_flow(
        predicate_router("route", lambda m: decision), "left", emit_errors_to_rookery=True
    )
    async with flow.running():
        await flow.emit(msg(trace_id="t"))
        with anyio.fail_after(5):
            error = await flow.fetch(trace_id="t")
    assert isinstance(error, FlowError)
    assert error.code is FlowErrorCode.NODE_EXCEPTION
    assert isinstance(error.unwrap(), TypeError)
    assert "successor name" in error.message
