"""Agent names for the scripts and the harness: ``--agent rl2``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agents.rl2 import RL2, RL2Config


@dataclass(frozen=True)
class AgentEntry:
    """An agent class and its hyperparameter dataclass."""

    agent_class: type
    config_class: type
    description: str


AGENTS: dict[str, AgentEntry] = {
    "rl2": AgentEntry(RL2, RL2Config, "RL²: GRU policy trained with PPO over trials"),
}


def agent_entry(name: str) -> AgentEntry:
    """Return the registered agent called ``name``; unknown names list the choices."""
    try:
        return AGENTS[name]
    except KeyError:
        choices = ", ".join(sorted(AGENTS))
        raise ValueError(f"unknown agent {name!r}; choose one of: {choices}") from None


def make_agent(name: str, distribution, config: Any, device: str, seed: int):
    """Build agent ``name`` on ``distribution`` with its hyperparameter dataclass ``config``."""
    entry = agent_entry(name)
    if not isinstance(config, entry.config_class):
        raise TypeError(
            f"agent {name!r} takes a {entry.config_class.__name__}, got {type(config).__name__}"
        )
    return entry.agent_class(distribution, config, device=device, seed=seed)
