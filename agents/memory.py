"""The memory-augmented policy: an external-memory controller trained with PPO over trials."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import gymnasium as gym

from agents.memory_network import MemoryActorCritic, check_memory_shape
from agents.trial_agent import TrialAgent, TrialPPOConfig

SAVE_FORMAT = "adaptrl.memory.v1"


@dataclass
class MemoryConfig(TrialPPOConfig):
    """Hyperparameters of the memory-augmented policy: PPO over trials plus the memory's shape."""

    controller: Literal["gru", "lstm"] = "gru"
    """Recurrent controller of the memory: gru or lstm."""
    memory_slots: int = 16
    """Number of memory slots N."""
    memory_width: int = 16
    """Floats per memory slot W."""
    num_reads: int = 1
    """Read heads; each also writes, to its own least-used slot."""
    usage_decay: float = 0.95
    """Factor applied to each slot's usage per step before adding this step's read and write
    weights; lower values let slots become least used sooner."""

    def validate(self) -> None:
        super().validate()
        check_memory_shape(self.hidden_size, self.controller, self.memory_slots,
                           self.memory_width, self.num_reads, self.usage_decay)


class MemoryAgent(TrialAgent):
    """A memory-augmented policy (Santoro et al., 2016) trained like RL².

    The controller state and the whole external memory are the policy's recurrent state:
    cleared at trial starts by the same reset as RL², carried across inner episodes, stored
    with each rollout and replayed exactly in the PPO update.

    Args:
        distribution: task distribution; training draws trials from its meta-train split.
        config: hyperparameters.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or a torch device.
        seed: the run's seed, split into independent streams (:class:`agents.SeedStreams`).
    """

    save_format = SAVE_FORMAT
    config_class = MemoryConfig
    display_name = "memory policy"

    def build_policy(self, observation_dim: int, action_space: gym.Space) -> MemoryActorCritic:
        config = self.config
        return MemoryActorCritic(
            observation_dim,
            action_space,
            hidden_size=config.hidden_size,
            controller=config.controller,
            num_slots=config.memory_slots,
            width=config.memory_width,
            num_reads=config.num_reads,
            usage_decay=config.usage_decay,
            reward_prediction=config.reward_prediction_coef > 0,
            observation_prediction_size=self.observation_prediction_size(),
            position_prediction_size=self.position_prediction_size(),
        )
