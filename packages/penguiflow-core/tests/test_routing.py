"""Routers and policies: predicate_router, union_router, RoutingPolicy, DictRoutingPolicy."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, cast

import anyio
import anyio.lowlevel
import pytest
from pydantic import BaseModel, Field

from penguiflow.core import (
    Context,
    DictRoutingPolicy,
    FlowError,
    FlowErrorCode,
    FlowEvent,
    GraphError,
    Headers,
    Message,
    Node,
    NodePolicy,
    PenguiFlow,
    RoutingPolicy,
    RoutingRequest,
    create,
    predicate_router,
    union_router,
)

Decision = str | Sequence[str] | Sequence[Node] | None
"""What the test policies return."""


def sink(name: str) -> Node:
    """A terminal node that records which node handled the message."""

    async def handle(message: Any, ctx: Context) -> Any:
        if isinstance(message, Message):
            return message.with_meta(handled_by=ctx.owner.name)
        return f"{ctx.owner.name}:{message}"

    return Node(handle, name=name, policy=NodePolicy(validate="none"))


def routed_flow(router: Node, *names: str, **kwargs: Any) -> PenguiFlow:
    sinks = [sink(name) for name in names]
    return create(router.to(*sinks), *(s.to() for s in sinks), **kwargs)


def msg(payload: object = "x", *, tenant: str = "acme", trace_id: str | None = None) -> Message:
    if trace_id is None:
        return Message(payload=payload, headers=Headers(tenant=tenant))
    return Message(payload=payload, headers=Headers(tenant=tenant), trace_id=trace_id)


async def handled_by(flow: PenguiFlow, message: Message, count: int = 1) -> list[str]:
    """Emit ``message`` and return the sorted names of the sinks that handled it."""
    await flow.emit(message)
    names: list[str] = []
    with anyio.fail_after(5):
        for _ in range(count):
            item = await flow.fetch(trace_id=message.trace_id)
            assert isinstance(item, Message), item
            names.append(str(item.meta["handled_by"]))
    return sorted(names)


# ------------------------------------------------------------------ predicate_router


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("left", ["left"]),
        (["left", "right"], ["left", "right"]),
        (("right",), ["right"]),
    ],
    ids=["name", "list-of-names", "tuple-of-one"],
)
async def test_predicate_router_sends_to_the_named_successors(
    choice: str | Sequence[str], expected: list[str]
) -> None:
    flow = routed_flow(predicate_router("route", lambda m: choice), "left", "right")
    async with flow.running():
        assert await handled_by(flow, msg(), count=len(expected)) == expected
        assert flow.statistics().rookery_buffered == 0


async def test_predicate_router_accepts_node_objects_as_choices() -> None:
    left, right = sink("left"), sink("right")
    router = predicate_router("route", lambda m: [right, left] if m.payload == "both" else right)
    flow = create(router.to(left, right), left.to(), right.to())
    async with flow.running():
        assert await handled_by(flow, msg("one")) == ["right"]
        assert await handled_by(flow, msg("both"), count=2) == ["left", "right"]


async def test_predicate_router_fanout_gives_each_successor_its_own_meta() -> None:
    flow = routed_flow(predicate_router("route", lambda m: ["left", "right"]), "left", "right")
    async with flow.running():
        message = msg()
        await flow.emit(message)
        with anyio.fail_after(5):
            first = await flow.fetch(trace_id=message.trace_id)
            second = await flow.fetch(trace_id=message.trace_id)
    assert {first.meta["handled_by"], second.meta["handled_by"]} == {"left", "right"}
    assert first.meta is not second.meta
    assert message.meta == {}


async def test_predicate_returning_none_drops_the_message() -> None:
    seen: list[str] = []

    def choose(m: Message) -> str | None:
        seen.append(m.payload)
        return None if m.payload == "drop" else "left"

    flow = routed_flow(predicate_router("route", choose), "left")
    async with flow.running():
        trace = "t-drop"
        # Same trace: the router handles them in order, so the drop is decided before "keep".
        await flow.emit(msg("drop", trace_id=trace))
        await flow.emit(msg("keep", trace_id=trace))
        with anyio.fail_after(5):
            kept = await flow.fetch(trace_id=trace)
        assert kept.payload == "keep"
        assert seen == ["drop", "keep"]
        assert flow.statistics().rookery_buffered == 0
        with pytest.raises(asyncio.QueueEmpty):
            flow.fetch_nowait(trace_id=trace)


async def test_async_predicate_is_awaited() -> None:
    async def choose(m: Message) -> str:
        await anyio.lowlevel.checkpoint()
        return "right" if m.payload == "r" else "left"

    flow = routed_flow(predicate_router("route", choose), "left", "right")
    async with flow.running():
        assert await handled_by(flow, msg("r")) == ["right"]
        assert await handled_by(flow, msg("l")) == ["left"]


async def test_predicate_router_routes_bare_payloads() -> None:
    router = predicate_router("route", lambda p: "right" if p > 0 else "left")
    flow = routed_flow(router, "left", "right")
    async with flow.running():
        await flow.emit(5, trace_id="t-pos")
        await flow.emit(-5, trace_id="t-neg")
        with anyio.fail_after(5):
            assert await flow.fetch(trace_id="t-pos") == "right:5"
            assert await flow.fetch(trace_id="t-neg") == "left:-5"


async def test_unknown_successor_name_fails_with_flow_error_listing_valid_successors() -> None:
    flow = routed_flow(
        predicate_router("route", lambda m: "nowhere"),
        "left",
        "right",
        emit_errors_to_rookery=True,
    )
    async with flow.running():
        message = msg()
        await flow.emit(message)
        with anyio.fail_after(5):
            error = await flow.fetch(trace_id=message.trace_id)
    assert isinstance(error, FlowError)
    assert error.code is FlowErrorCode.NODE_EXCEPTION
    assert error.node_name == "route"
    assert error.trace_id == message.trace_id
    assert isinstance(error.unwrap(), KeyError)
    assert "'nowhere'" in error.message
    assert "['left', 'right']" in error.message


async def test_unknown_successor_name_raises_in_waiting_trace_scoped_fetch() -> None:
    flow = routed_flow(predicate_router("route", lambda m: "nowhere"), "left")
    async with flow.running():
        message = msg()
        errors: list[FlowError] = []
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:

                async def wait() -> None:
                    with pytest.raises(FlowError) as info:
                        await flow.fetch(trace_id=message.trace_id)
                    errors.append(info.value)

                tg.start_soon(wait)
                await anyio.wait_all_tasks_blocked()
                await flow.emit(message)
    assert len(errors) == 1
    assert "valid successors: ['left']" in errors[0].message


async def test_unknown_predicate_name_with_a_policy_still_lists_valid_successors() -> None:
    router = predicate_router("route", lambda m: "nowhere", policy=lambda request: None)
    flow = routed_flow(router, "left", "right", emit_errors_to_rookery=True)
    async with flow.running():
        message = msg()
        await flow.emit(message)
        with anyio.fail_after(5):
            error = await flow.fetch(trace_id=message.trace_id)
    assert isinstance(error, FlowError)
    assert error.node_name == "route"
    assert "'nowhere'" in error.message
    assert "['left', 'right']" in error.message  # the successors, not every node of the flow


async def test_predicate_exception_becomes_node_exception_flow_error() -> None:
    def choose(m: Message) -> str:
        raise RuntimeError("predicate broke")

    flow = routed_flow(predicate_router("route", choose), "left", emit_errors_to_rookery=True)
    async with flow.running():
        message = msg()
        await flow.emit(message)
        with anyio.fail_after(5):
            error = await flow.fetch(trace_id=message.trace_id)
    assert isinstance(error, FlowError)
    assert error.code is FlowErrorCode.NODE_EXCEPTION
    assert isinstance(error.unwrap(), RuntimeError)


def test_predicate_router_defaults_to_no_validation_and_accepts_a_node_policy() -> None:
    assert predicate_router("r", lambda m: None).policy.validate == "none"
    custom = NodePolicy(validate="none", max_retries=3)
    assert predicate_router("r", lambda m: None, node_policy=custom).policy is custom


# ----------------------------------------------------------------------- union_router


class Search(BaseModel):
    kind: Literal["search"] = "search"
    query: str


class Calc(BaseModel):
    kind: Literal["calc"] = "calc"
    a: int
    b: int


Request = Annotated[Search | Calc, Field(discriminator="kind")]


class Ping(BaseModel):
    host: str


class Pong(BaseModel):
    port: int


def union_flow(union_model: object, names: Sequence[str], **kwargs: Any) -> PenguiFlow:
    return routed_flow(union_router("dispatch", union_model), *names, **kwargs)


async def test_union_router_routes_by_kind_and_hands_on_the_validated_variant() -> None:
    received: list[object] = []

    async def search(message: Message, ctx: Context) -> Message:
        received.append(message.payload)
        return message.with_meta(handled_by="search")

    search_node, calc_node = Node(search, policy=NodePolicy(validate="none")), sink("calc")
    router = union_router("dispatch", Request)
    flow = create(router.to(search_node, calc_node), search_node.to(), calc_node.to())
    async with flow.running():
        assert await handled_by(flow, msg({"kind": "search", "query": "penguins"})) == ["search"]
        assert await handled_by(flow, msg({"kind": "calc", "a": 1, "b": 2})) == ["calc"]
        assert await handled_by(flow, msg(Calc(a=3, b=4))) == ["calc"]
    assert received == [Search(query="penguins")]


async def test_union_router_routes_by_class_name_without_kind_field() -> None:
    flow = union_flow(Ping | Pong, ["Ping", "Pong"])
    async with flow.running():
        assert await handled_by(flow, msg({"host": "a"})) == ["Ping"]
        assert await handled_by(flow, msg({"port": 80})) == ["Pong"]


async def test_union_router_routes_bare_payloads() -> None:
    flow = union_flow(Request, ["search", "calc"])
    async with flow.running():
        await flow.emit({"kind": "calc", "a": 1, "b": 1}, trace_id="t-bare")
        with anyio.fail_after(5):
            assert await flow.fetch(trace_id="t-bare") == "calc:kind='calc' a=1 b=1"


async def test_union_router_invalid_payload_is_a_validation_error_and_not_retried() -> None:
    starts: list[FlowEvent] = []

    def on_event(event: FlowEvent) -> None:
        if event.event_type == "node_start" and event.node_name == "dispatch":
            starts.append(event)

    router = union_router(
        "dispatch", Request, node_policy=NodePolicy(validate="none", max_retries=3)
    )
    flow = routed_flow(router, "search", "calc", emit_errors_to_rookery=True, on_event=on_event)
    async with flow.running():
        message = msg({"kind": "dance"})
        await flow.emit(message)
        with anyio.fail_after(5):
            error = await flow.fetch(trace_id=message.trace_id)
    assert isinstance(error, FlowError)
    assert error.code is FlowErrorCode.VALIDATION_ERROR
    assert error.node_name == "dispatch"
    assert error.trace_id == message.trace_id
    assert len(starts) == 1


@pytest.mark.parametrize(
    ("model", "connected", "routed", "unrouted", "missing"),
    [
        (Ping | Pong, ["Ping"], {"host": "a"}, {"port": 1}, "'Pong'"),
        (
            Request,
            ["search"],
            {"kind": "search", "query": "q"},
            {"kind": "calc", "a": 1, "b": 2},
            "'calc'",
        ),
    ],
    ids=["class-name", "discriminated-kind"],
)
async def test_union_router_may_leave_variants_unconnected_and_fails_only_when_one_arrives(
    model: object, connected: list[str], routed: object, unrouted: object, missing: str
) -> None:
    flow = union_flow(model, connected, emit_errors_to_rookery=True)  # builds: no variant check
    async with flow.running():
        assert await handled_by(flow, msg(routed)) == connected
        message = msg(unrouted)
        await flow.emit(message)
        with anyio.fail_after(5):
            error = await flow.fetch(trace_id=message.trace_id)
    assert isinstance(error, FlowError)
    assert error.node_name == "dispatch"
    assert isinstance(error.unwrap(), KeyError)
    assert missing in error.message
    assert f"valid successors: {connected}" in error.message


# ---------------------------------------------------------------------- routing policies


class Recorder:
    """A sync RoutingPolicy that records every request and returns a fixed decision.

    ``keep=True`` returns the router's own proposal instead.
    """

    def __init__(self, decision: str | Sequence[str] | None = None, *, keep: bool = False) -> None:
        self.decision = decision
        self.keep = keep
        self.requests: list[RoutingRequest] = []

    def select(self, request: RoutingRequest) -> Decision:
        self.requests.append(request)
        return request.proposed if self.keep else self.decision


class AsyncRecorder(Recorder):
    async def select(self, request: RoutingRequest) -> Decision:  # pyright: ignore[reportIncompatibleMethodOverride]
        await anyio.lowlevel.checkpoint()
        return super().select(request)


async def test_routing_request_describes_router_proposal_and_trace() -> None:
    policy = Recorder(keep=True)
    router = predicate_router("route", lambda m: ["left", "right"], policy=policy)
    flow = routed_flow(router, "left", "right")
    async with flow.running():
        message = msg("hello", trace_id="t-req")
        assert await handled_by(flow, message, count=2) == ["left", "right"]
    [request] = policy.requests
    assert request.node is router
    assert request.node_name == "route"
    assert request.context.owner is router
    assert request.proposed_names == ("left", "right")
    assert [n.name for n in request.proposed] == ["left", "right"]
    assert request.trace_id == "t-req"
    assert isinstance(request.message, Message)
    assert request.message.payload == "hello"


async def test_routing_request_trace_id_of_bare_payload_is_the_emitted_trace() -> None:
    policy = Recorder(keep=True)
    flow = routed_flow(predicate_router("route", lambda p: "left", policy=policy), "left")
    async with flow.running():
        await flow.emit("bare", trace_id="t-bare")
        with anyio.fail_after(5):
            assert await flow.fetch(trace_id="t-bare") == "left:bare"
    assert policy.requests[0].trace_id == "t-bare"
    assert policy.requests[0].message == "bare"


@pytest.mark.parametrize("policy_type", [Recorder, AsyncRecorder], ids=["sync", "async"])
async def test_policy_select_overrides_the_proposal(policy_type: type[Recorder]) -> None:
    policy = policy_type("right")
    flow = routed_flow(predicate_router("route", lambda m: "left", policy=policy), "left", "right")
    async with flow.running():
        assert await handled_by(flow, msg()) == ["right"]
    assert len(policy.requests) == 1


async def test_policy_may_return_several_successors() -> None:
    policy = Recorder(["left", "right"])
    flow = routed_flow(predicate_router("route", lambda m: "left", policy=policy), "left", "right")
    async with flow.running():
        assert await handled_by(flow, msg(), count=2) == ["left", "right"]


async def test_policy_returning_its_proposal_keeps_the_routers_choice() -> None:
    policy = Recorder(keep=True)
    flow = routed_flow(predicate_router("route", lambda m: "left", policy=policy), "left", "right")
    async with flow.running():
        assert await handled_by(flow, msg()) == ["left"]
    assert len(policy.requests) == 1


@pytest.mark.parametrize("decision", [None, [], ()], ids=["none", "empty-list", "empty-tuple"])
@pytest.mark.parametrize("router_kind", ["predicate", "union"])
async def test_policy_returning_none_or_empty_drops_the_message(
    decision: Sequence[str] | None, router_kind: str
) -> None:
    def drop_first(request: RoutingRequest) -> Decision:
        return decision if request.message.payload == Search(query="drop") else request.proposed

    if router_kind == "predicate":
        router = predicate_router("route", lambda m: "search", policy=drop_first)
    else:
        router = union_router("route", Request, policy=drop_first)
    flow = routed_flow(router, "search")
    async with flow.running():
        # One trace: the router handles them in order, so the drop is decided before "keep".
        await flow.emit(msg(Search(query="drop"), trace_id="t"))
        await flow.emit(msg(Search(query="keep"), trace_id="t"))
        with anyio.fail_after(5):
            kept = await flow.fetch(trace_id="t")
        assert kept.payload == Search(query="keep")
        assert flow.statistics().rookery_buffered == 0
        with pytest.raises(asyncio.QueueEmpty):
            flow.fetch_nowait(trace_id="t")


@pytest.mark.parametrize("dropped", [None, []], ids=["none", "empty"])
async def test_policy_is_not_consulted_for_a_message_the_predicate_dropped(
    dropped: list[str] | None,
) -> None:
    policy = Recorder("left")
    router = predicate_router(
        "route", lambda m: dropped if m.payload == "drop" else "left", policy=policy
    )
    flow = routed_flow(router, "left")
    async with flow.running():
        await flow.emit(msg("drop", trace_id="t"))
        await flow.emit(msg("keep", trace_id="t"))
        with anyio.fail_after(5):
            item = await flow.fetch(trace_id="t")
        assert item.payload == "keep"
        assert flow.statistics().rookery_buffered == 0
    assert [r.message.payload for r in policy.requests] == ["keep"]


@pytest.mark.parametrize("is_async", [False, True], ids=["sync-callable", "async-callable"])
async def test_plain_callable_works_as_a_policy(is_async: bool) -> None:
    calls: list[str] = []

    def choose(request: RoutingRequest) -> str:
        calls.append(request.node_name)
        return "right" if request.message.headers.tenant == "b" else "left"

    async def achoose(request: RoutingRequest) -> str:
        await anyio.lowlevel.checkpoint()
        return choose(request)

    policy: Callable[[RoutingRequest], Any] = achoose if is_async else choose
    router = predicate_router("route", lambda m: "left", policy=policy)
    flow = routed_flow(router, "left", "right")
    async with flow.running():
        assert await handled_by(flow, msg(tenant="b")) == ["right"]
        assert await handled_by(flow, msg(tenant="a")) == ["left"]
    assert calls == ["route", "route"]


async def test_policy_on_union_router_overrides_the_variant_route() -> None:
    seen: list[object] = []

    def policy(request: RoutingRequest) -> Decision:
        seen.append(request.message.payload)
        return "calc" if by_tenant(request) == "vip" else request.proposed

    router = union_router("dispatch", Request, policy=policy)
    flow = routed_flow(router, "search", "calc")
    async with flow.running():
        assert await handled_by(flow, msg({"kind": "search", "query": "q"}, tenant="vip")) == [
            "calc"
        ]
        assert await handled_by(flow, msg({"kind": "search", "query": "q"})) == ["search"]
    assert seen == [Search(query="q")] * 2  # the policy sees the validated variant


async def test_policy_choosing_a_non_successor_at_run_time_fails_naming_valid_successors() -> None:
    router = predicate_router("route", lambda m: "left", policy=lambda request: "ghost")
    flow = routed_flow(router, "left", "right", emit_errors_to_rookery=True)
    async with flow.running():
        message = msg()
        await flow.emit(message)
        with anyio.fail_after(5):
            error = await flow.fetch(trace_id=message.trace_id)
    assert isinstance(error, FlowError)
    assert error.node_name == "route"
    assert "'ghost'" in error.message
    assert "['left', 'right']" in error.message


def test_dict_policy_target_that_is_not_a_successor_fails_at_create() -> None:
    policy = DictRoutingPolicy({"a": "left"}, default="ghost")
    router = predicate_router("route", lambda m: "left", policy=policy)
    with pytest.raises(GraphError, match=r"'ghost'.*valid successors: \['left'\]"):
        routed_flow(router, "left")


def test_policies_satisfy_the_routing_policy_protocol() -> None:
    assert isinstance(DictRoutingPolicy({}), RoutingPolicy)
    assert isinstance(Recorder(None), RoutingPolicy)
    assert not isinstance(object(), RoutingPolicy)


# ------------------------------------------------------------------- DictRoutingPolicy


def request_for(message: object, proposed: Sequence[str] = ("standard",)) -> RoutingRequest:
    """A RoutingRequest built by hand for unit tests of ``select``."""
    router = Node(sink("router").func, name="router")
    return RoutingRequest(
        message=message,
        context=cast(Context, None),
        node=router,
        proposed=tuple(sink(name) for name in proposed),
        trace_id=message.trace_id if isinstance(message, Message) else None,
    )


def by_tenant(request: RoutingRequest) -> str | None:
    """A ``key_getter`` routing on the message's tenant."""
    message = request.message
    return message.headers.tenant if isinstance(message, Message) else None


def test_dict_policy_keys_on_the_trace_id_by_default() -> None:
    policy = DictRoutingPolicy({"t-1": "premium", "t-2": ["batch", "audit"]}, default="standard")
    assert policy.select(request_for(msg(tenant="t-2", trace_id="t-1"))) == "premium"
    assert policy.select(request_for(msg(trace_id="t-2"))) == ["batch", "audit"]
    assert policy.select(request_for(msg(tenant="t-1", trace_id="other"))) == "standard"


def test_dict_policy_key_getter_on_the_tenant() -> None:
    policy = DictRoutingPolicy({"a": "premium", "b": ["batch", "audit"]}, key_getter=by_tenant)
    assert policy.select(request_for(msg(tenant="a"))) == "premium"
    assert policy.select(request_for(msg(tenant="b"))) == ["batch", "audit"]


def test_dict_policy_unknown_key_uses_default_else_none() -> None:
    policy = DictRoutingPolicy({"a": "premium"}, key_getter=by_tenant)
    assert policy.select(request_for(msg(tenant="z"))) is None
    with_default = DictRoutingPolicy({"a": "premium"}, default="standard", key_getter=by_tenant)
    assert with_default.select(request_for(msg(tenant="z"))) == "standard"


def test_dict_policy_key_of_none_uses_default() -> None:
    policy = DictRoutingPolicy({"a": "premium"}, default="standard", key_getter=by_tenant)
    assert policy.select(request_for("bare")) == "standard"


def test_dict_policy_explicit_none_entry_is_a_drop_not_the_default() -> None:
    policy = DictRoutingPolicy({"a": None}, default="standard", key_getter=by_tenant)
    assert policy.select(request_for(msg(tenant="a"))) is None


def test_dict_policy_key_getter_chooses_the_key() -> None:
    def topic(request: RoutingRequest) -> str | None:
        message = request.message
        return message.headers.topic if isinstance(message, Message) else None

    policy = DictRoutingPolicy({"billing": "batch"}, default="standard", key_getter=topic)
    billing = Message(payload=1, headers=Headers(tenant="a", topic="billing"))
    assert policy.select(request_for(billing)) == "batch"
    assert policy.select(request_for(msg(tenant="billing"))) == "standard"


def test_dict_policy_update_mapping_replaces_and_set_default_replaces() -> None:
    policy = DictRoutingPolicy({"a": "premium", "b": "standard"}, key_getter=by_tenant)
    policy.update_mapping({"b": "batch", "c": "premium"})
    assert policy.mapping == {"b": "batch", "c": "premium"}
    assert policy.select(request_for(msg(tenant="b"))) == "batch"
    assert policy.select(request_for(msg(tenant="a"))) is None  # gone with the old mapping
    assert policy.select(request_for(msg(tenant="z"))) is None
    policy.set_default("standard")
    assert policy.select(request_for(msg(tenant="z"))) == "standard"
    policy.set_default(None)
    assert policy.select(request_for(msg(tenant="z"))) is None


def test_dict_policy_mapping_is_a_copy() -> None:
    source = {"a": "premium"}
    policy = DictRoutingPolicy(source, key_getter=by_tenant)
    source["a"] = "batch"
    view = cast(dict[str, str], policy.mapping)
    view["a"] = "changed"
    assert policy.select(request_for(msg(tenant="a"))) == "premium"


def test_dict_policy_targets_lists_every_reachable_successor() -> None:
    policy = DictRoutingPolicy({"a": "x", "b": ["y", "z"], "c": None}, default="w")
    assert policy.targets() == {"w", "x", "y", "z"}
    assert DictRoutingPolicy({}).targets() == set()


def test_dict_policy_from_json_with_mapping_and_default() -> None:
    text = json.dumps({"mapping": {"a": "premium", "b": ["x", "y"]}, "default": "standard"})
    policy = DictRoutingPolicy.from_json(text, key_getter=by_tenant)
    assert policy.mapping == {"a": "premium", "b": ["x", "y"]}
    assert policy.select(request_for(msg(tenant="a"))) == "premium"
    assert policy.select(request_for(msg(tenant="z"))) == "standard"


def test_dict_policy_from_json_bare_object_has_no_default() -> None:
    policy = DictRoutingPolicy.from_json('{"a": "premium", "b": "batch"}', key_getter=by_tenant)
    assert policy.mapping == {"a": "premium", "b": "batch"}
    assert policy.select(request_for(msg(tenant="z"))) is None


def test_dict_policy_from_json_passes_key_getter() -> None:
    policy = DictRoutingPolicy.from_json('{"urgent": "premium"}', key_getter=lambda r: "urgent")
    assert policy.select(request_for(msg(tenant="anyone"))) == "premium"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("[1, 2]", "must decode to a mapping .* got list"),
        ('"premium"', "must decode to a mapping .* got str"),
        ("null", "must decode to a mapping .* got NoneType"),
        ('{"a": 5}', r"the mapping\['a'\] must be a successor name.* got int: 5"),
        ('{"a": ["x", 1]}', r"the mapping\['a'\] must be a successor name.* got list"),
        ('{"a": {"b": "c"}}', r"the mapping\['a'\] must be a successor name.* got dict"),
        ('{"mapping": {"a": "x"}, "default": 3}', "default must be a successor name"),
    ],
    ids=["list", "string", "null", "number-value", "number-in-list", "object-value", "bad-default"],
)
def test_dict_policy_from_json_of_the_wrong_shape_is_a_type_error(text: str, error: str) -> None:
    with pytest.raises(TypeError, match=error):
        DictRoutingPolicy.from_json(text)


def test_dict_policy_from_json_that_is_not_json_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="Expecting property name"):
        DictRoutingPolicy.from_json("{not json")


@pytest.mark.parametrize(
    "table", [{"mapping": "x"}, {"mapping": ["x", "y"]}], ids=["mapping-name", "mapping-list"]
)
def test_dict_policy_from_json_reads_a_key_named_mapping_as_a_routing_key(
    table: dict[str, object],
) -> None:
    policy = DictRoutingPolicy.from_json(json.dumps(table), key_getter=lambda r: "mapping")
    assert policy.mapping == table
    assert policy.select(request_for(msg())) == table["mapping"]


def test_dict_policy_from_json_object_with_mapping_and_other_keys_is_a_plain_table() -> None:
    # Not the {"mapping": ..., "default": ...} shape, so "mapping" is a routing key, and an
    # object is not a routing decision.
    with pytest.raises(TypeError, match=r"the mapping\['mapping'\] must be a successor name"):
        DictRoutingPolicy.from_json('{"mapping": {"a": "x"}, "other": "y"}')


def test_dict_policy_from_json_default_argument_wins_over_the_json_default() -> None:
    wrapped = json.dumps({"mapping": {"a": "premium"}, "default": "batch"})
    assert DictRoutingPolicy.from_json(wrapped, default="audit").select(request_for("x")) == "audit"
    assert DictRoutingPolicy.from_json(wrapped).select(request_for("x")) == "batch"
    bare = DictRoutingPolicy.from_json('{"a": "premium"}', default="audit")
    assert bare.select(request_for("x")) == "audit"


def test_dict_policy_from_json_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"mapping": {"a": "premium"}, "default": "batch"}), "utf-8")
    policy = DictRoutingPolicy.from_json_file(path, key_getter=by_tenant)
    assert policy.select(request_for(msg(tenant="a"))) == "premium"
    assert policy.select(request_for(msg(tenant="b"))) == "batch"
    by_str = DictRoutingPolicy.from_json_file(str(path), key_getter=lambda r: "a")
    assert by_str.select(request_for(msg(tenant="b"))) == "premium"
    overridden = DictRoutingPolicy.from_json_file(path, default="audit", key_getter=by_tenant)
    assert overridden.select(request_for(msg(tenant="b"))) == "audit"


def test_dict_policy_from_json_file_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        DictRoutingPolicy.from_json_file(tmp_path / "missing.json")


def test_dict_policy_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PF_TEST_ROUTES", '{"a": "premium"}')
    policy = DictRoutingPolicy.from_env("PF_TEST_ROUTES", key_getter=by_tenant)
    assert policy.select(request_for(msg(tenant="a"))) == "premium"
    keyed = DictRoutingPolicy.from_env("PF_TEST_ROUTES", key_getter=lambda r: "a")
    assert keyed.select(request_for(msg(tenant="b"))) == "premium"


def test_dict_policy_from_env_missing_variable_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PF_TEST_NO_SUCH_VAR", raising=False)
    with pytest.raises(KeyError, match="Environment variable 'PF_TEST_NO_SUCH_VAR' not set"):
        DictRoutingPolicy.from_env("PF_TEST_NO_SUCH_VAR")


def test_dict_policy_from_env_invalid_json_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PF_TEST_ROUTES", "[]")
    with pytest.raises(TypeError, match="must decode to a mapping"):
        DictRoutingPolicy.from_env("PF_TEST_ROUTES")


# -------------------------------------------------------- same flow, two policies

TENANTS = ("tenant-a", "tenant-b", "tenant-c", "tenant-d")


def lanes_flow(policy: DictRoutingPolicy) -> PenguiFlow:
    router = predicate_router("router", lambda m: "standard", policy=policy)
    return routed_flow(router, "premium", "standard", "batch")


async def route_tenants(policy: DictRoutingPolicy) -> dict[str, str]:
    flow = lanes_flow(policy)
    routes: dict[str, str] = {}
    async with flow.running():
        messages = [msg(tenant=t) for t in TENANTS for _ in range(3)]
        for message in messages:  # all in flight at once, interleaved across tenants
            await flow.emit(message)
        with anyio.fail_after(5):
            for message in messages:
                item = await flow.fetch(trace_id=message.trace_id)
                lane = str(item.meta["handled_by"])
                tenant = message.headers.tenant
                assert routes.setdefault(tenant, lane) == lane, "one tenant, one lane"
    return routes


async def test_same_flow_routes_differently_and_deterministically_under_two_policies(
    tmp_path: Path,
) -> None:
    first_path = tmp_path / "first.json"
    first_path.write_text(
        json.dumps({"mapping": {"tenant-a": "premium", "tenant-b": "batch"}, "default": "standard"})
    )
    first = DictRoutingPolicy.from_json_file(first_path, key_getter=by_tenant)
    second = DictRoutingPolicy.from_json(
        '{"tenant-a": "batch", "tenant-c": "premium"}', default="standard", key_getter=by_tenant
    )

    first_runs = [await route_tenants(first) for _ in range(4)]
    second_runs = [await route_tenants(second) for _ in range(4)]

    expected_first = {"tenant-a": "premium", "tenant-b": "batch"}
    expected_second = {"tenant-a": "batch", "tenant-c": "premium"}
    default = dict.fromkeys(TENANTS, "standard")
    assert first_runs == [default | expected_first] * 4
    assert second_runs == [default | expected_second] * 4


async def test_policy_update_takes_effect_for_the_next_message_of_a_running_flow() -> None:
    policy = DictRoutingPolicy({"acme": "premium"}, key_getter=by_tenant)
    flow = lanes_flow(policy)
    async with flow.running():
        assert await handled_by(flow, msg()) == ["premium"]
        policy.update_mapping({"acme": "batch"})
        assert await handled_by(flow, msg()) == ["batch"]
        policy.update_mapping({"umbrella": "batch"})  # replaces: acme is no longer mapped
        policy.set_default("premium")
        assert await handled_by(flow, msg()) == ["premium"]
