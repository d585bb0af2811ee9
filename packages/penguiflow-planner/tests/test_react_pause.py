"""Pause and resume: interrupts (ids, approvals, several at once), single-use tenant-scoped tokens,
answers one by one, bad answers put back, durable records resumed by a second process."""

from __future__ import annotations

import json
import sys
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any, cast

import anyio
import pytest
from pydantic import BaseModel

from penguiflow.core import InMemoryDurableStore, NodePolicy, Scope, SQLiteDurableStore, tool
from penguiflow.planner import (
    Approval,
    InterruptAnswerError,
    LLMResult,
    PlannerBudget,
    PlannerEvent,
    PlannerEventType,
    PlannerFinish,
    PlannerPause,
    ReactPlanner,
    ResumeTokenInvalid,
    Usage,
)
from penguiflow.testkit import ScriptedLLM


class Ask(BaseModel):
    q: str


class Said(BaseModel):
    said: Any


class Num(BaseModel):
    x: int


class Out(BaseModel):
    y: int


class Gather(BaseModel):
    results: list[dict[str, Any]]


RUNS: Counter[str] = Counter()
"""Tool invocations that reached the tool's body, by ``name:arg``."""
JOINED: list[list[dict[str, Any]]] = []


@tool()
async def ask(args: Ask, ctx: Any) -> Said:
    RUNS[f"ask:{args.q}"] += 1
    return Said(said=await ctx.pause("await_input", {"question": args.q}))


@tool()
async def ask_twice(args: Ask, ctx: Any) -> Said:
    RUNS[f"ask_twice:{args.q}"] += 1
    first = await ctx.pause("await_input", {"n": 1})
    second = await ctx.pause("external_event", {"n": 2})
    return Said(said=[first, second])


@tool()
async def plain(args: Num, ctx: Any) -> Out:
    RUNS[f"plain:{args.x}"] += 1
    return Out(y=args.x + 100)


@tool(needs_approval=True)
async def wire(args: Num, ctx: Any) -> Out:
    RUNS[f"wire:{args.x}"] += 1
    return Out(y=args.x)


@tool()
async def gather(args: Gather, ctx: Any) -> Out:
    JOINED.append(args.results)
    return Out(y=len(args.results))


NODES = [ask, ask_twice, plain, wire, gather]


@pytest.fixture(autouse=True)
def _clear() -> None:
    RUNS.clear()
    JOINED.clear()


def _call(node: str, **args: Any) -> dict[str, Any]:
    return {"next_node": node, "args": args}


def _parallel(steps: list[dict[str, Any]], join: str | None = None) -> dict[str, Any]:
    args: dict[str, Any] = {"steps": steps}
    if join is not None:
        args["join"] = {"node": join}
    return {"next_node": "parallel", "args": args}


def _final(answer: str = "done") -> dict[str, Any]:
    return {"next_node": "final_response", "args": {"answer": answer}}


def _pause(result: object) -> PlannerPause:
    assert isinstance(result, PlannerPause), result
    return result


def _finish(result: object) -> PlannerFinish[Any]:
    assert isinstance(result, PlannerFinish), result
    return cast("PlannerFinish[Any]", result)


# ------------------------------------------------------------------------- a tool's pause


async def test_a_tool_pause_returns_a_planner_pause_and_its_answer_comes_back() -> None:
    events: list[PlannerEvent] = []
    llm = ScriptedLLM([_call("ask", q="name?"), _final()])
    planner = ReactPlanner(llm, nodes=NODES, event_callback=events.append)
    paused = _pause(await planner.run("q"))
    assert paused.reason == "await_input"
    assert paused.payload == {"question": "name?"}
    (interrupt,) = paused.interrupts
    assert interrupt.interrupt_id == f"{paused.run_id}:0:0:0"
    assert (interrupt.tool, dict(interrupt.args), interrupt.step, interrupt.branch) == (
        "ask",
        {"q": "name?"},
        0,
        0,
    )
    assert events[-1].event_type is PlannerEventType.PAUSE
    assert events[-1].extra["interrupts"] == [interrupt.interrupt_id]
    assert len(llm.calls) == 1

    events.clear()
    done = _finish(await planner.resume(paused.resume_token, "Ada"))
    assert done.run_id == paused.run_id and done.trace_id == paused.trace_id
    assert done.trajectory.steps[0].observation == {"said": "Ada"}
    assert RUNS["ask:name?"] == 2  # re-run with the same args; its pause returned the answer
    assert events[0].event_type is PlannerEventType.RESUME
    assert events[-1].event_type is PlannerEventType.FINISH
    assert planner.statistics().pauses_issued == 1 and planner.statistics().resumes == 1


async def test_the_nth_pause_gets_the_nth_answer() -> None:
    llm = ScriptedLLM([_call("ask_twice", q="a"), _final()])
    planner = ReactPlanner(llm, nodes=NODES)
    first = _pause(await planner.run("q"))
    assert [i.interrupt_id.rsplit(":", 1)[1] for i in first.interrupts] == ["0"]
    second = _pause(await planner.resume(first.resume_token, "one"))
    assert second.resume_token != first.resume_token
    assert second.reason == "external_event" and second.payload == {"n": 2}
    assert second.interrupts[0].interrupt_id == f"{first.run_id}:0:0:1"
    assert len(llm.calls) == 1  # no LLM call while the step has pending interrupts
    done = _finish(await planner.resume(second.resume_token, {"k": 2}))
    assert done.trajectory.steps[0].observation == {"said": ["one", {"k": 2}]}
    assert RUNS["ask_twice:a"] == 3


# ------------------------------------------------------------------------------ approval


async def test_needs_approval_pauses_before_the_tool_runs() -> None:
    llm = ScriptedLLM([_call("wire", x=7), _final()])
    planner = ReactPlanner(llm, nodes=NODES)
    paused = _pause(await planner.run("q"))
    assert paused.reason == "approval_required"
    assert paused.payload == {"tool": "wire", "args": {"x": 7}}
    assert paused.interrupts[0].interrupt_id == f"{paused.run_id}:0:0:0"
    assert RUNS["wire:7"] == 0 and paused.usage.hops == 0
    done = _finish(await planner.resume(paused.resume_token, Approval(approved=True)))
    assert RUNS["wire:7"] == 1
    assert done.trajectory.steps[0].observation == {"y": 7}
    assert done.usage.hops == 1


@pytest.mark.parametrize(
    ("answer", "reason"),
    [(Approval(approved=False, reason="too risky"), "too risky"), (False, None)],
)
async def test_a_rejected_approval_never_runs_the_tool(answer: Any, reason: str | None) -> None:
    llm = ScriptedLLM([_call("wire", x=1), _final()])
    planner = ReactPlanner(llm, nodes=NODES)
    paused = _pause(await planner.run("q"))
    done = _finish(await planner.resume(paused.resume_token, answer))
    assert RUNS["wire:1"] == 0
    assert done.trajectory.steps[0].observation == {"rejected": reason}
    assert json.loads(llm.calls[1].messages[-1]["content"]) == {"observation": {"rejected": reason}}


async def test_an_approval_answer_must_be_an_approval_or_a_bool() -> None:
    """A string like "no" is truthy: taking it as approval would run a rejected tool."""
    llm = ScriptedLLM([_call("wire", x=1), _final()])
    planner = ReactPlanner(llm, nodes=NODES)
    paused = _pause(await planner.run("q"))
    for bad in ("no", 0, None, {"approved": "no"}):
        with pytest.raises(InterruptAnswerError, match="Approval"):
            await planner.resume(paused.resume_token, bad)
    assert RUNS["wire:1"] == 0
    done = _finish(await planner.resume(paused.resume_token, {"approved": True}))
    assert RUNS["wire:1"] == 1 and done.reason == "answer_complete"


async def test_an_approved_tool_can_pause_again_and_gets_its_own_answers() -> None:
    @tool(needs_approval=True)
    async def careful(args: Ask, ctx: Any) -> Said:
        RUNS["careful"] += 1
        return Said(said=await ctx.pause("await_input", {"q": args.q}))

    llm = ScriptedLLM([_call("careful", q="x"), _final()])
    planner = ReactPlanner(llm, nodes=[careful])
    approval = _pause(await planner.run("q"))
    asked = _pause(await planner.resume(approval.resume_token, True))
    assert asked.interrupts[0].interrupt_id == f"{approval.run_id}:0:0:1"
    assert asked.reason == "await_input"
    done = _finish(await planner.resume(asked.resume_token, "fine"))
    assert done.trajectory.steps[0].observation == {"said": "fine"}
    assert RUNS["careful"] == 2


# ------------------------------------------------------------------- several at once


async def test_several_pauses_in_parallel_one_planner_pause_answered_one_by_one() -> None:
    """Regression (fix): the reference kept the first branch's pause only."""
    llm = ScriptedLLM(
        [
            _parallel(
                [
                    {"node": "ask", "args": {"q": "a"}},
                    {"node": "plain", "args": {"x": 1}},
                    {"node": "wire", "args": {"x": 2}},
                    {"node": "ask", "args": {"q": "b"}},
                ],
                join="gather",
            ),
            _final(),
        ]
    )
    planner = ReactPlanner(llm, nodes=NODES)
    first = _pause(await planner.run("q"))
    rid = first.run_id
    ids = [i.interrupt_id for i in first.interrupts]
    assert ids == [f"{rid}:0:0:0", f"{rid}:0:2:0", f"{rid}:0:3:0"]
    assert [i.reason for i in first.interrupts] == [
        "await_input",
        "approval_required",
        "await_input",
    ]
    assert first.payload == {"question": "a"}  # the first interrupt's
    assert RUNS == Counter({"ask:a": 1, "plain:1": 1, "ask:b": 1})  # the others ran first
    assert first.usage.hops == 1 and first.usage.tool_calls == 3

    # answer one: a new pause, a new token, the same ids for what is left
    second = _pause(await planner.resume(first.resume_token, answers={ids[0]: "A"}))
    assert second.resume_token != first.resume_token
    assert [i.interrupt_id for i in second.interrupts] == ids[1:]
    assert RUNS == Counter({"ask:a": 2, "plain:1": 1, "ask:b": 1})
    assert len(llm.calls) == 1

    # the used token is gone
    with pytest.raises(ResumeTokenInvalid):
        await planner.resume(first.resume_token, answers={ids[1]: True})

    third = _pause(await planner.resume(second.resume_token, answers={ids[1]: True}))
    assert [i.interrupt_id for i in third.interrupts] == [ids[2]]
    assert third.reason == "await_input" and third.payload == {"question": "b"}
    assert RUNS == Counter({"ask:a": 2, "plain:1": 1, "wire:2": 1, "ask:b": 1})
    assert len(llm.calls) == 1

    done = _finish(await planner.resume(third.resume_token, "B"))
    assert RUNS == Counter({"ask:a": 2, "plain:1": 1, "wire:2": 1, "ask:b": 2})
    assert JOINED == [[{"said": "A"}, {"y": 101}, {"y": 2}, {"said": "B"}]]
    assert done.trajectory.steps[0].observation == {"y": 4}
    assert done.usage.hops == 5  # four branches and the join
    assert len(llm.calls) == 2


async def test_answering_several_at_once() -> None:
    llm = ScriptedLLM(
        [
            _parallel([{"node": "ask", "args": {"q": "a"}}, {"node": "wire", "args": {"x": 3}}]),
            _final(),
        ]
    )
    planner = ReactPlanner(llm, nodes=NODES)
    paused = _pause(await planner.run("q"))
    a, w = (i.interrupt_id for i in paused.interrupts)
    done = _finish(await planner.resume(paused.resume_token, answers={a: 1, w: False}))
    assert done.trajectory.steps[0].observation == {
        "results": [{"said": 1}, {"rejected": None}],
        "failures": [],
    }


# --------------------------------------------------------------------------- bad answers


async def test_bad_answers_raise_and_put_the_record_back() -> None:
    llm = ScriptedLLM(
        [
            _parallel([{"node": "ask", "args": {"q": "a"}}, {"node": "ask", "args": {"q": "b"}}]),
            _final(),
        ]
    )
    planner = ReactPlanner(llm, nodes=NODES)
    paused = _pause(await planner.run("q"))
    token = paused.resume_token
    a, b = (i.interrupt_id for i in paused.interrupts)
    with pytest.raises(InterruptAnswerError, match="2 interrupts are pending"):
        await planner.resume(token, "x")
    with pytest.raises(InterruptAnswerError, match="unknown interrupt ids"):
        await planner.resume(token, answers={"nope:0:0:0": "x"})
    with pytest.raises(InterruptAnswerError, match="not both"):
        await planner.resume(token, "x", answers={a: "x"})
    with pytest.raises(InterruptAnswerError, match="JSON-serialisable"):
        await planner.resume(token, answers={a: object()})
    with pytest.raises(InterruptAnswerError, match="no answer"):
        await planner.resume(token, answers={})
    assert issubclass(InterruptAnswerError, ValueError)
    assert RUNS == Counter({"ask:a": 1, "ask:b": 1})  # nothing re-ran
    done = _finish(await planner.resume(token, answers={a: "A", b: "B"}))  # still valid
    assert done.reason == "answer_complete"


# -------------------------------------------------------------------------------- tokens


async def test_unknown_used_expired_and_foreign_tokens_are_invalid() -> None:
    clock = [1000.0]
    store = InMemoryDurableStore()
    llm = ScriptedLLM([_call("ask", q="a"), _final(), _call("ask", q="a")])
    planner = ReactPlanner(
        llm, nodes=NODES, store=store, pause_ttl_s=60, time_source=lambda: clock[0]
    )
    assert issubclass(ResumeTokenInvalid, KeyError)
    with pytest.raises(ResumeTokenInvalid):
        await planner.resume("no-such-token", "x")
    with pytest.raises(ResumeTokenInvalid):
        await planner.resume("a/b", "x")

    alice = {"tenant_id": "acme", "user_id": "alice", "session_id": "s1"}
    paused = _pause(await planner.run("q", memory_key=alice))
    assert paused.expires_at == 1060.0
    for other in (
        None,
        {"tenant_id": "evil", "user_id": "alice", "session_id": "s1"},
        {"tenant_id": "acme", "user_id": "alice", "session_id": "s2"},
        {"tenant_id": "acme", "user_id": "mallory", "session_id": "s1"},
    ):
        with pytest.raises(ResumeTokenInvalid):
            await planner.resume(paused.resume_token, "x", memory_key=other)
    done = _finish(await planner.resume(paused.resume_token, "x", memory_key=alice))
    assert done.trajectory.steps[0].observation == {"said": "x"}
    with pytest.raises(ResumeTokenInvalid):  # used
        await planner.resume(paused.resume_token, "x", memory_key=alice)

    # expired by the planner's clock (the store's own TTL has not run out)
    paused = _pause(await planner.run("q"))
    clock[0] += 61
    with pytest.raises(ResumeTokenInvalid):
        await planner.resume(paused.resume_token, "x")


async def test_pause_disabled_fails_the_tool_call() -> None:
    llm = ScriptedLLM([_call("ask", q="a"), _final()])
    planner = ReactPlanner(llm, nodes=NODES, pause_enabled=False)
    done = _finish(await planner.run("q"))
    step = done.trajectory.steps[0]
    assert step.observation is None
    assert step.error is not None and "pause_enabled=False" in step.error
    assert planner.statistics().pauses_issued == 0


# ---------------------------------------------------------------------- what a record holds


async def test_the_record_is_json_v1_and_never_holds_tool_context() -> None:
    store = InMemoryDurableStore()
    llm = ScriptedLLM([_call("plain", x=1), _call("ask", q="a"), _final()])
    planner = ReactPlanner(llm, nodes=NODES, store=store)
    paused = _pause(
        await planner.run(
            "the query",
            llm_context={"lang": "en"},
            tool_context={"api_key": "SECRET-123"},
            memory_key={"tenant_id": "acme", "session_id": "s1"},
        )
    )
    records = await store.scan("planner.pause", "acme/s1/", scope=Scope("acme"))
    assert [r.key for r in records] == [f"acme/s1/{paused.resume_token}"]
    raw = records[0].value
    assert b"SECRET-123" not in raw and b"api_key" not in raw
    data = json.loads(raw)
    assert data["v"] == 1
    assert data["run_id"] == paused.run_id and data["trace_id"] == paused.trace_id
    assert data["query"] == "the query" and data["llm_context"] == {"lang": "en"}
    assert data["interrupts"] == [paused.interrupts[0].interrupt_id]
    assert data["expires_at"] == paused.expires_at
    assert data["trajectory"]["steps"][0]["observation"] == {"y": 101}


async def test_usage_and_the_remaining_deadline_survive_a_pause() -> None:
    clock = [0.0]

    def priced(text: dict[str, Any]) -> LLMResult:
        return LLMResult(json.dumps(text), usage=Usage(10, 5), cost_usd=0.25)

    @tool()
    async def slow_ask(args: Ask, ctx: Any) -> Said:
        clock[0] += 30  # the tool takes 30 (fake) seconds before it pauses
        return Said(said=await ctx.pause("await_input", None))

    llm = ScriptedLLM(
        [priced(_call("plain", x=1)), priced(_call("slow_ask", q="a")), priced(_final())]
    )
    store = InMemoryDurableStore()
    planner = ReactPlanner(
        llm,
        nodes=[plain, slow_ask],
        store=store,
        budget=PlannerBudget(deadline_s=100, max_hops=10, max_cost_usd=5),
        time_source=lambda: clock[0],
    )
    paused = _pause(await planner.run("q"))
    assert paused.usage.hops == 1 and paused.usage.cost_usd == 0.5
    assert paused.usage.prompt_tokens == 20 and paused.usage.llm_calls == 2
    (record,) = await store.scan("planner.pause", "-/-/", scope=Scope("-"))
    assert json.loads(record.value)["budget"]["deadline_left_s"] == pytest.approx(70.0)

    clock[0] += 10_000  # time spent paused does not count
    done = _finish(await planner.resume(paused.resume_token, "x"))
    assert done.reason == "answer_complete"
    assert done.usage.hops == 2 and done.usage.cost_usd == 0.75
    assert done.usage.prompt_tokens == 30 and done.usage.llm_calls == 3
    assert done.usage.by_purpose == {"planner_action": 3}


async def test_a_pause_with_no_deadline_left_resumes_into_budget_exhausted() -> None:
    clock = [0.0]

    @tool()
    async def late_ask(args: Ask, ctx: Any) -> Said:
        clock[0] += 101  # past the deadline by the planner's clock
        return Said(said=await ctx.pause("await_input", None))

    llm = ScriptedLLM([_call("late_ask", q="a")])
    planner = ReactPlanner(
        llm, nodes=[late_ask], budget=PlannerBudget(deadline_s=100), time_source=lambda: clock[0]
    )
    paused = _pause(await planner.run("q"))
    done = _finish(await planner.resume(paused.resume_token, "x"))
    assert done.reason == "budget_exhausted" and done.exhausted == "deadline"
    assert len(llm.calls) == 1


# ------------------------------------------------------------------- a second process


_CATALOG = """
from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from penguiflow.core import tool
from penguiflow.planner import ToolContext

LOG = Path(__file__).with_name("calls.log")


class Num(BaseModel):
    x: int


class Out(BaseModel):
    y: int


@tool(needs_approval=True)
async def transfer(args: Num, ctx: ToolContext) -> Out:
    with LOG.open("a") as f:
        f.write(f"transfer:{args.x}:{ctx.tool_context.get('who')}\\n")
    return Out(y=args.x)


@tool()
async def lookup(args: Num, ctx: ToolContext) -> Out:
    with LOG.open("a") as f:
        f.write(f"lookup:{args.x}\\n")
    return Out(y=args.x * 10)


NODES = [transfer, lookup]
"""

_RESUMER = """
import json
import sys

import anyio

from catalog import NODES
from penguiflow.core import SQLiteDurableStore
from penguiflow.planner import Approval, PlannerFinish, ReactPlanner
from penguiflow.testkit import ScriptedLLM


async def main() -> None:
    db, token, answers = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    answers = {k: Approval(**v) if isinstance(v, dict) else v for k, v in answers.items()}
    llm = ScriptedLLM([{"next_node": "final_response", "args": {"answer": "moved"}}])
    async with SQLiteDurableStore.open(db) as store:
        planner = ReactPlanner(llm, nodes=NODES, store=store)
        result = await planner.resume(
            token,
            answers=answers,
            memory_key={"tenant_id": "acme", "session_id": "s1"},
            tool_context={"who": "child"},
        )
    assert isinstance(result, PlannerFinish)
    print(json.dumps({
        "reason": result.reason,
        "output": result.output,
        "run_id": result.run_id,
        "observation": result.trajectory.steps[0].observation,
        "hops": result.usage.hops,
        "llm_calls": result.usage.llm_calls,
        "messages": [m["content"] for m in llm.calls[0].messages],
    }))


anyio.run(main)
"""


async def test_a_second_process_resumes_a_sqlite_pause_record(tmp_path: Path) -> None:
    (tmp_path / "catalog.py").write_text(textwrap.dedent(_CATALOG))
    (tmp_path / "resume.py").write_text(textwrap.dedent(_RESUMER))
    sys.path.insert(0, str(tmp_path))
    try:
        import catalog  # pyright: ignore[reportMissingImports]
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("catalog", None)
    nodes = cast(list[Any], catalog.NODES)  # pyright: ignore[reportUnknownMemberType]
    db = tmp_path / "pauses.db"
    llm = ScriptedLLM(
        [
            _parallel(
                [
                    {"node": "transfer", "args": {"x": 5}},
                    {"node": "lookup", "args": {"x": 1}},
                    {"node": "transfer", "args": {"x": 6}},
                ]
            )
        ]
    )
    key = {"tenant_id": "acme", "session_id": "s1"}
    async with SQLiteDurableStore.open(db) as store:
        planner = ReactPlanner(llm, nodes=nodes, store=store)
        paused = _pause(
            await planner.run("move money", memory_key=key, tool_context={"who": "parent"})
        )
    assert (tmp_path / "calls.log").read_text() == "lookup:1\n"
    first, second = (i.interrupt_id for i in paused.interrupts)
    answers = {first: {"approved": True}, second: {"approved": False, "reason": "limit"}}

    proc = await anyio.run_process(
        [
            sys.executable,
            str(tmp_path / "resume.py"),
            str(db),
            paused.resume_token,
            json.dumps(answers),
        ],
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    out = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    assert out["reason"] == "answer_complete" and out["output"] == "moved"
    assert out["run_id"] == paused.run_id
    assert out["observation"] == {
        "results": [{"y": 5}, {"y": 10}, {"rejected": "limit"}],
        "failures": [],
    }
    assert out["hops"] == 2 and out["llm_calls"] == 2
    assert any("move money" in m for m in out["messages"])
    # the completed branch never re-ran; the rejected one never ran; tool_context passed again
    assert (tmp_path / "calls.log").read_text() == "lookup:1\ntransfer:5:child\n"

    # single use across processes too
    async with SQLiteDurableStore.open(db) as store:
        planner = ReactPlanner(ScriptedLLM([]), nodes=nodes, store=store)
        with pytest.raises(ResumeTokenInvalid):
            await planner.resume(paused.resume_token, answers={first: True}, memory_key=key)


async def test_retry_policies_never_catch_a_pause() -> None:
    tries: list[int] = []

    @tool(policy=NodePolicy(max_retries=3, backoff_base=0.0, timeout_s=5))
    async def stubborn(args: Ask, ctx: Any) -> Said:
        tries.append(1)
        try:
            answer = await ctx.pause("await_input", None)
        except Exception:  # a tool's own broad handler does not swallow it either
            raise AssertionError("PauseRequested was caught as an Exception") from None
        return Said(said=answer)

    llm = ScriptedLLM([_call("stubborn", q="a"), _final()])
    planner = ReactPlanner(llm, nodes=[stubborn])
    paused = _pause(await planner.run("q"))
    assert tries == [1]
    done = _finish(await planner.resume(paused.resume_token, "x"))
    assert done.trajectory.steps[0].observation == {"said": "x"}
    assert tries == [1, 1]


async def test_a_tool_gone_from_the_catalog_at_resume_is_an_error_observation() -> None:
    store = InMemoryDurableStore()
    llm = ScriptedLLM(
        [_parallel([{"node": "ask", "args": {"q": "a"}}, {"node": "plain", "args": {"x": 1}}])]
    )
    paused = _pause(await ReactPlanner(llm, nodes=NODES, store=store).run("q"))
    later = ReactPlanner(ScriptedLLM([_final()]), nodes=[plain], store=store)
    done = _finish(await later.resume(paused.resume_token, "x"))
    assert done.reason == "answer_complete"
    observation = done.trajectory.steps[0].observation
    assert observation["results"] == [{"y": 101}]
    assert observation["failures"][0]["node"] == "ask"
    assert "not in the catalog" in observation["failures"][0]["error"]
    assert RUNS == Counter({"ask:a": 1, "plain:1": 1})


async def test_concurrent_resumes_of_one_token_run_it_once() -> None:
    llm = ScriptedLLM([_call("ask", q="a"), _final()])
    planner = ReactPlanner(llm, nodes=NODES)
    paused = _pause(await planner.run("q"))
    outcomes: list[str] = []

    async def attempt() -> None:
        try:
            await planner.resume(paused.resume_token, "x")
            outcomes.append("ran")
        except ResumeTokenInvalid:
            outcomes.append("invalid")

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(attempt)
    assert sorted(outcomes) == ["invalid"] * 4 + ["ran"]
    assert RUNS["ask:a"] == 2


async def test_a_record_of_another_version_is_refused() -> None:
    store = InMemoryDurableStore()
    planner = ReactPlanner(ScriptedLLM([_call("ask", q="a")]), nodes=NODES, store=store)
    paused = _pause(await planner.run("q"))
    key = f"-/-/{paused.resume_token}"
    record = await store.get("planner.pause", key, scope=Scope("-"))
    assert record is not None
    data = json.loads(record.value)
    data["v"] = 2
    await store.put("planner.pause", key, json.dumps(data).encode(), scope=Scope("-"))
    with pytest.raises(ResumeTokenInvalid, match="version"):
        await planner.resume(paused.resume_token, "x")


async def test_an_unknown_pause_reason_fails_the_tool_call() -> None:
    @tool()
    async def odd(args: Ask, ctx: Any) -> Said:
        return Said(said=await ctx.pause("whenever", None))

    llm = ScriptedLLM([_call("odd", q="a"), _final()])
    done = _finish(await ReactPlanner(llm, nodes=[odd]).run("q"))
    error = done.trajectory.steps[0].error
    assert error is not None and "whenever" in error


async def test_an_outer_deadline_caps_a_resumed_run() -> None:
    clock = [0.0]
    llm = ScriptedLLM([_call("ask", q="a")])
    planner = ReactPlanner(llm, nodes=NODES, time_source=lambda: clock[0])
    paused = _pause(await planner.run("q"))
    done = _finish(await planner.resume(paused.resume_token, "x", _deadline_at=-1.0))
    assert done.reason == "budget_exhausted" and done.exhausted == "deadline"
    assert RUNS["ask:a"] == 1


async def test_a_join_pauses_like_a_branch() -> None:
    @tool(needs_approval=True)
    async def publish(args: Gather, ctx: Any) -> Out:
        RUNS["publish"] += 1
        return Out(y=len(args.results))

    llm = ScriptedLLM(
        [
            _parallel(
                [{"node": "ask", "args": {"q": "a"}}, {"node": "plain", "args": {"x": 1}}],
                join="publish",
            ),
            _final(),
        ]
    )
    store = InMemoryDurableStore()
    planner = ReactPlanner(llm, nodes=[*NODES, publish], store=store)
    first = _pause(await planner.run("q"))
    assert [i.interrupt_id for i in first.interrupts] == [f"{first.run_id}:0:0:0"]

    # the branches are complete now: the join asks for approval, with its injected args
    second = _pause(await planner.resume(first.resume_token, "A"))
    (join,) = second.interrupts
    assert join.interrupt_id == f"{first.run_id}:0:2:0"
    assert join.reason == "approval_required" and join.tool == "publish"
    assert join.payload == {"tool": "publish", "args": {"results": [{"said": "A"}, {"y": 101}]}}
    assert RUNS == Counter({"ask:a": 2, "plain:1": 1})
    assert len(llm.calls) == 1

    # resumed by another instance on the same store: the join runs, nothing else re-runs
    other = ReactPlanner(llm, nodes=[*NODES, publish], store=store)
    done = _finish(await other.resume(second.resume_token, Approval(approved=True)))
    assert RUNS == Counter({"ask:a": 2, "plain:1": 1, "publish": 1})
    assert done.trajectory.steps[0].observation == {"y": 2}
    assert done.usage.hops == 3


async def test_a_rejected_join_is_the_step_observation() -> None:
    @tool(needs_approval=True)
    async def publish(args: Gather, ctx: Any) -> Out:
        RUNS["publish"] += 1
        return Out(y=0)

    llm = ScriptedLLM([_parallel([{"node": "plain", "args": {"x": 1}}], join="publish"), _final()])
    planner = ReactPlanner(llm, nodes=[plain, publish])
    paused = _pause(await planner.run("q"))
    done = _finish(await planner.resume(paused.resume_token, Approval(False, "no")))
    assert RUNS == Counter({"plain:1": 1})
    assert done.trajectory.steps[0].observation == {"rejected": "no"}
