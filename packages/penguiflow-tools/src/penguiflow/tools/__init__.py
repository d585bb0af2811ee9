"""PenguiFlow tools: remote tools and agents as PenguiFlow nodes.

A2A (``pip install "penguiflow-tools[a2a]"``): serve a flow or a planner as an A2A agent and call
remote A2A agents from a ``RemoteNode``::

    from penguiflow.core import RemoteNode
    from penguiflow.tools import A2ASkill, A2ATransport, agent_card, flow_agent, serve_a2a

    card = agent_card("echo", "Echoes", skills=[A2ASkill("echo", "Echo", "Echoes text")])
    async with serve_a2a(flow_agent(flow), card=card) as server:
        node = RemoteNode(transport=A2ATransport(), skill="echo", agent_url=server.url, name="r")

The A2A names resolve on first use: ``import penguiflow.tools`` loads no SDK.
"""

from __future__ import annotations

import importlib as _importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._a2a_agents import FlowAgent, PlannerAgent, PlannerLike, flow_agent, planner_agent
    from ._a2a_card import A2ASkill, agent_card
    from ._a2a_errors import (
        ToolAuthError,
        ToolClientError,
        ToolConnectionError,
        ToolError,
        ToolServerError,
        ToolTimeoutError,
    )
    from ._a2a_server import A2AServer, create_a2a_app, serve_a2a
    from ._a2a_transport import A2ATransport

__all__ = [
    # A2A serving
    "A2AServer",
    "A2ASkill",
    "FlowAgent",
    "PlannerAgent",
    "PlannerLike",
    "agent_card",
    "create_a2a_app",
    "flow_agent",
    "planner_agent",
    "serve_a2a",
    # A2A calling
    "A2ATransport",
    # errors
    "ToolAuthError",
    "ToolClientError",
    "ToolConnectionError",
    "ToolError",
    "ToolServerError",
    "ToolTimeoutError",
]

_LAZY = {
    "A2AServer": "_a2a_server",
    "create_a2a_app": "_a2a_server",
    "serve_a2a": "_a2a_server",
    "A2ASkill": "_a2a_card",
    "agent_card": "_a2a_card",
    "FlowAgent": "_a2a_agents",
    "PlannerAgent": "_a2a_agents",
    "PlannerLike": "_a2a_agents",
    "flow_agent": "_a2a_agents",
    "planner_agent": "_a2a_agents",
    "A2ATransport": "_a2a_transport",
    "ToolAuthError": "_a2a_errors",
    "ToolClientError": "_a2a_errors",
    "ToolConnectionError": "_a2a_errors",
    "ToolError": "_a2a_errors",
    "ToolServerError": "_a2a_errors",
    "ToolTimeoutError": "_a2a_errors",
}
_SDK_MODULES = {"_a2a_server", "_a2a_card", "_a2a_agents", "_a2a_transport"}


def __getattr__(name: str) -> object:
    if name == "__version__":
        from importlib.metadata import version

        return version("penguiflow-tools")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'penguiflow.tools' has no attribute {name!r}")
    if module in _SDK_MODULES:
        try:
            import a2a  # noqa: F401  # pyright: ignore[reportUnusedImport]
        except ImportError as exc:
            raise ImportError(
                f'penguiflow.tools.{name} needs the A2A SDK: pip install "penguiflow-tools[a2a]"'
            ) from exc
    value = getattr(_importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
