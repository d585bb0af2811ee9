"""flow.call_node: µs per call, next to awaiting the bare node function in the same run.

Run ``uv run python tools/bench/call_node.py`` (``--calls N``, ``--reps N``). Each repetition
awaits a trivial ``async def`` ``--calls`` times directly (the baseline) and through
``flow.call_node`` in four settings, in a fresh event loop each, alternating which goes first:
plain (no trace, no listener), with a ``trace_id`` (the trace is opened, its cancel scope
registered, then released), with a retrying policy whose first attempt succeeds, and with one sync
event hook (two events built per call). Figures are medians of ``--reps``; the ratio is
call_node / bare. The load average is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import time
from collections.abc import Awaitable, Callable

from penguiflow.core import Context, FlowEvent, Node, NodePolicy, PenguiFlow, create


async def body(x: int, ctx: Context) -> int:
    """The cheapest node body: return the input."""
    return x


async def sink(message: object, ctx: Context) -> object:
    """The flow's own graph (call_node does not use it)."""
    return message


Loop = Callable[[int], Awaitable[float]]


def bare() -> Loop:
    async def loop(calls: int) -> float:
        ctx = Context(Node(body))
        start = time.perf_counter()
        for i in range(calls):
            await body(i, ctx)
        return (time.perf_counter() - start) / calls * 1e6

    return loop


def invoked(*, traced: bool = False, retries: int = 0, hooked: bool = False) -> Loop:
    async def loop(calls: int) -> float:
        seen: list[FlowEvent] = []
        flow: PenguiFlow = create(Node(sink).to(), on_event=seen.append if hooked else None)
        node = Node(body, policy=NodePolicy(max_retries=retries))
        call = flow.call_node
        start = time.perf_counter()
        if traced:
            for i in range(calls):
                await call(node, i, trace_id="bench")
        else:
            for i in range(calls):
                await call(node, i)
        elapsed = time.perf_counter() - start
        assert not hooked or len(seen) == 2 * calls
        return elapsed / calls * 1e6

    return loop


VARIANTS: dict[str, Loop] = {
    "plain": invoked(),
    "trace_id": invoked(traced=True),
    "max_retries=3": invoked(retries=3),
    "one sync hook": invoked(hooked=True),
}


def run(loop: Loop, calls: int) -> float:
    gc.collect()
    return asyncio.run(loop(calls))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20_000, help="calls per repetition")
    parser.add_argument("--reps", type=int, default=7, help="repetitions per figure (median)")
    args = parser.parse_args()
    calls, reps = args.calls, args.reps
    base_loop = bare()
    run(base_loop, 1000)  # warm-up: imports, allocator, first-call caches
    for loop in VARIANTS.values():
        run(loop, 1000)
    print(f"load average {os.getloadavg()[0]:.2f}; {calls} calls per repetition, median of {reps}")
    print(f"{'flow.call_node':<16}{'call_node':>12}{'bare await':>13}{'ratio':>9}{'overhead':>11}")
    for name, loop in VARIANTS.items():
        pf: list[float] = []
        base: list[float] = []
        for rep in range(reps):
            if rep % 2 == 0:
                pf.append(run(loop, calls))
                base.append(run(base_loop, calls))
            else:
                base.append(run(base_loop, calls))
                pf.append(run(loop, calls))
        pf_med, base_med = statistics.median(pf), statistics.median(base)
        print(
            f"{name:<16}{pf_med:>10.2f}µs{base_med:>11.3f}µs{pf_med / base_med:>8.1f}x"
            f"{pf_med - base_med:>9.2f}µs"
        )


if __name__ == "__main__":
    main()
