"""Smoke test: every ``examples/*/main.py`` runs to completion and prints what it promises."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
TIMEOUT_S = 60

# Substrings each example must print. A new example must add an entry here.
EXPECTED: dict[str, tuple[str, ...]] = {
    "quickstart": ("You asked: 'What is a floe?' -- PenguiFlow", "live_traces=0"),
    "routing_predicate": (
        "trace-audit: archive kept 'audit: login root' | logs handled 'audit: login root'",
        "trace-noise: dropped by the predicate",
        "valid successors: ['archive', 'logs', 'metrics']",
        "routing_predicate done: 0 live traces left",
    ),
    "routing_union": (
        "routed: 2.0 + 40.0 = 42.0",
        "rejected: [VALIDATION_ERROR] at node 'dispatch'",
        "routing_union done",
    ),
    "routing_policy": (
        "policy.json: tenant-a -> premium, tenant-b -> standard, tenant-c -> standard",
        "policy_maintenance.json: tenant-a -> standard, tenant-b -> batch, tenant-c -> standard",
        "routing_policy done",
    ),
    "fanout_join": (
        "q1: fast(q1) + medium(q1) + slow(q1)",
        "'last_branch': 'slow'",
        "fanout_join done: live_traces=0 queued=0",
    ),
    "map_concurrent": (
        "peak in flight = 3 (limit 3)",
        "in a node: ['doc-5', 'doc-4', 'doc-3', 'doc-2', 'doc-1']",
        "map_concurrent done",
    ),
    "controller_multihop": (
        "FinalAnswer: emperor penguins breed in winter",
        "BudgetExhausted: code=HOP_BUDGET_EXHAUSTED",
        "controller_multihop done",
    ),
    "playbook_retrieval": (
        "calls playbooks ('retrieval',)",
        "'ranked_by': 'key'",
        "playbook_retrieval done",
    ),
    "trace_cancel": (
        "trace-b: TraceCancelled",
        "trace-a: job trace-a finished 4 steps",
        "cancelled during step 2",
        "trace_cancel done",
    ),
    "traceable_errors": (
        "flaky: ok after 3 attempt(s)",
        "[NODE_EXCEPTION]",
        "[NODE_TIMEOUT]",
        "node_name=call_api",
        "traceable_errors done",
    ),
    "metadata_propagation": (
        "emitted meta (unchanged): {'user': 'ada'}",
        "final meta: cost = 42",
        "final meta: stage = 'subflow total'",
        "metadata_propagation done",
    ),
    # Examples of later issues (their authors own the markers; keep them minimal here).
    "metrics_prometheus": (
        'penguiflow_node_latency_seconds_count{node="summarize"} 11.0',
        'penguiflow_node_failures_total{code="NODE_EXCEPTION",node="summarize"} 1.0',
        "penguiflow_traces_cancelled_total 1.0",
        "metrics_prometheus done",
    ),
    "state_history": (
        "history of trace 'refund' (10 events):",
        "node_failed   act     attempt 1, code NODE_EXCEPTION",
        '"event": "node_failed"',
        "state_history done",
    ),
    "streaming_llm": (
        "SSE:       Echo: why do penguins huddle",
        "WebSocket: Echo: how cold is the antarctic winter",
        "tasks left: 0",
        "streamed via SSE and WebSocket",
    ),
    "tracing_otel": (
        "OTel trace id = the PenguiFlow trace id",
        "status=ERROR events=exception,penguiflow.retry,exception",
        "tracing_otel done: 8 spans, 0 left open",
    ),
    "react_replay": (
        "recorded: answer_complete: 'It is 9.5 degrees Fahrenheit in Ushuaia.' "
        "(3 LLM calls, 2 tool calls,",
        "replayed: answer_complete: 'It is 9.5 degrees Fahrenheit in Ushuaia.'",
        "outputs match: True",
        "tool calls during the replay: 0",
        "react_replay done",
    ),
    "visualizer": ("flowchart LR", "-.->|calls|", "wrote flow.md and flow.dot"),
    "durable_sqlite": (
        "T-1 finished: re T-1: routed to billing (priority 1)",
        "B per step (the fields that changed)",
        "replay of T-1 (4 steps):",
        "  #4 reply      category='billing' priority=1",
        "T-2 stopped while reply waits; runs in the first flow: "
        "{'classify': 1, 'prioritise': 1, 'reply': 1}",
        "T-2 resumed in a new flow: re T-2: routed to billing (priority 1)",
        "runs during the resume: {'classify': 0, 'prioritise': 0, 'reply': 1}",
        "erase('acme') removed 2 streams and records",
        "replay after erase: 0 steps",
        "durable_sqlite done",
    ),
    "idempotent_effects": (
        "charges after the stop: 2",
        "result: order-7 shipped, paid with rcpt-",
        "result: order-8 shipped, paid with rcpt-",
        "charge step of order-7, run 2: receipt rcpt-",
        "charge step of order-8, run 2: receipt rcpt-",
        "gateway charges: 2 ",
        "each order charged exactly once: True",
        "idempotent_effects done",
    ),
    "react_memory": (
        "acme run 2: you said 'acme question 2'; I remember 2 recent turns",
        "globex run: you said 'globex question'; I remember 0 recent turns",
        "acme memory: 2 recent turns, summary='earlier:",
        "globex memory: 1 recent turns, no acme turn: True",
        "react_memory done",
    ),
    "react_minimal": (
        "tools the model sees: ['get_weather']",
        "answer: McMurdo: -18.5 °C under a clear sky.",
        "step 0: get_weather -> {'city': 'McMurdo', 'celsius': -18.5, 'sky': 'clear'}",
        "usage: 2 LLM calls, 1 tool call",
        "react_minimal done",
    ),
    "react_parallel_join": (
        "branch colony_size(Cape Adare): ok=True -> {'name': 'Cape Adare', 'pairs': 338000}",
        "join total -> {'colonies': 3, 'pairs': 630000, 'largest': 'Cape Adare'}",
        "peak branches at once = 2 (max_parallel=2)",
        "tool calls finished: 4 (4 hops)",
        "react_parallel_join done",
    ),
    "react_pause_resume": (
        "paused: 2 interrupts (approval_required)",
        "0:1:0: {'tool': 'refund', 'args': {'order': 'B-2', 'amount': 900.0}}",
        "approved A-1; still paused: 1 interrupt left, same id: True, new token: True",
        "the first token is used up: ResumeTokenInvalid",
        "[process 2] another tenant cannot use the token: ResumeTokenInvalid",
        "[process 2] resumed from pauses.db: answer_complete",
        "[process 2]   A-1: {'order': 'A-1', 'refunded': 40.0}",
        "[process 2]   B-2: {'rejected': 'over the limit'}",
        "react_pause_resume done",
    ),
    "react_structured_output": (
        "the planner_action schema asks for the Report fields: "
        "['height_cm', 'species', 'status', 'summary']",
        "repairs: 1 (missing summary)",
        "output type: Report",
        "report: species='emperor' height_cm=115 status='near threatened'",
        "react_structured_output done",
    ),
    "react_steering": (
        "model, call 1: goal='What do emperor penguins eat?'",
        'model, call 1: injected=[\'{"inject_context": '
        """{"note": "prefer peer-reviewed sources"}}']""",
        "steering applied: ['inject_context', 'redirect']",
        "cancel: reason=cancelled error='cancelled by steering'",
        "cancel: the tool in flight was cancelled: True",
        "react_steering done",
    ),
    "react_in_flow": (
        "content-type: text/event-stream",
        "the colony rotates so each bird takes turns outside.",
        'result event: {"reason": "answer_complete", "tool_calls": 1}',
        "streamed answer == the planner's answer: True",
        "the flow's listener saw the tool call with the request's trace id: "
        "['node_start', 'node_success']",
        "tasks left: 0",
        "react_in_flow done",
    ),
    "tools_mcp_planner": (
        "spec colony.colony_size side_effects=read",
        "spec colony.log_sighting side_effects=write",
        "step 0: colony.colony_size -> {'result': {'result': 338231}, 'artifacts': []}",
        "'note': ''",
        "answer: Cape Adare has 338231 breeding pairs.",
        "calls=2 failures=0",
        "tools_mcp_planner done",
    ),
    "mcp_serve_catalog": (
        "stdio specs: ['local.add(read)', 'local.temperature(read)']",
        "stdio local.add -> {'total': 42}",
        "stdio error -> ToolClientError LookupError: unknown station 'Vostok'",
        "sdk client sees: ['add', 'temperature']",
        "sdk client temperature -> {'station': 'McMurdo', 'celsius': -18.5}",
        "sdk client bad args -> is_error True",
        "http web.temperature -> {'station': 'McMurdo', 'celsius': -18.5}",
        "mcp_serve_catalog done",
    ),
    "react_openai": (
        "endpoint: ProviderServer at http://127.0.0.1:",
        "answer: 17 multiplied by 23 is 391.",
        "streamed deltas: 4, joined == answer: True",
        "steps: ['multiply', 'final_response']",
        "usage: 2 LLM calls, 890 prompt + 45 completion tokens, estimated=False, "
        "cost_usd=0.0001605",
        "request 1: model=gpt-4o-mini stream=True response_format=planner_action",
        'observation sent back: {"observation": {"product": 391}}',
        "react_openai done",
    ),
    "tools_mcp_stdio": (
        "spec colony.census side_effects=read",
        "spec colony.fail side_effects=external",
        "census -> {'colony': 'Cape Adare', 'region': 'Ross Sea', 'species': 'adelie', "
        "'pairs': 338231}",
        "artifact: application/pdf, 4215 bytes, in place of the base64: True",
        "artifact bytes start with: b'%PDF-1.4'",
        "another user's scope gets: None",
        "bad arguments (nothing sent): ['place', 'colony'] Field required",
        "tool error: ToolClientError Error executing tool fail: ice too thin",
        "calls=3 failures=1 breaker=closed",
        "tools_mcp_stdio done",
    ),
    "tools_utcp_http": (
        "spec colonies.get_colony side_effects=external",
        "spec colonies.log_sighting side_effects=external",
        "get after a 503 -> {'colony': 'cape-crozier', 'pairs': 272340} (retries=1)",
        "post -> {'logged': 12} hits: {'get_colony': 3, 'log_sighting': 1}",
        "the config hides the token: True",
        "whoami -> {'user': 'ranger-7'}",
        "tools_utcp_http done",
    ),
    "tools_oauth_consent": (
        "paused: external_event, kind=oauth_consent, at Ranger Service",
        "requests sent to the API before consent: 0",
        "callback: token stored for ada (acme) at rangers",
        "replaying the callback: 400 OAuth state is unknown, already used or expired",
        "resumed: answer_complete -> Ada logged 3 sightings.",
        "the API saw: ['Bearer at-ada-1']",
        "tools_oauth_consent done",
    ),
    "a2a_serve_flow": (
        "  chunk 3: winter",
        "cancelled: the served node saw the cancellation: True",
        "a2a-sdk client: TASK_STATE_COMPLETED words=2",
        "tool specs: ['narrator.narrate(external)']",
        "a2a_serve_flow done",
    ),
    "redis_workers": (
        "3 workers ready: ['w0', 'w1', 'w2']",
        "emitted 20 orders",
        "worker w0 killed while holding 3 orders in ship",
        "20 of 20 orders completed",
        "w0's orders finished by the others: True",
        "charged once per order: True",
        "each result fetched once: True",
        "redis_workers done",
    ),
    "sessions_web": (
        "server up on a free port",
        "page: 200, has EventSource: True",
        "POST /tasks -> 201",
        "ws pause -> APPLIED",
        "ws resume -> APPLIED",
        "statuses: ['PENDING', 'RUNNING', 'PAUSED', 'RUNNING', 'COMPLETE']",
        "contiguous: True",
        "task: COMPLETE result={'done': True, 'from': 3}",
        "sessions_web done",
    ),
    "sessions_steering": (
        "pause -> APPLIED; task is PAUSED",
        "resume -> APPLIED; task is RUNNING",
        "redirect -> DELIVERED; the pipeline says {'redirected_to': 'penguins'}",
        "now working on: penguins",
        "agent cancel -> PARKED, checkpoint confirm_steering for cancel",
        "agent approves its own cancel -> REJECTED approval_requires_user",
        "user rejects -> APPLIED; task is RUNNING",
        "user approves -> APPLIED; task is CANCELLED (really)",
        "sessions_steering done",
    ),
    "sessions_planner_hitl": (
        "checkpoint approval_required: refund {'order': 'A-1', 'amount': 40.0}",
        "  user approves A-1 -> APPLIED",
        "status: PAUSED (checkpoint)",
        "status: RUNNING (checkpoint_answered)",
        "tool call end: refund ok=True",
        "checkpoint approval_required: refund {'order': 'B-2', 'amount': 900.0}",
        "  user rejects B-2 -> APPLIED",
        "task COMPLETE: Refunded A-1 (40.0); B-2 was rejected by the reviewer.",
        "refund tool ran for: ['A-1']",
        "sessions_planner_hitl done",
    ),
    "sessions_background_tasks": (
        "[ 3] krill: None -> PENDING",
        "krill: RESULT {'topic': 'krill'} patch_id=None",
        "ice: NOTIFICATION 'Context changed while the task ran'",
        "diet: RESULT {'topic': 'diet'} patch_id=yes",
        "diet: CHECKPOINT context_patch digest=['Adelie penguins eat mostly krill.']",
        "diet: NOTIFICATION 'Background task completed: research diet'",
        "turn answered: I started three research tasks; I will tell you what they find.",
        "pending patch (diverged=True): ['Adelie penguins eat mostly krill.']",
        "user approves the gated patch -> APPLIED",
        "the next turn sees 3 findings: Adelie penguins eat mostly krill.",
        "sessions_background_tasks done",
    ),
    "sessions_durable_restart": (
        "first process: the client's cursor is 4",
        "second process: refund task is PAUSED, report task is FAILED (INTERRUPTED)",
        "subscriber resumed after update 4:",
        "APPROVE -> APPLIED",
        "refund COMPLETE: {'order': 7, 'refunded': 42.0} via resume()",
        "sessions_durable_restart done",
    ),
}
LIVE_ENV = ("OPENAI_API_KEY", "OPENAI_BASE_URL")
"""Examples run without these, so that react_openai uses its ProviderServer (see test_live)."""


def _example_dirs() -> list[Path]:
    return sorted(d for d in EXAMPLES.iterdir() if d.is_dir() and (d / "main.py").is_file())


@pytest.mark.parametrize("example", _example_dirs(), ids=lambda d: d.name)
def test_example_runs_and_prints_its_markers(example: Path) -> None:
    assert example.name in EXPECTED, (
        f"examples/{example.name} has no entry in EXPECTED in tests/test_examples.py; "
        "add the substrings its output must contain"
    )
    env = {k: v for k, v in os.environ.items() if k not in LIVE_ENV}
    proc = subprocess.run(
        [sys.executable, str(example / "main.py")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
        env=env,
    )
    assert proc.returncode == 0, f"exit code {proc.returncode}\nstderr:\n{proc.stderr}"
    missing = [marker for marker in EXPECTED[example.name] if marker not in proc.stdout]
    assert not missing, f"missing from stdout: {missing}\nstdout:\n{proc.stdout}"


def test_every_example_has_a_readme() -> None:
    missing = [d.name for d in _example_dirs() if not (d / "README.md").is_file()]
    assert not missing, f"examples without README.md: {missing}"


def test_durable_sqlite_journals_only_what_changed() -> None:
    """Each step's entry holds the changed field and framing, not the ticket again."""
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "durable_sqlite" / "main.py")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=True,
    )
    found = re.search(r"whole ticket \((\d+) B\), then (\d+) B per step", proc.stdout)
    assert found, proc.stdout
    ingress, per_step = int(found[1]), int(found[2])
    assert ingress > 4000 and per_step <= 300, (ingress, per_step)


@pytest.mark.live
@pytest.mark.skipif(
    not any(os.environ.get(name) for name in LIVE_ENV),
    reason="set OPENAI_API_KEY and/or OPENAI_BASE_URL to run react_openai on a real endpoint",
)
def test_react_openai_on_a_real_endpoint() -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "react_openai" / "main.py")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, f"exit code {proc.returncode}\nstderr:\n{proc.stderr}"
    assert "reason: answer_complete" in proc.stdout, proc.stdout
    assert "react_openai done" in proc.stdout
