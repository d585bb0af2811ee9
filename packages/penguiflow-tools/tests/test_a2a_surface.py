"""The package's public face: lazy A2A names, no SDK at import, the documented surface."""

from __future__ import annotations

import subprocess
import sys

import penguiflow.tools

A2A_NAMES = {
    "A2AServer",
    "A2ASkill",
    "A2ATransport",
    "FlowAgent",
    "PlannerAgent",
    "PlannerLike",
    "agent_card",
    "create_a2a_app",
    "flow_agent",
    "planner_agent",
    "serve_a2a",
}
ERROR_NAMES = {
    "ToolAuthError",
    "ToolClientError",
    "ToolConnectionError",
    "ToolError",
    "ToolServerError",
    "ToolTimeoutError",
}


def test_the_a2a_and_error_names_are_public_and_resolve() -> None:
    assert set(penguiflow.tools.__all__) >= A2A_NAMES | ERROR_NAMES
    for name in A2A_NAMES | ERROR_NAMES:
        assert getattr(penguiflow.tools, name) is not None


def test_importing_the_package_loads_no_sdk() -> None:
    code = (
        "import sys, penguiflow.tools as t; "
        "print(sorted(m for m in ('a2a', 'starlette', 'uvicorn', 'httpx', 'mcp', 'utcp') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_the_errors_follow_the_tree() -> None:
    from penguiflow.core import PenguiFlowError
    from penguiflow.tools import ToolError, ToolServerError, ToolTimeoutError

    error = ToolTimeoutError("slow", source="a2a", timeout_s=1.5)
    assert isinstance(error, ToolError) and isinstance(error, PenguiFlowError)
    assert error.attempts == 1 and error.timeout_s == 1.5
    assert ToolServerError("x", source="a2a").to_payload()["type"] == "ToolServerError"
