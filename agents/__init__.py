"""AdaptRL agents: RL², MAML-PPO, the memory-augmented policy, SB3 baselines, references, and
shared parts."""

import envs as _envs

if not getattr(_envs, "__adaptrl__", False):
    raise ImportError(
        f"the top-level `envs` module at {getattr(_envs, '__file__', '?')} is not AdaptRL's: "
        "another installed distribution provides a module of that name. Install AdaptRL in "
        "its own virtual environment (see the README)."
    )

from agents.device import resolve_device  # noqa: E402
from agents.gae import compute_gae  # noqa: E402
from agents.maml import MAMLPPO, MAMLConfig  # noqa: E402
from agents.memory import MemoryAgent, MemoryConfig  # noqa: E402
from agents.recurrent import reset_recurrent_state  # noqa: E402
from agents.registry import AGENTS, agent_entry, load_agent, make_agent  # noqa: E402
from agents.rl2 import RL2, RL2Config  # noqa: E402
from agents.sb3_baselines import PPOBaseline, RecurrentPPOBaseline  # noqa: E402
from agents.sb3_config import PPOBaselineConfig, RecurrentPPOBaselineConfig  # noqa: E402
from agents.seeding import SeedStreams  # noqa: E402
from agents.trial_agent import TrialAgent, TrialPPOConfig  # noqa: E402

# Marks this package as AdaptRL's own; other distributions also install a top-level `agents`.
__adaptrl__ = True

__all__ = [
    "AGENTS",
    "MAMLPPO",
    "MAMLConfig",
    "RL2",
    "MemoryAgent",
    "MemoryConfig",
    "PPOBaseline",
    "PPOBaselineConfig",
    "RL2Config",
    "RecurrentPPOBaseline",
    "RecurrentPPOBaselineConfig",
    "SeedStreams",
    "TrialAgent",
    "TrialPPOConfig",
    "agent_entry",
    "compute_gae",
    "load_agent",
    "make_agent",
    "reset_recurrent_state",
    "resolve_device",
]
