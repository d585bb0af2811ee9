"""Policy routing: the same flow routes tenants differently under two JSON routing policies.

Run it with ``uv run python examples/routing_policy/main.py``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from penguiflow.core import (
    Context,
    DictRoutingPolicy,
    Headers,
    Message,
    Node,
    PenguiFlow,
    RoutingRequest,
    create,
    predicate_router,
)

HERE = Path(__file__).parent
TENANTS = ["tenant-a", "tenant-b", "tenant-c"]


def by_tenant(request: RoutingRequest) -> str:
    """Key the routing table on the tenant (the default key is the trace id)."""
    return request.message.headers.tenant


def lane(name: str) -> Node:
    async def serve(msg: Message, ctx: Context) -> Message:
        return msg.with_meta(lane=ctx.owner.name)

    return Node(serve, name=name)


def build_flow(policy: DictRoutingPolicy) -> PenguiFlow:
    """One topology; only the policy differs. Without a policy every message goes "standard"."""
    router = predicate_router("router", lambda msg: "standard", policy=policy)
    premium, standard, batch = lane("premium"), lane("standard"), lane("batch")
    return create(router.to(premium, standard, batch), premium.to(), standard.to(), batch.to())


async def route_all(policy: DictRoutingPolicy) -> dict[str, str]:
    flow = build_flow(policy)
    routes: dict[str, str] = {}
    async with flow.running():
        messages = [Message(payload="job", headers=Headers(tenant=t)) for t in TENANTS]
        for msg in messages:
            await flow.emit(msg)
        for msg in messages:
            result: Message = await flow.fetch(trace_id=msg.trace_id)
            routes[msg.headers.tenant] = result.meta["lane"]
    return routes


async def main() -> None:
    # {"mapping": {...}, "default": ...}: unknown tenants fall back to the default.
    normal = DictRoutingPolicy.from_json_file(HERE / "policy.json", key_getter=by_tenant)
    # A bare {tenant: lane} object: the default is given here (without one, a tenant that is
    # not in the table would be dropped).
    maintenance = DictRoutingPolicy.from_json_file(
        HERE / "policy_maintenance.json", default="standard", key_getter=by_tenant
    )

    for label, policy in [("policy.json", normal), ("policy_maintenance.json", maintenance)]:
        runs = [await route_all(policy) for _ in range(3)]
        assert all(run == runs[0] for run in runs), "routing must be deterministic"
        print(f"{label}: " + ", ".join(f"{t} -> {lane}" for t, lane in runs[0].items()))

    # Policies are live objects: a change takes effect for the next message. update_mapping
    # replaces the whole table.
    maintenance.update_mapping({"tenant-a": "premium", "tenant-b": "batch"})
    maintenance.set_default("batch")
    print("maintenance, updated:", await route_all(maintenance))
    print("routing_policy done")


if __name__ == "__main__":
    asyncio.run(main())
