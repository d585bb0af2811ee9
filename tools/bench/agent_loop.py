"""Agent-loop overhead: ReactPlanner next to pydantic-ai, the OpenAI Agents SDK and a raw loop.

Run ``uv run --group bench python tools/bench/agent_loop.py`` (``--runs N`` per repetition,
``--reps N``, ``--as-published``, ``--original PY``). One agent four ways, in one process: a
zero-latency model asks for one ``add`` call, then answers (two model calls, one tool call per
run) — the scenario of ``shared/bench/agent_loop_overhead.py``:

* ``penguiflow``: ``ReactPlanner`` with a ``FunctionLLM`` and an async ``@tool``;
* ``penguiflow+hooks``: the same with an ``event_callback`` and an ``on_flow_event`` hook;
* ``pydantic_ai``: ``Agent`` + ``FunctionModel`` (async function, async ``tool_plain``);
* ``openai_agents``: ``Runner.run`` + a custom ``Model`` (async tool, tracing off);
* ``raw``: a hand-written loop — ``TypeAdapter.validate_json`` of the action, args validation, the
  tool call, the observation as JSON appended to the messages.

Model functions and tools are async for everyone: with sync ones pydantic-ai runs them in a thread
and the Agents SDK via ``asyncio.to_thread`` (what the published peer figures measured;
``--as-published`` reruns that). Every repetition measures each variant once, in a fresh event
loop, the order rotating; each measurement is 20 warm-up runs then ``--runs`` timed ones. The
table shows medians of ``--reps`` (µs per run and per step, a step being one model call) and the
ratios of medians, all from the same run, with the load average. Results also go as JSON to
``tools/bench/results/agent_loop.json``. ``--original PY`` runs
``shared/bench/agent_loop_overhead.py penguiflow`` with the interpreter ``PY`` (the original
package shadows the namespace, so it cannot share this process).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter

RESULTS = Path(__file__).parent / "results"
ORIGINAL_SCRIPT = (
    Path(__file__).resolve().parents[3] / "shared" / "bench" / "agent_loop_overhead.py"
)
STEPS = 2  # model calls per run
QUERY = "what is 1+2?"

Run = Callable[[], Awaitable[str]]
Maker = Callable[[bool], Run]


class AddArgs(BaseModel):
    """The tool's input."""

    a: int
    b: int


class AddOut(BaseModel):
    """The tool's output."""

    total: int


# ------------------------------------------------------------------------ penguiflow
def make_penguiflow(hooks: bool) -> Run:
    from penguiflow.core import tool
    from penguiflow.planner import PlannerFinish, ReactPlanner
    from penguiflow.testkit import FunctionLLM

    call = json.dumps({"thought": "add", "next_node": "add", "args": {"a": 1, "b": 2}})
    answer = json.dumps({"thought": "done", "next_node": "final_response", "args": {"answer": "3"}})

    async def model(messages: list[Any], info: Any) -> str:
        last = messages[-1]
        if last["role"] == "user" and last["content"].startswith('{"observation"'):
            return answer
        return call

    @tool(desc="Add two ints.")
    async def add(args: AddArgs, ctx: Any) -> AddOut:
        return AddOut(total=args.a + args.b)

    seen: list[int] = [0, 0]

    def on_event(event: Any) -> None:
        seen[0] += 1

    def on_flow_event(event: Any) -> None:
        seen[1] += 1

    llm = FunctionLLM(model)
    planner = ReactPlanner(
        llm,
        nodes=[add],
        event_callback=on_event if hooks else None,
        on_flow_event=on_flow_event if hooks else None,
    )

    async def run() -> str:
        llm.calls.clear()  # the double records every call; the planner keeps nothing
        result = await planner.run(QUERY)
        assert isinstance(result, PlannerFinish) and result.reason == "answer_complete", result
        return str(result.output)

    return run


def make_penguiflow_hooks(as_published: bool) -> Run:
    return make_penguiflow(True)


def make_penguiflow_plain(as_published: bool) -> Run:
    return make_penguiflow(False)


# ----------------------------------------------------------------------- pydantic-ai
def make_pydantic_ai(as_published: bool) -> Run:
    from pydantic_ai import Agent
    from pydantic_ai.messages import (
        ModelMessage,
        ModelResponse,
        TextPart,
        ToolCallPart,
        ToolReturnPart,
    )
    from pydantic_ai.models.function import AgentInfo, FunctionModel

    def respond(messages: list[ModelMessage]) -> ModelResponse:
        last = messages[-1]
        if any(isinstance(p, ToolReturnPart) for p in last.parts):
            return ModelResponse(parts=[TextPart("3")])
        return ModelResponse(parts=[ToolCallPart("add", {"a": 1, "b": 2})])

    if as_published:

        def sync_fn(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
            return respond(messages)

        agent: Any = Agent(FunctionModel(sync_fn))

        @agent.tool_plain
        def add(a: int, b: int) -> int:  # pyright: ignore[reportUnusedFunction]
            """Add two ints."""
            return a + b

    else:

        async def async_fn(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
            return respond(messages)

        agent = Agent(FunctionModel(async_fn))

        @agent.tool_plain
        async def add(a: int, b: int) -> int:  # pyright: ignore[reportUnusedFunction]
            """Add two ints."""
            return a + b

    async def run() -> str:
        result = await agent.run(QUERY)
        return str(result.output)

    return run


# --------------------------------------------------------------------- OpenAI Agents
def make_openai_agents(as_published: bool) -> Run:
    from agents import Agent, Runner, function_tool, set_tracing_disabled
    from agents.items import ModelResponse
    from agents.models.interface import Model
    from agents.usage import Usage
    from openai.types.responses import (
        ResponseFunctionToolCall,
        ResponseOutputMessage,
        ResponseOutputText,
    )

    set_tracing_disabled(True)

    class Fake(Model):
        async def get_response(self, system_instructions: Any, input: Any, *args: Any, **kw: Any):  # type: ignore[override]
            items: list[Any] = input if isinstance(input, list) else []
            if any(
                (i.get("type") if isinstance(i, dict) else getattr(i, "type", None))
                == "function_call_output"
                for i in items
            ):
                out: list[Any] = [
                    ResponseOutputMessage(
                        id="m1",
                        type="message",
                        role="assistant",
                        status="completed",
                        content=[ResponseOutputText(type="output_text", text="3", annotations=[])],
                    )
                ]
            else:
                out = [
                    ResponseFunctionToolCall(
                        id="c1",
                        call_id="call_1",
                        type="function_call",
                        name="add",
                        arguments='{"a": 1, "b": 2}',
                    )
                ]
            return ModelResponse(output=out, usage=Usage(), response_id=None)

        def stream_response(self, *args: Any, **kw: Any) -> Any:  # type: ignore[override]
            raise NotImplementedError

    if as_published:

        @function_tool
        def add(a: int, b: int) -> int:
            """Add two ints."""
            return a + b

    else:

        @function_tool
        async def add(a: int, b: int) -> int:
            """Add two ints."""
            return a + b

    agent = Agent(name="calc", instructions="calc", tools=[add], model=Fake())

    async def run() -> str:
        result = await Runner.run(agent, QUERY)
        return str(result.final_output)

    return run


# -------------------------------------------------------------------------- raw loop
class Action(BaseModel):
    """What the raw loop's model replies."""

    next_node: str
    args: dict[str, Any] = {}
    thought: str = ""


def make_raw(as_published: bool) -> Run:
    actions: TypeAdapter[Action] = TypeAdapter(Action)
    call = json.dumps({"thought": "add", "next_node": "add", "args": {"a": 1, "b": 2}})
    answer = json.dumps({"thought": "done", "next_node": "final_response", "args": {"answer": "3"}})

    async def model(messages: list[dict[str, str]]) -> str:
        last = messages[-1]
        if last["role"] == "user" and last["content"].startswith('{"observation"'):
            return answer
        return call

    async def add(args: AddArgs) -> AddOut:
        return AddOut(total=args.a + args.b)

    tools = {"add": (add, AddArgs)}

    async def run() -> str:
        messages = [{"role": "system", "content": "tools: add"}, {"role": "user", "content": QUERY}]
        for _ in range(8):
            text = await model(messages)
            action = actions.validate_json(text)
            if action.next_node == "final_response":
                return str(action.args["answer"])
            func, args_model = tools[action.next_node]
            out = await func(args_model.model_validate(action.args))
            messages.append({"role": "assistant", "content": text})
            messages.append(
                {
                    "role": "user",
                    "content": json.dumps({"observation": out.model_dump(mode="json")}),
                }
            )
        raise AssertionError("no answer")

    return run


MAKERS: dict[str, Maker] = {
    "penguiflow": make_penguiflow_plain,
    "penguiflow+hooks": make_penguiflow_hooks,
    "pydantic_ai": make_pydantic_ai,
    "openai_agents": make_openai_agents,
    "raw": make_raw,
}


# ----------------------------------------------------------------------- measurement
async def _measure(maker: Maker, runs: int, as_published: bool) -> float:
    run = maker(as_published)
    out = await run()
    assert out == "3", f"{maker.__name__} answered {out!r}"
    for _ in range(20):
        await run()
    gc.collect()
    start = time.perf_counter()
    for _ in range(runs):
        await run()
    return (time.perf_counter() - start) / runs * 1e6


def measure(maker: Maker, runs: int, as_published: bool) -> float:
    """µs per run of one variant, in a fresh event loop."""
    return asyncio.run(_measure(maker, runs, as_published))


def original(python: str, runs: int) -> float | None:
    """The original penguiflow's µs per run, from its own interpreter (None when it fails)."""
    proc = subprocess.run(
        [python, str(ORIGINAL_SCRIPT), "penguiflow", str(runs)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            import ast

            return float(ast.literal_eval(line)["agent_loop_1tool_us"])
    print(f"--original failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
    return None


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=300, help="timed runs per measurement")
    parser.add_argument("--reps", type=int, default=9, help="repetitions (median; >= 7)")
    parser.add_argument("--as-published", action="store_true", help="sync model fns and tools")
    parser.add_argument(
        "--original", metavar="PY", default=None, help="interpreter with the original"
    )
    parser.add_argument("--only", default=None, help="comma-separated variants")
    parser.add_argument("--json", type=Path, default=None, help="where to write the JSON results")
    args = parser.parse_args()
    logging.getLogger("penguiflow").setLevel(logging.ERROR)
    names = list(MAKERS) if args.only is None else args.only.split(",")
    for name in names:  # imports, allocator, first-call caches
        measure(MAKERS[name], 20, args.as_published)
    samples: dict[str, list[float]] = {name: [] for name in names}
    loads: list[float] = []
    for rep in range(args.reps):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for name in order:
            samples[name].append(measure(MAKERS[name], args.runs, args.as_published))
        loads.append(os.getloadavg()[0])
    if args.original:
        samples["original"] = [
            x for x in (original(args.original, args.runs) for _ in range(3)) if x is not None
        ]
    med = {name: statistics.median(xs) for name, xs in samples.items() if xs}
    mode = "sync model fns and tools (as published)" if args.as_published else "async everywhere"
    print(
        f"load average {statistics.median(loads):.2f} (min {min(loads):.2f}, max {max(loads):.2f});"
        f" {args.runs} runs per measurement, median of {args.reps}; {mode}; "
        f"CPython {platform.python_version()}"
    )
    print(f"{'variant':<18}{'µs/run':>10}{'µs/step':>10}{'min':>10}{'max':>10}")
    for name, value in med.items():
        xs = samples[name]
        print(f"{name:<18}{value:>10.0f}{value / STEPS:>10.0f}{min(xs):>10.0f}{max(xs):>10.0f}")
    ours = med.get("penguiflow")
    ratios: dict[str, float] = {}
    if ours is not None:
        for peer in ("openai_agents", "pydantic_ai", "raw", "original"):
            if peer in med:
                ratios[f"penguiflow/{peer}"] = ours / med[peer]
        if "penguiflow+hooks" in med:
            ratios["hooks/plain"] = med["penguiflow+hooks"] / ours
    targets = {
        "penguiflow/openai_agents": 0.07,
        "penguiflow/pydantic_ai": 0.05,
        "penguiflow/raw": 12.0,
        "hooks/plain": 1.5,
    }
    if args.as_published:  # the targets are for async model functions and tools
        targets = {}
    for name, value in ratios.items():
        target = targets.get(name)
        verdict = (
            ""
            if target is None
            else f"  (target <= {target}: {'pass' if value <= target else 'MISS'})"
        )
        print(f"{name:<28}{value:>8.3f}x{verdict}")
    if ours is not None and not args.as_published:
        per_run = "pass" if ours <= 200 else "MISS"
        per_step = "pass" if ours / STEPS <= 100 else "MISS"
        print(
            f"penguiflow µs/run {ours:.0f} (target <= 200: {per_run}), "
            f"µs/step {ours / STEPS:.0f} (target <= 100: {per_step})"
        )
    RESULTS.mkdir(exist_ok=True)
    path = args.json or RESULTS / (
        "agent_loop_published.json" if args.as_published else "agent_loop.json"
    )
    path.write_text(
        json.dumps(
            {
                "benchmark": "agent_loop",
                "mode": mode,
                "python": platform.python_version(),
                "versions": {
                    d: _version(d)
                    for d in ("penguiflow-planner", "pydantic-ai-slim", "openai-agents", "pydantic")
                },
                "runs": args.runs,
                "reps": args.reps,
                "load_average": loads,
                "steps_per_run": STEPS,
                "us_per_run": med,
                "samples": samples,
                "ratios": ratios,
            },
            indent=2,
        )
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
