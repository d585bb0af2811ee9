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


def test_union_router_variant_without_successor_fails_at_create() -> None:
    with pytest.raises(GraphError, match=r"'Pong'.*valid successors: \['Ping'\]"):
        union_flow(Ping | Pong, ["Ping"])


def test_discriminated_union_router_kind_without_successor_fails_at_create() -> None:
    with pytest.raises(GraphError, match=r"'calc'.*valid successors: \['search'\]"):
        union_flow(Request, ["search"])


# ---------------------------------------------------------------------- routing policies


class Recorder:
    """A sync RoutingPolicy that records every request and returns a fixed decision."""

    def __init__(self, decision: str | Sequence[str] | None) -> None:
        self.decision = decision
        self.requests: list[RoutingRequest] = []

    def select(self, request: RoutingRequest) -> str | Sequence[str] | None:
        self.requests.append(request)
        return self.decision


class AsyncRecorder(Recorder):
    async def select(self, request: RoutingRequest) -> str | Sequence[str] | None:  # pyright: ignore[reportIncompatibleMethodOverride]
        await anyio.lowlevel.checkpoint()
        return super().select(request)


async def test_routing_request_describes_router_proposal_and_trace() -> None:
    policy = Recorder(None)
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
    policy = Recorder(None)
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


async def test_policy_returning_none_keeps_the_proposal() -> None:
    policy = Recorder(None)
    flow = routed_flow(predicate_router("route", lambda m: "left", policy=policy), "left", "right")
    async with flow.running():
        assert await handled_by(flow, msg()) == ["left"]
    assert len(policy.requests) == 1


async def test_policy_sees_an_empty_proposal_for_a_dropped_message_and_may_route_it() -> None:
    proposals: list[tuple[str, ...]] = []

    def rescue(request: RoutingRequest) -> str | None:
        proposals.append(request.proposed_names)
        return "left" if request.message.payload == "rescue" else None

    flow = routed_flow(predicate_router("route", lambda m: None, policy=rescue), "left")
    async with flow.running():
        # One trace: the router handles them in order, so "drop" is decided before "rescue".
        await flow.emit(msg("drop", trace_id="t"))
        await flow.emit(msg("rescue", trace_id="t"))
        with anyio.fail_after(5):
            item = await flow.fetch(trace_id="t")
        assert item.payload == "rescue"
        assert flow.statistics().rookery_buffered == 0
    assert proposals == [(), ()]


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
    policy = DictRoutingPolicy({"vip": "calc"})
    router = union_router("dispatch", Request, policy=policy)
    flow = routed_flow(router, "search", "calc")
    async with flow.running():
        assert await handled_by(flow, msg({"kind": "search", "query": "q"}, tenant="vip")) == [
            "calc"
        ]
        assert await handled_by(flow, msg({"kind": "search", "query": "q"})) == ["search"]


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


def test_dict_policy_keys_on_the_tenant_by_default() -> None:
    policy = DictRoutingPolicy({"a": "premium", "b": ["batch", "audit"]})
    assert policy.select(request_for(msg(tenant="a"))) == "premium"
    assert policy.select(request_for(msg(tenant="b"))) == ["batch", "audit"]


def test_dict_policy_unknown_key_uses_default_else_none() -> None:
    assert DictRoutingPolicy({"a": "premium"}).select(request_for(msg(tenant="z"))) is None
    with_default = DictRoutingPolicy({"a": "premium"}, default="standard")
    assert with_default.select(request_for(msg(tenant="z"))) == "standard"


def test_dict_policy_bare_payload_has_no_tenant_and_uses_default() -> None:
    policy = DictRoutingPolicy({"a": "premium"}, default="standard")
    assert policy.select(request_for("bare")) == "standard"


def test_dict_policy_explicit_none_entry_keeps_the_proposal() -> None:
    policy = DictRoutingPolicy({"a": None}, default="standard")
    assert policy.select(request_for(msg(tenant="a"))) is None


def test_dict_policy_key_getter_chooses_the_key() -> None:
    def topic(request: RoutingRequest) -> str | None:
        message = request.message
        return message.headers.topic if isinstance(message, Message) else None

    policy = DictRoutingPolicy({"billing": "batch"}, default="standard", key_getter=topic)
    billing = Message(payload=1, headers=Headers(tenant="a", topic="billing"))
    assert policy.select(request_for(billing)) == "batch"
    assert policy.select(request_for(msg(tenant="billing"))) == "standard"


def test_dict_policy_update_mapping_merges_and_set_default_replaces() -> None:
    policy = DictRoutingPolicy({"a": "premium", "b": "standard"})
    policy.update_mapping({"b": "batch", "c": "premium"})
    assert policy.mapping == {"a": "premium", "b": "batch", "c": "premium"}
    assert policy.select(request_for(msg(tenant="b"))) == "batch"
    assert policy.select(request_for(msg(tenant="z"))) is None
    policy.set_default("standard")
    assert policy.select(request_for(msg(tenant="z"))) == "standard"
    policy.set_default(None)
    assert policy.select(request_for(msg(tenant="z"))) is None


def test_dict_policy_mapping_is_a_copy() -> None:
    source = {"a": "premium"}
    policy = DictRoutingPolicy(source)
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
    policy = DictRoutingPolicy.from_json(text)
    assert policy.mapping == {"a": "premium", "b": ["x", "y"]}
    assert policy.select(request_for(msg(tenant="a"))) == "premium"
    assert policy.select(request_for(msg(tenant="z"))) == "standard"


def test_dict_policy_from_json_bare_object_has_no_default() -> None:
    policy = DictRoutingPolicy.from_json('{"a": "premium", "b": "batch"}')
    assert policy.mapping == {"a": "premium", "b": "batch"}
    assert policy.select(request_for(msg(tenant="z"))) is None


def test_dict_policy_from_json_passes_key_getter() -> None:
    policy = DictRoutingPolicy.from_json('{"urgent": "premium"}', key_getter=lambda r: "urgent")
    assert policy.select(request_for(msg(tenant="anyone"))) == "premium"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("[1, 2]", "must be an object"),
        ('"premium"', "must be an object"),
        ('{"mapping": ["a"]}', '"mapping" must be an object'),
        ('{"mapping": "a"}', '"mapping" must be an object'),
        ("{not json", "Expecting property name"),
    ],
    ids=["list", "string", "mapping-list", "mapping-string", "syntax"],
)
def test_dict_policy_from_json_rejects_invalid_shapes(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        DictRoutingPolicy.from_json(text)


def test_dict_policy_from_json_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"mapping": {"a": "premium"}, "default": "batch"}), "utf-8")
    policy = DictRoutingPolicy.from_json_file(path)
    assert policy.select(request_for(msg(tenant="a"))) == "premium"
    assert policy.select(request_for(msg(tenant="b"))) == "batch"
    by_str = DictRoutingPolicy.from_json_file(str(path), key_getter=lambda r: "a")
    assert by_str.select(request_for(msg(tenant="b"))) == "premium"


def test_dict_policy_from_json_file_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        DictRoutingPolicy.from_json_file(tmp_path / "missing.json")


def test_dict_policy_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PF_TEST_ROUTES", '{"a": "premium"}')
    policy = DictRoutingPolicy.from_env("PF_TEST_ROUTES")
    assert policy.select(request_for(msg(tenant="a"))) == "premium"
    keyed = DictRoutingPolicy.from_env("PF_TEST_ROUTES", key_getter=lambda r: "a")
    assert keyed.select(request_for(msg(tenant="b"))) == "premium"


def test_dict_policy_from_env_missing_variable_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PF_TEST_NO_SUCH_VAR", raising=False)
    with pytest.raises(KeyError, match="PF_TEST_NO_SUCH_VAR"):
        DictRoutingPolicy.from_env("PF_TEST_NO_SUCH_VAR")


def test_dict_policy_from_env_invalid_json_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PF_TEST_ROUTES", "[]")
    with pytest.raises(ValueError, match="must be an object"):
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
    first = DictRoutingPolicy.from_json_file(first_path)
    second = DictRoutingPolicy.from_json('{"tenant-a": "batch", "tenant-c": "premium"}')

    first_runs = [await route_tenants(first) for _ in range(4)]
    second_runs = [await route_tenants(second) for _ in range(4)]

    expected_first = {"tenant-a": "premium", "tenant-b": "batch"}
    expected_second = {"tenant-a": "batch", "tenant-c": "premium"}
    default = dict.fromkeys(TENANTS, "standard")
    assert first_runs == [default | expected_first] * 4
    assert second_runs == [default | expected_second] * 4


async def test_policy_update_takes_effect_for_the_next_message_of_a_running_flow() -> None:
    policy = DictRoutingPolicy({"acme": "premium"})
    flow = lanes_flow(policy)
    async with flow.running():
        assert await handled_by(flow, msg()) == ["premium"]
        policy.update_mapping({"acme": "batch"})
        assert await handled_by(flow, msg()) == ["batch"]
        policy.update_mapping({"acme": None})
        policy.set_default("premium")
        assert await handled_by(flow, msg()) == ["standard"]
