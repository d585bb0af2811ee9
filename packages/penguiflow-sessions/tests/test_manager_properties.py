"""Property tests: the manager's accounting against a model; a reconnecting peer misses nothing."""

import math
from typing import Literal

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from penguiflow.sessions import (
    SessionLimitExceeded,
    SessionManager,
    StateUpdate,
    SteeringEvent,
    StreamingSession,
    TaskRuntime,
    UpdateType,
)

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
IDS = ["a", "b", "c", "d"]

Op = (
    tuple[Literal["get"], str]
    | tuple[Literal["drop"], str]
    | tuple[Literal["tick"], int]
    | tuple[Literal["sweep"]]
)

ops = st.lists(
    st.one_of(
        st.tuples(st.just("get"), st.sampled_from(IDS)),
        st.tuples(st.just("drop"), st.sampled_from(IDS)),
        st.tuples(st.just("tick"), st.integers(0, 40)),
        st.tuples(st.just("sweep")),
    ),
    max_size=40,
)


@SETTINGS
@given(script=ops, max_sessions=st.one_of(st.none(), st.integers(1, 3)))
def test_manager_statistics_follow_a_model_of_lru_and_idle_eviction(
    script: list[Op], max_sessions: int | None
) -> None:
    now = [0.0]
    # the model: open session id -> last use; counters
    model: dict[str, float] = {}
    created = evicted = 0

    async def run() -> None:
        nonlocal created, evicted
        manager = SessionManager(
            idle_timeout_s=30,
            sweep_interval_s=None,
            max_sessions=max_sessions,
            clock=lambda: now[0],
        )
        async with manager:
            for op in script:
                if op[0] == "get":
                    sid = op[1]
                    if sid not in model and max_sessions is not None and len(model) >= max_sessions:
                        victim = min(model, key=lambda k: model[k])
                        del model[victim]
                        evicted += 1
                    if sid not in model:
                        created += 1
                    model[sid] = now[0]
                    session = await manager.get_or_create(sid)
                    assert session.session_id == sid
                elif op[0] == "drop":
                    assert await manager.drop(op[1]) == (op[1] in model)
                    model.pop(op[1], None)
                elif op[0] == "tick":
                    now[0] += op[1]
                else:
                    gone = await manager.evict_idle()
                    expected = sorted(k for k, t in model.items() if now[0] - t >= 30)
                    assert sorted(gone) == expected
                    for k in expected:
                        del model[k]
                    evicted += len(expected)
                stats = manager.statistics()
                assert (stats.sessions, stats.created, stats.evicted) == (
                    len(model),
                    created,
                    evicted,
                )
                assert {s for s in IDS if manager.get(s) is not None} == set(model)
                for sid in model:  # a lookup is activity: keep the model in step
                    model[sid] = now[0]

    anyio.run(run)


@SETTINGS
@given(emits=st.integers(0, 30), cuts=st.lists(st.integers(0, 40), max_size=4))
def test_a_peer_reconnecting_from_its_last_id_gets_every_update_exactly_once(
    emits: int, cuts: list[int]
) -> None:
    class Peer:
        def __init__(self, stop_after: int) -> None:
            self.got: list[StateUpdate] = []
            self.stop_after = stop_after
            self.full = anyio.Event()
            self._send, self._receive = anyio.create_memory_object_stream[SteeringEvent | None](
                math.inf
            )

        async def send(self, update: StateUpdate) -> None:
            self.got.append(update)
            if len(self.got) >= self.stop_after:
                self.full.set()

        async def receive(self) -> SteeringEvent | None:
            return await self._receive.receive()

        async def aclose(self) -> None:
            self._send.close()
            self._receive.close()

    async def emit(runtime: TaskRuntime) -> None:
        for i in range(emits):
            runtime.emit_update(UpdateType.PROGRESS, {"i": i})

    async def run() -> None:
        async with StreamingSession("s1") as session:
            with anyio.fail_after(10):
                await session.run_task(emit)
            total = session.statistics().updates_published
            seen: list[int] = []
            cursor: str | None = "0"
            for cut in [*cuts, total]:
                left = total - len(seen)
                peer = Peer(stop_after=max(1, min(cut, left)))
                async with session.connect(peer, since_id=cursor):
                    with anyio.move_on_after(10 if left else 0.01):  # none left: stays empty
                        await peer.full.wait()
                seen.extend(u.seq for u in peer.got)
                cursor = peer.got[-1].update_id if peer.got else cursor
            assert seen == list(range(1, total + 1))

    anyio.run(run)


async def test_max_sessions_with_only_busy_sessions_refuses_without_evicting() -> None:
    release = anyio.Event()

    async def busy(runtime: TaskRuntime) -> None:
        await release.wait()

    async with SessionManager(max_sessions=2, sweep_interval_s=None) as manager:
        for sid in ("a", "b"):
            await (await manager.get_or_create(sid)).spawn_task(busy)
        for _ in range(3):
            try:
                await manager.get_or_create("c")
            except SessionLimitExceeded:
                pass
        assert manager.statistics().evicted == 0
        assert manager.get("a") is not None and manager.get("b") is not None
        release.set()
