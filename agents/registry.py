"""Agent names for the scripts and the harness: ``--agent rl2``, ``memory``, ``maml-ppo``, ``ppo``
or ``recurrent-ppo``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from agents.maml import MAMLPPO, MAMLConfig
from agents.memory import MemoryAgent, MemoryConfig
from agents.rl2 import RL2, RL2Config
from agents.sb3_baselines import PPOBaseline, RecurrentPPOBaseline
from agents.sb3_config import PPOBaselineConfig, RecurrentPPOBaselineConfig
from agents.serialization import load_file


@dataclass(frozen=True)
class AgentEntry:
    """An agent class and its hyperparameter dataclass."""

    agent_class: type
    config_class: type
    description: str


AGENTS: dict[str, AgentEntry] = {
    "rl2": AgentEntry(RL2, RL2Config, "RL²: GRU policy trained with PPO over trials"),
    "memory": AgentEntry(
        MemoryAgent, MemoryConfig,
        "memory-augmented policy: controller with an external LRUA memory, PPO over trials",
    ),
    "maml-ppo": AgentEntry(
        MAMLPPO, MAMLConfig,
        "MAML-PPO: MLP policy adapted by policy-gradient steps, PPO's clipped outer loss",
    ),
    "ppo": AgentEntry(
        PPOBaseline, PPOBaselineConfig,
        "baseline without meta-learning: stable-baselines3 PPO, MLP policy, a new hidden task "
        "each episode",
    ),
    "recurrent-ppo": AgentEntry(
        RecurrentPPOBaseline, RecurrentPPOBaselineConfig,
        "recurrent baseline: sb3-contrib RecurrentPPO, LSTM policy, on trials as RL²",
    ),
}


def config_field(name: str) -> str:
    """Return the TrainConfig field holding agent ``name``'s settings (``maml-ppo`` -> ``maml_ppo``)."""
    return name.replace("-", "_")


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


def load_agent(path: str | Path, device: str | torch.device = "auto") -> tuple[str, Any]:
    """Load a model or checkpoint file of any registered agent; return ``(name, agent)``.

    Raises:
        ValueError: when the file is not an AdaptRL model of a known agent.
    """
    data_format = load_file(path).get("format")
    for name, entry in AGENTS.items():
        if entry.agent_class.save_format == data_format:
            return name, entry.agent_class.load(path, device=device)
    known = ", ".join(entry.agent_class.save_format for entry in AGENTS.values())
    raise ValueError(f"{path} has format {data_format!r}, which is not a model of a known agent ({known})")
