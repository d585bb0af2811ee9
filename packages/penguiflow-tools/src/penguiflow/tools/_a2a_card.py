"""Agent cards: what an A2A agent built on PenguiFlow tells its callers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from a2a.types import AgentCapabilities, AgentCard, AgentInterface, AgentSkill

__all__ = ["A2ASkill", "agent_card", "with_url"]

_MODES = ["text/plain", "application/json"]
_BINDINGS = ("JSONRPC", "HTTP+JSON")


@dataclass(frozen=True, slots=True)
class A2ASkill:
    """One capability listed on an agent card."""

    id: str
    """Stable identifier (a caller's ``RemoteNode(skill=...)``)."""
    name: str
    """Human-readable name."""
    description: str
    """What the skill does."""
    tags: tuple[str, ...] = ()
    """Keywords."""
    examples: tuple[str, ...] = ()
    """Example requests."""


def agent_card(
    name: str,
    description: str,
    *,
    skills: Sequence[A2ASkill],
    version: str = "1.0.0",
    streaming: bool = True,
    url: str | None = None,
) -> AgentCard:
    """An A2A 1.0 agent card (JSON-RPC and HTTP+JSON interfaces at ``url``, when given).

    A skill without tags is tagged with its id (A2A 1.0 requires at least one tag).

    Raises:
        ValueError: ``skills`` is empty (an A2A card needs at least one skill).
    """
    if not skills:
        raise ValueError(
            "an agent card needs at least one skill: pass skills=[A2ASkill(id=..., ...)]"
        )
    card = AgentCard(
        name=name,
        description=description,
        version=version,
        capabilities=AgentCapabilities(streaming=streaming),
        default_input_modes=_MODES,
        default_output_modes=_MODES,
        skills=[
            AgentSkill(
                id=skill.id,
                name=skill.name,
                description=skill.description,
                tags=list(skill.tags) or [skill.id],  # A2A requires tags
                examples=list(skill.examples),
            )
            for skill in skills
        ],
    )
    return with_url(card, url) if url is not None else card


def with_url(card: AgentCard, url: str) -> AgentCard:
    """A copy of ``card`` whose interfaces are served at ``url``."""
    served = AgentCard()
    served.CopyFrom(card)
    del served.supported_interfaces[:]
    served.supported_interfaces.extend(
        AgentInterface(url=url, protocol_binding=binding, protocol_version="1.0")
        for binding in _BINDINGS
    )
    return served
